"""Aggregate statistics of a batch's evaluation over seeds and problems (method §5.2; Agarwal et al. 2021).

    from sapo_core import aggregate, compare
    table = aggregate.aggregate_table(compare.load_batch("runs/demo/batch"), baseline="clip")

Per arm, the scores form a matrix S[seed, problem]: a problem's score is the mean of its n samples' scores in the
run's `eval/batch/samples.jsonl` (a problem with an ungradable sample is left out, as in its results.json). The
table gives per arm the mean and the interquartile mean (IQM: the mean of the middle 50% of all seed x problem
scores, `scipy.stats.trim_mean(.., 0.25)`) with 95% stratified bootstrap intervals, and the probability of
improvement over a baseline arm, P(X > Y) + 0.5 P(X = Y) over the seed pairs of each problem, averaged over
problems, with its interval. The bootstrap is Agarwal et al.'s stratified one: the problems are the strata and
within each problem the seeds are resampled with replacement, each problem independently (`scipy.stats.bootstrap`
with one sample per problem, percentile intervals).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sapo_core import compare
from sapo_core.batch import EVAL_DIR
from sapo_core.checks import check_choice, check_int, check_positive
from sapo_core.records import SAMPLES

__all__ = ["CONFIDENCE", "N_RESAMPLES", "problem_scores", "score_matrix", "iqm", "probability_of_improvement",
           "interval", "arm_statistics", "aggregate_table"]

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def problem_scores(run_dir: str | os.PathLike, benchmark: str = "synthetic") -> dict[str, float]:
    """Per problem of `benchmark`, the mean score of its samples in the run's evaluation (method §6)."""
    path = Path(run_dir) / EVAL_DIR / SAMPLES
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; the aggregates read each run's per-sample scores from it")
    by_problem: dict[str, list] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line) if line.strip() else {}
        if sample.get("benchmark") == benchmark:
            by_problem.setdefault(str(sample["problem_id"]), []).append(sample["score"])
    if not by_problem:
        raise ValueError(f"{path} holds no sample of benchmark {benchmark!r}")
    # a score None cannot be judged: its problem is left out, as in results.json (sapo_core.scoring)
    return {pid: float(np.mean(scores)) for pid, scores in by_problem.items() if None not in scores}


def score_matrix(data: compare.BatchData, group: str, benchmark: str = "synthetic") -> np.ndarray:
    """S[seed, problem] of one arm (rows in the batch's seed order, columns in sorted problem id order)."""
    runs = [r for r in data.runs if compare.group_label(data, r) == group]
    if not runs:
        raise ValueError(f"no arm {group!r} in {data.path}; arms: {', '.join(data.groups)}")
    per_seed = {r["run"]: problem_scores(data.path / r["run"], benchmark) for r in runs}
    problems = sorted(next(iter(per_seed.values())))
    for run, scores in per_seed.items():
        if sorted(scores) != problems:
            raise ValueError(f"{run} scored other {benchmark} problems than {runs[0]['run']}; the seeds of an arm "
                             "must be evaluated on the same problems")
    return np.array([[scores[p] for p in problems] for scores in per_seed.values()])


def iqm(scores, axis: int = -1):
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed from each end)."""
    return stats.trim_mean(scores, 0.25, axis=axis)


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + 0.5 P(X = Y): per problem over every (seed of x, seed of y) pair, averaged over problems.
    `x` and `y` are S[seed, problem] matrices over the same problems (Agarwal et al. 2021)."""
    x, y = _matrix("x", x), _matrix("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must score the same problems, got {x.shape[1]} and {y.shape[1]} columns")
    return float(_poi(x, y))


def _matrix(name: str, scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"{name} must be a non-empty S[seed, problem] matrix, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} holds non-finite scores")
    return scores


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x: (..., seeds, problems), y: (..., seeds', problems) -> (...)."""
    diff = x[..., :, None, :] - y[..., None, :, :]  # (..., seed of x, seed of y, problem)
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-3, -2, -1))


def interval(statistic, *matrices, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
             seed: int = 0) -> tuple[float, float]:
    """Stratified bootstrap percentile interval of `statistic(*matrices)` (each (..., seeds, problems)): within
    each problem the seeds of each matrix are resampled independently (scipy.stats.bootstrap, method §5.2)."""
    check_positive("confidence", confidence)
    if confidence >= 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    check_int("n_resamples", n_resamples, minimum=1)
    matrices = [_matrix(f"matrix {i}", m) for i, m in enumerate(matrices)]
    if any(m.shape[0] < 2 for m in matrices):
        raise ValueError("a bootstrap over seeds needs at least 2 seeds per arm, got "
                         f"{', '.join(str(m.shape[0]) for m in matrices)}")
    columns = [column for m in matrices for column in m.T]  # one sample per (matrix, problem): the strata
    sizes = np.cumsum([0] + [m.shape[1] for m in matrices])

    def resampled(*samples, axis=-1):
        return statistic(*(np.stack(samples[a:b], axis=-1) for a, b in zip(sizes[:-1], sizes[1:])))

    res = stats.bootstrap(columns, resampled, paired=False, vectorized=True, confidence_level=confidence,
                          n_resamples=n_resamples, method="percentile", rng=seed, batch=200)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean(scores: np.ndarray) -> np.ndarray:
    return np.mean(scores, axis=(-2, -1))


def _iqm(scores: np.ndarray) -> np.ndarray:
    return iqm(scores.reshape(*scores.shape[:-2], -1))


def arm_statistics(scores, baseline=None, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> dict:
    """Mean and IQM of an S[seed, problem] matrix with their intervals, and with `baseline` (another matrix) the
    probability of improvement over it with its interval; an interval is (nan, nan) when an arm has one seed."""
    scores = _matrix("scores", scores)
    matrices = [scores] if baseline is None else [scores, _matrix("baseline", baseline)]
    kw = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}

    def ci(statistic, *ms):
        return interval(statistic, *ms, **kw) if min(m.shape[0] for m in ms) >= 2 else (math.nan, math.nan)

    out = {"seeds": scores.shape[0], "problems": scores.shape[1], "mean": float(_mean(scores)),
           "mean_ci": ci(_mean, scores), "iqm": float(_iqm(scores)), "iqm_ci": ci(_iqm, scores)}
    if baseline is not None:
        out["p_improvement"] = probability_of_improvement(scores, baseline)
        out["p_improvement_ci"] = ci(_poi, *matrices)
    return out


def aggregate_table(data: compare.BatchData, baseline: str = "clip", benchmark: str = "synthetic", *,
                    confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per arm of the batch: seeds, problems, mean, IQM and the probability of improvement over the arm
    `baseline` (a group label, e.g. "clip"), each with its stratified bootstrap interval (method §5.2)."""
    check_choice("baseline", baseline, data.groups)
    base = score_matrix(data, baseline, benchmark)
    rows = []
    for group in data.groups:
        scores = score_matrix(data, group, benchmark)
        s = arm_statistics(scores, None if group == baseline else base, confidence=confidence,
                           n_resamples=n_resamples, seed=seed)
        rows.append({"arm": group, "seeds": s["seeds"], "problems": s["problems"], "mean": s["mean"],
                     "mean_low": s["mean_ci"][0], "mean_high": s["mean_ci"][1], "iqm": s["iqm"],
                     "iqm_low": s["iqm_ci"][0], "iqm_high": s["iqm_ci"][1],
                     f"P(> {baseline})": s.get("p_improvement", math.nan),
                     f"P(> {baseline}) low": s.get("p_improvement_ci", (math.nan,))[0],
                     f"P(> {baseline}) high": s.get("p_improvement_ci", (math.nan, math.nan))[1]})
    return pd.DataFrame(rows)
