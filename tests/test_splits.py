"""The synthetic task's three splits are instance-disjoint (method §3.3), and so is the tiny model's SFT set."""

from __future__ import annotations

import json
import re

import pytest

from sapo_core import data, tiny
from sapo_core.evaluate import main as evaluate_main

WORK = re.compile(r"<think> (.*?) </think>")


def instances(ds) -> set[str]:
    """The instance (method §3.3: the arithmetic, names and items aside) of every problem of a synthetic set."""
    return {WORK.match(solution).group(1) for solution in ds["solution"]}


def pairwise_overlaps(sets: dict[str, set[str]]) -> dict[tuple[str, str], set[str]]:
    names = list(sets)
    return {(a, b): sets[a] & sets[b] for i, a in enumerate(names) for b in names[i + 1:] if sets[a] & sets[b]}


@pytest.mark.parametrize("task", [{}, {"max_steps": 3}, {"max_operand": 20}])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_three_splits_share_no_instance(seed, task):
    sets = {split: instances(data.synthetic_arithmetic(400, seed, split=split, **task)) for split in data.SPLITS}
    assert pairwise_overlaps(sets) == {}
    assert all(data.instance_split(work) == split for split, works in sets.items() for work in works)
    # the same split drawn with another seed is other draws of the same instances, never another split's
    other = instances(data.synthetic_arithmetic(400, seed + 7, split="test", **task))
    assert not other & (sets["train"] | sets["validation"])


def test_every_split_holds_instances_of_the_tiny_task():
    facts = {f"{a}+{b}={a + b}" for a in range(1, 10) for b in range(1, 10)}
    facts |= {f"{a}-{b}={a - b}" for a in range(1, 10) for b in range(1, a + 1)}
    by_split = {split: {f for f in facts if data.instance_split(f) == split} for split in data.SPLITS}
    assert len(facts) == 126 and sum(map(len, by_split.values())) == 126
    # the hash is part of the task's definition: a change would silently move problems between splits
    assert {split: len(f) for split, f in by_split.items()} == {"train": 88, "validation": 16, "test": 22}
    assert {"1+3=4", "9-1=8"} <= by_split["test"] and {"9+6=15", "1+1=2"} <= by_split["validation"]
    drawn = {split: instances(data.synthetic_arithmetic(2000, 0, split=split)) for split in data.SPLITS}
    assert drawn == by_split  # the generator reaches every fact of each split


def test_the_tiny_models_fine_tuning_set_holds_no_validation_or_test_instance():
    info = json.loads((tiny.base_model_path() / tiny.BUILD_INFO).read_text())
    cfg = tiny.TinyBuildConfig(**info["config"])
    sft = tiny.sft_set(cfg)
    assert info["sft_set"] == (f"synthetic_arithmetic({cfg.n_train}, seed={cfg.seed}, split='train', "
                               f"min_steps={cfg.task_min_steps}, max_steps={cfg.task_max_steps}, "
                               f"max_operand={cfg.task_max_operand})")
    assert len(sft) == cfg.n_train
    sets = {"sft": instances(sft), **{split: instances(tiny.eval_set(cfg, split)) for split in ("validation", "test")}}
    assert pairwise_overlaps(sets) == {}
    # the build's probe (its stop rule) draws from the train split too
    probe = data.synthetic_arithmetic(cfg.probe_size, cfg.probe_seed, split="train", min_steps=cfg.task_min_steps,
                                      max_steps=cfg.task_max_steps, max_operand=cfg.task_max_operand)
    assert {data.instance_split(work) for work in instances(probe) | sets["sft"]} == {"train"}


@pytest.mark.parametrize("bad", ["val", "dev", "Test", "", None])
def test_a_split_outside_the_three_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"split must be one of 'train', 'validation', 'test', got " + re.escape(
            repr(bad))):
        data.synthetic_arithmetic(2, split=bad)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        data.SyntheticTask(split=bad)


def test_evaluate_refuses_an_unknown_split(capsys):
    assert evaluate_main(["--model", "tiny", "--benchmarks", "synthetic", "--split", "holdout"]) == 2
    assert "split must be one of 'train', 'validation', 'test', got 'holdout'" in capsys.readouterr().err


def test_a_task_too_small_for_three_splits_is_refused():
    # max_operand 1 has two instances, 1+1=2 and 1-1=0: at least one split is empty
    empty = [s for s in data.SPLITS if data.instance_split("1+1=2") != s and data.instance_split("1-1=0") != s]
    with pytest.raises(ValueError, match="too few distinct instances to fill three disjoint splits"):
        data.synthetic_arithmetic(1, max_operand=1, split=empty[0])


def test_training_checks_on_validation_and_evaluate_reports_test(tmp_path, monkeypatch):
    from sapo_core import evaluate as E
    from sapo_core import train
    from sapo_core.recipe import parse_args

    run = parse_args(["--config", "configs/tiny-paper.yaml", "--run_dir", str(tmp_path / "run"), "--eval_size", "5"])
    assert run.synthetic_task("train").split == "train"
    seen = []
    monkeypatch.setattr(E, "evaluate", lambda model, names, synthetic, **kw: seen.append(synthetic) or
                        E.Evaluation({"benchmarks": {"synthetic": {"mean@n": 0.5, "mean@n_ci95": [0.4, 0.6], "n": 1,
                                                                   "format_rate": 1.0, "n_problems": 5}}}))
    train.heldout_check(None, None, run)
    assert {task.split for task in seen} == {"validation"} and {task.size for task in seen} == {5}
    # a run directory's evaluation: the test split with the run's eval_size (read from its config.yaml)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("dataset: synthetic\neval_size: 3\ndata_seed: 2\n")
    source = E.ModelSource(given=str(run_dir), path=str(run_dir / "final"), run_dir=str(run_dir))
    args = E.EvalArguments(model="tiny")
    assert E.synthetic_task(args, source) == data.SyntheticTask(size=3, data_seed=2, split="test")
    assert E.synthetic_task(E.EvalArguments(model="tiny", split="validation"), source).split == "validation"
