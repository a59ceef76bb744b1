"""Figures: what they draw, and that saving never replaces a different figure silently."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from sapo_core import gates as G
from sapo_core import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_gate_figure_draws_value_and_weight_of_each_gate_beside_hard_clipping():
    fig = plots.gate_figure(["sigmoid", "erf"], tau=2.0, tau_convention="width_matched", x_range=(0.5, 1.5))
    ax_f, ax_w = fig.axes[:2]
    def curves(ax):
        return [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]  # not x = 1

    assert curves(ax_f) == curves(ax_w)
    assert [c.split(" ")[0] for c in curves(ax_w)] == ["sigmoid", "erf", "hard", "hard"]  # clip for A>0, A<0
    erf = next(line for line in ax_w.lines if line.get_label().startswith("erf"))
    x, w = erf.get_data()
    t = G.width_matched_tau("erf", 2.0)
    assert f"tau={t:.3g}" in erf.get_label()
    np.testing.assert_allclose(w, G.get_gate("erf").weight(torch.as_tensor(x), t).numpy(), rtol=1e-12)
    assert x.min() == 0.5 and x.max() == 1.5
    with pytest.raises(ValueError, match="x_range must be increasing"):
        plots.gate_figure(x_range=(2.0, 1.0))


def _rows(n=5, **extra):
    return [{"step": s, "reward": 0.1 * s, "entropy": 1.0 / s, "ratio/var": 0.01 * s, "gate_weight/mean": 0.9,
             **extra} for s in range(1, n + 1)]


def test_training_curves_plot_the_logged_keys_per_run_and_refuse_empty_runs():
    fig = plots.training_curves({"erf": _rows(), "clip": _rows(3)})
    reward_ax = fig.axes[0]
    labels = sorted(line.get_label() for line in reward_ax.lines)
    assert labels == ["clip R", "erf R"]  # components absent from the rows are skipped, not drawn as empty
    erf_line = next(line for line in reward_ax.lines if line.get_label() == "erf R")
    np.testing.assert_allclose(erf_line.get_ydata(), [0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(ValueError, match="at least one run"):
        plots.training_curves({"erf": []})


def _small(n=5):
    """A one-line 1 x 1 inch figure: save_figure does not look inside, and small figures save fast."""
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot(range(n))
    return fig


def test_save_figure_writes_png_and_pdf_and_is_byte_stable(tmp_path):
    paths = plots.save_figure(_small(), "curves", tmp_path)
    assert [p.name for p in paths] == ["curves.png", "curves.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    before = [p.read_bytes() for p in paths]
    plots.save_figure(_small(), "curves", tmp_path)  # same figure again: no error
    assert [p.read_bytes() for p in paths] == before


def test_save_figure_never_replaces_a_different_figure_silently(tmp_path):
    paths = plots.save_figure(_small(), "curves", tmp_path)
    before = [p.read_bytes() for p in paths]
    with pytest.raises(FileExistsError, match="curves.png.*different content.*overwrite=True"):
        plots.save_figure(_small(7), "curves", tmp_path)
    assert [p.read_bytes() for p in paths] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.pdf", "curves.png"]  # no temp files left
    plots.save_figure(_small(7), "curves", tmp_path, overwrite=True)
    assert all(p.read_bytes() != b for p, b in zip(paths, before))


@pytest.mark.parametrize("name", ["", "a/b", "a b", "a\\b"])
def test_save_figure_refuses_names_that_are_not_plain_stems(tmp_path, name):
    with pytest.raises(ValueError, match="plain file stem"):
        plots.save_figure(_small(), name, tmp_path)


@pytest.mark.slow
def test_training_curves_of_a_real_run_draw_every_panel_from_its_metrics_file(tiny_run):
    from sapo_core.train import read_metrics

    rows = read_metrics(tiny_run)
    fig = plots.training_curves({"sigmoid": rows, "again": rows})
    for ax, (title, keys) in zip(fig.axes, plots.TRAINING_PANELS):
        logged = [key for key, _ in keys if any(key in r for r in rows)]
        drawn = [line for line in ax.lines if not line.get_label().startswith("_")]
        assert logged and len(drawn) == 2 * len(logged), title  # one curve per run and logged key, none empty
    reward = next(line for line in fig.axes[0].lines if line.get_label() == "sigmoid R")
    np.testing.assert_allclose(reward.get_ydata(), [r["reward"] for r in rows])
