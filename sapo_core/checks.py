"""Argument checks shared by every module: each names the argument, the value and what is allowed.

A wrong type raises TypeError, a value of the right type outside the allowed set raises ValueError.
Nothing is coerced: a bool is not a number, "3" is not an int.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

__all__ = ["check_bool", "check_choice", "check_int", "check_positive", "is_real"]


def is_real(value) -> bool:
    """A real number (int, float, numpy scalar), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def check_positive(name: str, value, *, strict: bool = True):
    """A finite real number > 0 (>= 0 when `strict=False`); return it."""
    bound = "> 0" if strict else ">= 0"
    if not is_real(value):
        raise TypeError(f"{name} must be a finite real number {bound}, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and (value > 0 if strict else value >= 0)):  # false for nan
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    return value


def check_int(name: str, value, minimum: int | None = None):
    """An integer (not a bool), >= `minimum` when given; return it."""
    allowed = "an int" if minimum is None else f"an int >= {minimum}"
    if not isinstance(value, Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_choice(name: str, value, allowed: Collection):
    """One of `allowed` (a value of another type than the allowed ones is a TypeError); return it."""
    kinds = tuple({type(a) for a in allowed})
    listed = ", ".join(map(repr, allowed))
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise TypeError(f"{name} must be one of {listed}; got {type(value).__name__} {value!r}")
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {listed}")
    return value


def check_bool(name: str, value):
    """True or False (not 0/1, not a string); return it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value
