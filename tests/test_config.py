"""TrainConfig: recipes load, overrides apply, bad keys and values are refused by name."""

import pytest

from sapo_core.config import ConfigError, TrainConfig, load_config, parse_overrides
from sapo_core.paths import REPO_ROOT


@pytest.mark.parametrize("recipe", ["tiny-cpu", "paper-7b"])
def test_recipes_load(recipe):
    cfg = load_config(REPO_ROOT / "configs" / f"{recipe}.yaml")
    assert cfg.num_generations == 8 and cfg.num_iterations == 2


def test_paper_recipe_matches_spec_section_3():
    cfg = load_config("paper-7b")
    assert cfg.model == "Qwen/Qwen2.5-7B-Instruct" and cfg.dataset == "mix"
    assert (cfg.max_completion_length, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (512, 1, 16)
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.use_vllm and cfg.vllm_mode == "colocate"
    assert not cfg.vllm_importance_sampling_correction


def test_overrides_apply_and_parse_yaml_scalars():
    cfg = load_config("tiny-cpu", ["gate=erf", "learning_rate=1e-5", "bf16=false", "tau_convention=width_matched"])
    assert cfg.gate == "erf" and cfg.learning_rate == 1e-5 and cfg.bf16 is False
    assert cfg.gate_taus()[0] == pytest.approx(0.4723, abs=1e-3)
    assert parse_overrides(["report_to=[wandb]"]) == {"report_to": ["wandb"]}


@pytest.mark.parametrize("override, message", [
    (["nonsense=1"], "unknown config key.*'nonsense'"),
    (["gate=tanh"], "gate='tanh'.*available gates"),
    (["tau_pos=0"], "tau_pos=0 must be > 0"),
    (["num_iterations=1.5"], "num_iterations=1.5 must be an integer"),
    (["learning_rate=fast"], "learning_rate='fast' must be a number"),
    (["aggregation=sum"], "aggregation='sum' is not allowed.*token_mean"),
    (["tau_convention=wide"], "tau_convention='wide' is not allowed"),
    (["bf16=yes please"], "bf16='yes please' must be true or false"),
    (["num_generations=1"], "num_generations=1 must be >= 2"),
    (["epsilon_low=-0.1"], "epsilon_low=-0.1 must be >= 0"),
    (["vllm_importance_sampling_correction=true"], "needs use_vllm=true"),
    (["gate"], "must look like key=value"),
    (["save_steps=3"], "save_steps=3 must put every checkpoint at the end of a generation cycle.*= 2 micro"),
    (["num_iterations=4", "save_steps=6"], "save_steps=6 .*= 4 micro-batches"),
    (["steps_per_generation=0"], "steps_per_generation=0 must be > 0"),
    (["seed=-1"], r"seed=-1 must be in \[0, 2\*\*32 - 1\]"),
    (["tau_pos=nan"], "tau_pos=nan must be a finite number"),
    (["tau_neg=.inf"], "tau_neg=inf must be a finite number"),
    (["learning_rate=1e400"], "learning_rate=inf must be a finite number"),
    (["beta=nan"], "beta=nan must be a finite number"),
    (["vllm_gpu_memory_utilization=5"], r"vllm_gpu_memory_utilization=5 must be in \(0, 1\]"),
    (["max_grad_norm=-1"], "max_grad_norm=-1 must be >= 0"),
    (["save_total_limit=0"], "save_total_limit=0 must be >= 1"),
    (["logging_steps=3", "save_steps=4"], "save_steps=4 must be a multiple of logging_steps=3"),
    (["data_seed=4294967296"], "data_seed=4294967296 must be in"),
])
def test_bad_overrides_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny-cpu", override)


def test_unknown_key_in_recipe_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("gate: erf\nlearning_rat: 1.0e-5\n")
    with pytest.raises(ConfigError, match="'learning_rat'"):
        load_config(recipe)


def test_missing_recipe():
    with pytest.raises(ConfigError, match="recipe 'nope' not found"):
        load_config("nope")


def test_clip_is_a_valid_gate_and_keeps_taus():
    cfg = TrainConfig(gate="clip")
    assert cfg.gate_taus() == (1.0, 1.05)


def test_checkpoints_at_generation_cycle_ends_are_accepted():
    assert load_config("tiny-cpu", ["num_iterations=4", "save_steps=8"]).generation_cycle_micro_batches() == 4
    # 8 micro-batches per generation, 4 per optimizer step, 2 reuses: a cycle is 4 optimizer steps
    cfg = load_config("tiny-cpu", ["gradient_accumulation_steps=4", "steps_per_generation=8", "save_steps=4"])
    assert cfg.generation_cycle_micro_batches() == 16
    with pytest.raises(ConfigError, match="save_steps=2"):
        load_config("tiny-cpu", ["gradient_accumulation_steps=4", "steps_per_generation=8", "save_steps=2"])
