"""Compare the gates of a batch (`sapo_core.batch`): curves over seeds, accuracy, and the paper's claims.

    data = load_batch("runs/demo/batch")
    table = claims(data)          # each qualitative claim of the paper with what this batch measured

A batch directory holds one run directory per (gate, convention, seed) with its `metrics.jsonl`, provenance and
evaluation (`eval/batch/results.json`); everything here is read from those files by metric name (method §4).
Runs are grouped by gate (and by tau convention when a batch has both); a group's spread is over its seeds.

The claims are the paper's qualitative statements (method §5). Each is a comparison of per-seed values, e.g. the
mean token entropy over the second half of training, between two gates. The verdict rule is deliberately
simple and stated in every row: "holds" when every seed of one side lies above every seed of the other (the
ranges are separated), "does not hold" when they are separated the other way, and "cannot be told apart at
this spread" when the ranges overlap. With 3 seeds that is a coarse test; it never claims more than the seeds show.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sapo_core import metrics as M
from sapo_core.batch import EVAL_DIR, read_batch
from sapo_core.train import read_metrics

__all__ = ["BatchData", "CLAIMS", "load_batch", "group_label", "per_seed", "curves", "metric_frame", "accuracy",
           "accuracy_table", "claims", "caption"]


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
        """Group labels in batch order (gate, or gate and convention when the batch has both conventions)."""
        return list(dict.fromkeys(group_label(self, r) for r in self.runs))


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


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
        provenance[row["run"]] = _json(run_dir / "provenance.json")
        evaluation[row["run"]] = _json(run_dir / EVAL_DIR / "results.json")
    first = path / runs[0]["run"] / "config.yaml"
    recipe = yaml.safe_load(first.read_text()) if first.exists() else {}
    return BatchData(path, runs, metrics, provenance, evaluation, recipe or {})


def group_label(data: BatchData, row: dict) -> str:
    """The label of a run's group: its gate, plus its tau convention when the batch mixes conventions and its
    (tau_pos, tau_neg) when the batch runs the gate at several (arms `GATE@POS:NEG` of sapo_core.batch)."""
    conventions = {r["tau_convention"] for r in data.runs if r["tau_convention"] is not None}
    taus = {(r.get("tau_pos_base"), r.get("tau_neg_base")) for r in data.runs if r["gate"] == row["gate"]}
    tags = [row["tau_convention"]] if len(conventions) > 1 and row["tau_convention"] is not None else []
    if len(taus) > 1:
        tags.append("tau " + "/".join("?" if t is None else f"{t:g}" for t in (row.get("tau_pos_base"),
                                                                               row.get("tau_neg_base"))))
    return f"{row['gate']} ({', '.join(tags)})" if tags else row["gate"]


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


# The paper's qualitative claims (its §4-§5; method §5): (claim, metric, per-seed statistic, higher side, lower side).
# Metric names are checked against the registry (sapo_core.metrics); "accuracy" is the held-out evaluation.
CLAIMS = (
    ("Heavier (polynomial) tails explore more: higher token entropy than the Gaussian tail",
     M.key("entropy"), [("arctan", "erf"), ("softsign", "erf")]),
    ("Heavier tails give a larger effective variance of the importance ratios",
     M.key("ratio/var"), [("arctan", "erf"), ("softsign", "erf")]),
    ("Polynomial tails keep a broader region of significant gradient (larger mean gate weight f')",
     M.key("gate_weight/mean"), [("arctan", "erf"), ("softsign", "erf")]),
    ("Gaussian attenuation gives more localised updates (larger share of tokens with f' < 0.5)",
     M.key("gate_weight/low_frac"), [("erf", "arctan"), ("erf", "sigmoid")]),
    ("Gate shape changes entropy evolution: softsign and sigmoid end with different entropy",
     M.key("entropy"), [("softsign", "sigmoid"), ("sigmoid", "softsign")]),
    ("Smooth gates keep entropy higher than hard clipping",
     M.key("entropy"), [("sigmoid", "clip"), ("erf", "clip"), ("arctan", "clip"), ("softsign", "clip")]),
    ("Smooth gates reach higher held-out accuracy than hard clipping",
     "accuracy", [("sigmoid", "clip"), ("erf", "clip"), ("arctan", "clip"), ("softsign", "clip")]),
)


def _verdict(high: list[float], low: list[float]) -> str:
    if not high or not low:
        return "not measured"
    if min(high) > max(low):
        return "holds"
    if max(high) < min(low):
        return "does not hold"
    return "cannot be told apart at this spread"


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


def claims(data: BatchData, benchmark: str = "synthetic") -> list[dict]:
    """Each claim with the per-seed values it compares, per pair of gates, and a verdict (rule: module doc)."""
    table = []
    acc = {g: [e["mean"] for e in entries] for g, entries in accuracy(data, benchmark).items()}
    for claim, key, pairs in CLAIMS:
        values = acc if key == "accuracy" else per_seed(data, key)
        gates = {}
        for g, v in values.items():  # a gate run at several temperatures: its first group (the recipe's arm)
            gates.setdefault(g.split(" (")[0], v)
        if key == "entropy" and pairs[0] == ("softsign", "sigmoid"):  # "different": either direction
            a, b = gates.get("softsign", []), gates.get("sigmoid", [])
            verdicts = [_verdict(a, b), _verdict(b, a)]
            verdict = "holds" if "holds" in verdicts else verdicts[0] if "not measured" in verdicts else \
                "cannot be told apart at this spread"
            measured = f"softsign {_fmt(a)} vs sigmoid {_fmt(b)}"
        else:
            verdicts = [_verdict(gates.get(h, []), gates.get(lo, [])) for h, lo in pairs]
            measured = "; ".join(f"{h} {_fmt(gates.get(h, []))} vs {lo} {_fmt(gates.get(lo, []))}: {v}"
                                 for (h, lo), v in zip(pairs, verdicts))
            known = [v for v in verdicts if v != "not measured"]
            verdict = ("not measured" if not known else "holds" if all(v == "holds" for v in known)
                       else "does not hold" if any(v == "does not hold" for v in known)
                       else "cannot be told apart at this spread")
        statistic = (f"held-out {benchmark} mean@n" if key == "accuracy" else
                     f"mean of {key} over the second half of training")
        table.append({"claim": claim, "statistic": f"{statistic}, per seed: mean [min, max]", "measured": measured,
                      "verdict": verdict})
    return table


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
