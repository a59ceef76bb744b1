"""Benchmark: wall time of the whole demo pipeline (`python -m sapo_core.demo`, what `make demo` runs after install).

Notebook 01, the batch of five gates x 3 seeds on the acting tiny recipe (notebooks 02 and 03 per run) and
notebook 04, into a temporary directory (figures too, so the committed ones stay as they are). Last line:

    bench_demo: seconds=<x> (target <= 600) pass|FAIL

Exit status 0 when the demo finishes within the target, 1 when it is slower (the line says by how much) or fails.

    .venv/bin/python benchmarks/bench_demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 600.0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SAPO_FIGURES_DIR": str(Path(tmp) / "figures"), "SAPO_RUNS_DIR": str(Path(tmp) / "runs")}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sapo_core.demo", "--out", str(Path(tmp) / "demo")], env=env)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"bench_demo: seconds=nan (target <= {TARGET_S:.0f}) FAIL (the demo failed: exit {done.returncode})")
        return 1
    verdict = "pass" if seconds <= TARGET_S else f"FAIL (over by {seconds - TARGET_S:.0f} s)"
    print(f"bench_demo: seconds={seconds:.0f} (target <= {TARGET_S:.0f}) {verdict}")
    return 0 if seconds <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
