"""Sweeps over recipe keys in a batch (`batch --sweep`): the plan (cross product, joint axes, run names, refusals
before any directory exists), summary.csv's columns and the resume of a sweep batch (with a stand-in for the
notebook run, so nothing trains), compare's group labels and the best-learning-rate views on a fabricated batch
(a sweep through real runs: tests/test_batch.py)."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from sapo_core import batch, compare
from sapo_core import claims as C
from sapo_core.batch import BatchArguments, BatchError, plan, run_batch
from sapo_core.config import ConfigError, run_name, value_text

TINY = "configs/tiny-cpu.yaml"


def args(out="x", **over):
    return BatchArguments(**{"config": TINY, "out": str(out), "gates": "erf", "seeds": "0", **over})


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------

def test_axes_are_crossed_with_gates_conventions_and_seeds_in_order():
    specs = plan(args(gates="sigmoid,erf", seeds="0,1", tau_conventions="equal,width_matched",
                      sweep=["learning_rate=1e-5,3e-5", "beta=0,0.04"]), ["--max_steps", "2"])
    assert len(specs) == 2 * 2 * 2 * 2 * 2
    assert [s.name for s in specs[:5]] == ["sigmoid-lr1e-05-beta0-equal-seed0", "sigmoid-lr1e-05-beta0-equal-seed1",
                                           "sigmoid-lr1e-05-beta0.04-equal-seed0",
                                           "sigmoid-lr1e-05-beta0.04-equal-seed1",
                                           "sigmoid-lr3e-05-beta0-equal-seed0"]
    assert specs[-1].name == "erf-lr3e-05-beta0.04-width_matched-seed1"
    assert specs[2].flags == ("--max_steps", "2", "--learning_rate", "1e-5", "--beta", "0.04")
    assert specs[2].axes == (("learning_rate", 1e-5), ("beta", 0.04))
    assert len({s.name for s in specs}) == len(specs)


def test_a_joint_axis_sets_its_keys_together_and_names_the_temperatures_as_an_arm_at_them_does():
    specs = plan(args(sweep=["sapo_temperature_pos,sapo_temperature_neg=1:1.05,5:6,10:12"]), [])
    assert [s.name for s in specs] == ["erf-tau1_1.05-equal-seed0", "erf-tau5_6-equal-seed0",
                                       "erf-tau10_12-equal-seed0"]
    assert specs[1].flags == ("--sapo_temperature_pos", "5", "--sapo_temperature_neg", "6")
    assert specs[1].name == plan(args(gates="erf@5:6"), [])[0].name  # the arm GATE@POS:NEG is the same run
    # a method without temperatures runs once per point of the other axes
    clip = plan(args(gates="clip", sweep=["sapo_temperature_pos,sapo_temperature_neg=1:1.05,5:6", "beta=0,0.1"]), [])
    assert [s.name for s in clip] == ["clip-beta0-equal-seed0", "clip-beta0.1-equal-seed0"]


def test_run_names_are_file_name_safe_and_lossless():
    assert run_name("erf", "equal", 0, axes={"learning_rate": 3e-5, "num_iterations": 2, "bf16": False}) == \
        "erf-lr3e-05-mu2-bf16false-equal-seed0"
    assert run_name("erf", "equal", 0, axes={"learning_rate": 1.0000001e-5}) == "erf-lr1.0000001e-05-equal-seed0"
    odd = run_name("erf", "equal", 0, axes={"model": "org/model name"})
    assert "/" not in odd and " " not in odd and odd != run_name("erf", "equal", 0, axes={"model": "org_model_name"})
    assert run_name("erf", "equal", 0, axes={"reward_weights": [1.0, 0.5]}) == "erf-reward_weights1_0.5-equal-seed0"
    with pytest.raises(ConfigError, match="both set tau"):
        run_name("erf", "equal", 0, (5.0, 6.0), {"sapo_temperature_pos": 5.0})


def test_a_list_key_takes_its_value_split_at_spaces():
    (spec,) = plan(args(sweep=["reward_weights=1 0.5"]), [])
    assert spec.flags == ("--reward_weights", "1", "0.5") and spec.axes == (("reward_weights", (1.0, 0.5)),)


@pytest.mark.parametrize("sweep, flags, message", [
    (["learnin_rate=1e-5"], [], "unknown recipe key 'learnin_rate' \\(did you mean 'learning_rate'\\?\\)"),
    (["learning_rate=1e-5,fast"], [], "learning_rate: 'fast' in --sweep learning_rate=1e-5,fast is not a valid float"),
    (["learning_rate=1e-4,0.0001"], [], "gives the same point twice \\(1e-4 and 0.0001\\)"),
    (["learning_rate=1e-5,1e-5"], [], "names an item twice"),
    (["learning_rate"], [], "must be KEY=V1,V2"),
    (["learning_rate="], [], "its values is empty"),
    (["seed=1,2"], [], "seed is the batch's own axis; use --seeds"),
    (["gate=erf,sigmoid"], [], "use --gates"),
    (["run_dir=a,b"], [], "not a recipe key here"),
    (["sapo_temperature_pos,sapo_temperature_neg=5:6,7"], [], "point '7' must give 2 values separated by ':'"),
    (["learning_rate=1e-5", "beta,learning_rate=0:1e-4"], [], "learning_rate is swept by two axes"),
    (["learning_rate=1e-5,3e-5"], ["--learning_rate", "1e-4"], "also given as the flag --learning_rate"),
    (["bf16=true,false"], ["--no_bf16"], "also given as the flag --bf16"),
    ("learning_rate=1e-5", [], "sweep must be a list of axes"),
])
def test_bad_axes_are_refused_by_name(sweep, flags, message):
    with pytest.raises(BatchError, match=message):
        plan(args(sweep=sweep), flags)


def test_an_arm_at_temperatures_is_not_combined_with_a_temperature_sweep():
    with pytest.raises(BatchError, match="arm 'erf@5:6' sets the temperatures that --sweep sweeps"):
        plan(args(gates="erf,erf@5:6", sweep=["sapo_temperature_neg=6,7"]), [])
    assert len(plan(args(gates="erf,erf@5:6", sweep=["learning_rate=1e-5,3e-5"]), [])) == 4  # other keys cross


@pytest.mark.parametrize("sweep, message", [
    ("learning_rate=1e-5,fast", "is not a valid float"),
    ("sapo_temperature_pos=2,-1", "erf-taupos-1-equal-seed0: sapo_temperature_pos=-1.0"),
    ("aggregation=token_mean,per_row", "erf-aggregationper_row-equal-seed0: aggregation"),
])
def test_a_bad_value_stops_the_batch_before_any_directory_exists(tmp_path, capsys, sweep, message):
    out = tmp_path / "b"
    assert batch.main(["--config", TINY, "--out", str(out), "--gates", "erf", "--seeds", "0", "--sweep", sweep]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# summary.csv and resume, with a stand-in for the notebooks (nothing trains)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_runs(monkeypatch):
    """run_one writes what notebooks 02 and 03 leave behind (status, provenance, one metric row, a complete
    evaluation) and returns the run's summary record; the runs it was called for are listed."""
    calls = []

    def run_one(spec, batch_dir, settings):
        run_dir = Path(batch_dir) / spec.name
        run_dir.mkdir(parents=True)
        calls.append(spec.name)
        (run_dir / "status.json").write_text(json.dumps({"state": "finished"}))
        (run_dir / "provenance.json").write_text(json.dumps({"num_iterations": 2}))
        (run_dir / batch.EVAL_DIR).mkdir(parents=True)
        (run_dir / batch.EVAL_DIR / "results.json").write_text(json.dumps(
            {"complete": True, "benchmarks": {"synthetic": {"mean@n": 0.5, "n": 4}}}))
        return batch.record(spec, run_dir, wall_s=0.0)

    monkeypatch.setattr(batch, "run_one", run_one)
    return calls


def test_summary_has_a_column_per_swept_key_and_the_settings_record_the_axes(tmp_path, fake_runs, capsys):
    out = tmp_path / "b"
    argv = ["--config", TINY, "--out", str(out), "--gates", "clip,erf", "--seeds", "0", "--sweep",
            "learning_rate=1e-5,3e-5", "--max_steps", "1",
            "--sweep=sapo_temperature_pos,sapo_temperature_neg=1:1.05,5:6"]  # repeatable, either spelling
    assert batch.main(argv) == 0
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["clip-lr1e-05-equal-seed0", "clip-lr3e-05-equal-seed0",
                                        "erf-tau1_1.05-lr1e-05-equal-seed0", "erf-tau5_6-lr1e-05-equal-seed0",
                                        "erf-tau1_1.05-lr3e-05-equal-seed0", "erf-tau5_6-lr3e-05-equal-seed0"]
    assert {"learning_rate", "sapo_temperature_pos", "sapo_temperature_neg"} <= set(rows[0])
    assert (rows[3]["learning_rate"], rows[3]["sapo_temperature_pos"], rows[3]["sapo_temperature_neg"]) == \
        ("1e-05", "5.0", "6.0")
    assert rows[0]["sapo_temperature_pos"] == ""  # clip has no temperature
    settings = batch.read_batch(out)["settings"]
    assert settings["sweep"] == [{"keys": ["learning_rate"], "values": [[1e-5], [3e-5]]},
                                 {"keys": ["sapo_temperature_pos", "sapo_temperature_neg"],
                                  "values": [[1.0, 1.05], [5.0, 6.0]]}]
    assert "--sweep" not in settings["flags"] and settings["flags"] == ["--max_steps", "1"]


def test_the_same_sweep_resumes_and_other_axes_are_refused(tmp_path, fake_runs, capsys):
    out = tmp_path / "b"
    first = run_batch(args(out, sweep=["learning_rate=1e-5,3e-5"]), [])
    assert [r["status"] for r in first["runs"]] == ["finished", "finished"] and len(fake_runs) == 2
    # an interrupted batch: one run's directory is gone and its row says so; the same command runs only it
    shutil.rmtree(out / "erf-lr3e-05-equal-seed0")
    record = json.loads((out / "batch.json").read_text())
    record["runs"][1]["status"] = "failed"
    (out / "batch.json").write_text(json.dumps(record))
    again = run_batch(args(out, sweep=["learning_rate=1e-5, 3e-5"]), [])  # the same axis, written otherwise
    assert fake_runs == ["erf-lr1e-05-equal-seed0", "erf-lr3e-05-equal-seed0", "erf-lr3e-05-equal-seed0"]
    assert [r["status"] for r in again["runs"]] == ["finished", "finished"]
    before = (out / "batch.json").read_bytes()
    for other in (["learning_rate=1e-5,1e-4"], ["learning_rate=1e-5,3e-5", "beta=0"], []):
        with pytest.raises(BatchError, match="other settings \\(changed: sweep\\)"):
            run_batch(args(out, sweep=other), [])
    assert (out / "batch.json").read_bytes() == before and len(fake_runs) == 3


# ---------------------------------------------------------------------------------------------
# compare: group labels carry every axis value; the best learning rate on validation and one common rate
# ---------------------------------------------------------------------------------------------

LRS = (1e-5, 3e-5, 1e-4)
# validation accuracy (heldout/synthetic/mean@n) of gate g at rate index i: erf peaks at 3e-5, sigmoid at 1e-4;
# the test accuracy (the final evaluation) peaks elsewhere, so a selection reading it would pick other rates
VALIDATION = {"erf": (0.40, 0.70, 0.50), "sigmoid": (0.30, 0.45, 0.60)}
TEST = {"erf": (0.90, 0.10, 0.20), "sigmoid": (0.80, 0.20, 0.10)}


def _sweep_batch(root, seeds=(0, 1)):
    """A batch directory as sapo_core.batch writes it for --gates erf,sigmoid --sweep learning_rate=1e-5,3e-5,1e-4:
    per run config.yaml, provenance.json, metrics.jsonl (4 held-out evaluations, the last 3 at the rate's validation
    accuracy + 0.02 seed, the first at 0) and eval/batch/results.json."""
    rows = []
    for gate in VALIDATION:
        for i, lr in enumerate(LRS):
            for seed in seeds:
                name = run_name(gate, "equal", seed, axes={"learning_rate": lr})
                run = root / name
                (run / "eval" / "batch").mkdir(parents=True)
                (run / "config.yaml").write_text(yaml.safe_dump({"gate": gate, "learning_rate": lr, "seed": seed}))
                (run / "provenance.json").write_text(json.dumps({"gate": gate, "tau_convention": "equal"}))
                heldout = [0.0] + [VALIDATION[gate][i] + 0.02 * seed] * 3
                (run / "metrics.jsonl").write_text("".join(
                    json.dumps({"step": 2 * k, "heldout/synthetic/mean@n": v}) + "\n" for k, v in enumerate(heldout)))
                (run / "eval" / "batch" / "results.json").write_text(json.dumps(
                    {"complete": True, "benchmarks": {"synthetic": {"mean@n": TEST[gate][i], "n": 4}}}))
                rows.append({"run": name, "gate": gate, "tau_convention": "equal", "seed": seed, "learning_rate": lr,
                             "status": "finished", "tau_pos_base": 1.0, "tau_neg_base": 1.05})
    settings = {"sweep": [{"keys": ["learning_rate"], "values": [[lr] for lr in LRS]}]}
    (root / "batch.json").write_text(json.dumps({"settings": settings, "runs": rows}))
    return compare.load_batch(root)


def test_group_labels_carry_every_swept_value(tmp_path):
    data = _sweep_batch(tmp_path)
    assert data.axes == ("learning_rate",)
    assert data.groups[:3] == ["erf (equal, tau 1/1.05, learning_rate=1e-05)", "erf (equal, tau 1/1.05, "
                               "learning_rate=3e-05)", "erf (equal, tau 1/1.05, learning_rate=0.0001)"]
    assert len(data.groups) == 6
    with pytest.raises(ValueError, match="arm erf \\(equal, tau 1/1.05\\) was run at 3 points of the sweep"):
        compare.claim_runs(data)
    one = compare.select(data, learning_rate=3e-5)
    assert one.groups == ["erf (equal, tau 1/1.05, learning_rate=3e-05)",
                          "sigmoid (equal, tau 1/1.05, learning_rate=3e-05)"]
    assert len(compare.claim_runs(one)) == 4 and set(one.metrics) == {r["run"] for r in one.runs}
    with pytest.raises(ValueError, match="beta is not swept"):
        compare.select(data, beta=0.0)


def test_claims_of_a_swept_batch_are_judged_at_each_sweep_point(tmp_path):
    data = _sweep_batch(tmp_path)
    points = compare.sweep_points(data)
    assert [label for label, _ in points] == [f"learning_rate={value_text(lr)}" for lr in LRS]
    table = compare.claims(data)
    assert [row["sweep point"] for row in table] == [label for label, _ in points for _ in C.CLAIMS]
    for (label, part), lr in zip(points, LRS):  # each point's rows are the claims of that point alone
        assert part.groups == compare.select(data, learning_rate=lr).groups
        alone = compare.claims(part)
        assert [{k: v for k, v in row.items() if k != "sweep point"} for row in table
                if row["sweep point"] == label] == alone and "sweep point" not in alone[0]
    questions = compare.project_questions(data)
    assert {row["sweep point"] for row in questions} == {label for label, _ in points}


def test_best_learning_rate_on_validation_and_one_common_rate_both_labelled(tmp_path):
    data = _sweep_batch(tmp_path)
    views = compare.learning_rate_views(data)
    score = "heldout/synthetic/mean@n, mean of the last 3 (mean over seeds)"
    best = views[views["view"] == "best lr on validation"].set_index("arm")
    assert best.loc["erf (equal, tau 1/1.05)", "learning_rate"] == 3e-5
    assert best.loc["sigmoid (equal, tau 1/1.05)", "learning_rate"] == 1e-4
    assert best.loc["erf (equal, tau 1/1.05)", score] == pytest.approx(0.71)
    assert best.loc["sigmoid (equal, tau 1/1.05)", "test synthetic mean@n (mean over seeds)"] == pytest.approx(0.1)
    # common rate: the best mean validation score over arms, (0.70 + 0.45) / 2 at 3e-5 vs (0.5 + 0.6) / 2 at 1e-4
    common = views[views["view"] == "common lr = 3e-05"]
    assert list(common["learning_rate"]) == [3e-5, 3e-5] and list(common["seeds"]) == [2, 2]
    assert list(common["group"]) == ["erf (equal, tau 1/1.05, learning_rate=3e-05)",
                                     "sigmoid (equal, tau 1/1.05, learning_rate=3e-05)"]
    given = compare.learning_rate_views(data, common=1e-4)
    assert set(given["view"]) == {"best lr on validation", "common lr = 0.0001"}
    lowest = compare.learning_rate_views(data, higher_is_better=False)  # e.g. a loss
    assert set(lowest[lowest["view"] == "best lr on validation"]["learning_rate"]) == {1e-5}
    with pytest.raises(ValueError, match="common=0.001: not a learning_rate every arm ran"):
        compare.learning_rate_views(data, common=1e-3)
    with pytest.raises(ValueError, match="no run of .* logged reward"):
        compare.learning_rate_views(data, "reward")


def test_learning_rate_views_need_a_learning_rate_sweep(tmp_path):
    data = _sweep_batch(tmp_path)
    data.axes = ()
    with pytest.raises(ValueError, match="does not sweep learning_rate"):
        compare.learning_rate_views(data)


# ---------------------------------------------------------------------------------------------
# One real sweep batch: 2 learning rates x 1 gate x 1 seed, 1 step each, through the notebooks
# ---------------------------------------------------------------------------------------------


def test_width_matched_arms_add_that_convention_to_the_named_arms_only():
    specs = plan(args(gates="clip,sigmoid,erf,erf@5:6", width_matched_arms="erf"), [])
    assert [(s.gate, s.taus, s.tau_convention) for s in specs] == [
        ("clip", None, "equal"), ("sigmoid", None, "equal"), ("erf", None, "equal"), ("erf", None, "width_matched"),
        ("erf", (5.0, 6.0), "equal")]
    for bad in ("arctan", "clip"):  # not an arm of --gates; a method without temperatures
        with pytest.raises(BatchError, match="width_matched_arms"):
            plan(args(gates="clip,erf", width_matched_arms=bad), [])
