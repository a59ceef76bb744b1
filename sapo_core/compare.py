"""Compare the gates of a batch (`sapo_core.batch`): curves over seeds, accuracy, and the paper's claims.

    data = load_batch("runs/demo/batch")
    table = claims(data)          # the paper's claims by section, each with its verdict (sapo_core.claims)
    extra = project_questions(data)  # the project's own questions, the same rule

A batch directory holds one run directory per (gate, convention, seed) with its `metrics.jsonl`, provenance and
evaluation (`eval/batch/results.json`); everything here is read from those files by metric name (method §4).
Runs are grouped by arm: gate, tau convention and (tau_pos, tau_neg), always all three (`claims.Arm.label`); a
group's spread is over its seeds. The claims, their statistics and the verdict rule live in `sapo_core.claims`
(method §5.1); this module reads the batch and hands them its runs.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sapo_core import claims as C
from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core.batch import EVAL_DIR, read_batch
from sapo_core.config import value_text
from sapo_core.paths import read_json
from sapo_core.plan import TAU_KEYS
from sapo_core.train import read_metrics

__all__ = ["BatchData", "load_batch", "arm_of", "group_label", "claim_runs", "per_seed", "curves", "metric_frame",
           "accuracy", "accuracy_table", "heldout_curves", "heldout_table", "subset", "select",
           "learning_rate_views", "claims", "project_questions", "caption"]


@dataclass
class BatchData:
    """A batch as read from its directory: the summary rows, each run's metrics, provenance, recipe, evaluation."""

    path: Path
    runs: list[dict]
    metrics: dict[str, list[dict]]
    provenance: dict[str, dict]
    evaluation: dict[str, dict]
    recipe: dict
    axes: tuple[str, ...] = ()  # the recipe keys the batch sweeps (its settings' `sweep`), in order

    @property
    def groups(self) -> list[str]:
        """Group labels in batch order: one per arm and sweep point (gate, tau convention, temperatures, every swept
        value; `group_label`)."""
        return list(dict.fromkeys(group_label(self, r) for r in self.runs))


def _json(path: Path, what: str) -> dict:
    """The JSON object in `path`, {} when the run has not written it (a damaged file: UnreadableFileError)."""
    return read_json(path, what) if path.exists() else {}


def load_batch(path: str | os.PathLike, *, finished_only: bool = True) -> BatchData:
    """Read a batch directory (only its finished runs unless `finished_only=False`)."""
    import yaml

    path = Path(path)
    batch = read_batch(path)
    runs = [r for r in batch["runs"] if r["status"] == "finished" or not finished_only]
    if not runs:
        raise ValueError(f"{path} has no finished run to compare (see {path / 'summary.csv'})")
    metrics, provenance, evaluation = {}, {}, {}
    for row in runs:
        run_dir = path / row["run"]
        metrics[row["run"]] = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
        provenance[row["run"]] = _json(run_dir / "provenance.json", "the run's provenance")
        evaluation[row["run"]] = _json(run_dir / EVAL_DIR / "results.json", "the run's evaluation")
    first = path / runs[0]["run"] / "config.yaml"
    recipe = yaml.safe_load(first.read_text()) if first.exists() else {}
    axes = tuple(key for axis in (batch.get("settings") or {}).get("sweep", []) for key in axis["keys"])
    return BatchData(path, runs, metrics, provenance, evaluation, recipe or {}, axes)


def arm_of(data: BatchData, row: dict) -> C.Arm:
    """A run's arm: gate, tau convention and base (tau_pos, tau_neg); clip has none. The g' tail comes from the
    run's provenance (gate_formulas), else from the gate registry; a gate known to neither has no tail."""
    if G.is_method(row["gate"]):  # a trust-region method (clip, cispo, ...): no temperature, no tail
        return C.Arm(row["gate"], None, None, None)
    tail = ((data.provenance.get(row["run"]) or {}).get("gate_formulas") or {}).get("tail")
    if tail is None and row["gate"] in G.available_gates():
        tail = G.get_gate(row["gate"]).tail
    taus = []
    for sign in ("pos", "neg"):  # a run not started yet has no provenance: a swept temperature is its planned one
        base = row.get(f"tau_{sign}_base")
        taus.append(base if base is not None else row.get(f"sapo_temperature_{sign}"))
    return C.Arm(row["gate"], row["tau_convention"], *taus, tail)


def group_label(data: BatchData, row: dict, *, without: tuple[str, ...] = ()) -> str:
    """The label of a run's group: its arm's gate, tau convention and temperatures and each swept key's value, e.g.
    `erf (equal, tau 1/1.05, learning_rate=3e-05)` (nothing is stripped but the swept keys named in `without`)."""
    label = arm_of(data, row).label
    swept = [f"{key}={value_text(row.get(key))}" for key in data.axes if key not in (*TAU_KEYS, *without)]
    if not swept:
        return label
    return f"{label[:-1]}, {', '.join(swept)})" if label.endswith(")") else f"{label} ({', '.join(swept)})"


def claim_runs(data: BatchData) -> list[C.Run]:
    """The batch's runs as sapo_core.claims reads them: arm, seed, metric rows, evaluation. The claims know arms,
    not sweep points: an arm run at two points of another swept key is refused (pick one with `select`)."""
    points: dict[str, set[str]] = {}
    for row in data.runs:
        points.setdefault(arm_of(data, row).label, set()).add(group_label(data, row))
    mixed = {arm: sorted(groups) for arm, groups in points.items() if len(groups) > 1}
    if mixed:
        arm, groups = next(iter(mixed.items()))
        raise ValueError(f"arm {arm} was run at {len(groups)} points of the sweep ({'; '.join(groups)}); the claims "
                         "compare one run per arm and seed: take one point with compare.select(data, key=value) or "
                         "compare.subset(data, groups)")
    return [C.Run(arm_of(data, row), row["seed"], data.metrics[row["run"]], data.evaluation[row["run"]])
            for row in data.runs]


def _runs_of(data: BatchData, group: str) -> list[dict]:
    return [r for r in data.runs if group_label(data, r) == group]


def per_seed(data: BatchData, key: str, *, half: str = "second") -> dict[str, list[float]]:
    """Per group, one value per seed: the mean of metric `key` over the second (or "all") logged steps."""
    out = {}
    for group in data.groups:
        values = []
        for row in _runs_of(data, group):
            rows = [m for m in data.metrics[row["run"]] if m.get(key) is not None]
            if half == "second":
                last = max((m["step"] for m in rows), default=0)
                rows = [m for m in rows if m["step"] > last / 2]
            if rows:
                values.append(statistics.fmean(m[key] for m in rows))
        out[group] = values
    return out


def curves(data: BatchData, key: str) -> dict[str, dict[str, list[float]]]:
    """Per group: steps, and the mean, min and max over seeds of metric `key` at each step."""
    out = {}
    for group in data.groups:
        by_step: dict[int, list[float]] = {}
        for row in _runs_of(data, group):
            for m in data.metrics[row["run"]]:
                if m.get(key) is not None:
                    by_step.setdefault(m["step"], []).append(m[key])
        steps = sorted(by_step)
        out[group] = {"step": steps, "mean": [statistics.fmean(by_step[s]) for s in steps],
                      "min": [min(by_step[s]) for s in steps], "max": [max(by_step[s]) for s in steps]}
    return out


def metric_frame(data: BatchData, keys) -> pd.DataFrame:
    """Long form for seaborn: one row per (run, logged step) with group, gate, convention, seed, step, `keys`."""
    rows = [{"run": row["run"], "group": group_label(data, row), "gate": row["gate"],
             "convention": row["tau_convention"] or "equal", "seed": row["seed"], "step": m["step"],
             **{k: m.get(k) for k in keys}}
            for row in data.runs for m in data.metrics[row["run"]]]
    return pd.DataFrame(rows, columns=["run", "group", "gate", "convention", "seed", "step", *keys])


def accuracy(data: BatchData, benchmark: str = "synthetic") -> dict[str, list[dict]]:
    """Per group, one entry per seed: the evaluation's mean@n with its bootstrap interval over instances."""
    out = {}
    for group in data.groups:
        entries = []
        for row in _runs_of(data, group):
            metrics = data.evaluation[row["run"]].get("benchmarks", {}).get(benchmark)
            if metrics is not None:
                entries.append({"seed": row["seed"], "mean": metrics["mean@n"], "ci95": metrics.get("mean@n_ci95"),
                                "n": metrics["n"]})
        out[group] = entries
    return out


def accuracy_table(data: BatchData, benchmark: str = "synthetic") -> pd.DataFrame:
    """Held-out accuracy per group: seeds, and the mean, min and max over seeds of mean@n (groups evaluated)."""
    rows = [{"gate": group, "seeds": len(entries), "mean": statistics.fmean(e["mean"] for e in entries),
             "min": min(e["mean"] for e in entries), "max": max(e["mean"] for e in entries)}
            for group, entries in accuracy(data, benchmark).items() if entries]
    return pd.DataFrame(rows, columns=["gate", "seeds", "mean", "min", "max"])


def _heldout_key(benchmark: str) -> str:
    if not isinstance(benchmark, str):
        raise TypeError(f"benchmark must be a benchmark name (str), got {type(benchmark).__name__} {benchmark!r}")
    return M.key(f"heldout/{benchmark}/mean@n")


def heldout_curves(data: BatchData, benchmark: str = "synthetic") -> dict[str, dict[str, list[float]]]:
    """Held-out accuracy over training per arm (the rows of heldout_eval_steps, method §6): steps, and the mean,
    min and max over seeds of mean@n at each step (step 0 is the base model)."""
    return {group: curve for group, curve in curves(data, _heldout_key(benchmark)).items() if curve["step"]}


def heldout_table(data: BatchData, benchmark: str = "synthetic", last: int = 3) -> pd.DataFrame:
    """Held-out accuracy per arm from the rows of heldout_eval_steps: the final evaluation and the mean of each
    seed's `last` evaluations (fewer when a run has fewer), each as the mean over seeds with its min and max."""
    key = _heldout_key(benchmark)
    if isinstance(last, bool) or not isinstance(last, int) or last < 1:
        raise ValueError(f"last must be an integer >= 1 (the number of final evaluations averaged), got {last!r}")
    final_label, last_label = "final (mean over seeds)", f"mean of the last {last} evaluations (mean over seeds)"
    columns = ["arm", "seeds", "evaluations", final_label, "final min", "final max", last_label, f"last-{last} min",
               f"last-{last} max"]
    rows = []
    for group in data.groups:
        series = _series(data, group, key)
        if not series:
            continue
        finals, lasts = [s[-1] for s in series], [statistics.fmean(s[-last:]) for s in series]
        rows.append({"arm": group, "seeds": len(series), "evaluations": min(map(len, series)),
                     final_label: statistics.fmean(finals), "final min": min(finals), "final max": max(finals),
                     last_label: statistics.fmean(lasts), f"last-{last} min": min(lasts),
                     f"last-{last} max": max(lasts)})
    return pd.DataFrame(rows, columns=columns)


def _series(data: BatchData, group: str, key: str) -> list[list[float]]:
    """Per run of a group that logged metric `key`, its values in step order."""
    series = [[m[key] for m in sorted(data.metrics[r["run"]], key=lambda m: m["step"]) if m.get(key) is not None]
              for r in _runs_of(data, group)]
    return [s for s in series if s]


def subset(data: BatchData, groups) -> BatchData:
    """The runs of some groups (labels of `data.groups`), as a batch of their own."""
    groups = [groups] if isinstance(groups, str) else list(groups)
    unknown = [g for g in groups if g not in data.groups]
    if unknown or not groups:
        problem = f"no group {unknown[0]!r} in {data.path}" if unknown else "groups is empty"
        raise ValueError(f"{problem}; its groups: {'; '.join(data.groups)}")
    runs = [r for r in data.runs if group_label(data, r) in groups]
    keep = {r["run"] for r in runs}
    return BatchData(data.path, runs, *({k: v for k, v in d.items() if k in keep}
                                        for d in (data.metrics, data.provenance, data.evaluation)),
                     data.recipe, data.axes)


def select(data: BatchData, **values) -> BatchData:
    """The runs at one value of some swept keys, e.g. `select(data, learning_rate=3e-05)`."""
    for key in values:
        if key not in data.axes:
            raise ValueError(f"{key} is not swept in {data.path}; its swept keys: {', '.join(data.axes) or 'none'}")
    groups = list(dict.fromkeys(group_label(data, r) for r in data.runs
                                if all(r.get(k) == v for k, v in values.items())))
    if not groups:
        raise ValueError(f"no run of {data.path} has {values}")
    return subset(data, groups)


LR = "learning_rate"


def learning_rate_views(data: BatchData, metric: str | None = None, *, last: int = 3, benchmark: str = "synthetic",
                        common: float | None = None, higher_is_better: bool = True) -> pd.DataFrame:
    """Every arm (gate, convention, temperatures and the other swept keys) at two learning rates, one row each:
    view "best lr on validation" (the arm's rate with the best score) and view "common lr = X" (one rate for all;
    `common`, or unset the rate with the best mean score over the arms, among those every arm ran).

    A score is the mean over seeds of each seed's mean of its `last` logged values of `metric`, by default the
    held-out accuracy heldout/<benchmark>/mean@n (`heldout_table`'s last-K column). The selection must read the
    VALIDATION split (the held-out curve runs log at heldout_eval_steps), never the test split of the final
    evaluation, else the comparison is tuned on its own test set. Ties go to the rate first in the batch. Each row
    also gives the final evaluation's mean@n on `benchmark` (the test split), mean over seeds."""
    if LR not in data.axes:
        raise ValueError(f"{data.path} does not sweep {LR} (its swept keys: {', '.join(data.axes) or 'none'}); "
                         f"run the batch with --sweep {LR}=V1,V2,...")
    if isinstance(last, bool) or not isinstance(last, int) or last < 1:
        raise ValueError(f"last must be an integer >= 1 (the number of final values averaged), got {last!r}")
    key = _heldout_key(benchmark) if metric is None else M.key(metric)
    score_label = f"{key}, mean of the last {last} (mean over seeds)"
    scores: dict[str, dict[float, tuple[str, int, float]]] = {}  # arm -> rate -> (group, seeds, score)
    for group in data.groups:
        row = next(r for r in data.runs if group_label(data, r) == group)
        series = _series(data, group, key)
        if series:
            score = statistics.fmean(statistics.fmean(s[-last:]) for s in series)
            scores.setdefault(group_label(data, row, without=(LR,)), {})[row[LR]] = (group, len(series), score)
    if not scores:
        raise ValueError(f"no run of {data.path} logged {key}; the selection reads the validation curve (set "
                         "heldout_eval_steps and heldout_benchmarks)")
    sign = 1 if higher_is_better else -1
    shared = [lr for lr in next(iter(scores.values())) if all(lr in by_lr for by_lr in scores.values())]
    if common is None:
        if not shared:
            raise ValueError(f"no {LR} was run (and logged {key}) by every arm; give common=")
        common = max(shared, key=lambda lr: sign * statistics.fmean(by_lr[lr][2] for by_lr in scores.values()))
    elif common not in shared:
        raise ValueError(f"common={common!r}: not a {LR} every arm ran and logged {key} at; shared rates: "
                         f"{', '.join(map(value_text, shared)) or 'none'}")
    tests = {group: [e["mean"] for e in entries] for group, entries in accuracy(data, benchmark).items()}
    rows = []
    for view in ("best lr on validation", f"common lr = {value_text(common)}"):
        for arm, by_lr in scores.items():
            lr = max(by_lr, key=lambda r: sign * by_lr[r][2]) if view.startswith("best") else common
            group, seeds, score = by_lr[lr]
            test = tests.get(group) or [math.nan]
            rows.append({"view": view, "arm": arm, LR: lr, "group": group, "seeds": seeds, score_label: score,
                         f"test {benchmark} mean@n (mean over seeds)": statistics.fmean(test)})
    return pd.DataFrame(rows)


def sweep_points(data: BatchData) -> list[tuple[str, BatchData]]:
    """The batch at each point of its swept keys other than the temperatures (which are part of an arm), in batch
    order: (label, runs at that point), e.g. ("learning_rate=3e-05", ...). A batch without such keys is one point
    labelled ""."""
    keys = [key for key in data.axes if key not in TAU_KEYS]
    points = list(dict.fromkeys(tuple(row.get(key) for key in keys) for row in data.runs))
    if len(points) <= 1:
        return [("", data)]
    return [(", ".join(f"{key}={value_text(value)}" for key, value in zip(keys, point)),
             select(data, **dict(zip(keys, point)))) for point in points]


def _judged(data: BatchData, specs) -> list[dict]:
    """`specs` judged on the batch, or at each of its sweep points (a "sweep point" column first)."""
    points = sweep_points(data)
    if len(points) == 1:
        return C.table(specs, claim_runs(data))
    return [{"sweep point": label, **row} for label, part in points for row in C.table(specs, claim_runs(part))]


def claims(data: BatchData) -> list[dict]:
    """The paper's claims by section, each with its statistic, arms, convention and verdict (method §5.1); for a
    batch that sweeps other keys than the temperatures, at each sweep point (`sweep_points`)."""
    return _judged(data, C.CLAIMS)


def project_questions(data: BatchData) -> list[dict]:
    """The project's questions that the paper does not raise, judged by the same rule (method §5.1), at each sweep
    point as `claims`."""
    return _judged(data, C.QUESTIONS)


def caption(data: BatchData) -> str:
    """What every figure of a batch states: recipe, tau convention, num_iterations, seeds, commit."""
    prov = next(iter(data.provenance.values()), {})
    conventions = sorted({r["tau_convention"] for r in data.runs if r["tau_convention"]})
    seeds = sorted({r["seed"] for r in data.runs})
    commit = (prov.get("git") or {}).get("commit") or "unknown"
    dirty = " (dirty)" if (prov.get("git") or {}).get("dirty") else ""
    recipe = Path(prov.get("config_file") or "?").stem
    return (f"recipe {recipe}, tau convention {', '.join(conventions) or '-'}, num_iterations "
            f"{prov.get('num_iterations')}, seeds {', '.join(map(str, seeds))}, commit {commit[:10]}{dirty}")
