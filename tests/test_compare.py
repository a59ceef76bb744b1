"""sapo_core.compare's tables and the comparison plots drawn with seaborn, on the fabricated batch; the claims
and their verdict rule (sapo_core.claims) on small batches fabricated here."""

import json
import math

import numpy as np
import pytest
import yaml

from sapo_core import claims as C
from sapo_core import compare, plots
from sapo_core import metrics as M
from sapo_core.paper import EXAMPLE_BATCH

# tools/make_paper_batch.py: arm a, seed s (0, 1), step k: reward = 0.2 + 0.05 a + 0.1 k + 0.02 s,
# held-out mean@8 = 0.5 + 0.02 a + 0.04 s; arms clip, sigmoid, erf, arctan, softsign, erf at three other taus


@pytest.fixture(scope="module")
def data():
    return compare.load_batch(EXAMPLE_BATCH)


def test_metric_frame_is_long_form(data):
    frame = compare.metric_frame(data, ["reward", "not_logged"])
    assert len(frame) == 8 * 2 * 4  # arms x seeds x steps
    row = frame[(frame["group"] == "arctan (equal, tau 10/12)") & (frame["seed"] == 1) & (frame["step"] == 3)].iloc[0]
    assert row["reward"] == pytest.approx(0.2 + 0.15 + 0.3 + 0.02) and row["convention"] == "equal"
    assert frame["not_logged"].isna().all()


def test_accuracy_table_one_row_per_group(data):
    table = compare.accuracy_table(data)
    assert list(table["gate"]) == data.groups
    erf = table[table["gate"] == "erf (equal, tau 10/12)"].iloc[0]
    assert (erf["seeds"], erf["mean"], erf["min"], erf["max"]) == (2, pytest.approx(0.56), 0.54, 0.58)
    assert compare.accuracy_table(data, "gsm8k").empty


def test_seed_band_curves_mean_and_minmax(data):
    fig = plots.seed_band_curves(data, panels=(("reward", "reward"), ("entropy", "entropy")))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["group", "clip"] and "erf (equal, tau 5/6)" in labels
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


# ---------------------------------------------------------------------------------------------
# The claims (sapo_core.claims) on batches fabricated here: every metric of a run is constant over its 8 steps,
# value = BASE[metric][arm] + 0.01 seed, so the second-half mean of a run is that value.
# ---------------------------------------------------------------------------------------------

def _write_batch(root, arms, seeds=(0, 1, 2), values=None, steps=8, evaluation=None):
    """A batch directory as sapo_core.batch writes it: batch.json, and per run config.yaml, provenance.json,
    metrics.jsonl and eval/batch/results.json. `arms`: (gate, convention, (tau_pos, tau_neg)); `values(arm, seed,
    step)` the metric row; `evaluation(arm, seed)` the results.json benchmarks."""
    rows = []
    for gate, convention, taus in arms:
        for seed in seeds:
            tag = "" if taus == (10.0, 12.0) else f"-tau{taus[0]:g}_{taus[1]:g}"
            name = f"{gate}{tag}-{convention}-seed{seed}"
            run = root / name
            (run / "eval" / "batch").mkdir(parents=True)
            clip = gate == "clip"
            (run / "config.yaml").write_text(yaml.safe_dump({"gate": gate, "sapo_temperature_pos": taus[0],
                                                             "sapo_temperature_neg": taus[1], "seed": seed}))
            (run / "provenance.json").write_text(json.dumps({"gate": gate, "tau_convention": None if clip else
                                                             convention, "seed": seed}))
            arm = (gate, convention, taus)
            (run / "metrics.jsonl").write_text("".join(json.dumps({"step": k, **values(arm, seed, k)}) + "\n"
                                                       for k in range(1, steps + 1)))
            benchmarks = evaluation(arm, seed) if evaluation else {"synthetic": {"mean@n": 0.5, "n": 4}}
            (run / "eval" / "batch" / "results.json").write_text(json.dumps({"benchmarks": benchmarks,
                                                                             "complete": True}))
            rows.append({"run": name, "gate": gate, "tau_convention": None if clip else convention, "seed": seed,
                         "status": "finished", "tau_pos_base": taus[0], "tau_neg_base": taus[1]})
    (root / "batch.json").write_text(json.dumps({"settings": {}, "runs": rows}))
    return compare.load_batch(root)


GATES = ("sigmoid", "erf", "arctan", "softsign")
BOTH = [("clip", "equal", (10.0, 12.0))] + [(g, c, (10.0, 12.0)) for c in ("equal", "width_matched") for g in GATES]
TAIL = {"sigmoid": "exponential", "erf": "gaussian", "arctan": "polynomial", "softsign": "polynomial", "clip": None}


def _tail_values(arm, seed, step):
    """Width-matched: polynomial tails above the Gaussian in mean f' (holds); equal tau: the other way round.
    Entropy: polynomial 1.00 + 0.01 s vs Gaussian 1.01 + 0.01 s (overlapping seeds). Reward: erf highest, arctan
    below softsign (the pair rule's mixed case)."""
    gate, convention, _ = arm
    tail = TAIL[gate]
    wm = convention == "width_matched"
    weight = {"polynomial": 0.8 if wm else 0.5, "gaussian": 0.6 if wm else 0.7}.get(tail, 0.65)
    entropy = {"polynomial": 1.0, "gaussian": 1.01}.get(tail, 0.9)
    reward = {"erf": 0.9, "arctan": 0.5, "softsign": 0.6, "sigmoid": 0.4, "clip": 0.3}[gate]
    return {"gate_weight/mean": weight + 0.01 * seed, "entropy": entropy + 0.01 * seed,
            "reward": reward + 0.01 * seed, "eur": 0.9 - 0.01 * seed, "rewards/format_reward/mean": 1.0}


def _row(table, start):
    (row,) = [r for r in table if r["claim"].startswith(start)]
    return row


def test_pair_verdict_every_branch():
    assert C.pair_verdict([3, 4, 5], [0, 1, 2]) == "holds"  # 3 vs 3 seeds: separated ranges, p = 1/20
    assert C.pair_verdict([0, 1, 2], [3, 4, 5]) == "does not hold"
    assert C.pair_verdict([0, 2, 4], [1, 3, 5]) == "cannot be told apart at this spread"
    assert C.pair_verdict([3, 4], [0, 1, 2]) == "too few seeds"
    assert C.pair_verdict([math.nan] * 3, [0, 1, 2]) == "not measured"
    assert C.pair_verdict([1, 1, 1], [0, 0, 0]) == "holds"  # a 0/1 statistic (collapse) separates too


def test_pair_rule_needs_every_pair():
    holds, fails, unclear = "holds", "does not hold", "cannot be told apart at this spread"
    assert C.combine([holds, holds]) == holds
    assert C.combine([fails, fails]) == fails
    assert C.combine([holds, fails]) == unclear and C.combine([holds, unclear]) == unclear
    assert C.combine([holds, "too few seeds"]) == "too few seeds"
    assert C.combine([holds, "not measured"]) == "not measured" and C.combine([]) == "not measured"


def test_null_false_positive_rate_exact_and_simulated():
    assert C.false_positive_rate(3, 3) == pytest.approx(1 / 20)  # 1 of the C(6, 3) = 20 rankings
    assert C.false_positive_rate(3, 4) == pytest.approx(1 / 35)
    rng = np.random.default_rng(0)
    draws = [C.pair_verdict(list(rng.normal(size=3)), list(rng.normal(size=3))) for _ in range(1000)]
    # binomial(1000, 0.05): standard deviation 0.007; a rule that needed less evidence would show here
    assert abs(draws.count("holds") / 1000 - 0.05) < 0.025
    assert abs(draws.count("does not hold") / 1000 - 0.05) < 0.025  # symmetric


def test_conventions_never_merge(tmp_path):
    data = _write_batch(tmp_path / "b", BOTH, values=_tail_values)
    assert "erf (equal, tau 10/12)" in data.groups and "erf (width_matched, tau 10/12)" in data.groups
    per_seed = compare.per_seed(data, "gate_weight/mean")
    assert per_seed["arctan (width_matched, tau 10/12)"] == pytest.approx([0.8, 0.81, 0.82])
    assert per_seed["arctan (equal, tau 10/12)"] == pytest.approx([0.5, 0.51, 0.52])
    row = _row(compare.claims(data), "Heavier (polynomial) tails widen")
    assert row["convention"] == "width_matched" and row["verdict"] == "holds"
    assert "equal" not in row["arms"] and "arctan (width_matched, tau 10/12)" in row["arms"]
    assert row["at equal tau (shown, not the verdict)"].startswith("does not hold: ")
    assert "softsign (equal, tau 10/12)" in row["at equal tau (shown, not the verdict)"]


def test_batch_verdicts_and_the_pair_rule(tmp_path):
    table = compare.claims(_write_batch(tmp_path / "b", BOTH, values=_tail_values))
    assert _row(table, "Heavier (polynomial) tails raise exploration")["verdict"] == \
        "cannot be told apart at this spread"
    best = _row(table, "erf and arctan give the best reward")  # erf beats all; arctan loses to softsign
    assert best["verdict"] == "cannot be told apart at this spread"
    assert "arctan (equal, tau 10/12)" in best["arms"] and "does not hold" in best["measured"]
    assert _row(table, "Every smooth gate raises the reward faster")["verdict"] == "holds"
    assert _row(table, "Across gates, higher policy entropy")["verdict"] != "not measured"
    for row in table:
        assert row["verdict"].split(" (")[0] in C.VERDICTS and row["section"] and row["statistic"]


def test_too_few_seeds_and_missing_width_matched_arms(tmp_path):
    equal_only = [a for a in BOTH if a[1] == "equal"]
    table = compare.claims(_write_batch(tmp_path / "b", equal_only, seeds=(0, 1), values=_tail_values))
    assert _row(table, "Every smooth gate raises the reward faster")["verdict"] == "too few seeds"
    assert _row(table, "Heavier (polynomial) tails widen")["verdict"] == "not measured (needs width_matched arms)"


def test_temperature_and_collapse_claims(tmp_path):
    arms = [("erf", "equal", taus) for taus in ((1.0, 1.05), (5.0, 6.0), (10.0, 12.0), (13.0, 15.0))]

    def values(arm, seed, step):
        tau = arm[2][0]
        reward = 0.02 if tau == 1.0 and step > 6 else 0.5  # tau = 1 collapses in its last quarter
        return {"reward": reward, "entropy": 2.0 / tau + 0.001 * seed, "eur": 1.0 - tau / 20 + 0.001 * seed}

    table = compare.claims(_write_batch(tmp_path / "b", arms, values=values))
    assert _row(table, "For erf, a higher temperature lowers EUR")["verdict"] == "holds"
    assert _row(table, "For erf, a lower temperature (tau = 5) raises entropy")["verdict"] == "holds"
    assert _row(table, "For erf at tau = 1 training becomes unstable")["verdict"] == "holds"
    run = C.Run(C.Arm("erf", "equal", 1.0, 1.05), 0, [{"step": 1, "reward": 1.0, "loss": math.nan}], {})
    assert C.collapsed(run) == 1.0  # a non-finite loss is a collapse at once


def test_gpu_only_claims_say_so_until_measured(tmp_path):
    equal = [a for a in BOTH if a[1] == "equal"]
    table = compare.claims(_write_batch(tmp_path / "a", equal, values=_tail_values))
    assert _row(table, "erf beats the sigmoid on GSM8K")["verdict"] == "needs GPU-scale data"

    def evaluation(arm, seed):
        return {"gsm8k": {"mean@n": 0.8 if arm[0] == "erf" else 0.7 + 0.01 * seed, "n": 1}}

    table = compare.claims(_write_batch(tmp_path / "b", equal, values=_tail_values, evaluation=evaluation))
    assert _row(table, "erf beats the sigmoid on GSM8K")["verdict"] == "holds"


def test_project_questions_are_apart_and_metrics_registered(tmp_path):
    questions = compare.project_questions(_write_batch(tmp_path / "b", BOTH, values=_tail_values))
    assert {r["section"] for r in questions} == {"project"}
    assert not {r["claim"] for r in questions} & {c.text for c in C.CLAIMS}
    for key in C.METRIC_KEYS:
        M.get(key)  # raises for a name the registry does not know


def test_a_malformed_claim_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown statistic 'speed'"):
        C.Claim("5.2", "x", "speed", "smooth", "clip")
    with pytest.raises(ValueError, match="unknown higher 'heavy'"):
        C.Claim("5.2", "x", "entropy", "heavy", "clip")
    with pytest.raises(ValueError, match="judged at width_matched"):
        C.Claim("4", "x", "entropy", "polynomial", "gaussian", tail_shape=True)
    with pytest.raises(ValueError, match="sign -1 or 1"):
        C.Claim("5.2", "x", "eur", "all arms", x="entropy")
