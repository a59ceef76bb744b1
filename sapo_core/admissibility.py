"""Admissibility of a gate's base function g and derivative g' (method §2.2), with numerical evidence.

A gate f_tau(x) = 1 + g(z)/tau, z = tau (x - 1), is admissible when (i) f is continuously differentiable,
(ii) f' has its global maximum, equal to 1, at x = 1, (iii) f' decreases monotonically away from x = 1 and
(iv) x f'(x) -> 0 as x -> infinity. In z, f' = g'(z) and x f'(x) = (1 + z/tau) g'(z), so (iv) holds at every
tau when z g'(z) -> 0 as z -> +infinity; beside it the check asks f' -> 0 on both sides. Every property is
checked numerically on grids of z; each result carries the evidence. This module works on plain torch
functions g and g'; `sapo_core.gates` builds gates on it and re-exports its public names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sapo_core.checks import check_positive

__all__ = ["PROPERTIES", "TAILS", "AdmissibilityReport", "InadmissibleGateError", "check", "check_fn",
           "check_halfmax", "estimate_tail", "halfmax", "readings_iv", "READINGS_IV"]

TAILS = ("exponential", "gaussian", "polynomial")
BaseFn = Callable[[torch.Tensor], torch.Tensor]

PROPERTIES = {
    "(i)": "f is continuously differentiable (g' continuous, g' = dg/dz)",
    "(ii)": "f' has its global maximum, equal to 1, at x = 1",
    "(iii)": "f' decreases monotonically away from x = 1 on each side",
    "(iv)": "x f'(x) -> 0 as x -> infinity (checked as z g'(z) -> 0), beside f' -> 0 on both sides",
}
_GRID_STEP = 1e-3
_DENSE = torch.arange(-40.0, 40.0 + _GRID_STEP / 2, _GRID_STEP, dtype=torch.float64)
_FAR = torch.logspace(math.log10(40.0), 6, 400, dtype=torch.float64)
_DECAY_AT, _DECAY_TOL = 1e6, 1e-3
_SLOW_DECAY = -0.01   # (iv): z g'(z) above the tolerance at 1e6 must still fall at least like z^-0.01
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


def evaluate(fn: BaseFn, z: torch.Tensor) -> torch.Tensor:
    """fn(z) as a float64 tensor of z's shape."""
    return torch.as_tensor(fn(z), dtype=torch.float64).broadcast_to(z.shape)


_PROBE = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)


def check_fn(what: str, fn) -> None:
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
    fa, fb = (float(evaluate(fn, torch.tensor([v], dtype=torch.float64))[0]) for v in (a, b))
    for _ in range(200):
        if b - a <= 1e-10 * max(1.0, abs(a)):
            break
        m = (a + b) / 2.0
        fm = float(evaluate(fn, torch.tensor([m], dtype=torch.float64))[0])
        if abs(fm - fa) >= abs(fb - fm):
            b, fb = m, fm
        else:
            a, fa = m, fm
    return abs(fb - fa), (a + b) / 2.0


def _largest_jump(g_prime: BaseFn, dense_steps: torch.Tensor, far: torch.Tensor) -> tuple[float, float] | None:
    """A discontinuity of g' larger than _JUMP_TOL, on the dense grid or between far-grid points; else None."""
    # candidates: the largest step, and every step above the tolerance that is more than twice both its
    # neighbours' (a jump stands out of a continuous slope, however steep; the largest alone can hide one)
    padded = torch.nn.functional.pad(dense_steps, (1, 1))
    isolated = (dense_steps > _JUMP_TOL) & (dense_steps > 2 * torch.maximum(padded[:-2], padded[2:]))
    candidates = {int(torch.argmax(dense_steps)), *torch.nonzero(isolated).flatten().tolist()[:64]}
    intervals = [(float(_DENSE[j]), float(_DENSE[j + 1])) for j in sorted(candidates)
                 if float(dense_steps[j]) > _JUMP_TOL]
    n = len(_FAR)
    for sign, side in ((1.0, far[:n]), (-1.0, far[n:])):  # +z, then -z, each outward from |z| = 40
        steps = (side[1:] - side[:-1]).abs()
        for i in torch.nonzero(steps > _JUMP_TOL).flatten().tolist():
            a, b = sorted((sign * float(_FAR[i]), sign * float(_FAR[i + 1])))
            intervals.append((a, b))
    found = [_jump_in(g_prime, a, b) for a, b in intervals]
    found = [f for f in found if f[0] > _JUMP_TOL]
    return max(found) if found else None


def _first_nonfinite(zs: torch.Tensor, vals: torch.Tensor) -> tuple[float, float] | None:
    """(z, value) at the first non-finite value, or None."""
    bad = torch.nonzero(~torch.isfinite(vals)).flatten()
    return None if len(bad) == 0 else (float(zs[bad[0]]), float(vals[bad[0]]))


def check(name: str, g: BaseFn, g_prime: BaseFn, g_label: str = "g", g_prime_label: str = "g_prime"
          ) -> AdmissibilityReport:
    """Properties (i)-(iv) of a base g and its derivative g_prime (the labels name them in TypeErrors).

    >>> check("arctan", torch.atan, lambda z: 1 / (1 + z**2)).passed
    True
    >>> report = check("slow", lambda z: z.sign() * torch.log1p(z.abs()), lambda z: 1 / (1 + z.abs()))
    >>> report.failed, report.results["(iv)"][1][:58]
    (['(iv)'], "g'(+1e6) = 1e-06, g'(-1e6) = 1e-06 (< 0.001: f' -> 0); but")
    """
    check_fn(g_prime_label, g_prime)
    check_fn(g_label, g)
    results: dict[str, tuple[bool, str]] = {}
    zero = torch.zeros(1, dtype=torch.float64)
    dense, far = evaluate(g_prime, _DENSE), evaluate(g_prime, torch.cat([_FAR, -_FAR]))
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
    fd = (evaluate(g, z_probe + h) - evaluate(g, z_probe - h)) / (2 * h)
    fd_err = float((fd - evaluate(g_prime, z_probe)).abs().max())
    g0 = float(evaluate(g, zero)[0])
    z_g = torch.cat([_DENSE[::20], _FAR, -_FAR])
    g_nonfinite = _first_nonfinite(z_g, evaluate(g, z_g))
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
    peak0 = float(evaluate(g_prime, zero)[0])
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

    # (iv) method §2.2: x f'(x) = (1 + z/tau) g'(z) -> 0 as x -> infinity, i.e. z g'(z) -> 0 as z -> +infinity;
    # beside it, f' -> 0 on both sides. Pass when z g'(z) is small at 1e6 or still falls like a power of z.
    tails = evaluate(g_prime, torch.tensor([_DECAY_AT, -_DECAY_AT], dtype=torch.float64))
    t_plus, t_minus = float(tails[0]), float(tails[1])
    x_ok, zg3, zg6 = _x_decay(g_prime)
    decays = finite and max(abs(t_plus), abs(t_minus)) < _DECAY_TOL
    x_decays = finite and x_ok
    verdict = f"< {_DECAY_TOL:g}: f' -> 0" if decays else f"not < {_DECAY_TOL:g}: does not decay to 0"
    evidence = f"g'(+1e6) = {t_plus:.3g}, g'(-1e6) = {t_minus:.3g} ({verdict})"
    if not finite:
        evidence += f"; {bad}"
    elif decays and not x_decays:
        evidence += (f"; but z g'(z) = {zg3:.4g} at z = 1e3 and {zg6:.4g} at z = 1e6 does not fall to 0, so "
                     "x f'(x) = (1 + z/tau) g'(z) does not -> 0 as x -> infinity")
    elif decays:
        evidence += f"; z g'(z) = {zg3:.3g} at z = 1e3, {zg6:.3g} at z = 1e6 (x f'(x) -> 0)"
    results["(iv)"] = (decays and x_decays, evidence)
    return AdmissibilityReport(name, results)


def _x_decay(g_prime: BaseFn) -> tuple[bool, float, float]:
    """(z g'(z) -> 0 as z -> +infinity, |z g'(z)| at 1e3, at 1e6): small at 1e6 or still falling like z^-0.01."""
    z3, z6 = 1e3, _DECAY_AT
    zg3, zg6 = (abs(z * float(evaluate(g_prime, torch.tensor([z], dtype=torch.float64))[0])) for z in (z3, z6))
    slope = math.log(zg6 / zg3) / math.log(z6 / z3) if zg3 > 0 and zg6 > 0 else -math.inf
    return bool(zg6 < _DECAY_TOL or slope <= _SLOW_DECAY), zg3, zg6


READINGS_IV = {"(iv) f'": "f'(x) -> 0 as x -> infinity", "(iv) x f'": "x f'(x) -> 0 as x -> infinity"}


def readings_iv(g_prime: BaseFn) -> dict[str, tuple[bool, str]]:
    """Property (iv) read both ways as x -> +infinity (method §2.2): f' -> 0, and x f'(x) -> 0 (via z g'(z)).

    >>> {k: ok for k, (ok, _) in readings_iv(lambda z: 1 / (1 + z.abs())).items()}
    {"(iv) f'": True, "(iv) x f'": False}
    """
    check_fn("g_prime", g_prime)
    far = float(evaluate(g_prime, torch.tensor([_DECAY_AT], dtype=torch.float64))[0])
    x_ok, zg3, zg6 = _x_decay(g_prime)
    f_ok = abs(far) < _DECAY_TOL  # false for nan
    x_ok = x_ok and math.isfinite(zg3) and math.isfinite(zg6)
    return {"(iv) f'": (f_ok, f"g'(1e6) = {far:.3g} ({'<' if f_ok else 'not <'} {_DECAY_TOL:g})"),
            "(iv) x f'": (x_ok, f"z g'(z) = {zg3:.3g} at z = 1e3, {zg6:.3g} at z = 1e6 ("
                                f"{'falls to 0' if x_ok else 'does not fall to 0'})")}


def halfmax(g_prime: BaseFn) -> float:
    """The z > 0 where g'(z) = 1/2 (bisection; g' is monotone there for an admissible gate)."""
    lo, hi = 0.0, 1.0
    while float(evaluate(g_prime, torch.tensor([hi], dtype=torch.float64))[0]) > 0.5:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            raise ValueError("g' never falls to 1/2 on z > 0")
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if float(evaluate(g_prime, torch.tensor([mid], dtype=torch.float64))[0]) > 0.5:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def estimate_tail(g_prime: BaseFn) -> str:
    """Classify g''s tail by the slope k of log(-log g') against log z: ~0 polynomial, 1 exp., 2 Gaussian."""
    z = torch.logspace(0.5, 12, 400, dtype=torch.float64)
    v = evaluate(g_prime, z)
    ok = (v > 1e-250) & (v < 1e-2)
    if ok.sum() < 2:
        return "polynomial"
    zz, vv = z[ok], v[ok]
    z2, v2 = zz[-1], vv[-1]
    z1 = zz[int(torch.searchsorted(zz, z2 / 2.0))]
    v1 = vv[int(torch.searchsorted(zz, z2 / 2.0))]
    slope = float((torch.log(-torch.log(v2)) - torch.log(-torch.log(v1))) / (torch.log(z2) - torch.log(z1)))
    return "polynomial" if slope < 0.6 else ("exponential" if slope < 1.5 else "gaussian")


def check_halfmax(g_prime: BaseFn, value, what: str = "halfmax") -> None:
    """`value` finite, > 0 and where g' = 1/2 (to 1e-6), else ValueError naming it `what`."""
    check_positive(what, value)
    at = float(evaluate(g_prime, torch.tensor([float(value)], dtype=torch.float64))[0])
    if not abs(at - 0.5) <= 1e-6:
        raise ValueError(f"{what} = {value!r} is not the half-max of g': g'({value:.6g}) = {at:.6g}, must be "
                         f"1/2 (leave it out of make_gate to have it computed: {halfmax(g_prime):.12g})")

