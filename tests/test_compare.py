"""sapo_core.compare's tables and the comparison plots drawn with seaborn, on the fabricated batch."""

import numpy as np
import pytest

from sapo_core import compare, plots
from sapo_core.paper import EXAMPLE_BATCH

# tools/make_paper_batch.py: arm a, seed s (0, 1), step k: reward = 0.2 + 0.05 a + 0.1 k + 0.02 s,
# held-out mean@8 = 0.5 + 0.02 a + 0.04 s; arms clip, sigmoid, erf, arctan, softsign, erf at three other taus


@pytest.fixture(scope="module")
def data():
    return compare.load_batch(EXAMPLE_BATCH)


def test_metric_frame_is_long_form(data):
    frame = compare.metric_frame(data, ["reward", "not_logged"])
    assert len(frame) == 8 * 2 * 4  # arms x seeds x steps
    row = frame[(frame["group"] == "arctan") & (frame["seed"] == 1) & (frame["step"] == 3)].iloc[0]
    assert row["reward"] == pytest.approx(0.2 + 0.15 + 0.3 + 0.02) and row["convention"] == "equal"
    assert frame["not_logged"].isna().all()


def test_accuracy_table_one_row_per_group(data):
    table = compare.accuracy_table(data)
    assert list(table["gate"]) == data.groups
    erf = table[table["gate"] == "erf (tau 10/12)"].iloc[0]
    assert (erf["seeds"], erf["mean"], erf["min"], erf["max"]) == (2, pytest.approx(0.56), 0.54, 0.58)
    assert compare.accuracy_table(data, "gsm8k").empty


def test_seed_band_curves_mean_and_minmax(data):
    fig = plots.seed_band_curves(data, panels=(("reward", "reward"), ("entropy", "entropy")))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["group", "clip"] and "erf (tau 5/6)" in labels
    x, y = ax.lines[1].get_data()  # sigmoid, a = 1
    np.testing.assert_allclose(y, [0.26 + 0.1 * k for k in (1, 2, 3, 4)], atol=1e-9)
    band = ax.collections[1].get_paths()[0].vertices[:, 1]
    assert (band.min(), band.max()) == pytest.approx((0.35, 0.67))
    assert "min-max over seeds" in fig._suptitle.get_text()


def test_accuracy_by_gate_bar_is_the_mean_over_seeds(data):
    ax = plots.accuracy_by_gate(data).axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.52 + 0.02 * a for a in range(8)], atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == data.groups
