"""Accuracy over training (method §6): held-out rows in metrics.jsonl every heldout_eval_steps steps, kept by a
resume, and the batch-level curve and final / last-K table of sapo_core.compare."""

import math
from pathlib import Path

import pytest
from conftest import CrashAfterStep

from sapo_core import metrics as M
from sapo_core.compare import BatchData, heldout_curves, heldout_table
from sapo_core.config import ConfigError
from sapo_core.recipe import parse_args
from sapo_core.train import read_metrics, train

REPO_ROOT = Path(__file__).resolve().parents[1]
# conftest's TINY_RUN_FLAGS budget, 4 steps (two checkpoints), held-out evaluation every 2 steps
BUDGET = ["--max_steps", "4", "--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size", "16",
          "--max_completion_length", "24", "--save_steps", "2", "--learning_rate", "1e-3", "--heldout_n", "2"]
HELDOUT = "heldout/synthetic/mean@n"
TIMING = ("step_time",)  # wall-clock: differs between two runs of the same thing


def _run(run_dir, *extra, every=2):
    return parse_args(["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml"), "--run_dir", str(run_dir), *BUDGET,
                       "--heldout_eval_steps", str(every), *extra])



def _untimed(rows, drop=TIMING):
    """The rows without the keys starting with one of `drop`."""
    return [{k: v for k, v in row.items() if not k.startswith(drop)} for row in rows]


@pytest.mark.slow
def test_heldout_rows_are_written_every_interval_and_kept_by_a_resume(tmp_path):
    train(_run(tmp_path / "whole"))
    rows = read_metrics(tmp_path / "whole")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # the held-out values join the training rows of their steps
    assert [r["step"] for r in rows if HELDOUT in r] == [2, 4]
    for r in rows[1::2]:
        assert not M.unlisted(r) and "loss" in r and 0 <= r["heldout/synthetic/format_rate"] <= 1
        assert 0 <= r["heldout/synthetic/mean@n_low"] <= r[HELDOUT] <= r["heldout/synthetic/mean@n_high"] <= 1
    # evaluating leaves training as it was (its own RNG stream, the model back in training mode)
    train(_run(tmp_path / "plain", every=0))
    assert _untimed(rows, (*TIMING, "heldout/")) == _untimed(read_metrics(tmp_path / "plain"))
    # interrupted after step 4 is logged (its held-out row written) but before its checkpoint: the resume from
    # checkpoint-2 cuts steps 3-4 and writes them again; the rows are those of the uninterrupted run
    with pytest.raises(KeyboardInterrupt):
        train(_run(tmp_path / "run"), callbacks=[CrashAfterStep(4)])
    assert [r["step"] for r in read_metrics(tmp_path / "run") if HELDOUT in r] == [2, 4]
    train(_run(tmp_path / "run", "--resume"))
    assert _untimed(read_metrics(tmp_path / "run")) == _untimed(rows)


def test_heldout_eval_steps_is_checked():
    base = ["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml")]
    with pytest.raises(ConfigError, match=r"heldout_eval_steps=-1 must be an integer >= 0"):
        parse_args([*base, "--heldout_eval_steps", "-1"])
    with pytest.raises(ConfigError, match="heldout_benchmarks, which is empty"):
        parse_args([*base, "--heldout_eval_steps", "2", "--heldout_benchmarks", ""])
    with pytest.raises(ConfigError, match="heldout_eval_steps=3 must be a multiple of logging_steps=2"):
        parse_args([*base, "--heldout_eval_steps", "3", "--logging_steps", "2"])
    assert parse_args(base).script.heldout_eval_steps == 2  # the tiny recipe evaluates every generation cycle


def _batch(curves: dict[tuple[str, int], list[tuple[int, float]]]) -> BatchData:
    """A fabricated batch: per (gate, seed) the held-out rows (step, mean@n), beside training rows."""
    runs, metrics = [], {}
    for (gate, seed), points in curves.items():
        name = f"{gate}-equal-seed{seed}"
        runs.append({"run": name, "gate": gate, "tau_convention": "equal", "seed": seed, "status": "finished",
                     "tau_pos_base": 1.0, "tau_neg_base": 1.05})
        metrics[name] = [row for step, value in points for row in ({"step": step, HELDOUT: value},
                                                                   {"step": step, "loss": 0.1})]
    return BatchData(Path("fabricated"), runs, metrics, {}, {}, {})


def test_heldout_curves_and_table_on_a_fabricated_batch():
    data = _batch({("erf", 0): [(0, 0.4), (2, 0.5), (4, 0.7), (6, 0.6)],
                   ("erf", 1): [(0, 0.4), (2, 0.3), (4, 0.5), (6, 0.8)],
                   ("sigmoid", 0): [(0, 0.4), (2, 0.6), (4, 0.6), (6, 0.5)]})
    curves = heldout_curves(data)
    erf, sigmoid = data.groups
    assert curves[erf]["step"] == [0, 2, 4, 6]
    assert curves[erf]["mean"] == pytest.approx([0.4, 0.4, 0.6, 0.7])
    assert curves[erf]["min"] == pytest.approx([0.4, 0.3, 0.5, 0.6]) and curves[erf]["max"][1] == 0.5
    table = heldout_table(data, last=2).set_index("arm")
    assert list(table.columns) == ["seeds", "evaluations", "final (mean over seeds)", "final min", "final max",
                                   "mean of the last 2 evaluations (mean over seeds)", "last-2 min", "last-2 max"]
    assert table.loc[erf, "final (mean over seeds)"] == pytest.approx(0.7)  # (0.6 + 0.8) / 2
    assert table.loc[erf, "mean of the last 2 evaluations (mean over seeds)"] == pytest.approx(0.65)  # .65, .65
    assert (table.loc[erf, "last-2 min"], table.loc[erf, "last-2 max"]) == pytest.approx((0.65, 0.65))
    assert table.loc[sigmoid, "final (mean over seeds)"] == pytest.approx(0.5)
    assert table.loc[sigmoid, "mean of the last 2 evaluations (mean over seeds)"] == pytest.approx(0.55)
    assert table.loc[erf, "seeds"] == 2 and table.loc[erf, "evaluations"] == 4


def test_heldout_table_refuses_a_bad_k_and_names_a_run_without_held_out_rows():
    data = _batch({("erf", 0): [(0, 0.4), (2, 0.5)], ("erf", 1): []})
    with pytest.raises(ValueError, match="last must be an integer >= 1"):
        heldout_table(data, last=0)
    table = heldout_table(data, last=3)  # fewer evaluations than K: the mean over those there are, said so
    row = table.iloc[0]
    assert row["seeds"] == 1 and row["evaluations"] == 2
    assert row["mean of the last 3 evaluations (mean over seeds)"] == pytest.approx(0.45)
    assert math.isclose(row["final (mean over seeds)"], 0.5)


def test_heldout_accuracy_plot_draws_each_arm_mean_with_its_min_max_band():
    from sapo_core.plots import heldout_accuracy_curves

    data = _batch({("erf", 0): [(2, 0.5), (4, 0.7)], ("erf", 1): [(2, 0.3), (4, 0.5)], ("sigmoid", 0): [(2, 0.6)]})
    ax = heldout_accuracy_curves(data).axes[0]
    means = [line.get_ydata().tolist() for line in ax.lines if len(line.get_xdata())]
    assert [0.4, 0.6] in [pytest.approx(m) for m in means]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # erf's band spans the seeds' min and max
    assert band.min() == pytest.approx(0.3) and band.max() == pytest.approx(0.7)
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= set(data.groups)
    with pytest.raises(ValueError, match="heldout_eval_steps > 0"):
        heldout_accuracy_curves(_batch({("erf", 0): []}))
