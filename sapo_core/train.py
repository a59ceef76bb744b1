"""Train a policy with one gate: `python -m sapo_core.train`.

    python -m sapo_core.train --recipe configs/tiny-cpu.yaml --gate erf --seed 0 [--run-dir DIR] [--resume] \
        [key=value ...]
    accelerate launch --config_file configs/accelerate/zero3-8gpu.yaml -m sapo_core.train \
        --recipe configs/paper-7b.yaml --gate arctan --seed 0

The run directory (default `runs/<recipe>/<gate>-<tau convention>-seed<seed>`) is self-describing:

    config.yaml        the resolved TrainConfig
    provenance.json    gate, tau (base and as run) and convention, num_iterations, seed, git commit,
                       package versions, command line, start time
    metrics.jsonl      one JSON line per logged step (REQUIRED_METRICS and more)
    checkpoints/       TRL/transformers checkpoints (resume with --resume)
    final/             the trained model and tokenizer
    summary.json       final metrics (and, for the synthetic task, greedy held-out accuracy before/after)
    status.json        {"state": "running" | "interrupted" | "failed" | "finished", "error": ..., ...}

A finished run directory is never overwritten; an unfinished one is continued only with --resume.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml
from transformers import TrainerCallback

from sapo_core.config import ConfigError, TrainConfig, load_config
from sapo_core.data import DatasetFormatError, DataUnavailableError
from sapo_core.paths import REPO_ROOT, runs_dir

__all__ = ["REQUIRED_METRICS", "RunDirError", "cpu_processes", "default_run_dir", "prepare_run_dir", "provenance",
           "train", "read_metrics", "main"]

log = logging.getLogger(__name__)

# Logged every step (SPEC §4). TRL's names for reward, entropy and length; ours for ratio and gate weight.
REQUIRED_METRICS = (
    "step", "loss", "learning_rate", "reward", "reward_std", "rewards/format_reward/mean",
    "rewards/correctness_reward/mean", "entropy", "completions/mean_length",
    "ratio/mean", "ratio/std", "ratio/var", "ratio/min", "ratio/max", "ratio/p01", "ratio/p99",
    "ratio/outside_clip_frac", "gate_weight/mean", "gate_weight/low_frac", "tokens/count",
)
PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "math-verify", "vllm", "deepspeed")


class RunDirError(RuntimeError):
    """The run directory is finished (never overwritten) or unfinished without --resume."""


# ---------------------------------------------------------------------------------------------
# Run directory and provenance
# ---------------------------------------------------------------------------------------------

def default_run_dir(cfg: TrainConfig, recipe_name: str = "custom") -> Path:
    """runs/<recipe>/<gate>-<tau convention>-seed<seed>."""
    return runs_dir() / recipe_name / f"{cfg.gate}-{cfg.tau_convention}-seed{cfg.seed}"


def _git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(cfg: TrainConfig, recipe: str | None) -> dict:
    """Everything needed to say what this run was (STYLE §9)."""
    tau_pos, tau_neg = cfg.gate_taus()
    return {
        "gate": cfg.gate, "tau_convention": cfg.tau_convention if cfg.gate != "clip" else None,
        "tau_pos_base": cfg.tau_pos, "tau_neg_base": cfg.tau_neg,
        "tau_pos": tau_pos if cfg.gate != "clip" else None, "tau_neg": tau_neg if cfg.gate != "clip" else None,
        "epsilon_low": cfg.epsilon_low, "epsilon_high": cfg.epsilon_high,
        "level": cfg.level, "aggregation": cfg.aggregation, "num_iterations": cfg.num_iterations,
        "seed": cfg.seed, "model": cfg.model, "dataset": cfg.dataset, "recipe": recipe,
        "git": _git_commit(), "versions": _versions(), "command": sys.argv,
        "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # atomic: a crash never leaves half a file


def _status(run_dir: Path) -> dict | None:
    path = run_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


def prepare_run_dir(run_dir: Path, cfg: TrainConfig, *, resume: bool, recipe: str | None,
                    num_processes: int = 1) -> str | None:
    """Create or check the run directory; return the checkpoint to resume from (or None)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a directory; choose another --run-dir")
    status = _status(run_dir)
    if status and status.get("state") == "finished":
        raise RunDirError(f"{run_dir} holds a finished run; it is never overwritten. Choose another --run-dir.")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        how = f" ({status['state']}: {status['error']})" if status and status.get("error") else ""
        raise RunDirError(f"{run_dir} holds an unfinished run{how}; pass --resume to continue it or choose "
                          "another --run-dir")
    checkpoint = None
    if resume and (run_dir / "config.yaml").exists():
        previous = yaml.safe_load((run_dir / "config.yaml").read_text())
        if previous != cfg.to_dict():
            changed = sorted(k for k in previous.keys() | cfg.to_dict().keys()
                             if previous.get(k) != cfg.to_dict().get(k))
            raise RunDirError(f"--resume with a different config than {run_dir}/config.yaml (changed: {', '.join(changed)})")
        if (run_dir / "checkpoints").is_dir():
            checkpoint = _last_complete_checkpoint(run_dir / "checkpoints")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    prov = provenance(cfg, recipe)
    prov["num_processes"] = num_processes
    previous_prov = run_dir / "provenance.json"
    if resume and previous_prov.exists():  # keep how the run started; add how it was continued
        resumed = {k: prov[k] for k in ("command", "host", "started", "git", "versions", "num_processes")}
        prov = json.loads(previous_prov.read_text())
        prov.setdefault("resumes", []).append({**resumed, "resumed_from": checkpoint})
    else:
        prov["resumed_from"] = checkpoint
    _write_json(run_dir / "provenance.json", prov)
    _write_json(run_dir / "status.json", {"state": "running", "resumed_from": checkpoint})
    _truncate_metrics(run_dir / "metrics.jsonl", _checkpoint_step(checkpoint))
    return checkpoint


def _checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def _metric_rows(path: Path) -> list[dict]:
    """Parse metrics.jsonl. A last line without its newline is a write cut short (a killed process, or a
    row being written right now) and is left out; any other line that does not parse is an error."""
    text = path.read_text()
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number} is not a JSON object ({err.msg}): {line[:80]!r}") from None
    if torn.strip():
        log.warning("%s: ignoring an incomplete last line (%d characters)", path, len(torn))
    return rows


def _truncate_metrics(path: Path, keep_until: int) -> None:
    """Drop metric lines after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    rows = [row for row in _metric_rows(path) if row.get("step", 0) <= keep_until]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, path)


def _last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint-N that was written to the end. The Trainer writes trainer_state.json after
    the weights, optimizer and RNG states, so a checkpoint without it was cut short and is skipped."""
    found = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*")
                   if p.is_dir() and p.name.split("-")[1].isdigit())
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            log.warning("skipping %s: incomplete (no readable trainer_state.json), cut short by a crash", path)
    return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (a row still being written is left out)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (no logged step yet?)")
    return _metric_rows(path)


# ---------------------------------------------------------------------------------------------
# Model, data, rewards
# ---------------------------------------------------------------------------------------------

def model_path(cfg: TrainConfig) -> str:
    """The checkpoint to start from: the embedded tiny model or a hub id / path."""
    if cfg.model == "tiny":
        from sapo_core.tiny import base_model_path
        return str(base_model_path())
    if cfg.model.startswith(("/", ".", "~")) and not Path(cfg.model).expanduser().is_dir():
        raise ConfigError(f"model={cfg.model!r} is not a directory (a local checkpoint must be one; a hub id "
                          "looks like 'Qwen/Qwen2.5-7B-Instruct')")
    return str(Path(cfg.model).expanduser()) if cfg.model.startswith("~") else cfg.model


def datasets_for(cfg: TrainConfig):
    """(train dataset, held-out dataset or None) for the recipe's task."""
    from sapo_core import data

    if cfg.dataset == "synthetic":
        task = {"max_steps": cfg.synthetic_max_steps, "max_operand": cfg.synthetic_max_operand}
        train_ds = data.synthetic_arithmetic(cfg.train_size, cfg.data_seed, split="train", **task)
        heldout = data.synthetic_arithmetic(cfg.eval_size, cfg.data_seed, split="test", **task)
        return train_ds.remove_columns(["solution"]), heldout
    if cfg.dataset == "mix":
        return data.training_mix(cfg.train_size, cfg.data_seed, data_dir=cfg.data_dir), None
    train_ds = data.gsm8k("train", data_dir=cfg.data_dir)
    return train_ds.shuffle(seed=cfg.data_seed).select(range(min(cfg.train_size, len(train_ds)))), None


def reward_functions(cfg: TrainConfig) -> tuple[list, list[float]]:
    """[format_reward, correctness_reward] with their weights: R = w_f R_format + w_c R_correct (SPEC eq. 9)."""
    from sapo_core.rewards import correctness_reward, format_reward
    return [format_reward, correctness_reward], [cfg.format_weight, cfg.correctness_weight]


def grpo_args(cfg: TrainConfig, run_dir: Path):
    """The GatedGRPOConfig (TRL arguments) for this TrainConfig."""
    from sapo_core.trainer import GatedGRPOConfig

    model_init_kwargs = {"dtype": "bfloat16"} if cfg.bf16 else {"dtype": "float32"}
    return GatedGRPOConfig(
        output_dir=str(run_dir / "checkpoints"), seed=cfg.seed, data_seed=cfg.data_seed,
        gate=cfg.gate, tau_convention=cfg.tau_convention, aggregation=cfg.aggregation,
        log_ratio_clamp=cfg.log_ratio_clamp, sapo_temperature_pos=cfg.tau_pos, sapo_temperature_neg=cfg.tau_neg,
        epsilon=cfg.epsilon_low, epsilon_high=cfg.epsilon_high, importance_sampling_level=cfg.level,
        max_steps=cfg.max_steps, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, steps_per_generation=cfg.steps_per_generation,
        num_iterations=cfg.num_iterations, beta=cfg.beta, temperature=cfg.temperature, top_p=cfg.top_p,
        scale_rewards=cfg.scale_rewards, bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
        use_vllm=cfg.use_vllm, vllm_mode=cfg.vllm_mode, vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_importance_sampling_correction=cfg.vllm_importance_sampling_correction,
        model_init_kwargs=model_init_kwargs, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, report_to=cfg.report_to or "none",
        log_completions=cfg.log_completions, reward_weights=[cfg.format_weight, cfg.correctness_weight],
        disable_tqdm=False, dataloader_num_workers=0,
        use_cpu=cpu_processes(),
    )


def cpu_processes() -> bool:
    """Whether this is one of several processes on a machine without CUDA.

    Such ranks (torchrun, or `accelerate launch --multi_gpu` on a CPU machine) join over gloo only as
    CPU processes; a single process keeps transformers' own device choice (CUDA, MPS or CPU).
    """
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


class MetricsFile(TrainerCallback):
    """Writes each training log as one JSON line of run_dir/metrics.jsonl (main process only)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")
            fh.flush()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, recipe: str | None = None,
          callbacks: list | None = None) -> dict:
    """Train with `cfg` into `run_dir`; return the summary written to summary.json."""
    from accelerate import PartialState
    from transformers import AutoTokenizer, set_seed

    from sapo_core.tiny import greedy_accuracy
    from sapo_core.trainer import GatedGRPOTrainer

    run_dir = Path(run_dir)
    args = grpo_args(cfg, run_dir)
    # The process group comes from the training arguments: a PartialState made before them does not
    # see a torchrun CPU launch (it needs cpu=True) and would make every rank the main process.
    _ = args.device
    state = PartialState()
    launched = os.environ.get("WORLD_SIZE")
    if launched is not None and int(launched) != state.num_processes:
        raise ConfigError(f"launched as {launched} processes (WORLD_SIZE) but the process group has "
                          f"{state.num_processes}; every rank would train alone. Launch with torchrun or "
                          "`accelerate launch --multi_gpu`")
    # Inputs first: a model or dataset that cannot be loaded leaves no run directory behind.
    set_seed(cfg.seed)
    path = model_path(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:  # not found / not reachable; a directory without a tokenizer
        raise ConfigError(f"model={cfg.model!r} cannot be loaded: {str(err).splitlines()[0]}") from None
    try:
        train_ds, heldout = datasets_for(cfg)
    except FileNotFoundError as err:  # a local data directory without the file
        raise ConfigError(f"dataset={cfg.dataset!r}: {err}") from None
    rewards, _ = reward_functions(cfg)

    checkpoint = None
    if state.is_main_process:
        checkpoint = prepare_run_dir(run_dir, cfg, resume=resume, recipe=recipe, num_processes=state.num_processes)
    state.wait_for_everyone()
    if not state.is_main_process and resume:
        checkpoint = json.loads((run_dir / "status.json").read_text())["resumed_from"]

    try:
        trainer = GatedGRPOTrainer(model=path, reward_funcs=rewards, args=args,
                                   train_dataset=train_ds, processing_class=tokenizer,
                                   callbacks=[MetricsFile(run_dir / "metrics.jsonl"), *(callbacks or [])])
        summary: dict = {"run_dir": str(run_dir), "gate": cfg.gate, "seed": cfg.seed}
        if heldout is not None and state.is_main_process and checkpoint is None:  # the trainer holds the base model
            summary["heldout_base"] = greedy_accuracy(trainer.model, tokenizer, heldout,
                                                      max_new_tokens=cfg.max_completion_length)
        start = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=checkpoint)
        summary["train_runtime_s"] = time.perf_counter() - start
        summary["train_metrics"] = result.metrics
        trainer.save_model(str(run_dir / "final"))
        if state.is_main_process:
            tokenizer.save_pretrained(str(run_dir / "final"))
            if heldout is not None:
                summary["heldout_final"] = greedy_accuracy(trainer.model, tokenizer, heldout,
                                                           max_new_tokens=cfg.max_completion_length)
                if "heldout_base" in summary:
                    summary["heldout_gain"] = (summary["heldout_final"]["greedy_accuracy"]
                                               - summary["heldout_base"]["greedy_accuracy"])
            _write_json(run_dir / "summary.json", summary)
            _write_json(run_dir / "status.json", {"state": "finished", "resumed_from": checkpoint,
                                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except BaseException as err:  # recorded for whoever looks at the run directory next; never swallowed
        if state.is_main_process:
            _write_json(run_dir / "status.json", {
                "state": "interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                "error": f"{type(err).__name__}: {err}", "resumed_from": checkpoint,
                "stopped": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        raise
    state.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sapo_core.train", description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="YAML recipe (path, or name under configs/)")
    parser.add_argument("--gate", help="gate name or 'clip' (overrides the recipe)")
    parser.add_argument("--seed", type=int, help="seed (overrides the recipe)")
    parser.add_argument("--run-dir", type=Path, help="run directory (default runs/<recipe>/<gate>-<conv>-seed<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue an unfinished run from its last checkpoint")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of TrainConfig fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.gate is not None:
        overrides.append(f"gate={args.gate}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    try:
        cfg = load_config(args.recipe, overrides)
        recipe_name = Path(args.recipe).stem
        run_dir = args.run_dir or default_run_dir(cfg, recipe_name)
        summary = train(cfg, run_dir, resume=args.resume, recipe=str(args.recipe))
    except (ConfigError, RunDirError, DataUnavailableError, DatasetFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "train_metrics"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
