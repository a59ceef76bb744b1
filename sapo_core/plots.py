"""Figures as functions: each takes data or gate names and returns a matplotlib Figure (STYLE §10).

Notebooks call these and save with `save_figure`, which writes `<name>.png` and `<name>.pdf`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from sapo_core import gates as G  # noqa: E402
from sapo_core import metrics as M  # noqa: E402
from sapo_core.checks import check_bool, check_int, check_positive, is_real  # noqa: E402
from sapo_core.paths import figures_dir, write_atomic  # noqa: E402

__all__ = ["GATE_COLORS", "TRAINING_PANELS", "gate_figure", "training_curves", "save_figure"]

GATE_COLORS = {"clip": "0.35", "sigmoid": "#1f77b4", "erf": "#d62728", "arctan": "#2ca02c",
               "softsign": "#9467bd"}


def _color(name: str, i: int) -> str:
    return GATE_COLORS.get(name, f"C{(i + 4) % 10}")


def _check_names(gate_names) -> list:
    """A list of gate names or Gates (not a bare string, which would be read per character)."""
    if isinstance(gate_names, (str, G.Gate)) or not isinstance(gate_names, (list, tuple)):
        raise TypeError(f"gate_names must be a list of gate names or Gates, got {type(gate_names).__name__} "
                        f"{gate_names!r}")
    if not gate_names:
        raise ValueError("gate_names is empty; give at least one gate")
    return [G.get_gate(name) for name in gate_names]


def _check_batch(data) -> None:
    from sapo_core.compare import BatchData

    if not isinstance(data, BatchData):
        raise TypeError(f"data must be a sapo_core.compare.BatchData (compare.load_batch(DIR)), got "
                        f"{type(data).__name__}")


def gate_figure(gate_names=("sigmoid", "erf", "arctan", "softsign"), tau: float | tuple = (1.0, 5.0, 10.0),
                tau_convention: str = "equal", x_range: tuple[float, float] = (0.0, 3.0),
                epsilon: float = 0.2, n_points: int = 1201):
    """Figure 1 of the paper: top row f_tau(x), bottom row f_tau'(x), one column per tau, with hard clipping.

    `tau` is one number or a list of them (the paper's layout: (1, 5, 10)); method §2, §5."""
    gates = _check_names(gate_names)
    base_taus = list(tau) if isinstance(tau, (list, tuple)) else [tau]
    if not base_taus:
        raise ValueError("tau must be a number or a non-empty list of numbers > 0")
    if isinstance(tau, torch.Tensor) or not all(map(is_real, base_taus)):
        raise TypeError(f"tau must be a real number or a list of them, got {tau!r}")
    columns = [[G.resolve_tau(gate, t, tau_convention) for gate in gates] for t in base_taus]  # each tau checked
    if not (isinstance(x_range, (list, tuple)) and len(x_range) == 2 and all(map(is_real, x_range))
            and all(map(math.isfinite, x_range))):
        raise TypeError(f"x_range must be a pair of finite numbers (x_min, x_max), got {x_range!r}")
    if not x_range[0] < x_range[1]:
        raise ValueError(f"x_range must be increasing, got {x_range}")
    if not (is_real(epsilon) and 0 <= epsilon < 1):  # false for nan
        raise ValueError(f"epsilon must be a number in [0, 1) (hard clipping's trust region), got {epsilon!r}")
    check_int("n_points", n_points, minimum=2)
    x = torch.linspace(x_range[0], x_range[1], n_points, dtype=torch.float64)
    n = len(base_taus)
    fig, axes = plt.subplots(2, n, figsize=(4.0 * n + 1.5, 7.0), squeeze=False, constrained_layout=True)
    legend = []
    for col, (base, taus) in enumerate(zip(base_taus, columns)):
        ax_f, ax_w = axes[0, col], axes[1, col]
        for i, (gate, t) in enumerate(zip(gates, taus)):
            label = f"{gate.name} (tau={t:.3g}, {gate.tail} tail)"
            ax_f.plot(x, gate.value(x, t), color=_color(gate.name, i), label=label, lw=1.8)
            ax_w.plot(x, gate.weight(x, t), color=_color(gate.name, i), label=label, lw=1.8)
            if col == 0:
                legend.append(f"{gate.name}: g'(z) = {gate.g_prime_text} ({gate.tail} tail)")
        # Hard clipping (GRPO): surrogate min(x, 1+eps) for A > 0 and max(x, 1-eps) for A < 0 (per unit |A|).
        for sign, style, tag in ((1.0, "--", "A>0"), (-1.0, ":", "A<0")):
            surrogate = (torch.minimum(x, torch.tensor(1 + epsilon)) if sign > 0
                         else torch.maximum(x, torch.tensor(1 - epsilon)))
            label = f"hard clip, {tag} (eps={epsilon:g})"
            ax_f.plot(x, surrogate, style, color=GATE_COLORS["clip"], lw=1.4, label=label)
            ax_w.plot(x, G.clip_weight(x, sign, epsilon, epsilon), style, color=GATE_COLORS["clip"], lw=1.4,
                      label=label)
            if col == 0:
                legend.append(label)
        title = f"tau = {base:g}" if tau_convention == "equal" else f"tau = {base:g} for sigmoid, width-matched"
        ax_f.set(title=title, ylabel="f(x)" if col == 0 else None)
        ax_w.set(xlabel="importance ratio x", ylabel="f'(x)" if col == 0 else None, ylim=(-0.03, 1.08))
        if tau_convention != "equal":
            ax_f.text(0.02, 0.98, "\n".join(f"{gate.name}: tau={t:.3g}" for gate, t in zip(gates, taus)),
                      transform=ax_f.transAxes, va="top", fontsize=7)
        for ax in (ax_f, ax_w):
            ax.axvline(1.0, color="0.8", lw=0.8, zorder=0)
            ax.grid(alpha=0.3)
    fig.legend(axes[1, 0].get_legend_handles_labels()[0], legend, loc="outside lower center", ncol=2, fontsize=8,
               frameon=False)
    fig.suptitle(f"Figure 1: gates f (top) and gradient weights f' (bottom) vs hard clipping ({tau_convention} tau)")
    return fig


SIGN_LABELS = ("all", "A>0", "A<0")  # the labels of a by-sign metric's three names (sapo_core.metrics.by_sign)
TRAINING_PANELS = (  # (title, [(metric key, label)]) read from metrics.jsonl by name; names from sapo_core.metrics
    ("reward", [(M.key("reward"), "R"), (M.key("rewards/format_reward/mean"), "R_format"),
                (M.key("rewards/correctness_reward/mean"), "R_correct")]),
    ("token entropy", [(M.key("entropy"), "entropy")]),
    ("importance-ratio variance", list(zip(M.by_sign("ratio/var"), SIGN_LABELS))),
    ("gate weight f'(r)", [(M.key("gate_weight/mean"), "mean"), (M.key("gate_weight/low_frac"), "share < 0.5")]),
    ("effective update ratio (EUR)", list(zip(M.by_sign("eur"), SIGN_LABELS))),
)


def training_curves(runs: dict[str, list[dict]] | list[dict], panels=TRAINING_PANELS):
    """Reward, entropy, ratio-variance, gate-weight and EUR curves over steps for one run or several labelled runs."""
    if isinstance(runs, list):
        runs = {"run": runs}
    if not isinstance(runs, dict):
        raise TypeError(f"runs must be a list of metric rows (train.read_metrics) or a dict of them by label, got "
                        f"{type(runs).__name__}")
    if not runs or not all(runs.values()):
        raise ValueError("training_curves needs at least one run with logged rows")
    for label, rows in runs.items():
        bad = next((r for r in rows if not (isinstance(r, dict) and "step" in r)), None) \
            if isinstance(rows, list) else rows
        if bad is not None:
            raise ValueError(f"runs[{label!r}] must be a list of metric rows (dicts with a 'step'), "
                             f"found {bad!r:.100}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), constrained_layout=True)
    styles = ("-", "--", ":")
    for ax, (title, series) in zip(axes, panels):
        for i, (label, rows) in enumerate(runs.items()):
            for style, (key, name) in zip(styles, series):
                points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                if not points:
                    continue
                steps, values = zip(*points)
                tag = name if len(runs) == 1 else f"{label} {name}" if len(series) > 1 else label
                color = _color(label, i) if len(runs) > 1 else f"C{series.index((key, name))}"
                ax.plot(steps, values, style, color=color,
                        label=tag, lw=1.4)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel whose metrics were not logged has nothing to label
            ax.legend(fontsize=7)
    return fig


def save_figure(fig, name: str, out_dir: str | os.PathLike | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` into the figures directory; return both paths.

    Both files are rendered deterministically (no timestamps), so re-running the same code leaves an
    existing figure byte-identical. A figure whose content would change is never replaced silently:
    that raises FileExistsError unless `overwrite=True`. Nothing is written unless both files can be.
    """
    if not isinstance(fig, matplotlib.figure.Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"figure name must be a string, got {type(name).__name__} {name!r}")
    check_bool("overwrite", overwrite)
    if not name or any(c in name for c in "/\\ \0"):
        raise ValueError(f"figure name must be a plain file stem without spaces, slashes or NUL, got {name!r}")
    out = figures_dir(out_dir)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    rendered = []
    for path in paths:
        buf = io.BytesIO()
        if path.suffix == ".png":
            fig.savefig(buf, format="png", dpi=150)
        else:
            fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        rendered.append(buf.getvalue())
    changed = [p for p, data in zip(paths, rendered) if p.exists() and p.read_bytes() != data]
    if changed and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, changed))} already exist(s) with different content; "
                              "pass overwrite=True to replace, or choose another out_dir")
    for path, data in zip(paths, rendered):
        if not (path.exists() and path.read_bytes() == data):
            write_atomic(path, data)
    return paths


def _eval_runs(results) -> dict[str, dict]:
    """{label: results.json dict} from one evaluation's results or several labelled ones."""
    if not isinstance(results, dict):
        raise TypeError(f"results must be an evaluation's results (results.json's dict) or a dict of them by label, "
                        f"got {type(results).__name__}")
    runs = {"model": results} if "benchmarks" in results else dict(results)
    if not runs or not all(isinstance(r, dict) and r.get("benchmarks") for r in runs.values()):
        raise ValueError("need at least one evaluation with benchmark results (results.json's dict)")
    return runs


def eval_accuracy(results):
    """method §6: mean@n per benchmark with its 95% bootstrap interval (bars) and maj@n (diamonds), per model."""
    runs = _eval_runs(results)
    names = list(dict.fromkeys(b for r in runs.values() for b in r["benchmarks"]))
    width = min(0.8 / len(runs), 0.35)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 1.3 * len(names) * max(1, len(runs) / 2)), 3.8),
                           constrained_layout=True)
    for i, (label, res) in enumerate(runs.items()):
        for j, name in enumerate(names):
            m = res["benchmarks"].get(name)
            if m is None or m["mean@n"] is None:
                continue
            x = j + (i - (len(runs) - 1) / 2) * width
            ci = m["mean@n_ci95"] or [m["mean@n"], m["mean@n"]]
            ax.bar(x, m["mean@n"], width * 0.9, color=_color(label, i), label=label if j == 0 else None,
                   yerr=[[m["mean@n"] - ci[0]], [ci[1] - m["mean@n"]]], capsize=3, ecolor="0.2")
            ax.plot(x, m["maj@n"], "D", color="0.15", ms=4, label="maj@n" if i == j == 0 else None)
            ax.annotate(f"n={m['n']}", (x, 0.01), ha="center", va="bottom", fontsize=7, color="white")
    ax.set(xticks=range(len(names)), xticklabels=names, xlim=(-0.6, len(names) - 0.4), ylim=(0, 1.05),
           ylabel="accuracy", title="mean@n with 95% interval; maj@n")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def pass_at_k_curve(results):
    """method §6: unbiased pass@k against k (log scale) per benchmark, per model."""
    runs = _eval_runs(results)
    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    styles = ("-", "--", ":", "-.")
    names = list(dict.fromkeys(b for r in runs.values() for b in r["benchmarks"]))
    for i, (label, res) in enumerate(runs.items()):
        for j, name in enumerate(names):
            m = res["benchmarks"].get(name)
            if m is None or not m["pass@k"] or None in m["pass@k"].values():
                continue
            ks = [int(k) for k in m["pass@k"]]
            tag = name if len(runs) == 1 else f"{label} {name}"
            ax.plot(ks, list(m["pass@k"].values()), styles[i % len(styles)], marker="o", ms=3, color=f"C{j}",
                    label=tag)
    ax.set_xscale("log", base=2)
    ks = sorted({int(k) for r in runs.values() for m in r["benchmarks"].values() for k in m["pass@k"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(xlabel="k", ylabel="pass@k", ylim=(0, 1.02), title="unbiased pass@k (Chen et al. 2021)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


__all__ += ["eval_accuracy", "pass_at_k_curve"]


# ---------------------------------------------------------------------------------------------
# Comparison of the gates of a batch (notebook 04): curves with their spread over seeds, the ratios
# seen in training against each gate's weight, accuracy per gate. Each takes a compare.BatchData.
# ---------------------------------------------------------------------------------------------

COMPARE_PANELS = tuple((M.key(name), title) for name, title in (
    ("reward", "reward"), ("entropy", "token entropy"), ("ratio/var", "importance-ratio variance"),
    ("gate_weight/low_frac", "share of tokens with f' < 0.5"), ("eur", "effective update ratio (EUR)")))


def _gate_of(group: str) -> str:
    return group.split(" (")[0]


def seed_band_curves(data, panels=COMPARE_PANELS):
    """Per gate: the mean over seeds of each metric against step, with the min-max band over seeds."""
    from sapo_core import compare

    _check_batch(data)
    frame = compare.metric_frame(data, [key for key, _ in panels])
    palette = {group: _color(_gate_of(group), i) for i, group in enumerate(data.groups)}
    dashes = {"equal": "", "width_matched": (4, 2)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.8), constrained_layout=True)
    for i, (ax, (key, title)) in enumerate(zip(axes, panels)):
        logged = frame.dropna(subset=[key])
        if not logged.empty:  # mean over seeds at each step, band = min-max over seeds
            sns.lineplot(data=logged, x="step", y=key, hue="group", hue_order=data.groups, palette=palette,
                         style="convention", dashes=dashes, estimator="mean", errorbar=lambda v: (v.min(), v.max()),
                         ax=ax, lw=1.5, legend=i == 0)
        ax.set(title=title, xlabel="step", ylabel=None)
        ax.grid(alpha=0.3)
    if axes[0].get_legend() is not None:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"mean over seeds, band = min-max over seeds\n{compare.caption(data)}", fontsize=9)
    return fig


def ratio_distribution(data, x_max: float = 3.0):
    """The importance ratios the gates saw in training (share of tokens per ratio bin, second half of training,
    pooled over seeds) beside each gate's gradient weight f'(r) at the temperature it ran at (A > 0)."""
    import numpy as np

    from sapo_core import compare

    _check_batch(data)
    check_positive("x_max", x_max)

    edges = np.asarray(M.RATIO_HIST_EDGES)
    groups = data.groups
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.4), sharey=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    x = torch.linspace(0.0, x_max, 601, dtype=torch.float64)
    for i, (ax, group) in enumerate(zip(axes, groups)):
        gate = _gate_of(group)
        counts = np.zeros(len(edges) - 1)
        for row in compare._runs_of(data, group):
            rows = data.metrics[row["run"]]
            last = max((m["step"] for m in rows), default=0)
            for m in rows:
                if m["step"] > last / 2 and "ratio/hist/00" in m:
                    counts += [m[f"ratio/hist/{j:02d}"] for j in range(len(edges) - 1)]
        if counts.sum() > 0:  # shares on a log axis: the tails, where gates differ, hold few tokens
            share = ax.twinx()
            finite = edges.copy()
            finite[-1] = x_max + 0.05  # draw the r >= 3 bin as a sliver at the right edge
            share.stairs(counts / counts.sum(), finite, fill=True, color="0.8", zorder=0)
            share.set_yscale("log")
            share.set_ylim(1e-5, 1.5)
            if i == len(groups) - 1:
                share.set_ylabel("share of tokens (grey, log)")
            ax.set_zorder(share.get_zorder() + 1)
            ax.patch.set_visible(False)
        prov = next((data.provenance[r["run"]] for r in compare._runs_of(data, group)), {})
        if gate == "clip":
            eps = prov.get("epsilon_high") or 0.2
            ax.plot(x, G.clip_weight(x, 1.0, prov.get("epsilon_low") or 0.2, eps), color=GATE_COLORS["clip"],
                    label="clip weight (A>0)")
        elif prov.get("tau_pos"):
            ax.plot(x, G.get_gate(gate).weight(x, prov["tau_pos"]), color=_color(gate, i),
                    label=f"f'(r), tau={prov['tau_pos']:.3g}")
        ax.set(title=group, xlabel="importance ratio r", xlim=(0, x_max + 0.05), ylim=(0, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("gradient weight f'(r)")
    fig.suptitle(f"the ratios seen in training (2nd half, seeds pooled) and each gate's weight\n"
                 f"{compare.caption(data)}", fontsize=9)
    return fig


def accuracy_by_gate(data, benchmark: str = "synthetic"):
    """Held-out accuracy per gate: each seed's mean@n with its bootstrap interval over instances, and the mean
    over seeds (bar)."""
    from sapo_core import compare

    _check_batch(data)
    if not isinstance(benchmark, str):
        raise TypeError(f"benchmark must be a benchmark name (str), got {type(benchmark).__name__} {benchmark!r}")
    acc = compare.accuracy(data, benchmark)
    fig, ax = plt.subplots(figsize=(1.3 * max(len(acc), 3) + 1.5, 3.8), constrained_layout=True)
    seeds = pd.DataFrame([{"group": g, "mean": e["mean"]} for g, entries in acc.items() for e in entries],
                         columns=["group", "mean"])
    if not seeds.empty:  # the bar: mean over seeds
        sns.barplot(data=seeds, x="group", y="mean", order=list(acc), hue="group", estimator="mean", errorbar=None,
                    palette={g: _color(_gate_of(g), i) for i, g in enumerate(acc)}, alpha=0.45, width=0.7,
                    legend=False, ax=ax)
    for i, (group, entries) in enumerate(acc.items()):
        if not entries:
            continue
        color = _color(_gate_of(group), i)
        for j, e in enumerate(entries):
            x = i + (j - (len(entries) - 1) / 2) * 0.18
            ci = e["ci95"] or [e["mean"], e["mean"]]
            ax.errorbar(x, e["mean"], yerr=[[e["mean"] - ci[0]], [ci[1] - e["mean"]]], fmt="o", color=color,
                        ms=4, capsize=2, lw=1)
    n = next((e["n"] for entries in acc.values() for e in entries), None)
    ax.set(xticks=range(len(acc)), xticklabels=list(acc), ylim=(0, 1.02), xlabel=None, ylabel=f"{benchmark} mean@{n}",
           title="bar: mean over seeds; dots: each seed with its 95% bootstrap interval over instances")
    ax.title.set_fontsize(8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(compare.caption(data), fontsize=8)
    return fig


def heldout_accuracy_curves(data, benchmark: str = "synthetic"):
    """Held-out accuracy over training per arm (the rows of heldout_eval_steps, method §6): the mean over seeds of
    mean@n against step, with the min-max band over seeds."""
    from sapo_core import compare

    _check_batch(data)
    curves = compare.heldout_curves(data, benchmark)  # checks the benchmark name
    if not curves:
        raise ValueError(f"no run of {data.path} logged held-out accuracy on {benchmark!r} during training; train "
                         "with heldout_eval_steps > 0 (the tiny recipes do)")
    key = f"heldout/{benchmark}/mean@n"
    frame = compare.metric_frame(data, [key]).dropna(subset=[key])
    palette = {group: _color(_gate_of(group), i) for i, group in enumerate(data.groups)}
    fig, ax = plt.subplots(figsize=(6.5, 4.0), constrained_layout=True)
    sns.lineplot(data=frame, x="step", y=key, hue="group", hue_order=list(curves), palette=palette,
                 style="convention", dashes={"equal": "", "width_matched": (4, 2)}, estimator="mean",
                 errorbar=lambda v: (v.min(), v.max()), marker="o", ms=4, ax=ax, lw=1.5)
    ax.set(xlabel="step", ylabel=f"{benchmark} mean@n, validation split", ylim=(0, 1.02),
           title="accuracy over training on the validation split: mean over seeds, band = min-max over seeds")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(compare.caption(data), fontsize=8)
    return fig


__all__ += ["COMPARE_PANELS", "seed_band_curves", "ratio_distribution", "accuracy_by_gate", "heldout_accuracy_curves"]


def _check_study(table) -> None:
    needed = {"gate", "kind", "tau_pos", "tail_heaviness", "accuracy", "accuracy_min", "accuracy_max", "eur"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise TypeError("table must be sapo_core.study.study_table(data) (a DataFrame with columns "
                        f"{', '.join(sorted(needed))})")


def study_tau_figure(table):
    """Accuracy (mean over seeds, min-max bar) and EUR against tau_pos per gate; each method as a flat line."""
    _check_study(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    gates, methods = table[table["kind"] == "gate"], table[table["kind"] == "method"]
    for i, (gate, rows) in enumerate(gates.groupby("gate", sort=False)):
        rows = rows.sort_values("tau_pos")
        color = _color(gate, i)
        axes[0].errorbar(rows["tau_pos"], rows["accuracy"], yerr=[rows["accuracy"] - rows["accuracy_min"],
                                                                  rows["accuracy_max"] - rows["accuracy"]],
                         marker="o", ms=4, capsize=2, color=color, label=gate)
        axes[1].plot(rows["tau_pos"], rows["eur"], marker="o", ms=4, color=color, label=gate)
    for i, row in enumerate(methods.itertuples()):
        for ax, value in ((axes[0], row.accuracy), (axes[1], row.eur)):
            ax.axhline(value, color=_color(row.gate, i + 6), ls=(0, (4, 2)), lw=1, label=f"{row.gate} (no tau)")
    axes[0].set(xscale="log", xlabel="tau_pos (tau_neg beside it)", ylabel="test mean@n",
                title="accuracy against tau: mean over seeds, bar = min-max")
    axes[1].set(xscale="log", xlabel="tau_pos", ylabel="EUR (second half)", title="EUR against tau (method §4.1)")
    for ax in axes:
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    return fig


def study_tail_figure(table, tau_pos: float | None = None):
    """Accuracy against tail heaviness 1/nu (Student-t's axis; every gate placed by its tail exponent) at one
    tau_pos (default: the largest of the table), each method as a flat line."""
    _check_study(table)
    gates = table[table["kind"] == "gate"]
    tau_pos = gates["tau_pos"].max() if tau_pos is None else tau_pos
    rows = gates[gates["tau_pos"] == tau_pos]
    if rows.empty:
        raise ValueError(f"no gate ran at tau_pos={tau_pos}; the table has {sorted(set(gates['tau_pos']))}")
    fig, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
    for i, row in enumerate(rows.itertuples()):
        ax.errorbar(row.tail_heaviness, row.accuracy, yerr=[[row.accuracy - row.accuracy_min],
                                                           [row.accuracy_max - row.accuracy]],
                    fmt="o", capsize=2, color=_color(row.gate, i), label=row.gate)
    for i, row in enumerate(table[table["kind"] == "method"].itertuples()):
        ax.axhline(row.accuracy, color=_color(row.gate, i + 6), ls=(0, (4, 2)), lw=1, label=f"{row.gate} (no tau)")
    ax.set(xlabel="tail heaviness 1/nu (g' ~ |z|^-(nu+1); Gaussian and exponential tails ~0)",
           ylabel="test mean@n", title=f"accuracy against tail heaviness at tau_pos = {tau_pos:g}")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


__all__ += ["study_tau_figure", "study_tail_figure"]
