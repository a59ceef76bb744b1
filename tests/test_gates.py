"""Gate library (method §2): values, weights, admissibility, width matching, user gates, argument checks."""

import math

import numpy as np
import pytest
import torch

from sapo_core import gates as G
from sapo_core import plots

BUILTIN = ["sigmoid", "erf", "arctan", "softsign"]   # the paper's (v2) gates
VARIANTS = ["erf_unit", "softsign_rational"]          # the earlier forms of erf and softsign, kept by name
ALL = BUILTIN + VARIANTS


@pytest.fixture(params=ALL)
def gate(request):
    return G.get_gate(request.param)


def test_registry_lists_builtins_and_rejects_unknown():
    assert G.available_gates()[:6] == ALL
    with pytest.raises(ValueError, match="unknown gate 'tanh'.*sigmoid, erf, arctan, softsign"):
        G.get_gate("tanh")


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 5.0])
def test_passes_through_one_with_unit_slope(gate, tau):
    one = torch.ones(1, dtype=torch.float64)
    assert gate.value(one, tau).item() == pytest.approx(1.0, abs=1e-15)
    assert gate.weight(one, tau).item() == pytest.approx(1.0, abs=1e-15)


def test_autograd_derivative_of_value_equals_weight(gate):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(500, generator=gen, dtype=torch.float64) * 3.0).requires_grad_()
    tau = 0.5 + 1.5 * torch.rand(500, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gate.value(x, tau).sum(), x)
    expected = gate.weight(x.detach(), tau)
    assert torch.max((grad - expected).abs() / expected.abs()).item() < 1e-10


def test_weight_formulas_match_the_paper():
    z = torch.linspace(-6, 6, 241, dtype=torch.float64)
    s = torch.sigmoid(z)
    paper = {"sigmoid": 4 * s * (1 - s),                    # eq. 4-5: tau f (1 - tau f / 4) with f = 4 s / tau
             "erf": torch.exp(-z**2 / 2),                   # eq. 6
             "arctan": 1 / (1 + z**2),                      # eq. 7
             "softsign": (1 + z**2) ** -1.5}                # eq. 8
    for name, expected in paper.items():
        torch.testing.assert_close(G.get_gate(name).g_prime(z), expected, rtol=1e-12, atol=1e-14)
    # sigmoid's g' is also sech^2(z/2)
    torch.testing.assert_close(G.get_gate("sigmoid").g_prime(z), 1 / torch.cosh(z / 2) ** 2)


def test_earlier_forms_keep_their_formulas_under_their_names():
    z = torch.linspace(-6, 6, 241, dtype=torch.float64)
    unit, rational = G.get_gate("erf_unit"), G.get_gate("softsign_rational")
    torch.testing.assert_close(unit.g_prime(z), torch.exp(-z**2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(unit.g(z), math.sqrt(math.pi) / 2 * torch.erf(z), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rational.g_prime(z), 1 / (1 + z.abs()) ** 2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rational.g(z), z / (1 + z.abs()), rtol=1e-12, atol=1e-14)
    assert unit.halfmax == pytest.approx(math.sqrt(math.log(2)), abs=1e-15)
    assert rational.halfmax == pytest.approx(math.sqrt(2) - 1, abs=1e-15)


@pytest.mark.parametrize("tau", [0.5, 1.0, 5.0, 10.0, 12.0])
def test_values_match_the_papers_f(tau):
    x = torch.linspace(0.0, 3.0, 301, dtype=torch.float64)
    z = tau * (x - 1)
    c = math.sqrt(math.pi / (2 * tau**2))
    erf_f = c * (1 + torch.special.erf(z / math.sqrt(2))) + 1 - c     # eq. 6
    softsign_f = 1 + (x - 1) / torch.sqrt(1 + z**2)                   # eq. 8
    arctan_f = 1 + torch.atan(z) / tau                                 # eq. 7
    sigmoid_f = 4 / tau * torch.sigmoid(z) + 1 - 2 / tau               # eq. 3 moved through (1, 1) (method §2.3)
    for name, expected in (("erf", erf_f), ("softsign", softsign_f), ("arctan", arctan_f), ("sigmoid", sigmoid_f)):
        torch.testing.assert_close(G.get_gate(name).value(x, tau), expected, rtol=1e-12, atol=1e-13)


def test_softsign_does_not_overflow_in_float32():
    z = torch.tensor([1e20, -1e30, 3e38], dtype=torch.float32)  # z**2 overflows float32 here
    softsign = G.get_gate("softsign")
    torch.testing.assert_close(softsign.g(z), torch.tensor([1.0, -1.0, 1.0]))
    assert torch.all(softsign.g_prime(z) == 0)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 5.0])
def test_weight_peaks_at_one_and_is_monotone_each_side(gate, tau):
    x = torch.linspace(0.0, 10.0, 100_001, dtype=torch.float64)
    w = gate.weight(x, tau)
    i1 = int(torch.argmin((x - 1).abs()))
    assert int(torch.argmax(w)) == i1
    assert torch.all(torch.diff(w[: i1 + 1]) >= 0)
    assert torch.all(torch.diff(w[i1:]) <= 0)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 5.0])
def test_weight_small_far_from_one(gate, tau):
    x = torch.tensor([1 - 1000 / tau, 1 + 1000 / tau], dtype=torch.float64)
    assert torch.all(gate.weight(x, tau) < 1e-2)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 5.0])
def test_value_positive_on_zero_to_ten(gate, tau):
    x = torch.linspace(0.0, 10.0, 10_001, dtype=torch.float64)
    assert torch.all(gate.value(x, tau) > 0)


@pytest.mark.parametrize("tau", [0.7, 1.0, 1.05, 3.0])
def test_sigmoid_differs_from_trl_sapo_by_a_constant(tau):
    # TRL's SAPO surrogate: 4/tau * sigmoid(tau (x - 1)); ours adds 1 - 2/tau.
    x = torch.linspace(0.0, 5.0, 501, dtype=torch.float64)
    diff = G.get_gate("sigmoid").value(x, tau) - 4.0 / tau * torch.sigmoid(tau * (x - 1))
    torch.testing.assert_close(diff, torch.full_like(diff, 1 - 2 / tau), rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtypes_and_broadcast_tau(gate, dtype):
    x = torch.linspace(0.0, 3.0, 12, dtype=dtype).reshape(3, 4).requires_grad_()
    tau = torch.tensor([[1.0], [1.05], [2.0]], dtype=dtype)
    v, w = gate.value(x, tau), gate.weight(x, tau)
    assert v.dtype == dtype and w.dtype == dtype and v.shape == (3, 4)
    v.sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))
    ref = gate.weight(x.detach().double(), tau.double())
    torch.testing.assert_close(w.double(), ref, rtol=2e-2, atol=2e-2)


def test_halfmax_is_where_weight_is_half(gate):
    z = torch.tensor([gate.halfmax, -gate.halfmax], dtype=torch.float64)
    torch.testing.assert_close(gate.g_prime(z), torch.full_like(z, 0.5), rtol=0, atol=1e-12)


def test_spec_halfmax_and_tails():
    table = {"sigmoid": (1.7627, "exponential"), "erf": (1.1774, "gaussian"),
             "arctan": (1.0, "polynomial"), "softsign": (0.7664, "polynomial"),
             "erf_unit": (0.8326, "gaussian"), "softsign_rational": (0.4142, "polynomial")}
    for name, (halfmax, tail) in table.items():
        gate = G.get_gate(name)
        assert gate.halfmax == pytest.approx(halfmax, abs=1e-4) and gate.tail == tail
    # the closed forms: exp(-z^2/2) = 1/2 and (1 + z^2)^(-3/2) = 1/2
    assert G.get_gate("erf").halfmax == pytest.approx(math.sqrt(2 * math.log(2)), abs=1e-15)
    assert G.get_gate("softsign").halfmax == pytest.approx(math.sqrt(2 ** (2 / 3) - 1), abs=1e-15)


def test_width_matched_factors():
    assert G.width_matched_tau("erf", 1.0) == pytest.approx(0.6679, abs=1e-4)
    assert G.width_matched_tau("arctan", 1.0) == pytest.approx(0.5673, abs=1e-4)
    assert G.width_matched_tau("softsign", 1.0) == pytest.approx(0.4348, abs=1e-4)
    assert G.width_matched_tau("erf_unit", 1.0) == pytest.approx(0.4723, abs=1e-4)
    assert G.width_matched_tau("softsign_rational", 1.0) == pytest.approx(0.2350, abs=1e-4)
    assert G.width_matched_tau("sigmoid", 1.7) == pytest.approx(1.7)
    # the half-max then sits at the same |x - 1| as the sigmoid's
    for name in ALL:
        tau = G.width_matched_tau(name, 2.0)
        x_half = torch.tensor([1 + G.get_gate("sigmoid").halfmax / 2.0], dtype=torch.float64)
        assert G.get_gate(name).weight(x_half, tau).item() == pytest.approx(0.5, abs=1e-12)


def test_resolve_tau_conventions():
    assert G.resolve_tau("erf", 1.0, "equal") == 1.0
    assert G.resolve_tau("erf", 1.0, "width_matched") == G.width_matched_tau("erf", 1.0)
    with pytest.raises(ValueError, match="unknown tau convention 'wide'.*equal, width_matched"):
        G.resolve_tau("erf", 1.0, "wide")


def test_builtins_are_admissible(gate):
    report = G.check_admissible(gate)
    assert report.passed, str(report)
    assert [row["property"] for row in report.rows()] == ["(i)", "(ii)", "(iii)", "(iv)"]


def test_student_t_one_is_arctan_and_large_nu_is_gaussian():
    z = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    t1 = G.student_t(1)
    assert torch.max((t1.g_prime(z) - G.get_gate("arctan").g_prime(z)).abs()).item() < 1e-12
    assert t1.halfmax == pytest.approx(1.0, abs=1e-12)
    gaps = [torch.max((G.student_t(nu).g_prime(z) - torch.exp(-z**2 / 2)).abs()).item() for nu in (10, 100, 10_000)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-4
    # numerically integrated value of student_t(1) is arctan's closed form
    x = torch.linspace(-5, 50, 1001, dtype=torch.float64)
    torch.testing.assert_close(t1.value(x, 1.3), G.get_gate("arctan").value(x, 1.3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("nu", [1e8, 1e12, 1e20])
def test_student_t_stays_exact_for_huge_nu(nu):
    """(1 + z^2/nu)^power rounds to a step once nu ~ 1e8; the gate must still be the Gaussian limit."""
    gate = G.student_t(nu)
    z = torch.linspace(-6, 6, 241, dtype=torch.float64)
    torch.testing.assert_close(gate.g_prime(z), torch.exp(-z**2 / 2), rtol=0, atol=1e-6)
    assert gate.halfmax == pytest.approx(math.sqrt(2 * math.log(2)), rel=1e-6)
    assert G.width_matched_tau(gate, 1.0) == pytest.approx(gate.halfmax / G.get_gate("sigmoid").halfmax, rel=1e-12)
    assert G.width_matched_tau(gate, 1.0) == pytest.approx(0.66794, abs=1e-5)  # not 0: the half-max is right


def test_numerically_integrated_gate_keeps_nan():
    out = G.student_t(3).g(torch.tensor([float("nan"), 0.0, float("nan")], dtype=torch.float64))
    assert torch.isnan(out[0]) and out[1] == 0 and torch.isnan(out[2])


def test_student_t_rejects_bad_nu():
    for nu in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="nu > 0"):
            G.student_t(nu)
    for nu in ("3", None, True, False, torch.tensor(3.0)):  # True is not nu = 1
        with pytest.raises(TypeError, match="nu > 0"):
            G.student_t(nu)
    assert G.student_t(np.float64(2.0)).halfmax == G.student_t(2).halfmax  # numpy reals are real numbers
    assert G.student_t(np.int64(1)).name == "student_t(nu=1)"


@pytest.mark.parametrize("weight_fn, prop, message", [
    (lambda z: 2.0 / (1 + z**2), "(ii)", r"\(ii\) g'\(0\) = 2, must equal 1"),
    (lambda z: torch.exp(-z**2) + 0.3 * torch.exp(-(z - 3.0) ** 2) * (1 - torch.exp(-z**2)), "(iii)",
     r"\(iii\) g' rises"),
    (lambda z: 0.5 + 0.5 / (1 + z**2), "(iv)", r"\(iv\) g'\(\+1e6\) = 0.5"),
    (lambda z: 1 / (1 + z.abs()), "(iv)", r"\(iv\) g'\(\+1e6\) = 1e-06.*< 0.001: f' -> 0\); but z g'\(z\) = 0.999 at "
     r"z = 1e3 and 1 at z = 1e6 does not fall to 0, so x f'\(x\) = \(1 \+ z/tau\) g'\(z\) does not -> 0"),
])
def test_inadmissible_user_gates_are_refused_with_the_property(weight_fn, prop, message):
    with pytest.raises(G.InadmissibleGateError, match=message) as info:
        G.make_gate("bad", weight_fn)
    assert info.value.report.failed == [prop]


def test_discontinuous_weight_fails_property_i():
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g' jumps"):
        G.make_gate("step", lambda z: torch.where(z.abs() < 1, 1.0, 0.4) / (1 + z**2))


def test_a_jump_far_out_fails_property_i_and_a_steep_smooth_weight_passes():
    far_step = lambda z: torch.where(z.abs() < 100, 1 / (1 + (z / 50) ** 2), torch.zeros_like(z))
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g' jumps by 0.2 at z = -?100\b"):
        G.make_gate("far_step", far_step)
    one_sided = lambda z: torch.where(z < 100, 1 / (1 + (z / 50) ** 2), torch.zeros_like(z))
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g' jumps by 0.2 at z = 100\b"):
        G.make_gate("one_sided_far_step", one_sided)
    steep = G.make_gate("steep_softsign", lambda z: 1 / (1 + 30 * z.abs()) ** 2)  # softsign at tau = 30
    assert G.check_admissible(steep).passed


def test_value_fn_inconsistent_with_weight_fails_property_i():
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\).*not the integral"):
        G.make_gate("wrong_g", lambda z: torch.exp(-z**2), value_fn=torch.atan)


def test_property_iv_is_x_times_weight_to_zero_not_only_weight_to_zero():
    """(iv) as published: x f'(x) -> 0. g' = 1/(1 + |z|) has f' -> 0 but x f'(x) -> 1/tau; 1/(1 + |z|)^1.5 passes."""
    report = G.admissibility.check("slow", lambda z: z.sign() * torch.log1p(z.abs()), lambda z: 1 / (1 + z.abs()))
    assert report.failed == ["(iv)"] and "does not -> 0 as x -> infinity" in report.results["(iv)"][1]
    assert "x f'(x) -> 0 as x -> infinity" in G.PROPERTIES["(iv)"]
    faster = G.make_gate("z_to_minus_1.5", lambda z: (1 + z.abs()) ** -1.5)
    assert G.check_admissible(faster).passed
    assert "(x f'(x) -> 0)" in G.check_admissible(faster).results["(iv)"][1]
    assert G.check_admissible(G.student_t(0.5)).passed  # z g'(z) ~ z^-0.5: slow, still -> 0


@pytest.mark.parametrize("name", ALL)
def test_gate_from_weight_alone_matches_closed_form(name):
    ref = G.get_gate(name)
    user = G.make_gate(f"my_{name}", ref.g_prime)
    x = torch.cat([torch.linspace(0.0, 5.0, 2001, dtype=torch.float64),
                   torch.tensor([1e-6, 1e3, 1e6, 4.8e8], dtype=torch.float64)])
    for tau in (0.5, 1.0, 3.0):
        torch.testing.assert_close(user.value(x, tau), ref.value(x, tau), rtol=0, atol=1e-6)
    assert user.halfmax == pytest.approx(ref.halfmax, abs=1e-9)
    assert user.tail == ref.tail
    # and stays differentiable
    xg = torch.linspace(0.1, 3.0, 50, dtype=torch.float64).requires_grad_()
    (grad,) = torch.autograd.grad(user.value(xg, 1.5).sum(), xg)
    torch.testing.assert_close(grad, ref.weight(xg.detach(), 1.5), rtol=1e-12, atol=0)


def test_register_gate_and_reserved_names():
    gate = G.make_gate("cauchy2_test", lambda z: 1 / (1 + z**2) ** 2)
    G.register_gate(gate)
    assert G.get_gate("cauchy2_test") is gate
    with pytest.raises(ValueError, match="already registered"):
        G.register_gate(gate)
    with pytest.raises(ValueError, match="reserved for hard clipping"):
        G.make_gate("clip", lambda z: 1 / (1 + z**2))
    with pytest.raises(ValueError, match="unknown tail"):
        G.make_gate("x", lambda z: 1 / (1 + z**2), tail="heavy")


def test_clip_weight():
    x = torch.tensor([0.5, 0.79, 0.81, 1.0, 1.19, 1.21, 2.0])
    torch.testing.assert_close(G.clip_weight(x, 1.0, 0.2, 0.2), torch.tensor([1, 1, 1, 1, 1, 0, 0.0]))
    torch.testing.assert_close(G.clip_weight(x, -1.0, 0.2, 0.2), torch.tensor([0, 0, 1, 1, 1, 1, 1.0]))
    torch.testing.assert_close(G.clip_weight(x, 0.0), G.clip_weight(x, -1.0))  # A = 0 as A < 0 (tau_neg)
    edge = torch.tensor([0.75, 1.25], dtype=torch.float64)  # exactly on the boundaries: inside, as the gradient
    torch.testing.assert_close(G.clip_weight(edge, 1.0, 0.25, 0.25), torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(G.clip_weight(edge, -1.0, 0.25, 0.25), torch.tensor([1.0, 1.0], dtype=torch.float64))
    signs = torch.tensor([1.0, -1.0])[:, None]
    assert G.clip_weight(x[None, :], signs).shape == (2, 7)


def test_gate_table_rows():
    rows = G.gate_table(tau=2.0)
    assert [r["gate"] for r in rows[:4]] == BUILTIN
    assert rows[0]["halfmax_x"] == pytest.approx(1.7627 / 2, abs=1e-4)
    assert rows[1]["width_matched_factor"] == pytest.approx(0.6679, abs=1e-4)
    assert math.isclose(rows[0]["width_matched_factor"], 1.0)
    assert all(r["tau_used"] == 2.0 for r in rows)
    matched = G.gate_table(BUILTIN, tau=2.0, convention="width_matched")
    assert [r["tau_used"] for r in matched] == [G.width_matched_tau(name, 2.0) for name in BUILTIN]
    assert all(r["halfmax_x"] == pytest.approx(1.7627 / 2, abs=1e-4) for r in matched)  # every half-max aligned
    with pytest.raises(ValueError, match="unknown tau convention"):
        G.gate_table(convention="wide")


def test_gates_carry_their_formulas_as_text():
    assert G.describe("erf") == {"name": "erf", "spec": "erf", "f": "1 + g(tau*(x - 1))/tau",
                                 "g": "sqrt(pi/2)*erf(z/sqrt(2))",
                                 "g_prime": "exp(-z**2/2)", "halfmax": math.sqrt(2 * math.log(2)),
                                 "tail": "gaussian", "params": {}}
    assert G.describe("softsign")["g_prime"] == "(1 + z**2)**(-3/2)"
    assert G.describe("erf_unit")["g_prime"] == "exp(-z**2)"
    assert G.describe("softsign_rational")["g_prime"] == "1/(1 + abs(z))**2"
    assert G.describe(G.student_t(3))["params"] == {"nu": 3.0}
    assert G.describe(G.student_t(3))["g_prime"] == "(1 + z**2/3.0)**(-(3.0 + 1)/2)"
    assert G.describe(G.student_t(3))["spec"] == "student_t(nu=3)"  # a Gate built in code: its name
    assert G.describe("student_t:nu=3.0")["spec"] == "student_t:nu=3"  # a spec: as parse_spec writes it
    clip = G.describe("clip", epsilon_low=0.2, epsilon_high=0.28)
    assert clip["epsilon_low"] == 0.2 and clip["epsilon_high"] == 0.28 and "1 + epsilon_high" in clip["g_prime"]
    with pytest.raises(ValueError, match="hard clipping only"):
        G.describe("erf", epsilon_low=0.2)
    with pytest.raises(TypeError, match="epsilon_high"):
        G.describe("clip", epsilon_low=0.2)
    # a user gate: given text, else the function's name, else "user function"
    assert G.make_gate("c2", lambda z: 1 / (1 + z**2) ** 2, g_prime_text="1/(1 + z**2)**2").g_prime_text \
        == "1/(1 + z**2)**2"
    assert G.make_gate("c2", lambda z: 1 / (1 + z**2) ** 2).g_prime_text == "user function"
    assert G.make_gate("at", ARCTAN_W, value_fn=torch.atan).g_text == "torch.atan"
    with pytest.raises(TypeError, match="g_prime_text"):
        G.make_gate("c2", ARCTAN_W, g_prime_text="")


# ---------------------------------------------------------------------------------------------
# Regressions for issue 11: NaN-safe admissibility, register_gate checks any Gate, halfmax > 0,
# tau > 0 and finite everywhere, check_admissible takes a name, bad arguments named.
# ---------------------------------------------------------------------------------------------

ARCTAN_W = lambda z: 1 / (1 + z**2)


def test_value_fn_returning_nan_fails_property_i():
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g\(-40\) = nan, not finite") as info:
        G.make_gate("nan_value", ARCTAN_W, value_fn=lambda z: torch.full_like(z, math.nan))
    assert info.value.report.failed == ["(i)"]
    # nan only far out, where no finite-difference probe looks
    far_nan = lambda z: torch.where(z.abs() > 1000, math.nan, torch.atan(z))
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g\(\S+\) = nan, not finite"):
        G.make_gate("far_nan_value", ARCTAN_W, value_fn=far_nan)
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\) g\(0\) = inf"):
        G.make_gate("inf_at_zero", ARCTAN_W, value_fn=lambda z: torch.where(z == 0, math.inf, torch.atan(z)))


def test_weight_fn_returning_nan_fails_every_property_it_touches():
    nan_far = lambda z: torch.where(z.abs() > 100, math.nan, 1 / (1 + z**2))
    report = G.check_admissible(G.Gate("nan_far", torch.atan, nan_far, 1.0, "polynomial"))
    assert report.failed == ["(i)", "(ii)", "(iii)", "(iv)"], str(report)
    assert "not finite" in report.results["(ii)"][1] and "not finite" in report.results["(iii)"][1]
    nan_peak = lambda z: torch.where(z == 0, math.nan, 1 / (1 + z**2))
    with pytest.raises(G.InadmissibleGateError, match=r"\(ii\) g'\(0\) = nan, must equal 1"):
        G.make_gate("nan_peak", nan_peak, value_fn=torch.atan)
    with pytest.raises(G.InadmissibleGateError, match=r"\(i\)"):
        G.make_gate("all_nan", lambda z: torch.full_like(z, math.nan))


def test_register_gate_checks_a_directly_built_gate():
    double = G.Gate("double_slope", lambda z: 2 * torch.atan(z), lambda z: 2 / (1 + z**2), 1.0, "polynomial")
    with pytest.raises(G.InadmissibleGateError, match=r"\(ii\) g'\(0\) = 2, must equal 1"):
        G.register_gate(double)
    assert "double_slope" not in G.available_gates()
    with pytest.raises(ValueError, match=r"halfmax = 0.7 is not the half-max of g'.*computed: 1\b"):
        G.register_gate(G.Gate("wrong_halfmax", torch.atan, ARCTAN_W, 0.7, "polynomial"))
    assert "wrong_halfmax" not in G.available_gates()
    good = G.register_gate(G.Gate("arctan_direct", torch.atan, ARCTAN_W, 1.0, "polynomial"), overwrite=True)
    assert G.get_gate("arctan_direct") is good


@pytest.mark.parametrize("halfmax, error", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                            (math.inf, ValueError), ("1", TypeError), (None, TypeError),
                                            (True, TypeError)])
def test_halfmax_must_be_a_positive_finite_number(halfmax, error):
    with pytest.raises(error, match="halfmax"):
        G.Gate("h", torch.atan, ARCTAN_W, halfmax, "polynomial")
    if halfmax is not None:
        with pytest.raises(error, match="halfmax"):
            G.make_gate("h", ARCTAN_W, halfmax=halfmax)


def test_make_gate_refuses_a_given_halfmax_where_weight_is_not_half():
    with pytest.raises(ValueError, match=r"halfmax = 2 is not the half-max"):
        G.make_gate("h", ARCTAN_W, halfmax=2)
    assert G.make_gate("h", ARCTAN_W, halfmax=1.0).halfmax == 1.0


BAD_TAUS = [0.0, -1.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("tau", BAD_TAUS)
def test_bad_tau_refused_everywhere(gate, tau):
    import matplotlib.pyplot as plt  # after sapo_core.plots has chosen the backend

    x = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    for fn in (gate.value, gate.weight):
        with pytest.raises(ValueError, match="tau must be a finite real number > 0"):
            fn(x, tau)
        with pytest.raises(ValueError, match="tau must be finite and > 0 everywhere"):
            fn(x, torch.tensor([1.0, 2.0, tau, 1.0, 1.0], dtype=torch.float64))  # one bad element
    with pytest.raises(ValueError, match="tau must be a finite real number > 0"):
        G.width_matched_tau(gate, tau)
    for convention in G.TAU_CONVENTIONS:
        with pytest.raises(ValueError, match="tau must be a finite real number > 0"):
            G.resolve_tau(gate, tau, convention)
        with pytest.raises(ValueError, match="tau must be a finite real number > 0"):
            plots.gate_figure([gate.name], tau=tau, tau_convention=convention)
        plt.close("all")
    with pytest.raises(ValueError, match="tau must be a finite real number > 0"):
        G.gate_table([gate.name], tau=tau)


def test_tau_type_errors_name_tau(gate):
    x = torch.ones(3)
    for tau in ("1", None, True, torch.tensor([True]), [1.0]):
        with pytest.raises(TypeError, match="tau must be"):
            gate.weight(x, tau)
    with pytest.raises(TypeError, match="tau must be"):
        G.width_matched_tau(gate, "2")


def test_check_admissible_takes_a_name_like_get_gate():
    assert G.check_admissible("erf").rows() == G.check_admissible(G.get_gate("erf")).rows()
    with pytest.raises(ValueError, match="unknown gate 'tanh'"):
        G.check_admissible("tanh")
    with pytest.raises(TypeError, match="gate must be a gate spec"):
        G.check_admissible(3)


def _raises_naming(call, error, argument):
    with pytest.raises(error) as info:
        call()
    assert not isinstance(info.value, AttributeError)
    assert argument in str(info.value), f"{argument!r} not named in: {info.value}"


BAD_CALLS = [  # (call, error, text the message must contain: the argument or what is wrong with it)
    (lambda: G.get_gate(3), TypeError, "gate"),
    (lambda: G.get_gate(None), TypeError, "gate"),
    (lambda: G.get_gate("nope"), ValueError, "unknown gate 'nope'"),
    (lambda: G.register_gate("erf"), TypeError, "Gate"),
    (lambda: G.register_gate(G.get_gate("erf"), overwrite="yes"), TypeError, "overwrite"),
    (lambda: G.register_gate(G.get_gate("erf")), ValueError, "already registered"),
    (lambda: G.make_gate(3, ARCTAN_W), TypeError, "gate name"),
    (lambda: G.make_gate("", ARCTAN_W), ValueError, "gate name"),
    (lambda: G.make_gate("x", "not a function"), TypeError, "weight_fn"),
    (lambda: G.make_gate("x", lambda z: math.exp(-z)), TypeError, "weight_fn"),        # raises inside
    (lambda: G.make_gate("x", lambda z: 1.0), TypeError, "weight_fn"),                  # not a tensor
    (lambda: G.make_gate("x", lambda z: torch.ones(1)), TypeError, "weight_fn"),        # wrong shape
    (lambda: G.make_gate("x", lambda z: (1 / (1 + z**2)).numpy()), TypeError, "weight_fn"),
    (lambda: G.make_gate("x", ARCTAN_W, value_fn=3), TypeError, "value_fn"),
    (lambda: G.make_gate("x", ARCTAN_W, value_fn=lambda z: z.sum()), TypeError, "value_fn"),
    (lambda: G.make_gate("x", ARCTAN_W, tail="heavy"), ValueError, "tail"),
    (lambda: G.Gate("x", 3, ARCTAN_W, 1.0, "polynomial"), TypeError, "g must be"),
    (lambda: G.Gate("x", torch.atan, None, 1.0, "polynomial"), TypeError, "g_prime"),
    (lambda: G.Gate("x", torch.atan, ARCTAN_W, 1.0, "heavy"), ValueError, "tail"),
    (lambda: G.Gate("clip", torch.atan, ARCTAN_W, 1.0, "polynomial"), ValueError, "'clip' is reserved"),
    (lambda: G.get_gate("erf").value([1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
    (lambda: G.get_gate("erf").weight(1.5), TypeError, "x must be a torch.Tensor"),
    (lambda: G.width_matched_tau("erf", 1.0, reference="nope"), ValueError, "for reference"),
    (lambda: G.width_matched_tau("erf", 1.0, reference=1), TypeError, "reference"),
    (lambda: G.resolve_tau("nope", 1.0, "equal"), ValueError, "unknown gate 'nope'"),
    (lambda: G.resolve_tau("erf", 1.0, None), ValueError, "tau convention"),
    (lambda: G.clip_weight([1.0], 1.0), TypeError, "x must be a torch.Tensor"),
    (lambda: G.clip_weight(torch.ones(2), "+"), TypeError, "advantage_sign"),
    (lambda: G.clip_weight(torch.ones(2), 1.0, eps_low=-0.1), ValueError, "eps_low"),
    (lambda: G.clip_weight(torch.ones(2), 1.0, eps_high=math.nan), ValueError, "eps_high"),
    (lambda: G.clip_weight(torch.ones(2), 1.0, eps_high="0.2"), TypeError, "eps_high"),
    (lambda: G.gate_table("erf"), TypeError, "names"),
    (lambda: G.gate_table(["erf", "nope"]), ValueError, "for names"),
    (lambda: G.gate_table(tau=True), TypeError, "tau"),
    (lambda: G.InadmissibleGateError("bad"), TypeError, "AdmissibilityReport"),
]


@pytest.mark.parametrize("call, error, argument", BAD_CALLS,
                         ids=[f"{i:02d}-{a}" for i, (_, _, a) in enumerate(BAD_CALLS)])
def test_bad_arguments_are_refused_by_name(call, error, argument):
    _raises_naming(call, error, argument)


def test_gate_table_of_no_names_is_empty_and_none_is_all():
    assert G.gate_table([]) == []
    assert [r["gate"] for r in G.gate_table()] == G.available_gates()


def test_figure_1_has_the_papers_layout():
    """Top row f, bottom row f', one column per tau in {1, 5, 10}; clip, sigmoid, erf, arctan, softsign."""
    import matplotlib.pyplot as plt  # after sapo_core.plots has chosen the backend

    fig = plots.gate_figure(n_points=101)
    assert "Figure 1" in fig.get_suptitle()
    assert len(fig.axes) == 6 and [ax.get_title() for ax in fig.axes[:3]] == ["tau = 1", "tau = 5", "tau = 10"]
    for col, tau in enumerate((1.0, 5.0, 10.0)):
        ax_f, ax_w = fig.axes[col], fig.axes[3 + col]
        for name in BUILTIN:
            (f_line,) = [line for line in ax_f.lines if line.get_label().startswith(f"{name} (")]
            (w_line,) = [line for line in ax_w.lines if line.get_label().startswith(f"{name} (")]
            x = torch.as_tensor(f_line.get_xdata())
            np.testing.assert_allclose(f_line.get_ydata(), G.get_gate(name).value(x, tau).numpy(), rtol=1e-12)
            np.testing.assert_allclose(w_line.get_ydata(), G.get_gate(name).weight(x, tau).numpy(), rtol=1e-12)
        assert sum(line.get_label().startswith("hard clip") for line in ax_w.lines) == 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "erf: g'(z) = exp(-z**2/2) (gaussian tail)" in legend
    plt.close(fig)
    with pytest.raises(ValueError, match="non-empty list"):
        plots.gate_figure(tau=[])
    with pytest.raises(TypeError, match="tau must be"):
        plots.gate_figure(tau=[1.0, "5"])


def test_run_provenance_records_the_gate_formulas():
    from sapo_core.recipe import parse_args
    from sapo_core.train import provenance

    tiny = ["--config", "configs/tiny-cpu.yaml", "--run_dir", "unused"]
    assert provenance(parse_args([*tiny, "--gate", "softsign"]))["gate_formulas"]["g_prime"] == "(1 + z**2)**(-3/2)"
    clip = provenance(parse_args([*tiny, "--gate", "clip", "--epsilon", "0.2", "--epsilon_high", "0.28"]))
    assert clip["gate_formulas"]["name"] == "clip" and clip["gate_formulas"]["epsilon_high"] == 0.28
