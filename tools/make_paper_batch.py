"""Write the small fabricated batch that notebook 05 and tests/test_paper.py draw the paper's figures from.

    .venv/bin/python tools/make_paper_batch.py [--out data/paper/example_batch]

No training: every value is a formula of (arm, seed, step), so a figure or table drawn from it can be checked
by hand. The arms are those of `make paper` (GRPO and the four gates at (10, 12), erf at (1, 1.05), (5, 6) and
(13, 15)), 2 seeds, 4 logged steps; each run directory holds what sapo_core.compare reads (config.yaml,
provenance.json, status.json, metrics.jsonl, eval/batch/results.json), beside batch.json and the base model's
evaluation (base/results.json). The content is deterministic: rerunning the script reproduces the committed
files byte for byte (tests/test_paper.py checks this). The commit is recorded as "fabricated".

Per run (arm index a in ARMS order, seed s, step k = 1..4):
    reward = 0.2 + 0.05 a + 0.1 k + 0.02 s    entropy = 1 - 0.1 k - 0.01 a + 0.01 s    eur = 0.9 - 0.02 a + 0.01 s
    held-out synthetic mean@8 = 0.5 + 0.02 a + 0.04 s (interval +-0.05, 100 problems); base model 0.45;
    in training (heldout_eval_steps 2, steps 2 and 4): heldout/synthetic/mean@n = 0.45 + 0.01 a k + 0.02 s;
    eval/batch/samples.jsonl (what sapo_core.aggregate reads): one line per problem i = 0..99 holding the problem's
    score, 1 if (37 i + 11 a + 5 s) mod 100 < 100 x mean@8 else 0, so that the scores' mean is mean@8 exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "data" / "paper" / "example_batch"
ARMS = (("clip", None), ("sigmoid", None), ("erf", None), ("arctan", None), ("softsign", None),
        ("erf", (1.0, 1.05)), ("erf", (5.0, 6.0)), ("erf", (13.0, 15.0)))
RECIPE_TAUS = (10.0, 12.0)
SEEDS = (0, 1)
STEPS = (1, 2, 3, 4)
HELDOUT_STEPS = (2, 4)
EVAL_N, EVAL_PROBLEMS = 8, 100


def run_name(gate: str, taus, seed: int) -> str:
    """The run's directory name, as sapo_core.batch.RunSpec.name gives it."""
    tau = "" if taus is None else f"-tau{taus[0]:g}_{taus[1]:g}"
    return f"{gate}{tau}-equal-seed{seed}"


def _results(mean: float) -> dict:
    return {"benchmarks": {"synthetic": {"mean@n": round(mean, 4), "mean@n_ci95": [round(mean - 0.05, 4),
                                                                                  round(mean + 0.05, 4)],
                                         "n": EVAL_N, "n_problems": EVAL_PROBLEMS}},
            "settings": {"benchmarks": ["synthetic"], "n": EVAL_N, "temperature": 0.7}, "complete": True}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_batch(out: Path) -> Path:
    """Write the fabricated batch into `out` (which must not exist); return `out`."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another --out (a batch is never overwritten)")
    rows = []
    for a, (gate, taus) in enumerate(ARMS):
        tau_pos, tau_neg = taus or RECIPE_TAUS
        for seed in SEEDS:
            name = run_name(gate, taus, seed)
            run = out / name
            config = {"model": "tiny", "gate": gate, "sapo_temperature_pos": tau_pos, "sapo_temperature_neg": tau_neg,
                      "tau_convention": "equal", "epsilon": 0.2, "num_iterations": 2, "seed": seed}
            _write(run / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            clip = gate == "clip"
            provenance = {"gate": gate, "tau_convention": None if clip else "equal", "tau_pos_base": tau_pos,
                          "tau_neg_base": tau_neg, "tau_pos": None if clip else tau_pos,
                          "tau_neg": None if clip else tau_neg, "num_iterations": 2, "seed": seed,
                          "config_file": "configs/tiny-paper.yaml", "git": {"commit": "fabricated", "dirty": False}}
            _write(run / "provenance.json", json.dumps(provenance, indent=1) + "\n")
            _write(run / "status.json", json.dumps({"state": "finished"}) + "\n")
            metrics = [{"step": k, "reward": round(0.2 + 0.05 * a + 0.1 * k + 0.02 * seed, 4),
                        "entropy": round(1 - 0.1 * k - 0.01 * a + 0.01 * seed, 4),
                        "eur": round(0.9 - 0.02 * a + 0.01 * seed, 4)} for k in STEPS]
            for m in metrics:
                if m["step"] in HELDOUT_STEPS:
                    m["heldout/synthetic/mean@n"] = round(0.45 + 0.01 * a * m["step"] + 0.02 * seed, 4)
            _write(run / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
            mean = 0.5 + 0.02 * a + 0.04 * seed
            _write(run / "eval" / "batch" / "results.json", json.dumps(_results(mean), indent=1) + "\n")
            scores = [float((37 * i + 11 * a + 5 * seed) % 100 < round(100 * mean)) for i in range(EVAL_PROBLEMS)]
            samples = [{"benchmark": "synthetic", "problem_id": i, "score": x} for i, x in enumerate(scores)]
            _write(run / "eval" / "batch" / "samples.jsonl", "".join(json.dumps(x) + "\n" for x in samples))
            rows.append({"run": name, "gate": gate, "tau_convention": None if clip else "equal", "seed": seed,
                         "status": "finished", "error": None, "tau_pos_base": tau_pos, "tau_neg_base": tau_neg,
                         "num_iterations": 2, "steps": STEPS[-1]})
    _write(out / "base" / "results.json", json.dumps(_results(0.45), indent=1) + "\n")
    settings = {"config": "configs/tiny-paper.yaml", "eval_benchmarks": "synthetic", "eval_n": EVAL_N,
                "fabricated_by": "tools/make_paper_batch.py"}
    _write(out / "batch.json", json.dumps({"settings": settings, "runs": rows}, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"batch directory to create (default {OUT})")
    args = parser.parse_args(argv)
    try:
        print(write_batch(args.out))
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
