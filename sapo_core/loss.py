"""The SAPO / GRPO policy loss with pluggable gates (SPEC §1, §2) and its ratio metrics (SPEC §4).

For a micro-batch of B completions (G in SPEC §1) with per-token log-probabilities `logps` under
pi_theta and `old_logps` under pi_old, advantages A_i and a 0/1 completion mask m_{i,t}, the loss is

    loss = -J,   J = sum_i sum_t m_{i,t} A_i f_i(r_{i,t}) / D_i              SPEC §1 (J_SAPO, J_GRPO)

    r_{i,t} = exp(clamp(log pi_theta - log pi_old, -c, c))                  level="token"
    r_{i,t} = s_i = exp(clamp(mean_t m (log pi_theta - log pi_old), -c, c)) level="sequence" (GSPO)
    f_i(x) = 1 + g(tau_i (x - 1)) / tau_i,  tau_i = tau_pos if A_i > 0 else tau_neg   SPEC §2
    f_i(x) = min(x, 1 + eps_high) if A_i > 0 else max(x, 1 - eps_low)       gate="clip": GRPO's
             min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) = A f(r)

with the aggregation's denominator D_i (every denominator clamped to >= 1 token, as in TRL 1.16.0):
    "seq_mean_token_mean"      D_i = B * |o_i|          SPEC §1's 1/G sum_i 1/|o_i| sum_t; TRL "sapo", "grpo"
    "token_mean"               D_i = sum_j |o_j|        DAPO; TRL "dapo" ("bnpo") on one micro-batch
    "seq_mean_token_sum_norm"  D_i = B * max_completion_length      Dr. GRPO; TRL "dr_grpo"

The value and gradient are those of SPEC §2's exact-value, exact-gradient form

    loss = -sum_{i,t} m A [ sg(f(r)) + sg(g'(tau (r - 1))) (r - sg(r)) ] / D_i      (sg = stop-gradient)
    d loss / d log pi_theta(o_{i,t}) = -m_{i,t} A_i g'(tau_i (r_{i,t} - 1)) r_{i,t} / D_i

so the gradient needs only the gate's closed-form g' (g may be integrated numerically; it gives the
value). The gradient is 0 where the clamp acts, |log r| >= c. Hard clipping's f' is 1 for
A > 0 and r <= 1 + eps_high, for A < 0 and r >= 1 - eps_low, else 0: the gradient of TRL's
min/clamp expression, boundaries included. At level="sequence" the gradient flows through the mean
of the log-ratios (GSPO): d s_i / d logp_{i,t} = s_i / |o_i|, and the |o_i| tokens sharing s_i sum
to the same per-token formula with r replaced by s_i.

Three stages, all without autograd: `gate_terms` (f, f' per token) -> `objective_row_sums` (the
per-token objective A f summed over each row) -> `aggregate_rows` (divide by D_i, sum). The scalar
returned carries the gradient above through one autograd node, so a step costs no more than TRL's
own SAPO expression (`.venv/bin/python benchmarks/bench_loss.py`).

Conventions:
  * sigmoid gate: gradients equal TRL's loss_type="sapo"; the value differs from TRL's by the
    constant SPEC §2 adds to f: loss_ours - loss_trl = -agg[A (1 - 2/tau)]. gate="clip" equals TRL's
    "grpo" in value and gradient. No gradient-accumulation normaliser: the trainer divides.
  * A == 0: runs at tau_neg (as TRL), contributes neither value nor gradient, counts in the overall
    metrics and in neither the pos (A > 0) nor the neg (A < 0) group.
  * The mask is 0/1 (bool, integer or float). Masked positions may hold anything (-inf, nan): the
    log-ratio is made finite (nan_to_num, clamp) before any other arithmetic, after which the mask
    is applied as an exact 0/1 factor (x * 0 == 0), ~10x cheaper on CPU than torch.where. Masked
    tokens get exactly zero gradient.
  * Half-precision inputs are computed in float32 (gradients returned in the input dtype).
  * token_weights (optional, finite, (B, T) or (B, 1), no gradient) multiply each token's objective
    as TRL's vLLM importance-sampling correction does (grpo_trainer.py:3146-3147); the denominators
    D_i and the metrics still count tokens by the mask alone.
  * Metrics (no gradient; only when compute_metrics=True, since they cost a device sync) are Python
    floats named in METRIC_KEYS, over unmasked tokens, for all tokens and again for A > 0 ("pos/")
    and A < 0 ("neg/"): tokens/count; ratio/{mean, std, var, min, max, p01, p99} (population std
    and var; quantiles interpolated linearly as torch.quantile); ratio/outside_clip_frac (r < 1 -
    eps_low or r > 1 + eps_high); gate_weight/mean and gate_weight/low_frac (f' < 0.5), f' being
    g'(tau (r - 1)), or sapo_core.gates.clip_weight for clip. A group without tokens has count 0
    and nan statistics (TRL's logger skips nan when averaging). At level="sequence" every token
    counts with its sequence's ratio. `metric_tokens` returns the tokens behind these statistics
    (MetricTokens: ratio, gate weight, sign of A) so that a trainer can pool the micro-batches and
    processes of a step and take the exact statistics of the union with `token_metrics`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import torch

from sapo_core.gates import Gate, available_gates, clip_weight, get_gate

__all__ = [
    "AGGREGATIONS",
    "CLIP",
    "LEVELS",
    "METRIC_KEYS",
    "GateTerms",
    "MetricTokens",
    "aggregate_rows",
    "aggregation_denominators",
    "gate_terms",
    "importance_ratios",
    "masked_aggregate",
    "metric_tokens",
    "objective_row_sums",
    "policy_loss",
    "token_metrics",
]

CLIP = "clip"
LEVELS = ("token", "sequence")
AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")

_GROUPS = ("", "pos/", "neg/")  # all unmasked tokens, A > 0, A < 0
_RATIO_STATS = ("mean", "std", "var", "min", "max", "p01", "p99", "outside_clip_frac")
_WEIGHT_STATS = ("mean", "low_frac")
_STAT_KEYS = (("tokens/{}count",) + tuple("ratio/{}" + s for s in _RATIO_STATS)
              + tuple("gate_weight/{}" + s for s in _WEIGHT_STATS))
METRIC_KEYS: tuple[str, ...] = tuple(k.format(g) for g in _GROUPS for k in _STAT_KEYS)
_LOG2_E = 1.0 / math.log(2.0)
_LOW_WEIGHT = 0.5  # SPEC §4: share of tokens with g' < 0.5


# ---------------------------------------------------------------------------------------------
# Ratios. Masks are used as exact 0/1 weights: every per-token quantity is made finite first
# (a masked position may hold -inf or nan), after which x * 0 = 0 exactly. This is ~10x cheaper on
# CPU than torch.where, whose bool path is not vectorised.
# ---------------------------------------------------------------------------------------------

def _indicator(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1.0 where a == b else 0.0, in a's dtype (a float `out=` is ~4x faster than a bool result on CPU)."""
    return torch.eq(a, b, out=torch.empty_like(a))


def _as(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in `dtype`, without a dispatch when it already is."""
    return x if x.dtype == dtype else x.to(dtype)


def _clamped_ratio(logps, old_logps, weights, counts, level, log_ratio_clamp):
    """(r, live): the ratio the gate sees, (B, T) or (B, 1), and the (B, T) 0/1 factor letting d r / d logp through."""
    # Garbage at masked positions (-inf - -inf = nan, +-inf) becomes finite before anything else.
    log_ratio = torch.sub(_as(logps, weights.dtype), _as(old_logps, weights.dtype)).nan_to_num_(nan=0.0)
    if level == "sequence":
        # GSPO: log s_i = mean_t log r_{i,t} over unmasked tokens (TRL 1.16.0 grpo_trainer.py:3087)
        log_ratio = (torch.linalg.vecdot(log_ratio, weights).unsqueeze(1) / counts.clamp(min=1.0)).nan_to_num_(nan=0.0)
    # The clamp's gradient, zero on masked tokens: weights where |log r| < c, else 0. hardtanh_backward
    # is exactly that product, in one kernel.
    live = torch.ops.aten.hardtanh_backward(weights, log_ratio, -log_ratio_clamp, log_ratio_clamp)
    ratio = log_ratio.clamp_(-log_ratio_clamp, log_ratio_clamp)
    if ratio.dtype == torch.float64:
        return ratio.exp_(), live
    return ratio.mul_(_LOG2_E).exp2_(), live  # exp(x) = 2^(x log2 e): 2x faster than float32 exp on CPU


@torch.no_grad()
def importance_ratios(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, *,
                      level: str = "token", log_ratio_clamp: float = 20.0) -> torch.Tensor:
    """The (B, T) ratios policy_loss gates (sequence level: s_i on every token; 1 where masked)."""
    _check_choice("level", level, LEVELS)
    _check_positive("log_ratio_clamp", log_ratio_clamp)
    weights = mask.to(torch.promote_types(logps.dtype, torch.float32))
    ratio, _ = _clamped_ratio(logps, old_logps, weights, weights.sum(-1, keepdim=True), level, log_ratio_clamp)
    return torch.where(mask.bool(), ratio, 1.0)


# ---------------------------------------------------------------------------------------------
# Stage 1: the gate. Stage 2: the per-token objective. Stage 3: the aggregation.
# ---------------------------------------------------------------------------------------------

class GateTerms(NamedTuple):
    """A gate at every token: f(r) = 1 + base / tau (smooth gate) or f(r) = base (clip: tau None); f'(r) = weight."""

    base: torch.Tensor
    weight: torch.Tensor
    tau: torch.Tensor | None

    @property
    def value(self) -> torch.Tensor:
        """f(r) per token."""
        return self.base if self.tau is None else 1.0 + self.base / self.tau


def gate_terms(gate: Gate | str, ratio: torch.Tensor, advantages: torch.Tensor, tau: torch.Tensor,
               epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> GateTerms:
    """Stage 1: f and f' at every ratio, for a smooth gate at temperature tau or "clip" by the sign of A (B, 1)."""
    if gate == CLIP:
        # SPEC §1: min(r A, clip(r, 1-eps_low, 1+eps_high) A) = A f(r) with f(r) = min(r, 1+eps_high) if
        # A > 0 else max(r, 1-eps_low); f' = 1 where f(r) = r (TRL's autograd, boundaries included), else 0.
        positive = advantages > 0
        upper = torch.full_like(advantages, math.inf).masked_fill_(positive, 1.0 + epsilon_high)
        lower = torch.full_like(advantages, 1.0 - epsilon_low).masked_fill_(positive, -math.inf)
        clipped = ratio.clamp(lower, upper)
        return GateTerms(clipped, _indicator(clipped, ratio), None)
    gate = get_gate(gate)
    z = (ratio - 1.0).mul_(tau)                   # SPEC §2: z = tau (x - 1)
    # SPEC §2: f_tau(x) = 1 + g(tau (x - 1)) / tau,  f_tau'(x) = g'(tau (x - 1))
    return GateTerms(gate.g(z), gate.g_prime(z), tau)


def objective_row_sums(terms: GateTerms, advantages: torch.Tensor, weights: torch.Tensor,
                       counts: torch.Tensor) -> torch.Tensor:
    """Stage 2: sum_t m_{i,t} A_i f(r_{i,t}), the per-token objective summed over each row's tokens, (B, 1)."""
    if terms.base.shape[-1] == 1:   # level="sequence": one value per row
        sums = counts * terms.base
    else:
        sums = torch.linalg.vecdot(terms.base, weights).unsqueeze(1)
    if terms.tau is not None:       # SPEC §2: sum_t (1 + g(z_t) / tau) = |o_i| + sum_t g(z_t) / tau
        sums = counts + sums / terms.tau
    return advantages * sums


def aggregation_denominators(counts: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                             max_completion_length: int | None = None) -> torch.Tensor | float:
    """D_i: each unmasked token of row i enters the aggregate divided by D_i ((B, 1), scalar tensor or float)."""
    if aggregation == "seq_mean_token_mean":       # SPEC §1: 1/G sum_i 1/|o_i| sum_t (TRL sapo, grpo)
        return counts.clamp(min=1.0) * counts.shape[0]
    if aggregation == "token_mean":                # DAPO: sum over all tokens / number of tokens
        return counts.sum().clamp(min=1.0)
    if aggregation == "seq_mean_token_sum_norm":   # Dr. GRPO: sum over all tokens / (B * max_completion_length)
        _check_length(max_completion_length)
        return float(counts.shape[0] * max_completion_length)
    _check_choice("aggregation", aggregation, AGGREGATIONS)


def aggregate_rows(row_sums: torch.Tensor, denominators: torch.Tensor | float) -> torch.Tensor:
    """Stage 3: the scalar sum_i row_sums_i / D_i (D_i from `aggregation_denominators`)."""
    # TRL 1.16.0 grpo_trainer.py:3154 (grpo, sapo), :3159 (bnpo; dapo's :3173 divides by the token
    # count of the generation batch, the same on one micro-batch), :3164 (dr_grpo).
    return (row_sums / denominators).sum()


def masked_aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                     max_completion_length: int | None = None) -> torch.Tensor:
    """Aggregate a (B, T) or (B, 1) per-token quantity over the unmasked tokens of a (B, T) mask (differentiable)."""
    keep = mask if mask.dtype == torch.bool else mask != 0
    row_sums = torch.where(keep, per_token, 0.0).sum(-1, keepdim=True)  # masked entries may hold anything
    counts = keep.sum(-1, keepdim=True).to(row_sums.dtype)
    return aggregate_rows(row_sums, aggregation_denominators(counts, aggregation, max_completion_length))


class _ExactSurrogate(torch.autograd.Function):
    """A precomputed loss whose gradient is `coef` for logps and -coef for old_logps (SPEC §2's sg form).

    First order only: `coef` is a constant to autograd (no double backward)."""

    @staticmethod
    def forward(ctx, loss, coef, logps, old_logps):
        ctx.save_for_backward(coef)
        ctx.dtypes = (logps.dtype, old_logps.dtype)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output):
        (coef,) = ctx.saved_tensors
        grad = coef * grad_output
        grad_logps = grad.to(ctx.dtypes[0]) if ctx.needs_input_grad[2] else None
        grad_old = -grad.to(ctx.dtypes[1]) if ctx.needs_input_grad[3] else None
        return None, None, grad_logps, grad_old


# ---------------------------------------------------------------------------------------------
# The loss.
# ---------------------------------------------------------------------------------------------

def _per_token(logps, old_logps, advantages, mask, dtype, tau_pos, tau_neg, level, log_ratio_clamp):
    """(weights, counts, adv, tau, ratio, live): the 0/1 mask, |o_i| (B, 1), A (B, 1), the temperature per
    row (SPEC §1: tau_pos iff A > 0), and the clamped ratio with its gradient factor (see _clamped_ratio)."""
    weights = _as(mask, dtype)
    counts = weights.sum(-1, keepdim=True)
    adv = _as(advantages, dtype).unsqueeze(1)
    tau = torch.full_like(adv, tau_neg).masked_fill_(adv > 0, tau_pos)
    ratio, live = _clamped_ratio(logps, old_logps, weights, counts, level, log_ratio_clamp)
    return weights, counts, adv, tau, ratio, live


def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                gate: str | Gate = "sigmoid", tau_pos: float = 1.0, tau_neg: float = 1.05,
                epsilon_low: float = 0.2, epsilon_high: float = 0.2, level: str = "token",
                aggregation: str = "seq_mean_token_mean", log_ratio_clamp: float = 20.0,
                max_completion_length: int | None = None, compute_metrics: bool = True,
                token_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The negated gated policy objective of a micro-batch (scalar, exact gradient) and its metrics."""
    gate = _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                       level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics, token_weights)
    needs_grad = torch.is_grad_enabled() and (logps.requires_grad or old_logps.requires_grad)
    dtype = torch.promote_types(logps.dtype, torch.float32)
    with torch.no_grad():
        weights, counts, adv, tau, ratio, live = _per_token(logps, old_logps, advantages, mask, dtype, tau_pos,
                                                            tau_neg, level, log_ratio_clamp)
        objective_weights, weight_sums = weights, counts
        if token_weights is not None:  # constant per-token factors (TRL grpo_trainer.py:3146-3147), counts unchanged
            objective_weights = weights * _as(token_weights, dtype)
            weight_sums = objective_weights.sum(-1, keepdim=True)
        terms = gate_terms(gate, ratio, adv, tau, epsilon_low, epsilon_high)                  # stage 1
        rows = objective_row_sums(terms, adv, objective_weights, weight_sums)                 # stage 2
        denominators = aggregation_denominators(counts, aggregation, max_completion_length)
        loss = aggregate_rows(rows, denominators).neg_()                                      # stage 3
        metrics = {}
        if compute_metrics:
            metrics = token_metrics(_metric_tokens(gate, ratio, terms.weight, adv, weights, epsilon_low, epsilon_high),
                                    epsilon_low, epsilon_high)
        if not needs_grad:
            return loss, metrics
        # SPEC §2: d loss / d log pi_theta(o_{i,t}) = -A_i f'(r) r / D_i on unmasked tokens inside the clamp
        # (`live`), times the token's weight if given. At level="sequence", d s_i / d logp_t = s_i / |o_i|,
        # and the |o_i| tokens sharing s_i sum to the same expression times their mean weight.
        row_factor = adv.div(denominators).neg_()
        coef = torch.mul(terms.weight, ratio)
        if level == "token":
            coef = coef.mul_(row_factor).mul_(live)
            if token_weights is not None:
                coef = coef.mul_(_as(token_weights, dtype))
        else:
            if token_weights is not None:
                row_factor = row_factor * weight_sums / counts.clamp(min=1.0)
            coef = coef.mul_(row_factor) * live
    return _ExactSurrogate.apply(loss, coef, logps, old_logps), metrics


# ---------------------------------------------------------------------------------------------
# Metrics (SPEC §4), on logging steps only.
# ---------------------------------------------------------------------------------------------

def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(values, q) (linear interpolation) of a non-empty 1-D tensor, by partial selection."""
    n = values.numel()
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    if hi < n - lo:  # nearer the bottom: of the hi + 1 smallest, the largest is rank hi, the next rank lo
        part = values.topk(hi + 1, largest=False, sorted=False).values
        two = part.topk(min(2, hi + 1)).values
        above, below = two[0], two[-1 if hi > lo else 0]
    else:            # nearer the top: of the n - lo largest, the smallest is rank lo, the next rank hi
        part = values.topk(n - lo, sorted=False).values
        two = part.topk(min(2, n - lo), largest=False).values
        below, above = two[0], two[-1 if hi > lo else 0]
    return torch.lerp(below, above, pos - lo)


def _group_stats(r: torch.Tensor, w: torch.Tensor, epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """Statistics of one non-empty group of ratios r and gate weights w, in the order of _STAT_KEYS[1:]."""
    n = r.numel()
    mean = r.mean()
    var = (r - mean).square_().mean()                                     # population variance
    outside = torch.count_nonzero(r < 1.0 - epsilon_low) + torch.count_nonzero(r > 1.0 + epsilon_high)
    low = torch.count_nonzero(w < _LOW_WEIGHT)
    return torch.stack([mean, var.sqrt(), var, r.min(), r.max(), _quantile(r, 0.01), _quantile(r, 0.99),
                        outside.to(r.dtype) / n, w.mean().to(r.dtype), low.to(r.dtype) / n])


class MetricTokens(NamedTuple):
    """The unmasked tokens of one or more micro-batches as the metrics see them (1-D, aligned):
    the ratio r the gate saw, the gate weight f'(r) (clip: 1 inside the trust region, 0 outside) and
    the sign of the token's advantage (1, -1 or 0). Concatenating the tokens of several micro-batches
    (or processes) and calling `token_metrics` once gives the exact statistics of the union."""

    ratio: torch.Tensor
    weight: torch.Tensor
    sign: torch.Tensor

    @staticmethod
    def cat(parts: list[MetricTokens]) -> MetricTokens:
        """The tokens of several micro-batches as one set."""
        return MetricTokens(*(torch.cat([getattr(p, f) for p in parts]) for f in MetricTokens._fields))


def _metric_tokens(gate, ratio, weight, adv, weights, epsilon_low, epsilon_high) -> MetricTokens:
    """The unmasked tokens' ratios, gate weights and advantage signs, flattened."""
    if gate == CLIP:  # hard clipping's weight (SPEC §2): 1 inside the trust region, 0 outside
        weight = clip_weight(ratio, torch.sign(adv), epsilon_low, epsilon_high)
    # Rows ordered A > 0, A < 0, A == 0, so that the tokens come out grouped (token_metrics then skips a sort).
    group = torch.where(adv > 0, 0, torch.where(adv < 0, 1, 2)).squeeze(1)
    order = torch.argsort(group, stable=True)
    keep = (weights != 0)[order]
    index = keep.reshape(-1).nonzero().squeeze(1)

    def flat(x):
        return x.expand(keep.shape)[order].reshape(-1).index_select(0, index)

    return MetricTokens(flat(ratio), flat(weight), flat(torch.sign(adv).to(torch.int8)))


def token_metrics(tokens: MetricTokens, epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> dict[str, float]:
    """Ratio and gate-weight statistics (METRIC_KEYS) of a set of tokens, overall and per sign of A."""
    r, w, sign = tokens
    # Tokens ordered A > 0, A < 0, A == 0: each group is then one contiguous slice.
    group = torch.where(sign > 0, 0, torch.where(sign < 0, 1, 2))
    n_pos, n_neg, n_zero = torch.bincount(group, minlength=3).tolist()
    grouped = group.numel() < 2 or bool((group[1:] >= group[:-1]).all())  # one micro-batch comes grouped
    if not grouped:
        order = torch.argsort(group, stable=True)
        r, w = r[order], w[order]
    slices = {"": (0, n_pos + n_neg + n_zero), "pos/": (0, n_pos), "neg/": (n_pos, n_pos + n_neg)}
    out, stats = {}, []
    for prefix, (start, stop) in slices.items():
        out[f"tokens/{prefix}count"] = float(stop - start)
        if stop > start:
            stats.append((prefix, _group_stats(r[start:stop], w[start:stop], epsilon_low, epsilon_high)))
        else:  # no tokens: count 0, statistics nan
            out.update({key.format(prefix): math.nan for key in _STAT_KEYS[1:]})
    if stats:
        for (prefix, _), values in zip(stats, torch.stack([v for _, v in stats]).tolist()):  # one device sync
            out.update({key.format(prefix): v for key, v in zip(_STAT_KEYS[1:], values)})
    return {key: out[key] for key in METRIC_KEYS}


@torch.no_grad()
def metric_tokens(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                  gate: str | Gate = "sigmoid", tau_pos: float = 1.0, tau_neg: float = 1.05,
                  epsilon_low: float = 0.2, epsilon_high: float = 0.2, level: str = "token",
                  log_ratio_clamp: float = 20.0) -> MetricTokens:
    """The tokens behind policy_loss's metrics for the same arguments, to be pooled before `token_metrics`
    (a trainer pools the micro-batches and processes of one optimizer step)."""
    gate = _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                       level, AGGREGATIONS[0], log_ratio_clamp, None, True, None)
    weights, _, adv, tau, ratio, _ = _per_token(logps, old_logps, advantages, mask,
                                                torch.promote_types(logps.dtype, torch.float32), tau_pos, tau_neg,
                                                level, log_ratio_clamp)
    terms = gate_terms(gate, ratio, adv, tau, epsilon_low, epsilon_high)
    return _metric_tokens(gate, ratio, terms.weight, adv, weights, epsilon_low, epsilon_high)


# ---------------------------------------------------------------------------------------------
# Argument checks: every bad input is a ValueError naming the argument and what is allowed.
# ---------------------------------------------------------------------------------------------

def _check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _check_positive(name, value, *, strict=True):
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if strict else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if strict else '>= 0'}, got {value!r}")


def _check_length(max_completion_length):
    if not (isinstance(max_completion_length, int) and not isinstance(max_completion_length, bool)
            and max_completion_length > 0):
        raise ValueError("max_completion_length must be a positive int (required by aggregation="
                         f"'seq_mean_token_sum_norm'), got {max_completion_length!r}")


def _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics, token_weights):
    """Validate policy_loss's arguments; returns the gate as "clip" or a Gate."""
    if gate != CLIP and not isinstance(gate, Gate):
        if not isinstance(gate, str) or gate not in available_gates():
            raise ValueError(f"unknown gate {gate!r}; allowed: {CLIP!r}, a registered gate "
                             f"({', '.join(available_gates())}) or a sapo_core.gates.Gate")
        gate = get_gate(gate)
    _check_choice("level", level, LEVELS)
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    for name, value in (("tau_pos", tau_pos), ("tau_neg", tau_neg), ("log_ratio_clamp", log_ratio_clamp)):
        _check_positive(name, value)
    for name, value in (("epsilon_low", epsilon_low), ("epsilon_high", epsilon_high)):
        _check_positive(name, value, strict=False)
    if aggregation == "seq_mean_token_sum_norm" or max_completion_length is not None:
        _check_length(max_completion_length)
    if not isinstance(compute_metrics, bool):
        raise ValueError(f"compute_metrics must be True or False, got {compute_metrics!r}")
    for name, t in (("logps", logps), ("old_logps", old_logps), ("advantages", advantages), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if logps.dim() != 2 or not logps.is_floating_point():
        raise ValueError(f"logps must be a floating (B, T) tensor, got {logps.dtype} of shape {tuple(logps.shape)}")
    shape = tuple(logps.shape)
    for name, t in (("old_logps", old_logps), ("mask", mask)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have the shape of logps {shape}, got {tuple(t.shape)}")
    if tuple(advantages.shape) != shape[:1]:
        raise ValueError(f"advantages must have shape (B,) = {shape[:1]}, got {tuple(advantages.shape)}")
    if old_logps.dtype != logps.dtype:
        raise ValueError(f"old_logps must have the dtype of logps ({logps.dtype}), got {old_logps.dtype}")
    if not advantages.is_floating_point():
        raise ValueError(f"advantages must be a floating tensor, got {advantages.dtype}")
    if token_weights is not None:
        if not isinstance(token_weights, torch.Tensor) or not token_weights.is_floating_point() \
                or tuple(token_weights.shape) not in (shape, (shape[0], 1)):
            got = tuple(token_weights.shape) if isinstance(token_weights, torch.Tensor) else type(token_weights).__name__
            raise ValueError(f"token_weights must be None or a floating tensor of shape {shape} or "
                             f"{(shape[0], 1)}, got {got}")
        if token_weights.device != logps.device:
            raise ValueError(f"token_weights must be on the device of logps ({logps.device}), got {token_weights.device}")
    for name, t in (("old_logps", old_logps), ("advantages", advantages), ("mask", mask)):
        if t.device != logps.device:
            raise ValueError(f"{name} must be on the device of logps ({logps.device}), got {t.device}")
    return gate
