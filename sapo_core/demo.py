"""`make demo`: the main job on the embedded default, on CPU.

    python -m sapo_core.demo [--out runs/demo-<time>] [--steps N] [--gates clip,sigmoid,erf,arctan,softsign]

1. notebook 01 (gate properties): Figure 1 into `figures/`;
2. notebook 02 (train) once per gate on the tiny-cpu recipe, each a short run into `<out>/<gate>/`;
3. a table of held-out greedy accuracy (base -> trained) per gate, also written to `<out>/summary.json`.

Executed copies of the notebooks go into a new run directory (an existing one is never reused).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from sapo_core.paths import REPO_ROOT, figures_dir, runs_dir

log = logging.getLogger(__name__)
NOTEBOOKS = REPO_ROOT / "notebooks"
DEMO_GATES = ("clip", "sigmoid", "erf", "arctan", "softsign")


def run_notebook(name: str, out: Path, parameters: dict | None = None) -> Path:
    """Execute `notebooks/<name>` with papermill into `out`; refuse to overwrite."""
    import papermill  # notebooks extra; imported here so the package works without it

    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new run directory")
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters or {},
                               cwd=str(NOTEBOOKS), progress_bar=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/demo-<time>)")
    parser.add_argument("--steps", type=int, default=40, help="RL steps per gate (tiny-cpu recipe)")
    parser.add_argument("--gates", default=",".join(DEMO_GATES), help="comma-separated gates to train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # absolute: the notebooks run with notebooks/ as their working directory
    run_dir = (args.out or runs_dir() / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=False)
    start = time.perf_counter()
    run_notebook("01_gate_properties.ipynb", run_dir / "01_gate_properties.ipynb")
    log.info("Figure 1 written to %s", figures_dir())
    results = {}
    for gate in [g.strip() for g in args.gates.split(",") if g.strip()]:
        gate_dir = run_dir / gate
        gate_dir.mkdir()
        run_notebook("02_train.ipynb", gate_dir / "02_train.ipynb",
                     {"config": "configs/tiny-cpu.yaml", "gate": gate, "seed": 0,
                      "flags": ["--max_steps", str(args.steps)], "run_dir": str(gate_dir / "run")})
        summary = json.loads((gate_dir / "run" / "summary.json").read_text())
        results[gate] = {"base": summary["heldout_base"]["greedy_accuracy"],
                         "trained": summary["heldout_final"]["greedy_accuracy"],
                         "train_seconds": round(summary["train_runtime_s"], 1)}
    (run_dir / "summary.json").write_text(json.dumps({"steps": args.steps, "gates": results}, indent=2) + "\n")
    print(f"\nheld-out greedy accuracy on {args.steps} tiny-cpu RL steps (seed 0):")
    print(f"{'gate':>10} {'base':>6} {'trained':>8} {'train s':>8}")
    for gate, r in results.items():
        print(f"{gate:>10} {r['base']:6.3f} {r['trained']:8.3f} {r['train_seconds']:8.1f}")
    log.info("demo finished in %.0f s; everything in %s", time.perf_counter() - start, run_dir)


if __name__ == "__main__":
    main()
