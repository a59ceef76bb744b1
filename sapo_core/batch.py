"""One training + evaluation per (gate, seed, tau convention), each a papermill run of notebooks 02 and 03.

    python -m sapo_core.batch --config configs/tiny-offpolicy.yaml --gates clip,sigmoid,erf,arctan,softsign \
        --seeds 0,1,2 [--tau_conventions equal,width_matched] [--jobs N] [--executor local|slurm] --out runs/NAME \
        [any training flag, e.g. --max_steps 30]

With `--dry_run`, every arm's plan and memory estimate is printed and nothing is created (docs/gpu.md).
An arm `GATE@POS:NEG` in --gates runs GATE at (tau_pos, tau_neg) = (POS, NEG) instead of the recipe's
(e.g. `--gates erf,erf@5:6`); its runs are named `<gate>-tau<POS>_<NEG>-<convention>-seed<k>`.
GATE is any gate spec (`sapo_core.gates.resolve_spec`: `student_t:nu=3`, `mypkg.gates:cauchy2`,
`1/(1+z**2)**2`) and `<gate>` its safe name (`gates.spec_slug`: `student_t-nu3`, `expr-<hash>`); when a spec
holds a comma, separate all the arms with `;` (`--gates "erf;torch.clamp(1 - z**2, 0, 1)"`).
`--sweep KEY=V1,V2,...` (repeatable) sweeps any recipe key, `--sweep K1,K2=a:b,c:d` keys jointly (K1=a, K2=b at
the first point; `sapo_temperature_pos,sapo_temperature_neg=5:6` is the arm erf@5:6, so the two are not combined);
the axes are crossed with gates, conventions and seeds, each value read by the training CLI's parser and every arm
checked before any directory is made. A run's name carries its point (`config.run_name`: `erf-lr3e-05-equal-seed0`,
`erf-tau5_6-equal-seed0`) and summary.csv one column per swept key; a method without temperatures (clip) runs once
per point of the other axes.
Each run lives in `<out>/<gate>-<convention>-seed<k>/`: the run directory of `sapo_core.train` (config,
provenance, metrics, checkpoints, final model) with the executed notebooks `02_train.ipynb` and
`03_evaluate.ipynb` beside it and the evaluation in `eval/batch/`. `<out>/batch.json` and `<out>/summary.csv`
list every run (gate, tau as given and as run, convention, num_iterations, seed, status, wall time, final
training metrics, evaluation results), rewritten as each run ends.

Running the same command again skips finished runs, resumes unfinished ones from their last checkpoint and never
touches a finished run; a batch directory refuses a command with other settings. A run that fails (an exception
in a cell, a dead kernel, a timeout) is recorded as failed with its error; the others go on.

Executors: `local` runs up to `--jobs` runs at once, each with its share of the CPU threads and, when GPUs are
present, one GPU (`CUDA_VISIBLE_DEVICES`); kernels talk over IPC sockets, so parallel start-ups cannot race for
ports. `slurm` submits one job array through submitit (`--slurm_partition`, `--slurm_gpus_per_node`,
`--slurm_cpus_per_task`, `--timeout_min`, `--slurm_array_parallelism`); with `--accelerate_config` a run trains
through `accelerate launch` on all the GPUs of its job.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core.benchmarks import BENCHMARKS
from sapo_core.cli import guarded
from sapo_core.config import REWARDS, ConfigError
from sapo_core.data import DatasetFormatError, DataUnavailableError
from sapo_core.paths import REPO_ROOT, UnreadableFileError, read_json, write_atomic, write_json
from sapo_core.plan import (
    Axis,
    BatchError,
    RunSpec,
    _split,
    parse_axis,
    plan,
    sweep_axes,
    training_argv,
)
from sapo_core.recipe import parse_args
from sapo_core.train import dry_run

__all__ = ["Axis", "BatchArguments", "BatchError", "RunSpec", "execute_notebook", "parse_axis", "plan", "run_batch",
           "run_one", "read_batch", "main"]

log = logging.getLogger(__name__)
NOTEBOOKS = REPO_ROOT / "notebooks"
EVAL_DIR = "eval/batch"  # inside each run directory
# Final training metrics copied into the summary (method §4), read from the last row of metrics.jsonl.
SUMMARY_METRICS = M.summary_names(REWARDS)  # the registry's `summary` metrics (sapo_core.metrics)


@dataclass
class BatchArguments:
    """Arguments of `python -m sapo_core.batch`; flags it does not know are training flags for every run."""

    config: str = field(metadata={"help": "training recipe (a TRL config file, as for sapo_core.train)"})
    out: str = field(metadata={"help": "batch directory (created; re-running the same command continues it)"})
    gates: str = field(default="clip,sigmoid,erf,arctan,softsign", metadata={
        "help": "comma-separated gate specs (erf, student_t:nu=3, mypkg.gates:cauchy2, 1/(1+z**2)**2); when a spec "
                "holds a comma, separate them all with ';' instead"})
    seeds: str = field(default="0,1,2", metadata={"help": "comma-separated RL seeds"})
    tau_conventions: str = field(default="equal", metadata={
        "help": "comma-separated: equal, width_matched (clip has no temperature: it runs once, as 'equal')"})
    width_matched_arms: str = field(default="", metadata={
        "help": "comma-separated arms of --gates that also run at width_matched tau, whatever --tau_conventions "
                "says (e.g. the gates of the tail-shape claims, which are judged at width_matched tau)"})
    sweep: list[str] = field(default_factory=list, metadata={
        "help": "repeatable: an axis KEY=V1,V2,... over any recipe key, or a joint axis K1,K2=a:b,c:d (K1=a and K2=b "
                "at its first point); crossed with gates, conventions, seeds and the other axes"})
    jobs: int = field(default=1, metadata={"help": "local executor: runs at once (CPU threads are split)"})
    executor: Literal["local", "slurm"] = field(default="local", metadata={"help": "local or slurm (submitit)"})
    eval_benchmarks: str = field(default="synthetic", metadata={"help": "benchmarks notebook 03 evaluates"})
    eval_n: int = field(default=8, metadata={"help": "samples per problem in the evaluation"})
    eval_temperature: float = field(default=0.7, metadata={"help": "evaluation sampling temperature"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate only the first K problems"})
    timeout_min: int = field(default=240, metadata={"help": "time limit of one run (each notebook cell; slurm job)"})
    accelerate_config: str | None = field(default=None, metadata={
        "help": "train through `accelerate launch --config_file FILE` (multi-GPU inside one job)"})
    slurm_partition: str | None = field(default=None, metadata={"help": "slurm: partition"})
    slurm_gpus_per_node: int = field(default=1, metadata={"help": "slurm: GPUs per job"})
    slurm_cpus_per_task: int = field(default=8, metadata={"help": "slurm: CPUs per job"})
    slurm_array_parallelism: int = field(default=16, metadata={"help": "slurm: array jobs running at once"})
    slurm_cluster: str | None = field(default=None, metadata={
        "help": "submitit cluster: unset = detect (slurm), 'local' = run the array locally (tests)"})

    def __post_init__(self):
        for name in ("config", "gates", "seeds", "tau_conventions", "width_matched_arms", "eval_benchmarks"):
            if not isinstance(getattr(self, name), str):
                raise BatchError(f"{name} must be a string (comma-separated), got {type(getattr(self, name)).__name__} "
                                 f"{getattr(self, name)!r}")
        if not (isinstance(self.sweep, (list, tuple)) and all(isinstance(a, str) for a in self.sweep)):
            raise BatchError(f"sweep must be a list of axes (strings KEY=V1,V2,...), got {type(self.sweep).__name__} "
                             f"{self.sweep!r}")
        if self.jobs < 1:
            raise BatchError(f"jobs={self.jobs} must be >= 1")
        if self.eval_n < 1:
            raise BatchError(f"eval_n={self.eval_n} must be >= 1")
        if self.timeout_min < 1:
            raise BatchError(f"timeout_min={self.timeout_min} must be >= 1")
        if not str(self.out).strip():
            raise BatchError("out is empty (an unset shell variable?); give a batch directory")
        if self.eval_temperature < 0:
            raise BatchError(f"eval_temperature={self.eval_temperature} must be >= 0 (0: greedy)")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise BatchError(f"eval_limit={self.eval_limit} must be >= 1 (or unset: every problem)")
        for name in _split(self.eval_benchmarks, "eval_benchmarks"):
            if name not in BENCHMARKS:
                raise BatchError(f"eval_benchmarks: unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        if self.accelerate_config is not None and not Path(self.accelerate_config).is_file():
            raise BatchError(f"accelerate_config={self.accelerate_config!r} is not a file")


# ---------------------------------------------------------------------------------------------
# One run: notebook 02 (train), then notebook 03 (evaluate), in the run directory
# ---------------------------------------------------------------------------------------------

def execute_notebook(notebook: str, out: Path, parameters: dict, timeout_s: int | None = None, *,
                     progress_bar: bool = False) -> None:
    """papermill `notebooks/<notebook>` into `out` on an IPC kernel; an earlier attempt's copy is kept under a
    new name (`<name>.attemptN.ipynb`), never overwritten."""
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """A kernel on IPC sockets: no TCP port to race for when several start at once."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"

    if out.exists():
        attempt = 1
        while out.with_name(f"{out.stem}.attempt{attempt}.ipynb").exists():
            attempt += 1
        out.rename(out.with_name(f"{out.stem}.attempt{attempt}.ipynb"))
    papermill.execute_notebook(str(NOTEBOOKS / notebook), str(out), parameters=parameters, cwd=str(out.parent),
                               progress_bar=progress_bar, execution_timeout=timeout_s,
                               kernel_manager_class=IPCKernelManager,
                               start_timeout=120)


def _read_json(path: Path, what: str) -> dict:
    """The JSON object in `path`; {} while it does not exist (a damaged file is an UnreadableFileError)."""
    return read_json(path, what) if path.exists() else {}


def run_one(spec: RunSpec, batch_dir: str, settings: dict) -> dict:
    """Train and evaluate one run (skipping what is already finished); return its summary record."""
    run_dir = Path(batch_dir) / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    timeout_s = settings["timeout_min"] * 60
    try:
        status = _read_json(run_dir / "status.json", "the run's status")
        if status.get("state") != "finished":
            execute_notebook("02_train.ipynb", run_dir / "02_train.ipynb", {
                "config": settings["config"], "gate": spec.gate, "seed": spec.seed,
                "flags": ["--tau_convention", spec.tau_convention, *spec.flags], "run_dir": str(run_dir),
                "resume": status.get("state") is not None, "accelerate_config": settings["accelerate_config"],
            }, timeout_s)
        results = _read_json(run_dir / EVAL_DIR / "results.json", "the run's evaluation")
        if not results.get("complete"):
            if (run_dir / EVAL_DIR).exists():  # an attempt cut short: kept aside, never overwritten
                attempt = 1
                while (run_dir / f"{EVAL_DIR}.attempt{attempt}").exists():
                    attempt += 1
                (run_dir / EVAL_DIR).rename(run_dir / f"{EVAL_DIR}.attempt{attempt}")
            execute_notebook("03_evaluate.ipynb", run_dir / "03_evaluate.ipynb", {
                "model": str(run_dir), "benchmarks": settings["eval_benchmarks"], "n": settings["eval_n"],
                "temperature": settings["eval_temperature"], "limit": settings["eval_limit"], "backend": "auto",
                "out": str(run_dir / EVAL_DIR),
            }, timeout_s)
    except Exception as err:  # a failed cell, a dead kernel, a timeout: recorded, the batch goes on
        if hasattr(err, "ename") and hasattr(err, "evalue"):  # papermill: the cell's exception, not its traceback
            error = f"{err.ename} in cell {getattr(err, 'exec_count', '?')}: {err.evalue}"
        else:
            error = f"{type(err).__name__}: {' '.join(str(err).split())[:2000]}"
    return record(spec, run_dir, wall_s=time.perf_counter() - start, error=error)


def record(spec: RunSpec, run_dir: Path, *, wall_s: float | None = None, error: str | None = None) -> dict:
    """What the summary says of one run, read from its directory."""
    try:
        prov, status, summary, results = (_read_json(run_dir / name, what) for name, what in (
            ("provenance.json", "the run's provenance"), ("status.json", "the run's status"),
            ("summary.json", "the run's summary"), (f"{EVAL_DIR}/results.json", "the run's evaluation")))
    except UnreadableFileError as err:  # the summary names it; the batch goes on
        prov, status, summary, results, error = {}, {}, {}, {}, error or str(err)
    finished = status.get("state") == "finished" and bool(results.get("complete")) and error is None
    convention = None if G.is_method(spec.gate) else spec.tau_convention  # a method has no temperature
    row = {"run": spec.name, "gate": spec.gate, "tau_convention": convention,
           "seed": spec.seed, "status": "finished" if finished else "failed",
           "error": error or status.get("error") or (None if finished else "evaluation missing"),
           "wall_s": None if wall_s is None else round(wall_s, 1)}
    row.update((key, list(value) if isinstance(value, tuple) else value) for key, value in spec.axes)  # as planned
    for key in ("tau_pos_base", "tau_neg_base", "tau_pos", "tau_neg", "num_iterations"):
        row.setdefault(key, prov.get(key))  # a swept num_iterations keeps its planned value
    rows = []
    if (run_dir / "metrics.jsonl").exists():
        from sapo_core.train import read_metrics

        rows = read_metrics(run_dir)
    last = rows[-1] if rows else {}
    row["steps"] = last.get("step")
    row.update({f"train/{k}": last.get(k) for k in SUMMARY_METRICS})
    row["train_runtime_s"] = summary.get("train_runtime_s")
    for bench, metrics in (results.get("benchmarks") or {}).items():
        row[f"eval/{bench}/mean@n"] = metrics.get("mean@n")
        interval = metrics.get("mean@n_ci95") or [None, None]
        row[f"eval/{bench}/mean@n_low"], row[f"eval/{bench}/mean@n_high"] = interval
        row[f"eval/{bench}/n"] = metrics.get("n")
    return row


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------

_SLOT = None


def _init_worker(counter, threads: int, gpus: list[str]) -> None:
    """A local worker: its slot decides its GPU; it gets its share of the CPU threads."""
    global _SLOT
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[_SLOT % len(gpus)]


def _gpus() -> list[str]:
    """The GPUs this process may use (CUDA_VISIBLE_DEVICES, or all CUDA devices), without initialising CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _settings(args: BatchArguments, flags: list[str]) -> dict:
    settings = {"config": str(Path(args.config).resolve()) if Path(args.config).exists() else args.config,
                "flags": flags, "eval_benchmarks": args.eval_benchmarks, "eval_n": args.eval_n,
                "eval_temperature": args.eval_temperature, "eval_limit": args.eval_limit,
                "timeout_min": args.timeout_min, "accelerate_config": args.accelerate_config}
    if args.sweep:  # the axes as parsed (sapo_core.compare reads the swept keys here); absent in a batch without
        settings["sweep"] = [{"keys": list(axis.keys), "values": [[list(v) if isinstance(v, tuple) else v for v in p]
                                                                  for p in axis.values]}
                             for axis in sweep_axes(args.sweep, flags)]
    return settings


def _write_summary(out: Path, settings: dict, rows: dict[str, dict], specs: list[RunSpec]) -> None:
    ordered = [rows[s.name] for s in specs if s.name in rows]
    batch = {"settings": settings, "runs": ordered, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(out / "batch.json", batch)
    columns = list(dict.fromkeys(k for row in ordered for k in row))
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(ordered)
    write_atomic(out / "summary.csv", buf.getvalue())


def read_batch(out: str | os.PathLike) -> dict:
    """A batch directory's batch.json."""
    path = Path(out) / "batch.json"
    try:
        return read_json(path, "the batch's record")
    except UnreadableFileError as err:
        raise BatchError(f"{err}; is {out} a batch directory?") from None


def run_batch(args: BatchArguments, flags: list[str] | None = None, *,
              gate_flags: dict[str, list[str]] | None = None) -> dict:
    """Run (or continue) a batch; return its batch.json content."""
    from tqdm.auto import tqdm

    flags = list(flags or [])
    specs = plan(args, flags, gate_flags)
    if not specs:
        raise BatchError(f"no run planned: gates={args.gates!r} with tau_conventions={args.tau_conventions!r} "
                         "(a trust-region method such as clip runs only under 'equal')")
    out = Path(args.out)
    # the recipe and the common flags are checked for every arm (gate, convention, temperatures, sweep point) before
    # anything starts (a bad one stops the batch); per-gate flags (gate_flags) are left to their run, which fails alone
    for arm in dict.fromkeys(dataclasses.replace(s, seed=specs[0].seed) for s in plan(args, flags)):
        try:
            parse_args(training_argv(args.config, arm, out / "check"))
        except ConfigError as err:
            raise ConfigError(f"{arm.name}: {err}") from None
    settings = _settings(args, flags)
    previous = read_batch(out) if (out / "batch.json").exists() else None
    if previous is not None and previous.get("settings") != settings:
        changed = sorted(k for k in settings.keys() | previous["settings"].keys()
                         if previous["settings"].get(k) != settings.get(k))
        raise BatchError(f"{out} holds a batch made with other settings (changed: {', '.join(changed)}); choose "
                         "another --out")
    out.mkdir(parents=True, exist_ok=True)
    rows = {r["run"]: r for r in (previous or {}).get("runs", [])}
    todo = [s for s in specs if rows.get(s.name, {}).get("status") != "finished"]
    for spec in specs:
        if spec.name not in rows:
            rows[spec.name] = record(spec, out / spec.name, error="not run yet")
    _write_summary(out, settings, rows, specs)
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="batch", unit="run")
    failed = 0

    def finish(row: dict) -> None:
        nonlocal failed
        rows[row["run"]] = row
        failed += row["status"] != "finished"
        _write_summary(out, settings, rows, specs)
        bar.update(1)
        bar.set_postfix(failed=failed, remaining=bar.total - bar.n)
        log.info("%s: %s%s", row["run"], row["status"], f" ({row['error']})" if row["error"] else "")

    if args.executor == "slurm":
        _run_submitit(args, todo, out, settings, finish)
    elif args.jobs == 1 or len(todo) <= 1:
        for spec in todo:
            finish(run_one(spec, str(out), settings))
    else:
        jobs = min(args.jobs, len(todo))
        threads = max(1, (os.cpu_count() or 1) // jobs)
        counter = multiprocessing.get_context("spawn").Value("i", 0)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(counter, threads, _gpus())) as pool:
            futures = {pool.submit(run_one, spec, str(out), settings): spec for spec in todo}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    finish(future.result())
                except Exception as err:  # the worker process itself died
                    finish(record(spec, out / spec.name, error=f"{type(err).__name__}: {err}"))
    bar.close()
    return read_batch(out)


def _run_submitit(args: BatchArguments, todo: list[RunSpec], out: Path, settings: dict, finish) -> None:
    """One submitit job array, one job per run; results collected as jobs end."""
    import submitit

    if not todo:
        return
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=args.slurm_cluster)
    params = {"timeout_min": args.timeout_min, "slurm_array_parallelism": args.slurm_array_parallelism}
    if executor.cluster == "slurm":
        params.update(slurm_partition=args.slurm_partition, gpus_per_node=args.slurm_gpus_per_node,
                      cpus_per_task=args.slurm_cpus_per_task)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    jobs = executor.map_array(run_one, todo, [str(out)] * len(todo), [settings] * len(todo))
    for spec, job in zip(todo, jobs):
        log.info("%s: job %s, log %s", spec.name, job.job_id, job.paths.stdout)
        print(f"{spec.name}: job {job.job_id}  stdout {job.paths.stdout}  stderr {job.paths.stderr}")
    pending = dict(zip(todo, jobs))
    while pending:
        for spec, job in list(pending.items()):
            if job.done():
                try:
                    finish(job.result())
                except Exception as err:  # the job itself failed (node failure, time limit)
                    finish(record(spec, out / spec.name, error=f"{type(err).__name__}: {err}"))
                del pending[spec]
        time.sleep(2)


def dry_run_batch(args: BatchArguments, flags: list[str]) -> int | None:
    """--dry_run: every arm's plan and memory estimate (sapo_core.preflight); nothing is created or trained.
    Returns 2 when an arm is refused, else 0; None when the flags turn the dry run off (`--dry_run false`)."""
    if args.accelerate_config is not None:
        flags = [*flags, "--accelerate_config", args.accelerate_config]
    runs = [(spec, parse_args(training_argv(args.config, spec, Path(args.out) / spec.name)))
            for spec in plan(args, flags)]
    if not all(run.script.dry_run for _, run in runs):
        return None
    status = 0
    for spec, run in runs:
        print(f"== {spec.name}")
        status = max(status, dry_run(run))
    return status


def _gather_sweeps(argv: list[str]) -> list[str]:
    """Every `--sweep AXIS` (repeatable; `--sweep=AXIS` too) gathered into one `--sweep AXIS...` at the end."""
    rest, sweeps, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token.startswith("--sweep="):
            sweeps.append(token.split("=", 1)[1])
        elif token == "--sweep":
            start = i
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
            if i == start:
                raise BatchError("--sweep needs an axis KEY=V1,V2,... (e.g. --sweep learning_rate=1e-5,3e-5)")
            sweeps.extend(argv[start:i])
        else:
            rest.append(token)
    return rest + (["--sweep", *sweeps] if sweeps else [])


@guarded(BatchError, ConfigError, UnreadableFileError, DataUnavailableError, DatasetFormatError)
def main(argv: list[str] | None = None) -> int:
    """The CLI: one line `error: ...` and exit status 2 for a batch that cannot start."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message):  # one line from main, without the usage block
            raise BatchError(message)

    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = Parser([BatchArguments], prog="python -m sapo_core.batch", description=__doc__.splitlines()[0])
    argv = _gather_sweeps(argv)
    options = ["--" + a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")]
    repeated = sorted({o for o in options if options.count(o) > 1})
    if repeated:
        raise BatchError(f"flag {repeated[0]} given twice")
    args, flags = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    status = dry_run_batch(args, flags) if "--dry_run" in {f.split("=", 1)[0] for f in flags} else None
    if status is not None:
        return status
    batch = run_batch(args, flags)
    runs = batch["runs"]
    done = sum(r["status"] == "finished" for r in runs)
    print(f"{done}/{len(runs)} runs finished; summary: {Path(args.out) / 'summary.csv'}")
    return 0 if done == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
