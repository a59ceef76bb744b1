"""The paper's claims, by section, each judged on a batch by one verdict rule (method §5.1).

    from sapo_core import compare
    table = compare.claims(compare.load_batch("runs/demo/batch"))      # the paper's claims
    extra = compare.project_questions(compare.load_batch("runs/demo/batch"))  # questions the paper does not raise

A claim names a statistic (one number per run, `STATISTICS`), two sides of arms chosen by one rule each
(`SIDES`), the tau convention it is judged at, and the direction it predicts. The verdict rule (method §5.1):
for every pair (arm of the higher side, arm of the lower side) a one-sided exact Mann-Whitney test at
alpha = 0.05 in each direction; a pair "holds" when the higher side is significantly above, "does not hold" when
it is significantly below, "cannot be told apart at this spread" otherwise. The claim holds only if every pair
holds, does not hold only if every pair does not hold, and cannot be told apart otherwise. An arm with fewer
than `MIN_SEEDS` seeds makes the claim "too few seeds"; a side with no arm in the batch makes it "not measured".
A correlation claim uses the same rule on a one-sided permutation test of Spearman's rho.

This module is below `sapo_core.compare`: it works on `Run` records that compare builds from a batch directory.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import integrate, stats

from sapo_core import gates as G

__all__ = ["ALPHA", "MIN_SEEDS", "PAPER_TAUS", "VERDICTS", "Arm", "Run", "Claim", "CLAIMS", "QUESTIONS", "STATISTICS",
           "SIDES", "pair_verdict", "correlation_verdict", "combine", "false_positive_rate", "judge", "table",
           "collapsed", "steps_to", "mean_over", "reference_taus", "METRIC_KEYS", "GPU_BENCHMARKS"]

ALPHA = 0.05  # one-sided level in each direction (method §5.1)
MIN_SEEDS = 3  # fewer seeds in an arm: "too few seeds"
PAPER_TAUS = (10.0, 12.0)  # the paper's (tau_pos, tau_neg) for every smooth gate (v2, Table 2)
ERF_LOW, ERF_COLLAPSE = (5.0, 6.0), (1.0, 1.05)  # v2 §5.2: erf at tau = 5 (run as (5, 6)) and tau = 1
FORMAT_LEVEL = 0.9  # "format learned": the format reward's batch mean reaches this level (method §5.1)
COLLAPSE_FRACTION = 0.5  # collapse: the reward stays below this share of its earlier peak (method §5.1)

HOLDS, FAILS, UNCLEAR = "holds", "does not hold", "cannot be told apart at this spread"
TOO_FEW, NOT_MEASURED, GPU_SCALE = "too few seeds", "not measured", "needs GPU-scale data"
VERDICTS = (HOLDS, FAILS, UNCLEAR, TOO_FEW, NOT_MEASURED, GPU_SCALE)


@dataclass(frozen=True)
class Arm:
    """One arm of a batch: a gate at a tau convention and (tau_pos, tau_neg); clip has neither (method §2.5)."""

    gate: str
    convention: str | None
    tau_pos: float | None
    tau_neg: float | None
    tail: str | None = field(default=None, compare=False)  # the gate's g' tail (gates.Gate.tail); clip: None

    @property
    def label(self) -> str:
        """The arm's name in every table: gate, convention and temperatures (nothing is left out)."""
        if G.is_method(self.gate):  # clip, cispo, ...: no temperature (method §2.8)
            return self.gate
        taus = "/".join("?" if t is None else f"{t:g}" for t in (self.tau_pos, self.tau_neg))
        return f"{self.gate} ({self.convention or '?'}, tau {taus})"


@dataclass(frozen=True)
class Run:
    """One run of an arm: its seed, its logged metric rows (metrics.jsonl) and its evaluation (results.json)."""

    arm: Arm
    seed: int
    metrics: Sequence[dict]
    evaluation: dict


# ---------------------------------------------------------------------------------------------
# Per-run statistics (method §5.1)
# ---------------------------------------------------------------------------------------------

def _series(run: Run, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [m for m in run.metrics if m.get(key) is not None]
    return np.array([m["step"] for m in rows], dtype=float), np.array([m[key] for m in rows], dtype=float)


def mean_over(run: Run, key: str, part: str = "second") -> float:
    """Mean of metric `key` over the logged steps of the second ("second") or first ("first") half of training."""
    steps, values = _series(run, key)
    if not len(steps):
        return math.nan
    half = steps[-1] / 2
    chosen = values[steps > half] if part == "second" else values[steps <= half]
    return float(np.mean(chosen)) if len(chosen) else math.nan


def steps_to(run: Run, key: str, level: float) -> float:
    """The first logged step at which metric `key` reaches `level`; inf when it never does (ranked last)."""
    steps, values = _series(run, key)
    if not len(steps):
        return math.nan
    reached = steps[values >= level]
    return float(reached[0]) if len(reached) else math.inf


def _area(run: Run, key: str, part: str = "all") -> float:
    """Area under the curve of `key` over the steps (trapezoid rule), divided by the span: a time-averaged value."""
    steps, values = _series(run, key)
    if part == "first" and len(steps):
        keep = steps <= steps[-1] / 2
        steps, values = steps[keep], values[keep]
    if not len(steps):
        return math.nan
    if len(steps) == 1:
        return float(values[0])
    return float(integrate.trapezoid(values, steps) / (steps[-1] - steps[0]))


def collapsed(run: Run) -> float:
    """1.0 if the run collapsed, else 0.0: a non-finite logged loss, reward or entropy, or every reward of the last
    quarter of the logged steps below COLLAPSE_FRACTION of the peak reward before them (method §5.1)."""
    if any(not math.isfinite(m[k]) for m in run.metrics for k in ("loss", "reward", "entropy") if m.get(k) is not None):
        return 1.0
    _, reward = _series(run, "reward")
    if len(reward) < 4:
        return math.nan
    cut = len(reward) - len(reward) // 4
    peak = reward[:cut].max()
    return float(peak > 0 and bool(np.all(reward[cut:] < COLLAPSE_FRACTION * peak)))


def _accuracy(benchmark: str) -> Callable[[Run], float]:
    def statistic(run: Run) -> float:
        found = (run.evaluation.get("benchmarks") or {}).get(benchmark) or {}
        return math.nan if found.get("mean@n") is None else float(found["mean@n"])
    return statistic


# name -> (definition, function of a run). Every name is defined in method §5.1.
STATISTICS: dict[str, tuple[str, Callable[[Run], float]]] = {
    "format_steps": (f"first step at which rewards/format_reward/mean >= {FORMAT_LEVEL} (never: ranked last)",
                     lambda r: steps_to(r, "rewards/format_reward/mean", FORMAT_LEVEL)),
    "reward_auc_first_half": ("area under the reward curve over the first half of training / its span",
                              lambda r: _area(r, "reward", "first")),
    "reward_auc": ("area under the reward curve over training / its span", lambda r: _area(r, "reward")),
    "entropy": ("mean of entropy over the second half of training", lambda r: mean_over(r, "entropy")),
    "eur": ("mean of eur over the second half of training", lambda r: mean_over(r, "eur")),
    "gate_weight_mean": ("mean of gate_weight/mean over the second half", lambda r: mean_over(r, "gate_weight/mean")),
    "gate_weight_low_frac": ("mean of gate_weight/low_frac over the second half",
                             lambda r: mean_over(r, "gate_weight/low_frac")),
    "ratio_var": ("mean of ratio/var over the second half of training", lambda r: mean_over(r, "ratio/var")),
    "entropy_decay": ("mean entropy over the first half minus over the second half",
                      lambda r: mean_over(r, "entropy", "first") - mean_over(r, "entropy")),
    "collapse": (f"1 if the run collapsed (non-finite loss/reward/entropy, or the last quarter's rewards all below "
                 f"{COLLAPSE_FRACTION:g} x the earlier peak), else 0", collapsed),
    "accuracy": ("held-out synthetic mean@n", _accuracy("synthetic")),
    "gsm8k": ("GSM8K test mean@n", _accuracy("gsm8k")),
    "aime": ("AIME24+25 mean@n (aime)", _accuracy("aime")),
    "math500": ("MATH500 mean@n", _accuracy("math500")),
}
METRIC_KEYS = ("rewards/format_reward/mean", "reward", "entropy", "eur", "gate_weight/mean", "gate_weight/low_frac",
               "ratio/var", "loss")  # the logged names the statistics read (sapo_core.metrics)
GPU_BENCHMARKS = ("gsm8k", "aime", "math500")  # statistics only a 7B evaluation provides


# ---------------------------------------------------------------------------------------------
# The sides of a claim: one rule each, stated once (method §5.1)
# ---------------------------------------------------------------------------------------------

def _at(arm: Arm, taus: tuple | None) -> bool:
    return taus is not None and (arm.tau_pos, arm.tau_neg) == tuple(taus)


def reference_taus(arms: Sequence[Arm]) -> tuple[float, float] | None:
    """The batch's reference temperatures: the (tau_pos, tau_neg) run by the most smooth gates (first on a tie)."""
    counts: dict[tuple, set] = {}
    for arm in arms:
        if not G.is_method(arm.gate):
            counts.setdefault((arm.tau_pos, arm.tau_neg), set()).add(arm.gate)
    return max(counts, key=lambda t: len(counts[t])) if counts else None


# name -> (what it means, predicate of (arm, reference taus))
SIDES: dict[str, tuple[str, Callable[[Arm, tuple], bool]]] = {
    "clip": ("hard clipping (GRPO)", lambda a, ref: a.gate == "clip"),
    "smooth": ("every smooth gate (no trust-region method), at the reference temperatures",
               lambda a, ref: not G.is_method(a.gate) and _at(a, ref)),
    "polynomial": ("every gate whose g' decays polynomially (Gate.tail), at the reference temperatures",
                   lambda a, ref: a.tail == "polynomial" and _at(a, ref)),
    "gaussian": ("every gate whose g' decays like a Gaussian (Gate.tail), at the reference temperatures",
                 lambda a, ref: a.tail == "gaussian" and _at(a, ref)),
    "erf+arctan": ("erf and arctan (named by the paper), at the reference temperatures",
                   lambda a, ref: a.gate in ("erf", "arctan") and _at(a, ref)),
    "other arms": ("every other arm at the reference temperatures, clip included",
                   lambda a, ref: a.gate not in ("erf", "arctan") and (G.is_method(a.gate) or _at(a, ref))),
    "erf": ("erf at the reference temperatures", lambda a, ref: a.gate == "erf" and _at(a, ref)),
    "sigmoid": ("sigmoid at the reference temperatures", lambda a, ref: a.gate == "sigmoid" and _at(a, ref)),
    "erf paper": ("erf at the paper's (10, 12)", lambda a, ref: a.gate == "erf" and _at(a, PAPER_TAUS)),
    "erf low": ("erf at the paper's tau = 5, run as (5, 6)", lambda a, ref: a.gate == "erf" and _at(a, ERF_LOW)),
    "erf collapse": ("erf at the paper's tau = 1, run as (1, 1.05)",
                     lambda a, ref: a.gate == "erf" and _at(a, ERF_COLLAPSE)),
    "every smooth arm": ("every smooth gate (no trust-region method), at every temperature",
                         lambda a, ref: not G.is_method(a.gate)),
    "all arms": ("every arm at the reference temperatures, clip included",
                 lambda a, ref: G.is_method(a.gate) or _at(a, ref)),
    "erf at every tau": ("erf at every temperature of the batch", lambda a, ref: a.gate == "erf"),
}


@dataclass(frozen=True)
class Claim:
    """A claim: `higher` side's statistic above `lower` side's (pairs), or a correlation of sign `sign` between
    `x` and `statistic` over the runs of side `higher` (correlation). `convention`: where it is judged."""

    section: str
    text: str
    statistic: str | None  # None: the sentence names nothing measurable (verdict "not measured")
    higher: str
    lower: str | None = None
    convention: str = "equal"
    x: str | None = None  # correlation claims: "tau_pos" or a statistic name
    sign: int = 0
    tail_shape: bool = False  # about tail shape: judged at width_matched (its convention), shown at equal tau too

    def __post_init__(self):
        for name, value, allowed in (("statistic", self.statistic, [*STATISTICS, None]),
                                     ("higher", self.higher, SIDES), ("lower", self.lower, [*SIDES, None]),
                                     ("x", self.x, [*STATISTICS, "tau_pos", None]),
                                     ("convention", self.convention, ("equal", "width_matched"))):
            if value not in allowed:
                raise ValueError(f"claim {self.text!r}: unknown {name} {value!r}; allowed: "
                                 f"{', '.join(map(str, allowed))}")
        if self.statistic is not None and (self.lower is None) == (self.x is None):
            raise ValueError(f"claim {self.text!r}: give either a lower side (pairs) or x (a correlation)")
        if self.x is not None and self.sign not in (-1, 1):
            raise ValueError(f"claim {self.text!r}: a correlation claim needs sign -1 or 1, got {self.sign!r}")
        if self.tail_shape and self.convention != "width_matched":
            raise ValueError(f"claim {self.text!r}: a tail-shape claim is judged at width_matched tau")


# The paper's claims (PAPER_V2 "claims by section"; v1 §4, §5.2), paraphrased.
CLAIMS = (
    Claim("1, 2", "Hard clipping makes GRPO prone to entropy collapse; smooth gates do not: GRPO's entropy decays more",
          "entropy_decay", "clip", "smooth"),
    Claim("1, 2", "Smooth gates give more stable updates: GRPO collapses more often", "collapse", "clip", "smooth"),
    Claim("4 (v1, v2)", "Heavier (polynomial) tails widen the region of tokens that contribute (larger mean f')",
          "gate_weight_mean", "polynomial", "gaussian", convention="width_matched", tail_shape=True),
    Claim("4 (v1, v2)", "Heavier (polynomial) tails raise exploration (higher token entropy)",
          "entropy", "polynomial", "gaussian", convention="width_matched", tail_shape=True),
    Claim("4; 5.2 (v1)", "Gaussian attenuation gives more localised updates (larger share of tokens with f' < 0.5)",
          "gate_weight_low_frac", "gaussian", "polynomial", convention="width_matched", tail_shape=True),
    Claim("5.2", "Every smooth gate raises the reward faster early in training than GRPO",
          "reward_auc_first_half", "smooth", "clip"),
    Claim("5.2", "Every smooth gate learns the format faster than GRPO (the paper: about 4x; the steps are shown)",
          "format_steps", "clip", "smooth"),
    Claim("5.2", "erf and arctan give the best reward curves", "reward_auc", "erf+arctan", "other arms"),
    Claim("5.2", "Across gates, higher policy entropy goes with lower EUR (runs at the reference temperatures)",
          "eur", "all arms", x="entropy", sign=-1),
    Claim("5.2", "For erf, a higher temperature lowers EUR", "eur", "erf at every tau", x="tau_pos", sign=-1),
    Claim("5.2", "For erf, a lower temperature (tau = 5) raises entropy", "entropy", "erf low", "erf paper"),
    Claim("5.2", "For erf at tau = 1 training becomes unstable and collapses", "collapse", "erf collapse", "erf paper"),
    Claim("5.2", "(10, 12) is the best trade-off for every gate", None, "smooth"),
    Claim("5.2", "Even a high temperature prevents the entropy decay seen with GRPO", "entropy_decay",
          "clip", "every smooth arm"),
    Claim("5.2 / Table 1", "erf beats the sigmoid on GSM8K", "gsm8k", "erf", "sigmoid"),
    Claim("5.2 / Table 1", "erf has the largest AIME gain", "aime", "erf", "other arms"),
    Claim("5.2 / Table 1", "MATH500 remains hard: every new gate is below the sigmoid", "math500", "sigmoid",
          "smooth"),
)

# Questions this project asks that the paper does not raise (labelled as such in every table).
QUESTIONS = (
    Claim("project", "Smooth gates reach higher held-out accuracy than hard clipping", "accuracy", "smooth", "clip"),
    Claim("project", "Smooth gates keep entropy higher than hard clipping", "entropy", "smooth", "clip"),
    Claim("project", "Heavier tails give a larger variance of the importance ratios (v1 names the variance, not "
          "its direction)", "ratio_var", "polynomial", "gaussian", convention="width_matched", tail_shape=True),
)


# ---------------------------------------------------------------------------------------------
# The verdict rule (method §5.1)
# ---------------------------------------------------------------------------------------------

def width_matched_gates(gates: Sequence[str]) -> list[str]:
    """The gates among `gates` that a claim judged at width_matched tau compares (the tail-shape claims: their
    sides are tails, e.g. polynomial vs gaussian): the arms a batch must also run at width_matched tau."""
    tails = {side for c in CLAIMS if c.convention == "width_matched" for side in (c.higher, c.lower) if side in G.TAILS}
    return [g for g in gates if not G.is_method(g) and G.resolve_spec(g).tail in tails]


def pair_verdict(higher: Sequence[float], lower: Sequence[float], alpha: float = ALPHA) -> str:
    """One pair of arms: one-sided exact Mann-Whitney tests at `alpha` in each direction (method §5.1)."""
    higher, lower = [v for v in higher if not math.isnan(v)], [v for v in lower if not math.isnan(v)]
    if not higher or not lower:
        return NOT_MEASURED
    if min(len(higher), len(lower)) < MIN_SEEDS:
        return TOO_FEW
    if stats.mannwhitneyu(higher, lower, alternative="greater", method="exact").pvalue <= alpha:
        return HOLDS
    if stats.mannwhitneyu(higher, lower, alternative="less", method="exact").pvalue <= alpha:
        return FAILS
    return UNCLEAR


def correlation_verdict(x: Sequence[float], y: Sequence[float], sign: int, alpha: float = ALPHA,
                        seed: int = 0) -> tuple[str, float]:
    """Spearman's rho of (x, y) and the same rule: one-sided permutation tests at `alpha` in each direction
    (exact up to 7 runs, else 9,999 seeded permutations); returns the verdict and rho."""
    def rho(a, b, axis=-1):  # Spearman's rho: Pearson's r of the ranks
        return stats.pearsonr(stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis), axis=axis).statistic

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return NOT_MEASURED, math.nan
    observed = float(rho(x, y))
    tests = {s: stats.permutation_test((x, y), rho, permutation_type="pairings", vectorized=True, n_resamples=9999,
                                       alternative="greater" if s > 0 else "less", rng=seed).pvalue for s in (1, -1)}
    verdict = HOLDS if tests[sign] <= alpha else FAILS if tests[-sign] <= alpha else UNCLEAR
    return verdict, observed


def combine(verdicts: Sequence[str]) -> str:
    """The pair rule: holds only if every pair holds, does not hold only if every pair does not (method §5.1)."""
    if not verdicts or NOT_MEASURED in verdicts:
        return NOT_MEASURED
    if TOO_FEW in verdicts:
        return TOO_FEW
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if all(v == FAILS for v in verdicts):
        return FAILS
    return UNCLEAR


def false_positive_rate(n: int = 3, m: int = 3, alpha: float = ALPHA) -> float:
    """P(a pair "holds") when both arms' n and m values come from one continuous distribution, exactly: the rule
    applied to every one of the C(n + m, n) equally likely rankings (method §5.1; 3 vs 3 seeds: 1/20 = 0.05)."""
    ranks = range(n + m)
    outcomes = [pair_verdict(list(high), [r for r in ranks if r not in high], alpha) == HOLDS
                for high in combinations(ranks, n)]
    return sum(outcomes) / len(outcomes)


# ---------------------------------------------------------------------------------------------
# Judging the claims of a batch
# ---------------------------------------------------------------------------------------------

def _fmt(values: Sequence[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    return f"{statistics.fmean(values):.4g} [{min(values):.4g}, {max(values):.4g}] (n={len(values)})"


def _values(runs: Sequence[Run], statistic: str) -> dict[Arm, list[float]]:
    fn = STATISTICS[statistic][1]
    out: dict[Arm, list[float]] = {}
    for run in runs:
        out.setdefault(run.arm, []).append(fn(run))
    return out


def _side(values: dict[Arm, list[float]], side: str, ref, convention: str) -> list[Arm]:
    test = SIDES[side][1]
    return [a for a in values if test(a, ref) and (G.is_method(a.gate) or a.convention == convention)]


def judge(claim: Claim, runs: Sequence[Run], convention: str | None = None) -> dict:
    """One claim on a batch's runs at `convention` (default the claim's): verdict, arms and what was measured."""
    convention = convention or claim.convention
    row = {"verdict": NOT_MEASURED, "arms": "-", "measured": "-"}
    if claim.statistic is None:
        return {**row, "measured": "the sentence names nothing this batch measures"}
    values = _values(runs, claim.statistic)
    ref = reference_taus(list(values))
    if claim.statistic in GPU_BENCHMARKS and not any(not math.isnan(v) for vs in values.values() for v in vs):
        return {**row, "verdict": GPU_SCALE, "measured": f"no {claim.statistic} evaluation in this batch"}
    high = _side(values, claim.higher, ref, convention)
    if claim.x is not None:  # a correlation over the runs of one side
        x_values = {a: [a.tau_pos] * len(values[a]) for a in high} if claim.x == "tau_pos" else _values(runs, claim.x)
        row["arms"] = ", ".join(a.label for a in high) or "-"
        if len(high) < 2:
            return {**row, "measured": f"needs runs of at least two arms of '{claim.higher}'"}
        if min(len(values[a]) for a in high) < MIN_SEEDS:
            return {**row, "verdict": TOO_FEW}
        xs = [v for a in high for v in x_values[a]]
        ys = [v for a in high for v in values[a]]
        verdict, rho = correlation_verdict(xs, ys, claim.sign)
        return {**row, "verdict": verdict, "measured": f"Spearman rho({claim.x}, {claim.statistic}) = {rho:.3g} "
                                                       f"over {len(xs)} runs"}
    low = _side(values, claim.lower, ref, convention)
    pairs = [(h, lo) for h in high for lo in low if h != lo]
    row["arms"] = f"{', '.join(a.label for a in high) or '-'} vs {', '.join(a.label for a in low) or '-'}"
    if not pairs:
        need = " (needs width_matched arms)" if convention == "width_matched" and not any(
            a.convention == "width_matched" for a in values) else ""
        return {**row, "verdict": NOT_MEASURED + need}
    verdicts = [pair_verdict(values[h], values[lo]) for h, lo in pairs]
    measured = "; ".join(f"{h.label} {_fmt(values[h])} vs {lo.label} {_fmt(values[lo])}: {v}"
                         for (h, lo), v in zip(pairs, verdicts))
    return {**row, "verdict": combine(verdicts), "measured": measured}


def table(claims: Sequence[Claim], runs: Sequence[Run]) -> list[dict]:
    """Each claim's row: section, claim, statistic (method §5.1), arms, convention, verdict, measured; a tail-shape
    claim is judged at width_matched tau and also shown at equal tau (labelled, not its verdict)."""
    rows = []
    for claim in claims:
        judged = judge(claim, runs)
        shown = judge(claim, runs, "equal") if claim.tail_shape else None
        rows.append({"section": claim.section, "claim": claim.text,
                     "statistic": "-" if claim.statistic is None else
                     f"{claim.statistic}: {STATISTICS[claim.statistic][0]}",
                     "arms": judged["arms"], "convention": claim.convention, "verdict": judged["verdict"],
                     "measured": judged["measured"],
                     "at equal tau (shown, not the verdict)": "-" if shown is None else
                     f"{shown['verdict']}: {shown['measured']}"})
    return rows
