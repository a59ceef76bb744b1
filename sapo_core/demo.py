"""`make demo`: the main job on the embedded default, on CPU.

    python -m sapo_core.demo [--out runs/demo-<time>]

Runs notebook 01 (gate properties, Figure 1) through papermill; executed copies of the notebooks go
into a new run directory (never overwriting an old one) and figures into `figures/`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sapo_core.paths import REPO_ROOT, figures_dir, runs_dir

log = logging.getLogger(__name__)
NOTEBOOKS = REPO_ROOT / "notebooks"


def run_notebook(name: str, run_dir: Path, parameters: dict | None = None) -> Path:
    """Execute `notebooks/<name>` with papermill into `run_dir/<name>`; refuse to overwrite."""
    import papermill  # notebooks extra; imported here so the package works without it

    out = run_dir / name
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new run directory")
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters or {},
                               cwd=str(NOTEBOOKS), progress_bar=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/demo-<time>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_dir = args.out or runs_dir() / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    start = time.perf_counter()
    run_notebook("01_gate_properties.ipynb", run_dir)
    log.info("figures in %s", figures_dir())
    log.info("demo finished in %.0f s; executed notebooks in %s", time.perf_counter() - start, run_dir)


if __name__ == "__main__":
    main()
