"""Benchmark: `sapo_core.rewards.correctness_reward` against TRL's `accuracy_reward`, same run.

4,096 completions are built from the MATH-500 golds, 8 rollouts per problem as GRPO samples them
(method §3), about half right and half wrong (numbers moved by 1..9, else another problem's gold).
The final answer sits in `\\boxed{}` inside the <answer> block, which both graders can read (TRL
parses the whole completion with `try_extract_without_anchor=False`, so it needs a box or `$`).
TRL gets its documented input, conversational completions and `solution` strings, with the golds
inside `$...$` (math-verify only finds bare LaTeX such as `\\dfrac{14}{3}` or `(1,2)` there).

Both are warmed up alike first: each grades the same pairs built from `WARMUP_ANSWERS`, which our
workers grade at start-up (the LaTeX parser and sympy are much faster once they have seen the
common forms); the pool's start-up time is printed separately, it is paid once per training run.
The completions are graded in batches of 512 (64 prompts x 8 rollouts), TRL and ours alternating
batch by batch, so that load from other processes on the machine falls on both alike.

    python benchmarks/bench_rewards.py            # data: env SAPO_DATA_DIR or ../shared/data

The last line is `bench_rewards: speedup=<x> (target >= 2.0)`.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sapo_core.prompts import format_completion  # noqa: E402
from sapo_core.rewards import CorrectnessReward, default_grader  # noqa: E402
from sapo_core.rewards.worker import WARMUP_ANSWERS  # noqa: E402

TARGET = 2.0


def data_dir() -> Path:
    """SAPO_DATA_DIR, else ../shared/data beside the clone."""
    env = os.environ.get("SAPO_DATA_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not (path / "math500" / "test.jsonl").is_file():
        sys.exit(f"no MATH-500 data under {path}: set SAPO_DATA_DIR")
    return path


def wrong_answer(gold: str, golds: list[str], rng: random.Random) -> str:
    """A wrong answer: a number moved by 1..9, else another problem's (different) gold."""
    try:
        return str(Decimal(gold.replace(",", "")) + rng.randint(1, 9))
    except InvalidOperation:
        while True:
            other = rng.choice(golds)
            if other != gold:
                return other


def build(golds: list[str], n: int, seed: int, group: int) -> tuple[list[str], list[str], list[bool]]:
    """n completions (text) in groups of `group` per problem as GRPO samples them, their golds, rightness."""
    rng = random.Random(seed)
    texts, answers, right = [], [], []
    for k in range(n):
        gold = golds[(k // group) % len(golds)]
        is_right = rng.random() < 0.5
        final = gold if is_right else wrong_answer(gold, golds, rng)
        reasoning = f"Attempt {k}: set up the problem, simplify step by step, and check the result."
        texts.append(format_completion(reasoning, f"\\boxed{{{final}}}"))
        answers.append(gold)
        right.append(is_right)
    return texts, answers, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="number of completions")
    parser.add_argument("--batch", type=int, default=512, help="completions per reward call")
    parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (method §3: 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # Imported here, not above: the grading workers import this script (Python's spawn start method).
    from trl.rewards import accuracy_reward  # TRL 1.16: (completions: list[list[dict]], solution: list[str])

    from sapo_core import data

    golds = data.math500(data_dir())["answer"]
    texts, answers, right = build(golds, args.n, args.seed, args.group)
    conversational = [[{"role": "assistant", "content": t}] for t in texts]
    trl_solutions = [f"${g}$" for g in answers]
    ours = CorrectnessReward(default_grader())

    start = time.perf_counter()
    ours(conversational[:8], answer=answers[:8])  # starts the worker pool (which warms itself up)
    startup = time.perf_counter() - start
    warm = WARMUP_ANSWERS  # the same pairs the workers graded at start-up
    warm_pairs = [(warm[(k + j) % len(warm)], gold) for k, gold in enumerate(warm) for j in (0, 1, 7)]
    accuracy_reward([[{"role": "assistant", "content": format_completion("w", f"\\boxed{{{a}}}")}]
                     for a, _ in warm_pairs], [f"${g}$" for _, g in warm_pairs])
    accuracy_reward(conversational[:8], trl_solutions[:8])

    trl_scores, our_scores, trl_s, our_s = [], [], 0.0, 0.0
    for lo in range(0, args.n, args.batch):
        batch = slice(lo, lo + args.batch)
        start = time.perf_counter()
        trl_scores += accuracy_reward(conversational[batch], trl_solutions[batch])
        trl_s += time.perf_counter() - start
        start = time.perf_counter()
        our_scores += ours(conversational[batch], answer=answers[batch])
        our_s += time.perf_counter() - start

    agree = sum(a == b for a, b in zip(trl_scores, our_scores))
    ours_vs_built = sum(s == float(r) for s, r in zip(our_scores, right))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"completions: {args.n} = {args.n // args.group} MATH-500 problems x {args.group} rollouts, "
          f"{sum(right)} built right, batches of {args.batch}; cores: {cores}, "
          f"workers: {default_grader().num_workers}")
    print(f"trl accuracy_reward     : {trl_s:7.2f} s  ({1e3 * trl_s / args.n:.2f} ms/item), "
          f"None: {sum(s is None for s in trl_scores)}")
    print(f"sapo correctness_reward : {our_s:7.2f} s  ({1e3 * our_s / args.n:.2f} ms/item), "
          f"None: {sum(s is None for s in our_scores)}; pool start-up (once): {startup:.2f} s")
    print(f"agreement with trl: {agree}/{args.n} = {agree / args.n:.4f}; "
          f"ours matches how the completion was built: {ours_vs_built}/{args.n}")
    disagreements = [(a, t, o) for a, t, o in zip(answers, trl_scores, our_scores) if t != o]
    for gold, t, o in disagreements[:8]:
        print(f"  disagree: gold={gold!r:40} trl={t} ours={o}")
    print(f"grader stats: {default_grader().stats.as_dict()}")
    print(f"bench_rewards: speedup={trl_s / our_s:.2f} (target >= {TARGET})")


if __name__ == "__main__":
    main()
