"""Trust-region methods named in a gate's slot (method §2.8): `--gate cispo:eps_max=5`, beside `clip`.

A method takes no temperature and has no g; its spec is NAME[:KEY=VALUE,...] (the gate-spec syntax of
sapo_core.gates.parse_spec), each parameter checked against its bound, unnamed ones at their defaults, which come
from TRL 1.16 or the method's paper (METHODS[name].source). `is_method` is the one test of "a method, not a gate"
that configs, batches, claims and the trainer use. Losses: sapo_core.loss; weights phi(r): sapo_core.trust_region.

    >>> parse_method("cispo:eps_max=8")
    ('cispo', 'cispo:eps_max=8', {'eps_max': 8.0})
    >>> parse_method("vespo:k_pos=2,lambda_pos=3")[1]  # the defaults: the spec names none of them
    'vespo'
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["CLIP_RULE", "METHODS", "MethodSpec", "check_method", "is_method", "parse_method"]

CLIP_RULE = ("f'(r) = 1 if r <= 1 + epsilon_high (A > 0) or r >= 1 - epsilon_low (A <= 0), else 0; "
             "surrogate min(r A, clip(r, 1 - epsilon_low, 1 + epsilon_high) A)")


class MethodSpec(NamedTuple):
    """A trust-region method: its parameters' defaults, the lower bound of each (strict: "> bound", else
    ">= bound"), its loss as text and where the defaults come from."""

    name: str
    defaults: dict[str, float]
    bounds: dict[str, tuple[float, bool]]
    rule: str
    source: str


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("clip", {}, {}, CLIP_RULE, "GRPO/PPO hard clipping (method §1.2, §2.4); TRL loss_type='grpo'"),
    MethodSpec("delta", {"delta": 4.0}, {"delta": (1.0, True)},
               "min(min(r, delta) A, clip(r, 1 - epsilon_low, 1 + epsilon_high) A), delta > 1 + epsilon_high",
               "two-sided clipping, INTELLECT-2 (arXiv:2505.07291, delta = 4); TRL 1.16 GRPOConfig.delta"),
    MethodSpec("cispo", {"eps_max": 5.0}, {"eps_max": (0.0, True)}, "sg(min(r, eps_max)) A log pi",
               "CISPO, MiniMax-M1 (arXiv:2506.13585); eps_max = 5 is TRL 1.16's recommended epsilon_high for "
               "loss_type='cispo' (ScaleRL, arXiv:2510.13786)"),
    MethodSpec("ce_gppo", {"beta1": 0.5, "beta2": 1.0}, {"beta1": (0.0, False), "beta2": (0.0, False)},
               "beta1 (1 - epsilon_low) r / sg(r) A if A < 0 and r < 1 - epsilon_low; beta2 (1 + epsilon_high) "
               "r / sg(r) A if A > 0 and r > 1 + epsilon_high; r A otherwise",
               "CE-GPPO (arXiv:2509.20712); formula and defaults as we read the paper, not checked against code"),
    MethodSpec("vespo", {"k_pos": 2.0, "lambda_pos": 3.0, "k_neg": 3.0, "lambda_neg": 2.0},
               {"k_pos": (0.0, False), "lambda_pos": (0.0, True), "k_neg": (0.0, False), "lambda_neg": (0.0, True)},
               "sg(phi(w)) A log pi, phi(w) = exp(lambda + k log w - lambda w), w = exp(sum_t log r_t), "
               "(k, lambda) = (k_pos, lambda_pos) if A >= 0 else (k_neg, lambda_neg)",
               "VESPO (arXiv:2602.10693); defaults are TRL 1.16's vespo_k_pos/lambda_pos/k_neg/lambda_neg"),
)}


def is_method(spec) -> bool:
    """Whether `spec` names a trust-region method (clip, delta, cispo, ce_gppo, vespo; method §2.8) rather than a
    gate: a string whose name, before any ':', is one of METHODS. Nothing is parsed or checked.

    >>> is_method("clip"), is_method("cispo:eps_max=5"), is_method("erf"), is_method("mypkg.gates:cauchy2")
    (True, True, False, False)
    """
    return isinstance(spec, str) and spec.strip().partition(":")[0] in METHODS


def _number(value: float) -> str:
    """A parameter value as spec text: 3 for 3.0, else its repr."""
    return f"{value:g}" if float(value).is_integer() else repr(value)


def parse_method(text: str) -> tuple[str, str, dict[str, float]]:
    """(name, spec text, every parameter) of a method spec NAME[:KEY=VALUE,...], each value checked against its
    bound; the text names only the parameters that differ from their defaults (so "cispo:eps_max=5" and "cispo"
    are one arm). A ValueError names an unknown, repeated or out-of-bounds parameter."""
    name, _, given = text.strip().partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown trust-region method {name!r}; methods: {', '.join(METHODS)}")
    method = METHODS[name]
    params, seen = dict(method.defaults), set()
    for item in given.split(",") if given else ():
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in method.defaults or key in seen:
            allowed = ", ".join(method.defaults) or "no parameters"
            raise ValueError(f"method spec {text!r}: parameter {key!r} is unknown, malformed or given twice; {name} "
                             f"takes {allowed}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"method spec {text!r}: {key}={value!r} is not a number") from None
        bound, strict = method.bounds[key]
        if not (math.isfinite(number) and (number > bound if strict else number >= bound)):
            raise ValueError(f"method spec {text!r}: {key} must be finite and {'>' if strict else '>='} {bound:g}, "
                             f"got {value}")
        params[key] = number
        seen.add(key)
    changed = [f"{key}={_number(value)}" for key, value in params.items() if value != method.defaults[key]]
    return name, ":".join([name, ",".join(changed)]) if changed else name, params


def check_method(spec: str, epsilon_high: float, level: str) -> None:
    """What a method needs beyond its own bounds: delta > 1 + epsilon_high (TRL's advice, else the clamp cuts
    inside the trust region) and VESPO at level="token" (it forms its own sequence ratio)."""
    name, _, params = parse_method(spec)
    if name == "delta" and not params["delta"] > 1 + epsilon_high:
        raise ValueError(f"gate {spec!r}: delta must be > 1 + epsilon_high = {1 + epsilon_high:g}, got "
                         f"{params['delta']:g}")
    if name == "vespo" and level != "token":
        raise ValueError(f"gate {spec!r} forms its own sequence ratio from the token log-ratios: it needs "
                         f"level='token' (importance_sampling_level), got {level!r}")
