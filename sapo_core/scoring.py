"""Scoring of sampled answers (method §6): grading, pass@k, maj@n, and mean@n with its bootstrap interval.

Each sample is graded by the training grader (`sapo_core.rewards.correctness_reward`), so training and
evaluation cannot drift apart. Per benchmark:

    mean@n   mean score over all samples: the pass@1 estimate, with a 95% percentile-bootstrap interval
             over instances (scipy.stats.bootstrap, seeded): problems that share an instance (a sample's
             "instance": the synthetic task's arithmetic) are resampled together, any other problem alone
    pass@k   unbiased pass@k for k = 1, 2, 4, ..., n:  mean over problems of 1 - C(n - c, k) / C(n, k),
             c = correct samples of the problem (Chen et al. 2021)
    maj@n    score of the majority answer (extracted answers in the grader's string normal form; a tie
             goes to the answer that appeared first)
    and the format rate, mean completion length (tokens), share cut at max_new_tokens, problems, samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from sapo_core.checks import check_int
from sapo_core.rewards import correctness_reward, extract_answer, format_reward, normalize_gold

__all__ = ["CONFIDENCE_LEVEL", "INTERVAL_METHOD", "N_RESAMPLES", "benchmark_metrics", "grade", "majority_vote",
           "mean_interval", "pass_at_k", "pass_at_k_values"]

CONFIDENCE_LEVEL = 0.95
N_RESAMPLES = 10_000
INTERVAL_METHOD = ("percentile bootstrap over instances (scipy.stats.bootstrap): problems that share an instance "
                   "are resampled together, any other problem alone")


def grade(samples: list[dict]) -> None:
    """Extracted answer, correctness (the training grader) and format of each sample, in place."""
    texts = [s["completion"] for s in samples]
    scores = correctness_reward(texts, answer=[s["gold"] for s in samples])
    formats = format_reward(texts)
    for s, text, score, fmt in zip(samples, texts, scores, formats):
        s.update(extracted_answer=extract_answer(text), score=score, format=fmt)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct out of n samples: 1 - C(n - c, k) / C(n, k)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        check_int(f"pass@k's {name}", value)
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"the number of correct samples must lie in [0, n={n}], got c={c}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_values(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks if ks[-1] == n else [*ks, n]


def majority_vote(answers: Sequence[str | None], scores: Sequence[float]) -> tuple[str | None, float]:
    """(majority answer, its score): answers compared in the grader's string normal form, samples without an
    answer do not vote, a tie goes to the answer that appeared first; (None, 0.0) when nobody answered."""
    keys = [None if a is None else normalize_gold(a) for a in answers]
    votes = Counter(k for k in keys if k)
    if not votes:
        return None, 0.0
    top = max(votes.values())
    winner = next(k for k in keys if k and votes[k] == top)  # first to appear among the most voted
    return winner, float(scores[keys.index(winner)])


def mean_interval(per_problem: Sequence[float], seed: int,
                  instances: Sequence[str] | None = None) -> list[float] | None:
    """95% percentile-bootstrap interval for the mean of the per-problem scores (None for < 2 instances).

    `instances` (one key per problem; None: each problem its own) groups problems that are one instance: the
    bootstrap then resamples instances with all their problems, and the statistic is the mean over the problems
    drawn. Problems of one instance succeed or fail together, so resampling them one by one would treat them as
    independent evidence and give too narrow an interval (about half as wide on the synthetic test split, LOG.md).
    """
    values = np.asarray(per_problem, dtype=float)
    if instances is not None and (isinstance(instances, (str, bytes)) or not isinstance(instances, Sequence)):
        raise TypeError(f"instances must be None or a sequence of one key per problem, got "
                        f"{type(instances).__name__} {instances!r:.60}")
    if instances is not None and len(instances) != len(values):
        raise ValueError(f"instances must give one key per problem ({len(values)}), got {len(instances)}")
    groups = None if instances is None else list(dict.fromkeys(instances))
    if len(values) < 2 or (groups is not None and len(groups) < 2):
        return None
    if np.all(values == values[0]):  # every resample has the same mean
        return [float(values[0]), float(values[0])]
    rng = np.random.default_rng(seed)
    if groups is None or len(groups) == len(values):  # every problem its own instance
        res = stats.bootstrap((values,), np.mean, confidence_level=CONFIDENCE_LEVEL, n_resamples=N_RESAMPLES,
                              method="percentile", rng=rng)
    else:
        index = {key: i for i, key in enumerate(groups)}
        members = np.array([index[key] for key in instances])
        sums = np.bincount(members, weights=values, minlength=len(groups))  # per instance: its problems' total
        counts = np.bincount(members, minlength=len(groups)).astype(float)  # and their number

        def pooled_mean(s, c, axis=-1):
            return s.sum(axis=axis) / c.sum(axis=axis)

        res = stats.bootstrap((sums, counts), pooled_mean, paired=True, vectorized=True,
                              confidence_level=CONFIDENCE_LEVEL, n_resamples=N_RESAMPLES, method="percentile",
                              rng=rng)
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def benchmark_metrics(samples: Sequence[dict], n: int, *, seed: int = 0) -> dict[str, Any]:
    """Metrics of one benchmark from its sample records (`n` per problem, in sample order)."""
    problems: dict[str, list[dict]] = {}
    for s in samples:
        problems.setdefault(s["problem_id"], []).append(s)
    wrong = {pid: len(rows) for pid, rows in problems.items() if len(rows) != n}
    if wrong:
        raise ValueError(f"every problem needs n={n} samples; {len(wrong)} do not, e.g. {next(iter(wrong.items()))}")
    # A gold the grader cannot parse scores None (cannot be judged): such problems are left out and counted.
    judged = {pid: rows for pid, rows in problems.items() if all(r["score"] is not None for r in rows)}
    scores = [[float(r["score"]) for r in rows] for rows in judged.values()]
    correct = [sum(s == 1.0 for s in row) for row in scores]
    per_problem = [sum(row) / n for row in scores]
    # records written before instances were recorded: each problem its own instance
    instances = [str(pid if rows[0].get("instance") is None else rows[0]["instance"]) for pid, rows in judged.items()]
    majority = [majority_vote([r["extracted_answer"] for r in rows], [r["score"] for r in rows])[1]
                for rows in judged.values()]
    lengths = [s["num_tokens"] for s in samples if s.get("num_tokens") is not None]
    mean = sum(per_problem) / len(per_problem) if per_problem else None
    return {
        "n": n,
        "n_problems": len(judged),
        "n_samples": len(judged) * n,
        "n_unjudged": len(problems) - len(judged),
        "mean@n": mean,
        "mean@n_ci95": mean_interval(per_problem, seed, instances),
        "n_instances": len(set(instances)),
        "pass@k": {str(k): sum(pass_at_k(n, c, k) for c in correct) / len(correct) if correct else None
                   for k in pass_at_k_values(n)},
        "maj@n": sum(majority) / len(majority) if majority else None,
        "format_rate": sum(s["format"] for s in samples) / len(samples) if samples else None,
        "mean_length": sum(lengths) / len(lengths) if lengths else None,
        "truncated_rate": sum(bool(s.get("truncated")) for s in samples) / len(samples) if samples else None,
    }
