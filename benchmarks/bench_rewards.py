"""Benchmark: `sapo_core.rewards` correctness reward against TRL's `accuracy_reward`, same completions, same run.

4,096 completions are built from the MATH-500 golds, 8 rollouts per problem as GRPO samples them
(method §3), about half right and half wrong, written as models write answers rather than as the gold is
written: a right answer is the gold's value in another form (3/4 as `\\dfrac{3}{4}`, `0.75`, `3/4` or
`\\frac{6}{8}`; 1000 as `1,000`, `1000.0` or `\\frac{2000}{2}`), a wrong one a value moved by 1..9 in the same
kinds of form, or another problem's gold where the gold is not a number. The answer sits in the <answer>
block inside `\\boxed{}` or `$...$`, sometimes with words around it (`The answer is \\boxed{18}.`,
`\\boxed{18} dollars`), which both graders can read (TRL parses the whole completion and needs a box or
`$`). TRL gets its documented input, conversational completions and `solution` strings, with the golds
inside `$...$` (math-verify only finds bare LaTeX such as `\\dfrac{14}{3}` or `(1,2)` there).

Both are warmed up alike: each grades the same pairs built from `WARMUP_ANSWERS`, which our workers grade
at start-up. The pool's start-up, paid once per training run, is timed and printed on its own line; the
verdict cache is cleared before the timed pass, so every distinct (answer, gold) pair of a batch is graded
(a repeat within a batch of 512, as a GRPO group gives, is graded once, as in training). The completions
are graded in batches of 512 (64 prompts x 8 rollouts), TRL and ours alternating batch by batch, so that
load from other processes on the machine falls on both alike.

    python benchmarks/bench_rewards.py            # data: env SAPO_DATA_DIR or ../shared/data

The last line is `bench_rewards: speedup=<x> (target >= 2.0) pass|FAIL`; the exit status is 1 on FAIL.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from trl.rewards import accuracy_reward  # noqa: E402  (TRL 1.16: completions as lists of messages, solution)

from sapo_core import data  # noqa: E402
from sapo_core.prompts import format_completion  # noqa: E402
from sapo_core.rewards import CorrectnessReward, Grader, normalize_gold  # noqa: E402
from sapo_core.rewards.worker import WARMUP_ANSWERS  # noqa: E402

TARGET = 2.0

_INT_RE = re.compile(r"-?\d+")
_DECIMAL_RE = re.compile(r"-?\d*\.\d+")
_FRAC_RE = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
# How the answer sits in the <answer> block; {units} only for numbers.
WRAPPERS = ("\\boxed{{{a}}}", "${a}$", "The answer is \\boxed{{{a}}}.", "\\boxed{{{a}}} {units}", "${a}$ {units}")
UNITS = ("dollars", "cm", "apples", "degrees", "units")


def data_dir() -> Path:
    """SAPO_DATA_DIR, else ../shared/data beside the clone."""
    env = os.environ.get("SAPO_DATA_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not (path / "math500" / "test.jsonl").is_file():
        sys.exit(f"no MATH-500 data under {path}: set SAPO_DATA_DIR")
    return path


def gold_value(gold: str) -> Fraction | None:
    """The gold as a rational number when it is an integer, a decimal or a plain fraction, else None."""
    g = normalize_gold(gold)
    if _INT_RE.fullmatch(g) or _DECIMAL_RE.fullmatch(g):
        return Fraction(Decimal(g))
    m = _FRAC_RE.fullmatch(g)
    if m and int(m.group(3)) != 0:
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    return None


def number_forms(x: Fraction) -> list[str]:
    """Ways a model writes the number x: separators, decimals, fractions, unreduced fractions."""
    if x.denominator == 1:
        n = x.numerator
        return [str(n), f"{n:,}" if abs(n) >= 1000 else f"{n}.0", f"\\frac{{{2 * n}}}{{2}}"]
    sign, p, q = ("-" if x < 0 else ""), abs(x.numerator), x.denominator
    forms = [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}\\dfrac{{{p}}}{{{q}}}", f"{sign}{p}/{q}",
             f"{sign}\\frac{{{2 * p}}}{{{2 * q}}}"]
    if all(f in (2, 5) for f in _prime_factors(q)):  # a terminating decimal: 3/4 = 0.75
        forms.append(str(Decimal(x.numerator) / Decimal(q)))
    return forms


def _prime_factors(n: int) -> set[int]:
    """The primes dividing n."""
    factors, f = set(), 2
    while f * f <= n:
        while n % f == 0:
            factors.add(f)
            n //= f
        f += 1
    return factors | ({n} if n > 1 else set())


def answer_text(gold: str, golds: list[str], right: bool, rng: random.Random) -> tuple[str, str]:
    """(the <answer> block's text, its kind): the gold's value in some form, or a wrong answer."""
    value = gold_value(gold)
    if value is None:  # an expression, interval, tuple, word...: the gold itself or another problem's
        final = gold if right else rng.choice([g for g in golds if normalize_gold(g) != normalize_gold(gold)])
        return rng.choice(WRAPPERS[:3]).format(a=final), "other"
    if not right:
        value += rng.choice([-1, 1]) * rng.randint(1, 9)
    final = rng.choice(number_forms(value))
    return rng.choice(WRAPPERS).format(a=final, units=rng.choice(UNITS)), "number"


def build(golds: list[str], n: int, seed: int, group: int) -> tuple[list[str], list[str], list[bool], Counter]:
    """n completions (text) in groups of `group` per problem as GRPO samples them, their golds, rightness."""
    rng = random.Random(seed)
    texts, answers, right, kinds = [], [], [], Counter()
    for k in range(n):
        gold = golds[(k // group) % len(golds)]
        is_right = rng.random() < 0.5
        block, kind = answer_text(gold, golds, is_right, rng)
        kinds[kind] += 1
        reasoning = f"Attempt {k}: set up the problem, simplify step by step, and check the result."
        texts.append(format_completion(reasoning, block))
        answers.append(gold)
        right.append(is_right)
    return texts, answers, right, kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="number of completions")
    parser.add_argument("--batch", type=int, default=512, help="completions per reward call")
    parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (method §3: 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    golds = data.math500(data_dir())["answer"]
    texts, answers, right, kinds = build(golds, args.n, args.seed, args.group)
    conversational = [[{"role": "assistant", "content": t}] for t in texts]
    trl_solutions = [f"${g}$" for g in answers]
    grader = Grader()
    ours = CorrectnessReward(grader)

    start = time.perf_counter()
    grader.grade(["\\frac{1}{2}"], ["0.5"])  # starts the worker pool (which warms itself up)
    startup = time.perf_counter() - start
    warm = WARMUP_ANSWERS  # the same pairs the workers graded at start-up
    warm_pairs = [(warm[(k + j) % len(warm)], gold) for k, gold in enumerate(warm) for j in (0, 1, 7)]
    accuracy_reward([[{"role": "assistant", "content": format_completion("w", f"\\boxed{{{a}}}")}]
                     for a, _ in warm_pairs], [f"${g}$" for _, g in warm_pairs])
    grader.clear_verdicts()  # the timed pass starts with no verdict known

    trl_scores, our_scores, trl_s, our_s = [], [], 0.0, 0.0
    for lo in range(0, args.n, args.batch):
        batch = slice(lo, lo + args.batch)
        start = time.perf_counter()
        trl_scores += accuracy_reward(conversational[batch], trl_solutions[batch])
        trl_s += time.perf_counter() - start
        start = time.perf_counter()
        our_scores += ours(conversational[batch], answer=answers[batch])
        our_s += time.perf_counter() - start

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"completions: {args.n} = {args.n // args.group} MATH-500 problems x {args.group} rollouts, "
          f"{sum(right)} built right; answers: {kinds['number']} numbers in varied forms, {kinds['other']} other "
          f"golds; batches of {args.batch}; cores: {cores}, workers: {grader.num_workers}")
    print(f"pool start-up (once per run, not in the timings below): {startup:.2f} s")
    print(f"trl accuracy_reward     : {trl_s:7.2f} s  ({1e3 * trl_s / args.n:.2f} ms/item), "
          f"None: {sum(s is None for s in trl_scores)}")
    print(f"sapo correctness_reward : {our_s:7.2f} s  ({1e3 * our_s / args.n:.2f} ms/item), "
          f"None: {sum(s is None for s in our_scores)}")
    for name, scores in (("trl", trl_scores), ("sapo", our_scores)):
        matches = sum(s == float(r) for s, r in zip(scores, right))
        print(f"{name:4} matches how the completion was built: {matches}/{args.n} = {matches / args.n:.4f}")
    disagreements = [(t, a, s1, s2) for t, a, s1, s2 in zip(texts, answers, trl_scores, our_scores) if s1 != s2]
    print(f"agreement with trl: {args.n - len(disagreements)}/{args.n}")
    for text, gold, t, o in disagreements[:8]:
        block = text.split("<answer>")[-1].split("</answer>")[0].strip()
        print(f"  disagree: answer={block!r:40.40} gold={gold!r:30.30} trl={t} ours={o}")
    print(f"grader stats: {grader.stats.as_dict()}")
    grader.close()
    speedup = trl_s / our_s
    passed = speedup >= TARGET
    if not passed:
        print(f"speedup {speedup:.2f} misses the target {TARGET} by {TARGET - speedup:.2f} "
              f"({100 * (TARGET - speedup) / TARGET:.0f}% short)")
    print(f"bench_rewards: speedup={speedup:.2f} (target >= {TARGET}) {'pass' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
