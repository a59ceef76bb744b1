"""Tests for sapo_core.rewards.spawning: the grading workers start from every way Python code is run.

Each caller is a real subprocess making one grading call that needs the pool (1/2 against 0.5 is not
settled in-process). The script prints a marker at top level: a worker that re-ran the caller's main
module would print it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sapo_core.rewards.spawning import MAIN_MODULE_KEYS, preparation_data

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "caller top level ran"
# No `if __name__ == "__main__":` guard, on purpose.
SCRIPT = textwrap.dedent(f"""\
    print({MARKER!r}, flush=True)
    from sapo_core.rewards import CorrectnessReward, Grader
    reward = CorrectnessReward(Grader(num_workers=1, warm_up=False))
    print(reward(["<think> r </think> <answer> \\\\frac{{1}}{{2}} </answer>"], answer=["0.5"]), flush=True)
    reward.grader.close()
""")
THREADED = textwrap.dedent(f"""\
    print({MARKER!r}, flush=True)
    import threading
    from sapo_core.rewards import CorrectnessReward, Grader
    reward = CorrectnessReward(Grader(num_workers=1, warm_up=False))
    out = []
    thread = threading.Thread(target=lambda: out.append(
        reward(["<think> r </think> <answer> \\\\frac{{1}}{{2}} </answer>"], answer=["0.5"])))
    thread.start()
    thread.join()
    print(out[0], flush=True)
    reward.grader.close()
""")


def run_python(args: list[str], tmp_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python args...` in tmp_path with the repo importable; its output checked for one grading, once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines.count(MARKER) == 1, result.stdout  # the workers did not run the caller again
    assert lines[-1] == "[1.0]", result.stdout
    return result


def test_preparation_data_leaves_out_the_main_module():
    data = preparation_data("worker")
    assert not set(MAIN_MODULE_KEYS) & set(data)
    assert {"sys_path", "dir", "authkey"} <= set(data)


@pytest.mark.slow
def test_script_from_stdin(tmp_path):
    run_python(["-"], tmp_path, stdin=SCRIPT)


@pytest.mark.slow
def test_unguarded_script_file(tmp_path):
    (tmp_path / "caller.py").write_text(SCRIPT)
    run_python(["caller.py"], tmp_path)


@pytest.mark.slow
def test_unguarded_module_run_with_dash_m(tmp_path):
    (tmp_path / "caller_module.py").write_text(SCRIPT)
    run_python(["-m", "caller_module"], tmp_path)


@pytest.mark.slow
def test_dash_c(tmp_path):
    run_python(["-c", SCRIPT], tmp_path)


@pytest.mark.slow
def test_from_a_thread_of_an_unguarded_script(tmp_path):
    (tmp_path / "caller.py").write_text(THREADED)
    run_python(["caller.py"], tmp_path)


@pytest.mark.slow
def test_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="notebook extra (nbformat) not installed")
    nbclient = pytest.importorskip("nbclient", reason="notebook extra (nbclient) not installed")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n" + SCRIPT)])
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.get("output_type") == "stream")
    assert text.splitlines().count(MARKER) == 1 and text.splitlines()[-1] == "[1.0]", notebook.cells[0].outputs
