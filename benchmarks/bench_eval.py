"""Benchmark: the evaluation's hf backend against one `model.generate` call per prompt, same run, same settings.

Both sample n = 8 completions at temperature 0.7 (top_p 1, max_new_tokens 64, the synthetic benchmark's
budget) for each of 200 held-out synthetic prompts (configs/tiny-cpu.yaml's held-out set) from the embedded
tiny model, with the same `GenerationConfig` (`sapo_core.generation.sampling_config`): the backend
(`HFGenerator`: prompts sorted by length, left padded, 256 sequences per call on CPU, each prompt encoded once and
its keys and values read once per step for its n samples, sapo_core.prefix_attention) against a loop that calls
`model.generate(num_return_sequences=8)` on one prompt at a time.
Loop and backend alternate, `--repeats` times each, and the medians are compared, so that load from
elsewhere on the machine falls on both alike.

    python benchmarks/bench_eval.py [--prompts 200] [--n 8] [--repeats 3]

The last line is `bench_eval: speedup=<x> (target >= 4.0) pass|FAIL (short by <y> %)` (completions per second,
backend / loop); the exit status is 1 when the speedup misses the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from sapo_core.benchmarks import BENCHMARKS, load_benchmark  # noqa: E402
from sapo_core.data import SyntheticTask  # noqa: E402
from sapo_core.generation import HFGenerator, sampling_config  # noqa: E402
from sapo_core.tiny import base_model_path  # noqa: E402

TARGET = 4.0
SETTINGS = {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": BENCHMARKS["synthetic"].max_new_tokens}


@torch.no_grad()
def one_at_a_time(model, tokenizer, prompts, n: int, seed: int) -> int:
    """The baseline: one `model.generate` call per prompt; returns the number of completions."""
    config = sampling_config(model, tokenizer, n=n, **SETTINGS)
    torch.manual_seed(seed)
    count = 0
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        gen = model.generate(**enc, generation_config=config)
        count += len(tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return count


def batched(generator: HFGenerator, prompts, n: int, seed: int) -> int:
    """The evaluation backend; returns the number of completions."""
    out = generator.generate(prompts, n=n, seed=seed, progress=False, **SETTINGS)
    return sum(len(row) for row in out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200, help="held-out synthetic prompts")
    parser.add_argument("--n", type=int, default=8, help="completions per prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating")
    args = parser.parse_args()
    for name in ("prompts", "n", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    path = base_model_path()
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = load_benchmark("synthetic", synthetic=SyntheticTask(size=args.prompts))["prompt"]
    generator = HFGenerator(model, tokenizer)
    batched(generator, prompts[:8], args.n, seed=0)  # warm-up: first-call allocations
    one_at_a_time(model, tokenizer, prompts[:8], args.n, seed=0)

    rates: dict[str, list[float]] = {"loop": [], "backend": []}
    for r in range(args.repeats):
        for name in ("loop", "backend"):
            start = time.perf_counter()
            if name == "loop":
                count = one_at_a_time(model, tokenizer, prompts, args.n, seed=r)
            else:
                count = batched(generator, prompts, args.n, seed=r)
            seconds = time.perf_counter() - start
            rates[name].append(count / seconds)
            print(f"  run {r + 1}/{args.repeats} {name:8s}: {count} completions in {seconds:6.2f} s "
                  f"({count / seconds:7.1f} /s)", flush=True)
    loop, backend = statistics.median(rates["loop"]), statistics.median(rates["backend"])
    print(f"tiny model, {args.prompts} synthetic prompts x n={args.n}, T={SETTINGS['temperature']}, "
          f"max_new_tokens={SETTINGS['max_new_tokens']}, {torch.get_num_threads()} torch threads, "
          f"batch {generator.batch_size} sequences")
    print(f"completions per second (median): one prompt per generate {loop:.1f}, evaluation backend {backend:.1f}")
    speedup = backend / loop
    verdict = "pass" if speedup >= TARGET else f"FAIL (short by {100 * (1 - speedup / TARGET):.1f} %)"
    print(f"bench_eval: speedup={speedup:.2f} (target >= {TARGET}) {verdict}")
    return 0 if speedup >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
