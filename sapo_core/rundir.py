"""A training run's directory: its files, one owner at a time, and resume (method §7; see sapo_core.train).

    config.yaml  provenance.json  status.json  metrics.jsonl  checkpoints/  final/  summary.json  owner.json

`check_run_dir` decides, without writing anything, whether a run may start or resume there; `RunLock` makes the
directory one process's at a time; `RunFiles` keeps the files a resume rewrites so that a resume that fails before
its first step can put them back byte-identical; the rest reads and repairs `metrics.jsonl` and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core.config import REWARDS, RunConfig
from sapo_core.paths import UnreadableFileError, read_json, write_atomic, write_json
from sapo_core.provenance import git_commit, package_versions
from sapo_core.recipe import recipe_keys_differ

__all__ = ["PACKAGES", "REQUIRED_METRICS", "RUN_FILES", "RunDirError", "RunFiles", "RunLock", "check_run_dir",
           "holds_run", "missing_metrics", "prepare_run_dir", "provenance", "read_metrics", "summary_text",
           "write_run_files"]

log = logging.getLogger(__name__)

# Logged every step (method §4): the unconditional names of the registry, sapo_core.metrics.
REQUIRED_METRICS = M.required(REWARDS)
# What makes a directory hold a run (other files, e.g. the executed notebooks a batch keeps beside them, do not).
RUN_FILES = ("config.yaml", "provenance.json", "status.json", "metrics.jsonl", "checkpoints", "final", "summary.json")
PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "math-verify", "vllm", "deepspeed")


class RunDirError(RuntimeError):
    """The run directory is finished (never overwritten) or unfinished without --resume."""


# ---------------------------------------------------------------------------------------------
# Run directory and provenance
# ---------------------------------------------------------------------------------------------

def provenance(run: RunConfig) -> dict:
    """Everything needed to say what this run was (STYLE §9)."""
    args = run.training
    clip = G.is_method(args.gate)  # a trust-region method (clip among them, method §2.8): no temperature
    tau_pos, tau_neg = args.gate_taus()
    eps_high = args.epsilon if args.epsilon_high is None else args.epsilon_high  # TRL's default for epsilon_high
    formulas = (G.describe(args.gate, epsilon_low=args.epsilon, epsilon_high=eps_high) if clip
                else G.describe(args.gate))  # the gate's g' (or the method's rule) as text, method §2.3, §2.8
    return {
        "gate": args.gate, "gate_formulas": formulas, "tau_convention": None if clip else args.tau_convention,
        "tau_pos_base": args.sapo_temperature_pos, "tau_neg_base": args.sapo_temperature_neg,
        "tau_pos": None if clip else tau_pos, "tau_neg": None if clip else tau_neg,
        "epsilon_low": args.epsilon, "epsilon_high": args.epsilon_high,
        "level": args.importance_sampling_level, "aggregation": args.aggregation,
        "num_iterations": args.num_iterations, "seed": args.seed, "data_seed": args.data_seed,
        "model": run.script.model, "dataset": run.script.dataset, "config_file": run.config_path,
        "git": git_commit(), "versions": package_versions(PACKAGES), "command": sys.argv,
        "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _read_mapping(path: Path, what: str) -> dict:
    """A JSON/YAML file of a run directory that must hold a mapping; a named error otherwise."""
    if path.suffix == ".json":
        try:
            return read_json(path, what)
        except UnreadableFileError as err:
            raise RunDirError(f"{err}; the run directory is damaged: inspect it, or choose another --run_dir") \
                from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise RunDirError(f"{path} ({what}) cannot be read: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} ({what}) must hold a mapping, got {type(data).__name__}; the run directory is "
                          "damaged: inspect it, or choose another --run_dir")
    return data


class RunLock:
    """One process owns a run directory for the run's lifetime: an exclusive `flock` on `<run_dir>/.lock`
    (filelock), which the kernel releases when the owner exits in any way, `kill -9` included, so a lock
    left by a crash is never stale. `owner.json` beside it names the owner (pid, host, start time) for the
    message that refuses a second process; it is written by `claim`, once the directory's checks have passed,
    so that a refused command leaves it as it was."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.lock = FileLock(run_dir / ".lock", timeout=0)

    def acquire(self) -> None:
        """Take the run directory, or raise RunDirError naming its owner."""
        try:
            self.lock.acquire()
        except Timeout:
            owner = self.run_dir / "owner.json"
            try:
                who = json.loads(owner.read_text())
                named = f"pid {who['pid']} on {who['host']}, started {who['started']}"
            except (OSError, ValueError, KeyError, TypeError):
                named = "another process (owner.json unreadable)"
            raise RunDirError(f"{self.run_dir} is being trained right now by {named}; a run directory has one "
                              "owner at a time. Wait for it to end (or stop it), then --resume") from None

    def claim(self) -> None:
        """Name this process as the owner in owner.json (the lock is held)."""
        write_json(self.run_dir / "owner.json", {"pid": os.getpid(), "host": platform.node(),
                                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def release(self) -> None:
        """Give the run directory up (also done by the kernel when the process ends)."""
        if self.lock.is_locked:
            self.lock.release()


def _status(run_dir: Path) -> dict | None:
    path = run_dir / "status.json"
    return _read_mapping(path, "the run's status") if path.exists() else None


def holds_run(run_dir: Path) -> bool:
    """Whether a directory holds (part of) a run, as opposed to being new or empty."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def check_run_dir(run: RunConfig) -> str | None:
    """Check the run directory without writing anything; return the checkpoint to resume from (or None)."""
    run_dir, resume = run.run_dir, run.script.resume
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a directory; choose another --run_dir")
    if (run_dir / "checkpoints").exists() and not (run_dir / "checkpoints").is_dir():
        raise RunDirError(f"{run_dir / 'checkpoints'} is a file, where the run keeps its checkpoints directory; move "
                          "it away or choose another --run_dir")
    status = _status(run_dir)
    if status and status.get("state") == "finished":
        raise RunDirError(f"{run_dir} holds a finished run; it is never overwritten. Choose another --run_dir.")
    holds_work = holds_run(run_dir)
    if holds_work and not resume:
        how = f" ({status['state']}: {status['error']})" if status and status.get("error") else ""
        raise RunDirError(f"{run_dir} holds an unfinished run{how}; pass --resume to continue it or choose "
                          "another --run_dir")
    checkpoint = None
    if resume and holds_work:
        if not (run_dir / "config.yaml").exists():
            raise RunDirError(f"--resume: {run_dir} holds files but no config.yaml, so it cannot be checked that "
                              "this is the same run; nothing was changed. Restore config.yaml or choose another "
                              "--run_dir")
        previous = _read_mapping(run_dir / "config.yaml", "the run's config")
        changed = recipe_keys_differ(previous, run)
        if changed:
            raise RunDirError(f"--resume with a different config than {run_dir}/config.yaml (changed: "
                              f"{', '.join(changed)})")
        if (run_dir / "checkpoints").is_dir():
            checkpoint = _last_complete_checkpoint(run_dir / "checkpoints")
        if checkpoint is not None:
            _check_weights(Path(checkpoint))
        if (run_dir / "metrics.jsonl").exists():
            try:  # a corrupt line is refused before the run is claimed
                _metric_rows(run_dir / "metrics.jsonl")
            except ValueError as err:
                raise RunDirError(str(err)) from None
        previous_prov = run_dir / "provenance.json"
        if previous_prov.exists():
            _read_mapping(previous_prov, "the run's provenance")
    return checkpoint


def prepare_run_dir(run: RunConfig, num_processes: int = 1) -> str | None:
    """Check the run directory (check_run_dir), then write its config, provenance and status; return the
    checkpoint to resume from (or None). A refused run leaves the directory as it was."""
    checkpoint = check_run_dir(run)
    write_run_files(run, checkpoint, num_processes)
    return checkpoint


class RunFiles:
    """The bytes of the files a command writes into a run directory before training starts, taken before it
    writes them: a resume that fails before its first step puts them back, leaving the run as it was."""

    NAMES = ("owner.json", "config.yaml", "provenance.json", "status.json", "metrics.jsonl", "summary.base.json")

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.saved = {name: (run_dir / name).read_bytes() if (run_dir / name).is_file() else None
                      for name in self.NAMES}

    def restore(self) -> None:
        """Put every saved file back as it was (one that did not exist is removed)."""
        for name, data in self.saved.items():
            path = self.run_dir / name
            if data is None:
                path.unlink(missing_ok=True)
            elif not path.is_file() or path.read_bytes() != data:
                write_atomic(path, data)


def write_run_files(run: RunConfig, checkpoint: str | None, num_processes: int = 1) -> None:
    """Write the checked run directory's config.yaml, provenance.json and status.json; cut metrics.jsonl back to
    `checkpoint`."""
    run_dir, resume = run.run_dir, run.script.resume
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(run.recipe, sort_keys=False))
    prov = provenance(run)
    prov["num_processes"] = num_processes
    previous_prov = run_dir / "provenance.json"
    if resume and previous_prov.exists():  # keep how the run started; add how it was continued
        resumed = {k: prov[k] for k in ("command", "host", "started", "git", "versions", "num_processes")}
        prov = _read_mapping(previous_prov, "the run's provenance")
        prov.setdefault("resumes", []).append({**resumed, "resumed_from": checkpoint})
    else:
        prov["resumed_from"] = checkpoint
    write_json(run_dir / "provenance.json", prov)
    write_json(run_dir / "status.json", {"state": "running", "resumed_from": checkpoint})
    _truncate_metrics(run_dir / "metrics.jsonl", _checkpoint_step(checkpoint))


def _check_weights(checkpoint: Path) -> None:
    """Refuse a checkpoint whose weight files cannot be opened (their headers are read, not the tensors)."""
    from safetensors import safe_open

    for path in sorted(checkpoint.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:  # safetensors raises its own error type for every kind of damage
            raise RunDirError(f"--resume: {path} is damaged ({' '.join(str(err).split())[:120]}); remove "
                              f"{checkpoint} to resume from the one before, or choose another --run_dir") from None


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
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


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


def missing_metrics(rows: list[dict]) -> list[str]:
    """The REQUIRED_METRICS that the last logged row lacks (all of them when nothing was logged)."""
    return [key for key in REQUIRED_METRICS if not rows or key not in rows[-1]]


def summary_text(summary: dict) -> str:
    """A run's summary as printed by the CLI and notebook 02 (without the Trainer's own train_metrics)."""
    return json.dumps({k: v for k, v in summary.items() if k != "train_metrics"}, indent=2, default=str)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (a row still being written is left out)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (no logged step yet?)")
    return _metric_rows(path)
