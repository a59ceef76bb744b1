"""The batch runner: papermill runs of notebooks 02 and 03 per (gate, seed), local and submitit executors, failed
runs recorded while the others go on, re-running completes only what is missing, a killed kernel's run resumes,
and notebook 04 compares the result.

Cost: each run is two notebook kernels, so the runs are shared: one module-scoped batch (two gates, one failing at
first) is made by the local pool, completed by the submitit executor, compared by notebook 04 and refused with
other settings. Runs are 1 step unless the length is the point (the killed run needs checkpoints to resume from).
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sapo_core.batch import BatchArguments, main, run_batch
from sapo_core.train import read_metrics

pytestmark = pytest.mark.slow

# One step per run: 2 prompts x 8 rollouts, a 4-problem evaluation (eval_limit) with 2 samples each.
FLAGS = ["--max_steps", "1", "--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size", "16",
         "--max_completion_length", "24", "--save_steps", "2", "--learning_rate", "1e-3"]


def args(out, **over):
    return BatchArguments(**{"config": "configs/tiny-cpu.yaml", "out": str(out), "gates": "sigmoid,softsign",
                             "seeds": "0", "jobs": 2, "eval_n": 2, "eval_limit": 4, **over})


def files(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_gates(tmp_path_factory):
    """A batch of two gates x one seed through the local pool (jobs=2), softsign failing (a bad per-gate flag)."""
    out = tmp_path_factory.mktemp("batch") / "b"
    batch = run_batch(args(out), FLAGS, gate_flags={"softsign": ["--sapo_temperature_pos", "-1"]})
    return out, batch, files(out / "sigmoid-equal-seed0")


@pytest.fixture(scope="module")
def completed(two_gates):
    """The same command again, without the bad flag, through submitit's local executor: only softsign runs."""
    out, _, _ = two_gates
    return run_batch(args(out, executor="slurm", slurm_cluster="local", jobs=1), FLAGS)


def test_a_failing_run_is_recorded_and_the_others_finish(two_gates):
    out, batch, _ = two_gates
    rows = {r["gate"]: r for r in batch["runs"]}
    assert rows["sigmoid"]["status"] == "finished" and rows["sigmoid"]["error"] is None
    assert rows["softsign"]["status"] == "failed" and "sapo_temperature_pos=-1.0 must be a finite number > 0" \
        in rows["softsign"]["error"]
    assert (out / "sigmoid-equal-seed0" / "02_train.ipynb").exists()
    assert (out / "sigmoid-equal-seed0" / "03_evaluate.ipynb").exists()
    assert rows["sigmoid"]["eval/synthetic/n"] == 2 and 0 <= rows["sigmoid"]["eval/synthetic/mean@n"] <= 1
    assert rows["sigmoid"]["tau_pos"] == 1.0 and rows["sigmoid"]["num_iterations"] == 2
    assert (out / "summary.csv").read_text().count("\n") == 3


def test_running_again_completes_only_what_was_missing_through_submitit(two_gates, completed):
    out, _, finished = two_gates
    assert [r["status"] for r in completed["runs"]] == ["finished", "finished"]
    assert all(r["eval/synthetic/mean@n"] is not None for r in completed["runs"])
    assert files(out / "sigmoid-equal-seed0") == finished  # byte-identical
    assert (out / "softsign-equal-seed0" / "02_train.attempt1.ipynb").exists()  # the failed attempt is kept
    assert len(list((out / "slurm").rglob("*_log.out"))) == 1  # one submitit job, with its log: the missing run
    assert main(["--config", "configs/tiny-cpu.yaml", "--out", str(out), "--gates", "sigmoid,softsign", "--seeds",
                 "0", "--eval_n", "2", "--eval_limit", "4", "--jobs", "2", *FLAGS]) == 0  # nothing left to do
    assert files(out / "sigmoid-equal-seed0") == finished


def test_notebook_04_compares_the_batch(two_gates, completed, tmp_path):
    import papermill

    out, _, _ = two_gates
    nb = papermill.execute_notebook("notebooks/04_compare.ipynb", str(tmp_path / "04.ipynb"), cwd="notebooks",
                                    parameters={"batch_dir": str(out)}, progress_bar=False)
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == sorted(f"compare_{n}.{ext}" for n in ("training", "ratios", "accuracy") for ext in ("png", "pdf"))
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    from sapo_core.claims import CLAIMS

    assert f"{len(CLAIMS)} claims;" in text


def test_the_same_out_with_other_settings_is_refused(two_gates, capsys):
    out, _, _ = two_gates
    assert main(["--config", "configs/tiny-cpu.yaml", "--out", str(out), "--gates", "sigmoid,softsign", "--seeds",
                 "0", "--eval_n", "4", "--eval_limit", "4", *FLAGS]) == 2
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


def test_a_run_whose_kernel_is_killed_is_resumed_by_the_next_invocation(tmp_path):
    """The batch records the dead kernel and its next invocation resumes the run from a checkpoint to the end. (That
    a run resumed after kill -9 equals the uninterrupted run is sapo_core.train's property: test_train checks it.)"""
    flags = [*FLAGS[:1], "8", *FLAGS[2:]]  # 8 steps: checkpoints at 2, 4, 6 to resume from, and time to kill
    out = tmp_path / "b"
    run_dir = out / "sigmoid-equal-seed0"
    killed = []

    def kill_the_kernel():  # the training process is the kernel; it names itself in owner.json
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("\n") >= 3 and (run_dir / "owner.json").exists():
                pid = json.loads((run_dir / "owner.json").read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_kernel)
    killer.start()
    first = run_batch(args(out, gates="sigmoid", jobs=1), flags)
    killer.join()
    assert killed and first["runs"][0]["status"] == "failed" and "DeadKernelError" in first["runs"][0]["error"]
    again = run_batch(args(out, gates="sigmoid", jobs=1), flags)
    assert again["runs"][0]["status"] == "finished"
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"].endswith(("checkpoint-2", "checkpoint-4"))
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 9))  # each step once, none lost
    assert load_file(str(run_dir / "final" / "model.safetensors"))
    assert again["runs"][0]["eval/synthetic/mean@n"] is not None
