"""Smooth gate functions for SAPO (method §2, docs/method.md).

A gate is built from a base function g with g(0) = 0 and g'(0) = 1:

    f_tau(x)  = 1 + g(tau (x - 1)) / tau          # method §2.1, eq. (2.1), the gate value
    f_tau'(x) = g'(tau (x - 1))                   # method §2.1, eq. (2.2), the gradient weight

The built-ins are the published paper's (v2): sigmoid, erf (eq. 6, g' = exp(-z^2/2)), arctan and softsign
(eq. 8, g' = (1 + z^2)^(-3/2)), plus the earlier forms as named variants, erf_unit (g' = exp(-z^2)) and
softsign_rational (g' = 1/(1 + |z|)^2) (method §2.3). A gate is *admissible* when (i) f is continuously
differentiable, (ii) f' peaks at exactly 1 at x = 1, (iii) f' decreases monotonically away from x = 1 and
(iv) x f'(x) -> 0 as x -> infinity; `sapo_core.admissibility` checks them numerically (method §2.2).

Gates live in a registry of named objects; adding one is a single call::

    from sapo_core.gates import make_gate, register_gate
    cauchy2 = make_gate("cauchy2", lambda z: 1 / (1 + z**2) ** 2, g_prime_text="1/(1 + z**2)**2")
    register_gate(cauchy2)

`make_gate` and `register_gate` check admissibility and raise `InadmissibleGateError` naming the failed
property. Each gate carries its formulas as text; `describe` gives them to run provenance. Every public
function refuses a bad argument with a TypeError or ValueError naming it. The examples in the docstrings
run as tests:  .venv/bin/python -m pytest --doctest-modules sapo_core/gates.py
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import math
import re
import textwrap
from collections.abc import Callable
from typing import NamedTuple

import torch

from sapo_core import admissibility, expressions
from sapo_core.admissibility import PROPERTIES, TAILS, AdmissibilityReport, InadmissibleGateError
from sapo_core.checks import check_positive, is_real
from sapo_core.gate_base import (
    Gate,
    TauLike,
    _check_tau,
    _check_tensor,
    _fn_text,
    make_gate,
    student_t,
)
from sapo_core.methods import METHODS, is_method, parse_method

__all__ = [
    "PROPERTIES",
    "TAILS",
    "TAU_CONVENTIONS",
    "AdmissibilityReport",
    "Gate",
    "FAMILIES",
    "GateSpec",
    "InadmissibleGateError",
    "METHODS",
    "available_gates",
    "check_admissible",
    "clip_weight",
    "describe",
    "expression_report",
    "gate_table",
    "get_gate",
    "is_method",
    "make_gate",
    "parse_spec",
    "register_gate",
    "resolve_spec",
    "resolve_tau",
    "spec_slug",
    "student_t",
    "width_matched_tau",
]

# ---------------------------------------------------------------------------------------------
# Built-in gates (method §2.3 table). erf and softsign are the paper's eq. 6 and 8 (v2); their earlier
# forms stay as erf_unit and softsign_rational. g' for the sigmoid is written as 4 s(z) s(-z) rather
# than 4 s (1 - s) so that the tails keep full relative precision; softsign uses hypot(1, z) =
# sqrt(1 + z^2) so that z^2 cannot overflow (float32 overflows at |z| ~ 1.8e19).
# ---------------------------------------------------------------------------------------------

_SQRT_PI_2 = math.sqrt(math.pi) / 2.0
_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


def _hypot1(z: torch.Tensor) -> torch.Tensor:
    """sqrt(1 + z^2) without overflow."""
    return torch.hypot(z.new_ones(()), z)


_BUILTIN = (
    Gate("sigmoid", lambda z: 4.0 * torch.sigmoid(z) - 2.0,
         lambda z: 4.0 * torch.sigmoid(z) * torch.sigmoid(-z),
         halfmax=2.0 * math.acosh(math.sqrt(2.0)), tail="exponential",
         g_text="4*sigmoid(z) - 2", g_prime_text="4*sigmoid(z)*sigmoid(-z)"),
    Gate("erf", lambda z: _SQRT_HALF_PI * torch.erf(z / math.sqrt(2.0)),
         lambda z: torch.exp(-z * z / 2.0),
         halfmax=math.sqrt(2.0 * math.log(2.0)), tail="gaussian",
         g_text="sqrt(pi/2)*erf(z/sqrt(2))", g_prime_text="exp(-z**2/2)"),
    Gate("arctan", torch.atan,
         lambda z: 1.0 / (1.0 + z * z),
         halfmax=1.0, tail="polynomial",
         g_text="atan(z)", g_prime_text="1/(1 + z**2)"),
    Gate("softsign", lambda z: z / _hypot1(z),
         lambda z: _hypot1(z) ** -3,
         halfmax=math.sqrt(2.0 ** (2.0 / 3.0) - 1.0), tail="polynomial",
         g_text="z/sqrt(1 + z**2)", g_prime_text="(1 + z**2)**(-3/2)"),
    Gate("erf_unit", lambda z: _SQRT_PI_2 * torch.erf(z),
         lambda z: torch.exp(-z * z),
         halfmax=math.sqrt(math.log(2.0)), tail="gaussian",
         g_text="sqrt(pi)/2*erf(z)", g_prime_text="exp(-z**2)"),
    Gate("softsign_rational", lambda z: z / (1.0 + z.abs()),
         lambda z: 1.0 / (1.0 + z.abs()) ** 2,
         halfmax=math.sqrt(2.0) - 1.0, tail="polynomial",
         g_text="z/(1 + abs(z))", g_prime_text="1/(1 + abs(z))**2"),
)
_REGISTRY: dict[str, Gate] = {gate.name: gate for gate in _BUILTIN}
def available_gates() -> list[str]:
    """Names of all registered gates, built-ins first.

    >>> available_gates()[:4]
    ['sigmoid', 'erf', 'arctan', 'softsign']
    """
    return list(_REGISTRY)


def get_gate(name: str | Gate) -> Gate:
    """The gate a spec names (`resolve_spec`: a registered name, family, import path or g' expression); a Gate
    passes through unchanged.

    >>> get_gate("erf")
    Gate(name='erf', halfmax=1.1774100225154747, tail='gaussian')
    >>> get_gate("tanh")
    Traceback (most recent call last):
    ...
    ValueError: unknown gate 'tanh'; available gates: sigmoid, erf, arctan, softsign, erf_unit, softsign_rational...
    """
    return _lookup(name, "gate")


def _lookup(gate: str | Gate, what: str) -> Gate:
    """get_gate, naming the argument `what` in its errors."""
    if isinstance(gate, Gate):
        return gate
    if not isinstance(gate, str):
        raise TypeError(f"{what} must be a gate spec (str, e.g. 'erf' or 'student_t:nu=3') or a Gate, got "
                        f"{type(gate).__name__} {gate!r}")
    if gate in _REGISTRY:
        return _REGISTRY[gate]
    try:
        return resolve_spec(gate)
    except InadmissibleGateError:
        raise
    except ValueError as err:
        if what == "gate":
            raise
        raise ValueError(f"{err} (for {what})") from None


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
    sapo_core.admissibility.InadmissibleGateError: gate 'double' is not admissible: (ii) g'(0) = 2, must equal 1
    """
    if not isinstance(gate, Gate):
        raise TypeError(f"register_gate expects a Gate (see make_gate), got {type(gate).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    if gate.name in METHODS:
        raise ValueError(f"{gate.name!r} names a trust-region method (method §2.8); choose another gate name")
    if gate.name in _REGISTRY and not overwrite:
        raise ValueError(f"a gate named {gate.name!r} is already registered; pass overwrite=True to replace it")
    report = check_admissible(gate)
    if not report.passed:
        raise InadmissibleGateError(report)
    admissibility.check_halfmax(gate.g_prime, gate.halfmax)
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
    0.6679
    >>> width_matched_tau("erf", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: tau must be a finite real number > 0, got 0.0
    """
    gate, ref = _lookup(name, "gate"), _lookup(reference, "reference")
    _check_tau(tau)
    return tau * gate.halfmax / ref.halfmax


def resolve_tau(name: str | Gate, tau: TauLike, convention: str, reference: str | Gate = "sigmoid") -> TauLike:
    """The temperature a gate runs at under `convention` ("equal" or "width_matched"), method §2.5.

    >>> resolve_tau("softsign", 2.0, "equal")
    2.0
    >>> round(resolve_tau("softsign", 2.0, "width_matched"), 4)
    0.8696
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
    if not (isinstance(advantage_sign, torch.Tensor) or is_real(advantage_sign)):
        raise TypeError(f"advantage_sign must be a real number or a tensor, got {type(advantage_sign).__name__}")
    if is_real(advantage_sign) and math.isnan(advantage_sign):  # nan > 0 is false: it would pass as A < 0
        raise ValueError("advantage_sign must not be nan")
    for name, eps in (("eps_low", eps_low), ("eps_high", eps_high)):
        if not is_real(eps):
            raise TypeError(f"{name} must be a real number, got {type(eps).__name__} {eps!r}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {eps!r}")
    sign = torch.as_tensor(advantage_sign, dtype=x.dtype, device=x.device)
    return torch.where(sign > 0, x <= 1.0 + eps_high, x >= 1.0 - eps_low).to(x.dtype)

def check_admissible(gate: str | Gate) -> AdmissibilityReport:
    """Check properties (i)-(iv) of method §2.2 (`sapo_core.admissibility`); each result carries its evidence.

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
    return admissibility.check(gate.name, gate.g, gate.g_prime, "the gate's g", "the gate's g_prime")


def gate_table(names: list[str | Gate] | None = None, tau: float = 1.0, convention: str = "equal",
               reference: str | Gate = "sigmoid") -> list[dict]:
    """Half-max width in z and in |x - 1| at the tau each gate runs at under `convention`, one row per gate.

    Rows: gate, halfmax_z, width_matched_factor (halfmax / the reference's), tau_used (`resolve_tau`),
    halfmax_x = halfmax_z / tau_used, tail (method §2.3, §2.5). Notebook 01 and the explorer print it.

    >>> [(row["gate"], round(row["width_matched_factor"], 4)) for row in gate_table(["erf", "arctan"])]
    [('erf', 0.6679), ('arctan', 0.5673)]
    >>> [round(row["halfmax_x"], 4) for row in gate_table(["erf", "arctan"], tau=2.0, convention="width_matched")]
    [0.8814, 0.8814]
    """
    if names is None:
        names = available_gates()
    if isinstance(names, (str, Gate)) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list of gate names or Gates (or None for all), got {type(names).__name__}")
    check_positive("tau", tau)
    gates = [_lookup(n, "names") for n in names]
    rows = []
    for gate in gates:
        tau_used = resolve_tau(gate, tau, convention, reference)
        rows.append({"gate": gate.name, "halfmax_z": gate.halfmax,
                     "width_matched_factor": width_matched_tau(gate, 1.0, reference), "tau_used": tau_used,
                     "halfmax_x": gate.halfmax / tau_used, "tail": gate.tail})
    return rows


def describe(gate: str | Gate, *, epsilon_low: float | None = None, epsilon_high: float | None = None) -> dict:
    """The gate's formulas as text, half-max, tail and parameters, for run provenance (method §2.3).

    A trust-region method (`is_method`: clip, delta, cispo, ce_gppo, vespo; method §2.4, §2.8) takes `epsilon_low`
    and `epsilon_high`; a gate takes neither.

    >>> describe("erf")["g_prime"]
    'exp(-z**2/2)'
    >>> describe("clip", epsilon_low=0.2, epsilon_high=0.28)["epsilon_high"]
    0.28
    >>> describe("cispo", epsilon_low=0.2, epsilon_high=0.2)["params"]
    {'eps_max': 5.0}
    """
    if is_method(gate):
        for name, eps in (("epsilon_low", epsilon_low), ("epsilon_high", epsilon_high)):
            check_positive(name, eps, strict=False)
        parsed = parse_spec(gate)
        method = METHODS[parsed.parts["method"]]
        return {"name": method.name, "spec": parsed.text, "g_prime": method.rule, "params": parsed.parts["params"],
                "source": method.source, "epsilon_low": epsilon_low, "epsilon_high": epsilon_high}
    if epsilon_low is not None or epsilon_high is not None:
        raise ValueError("epsilon_low and epsilon_high describe hard clipping only (gate 'clip') and the other "
                         "trust-region methods (delta, cispo, ce_gppo, vespo); a smooth gate takes neither")
    spec = parse_spec(gate).text if isinstance(gate, str) else (gate.spec or gate.name)
    gate = get_gate(gate)
    return {"name": gate.name, "spec": spec, "f": "1 + g(tau*(x - 1))/tau", "g": gate.g_text,
            "g_prime": gate.g_prime_text, "halfmax": gate.halfmax, "tail": gate.tail, "params": dict(gate.params)}



# ---------------------------------------------------------------------------------------------
# Gate specs (method §2.6): one string names a gate in recipes, flags, batches, notebooks and provenance.
#   erf                     a registered name
#   student_t:nu=3          a parametrised family, FAMILY:KEY=VALUE[,KEY=VALUE...]
#   mypkg.gates:cauchy2     an import path MODULE:NAME to a Gate or to a g' function (made with make_gate)
#   1/(1+z**2)**2           an expression of g'(z) (sapo_core.expressions: restricted, run first in a
#                           worker with time and memory limits)
#   cispo:eps_max=5         a trust-region method (METHODS, method §2.8; clip among them): a spec but not a gate
# ---------------------------------------------------------------------------------------------

FAMILIES: dict[str, tuple[Callable[..., Gate], tuple[str, ...]]] = {"student_t": (student_t, ("nu",))}
SPEC_FORMS = ("a registered name (erf), a family (student_t:nu=3), an import path to a Gate or a g' function "
              "(mypkg.gates:cauchy2) or an expression of g'(z) (1/(1+z**2)**2)")
SPEC_TIMEOUT_S = 20.0  # the worker's time limit for an expression spec (start-up excluded; its admissibility check)
_FAMILY = re.compile(r"([A-Za-z_]\w*):(\w+=[^,=:]+(?:,\w+=[^,=:]+)*)")
_IMPORT = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_][\w.]*)")
_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


class GateSpec(NamedTuple):
    """A parsed spec: `kind` (method, name, family, import, expression), `text` (the spec written one way) and
    `parts` (method: its name and every parameter, defaults filled in; family: name and params; import: module and
    attribute; expression: the canonical g' text)."""

    kind: str
    text: str
    parts: dict


def parse_spec(spec: str) -> GateSpec:
    """The kind and parts of a gate spec, checked but not run (no import, no evaluation).

    >>> parse_spec("student_t:nu=3.0")
    GateSpec(kind='family', text='student_t:nu=3', parts={'family': 'student_t', 'params': {'nu': 3.0}})
    >>> parse_spec("1/(1 + z**2)**2").text
    '1 / (1 + z ** 2) ** 2'
    >>> parse_spec("__import__('os')")
    Traceback (most recent call last):
    ...
    ValueError: gate spec "__import__('os')" is not a gate: name '__import__' is not allowed: g'(z) may use ...
    """
    if not isinstance(spec, str):
        raise TypeError(f"a gate spec must be a string ({SPEC_FORMS}), got {type(spec).__name__} {spec!r}")
    text = spec.strip()
    if not text:
        raise ValueError(f"a gate spec must be non-empty: {SPEC_FORMS}")
    if is_method(text):
        return _method_spec(text)
    if text in _REGISTRY:
        return GateSpec("name", text, {"name": text})
    if text.isidentifier():
        raise ValueError(f"unknown gate {text!r}; available gates: {', '.join(available_gates())}; or a spec: "
                         f"{SPEC_FORMS}")
    family = _FAMILY.fullmatch(text)
    if family and "." not in family.group(1):
        name = family.group(1)
        if name not in FAMILIES:
            raise ValueError(f"gate spec {text!r}: unknown family {name!r}; families: {', '.join(FAMILIES)}")
        params = {}
        for item in family.group(2).split(","):
            key, _, value = item.partition("=")
            if key not in FAMILIES[name][1] or key in params:
                raise ValueError(f"gate spec {text!r}: parameter {key!r} is unknown or given twice; {name} takes "
                                 f"{', '.join(FAMILIES[name][1])}")
            try:
                params[key] = float(value)
            except ValueError:
                raise ValueError(f"gate spec {text!r}: {key}={value!r} is not a number") from None
        missing = [key for key in FAMILIES[name][1] if key not in params]
        if missing:
            raise ValueError(f"gate spec {text!r}: {name} needs {', '.join(missing)}")
        canonical = f"{name}:" + ",".join(f"{key}={value!r}" if not float(value).is_integer() else f"{key}={value:g}"
                                          for key, value in params.items())
        return GateSpec("family", canonical, {"family": name, "params": params})
    target = _IMPORT.fullmatch(text)
    if target:
        return GateSpec("import", text, {"module": target.group(1), "attribute": target.group(2)})
    try:
        canonical = expressions.canonical_text(text)
    except ValueError as err:
        raise ValueError(f"gate spec {text!r} is not a gate: {err} (a spec is {SPEC_FORMS})") from None
    return GateSpec("expression", canonical, {"g_prime": canonical})


def _method_spec(text: str) -> GateSpec:
    """A trust-region method's spec as a GateSpec (sapo_core.methods.parse_method checks it)."""
    name, canonical, params = parse_method(text)
    return GateSpec("method", canonical, {"method": name, "params": params})


def spec_slug(spec: str) -> str:
    """A file-name-safe name for a spec, used in run-directory names.

    >>> spec_slug("erf"), spec_slug("student_t:nu=3"), spec_slug("mypkg.gates:cauchy2"), spec_slug("cispo:eps_max=8")
    ('erf', 'student_t-nu3', 'mypkg.gates-cauchy2', 'cispo-eps_max8')
    >>> spec_slug("1/(1+z**2)**2") == spec_slug("1 / (1 + z**2) ** 2")
    True
    """
    parsed = parse_spec(spec)
    if parsed.kind == "name" or parsed.text in METHODS:
        slug = parsed.text
    elif parsed.kind == "method":  # only the parameters its text names, as the text does
        slug = "-".join([parsed.parts["method"], *parsed.text.split(":")[1].replace("=", "").split(",")])
    elif parsed.kind == "family":
        slug = "-".join([parsed.parts["family"], *(f"{k}{v:g}" for k, v in parsed.parts["params"].items())])
    elif parsed.kind == "import":
        slug = f"{parsed.parts['module']}-{parsed.parts['attribute']}"
    else:
        return f"expr-{hashlib.sha256(parsed.text.encode()).hexdigest()[:10]}"
    if _SAFE.fullmatch(slug) and not slug.startswith("."):
        return slug
    return f"{parsed.kind}-{hashlib.sha256(parsed.text.encode()).hexdigest()[:10]}"


def resolve_spec(spec: str) -> Gate:
    """The gate a spec names, checked for admissibility (method §2.2) before it is returned.

    An inadmissible gate raises `InadmissibleGateError` naming the failed property; an expression is run first
    in a worker with time and memory limits (`sapo_core.expressions`). Resolved gates are kept per process.

    >>> resolve_spec("student_t:nu=1").halfmax
    1.0
    >>> resolve_spec("clip")
    Traceback (most recent call last):
    ...
    ValueError: 'clip' is hard clipping (method §2.4), not a gate: it has no g'
    """
    parsed = parse_spec(spec)
    if parsed.text == "clip":
        raise ValueError("'clip' is hard clipping (method §2.4), not a gate: it has no g'")
    if parsed.kind == "method":
        raise ValueError(f"{parsed.text!r} is a trust-region method (method §2.8), not a gate: it has no g'")
    if parsed.kind == "name":
        return _REGISTRY[parsed.text]
    return _resolve(parsed.text)


@functools.lru_cache(maxsize=64)
def _resolve(text: str) -> Gate:
    """The gate of a family, import or expression spec (as parse_spec writes it), built once per process."""
    parsed = parse_spec(text)
    if parsed.kind == "family":
        build, _ = FAMILIES[parsed.parts["family"]]
        try:
            gate = build(**parsed.parts["params"])
        except InadmissibleGateError:
            raise
        except (TypeError, ValueError) as err:
            raise ValueError(f"gate spec {text!r}: {err}") from None
    elif parsed.kind == "import":
        gate = _imported_gate(parsed)
    else:
        gate = _expression_gate(parsed.text)
    return dataclasses.replace(gate, spec=parsed.text)


def _imported_gate(parsed: GateSpec) -> Gate:
    """MODULE:NAME -> the Gate there (checked as register_gate does), or make_gate of the g' function there."""
    module, attribute = parsed.parts["module"], parsed.parts["attribute"]
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"gate spec {parsed.text!r}: module {module!r} cannot be imported ({err}); the import-path "
                         "form needs the module importable in every process that runs it (install it, or put its "
                         "folder on PYTHONPATH)") from None
    for name in attribute.split("."):
        if not hasattr(obj, name):
            raise ValueError(f"gate spec {parsed.text!r}: {module} has no attribute {attribute!r}")
        obj = getattr(obj, name)
    if isinstance(obj, Gate):
        report = check_admissible(obj)
        if not report.passed:
            raise InadmissibleGateError(report)
        admissibility.check_halfmax(obj.g_prime, obj.halfmax)
        return obj
    if not callable(obj):
        raise ValueError(f"gate spec {parsed.text!r} names a {type(obj).__name__}; it must name a Gate or a g' "
                         "function of z")
    return make_gate(parsed.text, obj, g_prime_text=_source_text(obj))


def _source_text(fn) -> str:
    """A g' function's source as text (provenance), else its dotted name."""
    try:
        return textwrap.dedent(inspect.getsource(fn)).strip() or _fn_text(fn)
    except (OSError, TypeError):
        return _fn_text(fn)


def expression_gate_name(text: str) -> str:
    """The name of the gate made from a g' expression."""
    return f"g'(z) = {text.strip()}"


def expression_report(text: str) -> dict:
    """In a limited worker: the admissibility of a g' expression (method §2.2), as a dict of plain values:
    {"problem": ...}, or {"rows": ...} (inadmissible), or {"rows", "halfmax", "tail"} (admissible)."""
    try:
        g_prime = expressions.compile_gprime(text)
        z = torch.linspace(-40.0, 40.0, 8001, dtype=torch.float64)
        values = g_prime(z)
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            return {"problem": f"g'(z) is {float(values[bad][0])} at z = {float(z[bad][0]):g} ({int(bad.sum())} of "
                               f"{len(z)} points in [-40, 40]): a gradient weight must be a finite number for every z"}
        gate = make_gate(expression_gate_name(text), g_prime, g_prime_text=text.strip())
    except InadmissibleGateError as err:
        return {"rows": err.report.rows()}
    except Exception as err:  # noqa: BLE001  (whatever the user's expression raised is reported)
        return {"problem": f"g'(z) could not be evaluated: {type(err).__name__}: {err}"}
    return {"rows": check_admissible(gate).rows(), "halfmax": gate.halfmax, "tail": gate.tail}


def _expression_gate(text: str) -> Gate:
    """The gate of a checked g' expression: run first in a limited worker, then built here."""
    evaluator = expressions.LimitedEvaluator(expression_report, timeout_s=SPEC_TIMEOUT_S)
    try:
        result = evaluator(text)
    finally:
        evaluator.close()
    if "problem" in result:
        raise ValueError(f"gate spec {text!r}: {result['problem']}")
    if "halfmax" not in result:
        raise InadmissibleGateError(AdmissibilityReport(
            expression_gate_name(text), {row["property"]: (row["passed"], row["evidence"]) for row in result["rows"]}))
    return make_gate(expression_gate_name(text), expressions.compile_gprime(text), halfmax=result["halfmax"],
                     tail=result["tail"], g_prime_text=text)
