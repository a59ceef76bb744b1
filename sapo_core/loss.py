"""The SAPO / GRPO policy loss with pluggable gates (SPEC §1, §2) and its ratio metrics (SPEC §4).

For a micro-batch of B completions with per-token log-probabilities under the current policy
(`logps`) and the behaviour policy (`old_logps`), the objective maximised is

    J = agg_{i,t} [ A_i * f_{i,t}(r_{i,t}) ]                                    SPEC §1 (J_SAPO, J_GRPO)

    r_{i,t} = exp(clamp(log pi_theta - log pi_old, -c, c))           level="token"
    r_{i,t} = s_i = exp(clamp(mean_t (log pi_theta - log pi_old), -c, c))   level="sequence" (GSPO)

    f_{i,t}(x) = 1 + g(tau_i (x - 1)) / tau_i,   tau_i = tau_pos if A_i > 0 else tau_neg   SPEC §2
    f(x) = min(x, 1 + eps_high) if A_i > 0 else max(x, 1 - eps_low)       gate="clip" (GRPO's
           min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) = A f(r))

and `loss = -J`. The smooth-gate objective is evaluated in SPEC §2's exact-value, exact-gradient form

    L = -agg[ ( sg(f(r)) + sg(g'(tau (r - 1))) * (r - sg(r)) ) * A ]           SPEC §2, sg = stop-gradient

so the gradient uses the gate's closed-form g' only (g, possibly integrated numerically, gives the
value):

    dL / d log pi_theta(o_{i,t}) = -W_i * A_i * g'(tau_i (r - 1)) * r        (0 where the clamp is active)

with W_i the aggregation's weight of one token of row i:
    "seq_mean_token_mean"      W_i = 1 / (B * max(|o_i|, 1))   SPEC §1's 1/G sum_i 1/|o_i| sum_t (TRL "sapo"/"grpo")
    "token_mean"               W_i = 1 / max(sum_i |o_i|, 1)   DAPO (TRL "dapo"/"bnpo" on one micro-batch)
    "seq_mean_token_sum_norm"  W_i = 1 / (B * max_completion_length)      Dr. GRPO (TRL "dr_grpo")
At level="sequence" the ratio s_i is shared by every token of row i and the gradient flows through
the mean of the log-ratios (as in GSPO), giving the same per-token formula with r replaced by s_i.
Hard clipping's weight is 1 for A > 0 and r <= 1 + eps_high, for A < 0 and r >= 1 - eps_low, else
0: the gradient of TRL's min/clamp expression, boundaries included.

Three stages: `gate_terms` (f and f' per token) -> `per_token_objective` (A f and d(A f)/d log r)
-> `masked_aggregate`. `policy_loss` evaluates them without autograd and returns a scalar carrying
the exact gradient, so a step costs about as much as TRL's own SAPO expression
(`python benchmarks/bench_loss.py`).

Conventions:
  * sigmoid gate: gradients equal TRL's loss_type="sapo"; the value differs from TRL's by the
    constant SPEC §2 adds to f (loss_ours - loss_trl = -agg[A (1 - 2/tau)]). gate="clip" equals TRL's
    "grpo" in value and gradient. No gradient-accumulation normaliser: the trainer divides.
  * A == 0: runs at tau_neg (as TRL), contributes neither value nor gradient, counts in the overall
    metrics and in neither the pos (A > 0) nor the neg (A < 0) group.
  * Masked tokens (mask == 0 / False) may hold any value (-inf, nan): they are replaced by a
    log-ratio of 0 with torch.where before any arithmetic and get exactly zero gradient.
  * Inputs in half precision are computed in float32; float64 stays float64.
  * Metrics (no gradient, only when compute_metrics=True) are Python floats named in METRIC_KEYS,
    over unmasked tokens: ratio/{mean,std,var,min,max,p01,p99,outside_clip_frac} (std/var
    population, quantiles linearly interpolated as torch.quantile, outside = r < 1 - eps_low or
    r > 1 + eps_high), gate_weight/{mean,low_frac} (f', or sapo_core.gates.clip_weight for clip;
    low = below 0.5), tokens/count; each again as ratio/pos/..., ratio/neg/... for A > 0, A < 0.
    A group without tokens reports count 0 and nan for its statistics (TRL's logger skips nan
    when averaging). At level="sequence" each token counts with its sequence's ratio.
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
    "aggregate_rows",
    "aggregation_denominators",
    "gate_terms",
    "importance_ratios",
    "masked_aggregate",
    "objective_row_sums",
    "policy_loss",
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


def _clamped_ratio(logps, old_logps, weights, counts, level, log_ratio_clamp):
    """(r, live): the ratio the gate sees, (B, T) or (B, 1), and the (B, T) 0/1 factor letting d r / d logp through."""
    # Garbage at masked positions (-inf - -inf = nan, +-inf) becomes finite before anything else.
    log_ratio = (logps.to(weights.dtype) - old_logps.to(weights.dtype)).nan_to_num_(nan=0.0)
    if level == "sequence":
        # GSPO: log s_i = mean_t log r_{i,t} over unmasked tokens (TRL 1.16.0 grpo_trainer.py:3087)
        log_ratio = ((log_ratio * weights).sum(-1, keepdim=True) / counts.clamp(min=1.0)).nan_to_num_(nan=0.0)
    ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)
    # torch.clamp's gradient: zero where the clamp is active; zero on masked tokens.
    live = _indicator(ratio, log_ratio)
    live = live.mul_(weights) if level == "token" else live * weights
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
        sums = (terms.base * weights).sum(-1, keepdim=True)
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


def aggregate_rows(row_sums: torch.Tensor, counts: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                   max_completion_length: int | None = None) -> torch.Tensor:
    """Stage 3: the scalar sum_i row_sums_i / D_i from per-row sums and (B, 1) token counts |o_i|."""
    # TRL 1.16.0 grpo_trainer.py:3154 (grpo, sapo), :3159 (bnpo; dapo's :3173 divides by the token
    # count of the generation batch, the same on one micro-batch), :3164 (dr_grpo); with every
    # denominator clamped to >= 1 token as there.
    return (row_sums / aggregation_denominators(counts, aggregation, max_completion_length)).sum()


def masked_aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                     max_completion_length: int | None = None) -> torch.Tensor:
    """Aggregate a finite (B, T) or (B, 1) per-token quantity over the tokens of a 0/1 (B, T) mask."""
    weights = mask.to(per_token.dtype)
    row_sums = (per_token * weights).sum(-1, keepdim=True)
    return aggregate_rows(row_sums, weights.sum(-1, keepdim=True), aggregation, max_completion_length)


class _ExactSurrogate(torch.autograd.Function):
    """A precomputed loss whose gradient is `coef` for logps and -coef for old_logps (SPEC §2's sg form)."""

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

def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                gate: str | Gate = "sigmoid", tau_pos: float = 1.0, tau_neg: float = 1.05,
                epsilon_low: float = 0.2, epsilon_high: float = 0.2, level: str = "token",
                aggregation: str = "seq_mean_token_mean", log_ratio_clamp: float = 20.0,
                max_completion_length: int | None = None,
                compute_metrics: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The negated gated policy objective of a micro-batch (scalar, exact gradient) and its metrics."""
    gate = _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                       level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics)
    needs_grad = torch.is_grad_enabled() and (logps.requires_grad or old_logps.requires_grad)
    dtype = torch.promote_types(logps.dtype, torch.float32)
    with torch.no_grad():
        weights = mask.to(dtype)                                              # 0/1 per token
        counts = weights.sum(-1, keepdim=True)                                # |o_i|, (B, 1)
        adv = advantages.to(dtype)[:, None]                                   # (B, 1)
        tau = torch.full_like(adv, tau_neg).masked_fill_(adv > 0, tau_pos)    # SPEC §1: tau_pos iff A > 0
        ratio, live = _clamped_ratio(logps, old_logps, weights, counts, level, log_ratio_clamp)
        terms = gate_terms(gate, ratio, adv, tau, epsilon_low, epsilon_high)                  # stage 1
        rows = objective_row_sums(terms, adv, weights, counts)                                # stage 2
        denominators = aggregation_denominators(counts, aggregation, max_completion_length)   # stage 3
        loss = (rows / denominators).sum().neg_()
        metrics = _metrics(gate, ratio, terms.weight, adv, weights, epsilon_low, epsilon_high) if compute_metrics else {}
        if not needs_grad:
            return loss, metrics
        # SPEC §2: d loss / d log pi_theta(o_{i,t}) = -A_i f'(r) r / D_i on unmasked tokens inside the clamp
        # (`live`). At level="sequence", d s_i / d logp_t = s_i / |o_i| for the |o_i| tokens sharing s_i,
        # whose sum gives the same per-token expression.
        coef = torch.mul(terms.weight, ratio).mul_(adv.div(denominators).neg_())
        coef = coef.mul_(live) if level == "token" else coef * live
    return _ExactSurrogate.apply(loss, coef, logps, old_logps), metrics


# ---------------------------------------------------------------------------------------------
# Metrics (SPEC §4), on logging steps only.
# ---------------------------------------------------------------------------------------------

def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(values, q) (linear interpolation) of a non-empty 1-D tensor, by partial sort."""
    n = values.numel()
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    if hi < n - lo:  # nearer the bottom: the hi + 1 smallest, ascending
        smallest = values.topk(hi + 1, largest=False).values
        below, above = smallest[lo], smallest[hi]
    else:            # nearer the top: the n - lo largest, descending
        largest = values.topk(n - lo).values
        below, above = largest[n - 1 - lo], largest[n - 1 - hi]
    return torch.lerp(below, above, pos - lo)


def _metrics(gate, ratio, weight, adv, weights, epsilon_low, epsilon_high) -> dict[str, float]:
    """Ratio and gate-weight statistics over unmasked tokens, overall and per sign of A (METRIC_KEYS)."""
    if gate == CLIP:  # hard clipping's weight (SPEC §2): 1 inside the trust region, 0 outside
        weight = clip_weight(ratio, torch.sign(adv), epsilon_low, epsilon_high)
    keep = weights != 0
    r, w = ratio.expand(keep.shape), weight.expand(keep.shape)
    out = {}
    for prefix, group in zip(_GROUPS, (keep, keep & (adv > 0), keep & (adv < 0))):
        rv, wv = r[group].double(), w[group].double()
        if rv.numel() == 0:  # no tokens: count 0, statistics nan
            out.update({key.format(prefix): math.nan for key in _STAT_KEYS})
            out[f"tokens/{prefix}count"] = 0.0
            continue
        mean = rv.mean()
        var = (rv - mean).square_().mean()
        outside = ((rv < 1.0 - epsilon_low) | (rv > 1.0 + epsilon_high)).double().mean()
        stats = torch.stack([mean, var.sqrt(), var, rv.min(), rv.max(), _quantile(rv, 0.01), _quantile(rv, 0.99),
                             outside, wv.mean(), (wv < _LOW_WEIGHT).double().mean()])
        out[f"tokens/{prefix}count"] = float(rv.numel())
        out.update({key.format(prefix): v for key, v in zip(_STAT_KEYS[1:], stats.tolist())})
    return {key: out[key] for key in METRIC_KEYS}


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
                level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics):
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
    for name, t in (("old_logps", old_logps), ("advantages", advantages), ("mask", mask)):
        if t.device != logps.device:
            raise ValueError(f"{name} must be on the device of logps ({logps.device}), got {t.device}")
    return gate
