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

import torch

from sapo_core.gates import Gate, available_gates, clip_weight, get_gate

__all__ = [
    "AGGREGATIONS",
    "CLIP",
    "LEVELS",
    "METRIC_KEYS",
    "aggregation_weights",
    "gate_terms",
    "importance_ratios",
    "masked_aggregate",
    "per_token_objective",
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
_LOW_WEIGHT = 0.5  # SPEC §4: share of tokens with g' < 0.5


# ---------------------------------------------------------------------------------------------
# Ratios.
# ---------------------------------------------------------------------------------------------

def _clamped_ratio(logps, old_logps, keep, level, log_ratio_clamp, dtype):
    """(r, live): the ratio the gate sees, (B, T) or (B, 1), and where the clamp lets gradient through."""
    # Masked positions may hold garbage: neutralise with where before any arithmetic touches them.
    log_ratio = torch.where(keep, logps.detach().to(dtype) - old_logps.detach().to(dtype), 0.0)
    if level == "sequence":
        # GSPO: s_i = exp(mean_t log r_{i,t}) over unmasked tokens (TRL grpo_trainer.py:3087)
        log_ratio = log_ratio.sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1)
    ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)
    live = ratio == log_ratio  # torch.clamp's gradient: zero where the clamp is active
    return ratio.exp_(), live


@torch.no_grad()
def importance_ratios(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, *,
                      level: str = "token", log_ratio_clamp: float = 20.0) -> torch.Tensor:
    """The (B, T) ratios policy_loss gates (sequence level: s_i on every token; 1 where masked)."""
    _check_choice("level", level, LEVELS)
    _check_positive("log_ratio_clamp", log_ratio_clamp)
    keep = mask if mask.dtype == torch.bool else mask != 0
    dtype = torch.promote_types(logps.dtype, torch.float32)
    ratio, _ = _clamped_ratio(logps, old_logps, keep, level, log_ratio_clamp, dtype)
    return torch.where(keep, ratio, 1.0)


# ---------------------------------------------------------------------------------------------
# Stage 1: the gate. Stage 2: the per-token objective. Stage 3: the aggregation.
# ---------------------------------------------------------------------------------------------

def gate_terms(gate: Gate | str, ratio: torch.Tensor, advantages: torch.Tensor, tau: torch.Tensor,
               epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(r), f'(r)) per token for a smooth gate at temperature `tau`, or for "clip" by sign of A."""
    if gate == CLIP:
        # SPEC §1: min(r A, clip(r, 1-eps_low, 1+eps_high) A) = A min(r, 1+eps_high) for A > 0,
        # A max(r, 1-eps_low) for A < 0; its derivative (TRL's autograd, boundaries included):
        positive = advantages > 0
        value = torch.where(positive, ratio.clamp(max=1.0 + epsilon_high), ratio.clamp(min=1.0 - epsilon_low))
        weight = torch.where(positive, ratio <= 1.0 + epsilon_high, ratio >= 1.0 - epsilon_low).to(ratio.dtype)
        return value, weight
    z = (ratio - 1.0).mul_(tau)        # SPEC §2: z = tau (x - 1)
    value = 1.0 + gate.g(z) / tau      # SPEC §2: f_tau(x) = 1 + g(tau (x - 1)) / tau
    weight = gate.g_prime(z)           # SPEC §2: f_tau'(x) = g'(tau (x - 1))
    return value, weight


def per_token_objective(value: torch.Tensor, weight: torch.Tensor, ratio: torch.Tensor,
                        advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A f(r), d(A f(r)) / d log r = A f'(r) r): the objective's value and its log-ratio derivative."""
    # SPEC §2: sg(f(r)) + sg(f'(r)) (r - sg(r)) has value f(r) and d/d log r = f'(r) r.
    return advantages * value, advantages * weight * ratio


def aggregation_weights(mask: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                        max_completion_length: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """W_i, the weight of one unmasked token of row i in `masked_aggregate`: (B, 1) or a scalar tensor."""
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    if aggregation == "seq_mean_token_mean":   # SPEC §1: 1/G sum_i 1/|o_i| sum_t
        return 1.0 / (mask.sum(-1, keepdim=True).clamp(min=1).to(dtype) * mask.shape[0])
    if aggregation == "token_mean":            # DAPO: sum over all tokens / number of tokens
        return 1.0 / mask.sum().clamp(min=1).to(dtype)
    if max_completion_length is None:
        raise ValueError("max_completion_length is required for aggregation='seq_mean_token_sum_norm'")
    return torch.full((), 1.0 / (mask.shape[0] * max_completion_length), dtype=dtype, device=mask.device)


def masked_aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                     max_completion_length: int | None = None) -> torch.Tensor:
    """Aggregate a (B, T) or (B, 1) per-token quantity over the unmasked tokens of a (B, T) bool mask."""
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    masked = torch.where(mask, per_token, 0.0)
    # Same order of operations as TRL 1.16.0 grpo_trainer.py:3154 (grpo, sapo), :3159 (bnpo; dapo's
    # normaliser is the token count on one micro-batch, :3173) and :3164 (dr_grpo).
    if aggregation == "seq_mean_token_mean":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if aggregation == "token_mean":
        return masked.sum() / mask.sum().clamp(min=1)
    if max_completion_length is None:
        raise ValueError("max_completion_length is required for aggregation='seq_mean_token_sum_norm'")
    return masked.sum() / (mask.shape[0] * max_completion_length)


class _ExactSurrogate(torch.autograd.Function):
    """A precomputed loss value whose gradient is `coef` for logps and -coef for old_logps (SPEC §2 sg form)."""

    @staticmethod
    def forward(ctx, value, coef, logps, old_logps):
        ctx.save_for_backward(coef)
        ctx.dtypes = (logps.dtype, old_logps.dtype)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        (coef,) = ctx.saved_tensors
        grad = coef * grad_output
        grad_old = -grad.to(ctx.dtypes[1]) if ctx.needs_input_grad[3] else None
        return None, None, grad.to(ctx.dtypes[0]) if ctx.needs_input_grad[2] else None, grad_old


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
    keep = mask if mask.dtype == torch.bool else mask != 0
    with torch.no_grad():
        adv = advantages.detach().to(dtype).unsqueeze(1)                    # (B, 1)
        tau = torch.full_like(adv, tau_neg).masked_fill_(adv > 0, tau_pos)   # SPEC §1: tau_pos iff A > 0
        ratio, live = _clamped_ratio(logps, old_logps, keep, level, log_ratio_clamp, dtype)
        value, weight = gate_terms(gate, ratio, adv, tau, epsilon_low, epsilon_high)   # stage 1
        objective, d_objective = per_token_objective(value, weight, ratio, adv)        # stage 2
        loss = -masked_aggregate(objective, keep, aggregation, max_completion_length)  # stage 3
        metrics = _metrics(gate, ratio, weight, adv, keep, epsilon_low, epsilon_high) if compute_metrics else {}
        if not needs_grad:
            return loss, metrics
        # d loss / d log pi_theta(o_{i,t}) = -W_i A_i f'(r) r (the sequence mean's 1/|o_i| cancels the
        # |o_i| tokens sharing s_i), zero on masked tokens and where the clamp is active.
        weights = aggregation_weights(keep, aggregation, max_completion_length, dtype)
        coef = torch.where(keep & live, d_objective * -weights, 0.0)
    return _ExactSurrogate.apply(loss, coef, logps, old_logps), metrics


# ---------------------------------------------------------------------------------------------
# Metrics (SPEC §4).
# ---------------------------------------------------------------------------------------------

def _sorted_quantile(values: torch.Tensor, count: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of the first `count` entries of ascending `values`, linear as torch.quantile."""
    pos = (count - 1).clamp(min=0) * q
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (count - 1).clamp(min=0))
    return torch.lerp(values[lo], values[hi], pos - lo)


def _metrics(gate, ratio, weight, adv, keep, epsilon_low, epsilon_high) -> dict[str, float]:
    """Ratio and gate-weight statistics over unmasked tokens, overall and per sign of A (METRIC_KEYS)."""
    if gate == CLIP:  # hard clipping's weight (SPEC §2): 1 inside the trust region, 0 outside
        weight = clip_weight(ratio, torch.sign(adv), epsilon_low, epsilon_high)
    r = ratio.double().expand(keep.shape)
    w = weight.double().expand(keep.shape)
    outside = (r < 1.0 - epsilon_low) | (r > 1.0 + epsilon_high)
    low = w < _LOW_WEIGHT
    rows = []
    for group in (keep, keep & (adv > 0), keep & (adv < 0)):
        count = group.sum()
        n = count.clamp(min=1).double()
        mean = torch.where(group, r, 0.0).sum() / n
        var = torch.where(group, (r - mean) ** 2, 0.0).sum() / n
        ordered = torch.where(group, r, math.inf).flatten().sort().values
        rows.append(torch.stack([
            count.double(), mean, var.sqrt(), var, ordered[0], _sorted_quantile(ordered, count, 1.0),
            _sorted_quantile(ordered, count, 0.01), _sorted_quantile(ordered, count, 0.99),
            (group & outside).sum() / n, torch.where(group, w, 0.0).sum() / n, (group & low).sum() / n,
        ]))
    out = {}
    for prefix, values in zip(_GROUPS, torch.stack(rows).tolist()):  # one device sync
        for key, v in zip(_STAT_KEYS, values):  # a group without tokens: count 0, statistics nan
            out[key.format(prefix)] = math.nan if values[0] == 0 and not key.startswith("tokens/") else v
    return out


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
        if not (isinstance(max_completion_length, int) and not isinstance(max_completion_length, bool)
                and max_completion_length > 0):
            raise ValueError("max_completion_length must be a positive int (required for aggregation="
                             f"'seq_mean_token_sum_norm'), got {max_completion_length!r}")
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
