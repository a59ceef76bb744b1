"""The SAPO / GRPO policy loss with pluggable gates (method §1, §2) and its ratio metrics (method §4).

For B completions with per-token log-probabilities `logps` (pi_theta) and `old_logps` (pi_old),
advantages A_i and a 0/1 completion mask m_{i,t}, `policy_loss` returns

    loss = -agg_{i,t}[ A_i f_i(r_{i,t}) ]                                        method §1.2 (1), §1.3 (2)

    log r_{i,t} = clamp(logp - old_logp, -c, c)                              level="token", method §7.3
    log r_{i,t} = clamp(mean_t m (logp - old_logp), -c, c)                   level="sequence" (GSPO), §7.2
    f_i(x) = 1 + g(tau_i (x - 1)) / tau_i,  tau_i = tau_pos if A_i > 0 else tau_neg   method §2.1, §7.4
    A f(r) = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)                 gate="clip" (GRPO), §1.2

or, for a trust-region method named in the gate's slot (sapo_core.methods.METHODS, method §2.8), TRL 1.16's
expression for it (sg: stop-gradient; no temperature):

    min(min(r, delta) A, clip(r, 1 - eps_low, 1 + eps_high) A)   gate="delta:delta=4" (two-sided clip, TRL delta)
    sg(min(r, eps_max)) A log pi                                 gate="cispo:eps_max=5" (TRL "cispo")
    beta (1 +- eps) r / sg(r) A outside the clip range, r A inside  gate="ce_gppo:beta1=0.5,beta2=1" (CE-GPPO)
    sg(phi(w)) A log pi, log w = clamp(sum_t log r_t, log 1e-8, c)  gate="vespo" (TRL "vespo"; level="token")

and writes a smooth gate in the stop-gradient form of method §2.7 (eq. 2.6)

    per_token = A * (sg(f(r)) + sg(f'(r)) * (r - sg(r))),    f'(r) = g'(tau (r - 1))

whose value is A f(r) and whose gradient with respect to logp is A g'(tau (r - 1)) r: training never
differentiates through g, so a gate whose g is integrated numerically costs only its forward pass.
`agg` is `masked_aggregate` (method §7.1; every denominator at least one token, as TRL 1.16.0):

    "seq_mean_token_mean"      1/B sum_i 1/|o_i| sum_t     SAPO, GRPO; TRL "sapo", "grpo"
    "token_mean"               1/sum_i |o_i| sum_i sum_t    DAPO; TRL "dapo" / "bnpo" on one micro-batch
    "seq_mean_token_sum_norm"  1/(B L) sum_i sum_t         Dr. GRPO; TRL "dr_grpo", L = max_completion_length

`importance_log_ratio` is the clamped log r above, shared with the trainer's KL term.

Conventions:
  * sigmoid gate: gradients equal TRL's loss_type="sapo"; values differ by method §7.5's constant,
    loss_ours - loss_trl = -agg[A (1 - 2/tau)]. gate="clip" equals TRL's "grpo" in value and gradient.
    No gradient-accumulation normaliser: the trainer divides.
  * A == 0 runs at tau_neg (as TRL; clip: the A < 0 side), contributes neither value nor gradient, and
    counts in the overall metrics but in neither the pos (A > 0) nor the neg (A < 0) group (method §7.4).
  * The mask holds 0/1 only (bool, integer or float; anything else is a ValueError). Masked positions
    may hold anything (-inf, nan): `torch.where` sets them aside before any arithmetic, and they get
    zero gradient. A nan at an unmasked token is not hidden: the loss is nan, and the token is counted in
    `tokens/nonfinite_count` (as is an unmasked +-inf log-ratio, which the clamp bounds).
  * Where the clamp acts (|log r| >= c) the gradient is 0.
  * Half-precision inputs are computed in float32 (gradients come back in the input dtype).
  * token_weights (optional, finite, (B, T) or (B, 1), no gradient) multiply each token's objective, as TRL's
    vLLM importance-sampling correction does (grpo_trainer.py:3146-3147); denominators and metrics
    still count tokens by the mask alone.
  * A trust-region method's value is TRL's (for cispo and vespo -sg(weight) A log pi, which depends on log pi
    itself; there the gradient flows through log pi, so the log-ratio clamp does not zero it), and so is its
    gradient. Its gate weight f' in the metrics is phi(r) / r, phi being its weight on grad log pi
    (sapo_core.trust_region.method_phi, method §2.8), so that EUR means the same as for a gate; for VESPO r is
    there the sequence ratio w. VESPO folds token_weights into w (log w += sum_t log weight, as TRL folds the
    vLLM correction) instead of multiplying the objective; TRL sums over every position, we over unmasked ones.
  * Metrics (method §4; only with compute_metrics=True, as they cost a device sync) are Python floats
    named in METRIC_KEYS (defined in sapo_core.metrics), over the unmasked tokens with a finite log-ratio,
    for all of them and for A > 0 ("pos/") and A < 0 ("neg/"): tokens/count; ratio/{mean, std, var, min,
    max, p01, p99} (population std and var; quantiles interpolated linearly as torch.quantile);
    ratio/outside_clip_frac (r < 1 - eps_low or r > 1 + eps_high); gate_weight/mean and
    gate_weight/low_frac (f' < 0.5), f' being g'(tau (r - 1)), or sapo_core.gates.clip_weight for clip
    (method §2.4); eur, the effective update ratio of method §4.1 (paper eq. 12): per prompt group
    (`groups`, the prompt of each completion; None: the B completions are one prompt's group) the token
    mean of f', then the mean over the groups that have tokens (of the sign, for eur/pos and eur/neg);
    and, overall only, tokens/nonfinite_count, the unmasked tokens whose log-ratio is not finite before
    the clamp (nan makes the loss nan; +-inf is clamped like any large log-ratio). An empty group has
    count 0 and nan statistics. At level="sequence" every token counts with its sequence's ratio.
    `metric_tokens` returns the tokens behind the statistics so that a trainer can pool the micro-batches
    and processes of a step and call `token_metrics` once on the union.
  * Refused (ValueError): a tau outside float32's positive range [1.2e-38, 3.4e38] (it would become 0 or
    inf) and a log_ratio_clamp above log(float32 max) = 88.72 (exp would overflow to inf). B = 0
    completions give loss 0 and tokens/count 0, as an all-masked batch does.

Speed against TRL's own expressions: `.venv/bin/python benchmarks/bench_loss.py`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core import trust_region as TR
from sapo_core.checks import check_choice, check_positive
from sapo_core.gates import Gate, GateSpec, available_gates, clip_weight, get_gate
from sapo_core.methods import check_method

__all__ = ["AGGREGATIONS", "CLIP", "LEVELS", "METRIC_KEYS", "MetricTokens", "effective_update_ratio",
           "importance_log_ratio", "masked_aggregate", "metric_tokens", "policy_loss", "token_metrics",
           "vespo_log_weight"]

CLIP = "clip"
LEVELS = ("token", "sequence")
AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")
LOW_WEIGHT = 0.5  # method §4: share of tokens with g' < 0.5
FLOAT32 = torch.finfo(torch.float32)
MAX_LOG_RATIO_CLAMP = math.log(FLOAT32.max)  # 88.72: exp(c) is finite in float32
VESPO_LOG_W_MIN = math.log(1e-8)  # VESPO's lower clamp of log w (TRL 1.16 get_gamma_weights, from VESPO's code)


# ---------------------------------------------------------------------------------------------
# The loss: log-ratio -> gate -> per-token objective -> aggregation.
# ---------------------------------------------------------------------------------------------

def importance_log_ratio(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, *,
                         level: str = "token", log_ratio_clamp: float = 20.0) -> torch.Tensor:
    """The clamped log-ratio the loss gates: (B, T) per token (0 where masked), or (B, 1) at level="sequence"."""
    check_choice("level", level, LEVELS)
    check_positive("log_ratio_clamp", log_ratio_clamp)
    keep = _bool_mask(mask)
    log_ratio = torch.where(keep, logps - old_logps, 0.0)  # masked positions may hold -inf or nan
    if level == "sequence":  # method §7.2 (GSPO): log s_i = 1/|o_i| sum_t log r_{i,t}
        log_ratio = log_ratio.sum(-1, keepdim=True) / keep.count_nonzero(-1).unsqueeze(-1).clamp(min=1)
    # method §7.3: clamp(log r, -c, c), no gradient where it acts (hardtanh is that clamp, backward in one pass)
    return F.hardtanh(log_ratio, -log_ratio_clamp, log_ratio_clamp)


def masked_aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str = "seq_mean_token_mean",
                     max_completion_length: int | None = None) -> torch.Tensor:
    """Aggregate a (B, T) or (B, 1) per-token quantity over the unmasked tokens of a (B, T) 0/1 mask.

    >>> x = torch.tensor([[1.0, 2.0, float("nan")], [4.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    >>> masked_aggregate(x, mask)  # ((1 + 2) / 2 + 4 / 1) / 2
    tensor(2.7500)
    >>> masked_aggregate(x, mask, "token_mean")  # (1 + 2 + 4) / 3
    tensor(2.3333)
    >>> masked_aggregate(x, mask, "seq_mean_token_sum_norm", max_completion_length=4)  # 7 / (2 * 4)
    tensor(0.8750)
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    keep = _bool_mask(mask)
    sums = torch.where(keep, per_token, 0.0).sum(-1)      # masked entries may hold anything
    # method §7.1 (7.1): the three denominators
    if aggregation == "seq_mean_token_mean":              # 1/B sum_i 1/|o_i| sum_t (TRL sapo, grpo)
        per_sequence = sums / keep.count_nonzero(-1).clamp(min=1)
        return per_sequence.mean() if per_sequence.numel() else per_sequence.sum()  # B = 0: 0, as all-masked
    if aggregation == "token_mean":                       # DAPO: 1/sum_i |o_i| sum_i sum_t (TRL dapo, bnpo)
        return sums.sum() / keep.count_nonzero().clamp(min=1)
    _check_length(max_completion_length, keep.shape[-1])  # Dr. GRPO: 1/(B L) sum_i sum_t (TRL dr_grpo)
    return sums.sum() / (max(keep.shape[0], 1) * max_completion_length)


def _tau(advantages: torch.Tensor, tau_pos: float, tau_neg: float) -> torch.Tensor:
    """tau_pos where A > 0, else tau_neg (method §1.3 eq. 3; A == 0 included, §7.4), in the advantages' dtype."""
    return torch.where(advantages > 0, advantages.new_tensor(tau_pos), tau_neg)


def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                gate: str | Gate = "sigmoid", tau_pos: float = 1.0, tau_neg: float = 1.05,
                epsilon_low: float = 0.2, epsilon_high: float = 0.2, level: str = "token",
                aggregation: str = "seq_mean_token_mean", log_ratio_clamp: float = 20.0,
                max_completion_length: int | None = None, compute_metrics: bool = True,
                token_weights: torch.Tensor | None = None,
                groups: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The negated gated policy objective of a micro-batch (a differentiable scalar) and its metrics.

    >>> logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> old_logps = torch.tensor([[-1.0, -2.0]])
    >>> loss, metrics = policy_loss(logps, old_logps, torch.tensor([0.5]), torch.tensor([[1, 1]]))
    >>> loss  # on policy, r = 1 and f(1) = 1: loss = -A
    tensor(-0.5000, grad_fn=<NegBackward0>)
    >>> loss.backward(); logps.grad  # g'(0) = 1: the plain policy gradient -A / |o|
    tensor([[-0.2500, -0.2500]])
    >>> metrics["ratio/mean"], metrics["tokens/pos/count"]
    (1.0, 2.0)
    """
    gate = _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                       level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics, token_weights,
                       groups)
    dtype = torch.promote_types(logps.dtype, torch.float32)  # half precision is computed in float32
    keep = _bool_mask(mask)
    log_ratio = importance_log_ratio(logps.to(dtype), old_logps.to(dtype), keep, level=level,
                                     log_ratio_clamp=log_ratio_clamp)
    ratio = log_ratio.exp()
    adv = advantages.to(dtype).unsqueeze(1)
    if isinstance(gate, GateSpec):  # a trust-region method (method §2.8), TRL's expression for it
        per_token = _method_objective(gate, ratio, log_ratio, logps.to(dtype), adv, keep, epsilon_low, epsilon_high,
                                      log_ratio_clamp, token_weights)
    else:
        tau, r = _tau(adv, tau_pos, tau_neg), ratio.detach()
        z = tau * (r - 1)
        f, f_prime = 1 + gate.g(z) / tau, gate.g_prime(z)  # method §2.1 (2.1), (2.2): f(r), f'(r), no gradient
        # method §2.7 (2.6): value A f(r), gradient A f'(r) d r
        per_token = adv * (f + f_prime * (ratio - r))
    # TRL's vLLM importance-sampling correction (grpo_trainer.py:3147); VESPO folded it into w above
    if token_weights is not None and not _is_vespo(gate):
        per_token = per_token * token_weights.to(dtype)
    loss = -masked_aggregate(per_token, keep, aggregation, max_completion_length)
    metrics = {}
    if compute_metrics:
        tokens = metric_tokens(logps.detach(), old_logps, advantages, mask, gate=gate, tau_pos=tau_pos,
                               tau_neg=tau_neg, epsilon_low=epsilon_low, epsilon_high=epsilon_high, level=level,
                               log_ratio_clamp=log_ratio_clamp, groups=groups)
        metrics = token_metrics(tokens, epsilon_low, epsilon_high)
    return loss, metrics


def _is_vespo(gate) -> bool:
    return isinstance(gate, GateSpec) and gate.parts["method"] == "vespo"


def vespo_log_weight(log_ratio: torch.Tensor, keep: torch.Tensor, log_ratio_clamp: float = 20.0,
                     token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """VESPO's (B, 1) log w = clamp(sum_t log r_t [+ sum_t log weight_t], log 1e-8, c) from the clamped token
    log-ratios, 0 where masked (method §2.8; TRL 1.16 get_gamma_weights)."""
    log_w = log_ratio.sum(-1, keepdim=True)
    if token_weights is not None:  # the sampler correction, folded into w as TRL does
        log_tw = token_weights.log().clamp(VESPO_LOG_W_MIN, log_ratio_clamp)
        log_w = log_w + torch.where(keep, log_tw, 0.0).sum(-1, keepdim=True)
    return log_w.clamp(VESPO_LOG_W_MIN, log_ratio_clamp)


def _method_objective(method: GateSpec, ratio, log_ratio, logps, adv, keep, epsilon_low, epsilon_high,
                      log_ratio_clamp, token_weights) -> torch.Tensor:
    """The per-token objective of a trust-region method (its negative is TRL's per_token_loss), method §2.8."""
    name, p = method.parts["method"], method.parts["params"]
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    if name == "clip":  # method §1.2 (1), GRPO: min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)
        return torch.minimum(ratio * adv, clipped * adv)
    if name == "delta":  # two-sided clipping: the first ratio clamped above at delta (TRL GRPOConfig.delta)
        return torch.minimum(ratio.clamp(max=p["delta"]) * adv, clipped * adv)
    if name == "cispo":  # CISPO: sg(min(r, eps_max)) A log pi
        return ratio.clamp(max=p["eps_max"]).detach() * adv * logps
    if name == "ce_gppo":  # CE-GPPO: beta (1 -+ eps) r / sg(r) A outside the clip range, r A inside
        r = ratio.detach()
        high = (adv > 0) & (r > 1 + epsilon_high)
        low = (adv < 0) & (r < 1 - epsilon_low)
        bound = torch.where(high, adv.new_tensor(p["beta2"] * (1 + epsilon_high)), p["beta1"] * (1 - epsilon_low))
        return torch.where(high | low, bound * ratio / r, ratio) * adv
    # VESPO: sg(phi(w)) A log pi, phi(w) = exp(lambda + k log w - lambda w); (k, lambda) by A >= 0 (TRL)
    log_w = vespo_log_weight(log_ratio.detach(), keep, log_ratio_clamp, token_weights)
    phi = TR.vespo_phi(log_w, log_w.exp(), adv >= 0, p).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    return phi * adv * logps


# ---------------------------------------------------------------------------------------------
# Metrics (method §4), on logging steps only.
# ---------------------------------------------------------------------------------------------

class MetricTokens(NamedTuple):
    """The unmasked tokens as the metrics see them (1-D, aligned): ratio r (nan: not finite), f'(r), sign of A,
    and the prompt group of the token's completion (method §4.1)."""

    ratio: torch.Tensor
    weight: torch.Tensor
    sign: torch.Tensor
    group: torch.Tensor

    @staticmethod
    def cat(parts: list[MetricTokens]) -> MetricTokens:
        """The tokens of several micro-batches (or processes) as one set."""
        return MetricTokens(*(torch.cat(field) for field in zip(*parts)))


def _quantile(sorted_values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of sorted values, interpolated linearly as torch.quantile (which refuses > 2^24 values)."""
    position = q * (sorted_values.numel() - 1)
    below = math.floor(position)
    above = min(below + 1, sorted_values.numel() - 1)
    return torch.lerp(sorted_values[below], sorted_values[above], position - below)


def _statistics(r: torch.Tensor, w: torch.Tensor, epsilon_low: float, epsilon_high: float) -> dict:
    """method §4's statistics of a non-empty group of ratios r and gate weights w, by name."""
    r_sorted = r.sort().values
    return {
        "ratio/mean": r.mean(),
        "ratio/std": r.std(correction=0),
        "ratio/var": r.var(correction=0),
        "ratio/min": r_sorted[0],
        "ratio/max": r_sorted[-1],
        "ratio/p01": _quantile(r_sorted, 0.01),
        "ratio/p99": _quantile(r_sorted, 0.99),
        "ratio/outside_clip_frac": ((r < 1 - epsilon_low) | (r > 1 + epsilon_high)).to(r.dtype).mean(),
        "gate_weight/mean": w.mean(),
        "gate_weight/low_frac": (w < LOW_WEIGHT).to(w.dtype).mean(),
    }


def effective_update_ratio(weight: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """EUR (method §4.1, paper eq. 12): 1/B sum_b [ sum_{tokens of prompt b} f'(r) / (tokens of prompt b) ]
    over the B prompt groups present in `group`, in float64 (nan when there are no tokens)."""
    if not weight.numel():
        return torch.tensor(math.nan, dtype=torch.float64, device=weight.device)
    _, prompt = torch.unique(group, return_inverse=True)  # prompt b = 0 .. B-1 of each token
    sums = torch.zeros(int(prompt.max()) + 1, dtype=torch.float64, device=weight.device)
    tokens = torch.zeros_like(sums).index_add_(0, prompt, torch.ones_like(prompt, dtype=torch.float64))
    return (sums.index_add_(0, prompt, weight.to(torch.float64)) / tokens).mean()


# the tokens of each sign group (method §7.4: A == 0 counts overall only), by index into metrics.by_sign's names
_SIGN_GROUPS = ((0, lambda sign: torch.ones_like(sign, dtype=torch.bool)), (1, lambda sign: sign > 0),
                (2, lambda sign: sign < 0))
_STATISTICS = tuple(_statistics(torch.ones(1), torch.ones(1), 0.2, 0.2))  # their names, in order
_SIGNED = {key: M.by_sign(key) for key in (*_STATISTICS, "tokens/count", "eur")}  # (all, pos, neg) names

METRIC_KEYS: tuple[str, ...] = M.names(source="loss")  # tokens/..., ratio/..., gate_weight/..., eur (and per sign)


def token_metrics(tokens: MetricTokens, epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> dict[str, float]:
    """Ratio, gate-weight and EUR statistics (METRIC_KEYS) of a set of tokens, overall and per sign of A."""
    finite = torch.isfinite(tokens.ratio)
    values = {"tokens/nonfinite_count": (~finite).sum()}
    for index, in_group in _SIGN_GROUPS:
        selected = finite & in_group(tokens.sign)
        r, w = tokens.ratio[selected], tokens.weight[selected]
        if r.numel():
            stats = _statistics(r, w, epsilon_low, epsilon_high)
        else:  # an empty group: nan statistics (TRL's logger skips nan when averaging)
            stats = dict.fromkeys(_STATISTICS, torch.tensor(math.nan, device=r.device))
        stats |= {"tokens/count": selected.sum(), "eur": effective_update_ratio(w, tokens.group[selected])}
        values.update({_SIGNED[key][index]: value for key, value in stats.items()})
    floats = torch.stack([values[key].to(torch.float64) for key in METRIC_KEYS]).tolist()  # one copy to the host
    return dict(zip(METRIC_KEYS, floats))


@torch.no_grad()
def metric_tokens(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                  gate: str | Gate = "sigmoid", tau_pos: float = 1.0, tau_neg: float = 1.05,
                  epsilon_low: float = 0.2, epsilon_high: float = 0.2, level: str = "token",
                  log_ratio_clamp: float = 20.0, groups: torch.Tensor | None = None) -> MetricTokens:
    """The tokens behind policy_loss's metrics for the same arguments, to pool before `token_metrics`."""
    gate = _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                       level, AGGREGATIONS[0], log_ratio_clamp, None, True, None, groups)
    dtype = torch.promote_types(logps.dtype, torch.float32)
    keep = _bool_mask(mask)
    logps, old_logps, adv = logps.to(dtype), old_logps.to(dtype), advantages.to(dtype).unsqueeze(1)
    log_ratio = importance_log_ratio(logps, old_logps, keep, level=level, log_ratio_clamp=log_ratio_clamp)
    ratio = log_ratio.exp()
    # method §4: a log-ratio that is not finite before the clamp (nan, +-inf) makes its token's ratio nan (at
    # level="sequence", its row's): counted in tokens/nonfinite_count, left out of the statistics
    finite = torch.isfinite(torch.where(keep, logps - old_logps, 0.0))
    ratio = torch.where(finite.all(-1, keepdim=True) if level == "sequence" else finite, ratio, math.nan)
    if isinstance(gate, GateSpec) and gate.text == CLIP:  # method §2.4 (2.3): 1 inside the trust region, 0 outside
        weight = clip_weight(ratio, torch.sign(adv), epsilon_low, epsilon_high)
    elif isinstance(gate, GateSpec):  # method §2.8: f' = phi(r) / r; VESPO: phi(w) / w, w its sequence ratio
        r = ratio
        if _is_vespo(gate):  # level="token" (check_method): log_ratio is the per-token one
            r = torch.where(finite.all(-1, keepdim=True), vespo_log_weight(log_ratio, keep, log_ratio_clamp).exp(),
                            math.nan)
        weight = TR.method_phi(gate.text, r, torch.sign(adv).expand_as(r), epsilon_low, epsilon_high) / r
    else:
        weight = gate.weight(ratio, _tau(adv, tau_pos, tau_neg))
    group = torch.zeros_like(advantages, dtype=torch.long) if groups is None else groups.to(torch.long)
    return MetricTokens(*(x.expand(keep.shape)[keep] for x in (ratio, weight, torch.sign(adv).to(torch.int8),
                                                               group.unsqueeze(1))))


# ---------------------------------------------------------------------------------------------
# Argument checks: every bad input is a ValueError (a TypeError for a wrong type) naming the argument and what
# is allowed; numbers and choices through sapo_core.checks.
# ---------------------------------------------------------------------------------------------

def _check_length(max_completion_length, length):
    """Dr. GRPO's L: an int, no shorter than the completions (length T of the mask)."""
    if not (isinstance(max_completion_length, int) and not isinstance(max_completion_length, bool)
            and max_completion_length >= max(length, 1)):
        raise ValueError(f"max_completion_length must be an int >= the completion length {length} (required by "
                         f"aggregation='seq_mean_token_sum_norm'), got {max_completion_length!r}")


def _bool_mask(mask: torch.Tensor) -> torch.Tensor:
    """The mask as bool, after checking that it holds only 0 and 1."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.is_complex():  # 0 and 1 exactly: a float mask must equal its own bool
        valid = torch.equal(mask.bool().to(mask.dtype), mask)
    elif mask.numel() == 0:
        valid = True
    else:  # an integer mask: its least and largest values bound it (one pass, no copy, one device sync)
        lo, hi = torch.aminmax(mask)
        valid = bool((lo >= 0) & (hi <= 1))
    if not valid:
        raise ValueError("mask must hold only 0 and 1 (bool, integer or float), got other values: "
                         f"{mask[(mask != 0) & (mask != 1)].unique()[:5].tolist()}")
    return mask.bool()


def _check_args(logps, old_logps, advantages, mask, gate, tau_pos, tau_neg, epsilon_low, epsilon_high,
                level, aggregation, log_ratio_clamp, max_completion_length, compute_metrics, token_weights, groups):
    """Validate policy_loss's arguments; returns the gate as a Gate, or a trust-region method's parsed spec."""
    if isinstance(gate, GateSpec):  # policy_loss hands its parsed method to metric_tokens
        gate = gate.text
    if G.is_method(gate):
        gate = G.parse_spec(gate)  # refuses an unknown or out-of-bounds parameter by name
    elif not isinstance(gate, Gate):
        if not isinstance(gate, str) or gate not in available_gates():
            raise ValueError(f"unknown gate {gate!r}; allowed: a trust-region method ({', '.join(G.METHODS)}, "
                             f"e.g. 'cispo:eps_max=5'), a registered gate ({', '.join(available_gates())}) or a "
                             "sapo_core.gates.Gate")
        gate = get_gate(gate)
    check_choice("level", level, LEVELS)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    for name, value in (("tau_pos", tau_pos), ("tau_neg", tau_neg), ("log_ratio_clamp", log_ratio_clamp)):
        check_positive(name, value)
    for name, value in (("tau_pos", tau_pos), ("tau_neg", tau_neg)):
        if not FLOAT32.tiny <= value <= FLOAT32.max:  # it would round to 0 or inf in float32
            raise ValueError(f"{name} must lie in float32's positive range [{FLOAT32.tiny:.4g}, {FLOAT32.max:.4g}], "
                             f"got {value!r}")
    if log_ratio_clamp > MAX_LOG_RATIO_CLAMP:  # method §7.3: exp(c) must stay finite in float32
        raise ValueError(f"log_ratio_clamp must be at most log(float32 max) = {MAX_LOG_RATIO_CLAMP:.4f} (exp of a "
                         f"larger clamp overflows to inf), got {log_ratio_clamp!r}")
    for name, value in (("epsilon_low", epsilon_low), ("epsilon_high", epsilon_high)):
        check_positive(name, value, strict=False)
    if isinstance(gate, GateSpec):
        check_method(gate.text, epsilon_high, level)
    if not isinstance(compute_metrics, bool):
        raise TypeError(f"compute_metrics must be True or False, got {compute_metrics!r}")
    for name, t in (("logps", logps), ("old_logps", old_logps), ("advantages", advantages), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if logps.dim() != 2 or not logps.is_floating_point():
        raise ValueError(f"logps must be a floating (B, T) tensor, got {logps.dtype} of shape {tuple(logps.shape)}")
    shape = tuple(logps.shape)
    if aggregation == "seq_mean_token_sum_norm":
        _check_length(max_completion_length, shape[1])
    elif max_completion_length is not None and (isinstance(max_completion_length, bool)
                                                or not isinstance(max_completion_length, int)
                                                or max_completion_length < 1):
        raise ValueError(f"max_completion_length must be None or a positive int, got {max_completion_length!r}")
    for name, t in (("old_logps", old_logps), ("mask", mask)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have the shape of logps {shape}, got {tuple(t.shape)}")
    if tuple(advantages.shape) != shape[:1]:
        raise ValueError(f"advantages must have shape (B,) = {shape[:1]}, got {tuple(advantages.shape)}")
    if old_logps.dtype != logps.dtype:
        raise ValueError(f"old_logps must have the dtype of logps ({logps.dtype}), got {old_logps.dtype}")
    if not advantages.is_floating_point():
        raise ValueError(f"advantages must be a floating tensor, got {advantages.dtype}")
    if token_weights is not None and (not isinstance(token_weights, torch.Tensor)
                                      or not token_weights.is_floating_point()
                                      or tuple(token_weights.shape) not in (shape, (shape[0], 1))):
        got = getattr(token_weights, "shape", type(token_weights).__name__)
        raise ValueError(f"token_weights must be None or a floating tensor of shape {shape} or {(shape[0], 1)}, "
                         f"got {tuple(got) if isinstance(got, torch.Size) else got}")
    for name, t in (("old_logps", old_logps), ("advantages", advantages), ("mask", mask),
                    ("token_weights", token_weights)):
        if t is not None and t.device != logps.device:
            raise ValueError(f"{name} must be on the device of logps ({logps.device}), got {t.device}")
    if groups is not None and (not isinstance(groups, torch.Tensor) or groups.is_floating_point()
                               or groups.is_complex() or groups.dtype == torch.bool
                               or tuple(groups.shape) != shape[:1] or groups.device != logps.device):
        got = (f"{groups.dtype} of shape {tuple(groups.shape)} on {groups.device}"
               if isinstance(groups, torch.Tensor) else type(groups).__name__)
        raise ValueError(f"groups must be None or an integer tensor of shape {shape[:1]} on {logps.device} (the "
                         f"prompt group of each completion), got {got}")
    if token_weights is not None and not bool(torch.isfinite(token_weights).all()):
        raise ValueError("token_weights must be finite everywhere (masked positions included), got "
                         f"{token_weights[~torch.isfinite(token_weights)][0].item()}")
    return gate
