"""Train a policy with one gate: `python -m sapo_core.train`.

    python -m sapo_core.train --config configs/tiny-cpu.yaml --gate erf --seed 0 [--run_dir DIR] [--resume] \
        [--learning_rate 1e-4 ...]
    accelerate launch --config_file configs/accelerate/zero3-8gpu.yaml -m sapo_core.train \
        --config configs/paper-7b.yaml --gate arctan --seed 0

Every flag is a field of `sapo_core.config.GatedGRPOConfig` (TRL's GRPOConfig plus the gate) or of
`ScriptArguments`; the config file sets their defaults (`python -m sapo_core.train --help` lists them).
The run directory (default `runs/<config name>/<gate>-<tau convention>-seed<seed>`) is self-describing:

    config.yaml        the recipe as run: the keys set by the config file and the flags, parsed
    provenance.json    gate, tau (base and as run) and convention, num_iterations, seed, git commit,
                       package versions, command line, start time (and each resume)
    metrics.jsonl      one JSON line per logged step (REQUIRED_METRICS and more)
    tb/                with report_to tensorboard: the same logs as TensorBoard event files (TensorBoardLog)
    checkpoints/       TRL/transformers checkpoints (resume with --resume)
    final/             the trained model and tokenizer
    summary.json       final metrics and the held-out check before/after (heldout_benchmarks; the base's also
                       in summary.base.json, so that a resumed run still reports its gain)
    status.json        {"state": "running" | "interrupted" | "failed" | "finished", "error": ..., ...}

A finished run directory is never overwritten; an unfinished one is continued only with --resume. A refused
command changes no file of it, and a resume that fails before its first step (a damaged checkpoint, Ctrl-C while it
loads) puts back the files it had written (RunFiles), leaving the run byte-identical.
`--dry_run` prints the plan and a per-GPU memory estimate instead, and writes nothing (sapo_core.preflight).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from sapo_core.cli import fail, guarded
from sapo_core.config import ConfigError, RunConfig, ScriptArguments
from sapo_core.data import DatasetFormatError, DataUnavailableError
from sapo_core.paths import UnreadableFileError, read_json, write_json
from sapo_core.preflight import offline, plan_text, prompt_lengths
from sapo_core.recipe import parse_args, print_help
from sapo_core.rundir import (
    REQUIRED_METRICS,
    RunDirError,
    RunFiles,
    RunLock,
    check_run_dir,
    holds_run,
    missing_metrics,
    prepare_run_dir,
    provenance,
    read_metrics,
    summary_text,
    write_run_files,
)

__all__ = ["REQUIRED_METRICS", "RunDirError", "RunFiles", "RunLock", "check_run_dir", "launch", "missing_metrics",
           "prepare_run_dir", "provenance", "HeldoutCurve", "heldout_metrics", "train", "read_metrics", "summary_text",
           "main", "TENSORBOARD_DIR", "TensorBoardLog"]

log = logging.getLogger(__name__)
TENSORBOARD_DIR = "tb"  # report_to tensorboard: the event files, inside the run directory

# ---------------------------------------------------------------------------------------------
# Model, data, rewards
# ---------------------------------------------------------------------------------------------

def model_path(script: ScriptArguments) -> str:
    """The checkpoint to start from: the embedded tiny model or a hub id / path."""
    if script.model == "tiny":
        from sapo_core.tiny import base_model_path
        return str(base_model_path())
    if script.model.startswith(("/", ".", "~")) and not Path(script.model).expanduser().is_dir():
        raise ConfigError(f"model={script.model!r} is not a directory (a local checkpoint must be one; a hub id "
                          "looks like 'Qwen/Qwen2.5-7B-Instruct')")
    return str(Path(script.model).expanduser()) if script.model.startswith("~") else script.model


def datasets_for(script: ScriptArguments, data_seed: int):
    """The training dataset of the recipe's task."""
    from sapo_core import data

    if script.dataset == "synthetic":
        task = {"max_steps": script.synthetic_max_steps, "max_operand": script.synthetic_max_operand}
        return data.synthetic_arithmetic(script.train_size, data_seed, split="train", **task).remove_columns(
            ["solution"])
    if script.dataset == "mix":
        return data.training_mix(script.train_size, data_seed, data_dir=script.data_dir)
    train_ds = data.gsm8k("train", data_dir=script.data_dir)
    return train_ds.shuffle(seed=data_seed).select(range(min(script.train_size, len(train_ds))))


def drop_long_prompts(dataset, tokenizer, max_prompt_length: int | None):
    """The dataset without the prompts longer than max_prompt_length tokens (TRL 1.16 has no such limit; a
    truncated problem would be another problem, so over-long prompts are dropped, never cut)."""
    if max_prompt_length is None:
        return dataset
    keep = [i for i, n in enumerate(prompt_lengths(dataset, tokenizer)) if n <= max_prompt_length]
    if not keep:
        raise ConfigError(f"max_prompt_length={max_prompt_length}: every one of the {len(dataset)} training prompts "
                          "is longer (see --dry_run)")
    if len(keep) < len(dataset):
        log.warning("max_prompt_length=%d: dropped %d of %d training prompts", max_prompt_length,
                    len(dataset) - len(keep), len(dataset))
    return dataset.select(keep)


def dry_run(run: RunConfig) -> int:
    """--dry_run: print the run's plan (sapo_core.preflight); no weights loaded, nothing written, nothing downloaded.
    Returns 0, or 2 when the plan cannot train; a missing model config or data file raises (ConfigError,
    DataUnavailableError)."""
    path = model_path(run.script)
    try:
        with offline():
            train_ds = datasets_for(run.script, run.training.data_seed)
    except (FileNotFoundError, ValueError) as err:  # a missing file; a bad or too small one (train_size)
        raise ConfigError(f"dataset={run.script.dataset!r}: {err}") from None
    text, refusals = plan_text(run, path, train_ds)
    print(text)
    return fail("; ".join(refusals)) if refusals else 0


def heldout_check(model, tokenizer, run: RunConfig, *, seed: int = 0, greedy: bool | None = None) -> dict:
    """The recipe's held-out check (method §6) of an in-memory model: per benchmark, mean@n at
    heldout_temperature with its interval, and greedy accuracy when `greedy` (default heldout_greedy), on the
    synthetic task's validation split (method §3.3; the test split is evaluate's, for reported numbers). Sampling
    seed 0 before and after training, so the base and the trained model (and every gate) are sampled alike; during
    training (HeldoutCurve) the seed is the step. The caller's RNG is left as it was."""
    from sapo_core.evaluate import evaluate

    script = run.script
    greedy = script.heldout_greedy if greedy is None else greedy
    names = [b.strip() for b in script.heldout_benchmarks.split(",") if b.strip()]
    common = {"tokenizer": tokenizer, "backend": "hf", "synthetic": run.synthetic_task("validation"),
              "data_dir": script.data_dir, "max_new_tokens": run.training.max_completion_length, "seed": seed,
              "progress": False}
    sampled = evaluate(model, names, n=script.heldout_n, temperature=script.heldout_temperature, **common).results
    greedy = evaluate(model, names, temperature=0.0, **common).results if greedy else None
    out = {}
    for name in names:
        m = sampled["benchmarks"][name]
        out[name] = {"mean@n": m["mean@n"], "mean@n_ci95": m["mean@n_ci95"], "n": m["n"],
                     "temperature": script.heldout_temperature, "format_rate": m["format_rate"],
                     "problems": m["n_problems"]}
        if greedy is not None:
            out[name]["greedy"] = greedy["benchmarks"][name]["mean@n"]
    return out


def heldout_metrics(check: dict) -> dict:
    """A held-out check as metrics: per benchmark heldout/<name>/mean@n with its 95% interval and the format rate
    (names registered in sapo_core.metrics, group "heldout")."""
    out = {}
    for name, m in check.items():
        low, high = m["mean@n_ci95"] or (None, None)
        out.update({f"heldout/{name}/mean@n": m["mean@n"], f"heldout/{name}/mean@n_low": low,
                    f"heldout/{name}/mean@n_high": high, f"heldout/{name}/format_rate": m["format_rate"]})
    return out


class HeldoutCurve(TrainerCallback):
    """Accuracy over training (method §6): at every heldout_eval_steps-th optimizer step and at the last, the
    held-out check's sampled mean@n (heldout_n samples at heldout_temperature, no greedy pass) joins that step's
    logged row (heldout_metrics; a multiple of logging_steps, so the step is logged), on the main process. Seeded
    with the step, so that a resumed run draws the same samples; logged before the step's checkpoint, so that a
    resume from it keeps the row (sapo_core.rundir). Like the before/after check, it evaluates the main process's
    whole model with the hf backend (not for ZeRO-3 or FSDP, whose main process holds a shard). Placed before
    MetricsFile, whose row it completes."""

    def __init__(self, run: RunConfig, tokenizer):
        self.run, self.tokenizer = run, tokenizer
        self.every = run.script.heldout_eval_steps
        self.pending: tuple[int, dict] | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not state.is_world_process_zero or not (step % self.every == 0 or step >= state.max_steps):
            return
        start = time.perf_counter()
        check = heldout_check(model, self.tokenizer, self.run, seed=step, greedy=False)
        log.info("held-out check at step %d: %s (%.1f s)", step,
                 ", ".join(f"{name} mean@n {m['mean@n']:.3f}" for name, m in check.items()),
                 time.perf_counter() - start)
        self.pending = (step, heldout_metrics(check))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pending is not None and logs is not None and "train_runtime" not in logs \
                and self.pending[0] == state.global_step:
            logs.update(self.pending[1])
            self.pending = None


class StepTaken(TrainerCallback):
    """Notes that this command's first training step has ended (before its metrics and checkpoint are written)."""

    def __init__(self):
        self.taken = False

    def on_step_end(self, args, state, control, **kwargs):
        self.taken = True


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


class TensorBoardLog(TensorBoardCallback):
    """report_to tensorboard: transformers' callback (tags `train/<metric name>`) writing into <run_dir>/tb, so that
    `tensorboard --logdir` over a batch shows one run per arm, named by its directory. Its writer opens at this
    command's first log (a resume that fails before its first step leaves no file), and a resumed run hides the
    events logged after its checkpoint by the attempt that crashed (SummaryWriter's purge_step), as metrics.jsonl
    drops their rows."""

    def __init__(self, log_dir: Path):
        super().__init__()
        self.logging_dir = str(log_dir)
        self.purge_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.purge_step = state.global_step + 1 if state.global_step else None  # resumed from that step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter  # the tracking extra (sapo_core.config._check_trackers)
            self.tb_writer = SummaryWriter(self.logging_dir, purge_step=self.purge_step)
            self.purge_step = None
        super().on_log(args, state, control, logs=logs, **kwargs)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def train(run: RunConfig, *, callbacks: list | None = None) -> dict:
    """Train the parsed run into its run directory; return the summary written to summary.json."""
    from accelerate import PartialState
    from transformers import AutoTokenizer, set_seed

    from sapo_core.rewards import FORMAT_REWARDS, correctness_reward
    from sapo_core.rewards.grading import default_num_workers
    from sapo_core.trainer import GatedGRPOTrainer

    script, args, run_dir = run.script, run.training, run.run_dir
    if script.dry_run:
        raise ConfigError("dry_run=true: train() trains; the plan is printed by dry_run(run)")
    # The process group comes from the training arguments: a PartialState made before them does not
    # see a torchrun CPU launch (it needs cpu=True) and would make every rank the main process.
    _ = args.device
    state = PartialState()
    launched = os.environ.get("WORLD_SIZE")
    if launched is not None and int(launched) != state.num_processes:
        raise ConfigError(f"launched as {launched} processes (WORLD_SIZE) but the process group has "
                          f"{state.num_processes}; every rank would train alone. Launch with torchrun or "
                          "`accelerate launch --multi_gpu`")
    # Inputs first: a model, dataset or grader that cannot be set up leaves no run directory behind.
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm=true needs vLLM, which is not installed: it is in the GPU extra "
                          "(pip install -e '.[gpu]' or environment.yml)")
    try:
        default_num_workers()  # SAPO_REWARD_WORKERS, read here rather than at the first reward
    except ValueError as err:
        raise ConfigError(str(err)) from None
    set_seed(args.seed)
    path = model_path(script)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:  # not found / not reachable; a directory without a tokenizer
        raise ConfigError(f"model={script.model!r} cannot be loaded: {str(err).splitlines()[0]}") from None
    try:
        train_ds = datasets_for(script, args.data_seed)
    except FileNotFoundError as err:  # a local data directory without the file
        raise ConfigError(f"dataset={script.dataset!r}: {err}") from None
    train_ds = drop_long_prompts(train_ds, tokenizer, script.max_prompt_length)

    checkpoint, lock, resuming = None, None, False
    if state.is_main_process:
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"{run_dir} exists and is not a directory; choose another --run_dir")
        made = [p for p in (run_dir, run_dir / ".lock") if not p.exists()]  # removed again if the run is refused
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a parent that is a file, no permission, a read-only disk
            raise RunDirError(f"run directory {run_dir} cannot be created: {err.strerror or err}") from None
        lock = RunLock(run_dir)
        before = None
        try:
            lock.acquire()  # before anything in the directory is read or written
            checkpoint = check_run_dir(run)  # reads only
            before = RunFiles(run_dir)
            resuming = holds_run(run_dir)
            lock.claim()
            write_run_files(run, checkpoint, num_processes=state.num_processes)
        except BaseException:
            if before is not None:
                before.restore()
            lock.release()
            if (run_dir / ".lock") in made:
                (run_dir / ".lock").unlink()
            if run_dir in made and not any(run_dir.iterdir()):  # a refused new run leaves no directory behind
                run_dir.rmdir()
            raise
    state.wait_for_everyone()
    if not state.is_main_process and script.resume:
        checkpoint = read_json(run_dir / "status.json", "the run's status")["resumed_from"]
    started = StepTaken()

    try:
        # method §3: R = w_f R_format + w_c R_correct, the weights being TRL's reward_weights
        # R_format is eq. 10's graded reward or the binary one (recipe key format_reward); either is logged
        # as rewards/format_reward/mean
        format_reward = FORMAT_REWARDS[script.format_reward]
        curve = [HeldoutCurve(run, tokenizer)] if script.heldout_eval_steps else []
        trainer = GatedGRPOTrainer(model=path, reward_funcs=[format_reward, correctness_reward], args=args,
                                   train_dataset=train_ds, processing_class=tokenizer,
                                   callbacks=[started, *curve, MetricsFile(run_dir / "metrics.jsonl"),
                                              *(callbacks or [])])
        if "tensorboard" in args.report_to:  # transformers' own callback, replaced by one after HeldoutCurve
            trainer.remove_callback(TensorBoardCallback)
            trainer.add_callback(TensorBoardLog(run_dir / TENSORBOARD_DIR))
        summary: dict = {"run_dir": str(run_dir), "gate": args.gate, "seed": args.seed}
        check = bool(script.heldout_benchmarks.strip())
        if check and state.is_main_process and checkpoint is None:  # the trainer holds the base model
            summary["heldout_base"] = heldout_check(trainer.model, tokenizer, run)
            write_json(run_dir / "summary.base.json", summary["heldout_base"])  # kept for a resumed run
        start = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=checkpoint)
        summary["train_runtime_s"] = time.perf_counter() - start
        summary["train_metrics"] = result.metrics
        trainer.save_model(str(run_dir / "final"))
        if state.is_main_process:
            tokenizer.save_pretrained(str(run_dir / "final"))
            if check:
                summary["heldout_final"] = heldout_check(trainer.model, tokenizer, run)
                if "heldout_base" not in summary and (run_dir / "summary.base.json").exists():
                    summary["heldout_base"] = read_json(run_dir / "summary.base.json", "the base's held-out check")
                if "heldout_base" in summary:
                    summary["heldout_gain"] = {
                        name: {"mean@n": final["mean@n"] - summary["heldout_base"][name]["mean@n"],
                               **({"greedy": final["greedy"] - summary["heldout_base"][name]["greedy"]}
                                  if "greedy" in final else {})}
                        for name, final in summary["heldout_final"].items()}
            write_json(run_dir / "summary.json", summary)
            write_json(run_dir / "status.json", {"state": "finished", "resumed_from": checkpoint,
                                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except BaseException as err:  # recorded for whoever looks at the run directory next; never swallowed
        if state.is_main_process and resuming and not started.taken:  # a resume that failed: the run as it was
            before.restore()
            log.warning("the resume failed before its first step; %s is left as it was", run_dir)
        elif state.is_main_process:
            write_json(run_dir / "status.json", {
                "state": "interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                "error": f"{type(err).__name__}: {err}", "resumed_from": checkpoint,
                "stopped": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        raise
    finally:
        if lock is not None:
            lock.release()
    state.wait_for_everyone()
    return summary


def launch(argv: list[str], accelerate_config: str) -> dict:
    """Train through `accelerate launch --config_file <accelerate_config> -m sapo_core.train <argv>` (several
    processes, e.g. all GPUs of a node) and return the run's summary; a failure raises with the output's tail."""
    run = parse_args(argv)  # refused here, in this process, before any launch
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
           "-m", "sapo_core.train", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return read_json(run.run_dir / "summary.json", "the run's summary")


@guarded(ConfigError, RunDirError, UnreadableFileError, DataUnavailableError, DatasetFormatError)
def main(argv: list[str] | None = None) -> int:
    """The CLI: parse, train, print the summary; a refused input is one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = parse_args(argv)
    if run.script.dry_run:
        return dry_run(run)
    summary = train(run)
    print(summary_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
