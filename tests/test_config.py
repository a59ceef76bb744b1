"""The config layer: recipes are TRL config files, flags override them, bad keys and values are refused by name."""

import pytest
import yaml

from sapo_core.config import ConfigError, GatedGRPOConfig
from sapo_core.paths import REPO_ROOT
from sapo_core.recipe import parse_args, recipe_keys_differ

TINY = ["--config", "configs/tiny-cpu.yaml", "--run_dir", "unused"]


@pytest.mark.parametrize("recipe", ["tiny-cpu", "paper-7b"])
def test_recipes_parse(recipe):
    # the paper recipe asks for bf16, which transformers allows on a CPU only with use_cpu
    run = parse_args(["--config", str(REPO_ROOT / "configs" / f"{recipe}.yaml"), "--use_cpu", "true"])
    assert run.training.num_generations == 8 and run.training.num_iterations == 2


def test_paper_recipe_matches_method_section_3():
    run = parse_args(["--config", "configs/paper-7b.yaml", "--use_cpu", "true"])
    script, args = run.script, run.training
    assert script.model == "Qwen/Qwen2.5-7B-Instruct" and script.dataset == "mix"
    sizes = (args.max_completion_length, args.per_device_train_batch_size, args.gradient_accumulation_steps)
    assert sizes == (512, 1, 16)
    assert args.bf16 and args.activation_checkpointing and args.use_vllm and args.vllm_mode == "colocate"
    assert not args.vllm_importance_sampling_correction and args.reward_weights == [1.0, 1.0]


def test_flags_override_the_recipe_and_the_recipe_records_what_was_given():
    run = parse_args([*TINY, "--gate", "erf", "--learning_rate", "1e-5", "--tau_convention", "width_matched"])
    assert run.training.gate == "erf" and run.training.learning_rate == 1e-5
    assert run.training.gate_taus()[0] == pytest.approx(0.6679, abs=1e-3)  # erf (eq. 6) width-matched at tau 1
    assert run.recipe["gate"] == "erf" and run.recipe["learning_rate"] == 1e-5 and run.recipe["model"] == "tiny"
    assert "run_dir" not in run.recipe and "output_dir" not in run.recipe
    assert run.training.output_dir.endswith("unused/checkpoints")


def test_default_run_dir_names_gate_convention_and_seed(monkeypatch, tmp_path):
    monkeypatch.setenv("SAPO_RUNS_DIR", str(tmp_path))
    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--gate", "arctan", "--seed", "3"])
    assert run.run_dir == tmp_path / "tiny-cpu" / "arctan-equal-seed3"


def test_a_saved_recipe_reproduces_the_run(tmp_path):
    run = parse_args([*TINY, "--gate", "softsign", "--max_steps", "7"])
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(run.recipe, sort_keys=False))
    again = parse_args(["--config", str(saved), "--run_dir", "elsewhere"])
    assert again.recipe == run.recipe and recipe_keys_differ(run.recipe, again) == []
    assert recipe_keys_differ(run.recipe, parse_args([*TINY, "--gate", "softsign"])) == ["max_steps"]


@pytest.mark.parametrize("extra, message", [
    (["--nonsense", "1"], "unknown flag 'nonsense'"),
    (["--learnin_rate", "1"], "did you mean 'learning_rate'"),
    (["--gate", "tanh"], "gate='tanh'.*available gates"),
    (["--sapo_temperature_pos", "0"], "sapo_temperature_pos=0.0 must be a finite number > 0"),
    (["--sapo_temperature_neg", "1e39"], "sapo_temperature_neg=1e.39 must be a finite number > 0"),
    (["--sapo_temperature_pos", "nan"], "sapo_temperature_pos=nan must be a finite number"),
    (["--num_iterations", "1.5"], "--num_iterations.*invalid int value: '1.5'"),
    (["--learning_rate", "fast"], "--learning_rate.*invalid float value: 'fast'"),
    (["--aggregation", "sum"], "aggregation='sum' is not allowed.*token_mean"),
    (["--tau_convention", "wide"], "tau_convention='wide' is not allowed"),
    (["--bf16", "yes please"], "--bf16.*Truthy value expected"),
    (["--num_generations", "1"], "num_generations=1 must be >= 2"),
    (["--epsilon", "-0.1"], r"epsilon=-0.1 must be in \[0, 1\)"),
    (["--epsilon_high", "1.5"], r"epsilon_high=1.5 must be in \[0, 1\)"),
    (["--log_ratio_clamp", "100"], r"log_ratio_clamp=100.0 must be in \(0, 88.72\)"),
    (["--vllm_importance_sampling_correction", "true"], "needs use_vllm=true"),
    (["--save_steps", "3"], "save_steps=3 must put every checkpoint at the end of a generation cycle.*= 2 micro"),
    (["--num_iterations", "4", "--save_steps", "6"], "save_steps=6 .*= 4 micro-batches"),
    (["--seed", "-1"], r"seed=-1 must be in \[0, 2\*\*32 - 1\]"),
    (["--data_seed", "4294967296"], "data_seed=4294967296 must be in"),
    (["--logging_steps", "3", "--save_steps", "4"], "save_steps=4 must be a multiple of logging_steps=3"),
    (["--reward_weights", "1", "inf"], r"reward_weights=\[1.0, inf\] must be finite"),
    (["--lr_scheduler_type", "fast"], "--lr_scheduler_type.*invalid choice: 'fast'"),
    (["--dataset", "nope"], "--dataset.*invalid choice: 'nope'"),
    (["--per_device_train_batch_size", "7"], "must be divisible by num_generations"),
    (["--gate", "erf", "--gate", "clip"], "flag --gate given twice"),
    (["--output_dir", "x"], "--output_dir is set from the run directory"),
    (["--loss_type", "cispo"], "loss_type='cispo' is not used by GatedGRPOConfig"),
])
def test_bad_flags_fail_naming_the_key(extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_args([*TINY, *extra])


def test_an_empty_run_dir_is_refused():
    with pytest.raises(ConfigError, match="run_dir is empty"):
        parse_args(["--config", "configs/tiny-cpu.yaml", "--run_dir", ""])


@pytest.mark.parametrize("text, message", [
    ("gate: erf\nlearning_rat: 1.0e-5\n", "unknown key.*'learning_rat' \\(did you mean 'learning_rate'\\?\\)"),
    ("gate: erf\ngate: clip\n", "key 'gate' appears twice \\(line 2\\)"),
    ("", "is empty"),
    ("- gate\n- erf\n", "must be a mapping of key: value, not a list"),
    ("gate: [erf\n", "is not valid YAML"),
    ("max_steps: 1.5\n", "max_steps: 1.5 in .* is not a valid int"),
    ("dataset: nope\n", "dataset: 'nope' in .* is not allowed; choose one of synthetic, mix, gsm8k"),
    ("gate: !!python/name:os.system\n", "is not valid YAML"),
    ("env: {A: 1}\n", "'env' .* is not supported"),
])
def test_bad_recipe_files_fail_naming_the_file_and_key(tmp_path, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config", str(recipe)])


def test_missing_recipe_and_directory_recipe(tmp_path):
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        parse_args(["--config", "nope.yaml"])
    with pytest.raises(ConfigError, match="is a directory"):
        parse_args(["--config", str(tmp_path)])


def test_clip_is_a_valid_gate_and_keeps_taus():
    args = GatedGRPOConfig(output_dir="x", gate="clip", bf16=False)
    assert args.gate_taus() == (1.0, 1.05) and args.loss_type == "grpo"


def test_checkpoints_at_generation_cycle_ends_are_accepted():
    parse_args([*TINY, "--num_iterations", "4", "--save_steps", "8"])
    # 8 micro-batches per generation, 4 per optimizer step, 2 reuses: a cycle is 4 optimizer steps
    parse_args([*TINY, "--gradient_accumulation_steps", "4", "--steps_per_generation", "8", "--save_steps", "4"])
    with pytest.raises(ConfigError, match="save_steps=2"):
        parse_args([*TINY, "--gradient_accumulation_steps", "4", "--steps_per_generation", "8", "--save_steps", "2"])


# --- every boolean field takes --x, --x true|false, --x=false and --no_x (parse only) -------------------------------

def _booleans() -> list[str]:
    """The boolean fields (bool or bool | None) of ScriptArguments and GatedGRPOConfig, TRL's included."""
    import dataclasses
    import typing

    from sapo_core.config import ScriptArguments

    names = []
    for holder in (ScriptArguments, GatedGRPOConfig):
        hints = typing.get_type_hints(holder)
        names += [f.name for f in dataclasses.fields(holder) if hints[f.name] in (bool, bool | None)]
    return names


BOOLEANS = _booleans()


@pytest.fixture(scope="module")
def parser():
    from sapo_core.config import GatedGRPOConfig, ScriptArguments
    from sapo_core.recipe import _Parser

    return _Parser((ScriptArguments, GatedGRPOConfig))


def test_the_boolean_fields_are_found():
    assert {"heldout_greedy", "resume", "dry_run", "use_vllm", "gradient_checkpointing", "bf16"} <= set(BOOLEANS)
    assert len(BOOLEANS) > 30


@pytest.mark.parametrize("name", BOOLEANS)
def test_every_boolean_takes_each_spelling(parser, name):
    dests = parser.option_dests()  # what parse_args checks every flag against
    dashed = name.replace("_", "-")
    for option in (f"--{name}", f"--no_{name}", f"--no-{dashed}"):
        assert dests.get(option) == name, option
    spellings = {(f"--{name}",): True, (f"--{name}", "true"): True, (f"--{name}", "false"): False,
                 (f"--{name}=false",): False, (f"--{name}=true",): True, (f"--no_{name}",): False,
                 (f"--no-{dashed}",): False}
    for argv, value in spellings.items():
        parsed, rest = parser.parse_known_args(list(argv))
        assert rest == [] and getattr(parsed, name) is value, argv
    with pytest.raises(ConfigError, match=name):
        parser.parse_known_args([f"--{name}", "sometimes"])


@pytest.mark.parametrize("extra, key, value", [
    (["--heldout_greedy", "false"], "heldout_greedy", False),
    (["--heldout_greedy=false"], "heldout_greedy", False),
    (["--no_heldout_greedy"], "heldout_greedy", False),
    (["--heldout_greedy"], "heldout_greedy", True),
    (["--ddp_find_unused_parameters"], "ddp_find_unused_parameters", True),  # bool | None: a bare flag is True
    (["--no_ddp_find_unused_parameters"], "ddp_find_unused_parameters", False),
    (["--no_use_vllm"], "use_vllm", False),
    (["--log_completions", "true"], "log_completions", True),
])
def test_boolean_flags_through_parse_args(extra, key, value):
    run = parse_args([*TINY, *extra])
    holder = run.script if hasattr(run.script, key) else run.training
    assert getattr(holder, key) is value and run.recipe[key] is value


def test_a_boolean_given_twice_in_two_spellings_is_refused():
    with pytest.raises(ConfigError, match="--no_heldout_greedy given twice.*sets heldout_greedy"):
        parse_args([*TINY, "--heldout_greedy", "true", "--no_heldout_greedy"])


@pytest.mark.parametrize("text", ["log_completions: 1\n", "disable_dropout: 'no'\n", "use_cpu: maybe\n"])
def test_a_recipe_boolean_must_be_true_or_false(tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((REPO_ROOT / "configs/tiny-cpu.yaml").read_text() + text)
    with pytest.raises(ConfigError, match="is not true or false"):
        parse_args(["--config", str(recipe)])


def test_the_run_directory_name_is_defined_once():
    from sapo_core.batch import RunSpec
    from sapo_core.config import run_name

    assert run_name("erf", "width_matched", 2) == "erf-width_matched-seed2"
    assert RunSpec("erf", 2, "width_matched").name == run_name("erf", "width_matched", 2)
