"""The batch runner: papermill runs of notebooks 02 and 03 per (gate, seed), local and submitit executors, failed
runs recorded while the others go on, a killed kernel's run resumed by the next invocation, re-running completes
only what is missing, and notebook 04 compares the result.

Cost: each run is two notebook kernels, so the runs are shared: one module-scoped batch of two gates is started by
the local pool (softsign fails in its first cell, sigmoid's kernel is killed after its checkpoint at step 2),
completed by the submitit executor (sigmoid resumes, softsign runs), compared by notebook 04 and refused with other
settings. Softsign runs 1 step; sigmoid 6, for a checkpoint to resume from and time to kill its kernel.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from sapo_core.batch import BatchArguments, main, run_batch
from sapo_core.train import read_metrics

pytestmark = pytest.mark.slow

# 2 prompts x 8 rollouts per step, a 4-problem evaluation (eval_limit) with 2 samples each; steps per gate.
FLAGS = ["--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size", "16",
         "--max_completion_length", "24", "--save_steps", "2"]
SWEEP = ["learning_rate=1e-3"]  # one point: the sweep's path through real runs (its planning: test_sweep.py)
SIGMOID_STEPS = 6
GATE_FLAGS = {"sigmoid": ["--max_steps", str(SIGMOID_STEPS)], "softsign": ["--max_steps", "1"]}


SIGMOID, SOFTSIGN = "sigmoid-lr0.001-equal-seed0", "softsign-lr0.001-equal-seed0"  # run names carry the axis


def args(out, **over):
    return BatchArguments(**{"config": "configs/tiny-cpu.yaml", "out": str(out), "gates": "sigmoid,softsign",
                             "seeds": "0", "jobs": 2, "eval_n": 2, "eval_limit": 4, "sweep": SWEEP, **over})


def files(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def kill_when_checkpointed(run_dir: Path, killed: list, stop: threading.Event) -> None:
    """SIGKILL the run's kernel (the training process names itself in owner.json) once step 3 is logged, i.e.
    after the checkpoint at step 2."""
    while not stop.is_set():
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 3 and (run_dir / "owner.json").exists():
            pid = json.loads((run_dir / "owner.json").read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The local pool (jobs=2): softsign fails in its first cell (a bad per-gate flag), sigmoid's kernel is killed."""
    out = tmp_path_factory.mktemp("batch") / "b"
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_when_checkpointed, args=(out / SIGMOID, killed, stop))
    killer.start()
    try:
        batch = run_batch(args(out), FLAGS, gate_flags={
            **GATE_FLAGS, "softsign": [*GATE_FLAGS["softsign"], "--sapo_temperature_pos", "-1"]})
    finally:
        stop.set()
        killer.join()
    return out, batch, killed


@pytest.fixture(scope="module")
def completed(first):
    """The same command again, without the bad flag, through submitit's local executor: sigmoid resumes from its
    checkpoint, softsign runs."""
    out, _, _ = first
    batch = run_batch(args(out, executor="slurm", slurm_cluster="local", jobs=1), FLAGS, gate_flags=GATE_FLAGS)
    return batch, {run: files(out / run) for run in (SIGMOID, SOFTSIGN)}


def test_a_failing_run_and_a_killed_kernel_are_recorded_and_the_others_go_on(first):
    out, batch, killed = first
    rows = {r["gate"]: r for r in batch["runs"]}
    assert killed and rows["sigmoid"]["status"] == "failed" and "DeadKernelError" in rows["sigmoid"]["error"]
    assert rows["softsign"]["status"] == "failed" and "sapo_temperature_pos=-1.0 must be a finite number > 0" \
        in rows["softsign"]["error"]
    assert (out / SIGMOID / "02_train.ipynb").exists()
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and "learning_rate" in summary[0].split(",")


def test_the_next_invocation_resumes_the_killed_run_and_completes_the_failed_one_through_submitit(first, completed):
    out, _, _ = first
    batch, _ = completed
    rows = {r["gate"]: r for r in batch["runs"]}
    assert [r["status"] for r in batch["runs"]] == ["finished", "finished"]
    assert all(r["eval/synthetic/mean@n"] is not None for r in batch["runs"])
    assert rows["sigmoid"]["eval/synthetic/n"] == 2 and 0 <= rows["sigmoid"]["eval/synthetic/mean@n"] <= 1
    assert rows["sigmoid"]["tau_pos"] == 1.0 and rows["sigmoid"]["num_iterations"] == 2
    run_dir = out / SIGMOID
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"].endswith(("checkpoint-2", "checkpoint-4"))
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, SIGMOID_STEPS + 1))  # each step once
    assert load_file(str(run_dir / "final" / "model.safetensors"))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["learning_rate"] == 1e-3  # the sweep's value
    assert (run_dir / "03_evaluate.ipynb").exists()
    assert (out / SOFTSIGN / "02_train.attempt1.ipynb").exists()  # the failed attempt is kept
    assert len(list((out / "slurm").rglob("*_log.out"))) == 2  # one submitit job per missing run, with its log


def test_running_again_with_nothing_missing_touches_no_finished_run(first, completed):
    out, _, _ = first
    _, finished = completed
    assert main(["--config", "configs/tiny-cpu.yaml", "--out", str(out), "--gates", "sigmoid,softsign", "--seeds",
                 "0", "--eval_n", "2", "--eval_limit", "4", "--jobs", "2", "--sweep", *SWEEP,
                 *FLAGS]) == 0  # nothing left to do
    assert {run: files(out / run) for run in finished} == finished  # byte-identical


def test_notebook_04_compares_the_batch(first, completed, tmp_path):
    import papermill

    out, _, _ = first
    nb = papermill.execute_notebook("notebooks/04_compare.ipynb", str(tmp_path / "04.ipynb"), cwd="notebooks",
                                    parameters={"batch_dir": str(out)}, progress_bar=False)
    names = sorted(p.name for p in (out / "figures").iterdir())
    figures = ("training", "ratios", "accuracy", "heldout")
    assert names == sorted(f"compare_{n}.{ext}" for n in figures for ext in ("png", "pdf"))
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    from sapo_core.claims import CLAIMS

    assert f"{len(CLAIMS)} claims;" in text


def test_the_same_out_with_other_settings_is_refused(first, capsys):
    out, _, _ = first
    assert main(["--config", "configs/tiny-cpu.yaml", "--out", str(out), "--gates", "sigmoid,softsign", "--seeds",
                 "0", "--eval_n", "4", "--eval_limit", "4", "--sweep", *SWEEP, *FLAGS]) == 2
    assert "holds a batch made with other settings (changed: eval_n)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--gates", ""], "gates is empty"),
    (["--seeds", "0,x"], "seeds='0,x' must be comma-separated integers"),
    (["--jobs", "0"], "jobs=0 must be >= 1"),
    (["--learnin_rate", "1"], "unknown flag 'learnin_rate'"),
    (["--executor", "cloud"], "invalid choice: 'cloud'"),
])
def test_bad_batch_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["--config", "configs/tiny-cpu.yaml", "--out", str(tmp_path / "b"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "b").exists()
