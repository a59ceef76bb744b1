"""Tracking (report_to): the trackers' run name is the run directory's name, and `report_to: tensorboard` writes the
logged metrics, under their registered names, into <run_dir>/tb; a resumed run continues the same TensorBoard run."""

import importlib.util
import json

import pytest
from conftest import REPO_ROOT, TINY_RUN_FLAGS, CrashAfterStep

from sapo_core.config import ConfigError, run_name
from sapo_core.paths import runs_dir
from sapo_core.recipe import parse_args
from sapo_core.train import TENSORBOARD_DIR, read_metrics, train

TINY = ["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml")]
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard is not installed: pip install -e .[tracking]")


def test_the_trackers_run_name_is_the_run_directorys_name(tmp_path):
    run = parse_args([*TINY, "--run_dir", str(tmp_path / "erf-lr3e-05-equal-seed1")])
    assert run.training.run_name == "erf-lr3e-05-equal-seed1"
    default = parse_args([*TINY, "--gate", "erf", "--seed", "3"])
    assert default.run_dir == runs_dir() / "tiny-cpu" / run_name("erf", "equal", 3)
    assert default.training.run_name == run_name("erf", "equal", 3)
    assert "run_name" not in default.recipe  # derived, so never in config.yaml


def test_a_run_name_of_its_own_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="run_name .* is the run directory's name; name the run with --run_dir"):
        parse_args([*TINY, "--run_name", "mine"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO_ROOT / "configs" / "tiny-cpu.yaml").read_text() + "run_name: mine\n")
    with pytest.raises(ConfigError, match="run_name .* is the run directory's name"):
        parse_args(["--config", str(recipe)])


def test_tensorboard_without_the_package_is_refused_naming_the_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        find_spec(name, *a))  # as where only tensorboardX, or nothing, is installed
    with pytest.raises(ConfigError, match=r"tracker 'tensorboard' is not installed.*pip install -e '\.\[tracking\]'"):
        parse_args([*TINY, "--report_to", "tensorboard"])


def _tiny_run(run_dir, **over) -> list[str]:
    """The conftest's smallest tiny-cpu run into run_dir, with `over` replacing or adding flags."""
    flags = dict(zip(TINY_RUN_FLAGS[::2], TINY_RUN_FLAGS[1::2])) | {f"--{k}": str(v) for k, v in over.items()}
    return [*TINY, "--run_dir", str(run_dir), *(x for pair in flags.items() for x in pair)]


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under <run_dir>/tb as tensorboard's own reader sees it: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _same_series(run_dir, scalars, name: str) -> None:
    """TensorBoard's train/<name> holds metric `name` of every row of metrics.jsonl, at its step (float32)."""
    rows = [(row["step"], row[name]) for row in read_metrics(run_dir) if name in row]
    shown = scalars[f"train/{name}"]
    assert [step for step, _ in shown] == [step for step, _ in rows], name
    assert [value for _, value in shown] == pytest.approx([value for _, value in rows], rel=1e-6, abs=1e-30), name


@needs_tensorboard
@pytest.mark.slow
def test_tensorboard_logs_every_metric_under_its_name_inside_the_run_directory(tmp_path):
    run_dir = tmp_path / "erf-equal-seed0"
    train(parse_args(_tiny_run(run_dir, gate="erf", report_to="tensorboard", heldout_eval_steps=2)))
    event_files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("events.out.tfevents.*"))
    assert event_files and all(p.parts[0] == TENSORBOARD_DIR for p in event_files), event_files
    scalars = _scalars(run_dir)
    rows = read_metrics(run_dir)
    # every logged number, under transformers' `train/` prefix and our registered name, at its step
    for name in sorted({k for row in rows for k, v in row.items() if k not in ("step", "epoch")
                        and isinstance(v, (int, float))}):
        assert f"train/{name}" in scalars, f"{name} is in metrics.jsonl but not in TensorBoard"
        _same_series(run_dir, scalars, name)
    for name in ("eur", "reward", "rewards/correctness_reward/mean", "heldout/synthetic/mean@n"):
        assert f"train/{name}" in scalars, f"train/{name} not among {sorted(scalars)}"
    assert [step for step, _ in scalars["train/heldout/synthetic/mean@n"]] == [2]


@needs_tensorboard
@pytest.mark.slow
def test_a_resumed_run_continues_the_same_tensorboard_run(tmp_path):
    run_dir = tmp_path / "sigmoid-equal-seed0"
    flags = _tiny_run(run_dir, max_steps=4, report_to="tensorboard")
    # checkpoint at step 2; step 3 reaches TensorBoard, the crash comes while step 4 is logged (before its checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(parse_args(flags), callbacks=[CrashAfterStep(4)])
    assert [step for step, _ in _scalars(run_dir)["train/eur"]] == [1, 2, 3]
    train(parse_args([*flags, "--resume"]))
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"].endswith("checkpoint-2")
    assert len(list((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2  # one per command, one run
    scalars = _scalars(run_dir)
    for name in ("eur", "reward"):  # step 3 of the crashed attempt hidden: each step once, as in metrics.jsonl
        _same_series(run_dir, scalars, name)
        assert [step for step, _ in scalars[f"train/{name}"]] == [1, 2, 3, 4]
