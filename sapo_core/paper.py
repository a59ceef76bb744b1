"""The paper's Figures 2-5 and Table 1 (arXiv 2602.19345v2) drawn from a batch directory (`sapo_core.batch`).

    data = compare.load_batch("runs/paper/batch")
    paper.figure3(data)                # reward over steps: GRPO and the four gates at (tau_pos, tau_neg) = (10, 12)
    paper.table1(data)                 # accuracy per arm and benchmark beside the paper's Table 1
    paper.save_paper_figures(data)     # figures/paper_fig{2,3,4,5}_*.png|pdf

An arm is a gate at one (tau_pos, tau_neg), read from each run's config.yaml (`sapo_temperature_pos`/`_neg`), or
hard clipping (GRPO, eps from `epsilon`). The paper gives every gate the same temperatures: its figures and table
are drawn from the runs of the equal convention (PAPER_CONVENTION); a batch's width-matched runs, whose recipes
name the same base pair, are left to notebook 04 and the claims (method §2.5), never pooled with them.
A curve is the mean over the arm's seeds at each step with the min-max band over seeds (seaborn); the metrics
are read from metrics.jsonl by name: `reward`, `entropy`, `eur` (method §4, EUR §4.1; figures §5). The paper
names its erf temperatures (1, 1.05), (10, 12), (13, 15) and "tau = 5" without a pair; we run tau = 5 as (5, 6),
the paper's tau_neg / tau_pos = 1.2 of (10, 12).

Table 1: per arm and benchmark our accuracy (%) as the mean over seeds with a 95% interval (Student t over the
seeds' mean@n when there are >= 2 seeds; the evaluation's bootstrap interval over instances for one seed), the
paper's number beside it (`paper_table1.csv`). The base model is read from `<batch>/base/results.json`
(written by `sapo_core.demo`). A benchmark the batch did not evaluate (GSM8K, MATH500, AIME need a GPU) is marked
"GPU only".
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import yaml
from scipy import stats

from sapo_core import compare
from sapo_core.paths import REPO_ROOT
from sapo_core.plots import GATE_COLORS, save_figure

__all__ = ["PAPER_TAUS", "ERF_SWEEP", "SMOOTH_GATES", "BASE_DIR", "TABLE1_BENCHMARKS", "paper_table1", "paper_runs",
           "arms_frame", "figure2", "figure3", "figure4", "figure5", "FIGURES", "EXAMPLE_BATCH", "table1",
           "save_paper_figures"]

PAPER = "arXiv 2602.19345v2"
PAPER_TAUS = (10.0, 12.0)  # (tau_pos, tau_neg) of every smooth gate in the paper's Figures 3-4 and Table 1
ERF_SWEEP = ((1.0, 1.05), (5.0, 6.0), (10.0, 12.0), (13.0, 15.0))  # Figures 2 and 5; "tau = 5" read as (5, 6)
TAU5 = "the paper's tau = 5 run as (5, 6)"
SMOOTH_GATES = ("sigmoid", "erf", "arctan", "softsign")
PAPER_CONVENTION = "equal"  # the paper's temperatures are the same for every gate (method §2.5)
EXAMPLE_BATCH = REPO_ROOT / "data" / "paper" / "example_batch"  # fabricated (tools/make_paper_batch.py): notebook 05
BASE_DIR = "base"  # inside a batch directory: the base model's evaluation, results.json
TABLE1_FILE = Path(__file__).with_name("paper_table1.csv")
# Table 1's columns: our benchmark names (sapo_core.evaluate) -> the paper's; AIME pools aime24 and aime25
TABLE1_BENCHMARKS = {"synthetic": "synthetic", "gsm8k": "GSM8K", "math500": "MATH500", "aime": "AIME"}
TABLE1_ARMS = (("base", "base model"), ("clip", "+ GRPO (clip)"), ("sigmoid", "+ SAPO (sigmoid)"),
               ("erf", "+ SAPO (erf)"), ("arctan", "+ SAPO (arctan)"), ("softsign", "+ SAPO (softsign)"))
GPU_ONLY = "GPU only"


def paper_table1(path: str | Path = TABLE1_FILE) -> dict[str, dict[str, float]]:
    """The paper's Table 1 (accuracy, %) from its data file: {arm: {benchmark: value}}."""
    lines = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    table = {}
    for row in csv.DictReader(lines):
        arm = row.pop("arm")
        table[arm] = {bench: float(value) for bench, value in row.items()}
    return table


def _run_taus(data: compare.BatchData, run: str) -> tuple[float, float, float]:
    """(tau_pos, tau_neg, epsilon) of one run, from its config.yaml."""
    path = data.path / run / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; the run's temperatures are read from it")
    recipe = yaml.safe_load(path.read_text()) or {}
    return (float(recipe["sapo_temperature_pos"]), float(recipe["sapo_temperature_neg"]),
            float(recipe.get("epsilon", 0.2)))


def _arm_label(gate: str, tau_pos: float, tau_neg: float, epsilon: float) -> str:
    return f"GRPO (clip, eps {epsilon:g})" if gate == "clip" else f"{gate} ({tau_pos:g}, {tau_neg:g})"


def _check_batch(data) -> None:
    if not isinstance(data, compare.BatchData):
        raise TypeError(f"data must be a sapo_core.compare.BatchData (compare.load_batch(DIR)), got "
                        f"{type(data).__name__}")


def paper_runs(data: compare.BatchData) -> compare.BatchData:
    """The batch's runs of the paper's convention (equal tau; a method such as clip has no other), the only ones the
    paper's figures and table draw."""
    _check_batch(data)
    groups = [compare.group_label(data, r) for r in data.runs
              if (r["tau_convention"] or PAPER_CONVENTION) == PAPER_CONVENTION]
    if not groups:
        raise ValueError(f"the batch {data.path} has no run at the paper's convention ({PAPER_CONVENTION} tau)")
    return compare.subset(data, list(dict.fromkeys(groups)))


def arms_frame(data: compare.BatchData, keys: tuple[str, ...] = ("reward", "entropy", "eur")) -> pd.DataFrame:
    """compare.metric_frame with each run's arm label, tau_pos and tau_neg (from its config.yaml)."""
    _check_batch(data)
    frame = compare.metric_frame(data, keys)
    arms = {}
    for run in data.runs:
        tau_pos, tau_neg, epsilon = _run_taus(data, run["run"])
        arms[run["run"]] = (_arm_label(run["gate"], tau_pos, tau_neg, epsilon), tau_pos, tau_neg)
    frame["arm"], frame["tau_pos"], frame["tau_neg"] = (frame["run"].map(lambda r, i=i: arms[r][i]) for i in range(3))
    return frame


def _select(frame: pd.DataFrame, arms: list[tuple[str, tuple[float, float] | None]]) -> pd.DataFrame:
    """The rows of the arms (gate, (tau_pos, tau_neg)) asked for (clip: any temperature), in that order."""
    parts = []
    for gate, taus in arms:
        part = frame[frame["gate"] == gate]
        if taus is not None:
            part = part[(part["tau_pos"] == taus[0]) & (part["tau_neg"] == taus[1])]
        parts.append(part)
    selected = pd.concat(parts) if parts else frame.iloc[:0]
    if selected.empty:
        wanted = ", ".join(g if t is None else f"{g} ({t[0]:g}, {t[1]:g})" for g, t in arms)
        raise ValueError(f"the batch {frame.attrs.get('path', '')} has none of the arms {wanted}; "
                         f"it has {', '.join(dict.fromkeys(frame['arm']))}")
    return selected


def _caption(data: compare.BatchData, frame: pd.DataFrame) -> str:
    taus = sorted({(p, n) for g, p, n in zip(frame["gate"], frame["tau_pos"], frame["tau_neg"]) if g != "clip"})
    return f"tau (pos, neg) {'; '.join(f'({p:g}, {n:g})' for p, n in taus) or '-'}; {compare.caption(data)}"


def _palette(frame: pd.DataFrame, by_tau: bool) -> dict[str, str]:
    """Gate colours (plots.GATE_COLORS), or for one gate at several temperatures a sequential palette by tau."""
    arms = list(dict.fromkeys(frame["arm"]))
    if by_tau:
        return dict(zip(arms, sns.color_palette("rocket_r", len(arms) + 1)[1:]))
    gate_of = dict(zip(frame["arm"], frame["gate"]))
    return {arm: GATE_COLORS.get(gate_of[arm], f"C{i}") for i, arm in enumerate(arms)}


def _band(ax, frame: pd.DataFrame, key: str, title: str, palette: dict[str, str]) -> None:
    """Mean over seeds against step with the min-max band over seeds, one line per arm."""
    logged = frame.dropna(subset=[key])
    if logged.empty:
        ax.text(0.5, 0.5, f"'{key}' is not logged in metrics.jsonl", ha="center", va="center",
                transform=ax.transAxes)
    else:
        sns.lineplot(data=logged, x="step", y=key, hue="arm", hue_order=[a for a in palette if a in set(logged["arm"])],
                     palette=palette, estimator="mean", errorbar=lambda v: (v.min(), v.max()), ax=ax, lw=1.5)
        ax.legend(fontsize=7, title=None)
    ax.set(title=title, xlabel="step", ylabel=key)
    ax.grid(alpha=0.3)


def _figure(data, number: int, what: str, arms, panels, by_tau: bool):
    data = paper_runs(data)
    frame = arms_frame(data)
    frame.attrs["path"] = str(data.path)
    frame = _select(frame, arms)
    palette = _palette(frame, by_tau)
    width = max(7.5, 5.2 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.4), constrained_layout=True, squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        _band(ax, frame, key, title, palette)
    seeds = frame.groupby("arm")["seed"].nunique()
    count = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    lines = [f"Figure {number} ({PAPER}): {what}",
             f"mean over seeds, band = min-max over seeds ({count} seed{'s' * bool(seeds.max() > 1)} per arm)",
             _caption(data, frame)]
    fig.suptitle("\n".join(textwrap.fill(line, int(17 * width)) for line in lines), fontsize=8)
    return fig


def _paper_arms() -> list[tuple[str, tuple[float, float] | None]]:
    return [("clip", None)] + [(g, PAPER_TAUS) for g in SMOOTH_GATES]


def figure2(data: compare.BatchData, sweep=ERF_SWEEP):
    """Figure 2: reward over training steps for the erf gate at several (tau_pos, tau_neg)."""
    return _figure(data, 2, f"reward of erf at several (tau_pos, tau_neg); {TAU5}", [("erf", t) for t in sweep],
                   [("reward", "reward")], by_tau=True)


def figure3(data: compare.BatchData):
    """Figure 3: reward over training steps for GRPO and the four smooth gates at (10, 12)."""
    return _figure(data, 3, "reward of GRPO and the smooth gates at (10, 12)", _paper_arms(),
                   [("reward", "reward")], by_tau=False)


def figure4(data: compare.BatchData):
    """Figure 4: policy entropy (left) and EUR (right) for GRPO and the smooth gates at (10, 12)."""
    return _figure(data, 4, "entropy and EUR of GRPO and the smooth gates at (10, 12)", _paper_arms(),
                   [("entropy", "policy entropy"), ("eur", "effective update ratio (EUR)")], by_tau=False)


def figure5(data: compare.BatchData, sweep=ERF_SWEEP):
    """Figure 5: policy entropy (left) and EUR (right) for erf at several (tau_pos, tau_neg)."""
    return _figure(data, 5, f"entropy and EUR of erf at several (tau_pos, tau_neg); {TAU5}",
                   [("erf", t) for t in sweep],
                   [("entropy", "policy entropy"), ("eur", "effective update ratio (EUR)")], by_tau=True)


def _accuracy(results: dict, benchmark: str) -> dict | None:
    """mean@n (a fraction) with its interval for one benchmark of a results.json; the paper's AIME is `aime`
    (AIME24 and AIME25 pooled) or, from an evaluation of both separately, their mean weighted by problems."""
    benches = results.get("benchmarks") or {}
    names = ["aime24", "aime25"] if benchmark == "aime" and "aime" not in benches else [benchmark]
    found = [benches[b] for b in names if b in benches and benches[b].get("mean@n") is not None]
    if len(found) != len(names):
        return None
    if len(found) == 1:
        return {"mean": found[0]["mean@n"], "ci95": found[0].get("mean@n_ci95")}
    problems = sum(m["n_problems"] for m in found)
    return {"mean": sum(m["mean@n"] * m["n_problems"] for m in found) / problems, "ci95": None}


def _cell(values: list[dict], unit: str = "seed") -> str:
    """'mean [low, high] (k seeds)' in %, the interval as the module docstring says."""
    means = [v["mean"] for v in values]
    mean = statistics.fmean(means)
    if len(means) >= 2:
        sem = statistics.stdev(means) / math.sqrt(len(means))
        low, high = stats.t.interval(0.95, len(means) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    else:
        low, high = values[0]["ci95"] or (mean, mean)
    return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}] ({len(means)} {unit}{'s' * (len(means) > 1)})"


def table1(data: compare.BatchData, taus: tuple[float, float] = PAPER_TAUS) -> pd.DataFrame:
    """Table 1: accuracy (%) per arm (base, GRPO, the four gates at `taus`) and benchmark, ours beside the paper's."""
    _check_batch(data)
    if not (isinstance(taus, tuple) and len(taus) == 2):
        raise TypeError(f"taus must be a pair (tau_pos, tau_neg), got {taus!r}")
    paper = paper_table1()
    runs = paper_runs(data)
    evaluated = {b for r in data.evaluation.values() for b in (r.get("benchmarks") or {})}
    base_path = data.path / BASE_DIR / "results.json"
    base = json.loads(base_path.read_text()) if base_path.exists() else None
    rows = []
    for arm, label in TABLE1_ARMS:
        if arm == "base":
            results = [] if base is None else [base]
        else:
            results = [runs.evaluation[r["run"]] for r in runs.runs if r["gate"] == arm
                       and (arm == "clip" or _run_taus(runs, r["run"])[:2] == tuple(taus))]
        row = {"model": label}
        for bench, title in TABLE1_BENCHMARKS.items():
            values = [v for v in (_accuracy(r, bench) for r in results) if v is not None]
            if values:
                row[f"ours {title}"] = _cell(values, "evaluation" if arm == "base" else "seed")
            elif bench not in evaluated and not (bench == "aime" and {"aime24", "aime25"} <= evaluated):
                row[f"ours {title}"] = GPU_ONLY if bench != "synthetic" else "not evaluated"
            else:
                row[f"ours {title}"] = "not evaluated" if arm == "base" else "no finished run"
            if bench in paper.get(arm, {}):
                row[f"paper {title}"] = f"{paper[arm][bench]:.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


# figure number -> (file stem under figures/, drawing function)
FIGURES = {2: ("paper_fig2_erf_reward", figure2), 3: ("paper_fig3_reward", figure3),
           4: ("paper_fig4_entropy_eur", figure4), 5: ("paper_fig5_erf_entropy_eur", figure5)}


def save_paper_figures(data: compare.BatchData, figures=(2, 3, 4, 5), out_dir=None, *,
                       overwrite: bool = False) -> list[Path]:
    """Draw the given paper figures and save each as `paper_fig<N>_<what>.png|pdf` (plots.save_figure)."""
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"figures={list(figures)}: no paper figure {unknown[0]!r}; choose from 2, 3, 4, 5")
    paths = []
    for number in figures:
        name, function = FIGURES[number]
        fig = function(data)
        paths += save_figure(fig, name, out_dir, overwrite=overwrite)
        plt.close(fig)
    return paths
