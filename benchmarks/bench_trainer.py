"""Benchmark: GatedGRPOTrainer against TRL's own GRPOTrainer(loss_type="sapo"), same run, same arguments.

Both train the embedded tiny model on the tiny-cpu recipe (64 completions per step, 2 updates per generated
batch) with metrics logged on every step, the worst case for us: our trainer then pools every token's ratio and
gate weight for the step's statistics, TRL computes its clip ratios.

Step time. Both trainers live in one process, each in its own thread, and take turns one optimizer step at a
time (a step counts from its on_step_begin to the trainer's next one, so its logging is inside; the other trainer
waits meanwhile), in the order ours, TRL, TRL, ours, ours, ...: load from elsewhere on the machine, which drifts
over seconds, falls on both members of a pair alike, and neither is always first. The unit of comparison is a
generation cycle (one generated batch and its reuse, num_iterations steps): ratio = ours / TRL over the same cycle,
the first cycle (warm-up) dropped. Cycles are added until the 95 % confidence interval of the median ratio (order
statistics, scipy.stats.quantile_test) is narrower than the margin (target - 1), or a cap on cycles or seconds is
reached. (The rule looks at the interval after every cycle, so its coverage is somewhat below the nominal 95 %.)

Peak memory. Each trainer trains a few steps in its own fresh process: peak resident set size on CPU
(getrusage), torch.cuda.max_memory_allocated on CUDA. One run each: the peak is nearly deterministic.

    python benchmarks/bench_trainer.py [--device cpu|cuda] [--gate sigmoid] [--max-cycles 40] [--max-seconds 75]

Verdicts: pass when the interval lies at or below the target, FAIL when it lies above, inconclusive when it
straddles the target at the cap (the machine was too noisy to decide); memory passes when its ratio is at or
below the target. Exit status: 0 pass, 1 FAIL (either metric), 3 inconclusive (and memory passed), 2 bad usage.
Last lines:

    bench_trainer: peak_memory_ratio=<x> (target <= 1.05) pass|FAIL
    bench_trainer: step_time_ratio=<median> [<low>, <high>] (target <= 1.05) pass|FAIL|inconclusive
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TARGET = 1.05
CONFIDENCE = 0.95
MIN_CYCLES = 6  # below this the order-statistic interval of the median cannot reach 95 %
MEMORY_STEPS = 2  # one generation cycle: a generation step and a reuse step
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3


def build_trainer(which: str, gate: str, steps: int, device: str, out_dir: Path, callbacks: list):
    """Our trainer ("ours", the given gate) or TRL's ("trl", loss_type="sapo") on the tiny-cpu recipe."""
    from transformers import AutoTokenizer, PrinterCallback, set_seed
    from trl import GRPOConfig, GRPOTrainer

    from sapo_core.recipe import parse_args
    from sapo_core.rewards import correctness_reward, format_reward
    from sapo_core.tiny import base_model_path
    from sapo_core.train import datasets_for
    from sapo_core.trainer import GatedGRPOTrainer

    run = parse_args(["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml"), "--gate", gate,
                      "--max_steps", str(steps), "--logging_steps", "1", "--save_steps", "2",
                      "--use_cpu", str(device == "cpu"),
                      "--run_dir", str(out_dir / f"{which}-run")])
    args = run.training
    args.save_strategy, args.disable_tqdm = "no", True
    cls = GatedGRPOTrainer
    if which == "trl":
        shared = {k: v for k, v in args.to_dict().items()
                  if k in GRPOConfig.__dataclass_fields__ and k not in ("loss_type", "output_dir",
                                                                        "generation_batch_size")}
        args = GRPOConfig(**{**shared, "loss_type": "sapo", "output_dir": str(out_dir / "trl")})
        cls = GRPOTrainer
    base = base_model_path()
    set_seed(args.seed)
    trainer = cls(model=str(base), reward_funcs=[format_reward, correctness_reward], args=args,
                  train_dataset=datasets_for(run.script, args.data_seed),
                  processing_class=AutoTokenizer.from_pretrained(base), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the logs are computed (the cost we measure) but not printed
    return trainer


def peak_memory_worker(which: str, gate: str, device: str, out: Path) -> None:
    """Train MEMORY_STEPS steps in this fresh process; write its peak memory in MiB."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        build_trainer(which, gate, MEMORY_STEPS, device, Path(tmp), []).train()
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out.write_text(json.dumps({"peak_mib": peak_mib}))


class Turns:
    """Two trainers, each in its thread, run one step at a time in the order ours, trl, trl, ours, ours, trl, ..."""

    def __init__(self):
        self.cond = threading.Condition()
        self.position = 0
        self.finished: set[str] = set()
        self.stop = False  # set when the stopping rule is met: each trainer ends at its next step

    def whose(self, position: int) -> str:
        """The trainer whose turn it is at `position` (pairs alternate which member goes first)."""
        pair, member = divmod(position, 2)
        return ("ours", "trl")[(pair + member) % 2]

    def wait_for(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.whose(self.position) == name)

    def _advance(self) -> None:
        """Move to the next turn, skipping a trainer that has finished."""
        self.position += 1
        while self.whose(self.position) in self.finished and len(self.finished) < 2:
            self.position += 1
        self.cond.notify_all()

    def pass_on(self, name: str) -> None:
        with self.cond:
            self._advance()

    def finish(self, name: str) -> None:
        with self.cond:
            self.finished.add(name)
            if self.whose(self.position) == name:
                self._advance()


def paired_step_times(gate: str, device: str, max_cycles: int, max_seconds: float, report):
    """Alternate the two trainers step by step until `report(times)` says stop; return {name: [step seconds]}."""
    import torch
    from transformers import TrainerCallback

    turns = Turns()
    times: dict[str, list[float]] = {"ours": [], "trl": []}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    class TakeTurns(TrainerCallback):
        def __init__(self, name):
            self.name, self.start = name, None

        def _close_step(self):
            sync()
            times[self.name].append(time.perf_counter() - self.start)
            turns.pass_on(self.name)

        def on_step_begin(self, args, state, control, **kwargs):
            if self.start is not None:
                self._close_step()
            turns.wait_for(self.name)
            sync()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if turns.stop:
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            turns.finish(self.name)  # the last step, with the end-of-training work in it, is not counted

    with tempfile.TemporaryDirectory() as tmp:
        steps = (max_cycles + 2) * 2  # enough for the cap at 2 steps a cycle; the stopping rule ends it sooner
        trainers = {name: build_trainer(name, gate if name == "ours" else "sigmoid", steps, device, Path(tmp),
                                        [TakeTurns(name)]) for name in ("ours", "trl")}
        a = trainers["ours"].args  # optimizer steps from one generation to the next (steps_per_generation counts
        cycle = a.num_iterations * a.steps_per_generation // a.gradient_accumulation_steps  # micro-batches)
        errors = []

        def train(name):
            try:
                trainers[name].train()
            except BaseException as err:  # noqa: B036 - re-raised in the main thread below
                errors.append(err)
                turns.stop = True
                turns.finish(name)

        threads = [threading.Thread(target=train, args=(name,), daemon=True) for name in ("ours", "trl")]
        start = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if not turns.stop and report(times, cycle, time.perf_counter() - start > max_seconds):
                turns.stop = True
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return times, cycle


def cycle_ratios(times: dict[str, list[float]], cycle: int) -> list[float]:
    """ours / TRL seconds per generation cycle (num_iterations steps), the first (warm-up) cycle dropped."""
    n = min(len(times["ours"]), len(times["trl"])) // cycle
    return [sum(times["ours"][c * cycle:(c + 1) * cycle]) / sum(times["trl"][c * cycle:(c + 1) * cycle])
            for c in range(1, n)]


def median_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Median of the ratios and its CONFIDENCE order-statistic interval (scipy.stats.quantile_test)."""
    from scipy.stats import quantile_test

    median = statistics.median(ratios)
    ci = quantile_test(ratios, q=median, p=0.5).confidence_interval(CONFIDENCE)
    return median, float(ci.low), float(ci.high)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--gate", default="sigmoid", help="our trainer's gate (TRL's baseline is sapo = sigmoid)")
    parser.add_argument("--max-cycles", type=int, default=40, help="cap on paired generation cycles")
    parser.add_argument("--max-seconds", type=float, default=75.0, help="cap on the paired timing's wall time")
    parser.add_argument("--worker", nargs=2, metavar=("WHICH", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_cycles < MIN_CYCLES:
        parser.error(f"--max-cycles must be >= {MIN_CYCLES}, got {args.max_cycles}")
    if args.max_seconds <= 0:
        parser.error(f"--max-seconds must be > 0, got {args.max_seconds}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.worker:
        peak_memory_worker(args.worker[0], args.gate, args.device, Path(args.worker[1]))
        return 0

    peak = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("ours", "trl"):
            out = Path(tmp) / f"{which}.json"
            subprocess.run([sys.executable, __file__, "--device", args.device, "--gate", args.gate,
                            "--worker", which, str(out)], check=True, stdout=subprocess.DEVNULL)
            peak[which] = json.loads(out.read_text())["peak_mib"]

    def enough(times, cycle, out_of_time):
        """The stopping rule: the interval is narrower than the margin, or a cap is reached."""
        ratios = cycle_ratios(times, cycle)
        if len(ratios) >= args.max_cycles or out_of_time:
            return True
        if len(ratios) < MIN_CYCLES:
            return False
        _, low, high = median_interval(ratios)
        return high - low < TARGET - 1

    kind = "peak CUDA memory allocated" if args.device == "cuda" else "peak RSS"
    print(f"{kind} (MiB, {MEMORY_STEPS} steps in a fresh process each): ours {peak['ours']:.0f}, "
          f"TRL {peak['trl']:.0f}", flush=True)
    mem_ratio = peak["ours"] / peak["trl"]
    mem_ok = mem_ratio <= TARGET
    print(f"bench_trainer: peak_memory_ratio={mem_ratio:.3f} (target <= {TARGET}) "
          + ("pass" if mem_ok else f"FAIL (over by {100 * (mem_ratio / TARGET - 1):.1f} %)"), flush=True)

    start = time.perf_counter()
    times, cycle = paired_step_times(args.gate, args.device, args.max_cycles, args.max_seconds, enough)
    seconds = time.perf_counter() - start
    ratios = cycle_ratios(times, cycle)
    print(f"tiny-cpu on {args.device}, metrics every step; ours = GatedGRPOTrainer(gate={args.gate}), "
          f"TRL = GRPOTrainer(loss_type=sapo); {len(ratios)} paired cycles of {cycle} steps after the warm-up one, "
          f"{seconds:.0f} s")
    print(f"cycle time ratios ours/TRL: {' '.join(f'{r:.3f}' for r in ratios)}")
    if len(ratios) < MIN_CYCLES:
        print(f"bench_trainer: step_time_ratio=nan (target <= {TARGET}) inconclusive (only {len(ratios)} cycles, "
              f"{MIN_CYCLES} needed: raise --max-seconds)")
        return EXIT_FAIL if not mem_ok else EXIT_INCONCLUSIVE
    median, low, high = median_interval(ratios)
    kept = {name: t[cycle:(len(ratios) + 1) * cycle] for name, t in times.items()}
    print("median step time (ms) by position in the cycle (generation, then reuse): " + ", ".join(
        f"{name} " + " / ".join(f"{1e3 * statistics.median(kept[name][k::cycle]):.1f}" for k in range(cycle))
        for name in ("ours", "trl")))
    if high <= TARGET:
        verdict, status = "pass", EXIT_PASS
    elif low > TARGET:
        verdict, status = f"FAIL (median over by {100 * (median / TARGET - 1):.1f} %)", EXIT_FAIL
    else:
        verdict, status = "inconclusive (the interval holds the target)", EXIT_INCONCLUSIVE
    print(f"bench_trainer: step_time_ratio={median:.3f} [{low:.3f}, {high:.3f}] ({100 * CONFIDENCE:.0f} % CI of the "
          f"median, {len(ratios)} cycles) (target <= {TARGET}) {verdict}")
    return EXIT_FAIL if not mem_ok else status

if __name__ == "__main__":
    sys.exit(main())
