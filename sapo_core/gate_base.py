"""The Gate type and gates built from g' alone (method §2.1, §2.6): `Gate`, `make_gate`, `student_t`.

A gate is f_tau(x) = 1 + g(tau (x - 1)) / tau with g(0) = 0 and g'(0) = 1; `make_gate` takes g' (and g when
it has a closed form, else integrates it: sapo_core.quadrature) and refuses it unless it is admissible
(sapo_core.admissibility). The registry of named gates, the temperature conventions and gate specs are in
sapo_core.gates, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from sapo_core import admissibility, quadrature
from sapo_core.admissibility import TAILS, BaseFn, InadmissibleGateError
from sapo_core.checks import check_positive, is_real

__all__ = ["USER_FUNCTION", "BaseFn", "Gate", "TauLike", "make_gate", "student_t"]

TauLike = float | torch.Tensor
USER_FUNCTION = "user function"  # the text of a formula given only as a callable without a name


def _check_tau(tau, name: str = "tau") -> None:
    """tau > 0 and finite: a real number or a real tensor (every element), else TypeError/ValueError naming it."""
    if not isinstance(tau, torch.Tensor):
        check_positive(name, tau)
        return
    if tau.dtype == torch.bool or tau.is_complex():
        raise TypeError(f"{name} must be a real number or a real tensor, got a {tau.dtype} tensor")
    good = (tau > 0) & (tau < math.inf)  # false for nan
    if not bool(good.all()):
        raise ValueError(f"{name} must be finite and > 0 everywhere, got {tau[~good].flatten()[0].item()!r}")


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"gate name must be a non-empty string, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("gate name must be a non-empty string, got ''")
    if name == "clip":
        raise ValueError("'clip' is reserved for hard clipping (GRPO) and cannot name a gate")


def _check_text(name: str, text) -> None:
    if not (isinstance(text, str) and text.strip()):
        raise TypeError(f"{name} must be a non-empty string (the formula as text), got {type(text).__name__} "
                        f"{text!r}")


def _check_tensor(name: str, x) -> None:
    """A floating torch.Tensor (the gates' functions are not defined on integer or complex tensors)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (e.g. torch.float32), got a {x.dtype} tensor")


@dataclass(frozen=True)
class Gate:
    """A gate f_tau(x) = 1 + g(tau(x-1))/tau given by its base g and derivative g' (method §2.1).

    Build user gates with `make_gate` (which checks admissibility and computes `halfmax` and `tail`);
    a Gate built directly is checked when it is registered (`register_gate`). `g_text` and
    `g_prime_text` are the formulas as text; `params` the gate's parameters as (name, value) pairs.

    >>> from sapo_core.gates import get_gate
    >>> gate = get_gate("arctan")
    >>> x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    >>> gate.value(x, tau=2.0)      # 1 + arctan(2 (x - 1)) / 2
    tensor([0.6073, 1.0000, 1.5536], dtype=torch.float64)
    >>> gate.weight(x, tau=2.0)     # 1 / (1 + (2 (x - 1))^2)
    tensor([0.5000, 1.0000, 0.2000], dtype=torch.float64)
    """

    name: str
    g: BaseFn = field(repr=False)
    g_prime: BaseFn = field(repr=False)
    halfmax: float
    tail: str
    g_text: str = field(default=USER_FUNCTION, repr=False)
    g_prime_text: str = field(default=USER_FUNCTION, repr=False)
    params: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    spec: str = field(default="", repr=False)  # the spec it was resolved from (resolve_spec); "" when built in code

    def __post_init__(self):
        _check_name(self.name)
        for attr in ("g", "g_prime"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Gate {attr} must be a callable torch function of z, got "
                                f"{type(getattr(self, attr)).__name__}")
        check_positive("halfmax", self.halfmax)
        if self.tail not in TAILS:
            raise ValueError(f"unknown tail {self.tail!r}; allowed: {', '.join(TAILS)}")
        _check_text("g_text", self.g_text)
        _check_text("g_prime_text", self.g_prime_text)
        if not (isinstance(self.params, tuple) and all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and is_real(p[1]) for p in self.params)):
            raise TypeError(f"Gate params must be a tuple of (name, number) pairs, got {self.params!r}")

    def value(self, x: torch.Tensor, tau: TauLike = 1.0) -> torch.Tensor:
        """f_tau(x) = 1 + g(tau (x - 1)) / tau (method §2.1)."""
        _check_tensor("x", x)
        _check_tau(tau)
        return 1.0 + self.g(tau * (x - 1.0)) / tau

    def weight(self, x: torch.Tensor, tau: TauLike = 1.0) -> torch.Tensor:
        """f_tau'(x) = g'(tau (x - 1)), the gradient weight of a token with ratio x (method §2.1)."""
        _check_tensor("x", x)
        _check_tau(tau)
        return self.g_prime(tau * (x - 1.0))


def _fn_text(fn) -> str:
    """A callable's name as formula text (module.name), or USER_FUNCTION for a lambda or an object."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or "<" in name:
        return USER_FUNCTION
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def make_gate(name: str, weight_fn: BaseFn, value_fn: BaseFn | None = None, *, tail: str | None = None,
              halfmax: float | None = None, g_prime_text: str | None = None, g_text: str | None = None) -> Gate:
    """A user gate from g' (`weight_fn`, a torch function of z) and optionally g in closed form.

    Without `value_fn`, g is integrated numerically (and stays differentiable). The half-max and tail
    are computed when not given (a given half-max must be where g' = 1/2). `g_prime_text` and `g_text`
    are the formulas as text for provenance (default: the function's name, or "user function").
    Raises `InadmissibleGateError` when (i)-(iv) fail (method §2.2, §2.6).

    >>> cauchy2 = make_gate("cauchy2", lambda z: 1 / (1 + z**2) ** 2, g_prime_text="1/(1 + z**2)**2")
    >>> round(cauchy2.halfmax, 4), cauchy2.tail, cauchy2.g_text
    (0.6436, 'polynomial', 'integral_0^z of 1/(1 + z**2)**2 (numerical)')
    >>> make_gate("flat", lambda z: 0.5 + 0.5 / (1 + z**2))
    Traceback (most recent call last):
    ...
    sapo_core.admissibility.InadmissibleGateError: gate 'flat' is not admissible: (iv) g'(+1e6) = 0.5, ...
    >>> make_gate("slow", lambda z: 1 / (1 + z.abs()))     # f' -> 0, but x f'(x) -> 1/tau
    Traceback (most recent call last):
    ...
    sapo_core.admissibility.InadmissibleGateError: gate 'slow' is not admissible: (iv) ... but z g'(z) = ...
    """
    _check_name(name)
    if tail is not None and tail not in TAILS:
        raise ValueError(f"unknown tail {tail!r}; allowed: {', '.join(TAILS)}")
    admissibility.check_fn("weight_fn", weight_fn)
    if value_fn is not None:
        admissibility.check_fn("value_fn", value_fn)
    if halfmax is not None:
        check_positive("halfmax", halfmax)
    g_prime_text = _fn_text(weight_fn) if g_prime_text is None else g_prime_text
    _check_text("g_prime_text", g_prime_text)
    if g_text is None:
        g_text = _fn_text(value_fn) if value_fn is not None else f"integral_0^z of {g_prime_text} (numerical)"
    _check_text("g_text", g_text)
    g = value_fn if value_fn is not None else quadrature.integral_of(weight_fn)
    report = admissibility.check(name, g, weight_fn, "value_fn" if value_fn is not None else "g", "weight_fn")
    if not report.passed:
        raise InadmissibleGateError(report)
    if halfmax is not None:
        admissibility.check_halfmax(weight_fn, halfmax)
    return Gate(name, g, weight_fn, halfmax=halfmax if halfmax is not None else admissibility.halfmax(weight_fn),
                tail=tail or admissibility.estimate_tail(weight_fn), g_text=g_text, g_prime_text=g_prime_text)


def student_t(nu: float) -> Gate:
    """Student-t kernel gate g'(z) = (1 + z^2/nu)^(-(nu+1)/2): nu = 1 is arctan, nu -> inf Gaussian (method §2.6).

    >>> t1 = student_t(1)
    >>> t1.name, t1.halfmax, t1.tail, t1.params
    ('student_t(nu=1)', 1.0, 'polynomial', (('nu', 1.0),))
    >>> round(student_t(1e12).halfmax, 4)   # the Gaussian exp(-z^2/2) of erf: sqrt(2 ln 2)
    1.1774
    >>> student_t(True)
    Traceback (most recent call last):
    ...
    TypeError: student_t needs a real number nu > 0, got bool True
    """
    if not is_real(nu):
        raise TypeError(f"student_t needs a real number nu > 0, got {type(nu).__name__} {nu!r}")
    if not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"student_t needs a finite nu > 0, got {nu!r}")
    nu = float(nu)
    power = -(nu + 1.0) / 2.0
    # (1 + z^2/nu)^power as exp(power log1p(z^2/nu)) and the half-max with expm1: exact for any nu (the
    # direct forms round 1 + z^2/nu and 2^(1/|power|) to 1 once nu is large, ~1e8)
    halfmax = math.sqrt(nu * math.expm1(math.log(2.0) / -power))  # solves (1 + z^2/nu)^power = 1/2
    gate = make_gate(f"student_t(nu={nu:g})", lambda z: torch.exp(power * torch.log1p(z * z / nu)),
                     tail="polynomial", halfmax=halfmax, g_prime_text=f"(1 + z**2/{nu!r})**(-({nu!r} + 1)/2)")
    return dataclasses.replace(gate, params=(("nu", nu),))
