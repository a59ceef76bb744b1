"""Smooth gate functions for SAPO (method §2, docs/method.md).

A gate is built from a base function g with g(0) = 0 and g'(0) = 1:

    f_tau(x)  = 1 + g(tau (x - 1)) / tau          # method §2.1, eq. (2.1), the gate value
    f_tau'(x) = g'(tau (x - 1))                   # method §2.1, eq. (2.2), the gradient weight

It is *admissible* when f' (i) is continuous, (ii) peaks at exactly 1 at x = 1, (iii) decreases
monotonically away from x = 1 on each side and (iv) tends to 0 as |x - 1| -> infinity.

Gates live in a registry of named objects; adding one is a single call::

    from sapo_core.gates import make_gate, register_gate
    cauchy2 = make_gate("cauchy2", lambda z: 1 / (1 + z**2) ** 2)   # g' alone; g is integrated
    register_gate(cauchy2)

`make_gate` and `register_gate` check admissibility and raise `InadmissibleGateError` naming the failed
property. Every public function refuses a bad argument with a TypeError or ValueError naming it. The
examples in the docstrings run as tests:  .venv/bin/python -m pytest --doctest-modules sapo_core/gates.py
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import torch

__all__ = [
    "PROPERTIES",
    "TAILS",
    "TAU_CONVENTIONS",
    "AdmissibilityReport",
    "Gate",
    "InadmissibleGateError",
    "available_gates",
    "check_admissible",
    "clip_weight",
    "gate_table",
    "get_gate",
    "make_gate",
    "register_gate",
    "resolve_tau",
    "student_t",
    "width_matched_tau",
]

TAILS = ("exponential", "gaussian", "polynomial")
TauLike = float | torch.Tensor
BaseFn = Callable[[torch.Tensor], torch.Tensor]


def _is_real(value) -> bool:
    """A real number (int, float, numpy scalar), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_positive(name: str, value) -> None:
    """A finite real number > 0, else TypeError/ValueError naming `name`."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def _check_tau(tau, name: str = "tau") -> None:
    """tau > 0 and finite: a real number or a real tensor (every element), else TypeError/ValueError naming it."""
    if not isinstance(tau, torch.Tensor):
        _check_positive(name, tau)
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
    a Gate built directly is checked when it is registered (`register_gate`).

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

    def __post_init__(self):
        _check_name(self.name)
        for attr in ("g", "g_prime"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Gate {attr} must be a callable torch function of z, got "
                                f"{type(getattr(self, attr)).__name__}")
        _check_positive("halfmax", self.halfmax)
        if self.tail not in TAILS:
            raise ValueError(f"unknown tail {self.tail!r}; allowed: {', '.join(TAILS)}")

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


# ---------------------------------------------------------------------------------------------
# Built-in gates (method §2.3 table). g' for the sigmoid is written as 4 s(z) s(-z) rather than
# 4 s (1 - s) so that the tails keep full relative precision.
# ---------------------------------------------------------------------------------------------

_SQRT_PI_2 = math.sqrt(math.pi) / 2.0

_BUILTIN = (
    Gate("sigmoid", lambda z: 4.0 * torch.sigmoid(z) - 2.0,
         lambda z: 4.0 * torch.sigmoid(z) * torch.sigmoid(-z),
         halfmax=2.0 * math.acosh(math.sqrt(2.0)), tail="exponential"),
    Gate("erf", lambda z: _SQRT_PI_2 * torch.erf(z),
         lambda z: torch.exp(-z * z),
         halfmax=math.sqrt(math.log(2.0)), tail="gaussian"),
    Gate("arctan", torch.atan,
         lambda z: 1.0 / (1.0 + z * z),
         halfmax=1.0, tail="polynomial"),
    Gate("softsign", lambda z: z / (1.0 + z.abs()),
         lambda z: 1.0 / (1.0 + z.abs()) ** 2,
         halfmax=math.sqrt(2.0) - 1.0, tail="polynomial"),
)
_REGISTRY: dict[str, Gate] = {gate.name: gate for gate in _BUILTIN}


def available_gates() -> list[str]:
    """Names of all registered gates, built-ins first.

    >>> available_gates()[:4]
    ['sigmoid', 'erf', 'arctan', 'softsign']
    """
    return list(_REGISTRY)


def get_gate(name: str | Gate) -> Gate:
    """The registered gate called `name` (a Gate passes through unchanged).

    >>> get_gate("erf")
    Gate(name='erf', halfmax=0.8325546111576977, tail='gaussian')
    >>> get_gate("tanh")
    Traceback (most recent call last):
    ...
    ValueError: unknown gate 'tanh'; available gates: sigmoid, erf, arctan, softsign...
    """
    return _lookup(name, "gate")


def _lookup(gate: str | Gate, what: str) -> Gate:
    """get_gate, naming the argument `what` in its errors."""
    if isinstance(gate, Gate):
        return gate
    if not isinstance(gate, str):
        raise TypeError(f"{what} must be a registered gate name (str) or a Gate, got {type(gate).__name__} {gate!r}")
    if gate not in _REGISTRY:
        where = "" if what == "gate" else f" for {what}"
        raise ValueError(f"unknown gate {gate!r}{where}; available gates: {', '.join(available_gates())}")
    return _REGISTRY[gate]


def register_gate(gate: Gate, *, overwrite: bool = False) -> Gate:
    """Add `gate` to the registry so that recipes and `get_gate` can name it, after checking it.

    Any Gate is checked, also one built directly: admissibility (i)-(iv) (`InadmissibleGateError`) and
    that g' is 1/2 at its `halfmax`.

    >>> cauchy2 = make_gate("cauchy2", lambda z: 1 / (1 + z**2) ** 2)
    >>> register_gate(cauchy2, overwrite=True) is get_gate("cauchy2")
    True
    >>> register_gate(Gate("double", lambda z: 2 * torch.atan(z), lambda z: 2 / (1 + z**2), 1.0, "polynomial"))
    Traceback (most recent call last):
    ...
    sapo_core.gates.InadmissibleGateError: gate 'double' is not admissible: (ii) g'(0) = 2, must equal 1
    """
    if not isinstance(gate, Gate):
        raise TypeError(f"register_gate expects a Gate (see make_gate), got {type(gate).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    if gate.name in _REGISTRY and not overwrite:
        raise ValueError(f"a gate named {gate.name!r} is already registered; pass overwrite=True to replace it")
    report = check_admissible(gate)
    if not report.passed:
        raise InadmissibleGateError(report)
    _check_halfmax(gate.g_prime, gate.halfmax)
    _REGISTRY[gate.name] = gate
    return gate


# ---------------------------------------------------------------------------------------------
# Temperature conventions (method §2.5): equal tau, or width-matched to a reference gate's half-max.
# ---------------------------------------------------------------------------------------------

TAU_CONVENTIONS = ("equal", "width_matched")


def width_matched_tau(name: str | Gate, tau: TauLike, reference: str | Gate = "sigmoid") -> TauLike:
    """tau * halfmax_gate / halfmax_reference: the gate's half-max then sits where the reference's does.

    method §2.5, eq. (2.4). `tau` must be finite and > 0.

    >>> round(width_matched_tau("erf", 1.0), 4)
    0.4723
    >>> width_matched_tau("erf", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: tau must be finite and > 0, got 0.0
    """
    gate, ref = _lookup(name, "gate"), _lookup(reference, "reference")
    _check_tau(tau)
    return tau * gate.halfmax / ref.halfmax


def resolve_tau(name: str | Gate, tau: TauLike, convention: str, reference: str | Gate = "sigmoid") -> TauLike:
    """The temperature a gate runs at under `convention` ("equal" or "width_matched"), method §2.5.

    >>> resolve_tau("softsign", 2.0, "equal")
    2.0
    >>> round(resolve_tau("softsign", 2.0, "width_matched"), 4)
    0.47
    """
    _lookup(name, "gate")
    _check_tau(tau)
    if convention == "equal":
        return tau
    if convention == "width_matched":
        return width_matched_tau(name, tau, reference)
    raise ValueError(f"unknown tau convention {convention!r}; allowed: {', '.join(TAU_CONVENTIONS)}")


def clip_weight(x: torch.Tensor, advantage_sign: float | torch.Tensor, eps_low: float = 0.2,
                eps_high: float = 0.2) -> torch.Tensor:
    """Hard clipping's gradient weight: 1 inside the trust region, 0 outside (method §2.4, eq. (2.3)).

    The region is x <= 1 + eps_high for A > 0 and x >= 1 - eps_low otherwise, boundaries included as in
    the gradient of min(r A, clip(r) A) (TRL's autograd and sapo_core.loss): A = 0 takes the A < 0 side,
    as it takes tau_neg for the smooth gates (TRL's `where(A > 0, ...)`), so gate-weight statistics mean
    the same thing for clip and for the gates.

    >>> clip_weight(torch.tensor([0.7, 1.0, 1.3]), advantage_sign=1.0)
    tensor([1., 1., 0.])
    >>> clip_weight(torch.tensor([0.7, 1.0, 1.3]), advantage_sign=-1.0)
    tensor([0., 1., 1.])
    """
    _check_tensor("x", x)
    if not (isinstance(advantage_sign, torch.Tensor) or _is_real(advantage_sign)):
        raise TypeError(f"advantage_sign must be a real number or a tensor, got {type(advantage_sign).__name__}")
    if _is_real(advantage_sign) and math.isnan(advantage_sign):  # nan > 0 is false: it would pass as A < 0
        raise ValueError("advantage_sign must not be nan")
    for name, eps in (("eps_low", eps_low), ("eps_high", eps_high)):
        if not _is_real(eps):
            raise TypeError(f"{name} must be a real number, got {type(eps).__name__} {eps!r}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {eps!r}")
    sign = torch.as_tensor(advantage_sign, dtype=x.dtype, device=x.device)
    return torch.where(sign > 0, x <= 1.0 + eps_high, x >= 1.0 - eps_low).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# User gates from g' alone: g(z) = int_0^z g'(s) ds by Gauss-Legendre on geometric panels.
# Panels [0, 2^-8], [2^-8, 2^-7], ..., [2^39, 2^40] on each side; the cumulative integral at the
# panel edges is tabulated once and the last partial panel is integrated per element, so any
# |z| up to 2^40 costs one 32-point quadrature and keeps ~1e-14 relative accuracy for smooth g'.
# ---------------------------------------------------------------------------------------------

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(32)
_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(-8, 41)])


def _gl(fn: BaseFn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int_a^b fn(s) ds elementwise (float64, on a's device), 32-point Gauss-Legendre."""
    nodes = torch.as_tensor(_GL_NODES, dtype=torch.float64, device=a.device)
    weights = torch.as_tensor(_GL_WEIGHTS, dtype=torch.float64, device=a.device)
    mid, half = (a + b) / 2.0, (b - a) / 2.0
    s = mid.unsqueeze(-1) + half.unsqueeze(-1) * nodes
    return half * (fn(s) * weights).sum(-1)


class _NumericBase:
    """g(z) = int_0^z g'(s) ds for a g' given as a torch function, differentiable (d g / dz = g')."""

    def __init__(self, g_prime: BaseFn):
        self.g_prime = g_prime
        self._tables: dict[torch.device, tuple[torch.Tensor, dict[float, torch.Tensor]]] = {}

    def _table(self, device: torch.device) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
        """Panel edges and the cumulative integral at them, per side, tabulated once per device."""
        if device not in self._tables:
            edges = torch.as_tensor(_EDGES, dtype=torch.float64, device=device)
            cum = {}
            for sign in (1.0, -1.0):
                fn = lambda s, sign=sign: self.g_prime(sign * s)
                panels = _gl(fn, edges[:-1], edges[1:])
                cum[sign] = torch.cat([torch.zeros(1, dtype=torch.float64, device=device), torch.cumsum(panels, 0)])
            self._tables[device] = (edges, cum)
        return self._tables[device]

    def _integral(self, z: torch.Tensor) -> torch.Tensor:
        z64 = z.detach().to(torch.float64)
        edges, cum = self._table(z64.device)
        mag = z64.abs().clamp(max=float(edges[-1]))
        k = (torch.searchsorted(edges, mag, right=True) - 1).clamp(0, len(edges) - 2)
        out = torch.full_like(z64, math.nan)  # nan in, nan out
        for sign in (1.0, -1.0):
            sel = z64 >= 0 if sign > 0 else z64 < 0
            if not sel.any():
                continue
            lo = edges[k[sel]]
            partial = _gl(lambda s, sign=sign: self.g_prime(sign * s), lo, mag[sel])
            out[sel] = sign * (cum[sign][k[sel]] + partial)
        return out.to(z.dtype)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return _IntegralFn.apply(z, self)


class _IntegralFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, base):
        ctx.save_for_backward(z)
        ctx.base = base
        return base._integral(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * ctx.base.g_prime(z).to(grad.dtype), None


# ---------------------------------------------------------------------------------------------
# Admissibility (method §2.2, (i)-(iv)) with numerical evidence.
# ---------------------------------------------------------------------------------------------

PROPERTIES = {
    "(i)": "f is continuously differentiable (g' continuous, g' = dg/dz)",
    "(ii)": "f' has its global maximum, equal to 1, at x = 1",
    "(iii)": "f' decreases monotonically away from x = 1 on each side",
    "(iv)": "f' -> 0 as |x - 1| -> infinity",
}
_GRID_STEP = 1e-3
_DENSE = torch.arange(-40.0, 40.0 + _GRID_STEP / 2, _GRID_STEP, dtype=torch.float64)
_FAR = torch.logspace(math.log10(40.0), 6, 400, dtype=torch.float64)
_DECAY_AT, _DECAY_TOL = 1e6, 1e-3
_JUMP_TOL = 0.05      # largest allowed change of g' between grid points 1e-3 apart (|g''| <= 50)
_MONO_TOL = 1e-12     # float noise allowed when checking monotonicity


@dataclass
class AdmissibilityReport:
    """Pass/fail and numerical evidence for each admissibility property of one gate."""

    gate: str
    results: dict[str, tuple[bool, str]]

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.results.values())

    @property
    def failed(self) -> list[str]:
        return [prop for prop, (ok, _) in self.results.items() if not ok]

    def rows(self) -> list[dict]:
        """One row per property: gate, property, statement, passed, evidence."""
        return [{"gate": self.gate, "property": prop, "statement": PROPERTIES[prop], "passed": ok,
                 "evidence": ev} for prop, (ok, ev) in self.results.items()]

    def __str__(self) -> str:
        lines = [f"gate {self.gate!r}: {'admissible' if self.passed else 'NOT admissible'}"]
        lines += [f"  {p} {'pass' if ok else 'FAIL'}: {ev}" for p, (ok, ev) in self.results.items()]
        return "\n".join(lines)


class InadmissibleGateError(ValueError):
    """A user gate fails one or more of the admissibility properties (i)-(iv)."""

    def __init__(self, report: AdmissibilityReport):
        if not isinstance(report, AdmissibilityReport):
            raise TypeError(f"InadmissibleGateError needs an AdmissibilityReport, got {type(report).__name__}")
        self.report = report
        failed = "; ".join(f"{p} {report.results[p][1]}" for p in report.failed)
        super().__init__(f"gate {report.gate!r} is not admissible: {failed}")


def _eval(fn: BaseFn, z: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(fn(z), dtype=torch.float64).broadcast_to(z.shape)


_PROBE = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)


def _check_fn(what: str, fn) -> None:
    """`fn` maps a float64 tensor of z to a tensor of the same shape, else TypeError naming `what`."""
    if not callable(fn):
        raise TypeError(f"{what} must be a callable torch function of z, got {type(fn).__name__}")
    try:
        out = fn(_PROBE.clone())
    except Exception as err:  # any failure of user code, re-raised naming the argument
        raise TypeError(f"{what} must map a torch.Tensor of z to a tensor of the same shape; on "
                        f"{_PROBE.tolist()} it raised {type(err).__name__}: {err}") from err
    if not isinstance(out, torch.Tensor) or out.shape != _PROBE.shape:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"{what} must map a torch.Tensor of z to a tensor of the same shape; on a tensor of "
                        f"shape {tuple(_PROBE.shape)} it returned {got}")


def _jump_in(fn: BaseFn, a: float, b: float) -> tuple[float, float]:
    """(size, where) of the step of fn inside [a, b] by bisection, always keeping the half that changes
    more: a discontinuity keeps its full size down to a tiny interval, a steep but continuous fn does not."""
    fa, fb = (float(_eval(fn, torch.tensor([v], dtype=torch.float64))[0]) for v in (a, b))
    for _ in range(200):
        if b - a <= 1e-10 * max(1.0, abs(a)):
            break
        m = (a + b) / 2.0
        fm = float(_eval(fn, torch.tensor([m], dtype=torch.float64))[0])
        if abs(fm - fa) >= abs(fb - fm):
            b, fb = m, fm
        else:
            a, fa = m, fm
    return abs(fb - fa), (a + b) / 2.0


def _largest_jump(g_prime: BaseFn, dense_steps: torch.Tensor, far: torch.Tensor) -> tuple[float, float] | None:
    """A discontinuity of g' larger than _JUMP_TOL, on the dense grid or between far-grid points; else None."""
    intervals = []
    j = int(torch.argmax(dense_steps))
    if float(dense_steps[j]) > _JUMP_TOL:
        intervals.append((float(_DENSE[j]), float(_DENSE[j + 1])))
    n = len(_FAR)
    for sign, side in ((1.0, far[:n]), (-1.0, far[n:])):  # +z, then -z, each outward from |z| = 40
        steps = (side[1:] - side[:-1]).abs()
        for i in torch.nonzero(steps > _JUMP_TOL).flatten().tolist():
            a, b = sorted((sign * float(_FAR[i]), sign * float(_FAR[i + 1])))
            intervals.append((a, b))
    found = [_jump_in(g_prime, a, b) for a, b in intervals]
    found = [f for f in found if f[0] > _JUMP_TOL]
    return max(found) if found else None


def check_admissible(gate: str | Gate) -> AdmissibilityReport:
    """Check properties (i)-(iv) of method §2.2 on dense and far grids; each result carries its evidence.

    `gate` is a registered name or a Gate. A non-finite value of g' or g anywhere on the grids fails.

    >>> check_admissible("softsign").passed
    True
    >>> report = check_admissible(Gate("nan_g", lambda z: z * math.nan, lambda z: 1 / (1 + z**2), 1.0, "polynomial"))
    >>> report.failed
    ['(i)']
    >>> print(report.results["(i)"][1])
    g(-40) = nan, not finite: g is not the integral of g'
    """
    gate = get_gate(gate)
    return _admissibility(gate.name, gate.g, gate.g_prime, "the gate's g", "the gate's g_prime")


def _first_nonfinite(zs: torch.Tensor, vals: torch.Tensor) -> tuple[float, float] | None:
    """(z, value) at the first non-finite value, or None."""
    bad = torch.nonzero(~torch.isfinite(vals)).flatten()
    return None if len(bad) == 0 else (float(zs[bad[0]]), float(vals[bad[0]]))


def _admissibility(name: str, g: BaseFn, g_prime: BaseFn, g_label: str, g_prime_label: str) -> AdmissibilityReport:
    """The report of check_admissible for a base g and its derivative g_prime (labels name them in TypeErrors)."""
    _check_fn(g_prime_label, g_prime)
    _check_fn(g_label, g)
    results: dict[str, tuple[bool, str]] = {}
    zero = torch.zeros(1, dtype=torch.float64)
    dense, far = _eval(g_prime, _DENSE), _eval(g_prime, torch.cat([_FAR, -_FAR]))
    n_far = len(_FAR)
    zs = torch.cat([_DENSE, _FAR, -_FAR])
    both = torch.cat([dense, far])
    # Every comparison below is written so that nan fails it: `not (err <= tol)`, never `err > tol`.
    nonfinite = _first_nonfinite(zs, both)
    finite = nonfinite is None
    bad = "" if finite else f"g'({nonfinite[0]:.6g}) = {nonfinite[1]}, not finite"

    # (i) g' finite and continuous on the grid, and g consistent with it (g finite, g(0) = 0, dg/dz = g').
    jumps = (dense[1:] - dense[:-1]).abs()
    j = int(torch.argmax(jumps)) if finite else 0
    z_probe = torch.tensor([-2.5, -0.7, 0.3, 1.9], dtype=torch.float64)
    h = 1e-5
    fd = (_eval(g, z_probe + h) - _eval(g, z_probe - h)) / (2 * h)
    fd_err = float((fd - _eval(g_prime, z_probe)).abs().max())
    g0 = float(_eval(g, zero)[0])
    z_g = torch.cat([_DENSE[::20], _FAR, -_FAR])
    g_nonfinite = _first_nonfinite(z_g, _eval(g, z_g))
    jump = _largest_jump(g_prime, jumps, far) if finite else None
    if not finite:
        results["(i)"] = (False, f"{bad} (g' must be finite on [-1e6, 1e6])")
    elif jump is not None:
        size, z_at = jump
        results["(i)"] = (False, (f"g' jumps by {size:.3g} at z = {z_at:.6g} (the step persists when bisected "
                                  "to a 1e-10 relative width), so f' is not continuous"))
    elif g_nonfinite is not None:
        results["(i)"] = (False, (f"g({g_nonfinite[0]:.6g}) = {g_nonfinite[1]}, not finite: g is not the integral "
                                  "of g'"))
    elif not abs(g0) <= 1e-9:
        results["(i)"] = (False, f"g(0) = {g0:.3g}, must be 0: g is not the integral of g' from 0")
    elif not fd_err <= 1e-5:
        results["(i)"] = (False, (f"|dg/dz - g'| up to {fd_err:.3g} at z in {{-2.5, -0.7, 0.3, 1.9}} (must be "
                                  "~0): g is not the integral of g'"))
    else:
        results["(i)"] = (True, (f"g' finite; largest step {float(jumps[j]):.2g} on a {_GRID_STEP:g} grid; "
                                 f"g(0) = {g0:.1g}; |dg/dz - g'| <= {fd_err:.1g}"))

    # (ii) g'(0) = 1 and nothing larger anywhere.
    peak0 = float(_eval(g_prime, zero)[0])
    m = int(torch.argmax(torch.nan_to_num(both, nan=-math.inf)))
    gmax, zmax = float(both[m]), float(zs[m])
    if not abs(peak0 - 1.0) <= 1e-9:
        results["(ii)"] = (False, f"g'(0) = {peak0:.6g}, must equal 1")
    elif not gmax <= 1.0 + 1e-9:
        results["(ii)"] = (False, f"g'({zmax:.4g}) = {gmax:.6g}, exceeds g'(0) = 1")
    elif not finite:
        results["(ii)"] = (False, f"{bad}, so the maximum of g' is undefined")
    else:
        results["(ii)"] = (True, f"g'(0) = {peak0:.12g}; max on grid {gmax:.12g} at z = {zmax:.3g}")

    # (iii) non-increasing for z > 0 and non-decreasing for z < 0 (walking outwards from 0).
    centre = len(_DENSE) // 2
    right = torch.cat([dense[centre:], far[:n_far]])
    left = torch.cat([dense[: centre + 1].flip(0), far[n_far:]])
    zr = torch.cat([_DENSE[centre:], _FAR])
    zl = torch.cat([_DENSE[: centre + 1].flip(0), -_FAR])
    worst = None
    for vals, zz in ((right, zr), (left, zl)):
        rise = torch.nan_to_num(vals[1:] - vals[:-1], nan=math.inf)
        i = int(torch.argmax(rise))
        if worst is None or float(rise[i]) > worst[0]:
            worst = (float(rise[i]), float(zz[i]), float(zz[i + 1]), float(vals[i]), float(vals[i + 1]))
    rise, za, zb, va, vb = worst
    if not finite:
        results["(iii)"] = (False, f"{bad}, so g' cannot be monotone")
    elif not rise <= _MONO_TOL:
        results["(iii)"] = (False, (f"g' rises from {va:.4g} at z = {za:.4g} to {vb:.4g} at z = {zb:.4g} "
                                    "moving away from 0 (not monotone)"))
    else:
        results["(iii)"] = (True, f"largest rise moving away from 0: {max(rise, 0.0):.1g} over {len(zs)} points")

    # (iv) decay: |g'(+-1e6)| small.
    tails = _eval(g_prime, torch.tensor([_DECAY_AT, -_DECAY_AT], dtype=torch.float64))
    t_plus, t_minus = float(tails[0]), float(tails[1])
    ok = finite and max(abs(t_plus), abs(t_minus)) < _DECAY_TOL
    decays = f"{'<' if ok else 'not <'} {_DECAY_TOL:g}: {'decays' if ok else 'does not decay to 0'}"
    if not finite:
        decays += f"; {bad}"
    results["(iv)"] = (ok, f"g'(+1e6) = {t_plus:.3g}, g'(-1e6) = {t_minus:.3g} ({decays})")
    return AdmissibilityReport(name, results)


def _halfmax(g_prime: BaseFn) -> float:
    """The z > 0 where g'(z) = 1/2 (bisection; g' is monotone there for an admissible gate)."""
    lo, hi = 0.0, 1.0
    while float(_eval(g_prime, torch.tensor([hi], dtype=torch.float64))[0]) > 0.5:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            raise ValueError("g' never falls to 1/2 on z > 0")
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if float(_eval(g_prime, torch.tensor([mid], dtype=torch.float64))[0]) > 0.5:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _estimate_tail(g_prime: BaseFn) -> str:
    """Classify g''s tail by the slope k of log(-log g') against log z: ~0 polynomial, 1 exp., 2 Gaussian."""
    z = torch.logspace(0.5, 12, 400, dtype=torch.float64)
    v = _eval(g_prime, z)
    ok = (v > 1e-250) & (v < 1e-2)
    if ok.sum() < 2:
        return "polynomial"
    zz, vv = z[ok], v[ok]
    z2, v2 = zz[-1], vv[-1]
    z1 = zz[int(torch.searchsorted(zz, z2 / 2.0))]
    v1 = vv[int(torch.searchsorted(zz, z2 / 2.0))]
    slope = float((torch.log(-torch.log(v2)) - torch.log(-torch.log(v1))) / (torch.log(z2) - torch.log(z1)))
    return "polynomial" if slope < 0.6 else ("exponential" if slope < 1.5 else "gaussian")


def _check_halfmax(g_prime: BaseFn, halfmax, what: str = "halfmax") -> None:
    """halfmax finite, > 0 and where g' = 1/2 (to 1e-6), else ValueError naming it."""
    _check_positive(what, halfmax)
    at = float(_eval(g_prime, torch.tensor([float(halfmax)], dtype=torch.float64))[0])
    if not abs(at - 0.5) <= 1e-6:
        raise ValueError(f"{what} = {halfmax!r} is not the half-max of g': g'({halfmax:.6g}) = {at:.6g}, must be "
                         f"1/2 (leave it out of make_gate to have it computed: {_halfmax(g_prime):.12g})")


def make_gate(name: str, weight_fn: BaseFn, value_fn: BaseFn | None = None, *, tail: str | None = None,
              halfmax: float | None = None) -> Gate:
    """A user gate from g' (`weight_fn`, a torch function of z) and optionally g in closed form.

    Without `value_fn`, g is integrated numerically (and stays differentiable). The half-max and tail
    are computed when not given (a given half-max must be where g' = 1/2). Raises `InadmissibleGateError`
    when (i)-(iv) fail (method §2.2, §2.6).

    >>> cauchy2 = make_gate("cauchy2", lambda z: 1 / (1 + z**2) ** 2)   # g integrated numerically
    >>> round(cauchy2.halfmax, 4), cauchy2.tail
    (0.6436, 'polynomial')
    >>> make_gate("flat", lambda z: 0.5 + 0.5 / (1 + z**2))
    Traceback (most recent call last):
    ...
    sapo_core.gates.InadmissibleGateError: gate 'flat' is not admissible: (iv) g'(+1e6) = 0.5, ...
    """
    _check_name(name)
    if tail is not None and tail not in TAILS:
        raise ValueError(f"unknown tail {tail!r}; allowed: {', '.join(TAILS)}")
    _check_fn("weight_fn", weight_fn)
    if value_fn is not None:
        _check_fn("value_fn", value_fn)
    if halfmax is not None:
        _check_positive("halfmax", halfmax)
    g = value_fn if value_fn is not None else _NumericBase(weight_fn)
    report = _admissibility(name, g, weight_fn, "value_fn" if value_fn is not None else "g", "weight_fn")
    if not report.passed:
        raise InadmissibleGateError(report)
    if halfmax is not None:
        _check_halfmax(weight_fn, halfmax)
    return Gate(name, g, weight_fn, halfmax=halfmax if halfmax is not None else _halfmax(weight_fn),
                tail=tail or _estimate_tail(weight_fn))


def student_t(nu: float) -> Gate:
    """Student-t kernel gate g'(z) = (1 + z^2/nu)^(-(nu+1)/2): nu = 1 is arctan, nu -> inf Gaussian (method §2.6).

    >>> t1 = student_t(1)
    >>> t1.name, t1.halfmax, t1.tail
    ('student_t(nu=1)', 1.0, 'polynomial')
    >>> round(student_t(1e12).halfmax, 4)   # the Gaussian exp(-z^2/2): sqrt(2 ln 2)
    1.1774
    >>> student_t(True)
    Traceback (most recent call last):
    ...
    TypeError: student_t needs a real number nu > 0, got bool True
    """
    if not _is_real(nu):
        raise TypeError(f"student_t needs a real number nu > 0, got {type(nu).__name__} {nu!r}")
    if not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"student_t needs a finite nu > 0, got {nu!r}")
    nu = float(nu)
    power = -(nu + 1.0) / 2.0
    # (1 + z^2/nu)^power as exp(power log1p(z^2/nu)) and the half-max with expm1: exact for any nu (the
    # direct forms round 1 + z^2/nu and 2^(1/|power|) to 1 once nu is large, ~1e8)
    halfmax = math.sqrt(nu * math.expm1(math.log(2.0) / -power))  # solves (1 + z^2/nu)^power = 1/2
    return make_gate(f"student_t(nu={nu:g})", lambda z: torch.exp(power * torch.log1p(z * z / nu)),
                     tail="polynomial", halfmax=halfmax)


def gate_table(names: list[str | Gate] | None = None, tau: float = 1.0) -> list[dict]:
    """Half-max width (in z and in |x - 1| at `tau`), width-matched factor and tail, one row per gate (method §2.3).

    >>> [(row["gate"], round(row["width_matched_factor"], 4)) for row in gate_table(["erf", "arctan"])]
    [('erf', 0.4723), ('arctan', 0.5673)]
    """
    if names is None:
        names = available_gates()
    if isinstance(names, (str, Gate)) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list of gate names or Gates (or None for all), got {type(names).__name__}")
    _check_positive("tau", tau)
    gates = [_lookup(n, "names") for n in names]
    return [{"gate": g.name, "halfmax_z": g.halfmax, "halfmax_x": g.halfmax / tau,
             "width_matched_factor": width_matched_tau(g, 1.0), "tail": g.tail} for g in gates]
