"""Figures as functions: each takes data or gate names and returns a matplotlib Figure (STYLE §10).

Notebooks call these and save with `save_figure`, which writes `<name>.png` and `<name>.pdf`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from sapo_core import gates as G  # noqa: E402
from sapo_core.paths import figures_dir, write_atomic  # noqa: E402

__all__ = ["GATE_COLORS", "TRAINING_PANELS", "gate_figure", "training_curves", "save_figure"]

GATE_COLORS = {"clip": "0.35", "sigmoid": "#1f77b4", "erf": "#d62728", "arctan": "#2ca02c",
               "softsign": "#9467bd"}


def _color(name: str, i: int) -> str:
    return GATE_COLORS.get(name, f"C{(i + 4) % 10}")


def gate_figure(gate_names=("sigmoid", "erf", "arctan", "softsign"), tau: float = 1.0,
                tau_convention: str = "equal", x_range: tuple[float, float] = (0.0, 3.0),
                epsilon: float = 0.2, n_points: int = 1201):
    """Figure 1 (method §5): each gate f_tau(x) and its derivative f_tau'(x), beside hard clipping."""
    if not x_range[0] < x_range[1]:
        raise ValueError(f"x_range must be increasing, got {x_range}")
    x = torch.linspace(x_range[0], x_range[1], n_points, dtype=torch.float64)
    fig, (ax_f, ax_w) = plt.subplots(1, 2, figsize=(11, 5.0), constrained_layout=True)
    for i, name in enumerate(gate_names):
        gate = G.get_gate(name)
        t = G.resolve_tau(gate, tau, tau_convention)
        label = f"{gate.name} (tau={t:.3g}, {gate.tail} tail)"
        ax_f.plot(x, gate.value(x, t), color=_color(gate.name, i), label=label, lw=1.8)
        ax_w.plot(x, gate.weight(x, t), color=_color(gate.name, i), label=label, lw=1.8)
    # Hard clipping (GRPO): surrogate min(x, 1+eps) for A > 0 and max(x, 1-eps) for A < 0 (per unit |A|).
    for sign, style, tag in ((1.0, "--", "A>0"), (-1.0, ":", "A<0")):
        surrogate = torch.minimum(x, torch.tensor(1 + epsilon)) if sign > 0 else torch.maximum(x, torch.tensor(1 - epsilon))
        ax_f.plot(x, surrogate, style, color=GATE_COLORS["clip"], lw=1.4, label=f"hard clip, {tag} (eps={epsilon:g})")
        ax_w.plot(x, G.clip_weight(x, sign, epsilon, epsilon), style, color=GATE_COLORS["clip"], lw=1.4,
                  label=f"hard clip, {tag} (eps={epsilon:g})")
    ax_f.set(xlabel="importance ratio x", ylabel="f(x)", title="gate value f")
    ax_w.set(xlabel="importance ratio x", ylabel="f'(x)", title="gradient weight f'", ylim=(-0.03, 1.08))
    for ax in (ax_f, ax_w):
        ax.axvline(1.0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    handles, labels = ax_w.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Smooth gates vs hard clipping (tau convention: {tau_convention}, base tau = {tau:g})")
    return fig


TRAINING_PANELS = (  # (title, [(metric key, label)]) read from metrics.jsonl by name
    ("reward", [("reward", "R"), ("rewards/format_reward/mean", "R_format"),
                ("rewards/correctness_reward/mean", "R_correct")]),
    ("token entropy", [("entropy", "entropy")]),
    ("importance-ratio variance", [("ratio/var", "all"), ("ratio/pos/var", "A>0"), ("ratio/neg/var", "A<0")]),
    ("gate weight f'(r)", [("gate_weight/mean", "mean"), ("gate_weight/low_frac", "share < 0.5")]),
)


def training_curves(runs: dict[str, list[dict]] | list[dict], panels=TRAINING_PANELS):
    """Reward, entropy, ratio-variance and gate-weight curves over steps for one run or several labelled runs."""
    if isinstance(runs, list):
        runs = {"run": runs}
    if not runs or not all(runs.values()):
        raise ValueError("training_curves needs at least one run with logged rows")
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
                ax.plot(steps, values, style, color=_color(label, i) if len(runs) > 1 else f"C{series.index((key, name))}",
                        label=tag, lw=1.4)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def save_figure(fig, name: str, out_dir: str | os.PathLike | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write `<name>.png` and `<name>.pdf` into the figures directory; return both paths.

    Both files are rendered deterministically (no timestamps), so re-running the same code leaves an
    existing figure byte-identical. A figure whose content would change is never replaced silently:
    that raises FileExistsError unless `overwrite=True`. Nothing is written unless both files can be.
    """
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"figure name must be a plain file stem without spaces or slashes, got {name!r}")
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
