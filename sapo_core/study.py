"""A gate study beyond the paper: gates, trust-region methods and temperatures as axes of one batch (`make study`).

    python -m sapo_core.study [--out runs/study-<time>] [--seeds 0,1] [--jobs 2] [--max_steps 24]

1. the batch (`sapo_core.batch`) on the tiny recipe (`configs/tiny-paper.yaml`): every arm of `STUDY_GATES` (the
   paper's gates, two Student-t gates, hard clipping and the trust-region methods of method §2.8) crossed with the
   temperature axis `STUDY_TAUS` (`--sweep sapo_temperature_pos,sapo_temperature_neg=...`; a method without
   temperatures runs once) and the seeds, into `<out>/batch/`;
2. notebook 06 on that batch: accuracy and EUR against tau per gate, accuracy against tail heaviness, the methods
   beside the gates and the aggregate table (method §5.2), its figures as `figures/study_*`.

`study_table` is what notebook 06 draws: one row per arm and temperature. Tail heaviness (method §2.6) puts every
gate on the Student-t axis 1/nu: a g' that decays like |z|^-p has heaviness 1/(p - 1), p = -d log g'/d log z at
z = `TAIL_Z` (Student-t: p = nu + 1, heaviness 1/nu; arctan 1, softsign 0.5; a Gaussian or exponential tail ~0).
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from sapo_core import batch, compare
from sapo_core import gates as G
from sapo_core.cli import ArgumentParser, guarded
from sapo_core.config import ConfigError
from sapo_core.demo import run_notebook
from sapo_core.paths import runs_dir

__all__ = ["RECIPE", "STUDY_GATES", "STUDY_TAUS", "TAIL_Z", "main", "study_table", "tail_heaviness"]

log = logging.getLogger(__name__)
RECIPE = "configs/tiny-paper.yaml"
STUDY_GATES = ("clip", "cispo", "delta", "sigmoid", "erf", "arctan", "softsign", "student_t:nu=4", "student_t:nu=16")
STUDY_TAUS = ((1.0, 1.05), (5.0, 6.0), (10.0, 12.0))  # the paper's tau = 1, 5 and its recipe's (10, 12)
TAIL_Z = 100.0


def tail_heaviness(gate: str | G.Gate) -> float:
    """1/(p - 1) for the tail exponent p = -d log g'/d log z at z = TAIL_Z (float64): 1/nu for Student-t."""
    gate = G.resolve_spec(gate) if isinstance(gate, str) else G.get_gate(gate)
    z = torch.tensor([TAIL_Z / 1.01, TAIL_Z * 1.01], dtype=torch.float64)
    w = gate.g_prime(z)
    if not bool((w > 0).all()):  # g' underflows float64 at z = 100: lighter than any power (Gaussian), 1/nu = 0
        return 0.0
    p = -float(torch.log(w[1] / w[0])) / math.log(1.01**2)
    return 1.0 / (p - 1.0) if p > 1.0 else math.inf  # p <= 1: x f'(x) does not vanish (not admissible)


def study_table(data: compare.BatchData, benchmark: str = "synthetic") -> pd.DataFrame:
    """One row per group (arm and sweep point): gate, kind (gate or method), tau_pos, tau_neg, tail heaviness,
    seeds, the evaluation's mean@n (mean, min, max over seeds) and EUR over the second half (mean over seeds)."""
    accuracy, eur = compare.accuracy(data, benchmark), compare.per_seed(data, "eur")
    rows = []
    for group in data.groups:
        row = next(r for r in data.runs if compare.group_label(data, r) == group)
        arm = compare.arm_of(data, row)
        method = G.is_method(arm.gate)
        means = [e["mean"] for e in accuracy[group]]
        rows.append({"arm": group, "gate": arm.gate, "kind": "method" if method else "gate",
                     "tau_pos": arm.tau_pos, "tau_neg": arm.tau_neg,
                     "tail_heaviness": math.nan if method else tail_heaviness(arm.gate), "seeds": len(means),
                     "accuracy": statistics.fmean(means) if means else math.nan,
                     "accuracy_min": min(means, default=math.nan), "accuracy_max": max(means, default=math.nan),
                     "eur": statistics.fmean(eur[group]) if eur[group] else math.nan})
    return pd.DataFrame(rows)


def batch_arguments(out: Path, seeds: str, jobs: int) -> batch.BatchArguments:
    """The study's batch: STUDY_GATES crossed with STUDY_TAUS (one joint temperature axis) and the seeds."""
    taus = ",".join(f"{p:g}:{n:g}" for p, n in STUDY_TAUS)
    return batch.BatchArguments(config=RECIPE, out=str(out), gates=";".join(STUDY_GATES), seeds=seeds, jobs=jobs,
                                sweep=[f"sapo_temperature_pos,sapo_temperature_neg={taus}"])


@guarded(batch.BatchError, ConfigError, FileExistsError, NotADirectoryError, PermissionError)
def main(argv: list[str] | None = None) -> int:
    """The CLI: a refused argument or output directory is one line `error: ...` and exit status 2."""
    parser = ArgumentParser(prog="python -m sapo_core.study", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="study directory (default: runs/study-<time>)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--max_steps", type=int, default=24, help="RL steps per run (the recipe has 40)")
    args = parser.parse_args(argv)
    if args.max_steps < 1:  # to TRL, -1 means "train for num_train_epochs" instead
        raise batch.BatchError(f"--max_steps {args.max_steps} must be >= 1 (RL steps per run)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    study_dir = (args.out or runs_dir() / time.strftime("study-%Y%m%d-%H%M%S")).resolve()
    if study_dir.exists():
        raise FileExistsError(f"--out {study_dir} exists; a study writes into a new directory (choose another)")
    # as make demo: the runs skip their own held-out checks (notebook 03 evaluates each trained model once)
    flags = ["--heldout_benchmarks", "", "--heldout_eval_steps", "0", "--max_steps", str(args.max_steps)]
    batch_dir = study_dir / "batch"
    batch_args = batch_arguments(batch_dir, args.seeds, args.jobs)
    specs = batch.plan(batch_args, flags)  # a bad arm or seed list is refused before anything runs
    start = time.perf_counter()
    log.info("study: %d runs into %s", len(specs), batch_dir)
    result = batch.run_batch(batch_args, flags)
    failed = [r for r in result["runs"] if r["status"] != "finished"]
    for r in failed:
        log.error("%s failed: %s", r["run"], r["error"])
    run_notebook("06_study.ipynb", study_dir / "06_study.ipynb", {"batch_dir": str(batch_dir), "save_figures": True})
    print(study_table(compare.load_batch(batch_dir)).round(3).to_string(index=False))
    log.info("study finished in %.0f s; everything in %s", time.perf_counter() - start, study_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
