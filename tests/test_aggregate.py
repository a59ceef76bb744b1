"""sapo_core.aggregate: IQM, probability of improvement and their stratified bootstrap intervals, on values
computed by hand and on a small batch fabricated here (per-sample scores in eval/batch/samples.jsonl)."""

import json

import numpy as np
import pytest

from sapo_core import aggregate, compare


def test_iqm_of_known_values():
    # 8 values: 25% (two) trimmed from each end, the mean of 3, 4, 5, 6 is 4.5; the outlier 100 does not count
    assert aggregate.iqm(np.array([1, 2, 3, 4, 5, 6, 7, 100.0])) == pytest.approx(4.5)
    scores = np.array([[0.0, 1.0, 0.5, 0.25], [1.0, 1.0, 0.75, 0.5]])  # pooled: 0, .25, .5, .5, .75, 1, 1, 1
    stats = aggregate.arm_statistics(scores, n_resamples=200)
    assert stats["iqm"] == pytest.approx((0.5 + 0.5 + 0.75 + 1.0) / 4)
    assert stats["mean"] == pytest.approx(5.0 / 8)
    assert stats["mean_ci"][0] <= stats["mean"] <= stats["mean_ci"][1]


def test_probability_of_improvement_of_known_seeds():
    # one problem, seeds x = .6 .7 .8 vs y = .5 .7 .9: wins 1 + 1.5 + 2 (a tie counts half) of 9 pairs
    x, y = np.array([[0.6], [0.7], [0.8]]), np.array([[0.5], [0.7], [0.9]])
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(4.5 / 9)
    # two problems: per problem, then averaged: problem 1 x always wins (1), problem 2 x always loses (0)
    x2, y2 = np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.5, 1.0]])
    assert aggregate.probability_of_improvement(x2, y2) == pytest.approx(0.5)
    assert aggregate.probability_of_improvement(x2, x2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same problems"):
        aggregate.probability_of_improvement(x, y2)


def test_interval_resamples_seeds_within_each_problem():
    # seeds agree on every problem: nothing varies within a stratum, so the interval is the point
    same = np.array([[0.2, 0.8, 0.5]] * 3)
    low, high = aggregate.interval(lambda s: np.mean(s, axis=(-2, -1)), same, n_resamples=100)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    varied = rng.random((3, 50))
    low, high = aggregate.interval(lambda s: np.mean(s, axis=(-2, -1)), varied, n_resamples=500)
    assert low < varied.mean() < high
    with pytest.raises(ValueError, match="at least 2 seeds"):
        aggregate.interval(lambda s: np.mean(s, axis=(-2, -1)), varied[:1])


def _batch(root, per_arm):
    """A batch whose runs hold only what the aggregates read: batch.json and eval/batch/samples.jsonl."""
    rows = []
    for gate, seeds in per_arm.items():
        for seed, problems in enumerate(seeds):
            name = f"{gate}-equal-seed{seed}"
            out = root / name / "eval" / "batch"
            out.mkdir(parents=True)
            lines = [{"benchmark": "synthetic", "problem_id": pid, "sample": j, "score": score}
                     for pid, scores in problems.items() for j, score in enumerate(scores)]
            (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in lines))
            (root / name / "metrics.jsonl").write_text("")
            rows.append({"run": name, "gate": gate, "tau_convention": None if gate == "clip" else "equal",
                         "seed": seed, "status": "finished", "tau_pos_base": 10.0, "tau_neg_base": 12.0})
    (root / "batch.json").write_text(json.dumps({"settings": {}, "runs": rows}))
    return compare.load_batch(root)


def test_aggregate_table_from_samples(tmp_path):
    # per problem the mean of its samples; problem "p3" has an ungradable sample (None) and is left out
    clip = [{"p1": [0, 0], "p2": [1, 0], "p3": [1, None]}, {"p1": [0, 1], "p2": [0, 0], "p3": [1, None]}]
    erf = [{"p1": [1, 1], "p2": [1, 0], "p3": [0, None]}, {"p1": [1, 0], "p2": [1, 1], "p3": [0, None]}]
    data = _batch(tmp_path / "b", {"clip": clip, "erf": erf})
    matrix = aggregate.score_matrix(data, "erf (equal, tau 10/12)")
    np.testing.assert_allclose(matrix, [[1.0, 0.5], [0.5, 1.0]])
    table = aggregate.aggregate_table(data, baseline="clip", n_resamples=200).set_index("arm")
    erf_row = table.loc["erf (equal, tau 10/12)"]
    assert (erf_row["seeds"], erf_row["problems"], erf_row["mean"]) == (2, 2, pytest.approx(0.75))
    # p1: erf (1, .5) vs clip (0, .5): 2 + 1.5 wins of 4; p2: erf (.5, 1) vs clip (.5, 0): 1.5 + 2 of 4
    assert erf_row["P(> clip)"] == pytest.approx(3.5 / 4)
    assert erf_row["P(> clip) low"] <= erf_row["P(> clip)"] <= erf_row["P(> clip) high"]
    assert np.isnan(table.loc["clip", "P(> clip)"])
    with pytest.raises(ValueError, match="baseline"):
        aggregate.aggregate_table(data, baseline="grpo")


def test_one_seed_gives_no_interval_but_its_values():
    one, three = np.array([[0.5, 1.0]]), np.array([[0.0, 1.0], [0.5, 1.0], [1.0, 1.0]])
    stats = aggregate.arm_statistics(one, three, n_resamples=100)
    assert stats["mean"] == pytest.approx(0.75) and np.isnan(stats["mean_ci"]).all()
    assert stats["p_improvement"] == pytest.approx((1.5 + 1.5) / 6) and np.isnan(stats["p_improvement_ci"]).all()
    assert not np.isnan(aggregate.arm_statistics(three, one, n_resamples=100)["mean_ci"]).any()
