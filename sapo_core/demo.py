"""`make demo` and `make paper`: the whole pipeline on the embedded default, on CPU, in minutes.

    python -m sapo_core.demo [--paper] [--out runs/demo-<time>] [--gates clip,sigmoid,erf,arctan,softsign]
                             [--seeds 0,1,2] [--jobs 2] [--max_steps 24]

1. notebook 01 (gate properties): Figure 1 into `figures/`;
2. the batch (`sapo_core.batch`): notebooks 02 (train) and 03 (evaluate) per arm and seed on the tiny recipe at the
   paper's settings (`configs/tiny-paper.yaml`: tau (10, 12), graded format reward, num_iterations 2), into
   `<out>/batch/`; with `--paper` also erf at the other temperatures of the paper's Figures 2 and 5
   (`paper.ERF_SWEEP`, arms `erf@POS:NEG`) and the gates of the tail-shape claims also at width_matched tau
   (`claims.width_matched_gates`), which those claims are judged at; the plain demo leaves those claims to
   `make paper` and says so in its summary;
3. the base model evaluated like the runs, into `<out>/batch/base/` (Table 1's first row);
4. notebook 04 (compare) on that batch: its figures in `<out>/batch/figures/` and `figures/compare_*`;
5. notebook 05 (paper): Figures 3 and 4 (with `--paper` also 2 and 5) as `figures/paper_fig<N>_*`, and Table 1;
6. the held-out accuracy per gate, Table 1 and the claims, printed.

Executed notebooks go into a new directory (an existing one is never reused).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pandas as pd

from sapo_core import batch, compare, paper
from sapo_core import claims as C
from sapo_core import plan as P
from sapo_core.cli import ArgumentParser, guarded
from sapo_core.config import ConfigError
from sapo_core.paths import figures_dir, runs_dir, write_atomic

log = logging.getLogger(__name__)
RECIPE = "configs/tiny-paper.yaml"
DEMO_GATES = "clip,sigmoid,erf,arctan,softsign"  # at the recipe's (10, 12)
SWEEP_ARMS = ",".join(f"erf@{p:g}:{n:g}" for p, n in paper.ERF_SWEEP if (p, n) != paper.PAPER_TAUS)


def run_notebook(name: str, out: Path, parameters: dict | None = None) -> Path:
    """Execute `notebooks/<name>` with papermill into `out` (a new file), on an IPC kernel like the batch's."""
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new run directory")
    batch.execute_notebook(name, out, parameters or {}, progress_bar=True)
    return out


def smoke_batch(out: str | Path | None = None) -> Path:
    """The smallest batch that exercises every comparison figure (two gates, one seed, 2 steps on tiny-cpu);
    its curves show the mechanics, not findings. Returns its directory (default: a new one under runs/)."""
    out = Path(out) if out is not None else runs_dir() / f"nb04-smoke-{time.strftime('%Y%m%d-%H%M%S')}"
    batch.run_batch(batch.BatchArguments(config="configs/tiny-cpu.yaml", out=str(out), gates="clip,softsign",
                                         seeds="0", jobs=2, eval_n=2, eval_limit=8),
                    ["--max_steps", "2", "--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size",
                     "16", "--max_completion_length", "24", "--save_steps", "2"])
    return out


def evaluate_base(batch_dir: Path) -> Path:
    """Evaluate the runs' base model with the batch's evaluation settings (benchmarks, n, temperature, limit,
    seed 0 as notebook 03) on the first run's held-out set, into `<batch_dir>/base/` (paper.BASE_DIR)."""
    from sapo_core.evaluate import evaluate, resolve_model, run_synthetic_task

    settings = batch.read_batch(batch_dir)["settings"]
    data = compare.load_batch(batch_dir)
    task = run_synthetic_task(resolve_model(batch_dir / data.runs[0]["run"]))
    out = batch_dir / paper.BASE_DIR
    evaluate(data.recipe.get("model", "tiny"), settings["eval_benchmarks"], n=settings["eval_n"],
             temperature=settings["eval_temperature"], limit=settings["eval_limit"], synthetic=task, seed=0, out=out,
             progress=False)
    return out


@guarded(batch.BatchError, ConfigError, FileExistsError, NotADirectoryError, PermissionError)
def main(argv: list[str] | None = None) -> int:
    """The CLI: a refused argument or output directory is one line `error: ...` and exit status 2."""
    parser = ArgumentParser(prog="python -m sapo_core.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true",
                        help=f"make paper: also the erf temperature sweep ({SWEEP_ARMS}) and Figures 2 and 5")
    parser.add_argument("--out", type=Path, default=None, help="demo directory (default: runs/demo-<time>)")
    parser.add_argument("--gates", default=DEMO_GATES, help="comma-separated arms (GATE or GATE@TAU_POS:TAU_NEG)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    # 24 steps (3 generation cycles of the recipe's 8) fit the 10-minute budget on 2 cores (LOG.md)
    parser.add_argument("--max_steps", type=int, default=24, help="RL steps per run (the recipe has 40)")
    args = parser.parse_args(argv)
    if args.max_steps < 1:  # to TRL, -1 means "train for num_train_epochs" instead
        raise batch.BatchError(f"--max_steps {args.max_steps} must be >= 1 (RL steps per run)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # absolute: the notebooks run with notebooks/ as their working directory
    name = "paper" if args.paper else "demo"
    demo_dir = (args.out or runs_dir() / time.strftime(f"{name}-%Y%m%d-%H%M%S")).resolve()
    if demo_dir.exists():
        raise FileExistsError(f"--out {demo_dir} exists; a demo writes into a new directory (choose another)")
    # notebook 03 evaluates every trained model; the base model is evaluated once below, so the runs skip their own
    # before/after check (it would generate the same samples twice more per run) and the held-out curve (about
    # 15 s a run, which the 600 s budget of make demo does not hold)
    flags = ["--heldout_benchmarks", "", "--heldout_eval_steps", "0", "--max_steps", str(args.max_steps)]
    batch_dir = demo_dir / "batch"
    gates = f"{args.gates},{SWEEP_ARMS}" if args.paper else args.gates
    # make paper: the tail-shape claims are judged at width_matched tau (only the tails differ), so their gates
    # run at both conventions; the 600 s of make demo do not hold these runs
    arms = P.split_arms(args.gates)
    matched = ",".join(a for a in arms if C.width_matched_gates([P.arm_gate(a)])) if args.paper else ""
    batch_args = batch.BatchArguments(config=RECIPE, out=str(batch_dir), gates=gates, seeds=args.seeds, jobs=args.jobs,
                                      width_matched_arms=matched)
    batch.plan(batch_args, flags)  # a bad arm or seed list is refused before anything runs
    demo_dir.mkdir(parents=True)
    start = time.perf_counter()
    run_notebook("01_gate_properties.ipynb", demo_dir / "01_gate_properties.ipynb", {"interactive": False})
    log.info("Figure 1 written to %s", figures_dir())
    result = batch.run_batch(batch_args, flags)
    failed = [r for r in result["runs"] if r["status"] != "finished"]
    for r in failed:
        log.error("%s failed: %s", r["run"], r["error"])
    evaluate_base(batch_dir)
    run_notebook("04_compare.ipynb", demo_dir / "04_compare.ipynb",
                 {"batch_dir": str(batch_dir), "save_figures": True})
    figures = [2, 3, 4, 5] if args.paper else [3, 4]
    run_notebook("05_paper.ipynb", demo_dir / "05_paper.ipynb",
                 {"batch_dir": str(batch_dir), "figures": figures, "save_figures": True})
    text = summary_text(batch_dir)
    write_atomic(demo_dir / "summary.md", text)
    print("\n" + text)
    print(f"figures: {figures_dir()} (fig1_gates*, compare_*, paper_fig*) and {batch_dir / 'figures'}")
    print(f"results in words: {demo_dir / 'summary.md'} (generated; README quotes it)")
    print(f"summary: {batch_dir / 'summary.csv'}")
    log.info("%s finished in %.0f s; everything in %s", name, time.perf_counter() - start, demo_dir)
    return 1 if failed else 0


def summary_text(batch_dir: str | Path) -> str:
    """The demo's results as markdown, generated from the batch: accuracy, Table 1 and every claim's verdict."""
    data = compare.load_batch(batch_dir)
    claims = pd.DataFrame(compare.claims(data))
    columns = [c for c in ("section", "claim", "statistic", "convention", "verdict") if c in claims.columns]
    ran_matched = any(r["tau_convention"] == "width_matched" for r in data.runs)
    left = [f"- {row['section']}: {row['claim']}" for _, row in claims.iterrows()
            if not ran_matched and row.get("convention") == "width_matched"
            and str(row["verdict"]).startswith(C.NOT_MEASURED)]
    leftover = ["Left to `make paper`, which also runs these claims' gates at width_matched tau:", "", *left, ""] \
        if left else []
    return "\n".join([
        f"Generated by `python -m sapo_core.demo` from `{Path(batch_dir).name}`; {compare.caption(data)}", "",
        "Held-out synthetic accuracy (mean@8 at T = 0.7), mean and min-max over seeds:", "",
        compare.accuracy_table(data).round(3).to_markdown(index=False), "",
        f"Table 1 ({paper.PAPER}; ours: % with 95% interval, the gates at (10, 12)):", "",
        paper.table1(data).to_markdown(), "",
        "The paper's claims, each judged by the one verdict rule of docs/method.md §5.1:", "",
        claims[columns].to_markdown(index=False), "", *leftover])


if __name__ == "__main__":
    sys.exit(main())
