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

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sapo_core import claims as C
from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core.batch import EVAL_DIR, read_batch
from sapo_core.paths import read_json
from sapo_core.train import read_metrics

__all__ = ["BatchData", "load_batch", "arm_of", "group_label", "claim_runs", "per_seed", "curves", "metric_frame",
           "accuracy", "accuracy_table", "heldout_curves", "heldout_table", "claims", "project_questions", "caption"]


@dataclass
class BatchData:
    """A batch as read from its directory: the summary rows, each run's metrics, provenance, recipe, evaluation."""

    path: Path
    runs: list[dict]
    metrics: dict[str, list[dict]]
    provenance: dict[str, dict]
    evaluation: dict[str, dict]
    recipe: dict

    @property
    def groups(self) -> list[str]:
        """Group labels in batch order: one per arm (gate, tau convention and temperatures; `arm_of`)."""
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
    return BatchData(path, runs, metrics, provenance, evaluation, recipe or {})


def arm_of(data: BatchData, row: dict) -> C.Arm:
    """A run's arm: gate, tau convention and base (tau_pos, tau_neg); clip has none. The g' tail comes from the
    run's provenance (gate_formulas), else from the gate registry; a gate known to neither has no tail."""
    if row["gate"] == "clip":
        return C.Arm("clip", None, None, None)
    tail = ((data.provenance.get(row["run"]) or {}).get("gate_formulas") or {}).get("tail")
    if tail is None and row["gate"] in G.available_gates():
        tail = G.get_gate(row["gate"]).tail
    return C.Arm(row["gate"], row["tau_convention"], row.get("tau_pos_base"), row.get("tau_neg_base"), tail)


def group_label(data: BatchData, row: dict) -> str:
    """The label of a run's group: its arm's gate, tau convention and temperatures (nothing is stripped)."""
    return arm_of(data, row).label


def claim_runs(data: BatchData) -> list[C.Run]:
    """The batch's runs as sapo_core.claims reads them: arm, seed, metric rows, evaluation."""
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
    """Per group, one entry per seed: the evaluation's mean@n with its bootstrap interval over problems."""
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
        series = [[m[key] for m in sorted(data.metrics[r["run"]], key=lambda m: m["step"]) if m.get(key) is not None]
                  for r in _runs_of(data, group)]
        series = [s for s in series if s]  # runs that logged held-out rows
        if not series:
            continue
        finals, lasts = [s[-1] for s in series], [statistics.fmean(s[-last:]) for s in series]
        rows.append({"arm": group, "seeds": len(series), "evaluations": min(map(len, series)),
                     final_label: statistics.fmean(finals), "final min": min(finals), "final max": max(finals),
                     last_label: statistics.fmean(lasts), f"last-{last} min": min(lasts),
                     f"last-{last} max": max(lasts)})
    return pd.DataFrame(rows, columns=columns)


def claims(data: BatchData) -> list[dict]:
    """The paper's claims by section, each with its statistic, arms, convention and verdict (method §5.1)."""
    return C.table(C.CLAIMS, claim_runs(data))


def project_questions(data: BatchData) -> list[dict]:
    """The project's questions that the paper does not raise, judged by the same rule (method §5.1)."""
    return C.table(C.QUESTIONS, claim_runs(data))


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
