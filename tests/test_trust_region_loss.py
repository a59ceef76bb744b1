"""Trust-region methods as losses (method §2.8): delta, cispo and vespo equal TRL 1.16's own
`GRPOTrainer._compute_loss` in value and gradient; CE-GPPO equals a literal float64 loop; their metrics use
f' = phi(r) / r of sapo_core.trust_region; bad parameters are refused by name; each method trains."""

import json
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from sapo_core import gates as G
from sapo_core import trust_region as TR
from sapo_core.config import ConfigError
from sapo_core.loss import AGGREGATIONS, metric_tokens, policy_loss, vespo_log_weight
from sapo_core.recipe import parse_args

EPS = 0.2


def batch(dtype=torch.float32, seed=0, rows=12, length=24, spread=0.6):
    """Log-probs with ratios well outside every trust region, mixed-sign advantages (one A = 0), a ragged mask."""
    gen = torch.Generator().manual_seed(seed)
    old = (-3.0 * torch.rand(rows, length, generator=gen, dtype=torch.float64)).to(dtype)
    logps = (old + spread * torch.randn(rows, length, generator=gen, dtype=torch.float64).to(dtype))
    adv = torch.randn(rows, generator=gen, dtype=torch.float64).to(dtype)
    adv[3] = 0.0
    lengths = torch.randint(1, length + 1, (rows,), generator=gen)
    mask = (torch.arange(length) < lengths[:, None]).long()
    return logps.requires_grad_(), old, adv, mask


def value_and_grad(fn, logps):
    logps.grad = None
    loss = fn()
    loss.backward()
    return loss.detach(), logps.grad.clone()


def trl_loss(loss_type, logps, old, adv, mask, *, level="token", epsilon_high=EPS, delta=None, vespo=None):
    """TRL 1.16's own GRPOTrainer._compute_loss on a stub trainer that hands it `logps` (eval mode, one process,
    beta = 0), as benchmarks/bench_loss.py calls it."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    def same(t, **_):  # one process: gather and reduce are the identity
        return t

    vespo = vespo or G.METHODS["vespo"].defaults
    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        get_gamma_weights=GRPOTrainer.get_gamma_weights,  # a staticmethod: TRL's own VESPO weight
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level,
        loss_type=loss_type, epsilon_low=EPS, epsilon_high=epsilon_high, beta=0.0, use_vllm=False,
        args=SimpleNamespace(delta=delta, **{f"vespo_{key}": value for key, value in vespo.items()}),
        model=SimpleNamespace(training=False), current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(gather=same, reduce=same, gather_for_metrics=same, num_processes=1))
    ids = torch.zeros_like(mask)
    inputs = {"prompt_ids": ids[:, :1], "prompt_mask": mask[:, :1], "completion_ids": ids,
              "completion_mask": mask, "advantages": adv, "old_per_token_logps": old,
              "num_items_in_batch": mask.sum()}
    return GRPOTrainer._compute_loss(stub, None, inputs)


def assert_parity(ours, trl, logps):
    v, g = value_and_grad(ours, logps)
    v_trl, g_trl = value_and_grad(trl, logps)
    assert abs(v.item() - v_trl.item()) <= 1e-6 * max(1.0, abs(v_trl.item())), (v.item(), v_trl.item())
    assert (g - g_trl).abs().max().item() <= 1e-6 * g_trl.abs().max().item()
    assert g_trl.abs().max().item() > 0


# ---------------------------------------------------------------------------------------------
# Parity with TRL 1.16.0's own code path.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("spec, eps_max", [("cispo", 5.0), ("cispo:eps_max=1.3", 1.3)])
def test_cispo_equals_trls_cispo(spec, eps_max, level):
    logps, old, adv, mask = batch(seed=1)
    assert_parity(lambda: policy_loss(logps, old, adv, mask, gate=spec, level=level, aggregation="token_mean",
                                      compute_metrics=False)[0],
                  lambda: trl_loss("cispo", logps, old, adv, mask, level=level, epsilon_high=eps_max), logps)


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("spec, delta, epsilon_high", [("delta", 4.0, EPS), ("delta:delta=1.5", 1.5, 0.28)])
def test_two_sided_clip_equals_trls_delta(spec, delta, epsilon_high, level):
    logps, old, adv, mask = batch(seed=2, spread=1.0)
    ratio = (logps - old).exp()
    assert bool(((ratio > delta) & (adv[:, None] < 0) & mask.bool()).any())  # the clamp at delta binds somewhere
    assert_parity(lambda: policy_loss(logps, old, adv, mask, gate=spec, level=level, epsilon_high=epsilon_high,
                                      compute_metrics=False)[0],
                  lambda: trl_loss("grpo", logps, old, adv, mask, level=level, epsilon_high=epsilon_high,
                                   delta=delta), logps)


@pytest.mark.parametrize("spec, params", [
    ("vespo", G.METHODS["vespo"].defaults),
    ("vespo:k_pos=1,lambda_pos=0.5,k_neg=2.5,lambda_neg=4",
     {"k_pos": 1.0, "lambda_pos": 0.5, "k_neg": 2.5, "lambda_neg": 4.0})])
def test_vespo_equals_trls_vespo(spec, params):
    logps, old, adv, mask = batch(seed=3, spread=0.05)  # sequence ratios w = exp(sum_t log r_t) near 1
    assert_parity(lambda: policy_loss(logps, old, adv, mask, gate=spec, aggregation="token_mean",
                                      compute_metrics=False)[0],
                  lambda: trl_loss("vespo", logps, old, adv, mask, vespo=params), logps)


def test_clip_is_still_trls_grpo():
    logps, old, adv, mask = batch(seed=4)
    assert_parity(lambda: policy_loss(logps, old, adv, mask, gate="clip", compute_metrics=False)[0],
                  lambda: trl_loss("grpo", logps, old, adv, mask), logps)


# ---------------------------------------------------------------------------------------------
# CE-GPPO against a literal float64 loop (arXiv:2509.20712 as method §2.8 writes it).
# ---------------------------------------------------------------------------------------------

def ce_gppo_literal(logps, old, adv, mask, beta1, beta2, eps_low, eps_high):
    """Value and d value / d logp of -1/B sum_i 1/|o_i| sum_t l_{i,t}, token by token in Python floats:
    l = beta1 (1 - eps_low) r / sg(r) A (A < 0, r < 1 - eps_low), beta2 (1 + eps_high) r / sg(r) A (A > 0,
    r > 1 + eps_high), else r A; d (r / sg(r)) / d logp = 1 and d r / d logp = r."""
    rows, length = len(logps), len(logps[0])
    value, grad = 0.0, [[0.0] * length for _ in range(rows)]
    for i in range(rows):
        n = sum(mask[i])
        for t in range(length):
            if not mask[i][t]:
                continue
            r, a = math.exp(logps[i][t] - old[i][t]), adv[i]
            if a < 0 and r < 1 - eps_low:
                term, slope = beta1 * (1 - eps_low) * a, beta1 * (1 - eps_low) * a
            elif a > 0 and r > 1 + eps_high:
                term, slope = beta2 * (1 + eps_high) * a, beta2 * (1 + eps_high) * a
            else:
                term, slope = r * a, r * a
            value -= term / n / rows
            grad[i][t] = -slope / n / rows
    return value, grad


@pytest.mark.parametrize("spec, beta1, beta2", [("ce_gppo", 0.5, 1.0), ("ce_gppo:beta1=0.75,beta2=0.25", 0.75, 0.25),
                                                ("ce_gppo:beta1=0,beta2=0", 0.0, 0.0)])
def test_ce_gppo_equals_a_literal_float64_loop(spec, beta1, beta2):
    logps, old, adv, mask = batch(dtype=torch.float64, seed=5)
    v, g = value_and_grad(lambda: policy_loss(logps, old, adv, mask, gate=spec, epsilon_high=0.28,
                                              compute_metrics=False)[0], logps)
    v_ref, g_ref = ce_gppo_literal(logps.tolist(), old.tolist(), adv.tolist(), mask.tolist(), beta1, beta2, EPS, 0.28)
    assert v.item() == pytest.approx(v_ref, rel=1e-12, abs=1e-14)
    torch.testing.assert_close(g, torch.tensor(g_ref, dtype=torch.float64), rtol=1e-12, atol=1e-15)


def test_ce_gppo_with_zero_betas_is_grpo_in_gradient():
    """beta1 = beta2 = 0 gives clipped tokens no gradient, exactly as hard clipping (method §2.4)."""
    logps, old, adv, mask = batch(dtype=torch.float64, seed=6)
    _, g = value_and_grad(lambda: policy_loss(logps, old, adv, mask, gate="ce_gppo:beta1=0,beta2=0",
                                              compute_metrics=False)[0], logps)
    _, g_clip = value_and_grad(lambda: policy_loss(logps, old, adv, mask, gate="clip", compute_metrics=False)[0],
                               logps)
    torch.testing.assert_close(g, g_clip, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Metrics: f' = phi(r) / r (method §2.8), so EUR is comparable with the gates'.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["clip", "delta", "cispo:eps_max=1.1", "ce_gppo", "vespo"])
def test_gate_weight_is_phi_over_r_of_trust_region(spec):
    logps, old, adv, mask = batch(dtype=torch.float64, seed=7, spread=0.3)
    tokens = metric_tokens(logps.detach(), old, adv, mask, gate=spec)
    keep = mask.bool()
    r = (logps.detach() - old).exp()
    if spec == "vespo":  # the sequence ratio w = exp(sum_t log r_t), for every token of the row
        r = vespo_log_weight(torch.where(keep, logps.detach() - old, 0.0), keep).exp().expand_as(r)
    sign = torch.sign(adv)[:, None].expand_as(r)
    expected = TR.method_phi(spec, r, sign) / r
    torch.testing.assert_close(tokens.weight, expected[keep])
    assert float(tokens.weight.min()) < 1.0  # the methods act on this batch
    _, metrics = policy_loss(logps, old, adv, mask, gate=spec)
    assert metrics["gate_weight/mean"] == pytest.approx(float(expected[keep].mean()))
    assert metrics["eur"] == pytest.approx(float(expected[keep].mean()))  # one prompt group: EUR is that mean


def test_eur_of_a_method_is_its_token_mean_of_phi_over_r_for_one_prompt():
    logps, old, adv, mask = batch(dtype=torch.float64, seed=8, spread=0.5)
    _, metrics = policy_loss(logps, old, adv, mask, gate="cispo:eps_max=1.2")
    r = (logps.detach() - old).exp()[mask.bool()]
    assert metrics["eur"] == pytest.approx(float((r.clamp(max=1.2) / r).mean()))  # one prompt group
    assert metrics["eur"] < 1.0


def test_method_rows_of_the_table_are_the_losses_weights():
    """trust_region's table rows and the loss's metrics share one phi per method (at eps = 0.2, defaults)."""
    r = torch.tensor([0.05, 0.5, 0.79, 1.0, 1.21, 3.0, 4.5, 6.0, 50.0], dtype=torch.float64)
    for row, spec in ((("clip (GRPO/PPO)", "A < 0"), "clip"), (("two-sided clip (TRL delta)", "A < 0"), "delta"),
                      (("CISPO", "both"), "cispo"), (("CE-GPPO (beta1 = 0.5, beta2 = 1)", "A < 0"), "ce_gppo"),
                      (("VESPO (TRL 1.16 defaults)", "A > 0"), "vespo")):
        method = next(m for m in TR.METHODS if (m.name, m.sign) == row)
        sign = torch.full_like(r, 1.0 if row[1] == "A > 0" else -1.0)
        torch.testing.assert_close(method.phi(r), TR.method_phi(spec, r, sign))


@pytest.mark.parametrize("spec", ["delta", "cispo", "ce_gppo", "vespo"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_extreme_inputs_and_masked_garbage_give_finite_loss_and_zero_masked_gradient(spec, dtype):
    gen = torch.Generator().manual_seed(9)
    rows, length = 6, 12
    extremes = torch.tensor([-1e4, -50.0, 50.0, 1e4, 0.1, -0.1], dtype=torch.float64)
    old = -5.0 * torch.rand(rows, length, generator=gen, dtype=torch.float64)
    mask = torch.rand(rows, length, generator=gen) > 0.3
    mask[0] = False
    logps = (old + extremes[torch.randint(0, 6, (rows, length), generator=gen)]).clamp(max=0.0)
    logps[~mask] = -math.inf
    old[~mask] = math.nan
    logps = logps.to(dtype).requires_grad_()
    adv = torch.tensor([1.0, -2.0, 0.0, 0.5, -0.5, 3.0])
    for aggregation in AGGREGATIONS:
        loss, metrics = policy_loss(logps, old.to(dtype), adv, mask, gate=spec, aggregation=aggregation,
                                    max_completion_length=16)
        (g,) = torch.autograd.grad(loss, logps)
        assert torch.isfinite(loss) and bool(torch.isfinite(g).all()) and bool((g[~mask] == 0).all()), aggregation
        assert all(math.isfinite(v) for v in metrics.values()), metrics


# ---------------------------------------------------------------------------------------------
# Bad parameters, refused by name.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, kwargs, message", [
    ("cispo:eps_max=-1", {}, "eps_max must be finite and > 0"),
    ("cispo:eps_max=inf", {}, "eps_max must be finite and > 0"),
    ("cispo:epsmax=5", {}, "parameter 'epsmax' is unknown.*cispo takes eps_max"),
    ("cispo:eps_max=5,eps_max=6", {}, "'eps_max' is unknown, malformed or given twice"),
    ("cispo:eps_max=five", {}, "eps_max='five' is not a number"),
    ("delta:delta=1", {}, "delta must be finite and > 1"),
    ("delta:delta=1.2", {"epsilon_high": 0.28}, r"delta must be > 1 \+ epsilon_high = 1.28, got 1.2"),
    ("ce_gppo:beta1=-0.5", {}, "beta1 must be finite and >= 0"),
    ("ce_gppo:beta3=1", {}, "ce_gppo takes beta1, beta2"),
    ("vespo:lambda_pos=0", {}, "lambda_pos must be finite and > 0"),
    ("vespo:k_neg=-1", {}, "k_neg must be finite and >= 0"),
    ("vespo", {"level": "sequence"}, "needs level='token'"),
    ("clip:eps=0.3", {}, "clip takes no parameters"),
])
def test_bad_method_parameters_are_refused_by_name(spec, kwargs, message):
    logps, old, adv, mask = batch()
    with pytest.raises(ValueError, match=message):
        policy_loss(logps, old, adv, mask, gate=spec, **kwargs)


@pytest.mark.parametrize("flags, message", [
    (["--gate", "delta:delta=1.1"], r"delta must be > 1 \+ epsilon_high"),
    (["--gate", "vespo", "--importance_sampling_level", "sequence"], "needs level='token'"),
    (["--gate", "cispo:r_max=5"], "parameter 'r_max' is unknown"),
])
def test_the_recipe_refuses_them_before_any_run(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(tmp_path / "r"), *flags])


def test_methods_take_no_temperature_and_name_safe_run_directories():
    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--gate", "vespo:k_pos=1.5"])
    assert run.training.gate_taus() == (run.training.sapo_temperature_pos, run.training.sapo_temperature_neg)
    assert G.spec_slug("vespo:k_pos=1.5") == "vespo-k_pos1.5" and G.spec_slug("cispo:eps_max=5") == "cispo"
    assert all(G.is_method(name) for name in G.METHODS) and not G.is_method("erf")
    with pytest.raises(ValueError, match="'cispo' names a trust-region method"):
        G.register_gate(G.make_gate("cispo", lambda z: 1 / (1 + z**2)))


# ---------------------------------------------------------------------------------------------
# Each method trains (tests/test_train.py's smoke budget).
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("gate", ["delta", "cispo", "ce_gppo", "vespo"])
def test_each_method_trains_two_steps(tmp_path, gate):
    from test_train import smoke

    from sapo_core.train import read_metrics, train

    train(smoke(tmp_path / "run", gate=gate, eval_size=2, heldout_n=1))
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["eur"] == 1.0 and rows[1]["ratio/max"] > rows[1]["ratio/min"]  # the batch's reuse moved r
    assert math.isfinite(rows[1]["eur"]) and rows[1]["eur"] >= 0.0
    # f' = phi(r) / r is at most 1 for delta and cispo; CE-GPPO's beta1 (1 - eps) / r (A < 0) and VESPO's phi(w) / w
    # (peak e^2 / 3 at w = 1/3 for A >= 0) exceed 1 below r = 1, so their EUR may too (method §2.8, (ii))
    assert rows[1]["eur"] <= 1.0 or gate in ("ce_gppo", "vespo")
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["gate"] == gate and prov["tau_pos"] is None and prov["gate_formulas"]["name"] == gate
