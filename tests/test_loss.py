"""policy_loss (method §1, §2, §4): exact gradients for every gate against an independent literal reference,
TRL 1.16.0 parity, GSPO sequence level, extreme and non-finite inputs, metrics and argument errors."""

import importlib.metadata
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from sapo_core import gates as G
from sapo_core.loss import (
    AGGREGATIONS,
    METRIC_KEYS,
    MetricTokens,
    importance_log_ratio,
    masked_aggregate,
    metric_tokens,
    policy_loss,
    token_metrics,
)

SMOOTH = G.available_gates()          # closed-form g: autograd of f(r) is the reference
STUDENT_T = G.student_t(3.0)          # a Gate object whose g is integrated numerically
ALL_GATES = SMOOTH + ["clip"]
L_MAX = 16                            # max_completion_length for Dr. GRPO
TAU_POS, TAU_NEG = 1.0, 1.05


def batch(dtype=torch.float64, seed=0, rows=6, length=L_MAX, spread=0.3, mask_dtype=torch.bool):
    """(logps, old_logps, advantages, mask): varied lengths, one all-masked row, one A == 0 row."""
    gen = torch.Generator().manual_seed(seed)
    old = -3.0 * torch.rand(rows, length, generator=gen, dtype=torch.float64)
    logps = old + spread * torch.randn(rows, length, generator=gen, dtype=torch.float64)
    adv = torch.randn(rows, generator=gen, dtype=torch.float64)
    adv[1] = 0.0
    lengths = torch.randint(1, length + 1, (rows,), generator=gen)
    lengths[2] = 0                                   # all-masked row
    mask = torch.arange(length) < lengths[:, None]
    return (logps.to(dtype).requires_grad_(), old.to(dtype), adv.to(dtype), mask.to(mask_dtype))


def grad(loss, logps):
    (g,) = torch.autograd.grad(loss, logps)
    return g


def taus(adv):
    """tau_pos where A > 0 else tau_neg, (B, 1), in adv's dtype."""
    return torch.full_like(adv, TAU_NEG).masked_fill_(adv > 0, TAU_POS)[:, None]


# ---------------------------------------------------------------------------------------------
# The independent reference: the literal value expression A f(r), differentiated by autograd,
# aggregated by explicit per-token weights (nothing from sapo_core.loss).
# ---------------------------------------------------------------------------------------------

def token_weight(mask, aggregation):
    """W_i: the weight of one unmasked token of row i in each aggregation (method §1, DAPO, Dr. GRPO)."""
    m = mask.to(torch.float64)
    n, rows = m.sum(-1, keepdim=True), m.shape[0]
    if aggregation == "seq_mean_token_mean":
        return 1.0 / (n.clamp(min=1) * rows)
    if aggregation == "token_mean":
        return 1.0 / m.sum().clamp(min=1)
    return torch.tensor(1.0 / (rows * L_MAX), dtype=torch.float64)


def reference_ratio(logps, old, mask, level):
    """r = exp(log pi_theta - log pi_old) per token, or GSPO's exp(mean_t log r) on every token of a row."""
    m = mask.to(torch.float64)
    log_r = logps - old
    if level == "sequence":
        log_r = ((log_r * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)).expand_as(m)
    return log_r.exp()


def reference_loss(gate, level, aggregation, logps, old, adv, mask, token_weights=None):
    """-sum_{i,t} m W_i A_i f(r_{i,t}) (times the token weight), with f's value expression under autograd."""
    r, a = reference_ratio(logps, old, mask, level), adv[:, None]
    if gate == "clip":
        per_token = torch.minimum(r * a, r.clamp(0.8, 1.2) * a)
    else:
        tau = taus(adv)
        per_token = a * (1.0 + G.get_gate(gate).g(tau * (r - 1.0)) / tau)   # method §2: f_tau(x)
    if token_weights is not None:
        per_token = per_token * token_weights
    return -(per_token * mask.to(torch.float64) * token_weight(mask, aggregation)).sum()


def assert_same_gradient(g, g_ref, mask):
    """Zero on masked tokens, and relative error < 1e-9 token by token (exact zeros must match)."""
    assert torch.all(g[~mask] == 0)
    err = (g - g_ref).abs()[mask]
    assert torch.all(err <= 1e-9 * g_ref.abs()[mask]), err.max().item()


# ---------------------------------------------------------------------------------------------
# Exact value and gradient (method §2): every gate x level x aggregation.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("gate", ALL_GATES)
def test_value_and_gradient_equal_the_literal_reference(gate, level, aggregation):
    logps, old, adv, mask = batch(seed=1, spread=0.5)
    loss, _ = policy_loss(logps, old, adv, mask, gate=gate, level=level, aggregation=aggregation,
                          max_completion_length=L_MAX, compute_metrics=False)
    reference = reference_loss(gate, level, aggregation, logps, old, adv, mask)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12, abs=1e-15)
    assert_same_gradient(grad(loss, logps), grad(reference, logps), mask)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_numerically_integrated_gate_gets_the_closed_form_gradient(level, aggregation):
    """A gate given by g' alone: d loss / d logp_{i,t} = -m A_i g'(tau_i (r - 1)) r W_i (method §2)."""
    logps, old, adv, mask = batch()
    loss, _ = policy_loss(logps, old, adv, mask, gate=STUDENT_T, level=level, aggregation=aggregation,
                          max_completion_length=L_MAX, compute_metrics=False)
    r, tau, a = reference_ratio(logps.detach(), old, mask, level), taus(adv), adv[:, None]
    w, m = token_weight(mask, aggregation), mask.to(torch.float64)
    assert_same_gradient(grad(loss, logps), -a * STUDENT_T.g_prime(tau * (r - 1)) * r * w * m, mask)
    value = -(a * STUDENT_T.value(r, tau) * m * w).sum()
    assert loss.item() == pytest.approx(value.item(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("weight_shape", ["token", "row"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("gate", ["sigmoid", "arctan", "clip"])
def test_token_weights_multiply_the_per_token_objective(gate, level, weight_shape):
    """TRL's vLLM importance-sampling correction: per_token_loss * ratio (grpo_trainer.py:3147)."""
    logps, old, adv, mask = batch(seed=9, spread=0.5)
    gen = torch.Generator().manual_seed(9)
    tw = 0.5 + torch.rand(len(adv), L_MAX if weight_shape == "token" else 1, generator=gen, dtype=torch.float64)
    for aggregation in AGGREGATIONS:
        loss, _ = policy_loss(logps, old, adv, mask, gate=gate, level=level, aggregation=aggregation,
                              max_completion_length=L_MAX, compute_metrics=False, token_weights=tw)
        reference = reference_loss(gate, level, aggregation, logps, old, adv, mask, token_weights=tw)
        assert loss.item() == pytest.approx(reference.item(), rel=1e-12, abs=1e-15)
        assert_same_gradient(grad(loss, logps), grad(reference, logps), mask)


@pytest.mark.parametrize("gate", SMOOTH)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_on_policy_is_the_plain_policy_gradient(gate, dtype):
    logps, _, adv, mask = batch(dtype=dtype, seed=2)
    loss, _ = policy_loss(logps, logps.detach(), adv, mask, gate=gate, compute_metrics=False)
    m = mask.to(dtype)
    n = m.sum(-1, keepdim=True).clamp(min=1)
    expected = -adv[:, None] / (n * len(adv)) * m          # -A_i / (|o_i| G): g'(0) = 1 at r = 1
    torch.testing.assert_close(grad(loss, logps), expected, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)
    assert loss.item() == pytest.approx(-(adv * (m.sum(-1) > 0)).mean().item(), abs=1e-6)  # f(1) = 1


def test_old_logps_gets_the_opposite_gradient_and_no_grad_gives_the_same_value():
    logps, old, adv, mask = batch(seed=3)
    old = old.clone().requires_grad_()
    loss, _ = policy_loss(logps, old, adv, mask, compute_metrics=False)
    g_new, g_old = torch.autograd.grad(loss, (logps, old))
    torch.testing.assert_close(g_old, -g_new)
    with torch.no_grad():
        loss_ng, _ = policy_loss(logps, old, adv, mask, compute_metrics=False)
    assert not loss_ng.requires_grad and loss_ng.item() == loss.item()


# ---------------------------------------------------------------------------------------------
# Parity with TRL 1.16.0 (float32). GRPOTrainer._compute_loss needs a trainer and ~10 s of imports,
# so its expressions are reproduced here line by line; test_trl_source_lines_unchanged pins them to
# the installed file, and benchmarks/bench_loss.py checks them against the real method.
# ---------------------------------------------------------------------------------------------

TRL_FILE_LINES = {  # trl/trainer/grpo_trainer.py in trl 1.16.0
    3059: "advantages = advantages.unsqueeze(1)",
    3083: "log_ratio = per_token_logps - old_per_token_logps",
    3087: "log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)",
    3095: "coef_1 = torch.exp(log_importance_weights)",
    3113: "coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)",
    3120: "per_token_loss = -torch.min(per_token_loss1, per_token_loss2)",
    3122: "temperatures = torch.where(advantages > 0, self.args.sapo_temperature_pos, self.args.sapo_temperature_neg)",
    3123: "soft_coef_1 = torch.sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures",
    3124: "per_token_loss = -soft_coef_1 * advantages",
    3154: "loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()",
    3164: "loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * self.max_completion_length)",
    3170: 'normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes',
    3173: "loss = (per_token_loss * mask).sum() / normalizer",
}


def test_trl_source_lines_unchanged():
    assert importlib.metadata.version("trl") == "1.16.0"
    spec = importlib.util.find_spec("trl")  # locates the package without importing it
    lines = (Path(spec.origin).parent / "trainer" / "grpo_trainer.py").read_text().splitlines()
    for number, text in TRL_FILE_LINES.items():
        assert lines[number - 1].strip() == text, number


def trl_per_token_loss(loss_type, logps, old, adv, mask, level):
    """TRL 1.16.0 grpo_trainer.py:3058-3124, beta = 0, epsilon 0.2, SAPO temperatures 1.0 / 1.05."""
    advantages = adv.unsqueeze(1)                                                     # :3059
    log_ratio = logps - old                                                           # :3083
    if level == "token":
        log_importance_weights = log_ratio                                            # :3085
    else:
        log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # :3087
        log_importance_weights = log_importance_weights.unsqueeze(-1)                 # :3088
    coef_1 = torch.exp(log_importance_weights)                                        # :3095
    if loss_type == "grpo":
        coef_2 = torch.clamp(coef_1, 1 - 0.2, 1 + 0.2)                                # :3113
        return -torch.min(coef_1 * advantages, coef_2 * advantages)                   # :3118-3120
    temperatures = torch.where(advantages > 0, TAU_POS, TAU_NEG)                      # :3122
    soft_coef_1 = torch.sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures      # :3123
    return -soft_coef_1 * advantages                                                  # :3124


def trl_aggregate(per_token_loss, mask, aggregation, max_completion_length):
    """TRL 1.16.0's reductions: sapo/grpo :3154, dapo :3170-3173 (one micro-batch, eval), dr_grpo :3164."""
    if aggregation == "seq_mean_token_mean":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if aggregation == "token_mean":   # num_items_in_batch = mask.sum(), one process, eval mode
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("gate, loss_type", [("sigmoid", "sapo"), ("clip", "grpo")])
def test_parity_with_trl(gate, loss_type, level, aggregation):
    logps, old, adv, mask = batch(dtype=torch.float32, seed=4, rows=16, length=64, mask_dtype=torch.long)
    length = 96   # TRL pads completions to the longest one, at most max_completion_length
    loss, _ = policy_loss(logps, old, adv, mask, gate=gate, level=level, aggregation=aggregation,
                          max_completion_length=length, compute_metrics=False)
    per_token_trl = trl_per_token_loss(loss_type, logps, old, adv, mask, level)
    trl = trl_aggregate(per_token_trl, mask, aggregation, length)
    offset = 0.0
    if gate == "sigmoid":  # method §2: f = TRL's 4/tau sigmoid(tau (x-1)) + 1 - 2/tau, a constant per row
        offset = trl_aggregate(-adv[:, None] * (1 - 2 / taus(adv)), mask, aggregation, length).item()
    # relative to the size of the summands: the loss itself is a sum with cancellation
    scale = trl_aggregate(per_token_trl.detach().abs(), mask, aggregation, length).item()
    assert abs(loss.item() - trl.item() - offset) < 1e-6 * scale
    g, g_trl = grad(loss, logps), grad(trl, logps)
    assert (g - g_trl).abs().max().item() < 1e-6 * g_trl.abs().max().item()


# ---------------------------------------------------------------------------------------------
# The log-ratio (shared with the trainer's KL term) and the sequence level (GSPO).
# ---------------------------------------------------------------------------------------------

def test_importance_log_ratio_per_token_and_per_sequence():
    logps, old, adv, mask = batch(seed=5)
    logps, dirty_old = logps.detach(), old.clone()
    dirty_old[~mask] = math.nan                               # garbage where masked
    token = importance_log_ratio(logps, dirty_old, mask)
    assert token.shape == mask.shape
    torch.testing.assert_close(token[mask], (logps - old)[mask], rtol=0, atol=0)
    assert torch.all(token[~mask] == 0)
    sequence = importance_log_ratio(logps, dirty_old, mask, level="sequence")
    m = mask.to(torch.float64)
    expected = ((logps - old) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    assert sequence.shape == (len(adv), 1)
    torch.testing.assert_close(sequence, expected, rtol=1e-14, atol=0)
    clamped = importance_log_ratio(logps + 50.0 * (torch.arange(L_MAX) % 2 - 0.5), old, mask, log_ratio_clamp=2.0)
    assert clamped[mask].abs().max().item() == 2.0
    with pytest.raises(ValueError, match="level"):
        importance_log_ratio(logps, old, mask, level="word")


def test_policy_loss_gates_the_ratio_of_importance_log_ratio():
    """The loss and its metrics see exp(importance_log_ratio(...)), so the trainer's KL term can share it."""
    logps, old, adv, mask = batch(seed=5, spread=2.0)
    for level in ("token", "sequence"):
        r = importance_log_ratio(logps.detach(), old, mask, level=level, log_ratio_clamp=1.0).exp().expand_as(mask)
        tokens = metric_tokens(logps, old, adv, mask, level=level, log_ratio_clamp=1.0)
        assert sorted(tokens.ratio.tolist()) == sorted(r[mask].tolist())
        _, metrics = policy_loss(logps, old, adv, mask, level=level, log_ratio_clamp=1.0)
        assert metrics["ratio/max"] == pytest.approx(r[mask].max().item(), rel=1e-14)


def test_sequence_ratio_is_shared_by_the_tokens_of_a_row():
    logps, old, adv, mask = batch(seed=5)
    _, metrics = policy_loss(logps[:1], old[:1], adv[:1], mask[:1], level="sequence")
    direct = reference_ratio(logps.detach(), old, mask, "sequence")[0, 0].item()
    assert metrics["ratio/min"] == metrics["ratio/max"] == pytest.approx(direct, rel=1e-14)
    assert metrics["ratio/std"] == 0.0


# ---------------------------------------------------------------------------------------------
# Extreme and non-finite inputs (issue 11).
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gate", ALL_GATES + [STUDENT_T], ids=lambda g: getattr(g, "name", g))
def test_extreme_inputs_give_finite_loss_and_gradients(gate, dtype, level):
    gen = torch.Generator().manual_seed(6)
    rows, length = 6, 12
    extremes = torch.tensor([-1e4, -50.0, 50.0, 1e4, 0.1, -0.1], dtype=torch.float64)
    delta = extremes[torch.randint(0, len(extremes), (rows, length), generator=gen)]
    old = -5.0 * torch.rand(rows, length, generator=gen, dtype=torch.float64)
    mask = torch.rand(rows, length, generator=gen) > 0.3
    mask[0] = False                                       # all-masked row
    logps = old + delta
    logps[~mask] = -math.inf                              # garbage where masked
    old[~mask] = torch.tensor([math.nan, -math.inf, math.inf, 1e30])[torch.arange(int((~mask).sum())) % 4].double()
    logps = logps.to(dtype).requires_grad_()
    adv = torch.tensor([1.0, -2.0, 0.0, 0.5, -0.5, 3.0])
    for aggregation in AGGREGATIONS:
        loss, metrics = policy_loss(logps, old.to(dtype), adv, mask, gate=gate, level=level,
                                    aggregation=aggregation, max_completion_length=L_MAX)
        g = grad(loss, logps)
        assert torch.isfinite(loss) and torch.all(torch.isfinite(g)), aggregation
        assert g.dtype == dtype and torch.all(g[~mask] == 0)
        assert all(math.isfinite(v) for k, v in metrics.items()), metrics
        assert metrics["tokens/nonfinite_count"] == 0
    if level == "token":  # the clamp's gradient: zero where |log r| > 20
        assert torch.all(g[(delta.abs() > 20) & mask] == 0)


def test_metrics_ignore_masked_garbage():
    logps, old, adv, mask = batch(seed=7)
    _, clean = policy_loss(logps, old, adv, mask)
    dirty_logps, dirty_old = logps.detach().clone(), old.clone()
    dirty_logps[~mask], dirty_old[~mask] = math.nan, 1e30
    _, dirty = policy_loss(dirty_logps, dirty_old, adv, mask)
    assert dirty == clean


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["logps", "old_logps"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("gate", ["sigmoid", "clip"])
def test_non_finite_at_an_unmasked_token_stays_visible(gate, level, where, value):
    """Issue 11: a nan where the mask is 1 gives a nan loss and never silently becomes r = 1; every non-finite
    log-ratio at an unmasked token (+-inf too, which the clamp bounds) is counted and left out of the statistics."""
    logps, old, adv, mask = batch(seed=12)
    row = 0                                               # A != 0, at least one token
    assert adv[row] != 0 and mask[row].any()
    tensors = {"logps": logps.detach().clone(), "old_logps": old.clone()}
    tensors[where][row, 0] = value
    loss, metrics = policy_loss(tensors["logps"], tensors["old_logps"], adv, mask, gate=gate, level=level)
    assert math.isnan(loss.item()) == math.isnan(value)
    bad = 1 if level == "token" else int(mask[row].sum())   # GSPO: the whole row shares the ratio
    assert metrics["tokens/nonfinite_count"] == bad
    _, clean = policy_loss(logps, old, adv, mask, gate=gate, level=level)
    assert clean["tokens/nonfinite_count"] == 0
    assert metrics["tokens/count"] == clean["tokens/count"] - bad   # statistics over the finite tokens
    assert math.isfinite(metrics["ratio/max"]) and math.isfinite(metrics["gate_weight/mean"])
    pooled = token_metrics(metric_tokens(tensors["logps"], tensors["old_logps"], adv, mask, gate=gate, level=level))
    assert pooled == pytest.approx(metrics, rel=1e-12, nan_ok=True)


# ---------------------------------------------------------------------------------------------
# Metrics (method §4).
# ---------------------------------------------------------------------------------------------

def _quantile(values, q):
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def _sigmoid_weight(x, tau):
    z = tau * (x - 1)
    return 4 / ((1 + math.exp(-z)) * (1 + math.exp(z)))


@pytest.mark.parametrize("gate", ["sigmoid", "clip"])
def test_metrics_by_hand(gate):
    # row 0: A > 0, ratios 1.5, 0.5 (third token masked, garbage); row 1: A < 0, ratios 1.1, 0.7, 2.0;
    # row 2: A == 0, ratio 3.0 (overall only); row 3: A > 0, fully masked.
    ratios = [[1.5, 0.5, 9.0], [1.1, 0.7, 2.0], [3.0, 1.0, 1.0], [4.0, 4.0, 4.0]]
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    old = torch.full((4, 3), -2.0, dtype=torch.float64)
    logps = (old + torch.tensor(ratios, dtype=torch.float64).log()).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    _, m = policy_loss(logps, old, adv, mask, gate=gate)
    assert list(m) == list(METRIC_KEYS)
    assert m["tokens/nonfinite_count"] == 0
    groups = {"": ([1.5, 0.5, 1.1, 0.7, 2.0, 3.0], [1, 1, -1, -1, -1, 0]), "pos/": ([1.5, 0.5], [1, 1]),
              "neg/": ([1.1, 0.7, 2.0], [-1, -1, -1])}
    for prefix, (rs, signs) in groups.items():
        n = len(rs)
        mean = sum(rs) / n
        var = sum((x - mean) ** 2 for x in rs) / n
        if gate == "clip":   # sapo_core.gates.clip_weight: x <= 1.2 for A > 0, x >= 0.8 for A <= 0
            ws = [float(x <= 1.2) if s > 0 else float(x >= 0.8) for x, s in zip(rs, signs)]
        else:
            ws = [_sigmoid_weight(x, TAU_POS if s > 0 else TAU_NEG) for x, s in zip(rs, signs)]
        expected = {"tokens/count": n, "ratio/mean": mean, "ratio/std": math.sqrt(var), "ratio/var": var,
                    "ratio/min": min(rs), "ratio/max": max(rs), "ratio/p01": _quantile(rs, 0.01),
                    "ratio/p99": _quantile(rs, 0.99),
                    "ratio/outside_clip_frac": sum(x < 0.8 or x > 1.2 for x in rs) / n,
                    "gate_weight/mean": sum(ws) / n, "gate_weight/low_frac": sum(w < 0.5 for w in ws) / n}
        for key, value in expected.items():
            name = key.replace("/", "/" + prefix, 1)
            assert m[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_metrics_quantiles_match_torch_and_empty_groups_are_nan():
    logps, old, adv, mask = batch(seed=8, rows=8, length=300, spread=0.5)
    _, m = policy_loss(logps, old, adv.abs(), mask)   # no A < 0: the neg group is empty
    r = importance_log_ratio(logps.detach(), old, mask).exp()[mask]
    q = torch.quantile(r, torch.tensor([0.01, 0.99], dtype=torch.float64))
    assert m["ratio/p01"] == pytest.approx(q[0].item(), rel=1e-12)
    assert m["ratio/p99"] == pytest.approx(q[1].item(), rel=1e-12)
    assert m["tokens/neg/count"] == 0
    assert all(math.isnan(m[k]) for k in METRIC_KEYS if k.startswith(("ratio/neg/", "gate_weight/neg/")))
    assert policy_loss(logps, old, adv, mask, compute_metrics=False)[1] == {}


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("gate", ["erf", "clip"])
def test_pooled_metric_tokens_give_the_statistics_of_the_whole_batch(gate, level):
    """A step's metrics over its micro-batches (and processes) are those of the union of their tokens,
    not an average of per-micro-batch statistics."""
    logps, old, adv, mask = batch(seed=11, rows=8, spread=0.5)
    kw = {"gate": gate, "tau_pos": TAU_POS, "tau_neg": TAU_NEG, "level": level}
    _, whole = policy_loss(logps, old, adv, mask, **kw)
    assert token_metrics(metric_tokens(logps, old, adv, mask, **kw)) == pytest.approx(whole, rel=1e-12,
                                                                                    nan_ok=True)
    parts = [metric_tokens(logps[i:i + 3], old[i:i + 3], adv[i:i + 3], mask[i:i + 3], **kw) for i in (0, 3, 6)]
    pooled = token_metrics(MetricTokens.cat(parts))
    assert pooled == pytest.approx(whole, rel=1e-12, nan_ok=True)
    per_part = [token_metrics(p) for p in parts]
    assert pooled["tokens/count"] == sum(m["tokens/count"] for m in per_part)
    assert pooled["ratio/min"] == min(m["ratio/min"] for m in per_part)
    if level == "token":  # the variance of the union is not the mean of the parts' variances
        assert pooled["ratio/var"] != pytest.approx(sum(m["ratio/var"] for m in per_part) / 3, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# EUR, the effective update ratio (method §4.1, paper v2 eq. 12), against a literal loop.
# ---------------------------------------------------------------------------------------------

def literal_eur(logps, old, adv, mask, groups, gate, sign=None, eps=0.2):
    """1/B sum_b [ sum_{j in b} sum_k f'(r_jk) / sum_{j in b} |o_j| ] over the prompts b with tokens (of `sign`:
    +1 for A > 0, -1 for A < 0), looping over prompts, completions and tokens in float64."""
    per_prompt = {}
    for j in range(len(adv)):
        a = float(adv[j])
        if sign is not None and not a * sign > 0:    # A > 0 for sign +1, A < 0 for sign -1
            continue
        tau = TAU_POS if a > 0 else TAU_NEG
        for k in range(len(mask[j])):
            if not mask[j][k]:
                continue
            r = math.exp(float(logps[j][k]) - float(old[j][k]))
            if gate == "clip":   # method eq. 2.3: 1 on the unclipped side, boundary included
                w = float(r <= 1 + eps) if a > 0 else float(r >= 1 - eps)
            else:
                w = G.get_gate(gate).weight(torch.tensor(r, dtype=torch.float64), tau).item()
            total, count = per_prompt.get(int(groups[j]), (0.0, 0))
            per_prompt[int(groups[j])] = (total + w, count + 1)
    if not per_prompt:
        return math.nan
    return sum(total / count for total, count in per_prompt.values()) / len(per_prompt)


def grouped_batch(seed, prompts=4, size=3, length=L_MAX, spread=0.4):
    """batch() with `prompts` groups of `size` consecutive completions, ids shuffled, one group all A = 0."""
    logps, old, adv, mask = batch(seed=seed, rows=prompts * size, length=length, spread=spread)
    adv = adv.clone()
    adv[:size] = 0.0                                   # a group whose rewards are all equal
    ids = torch.randperm(prompts, generator=torch.Generator().manual_seed(seed)) * 7 + 3  # arbitrary ids
    return logps.detach(), old, adv, mask, ids.repeat_interleave(size)


@pytest.mark.parametrize("gate", ["sigmoid", "erf", "arctan", "softsign", "clip"])
def test_eur_matches_a_literal_loop_over_prompts_completions_and_tokens(gate):
    logps, old, adv, mask, groups = grouped_batch(seed=21)
    _, m = policy_loss(logps, old, adv, mask, gate=gate, tau_pos=TAU_POS, tau_neg=TAU_NEG, groups=groups)
    for key, sign in (("eur", None), ("eur/pos", 1), ("eur/neg", -1)):
        assert m[key] == pytest.approx(literal_eur(logps, old, adv, mask, groups, gate, sign), rel=1e-12), key
    assert 0.0 < m["eur/neg"] < m["eur"] < 1.0  # off policy: below 1; A = 0 tokens count in eur only
    # a prompt's token mean, not a completion's: with the same tokens, one group per completion differs
    _, per_completion = policy_loss(logps, old, adv, mask, gate=gate, groups=torch.arange(len(adv)))
    assert per_completion["eur"] != pytest.approx(m["eur"], rel=1e-6)


def test_eur_is_one_on_policy_and_the_gate_weight_mean_for_one_prompt():
    logps, old, adv, mask, groups = grouped_batch(seed=22)
    _, on = policy_loss(old.clone(), old, adv, mask, gate="arctan", groups=groups)
    assert on["eur"] == on["eur/pos"] == on["eur/neg"] == 1.0
    _, one = policy_loss(logps, old, adv, mask, gate="arctan")  # groups=None: the B completions are one prompt
    assert one["eur"] == pytest.approx(one["gate_weight/mean"], rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_eur_of_clip_is_one_minus_the_clip_ratio(seed):
    """EUR(clip) = 1 - clip ratio, the clip ratio taken per prompt then over prompts; clipped means A > 0 and
    r > 1 + eps_high, or A <= 0 and r < 1 - eps_low (method §4.1); for one prompt, 1 - gate_weight/low_frac."""
    logps, old, adv, mask, groups = grouped_batch(seed=100 + seed, spread=0.5)
    _, m = policy_loss(logps, old, adv, mask, gate="clip", epsilon_low=0.2, epsilon_high=0.28, groups=groups)
    r = (logps - old).exp()
    a = adv[:, None].expand_as(r)
    clipped = ((a > 0) & (r > 1.28)) | ((a <= 0) & (r < 0.8))
    shares = [clipped[(groups == g)[:, None] & mask].double().mean() for g in groups.unique()]
    assert m["eur"] == pytest.approx(1.0 - sum(shares).item() / len(shares), rel=1e-12)
    _, one = policy_loss(logps, old, adv, mask, gate="clip", epsilon_low=0.2, epsilon_high=0.28)
    assert one["eur"] == pytest.approx(1.0 - one["gate_weight/low_frac"], rel=1e-12)
    assert one["eur"] == pytest.approx(1.0 - clipped[mask].double().mean().item(), rel=1e-12)


def test_eur_is_pooled_exactly_across_micro_batches_of_different_lengths():
    """Two micro-batches (lengths 16 and 9) with one prompt group split across them give the step's EUR, that
    of the union of their tokens, not the mean of the two micro-batches' values."""
    logps, old, adv, mask, groups = grouped_batch(seed=23, prompts=3, size=4)
    kw = {"gate": "softsign", "tau_pos": TAU_POS, "tau_neg": TAU_NEG}
    first = metric_tokens(logps[:6], old[:6], adv[:6], mask[:6], groups=groups[:6], **kw)  # group 2 split 2 + 2
    second = metric_tokens(logps[6:, :9], old[6:, :9], adv[6:], mask[6:, :9], groups=groups[6:], **kw)
    pooled = token_metrics(MetricTokens.cat([first, second]))
    short = mask.clone()
    short[6:, 9:] = False
    for key, sign in (("eur", None), ("eur/pos", 1), ("eur/neg", -1)):
        assert pooled[key] == pytest.approx(literal_eur(logps, old, adv, short, groups, "softsign", sign),
                                            rel=1e-12), key
    halves = [token_metrics(first)["eur"], token_metrics(second)["eur"]]
    assert pooled["eur"] != pytest.approx(sum(halves) / 2, rel=1e-6)


def test_eur_of_no_tokens_is_nan_and_a_prompt_without_tokens_is_left_out():
    logps, old, adv, mask, groups = grouped_batch(seed=24)
    _, m = policy_loss(logps, old, adv, torch.zeros_like(mask), groups=groups)
    assert math.isnan(m["eur"]) and m["tokens/count"] == 0
    emptied = mask.clone()
    emptied[groups == groups[-1]] = False           # the last prompt's completions are all empty
    _, m = policy_loss(logps, old, adv, emptied, gate="erf", groups=groups)
    assert m["eur"] == pytest.approx(literal_eur(logps, old, adv, emptied, groups, "erf"), rel=1e-12)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_no_completions_give_loss_zero_like_an_all_masked_batch(aggregation):
    logps = torch.zeros(0, 5, requires_grad=True)
    loss, m = policy_loss(logps, logps.detach(), torch.zeros(0), torch.zeros(0, 5, dtype=torch.bool),
                          aggregation=aggregation, max_completion_length=5)
    loss.backward()
    assert loss.item() == 0.0 and m["tokens/count"] == 0.0 and logps.grad.shape == (0, 5)
    masked, _ = policy_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(2), torch.zeros(2, 5),
                            aggregation=aggregation, max_completion_length=5)
    assert masked.item() == loss.item()


# ---------------------------------------------------------------------------------------------
# Argument errors name the argument.
# ---------------------------------------------------------------------------------------------

def _good():
    logps, old, adv, mask = batch(dtype=torch.float32, rows=3, length=4)
    return {"logps": logps, "old_logps": old, "advantages": adv, "mask": mask}


@pytest.mark.parametrize("change, match", [
    ({"gate": "tanh"}, "gate 'tanh'.*clip.*sigmoid"),
    ({"gate": 3}, "gate 3"),
    ({"level": "word"}, "level 'word'.*'token', 'sequence'"),
    ({"aggregation": "sum"}, "aggregation 'sum'.*seq_mean_token_mean"),
    ({"tau_pos": 0.0}, "tau_pos"),
    ({"tau_neg": -1.0}, "tau_neg"),
    ({"tau_pos": math.nan}, "tau_pos"),
    ({"epsilon_low": -0.1}, "epsilon_low"),
    ({"epsilon_high": math.inf}, "epsilon_high"),
    ({"log_ratio_clamp": 0}, "log_ratio_clamp"),
    ({"log_ratio_clamp": 88.8}, "log_ratio_clamp must be at most log\\(float32 max\\) = 88.72"),
    ({"tau_pos": 3.5e38}, "tau_pos must lie in float32's positive range"),
    ({"tau_neg": 1e-39}, "tau_neg must lie in float32's positive range"),
    ({"groups": torch.zeros(3)}, "groups must be None or an integer tensor of shape \\(3,\\)"),
    ({"groups": torch.zeros(2, dtype=torch.long)}, "groups must be None or an integer tensor"),
    ({"groups": torch.zeros(3, dtype=torch.bool)}, "groups"),
    ({"aggregation": "seq_mean_token_sum_norm"}, "max_completion_length"),
    ({"aggregation": "seq_mean_token_sum_norm", "max_completion_length": 0}, "max_completion_length"),
    ({"aggregation": "seq_mean_token_sum_norm", "max_completion_length": 3}, "max_completion_length.*>= .* 4"),
    ({"max_completion_length": 2.5}, "max_completion_length"),
    ({"logps": torch.zeros(3, 4, 1)}, "logps"),
    ({"logps": torch.zeros(3, 4, dtype=torch.long)}, "logps"),
    ({"old_logps": torch.zeros(3, 5)}, "old_logps"),
    ({"old_logps": torch.zeros(3, 4, dtype=torch.float64)}, "old_logps.*dtype"),
    ({"mask": torch.ones(2, 4, dtype=torch.bool)}, "mask"),
    ({"mask": torch.full((3, 4), 0.5)}, "mask must hold only 0 and 1.*0.5"),
    ({"mask": 2 * torch.ones(3, 4, dtype=torch.long)}, "mask must hold only 0 and 1.*2"),
    ({"advantages": torch.zeros(3, 4)}, "advantages"),
    ({"advantages": torch.zeros(3, dtype=torch.long)}, "advantages"),
    ({"token_weights": torch.ones(3, 2)}, "token_weights"),
    ({"token_weights": torch.ones(3, 4, dtype=torch.long)}, "token_weights"),
    ({"token_weights": torch.tensor([[1.0], [math.inf], [1.0]])}, "token_weights must be finite.*inf"),
    ({"token_weights": torch.full((3, 4), math.nan)}, "token_weights must be finite.*nan"),
])
def test_bad_arguments_raise_value_error_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        policy_loss(**(_good() | change))


@pytest.mark.parametrize("change, match", [
    ({"compute_metrics": "yes"}, "compute_metrics must be True or False"),
    ({"advantages": [1.0, 2.0]}, "advantages must be a torch.Tensor"),
    ({"mask": [[1, 1, 1, 1]] * 3}, "mask must be a torch.Tensor"),
])
def test_arguments_of_the_wrong_type_raise_type_error_naming_them(change, match):
    with pytest.raises(TypeError, match=match):
        policy_loss(**(_good() | change))


def test_masked_aggregate_refuses_bad_aggregations_and_short_lengths():
    x, mask = torch.ones(2, 4), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="aggregation 'sum'"):
        masked_aggregate(x, mask, "sum")
    with pytest.raises(ValueError, match="max_completion_length must be an int >= the completion length 4"):
        masked_aggregate(x, mask, "seq_mean_token_sum_norm", 3)
    assert masked_aggregate(x, mask, "seq_mean_token_sum_norm", 4).item() == 1.0


def test_float_and_integer_masks_of_zeros_and_ones_are_accepted():
    logps, old, adv, mask = batch(seed=13)
    losses = [policy_loss(logps, old, adv, mask.to(dtype))[0].item()
              for dtype in (torch.bool, torch.long, torch.float32)]
    assert losses[0] == losses[1] == losses[2]
