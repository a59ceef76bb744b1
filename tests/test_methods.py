"""Trust-region methods through the gates' admissibility checker (method §2.8): each weight matches its
definition (TRL 1.16's code where TRL has the method), and docs/method.md's table is the checker's output."""

import pytest
import torch

from sapo_core import trust_region as T
from sapo_core.paths import REPO_ROOT

METHOD_DOC = REPO_ROOT / "docs" / "method.md"


@pytest.fixture(scope="module")
def rows():
    return T.method_rows()


def _method(name, sign):
    return next(m for m in T.METHODS if m.name == name and m.sign == sign)


def _phi_by_autograd(loss_fn, r):
    """The weight on grad log pi of a per-token loss -phi A log pi or -S(r) A (A = 1): -d loss / d log pi."""
    logp = torch.log(r).clone().requires_grad_(True)
    loss_fn(logp).sum().backward()
    return -logp.grad


R = torch.tensor([0.05, 0.5, 0.79, 0.81, 1.0, 1.19, 1.21, 3.0, 4.5, 6.0, 50.0], dtype=torch.float64)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_clip_and_two_sided_clip_weights_are_trls_gradients(sign):
    """TRL 1.16: coef_1 = exp(logp - old); coef_2 = clamp(coef_1, 1 - eps, 1 + eps); with delta, coef_1 is clamped
    above at delta; loss = -min(coef_1 A, coef_2 A)."""
    def trl(logp, delta=None):
        coef_1 = torch.exp(logp)  # old log-prob 0 here: r = pi / pi_old
        coef_2 = torch.clamp(coef_1, 1 - T.EPS, 1 + T.EPS)
        if delta is not None:
            coef_1 = torch.clamp(coef_1, max=delta)
        return -torch.min(coef_1 * sign, coef_2 * sign)

    label = "A > 0" if sign > 0 else "A < 0"
    torch.testing.assert_close(_phi_by_autograd(trl, R) * sign, _method("clip (GRPO/PPO)", label).phi(R))
    torch.testing.assert_close(_phi_by_autograd(lambda lp: trl(lp, T.DELTA), R) * sign,
                               _method("two-sided clip (TRL delta)", label).phi(R))


def test_cispo_weight_is_trls():
    """TRL 1.16: loss = -clamp(coef_1, max=epsilon_high).detach() * A * per_token_logps."""
    trl = lambda logp: -torch.clamp(torch.exp(logp), max=T.CISPO_MAX).detach() * logp  # noqa: E731
    torch.testing.assert_close(_phi_by_autograd(trl, R), _method("CISPO", "both").phi(R))


@pytest.mark.parametrize("sign, k, lam", [("A > 0", 2.0, 3.0), ("A < 0", 3.0, 2.0)])
def test_vespo_weight_is_trls_gamma_weight(sign, k, lam):
    """TRL 1.16's get_gamma_weights: log phi = lambda + k log w - lambda w; loss = -phi A log pi."""
    phi = torch.exp(lam + k * torch.log(R) - lam * R)
    torch.testing.assert_close(_method("VESPO (TRL 1.16 defaults)", sign).phi(R), phi)


@pytest.mark.parametrize("label, beta, sign", [("CE-GPPO (beta1 = beta2 = 1)", 1.0, 1.0),
                                              ("CE-GPPO (beta1 = beta2 = 1)", 1.0, -1.0),
                                              ("CE-GPPO (beta1 = 0.5, beta2 = 1)", 0.5, -1.0)])
def test_ce_gppo_weight_is_its_stop_gradient_objective(label, beta, sign):
    """CE-GPPO: beta (1 -/+ eps) r / sg(r) A outside the clip range, r A inside (arXiv:2509.20712)."""
    def loss(logp):
        r = torch.exp(logp)
        outside = (r > 1 + T.EPS) if sign > 0 else (r < 1 - T.EPS)
        bound = (1 + T.EPS) if sign > 0 else (1 - T.EPS)
        return -torch.where(outside, beta * bound * r / r.detach(), r) * sign

    torch.testing.assert_close(_phi_by_autograd(loss, R) * sign,
                               _method(label, "A > 0" if sign > 0 else "A < 0").phi(R))


def test_the_table_is_the_checkers_verdicts(rows):
    verdicts = {(row["method"], row["sign"]): tuple(row[p] for p in T.PROPERTY_COLUMNS) for row in rows}
    assert verdicts[("CISPO", "both")] == (True, True, True, True, False)  # f' -> 0, r f' -> r_max
    assert verdicts[("clip (GRPO/PPO)", "A > 0")] == (False, True, True, True, True)
    assert verdicts[("clip (GRPO/PPO)", "A < 0")] == (False, True, True, False, False)
    assert verdicts[("two-sided clip (TRL delta)", "A < 0")] == (False, True, True, True, True)
    assert verdicts[("CE-GPPO (beta1 = 0.5, beta2 = 1)", "A < 0")][0] is False  # the jump from 1 to beta1
    assert verdicts[("VESPO (TRL 1.16 defaults)", "A > 0")][1:3] == (False, False)  # peak at w = 1/3
    for gate in ("sigmoid", "erf", "arctan", "softsign"):
        assert all(verdicts[(f"{gate} gate", "both")]), gate
    for row in rows:  # every verdict carries the checker's evidence
        assert set(row["evidence"]) == set(T.PROPERTY_COLUMNS) and all(row["evidence"].values())


def test_docs_method_table_is_the_functions_output(rows):
    text = METHOD_DOC.read_text(encoding="utf-8")
    assert T.with_table(text, T.method_table_markdown(rows)) == text, \
        "docs/method.md §2.8 is out of date: run python -m sapo_core.trust_region docs/method.md"


def test_with_table_needs_one_marked_block():
    with pytest.raises(ValueError, match="one <!-- method-table:start -->"):
        T.with_table("no markers", "x")
    assert T.with_table(f"a\n{T.START}\nold\n{T.END}\nb", "new") == f"a\n{T.START}\nnew\n{T.END}\nb"
