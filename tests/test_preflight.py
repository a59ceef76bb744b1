"""The dry run (sapo_core.preflight): the plan's numbers and memory terms against hand-computed values, refusals by
name, nothing created; the paper's preset against Table 2; the chunked LM head guard; tools/gpu_check.sh --dry."""

import json
import os
import re
import shutil
import subprocess
from unittest import mock

import pytest
import torch
import yaml

from sapo_core import batch, preflight, train
from sapo_core.config import ConfigError
from sapo_core.paths import REPO_ROOT
from sapo_core.recipe import parse_args

GB = 2**30
QWEN7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28,
          "intermediate_size": 18944, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
          "tie_word_embeddings": False, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_act": "silu"}


def qwen2_parameters(h, layers, inter, heads, kv_heads, vocab, tied):
    """Parameters of a Qwen2 model from its dimensions (q/k/v carry biases, o and the MLP do not)."""
    kv = h // heads * kv_heads
    layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * inter + 2 * h
    return vocab * h * (1 if tied else 2) + layers * layer + h, layer


@pytest.fixture
def qwen7b(tmp_path):
    """A local Qwen2.5-7B directory: its published config and the tiny model's tokenizer files (no weights)."""
    model = tmp_path / "qwen7b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN7B))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(REPO_ROOT / "data" / "tiny" / name, model / name)
    return model


@pytest.fixture
def data_dir(tmp_path):
    """A local data directory with 20 GSM8K train and 20 DeepMath problems, prompts of growing length."""
    root = tmp_path / "data"
    (root / "gsm8k").mkdir(parents=True)
    (root / "deepmath").mkdir()
    with open(root / "gsm8k" / "train.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"question": "x" * (10 * i + 1), "answer": f"so #### {i}"}) + "\n")
    with open(root / "deepmath" / "train.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"question": f"Solve x + {i} = 0.", "final_answer": str(-i)}) + "\n")
    return root


def paper_argv(model, data, run_dir, *extra):
    return ["--config", "configs/paper-7b.yaml", "--gate", "erf", "--dry_run", "--model", str(model), "--data_dir",
            str(data), "--train_size", "40", "--run_dir", str(run_dir), *extra]


def test_dry_run_tiny_recipe_plan_and_memory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--config", "configs/tiny-cpu.yaml", "--gate", "erf", "--dry_run", "--run_dir", str(run_dir)]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    # 64 completions per micro-batch, 1 accumulation step, 8 per prompt; 2 updates per generation
    assert "64 completions and 8 prompts per optimizer step per process" in out
    assert "100 optimizer steps, 50 generations of 64 completions, 400 prompts drawn" in out
    assert "data: synthetic, 4096 training prompts" in out and "hidden 64, layers 4" in out
    assert not run_dir.exists()

    run = parse_args(argv)
    config = preflight.model_config("tiny", train.model_path(run.script))
    params, layer = qwen2_parameters(64, 4, 256, 4, 4, 266, tied=True)
    assert preflight.parameter_counts(config) == (params, max(layer, 266 * 64)) == (280_512, layer)
    mem = preflight.memory_estimate(config, run, preflight.read_launch(None), 80.0)
    s, b = 32, 64  # no max_prompt_length in tiny-cpu: completions only
    expected = {"weights": 4 * params, "gradients": 4 * params, "optimizer": 8 * params,  # float32, plain AdamW
                "zero3_gathered": 0, "reference_model": 0, "vllm": 0,
                "activations": 4 * s * b * (17 * 64 + 8 * 256) * 4 / 2,  # no checkpointing: every layer, float32
                "lm_head": min(b * 32, 4096) * 32768 * 4 + 4 * 266 * 64}
    for key, value in expected.items():
        assert mem[key] == pytest.approx(value / GB, rel=1e-9, abs=1e-12), key
    assert mem["total"] == pytest.approx(sum(expected.values()) / GB)


def test_dry_run_paper_preset_on_a_local_7b_config(qwen7b, data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    accel = "configs/accelerate/zero3-8gpu.yaml"
    assert train.main(paper_argv(qwen7b, data_dir, run_dir, "--accelerate_config", accel)) == 0
    out = capsys.readouterr().out
    # 8 processes x 1 x 16 = 128 completions = 16 prompts per step; a generation feeds 16 x 2 micro-batches
    assert "16 completions and 2 prompts per optimizer step per process (128 and 16 in all)" in out
    assert "5000 optimizer steps, 2500 generations of 128 completions, 40000 prompts drawn" in out
    assert "data: mix, 40 training prompts" in out and "hidden 3584, layers 28" in out
    assert "max_prompt_length 1536: 0 would be dropped" in out
    assert not run_dir.exists() and "warning" not in out

    run = parse_args(paper_argv(qwen7b, data_dir, run_dir, "--accelerate_config", accel))
    config = preflight.model_config(str(qwen7b), str(qwen7b))
    params, layer = qwen2_parameters(3584, 28, 18944, 28, 4, 152064, tied=False)
    assert params == 7_615_616_512  # Qwen2.5-7B's published count
    assert preflight.parameter_counts(config) == (params, max(layer, 152064 * 3584)) == (params, 152064 * 3584)
    mem = preflight.memory_estimate(config, run, preflight.read_launch(accel), 80.0)
    s, b, h, n = 1536 + 512, 1, 3584, 8
    expected = {"weights": 2 * params / n, "gradients": 2 * params / n, "optimizer": 12 * params / n,  # ZeRO-3
                "zero3_gathered": 2 * 2 * 152064 * h, "reference_model": 0,  # beta = 0
                "activations": 2 * s * b * h * 28 + s * b * (17 * h + 8 * 18944),  # checkpointed, bf16
                "lm_head": 512 * 32768 * 2 + 4 * 152064 * h, "vllm": 0.3 * 80 * GB}
    for key, value in expected.items():
        assert mem[key] == pytest.approx(value / GB, rel=1e-9, abs=1e-12), key
    assert mem["total"] == pytest.approx(sum(expected.values()) / GB)

    # one GPU without DeepSpeed: bf16 weights, gradients and AdamW moments (8 bytes/param) do not fit 80 GB
    single = preflight.memory_estimate(config, run, preflight.read_launch("configs/accelerate/single-gpu.yaml"), 80)
    assert single["weights"] + single["gradients"] + single["optimizer"] == pytest.approx(8 * params / GB)
    assert train.main(paper_argv(qwen7b, data_dir, run_dir)) == 0
    assert "warning: the estimate" in capsys.readouterr().out


def test_dry_run_counts_the_prompts_over_max_prompt_length(qwen7b, data_dir, tmp_path, capsys):
    run = parse_args(paper_argv(qwen7b, data_dir, tmp_path / "run"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen7b)
    dataset = train.datasets_for(run.script, 0)
    lengths = preflight.prompt_lengths(dataset, tokenizer)
    limit = sorted(lengths)[30]
    over = sum(n > limit for n in lengths)
    assert 0 < over < len(lengths)
    assert train.main(paper_argv(qwen7b, data_dir, tmp_path / "run", "--max_prompt_length", str(limit))) == 0
    assert f"max_prompt_length {limit}: {over} would be dropped" in capsys.readouterr().out
    kept = train.drop_long_prompts(dataset, tokenizer, limit)  # what training does with them
    assert len(kept) == len(lengths) - over and max(preflight.prompt_lengths(kept, tokenizer)) <= limit
    assert train.main(paper_argv(qwen7b, data_dir, tmp_path / "run", "--max_prompt_length", "1")) == 2
    assert "every prompt is longer than max_prompt_length=1" in capsys.readouterr().err


def test_missing_data_file_and_model_config_are_refused_by_name(qwen7b, data_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    deepmath = data_dir / "deepmath" / "train.jsonl"
    rows = deepmath.read_text()
    deepmath.unlink()
    assert train.main(paper_argv(qwen7b, data_dir, run_dir)) == 2
    assert str(deepmath) in capsys.readouterr().err
    deepmath.write_text(rows)

    (qwen7b / "config.json").unlink()
    assert train.main(paper_argv(qwen7b, data_dir, run_dir)) == 2
    err = capsys.readouterr().err
    assert "no config.json in the directory" in err and str(qwen7b) in err
    hub_id = "sapo-tests/no-such-model"
    assert train.main(paper_argv(hub_id, data_dir, run_dir)) == 2
    err = capsys.readouterr().err
    assert hub_id in err and "hub cache" in err and "downloads nothing" in err
    assert not run_dir.exists()


def test_dry_run_flags_never_enter_the_recipe_and_need_dry_run():
    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--dry_run", "--gpu_memory_gb", "40", "--run_dir", "x",
                      "--accelerate_config", "configs/accelerate/single-gpu.yaml"])
    assert run.script.dry_run and run.script.gpu_memory_gb == 40
    assert not {"dry_run", "gpu_memory_gb", "accelerate_config"} & set(run.recipe)
    with pytest.raises(ValueError, match="read by --dry_run only"):
        parse_args(["--config", "configs/tiny-cpu.yaml", "--gpu_memory_gb", "40", "--run_dir", "x"])


@pytest.mark.parametrize(("values", "named"), [
    ({"num_processes": 0}, "num_processes must be an int >= 1, got 0"),
    ({"num_processes": True}, "num_processes must be an int >= 1, got bool True"),
    ({"num_processes": "2"}, "num_processes must be an int >= 1, got str '2'"),
    ({"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": "3"}}, "zero_stage must be one of"),
    ({"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 2.5}}, "zero_stage must be one of"),
    ({"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 4}}, "unknown zero_stage 4"),
])
def test_an_accelerate_config_value_is_read_as_written_or_refused_by_name(tmp_path, values, named):
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="^" + re.escape(f"accelerate_config {path}: {named}")):
        preflight.read_launch(str(path))
    ok = {**values, "num_processes": 2, "deepspeed_config": {"zero_stage": 3}}
    path.write_text(yaml.safe_dump(ok))
    assert preflight.read_launch(str(path)).num_processes == 2


@pytest.mark.slow
def test_batch_dry_run_plans_every_arm_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "batch"
    assert batch.main(["--config", "configs/tiny-cpu.yaml", "--out", str(out), "--gates", "clip,erf", "--seeds", "0,1",
                       "--dry_run"]) == 0
    text = capsys.readouterr().out
    for arm in ("clip-equal-seed0", "clip-equal-seed1", "erf-equal-seed0", "erf-equal-seed1"):
        assert f"== {arm}" in text
    assert text.count("400 prompts drawn") == 4 and not out.exists()


def test_paper_preset_is_table_2():
    recipe = yaml.safe_load((REPO_ROOT / "configs" / "paper-7b.yaml").read_text())
    table2 = {"model": "Qwen/Qwen2.5-7B-Instruct", "dataset": "mix", "learning_rate": 1e-6,
              "lr_scheduler_type": "linear", "warmup_steps": 0, "optim": "adamw_torch", "adam_beta1": 0.9,
              "adam_beta2": 0.999, "adam_epsilon": 1e-8, "bf16": True, "max_steps": 5000,
              "per_device_train_batch_size": 1, "gradient_accumulation_steps": 16, "num_generations": 8,
              "max_completion_length": 512, "max_prompt_length": 1536, "num_iterations": 2,
              "sapo_temperature_pos": 10.0, "sapo_temperature_neg": 12.0, "tau_convention": "equal",
              "epsilon": 0.2, "epsilon_high": 0.2, "format_reward": "graded"}
    assert {k: recipe.get(k) for k in table2} == table2
    run = parse_args(["--config", "configs/paper-7b.yaml", "--use_cpu", "true", "--run_dir", "x"])
    assert run.training.gate_taus() == (10.0, 12.0) and run.script.max_prompt_length == 1536
    text = (REPO_ROOT / "configs" / "paper-7b.yaml").read_text()
    for key in ("beta", "temperature", "seed", "heldout_benchmarks"):  # what the paper does not give
        line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
        assert "project's choice" in line, key


def test_the_trainer_scores_tokens_through_trls_chunked_head(tmp_path):
    from transformers import AutoTokenizer
    from trl.trainer import utils as trl_utils

    from sapo_core.data import synthetic_arithmetic
    from sapo_core.tiny import base_model_path
    from sapo_core.trainer import GatedGRPOConfig, GatedGRPOTrainer

    # the chunked head lives in GRPOTrainer's method; an override here would bypass it
    assert "_get_per_token_logps_and_entropies" not in GatedGRPOTrainer.__dict__
    args = GatedGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                           max_completion_length=8, use_cpu=True, report_to="none", gate="erf")
    trainer = GatedGRPOTrainer(model=str(base_model_path()), args=args,
                               reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                               train_dataset=synthetic_arithmetic(8, 0),
                               processing_class=AutoTokenizer.from_pretrained(base_model_path()))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = {"prompt_ids": torch.randint(5, 200, (4, 6)), "prompt_mask": torch.ones(4, 6, dtype=torch.long),
              "completion_ids": torch.randint(5, 200, (4, 8)), "completion_mask": torch.ones(4, 8, dtype=torch.long),
              "advantages": torch.tensor([1.0, -1.0, 0.5, -0.5]), "prompt_group": torch.zeros(4, dtype=torch.long)}
    with mock.patch.object(trl_utils, "_ChunkedLogProbFunction", wraps=trl_utils._ChunkedLogProbFunction) as head, \
            mock.patch.object(trainer.model, "forward", wraps=trainer.model.forward) as forward:
        trainer._compute_loss(trainer.model, inputs).backward()
    assert head.apply.call_count == 1
    assert forward.call_args.kwargs.get("fused_lm_head") is True


def test_gpu_check_dry_run_on_cpu(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = {**os.environ, "SAPO_WHEELS": str(wheels), "OUT_DIR": str(tmp_path / "out")}

    def dry():
        return subprocess.run(["bash", "tools/gpu_check.sh", "--dry"], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    assert dry().returncode == 2 and "requirements.txt is missing" in dry().stderr
    (wheels / "requirements.txt").write_text("trl==1.16.0\nmath-verify==0.9.0\n")
    (wheels / "trl-1.16.0-py3-none-any.whl").write_text("")
    done = dry()
    assert done.returncode == 2 and "no wheel for math-verify==0.9.0" in done.stderr  # named, exit 2
    (wheels / "math_verify-0.9.0-py3-none-any.whl").write_text("")
    done = dry()
    assert done.returncode == 0, done.stderr
    assert "2 pinned requirements found" in done.stdout
    for check in ("pytest -m gpu", "train clip", "train softsign", "bench_trainer.py --device cuda",
                  "bench_memory.py --device cuda"):
        assert check in done.stdout, check
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # --dry runs nothing
