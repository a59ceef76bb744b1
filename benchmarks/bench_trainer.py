"""Benchmark: GatedGRPOTrainer against TRL's own GRPOTrainer(loss_type="sapo"), same run, same arguments.

Both train the embedded tiny model on the tiny-cpu recipe (64 completions per step, 2 updates per
generated batch) with metrics logged on every step, the worst case for us: our trainer then pools
every token's ratio and gate weight for the step's statistics, TRL computes its clip ratios. Each
trainer runs in its own fresh process (so peak resident memory is its own), in the order ours, TRL,
TRL, ours, ..., so that load from elsewhere on the machine, and whatever favours the first or second
process of a pair, falls on both alike. Step times are measured by
a callback from on_step_begin to on_step_end; the first two steps (warm-up) are dropped; medians are
reported separately for generation steps (sampling + scoring + update) and reuse steps (update only,
where the loss is the largest share).

    python benchmarks/bench_trainer.py [--steps 16] [--gate sigmoid]

The last line is `bench_trainer: step_time_ratio=<x> (target <= 1.05)`, the larger of the two medians'
ratios (ours / TRL); the line before it gives the peak-memory ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TARGET = 1.05
WARMUP_STEPS = 2


def worker(which: str, steps: int, gate: str, out: Path) -> None:
    """Train `steps` steps with our trainer ("ours") or TRL's ("trl"); write step times and peak RSS."""
    import logging

    from transformers import AutoTokenizer, TrainerCallback, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from sapo_core.config import parse_args
    from sapo_core.rewards import correctness_reward, format_reward
    from sapo_core.tiny import base_model_path
    from sapo_core.train import datasets_for
    from sapo_core.trainer import GatedGRPOTrainer

    logging.disable(logging.WARNING)
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as tmp:
        run = parse_args(["--config", "configs/tiny-cpu.yaml", "--gate", gate, "--max_steps", str(steps),
                          "--logging_steps", "1", "--save_steps", "2", "--run_dir", str(Path(tmp) / "ours")])
        args = run.training
        args.save_strategy, args.disable_tqdm = "no", True
        cls = GatedGRPOTrainer
        if which == "trl":
            if gate != "sigmoid":
                raise SystemExit("TRL's built-in SAPO is the sigmoid gate: use --gate sigmoid for the baseline")
            shared = {k: v for k, v in args.to_dict().items()
                      if k in GRPOConfig.__dataclass_fields__ and k not in ("loss_type", "output_dir",
                                                                            "generation_batch_size")}
            args = GRPOConfig(**{**shared, "loss_type": "sapo", "output_dir": str(Path(tmp) / "trl")})
            cls = GRPOTrainer
        base = base_model_path()
        train_ds = datasets_for(run.script, args.data_seed)
        set_seed(args.seed)
        trainer = cls(model=str(base), reward_funcs=[format_reward, correctness_reward], args=args,
                      train_dataset=train_ds,
                      processing_class=AutoTokenizer.from_pretrained(base), callbacks=[Timer()])
        trainer.train()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out.write_text(json.dumps({"times": times, "peak_mib": peak_kib / 1024}))


def _median_by_kind(times: list[float]) -> dict[str, float]:
    """Median step time of generation steps (odd: 1, 3, ...) and reuse steps (even), warm-up dropped."""
    kept = list(enumerate(times, 1))[WARMUP_STEPS:]
    return {"generation": statistics.median(t for s, t in kept if s % 2 == 1),
            "reuse": statistics.median(t for s, t in kept if s % 2 == 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run (even, > 4)")
    parser.add_argument("--gate", default="sigmoid", help="our trainer's gate (TRL's baseline is sapo)")
    parser.add_argument("--repeats", type=int, default=6, help="runs of each trainer, interleaved")
    parser.add_argument("--worker", nargs=2, metavar=("WHICH", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.steps, args.gate, Path(args.worker[1]))
        return 0
    if args.steps % 2 or args.steps <= 2 * WARMUP_STEPS:
        parser.error(f"--steps must be even and > {2 * WARMUP_STEPS}, got {args.steps}")

    results: dict[str, list[dict]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for which in (("ours", "trl") if i % 2 == 0 else ("trl", "ours")):
                out = Path(tmp) / f"{which}-{i}.json"
                gate = args.gate if which == "ours" else "sigmoid"
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--gate", gate, "--worker", which,
                       str(out)]
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                results[which].append(json.loads(out.read_text()))
                print(f"  run {i + 1}/{args.repeats} {which:4s}: {time.perf_counter() - start:5.1f} s", flush=True)

    print("\nper run (median ms: generation / reuse steps):")
    for which, runs in results.items():
        cells = [_median_by_kind(r["times"]) for r in runs]
        print(f"  {which:4s} " + "  ".join(f"{1e3 * c['generation']:6.1f} / {1e3 * c['reuse']:6.1f}" for c in cells))
    med = {}
    for which, runs in results.items():
        times = [_median_by_kind(r["times"]) for r in runs]
        med[which] = {kind: statistics.median(t[kind] for t in times) for kind in ("generation", "reuse")}
        med[which]["peak_mib"] = max(r["peak_mib"] for r in runs)
    print(f"\ntiny-cpu, {args.steps} steps, metrics every step, median over steps {WARMUP_STEPS + 1}.. and "
          f"{args.repeats} runs each; ours = GatedGRPOTrainer(gate={args.gate}), TRL = GRPOTrainer(loss_type=sapo)")
    print(f"{'':18s} {'ours':>9s} {'TRL':>9s} {'ratio':>7s}")
    ratios = {}
    for kind in ("generation", "reuse"):
        ratios[kind] = med["ours"][kind] / med["trl"][kind]
        print(f"{kind + ' step (ms)':18s} {1e3 * med['ours'][kind]:9.1f} {1e3 * med['trl'][kind]:9.1f} "
              f"{ratios[kind]:7.3f}")
    mem_ratio = med["ours"]["peak_mib"] / med["trl"]["peak_mib"]
    print(f"{'peak RSS (MiB)':18s} {med['ours']['peak_mib']:9.0f} {med['trl']['peak_mib']:9.0f} {mem_ratio:7.3f}")
    print(f"bench_trainer: peak_memory_ratio={mem_ratio:.3f} (target <= {TARGET})")
    worst = max(ratios.values())
    print(f"bench_trainer: step_time_ratio={worst:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
