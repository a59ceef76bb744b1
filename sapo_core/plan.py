"""A batch's plan: its runs (gate x tau convention x sweep point x seed) from the batch's arguments, checked before
anything runs. Arms are `GATE` or `GATE@POS:NEG` (method §2); `--sweep KEY=V1,V2` and joint `K1,K2=a:b,c:d` axes
set recipe keys, each value read by the training CLI's parser; run names come from `config.run_name`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sapo_core import gates as G
from sapo_core.config import TAU_KEYS, ConfigError, run_name
from sapo_core.recipe import flag_value

__all__ = ["OWN_AXES", "TAU_KEYS", "Axis", "BatchError", "RunSpec", "arm_gate", "parse_arm", "parse_axis", "plan",
           "split_arms", "sweep_axes", "training_argv"]

OWN_AXES = {"gate": "--gates", "seed": "--seeds", "tau_convention": "--tau_conventions"}  # not for --sweep


class BatchError(ValueError):
    """A batch command that cannot run (bad arguments, or a batch directory made with other settings)."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch."""

    gate: str
    seed: int
    tau_convention: str
    flags: tuple[str, ...] = ()
    taus: tuple[float, float] | None = None  # (tau_pos, tau_neg) of an arm `GATE@POS:NEG`; None: the recipe's
    axes: tuple[tuple[str, object], ...] = ()  # (recipe key, parsed value) this run's point of the --sweep axes sets

    @property
    def name(self) -> str:
        """The run directory's name inside the batch."""
        return run_name(self.gate, self.tau_convention, self.seed, self.taus, dict(self.axes))


class Axis(NamedTuple):
    """One --sweep axis: its recipe keys and its points, each one value per key, as given and as parsed."""

    keys: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...]
    values: tuple[tuple, ...]


def _split(text: str, what: str, sep: str = ",") -> list[str]:
    items = [x.strip() for x in text.split(sep) if x.strip()]
    if not items:
        raise BatchError(f"{what} is empty")
    if len(set(items)) != len(items):
        raise BatchError(f"{what}={text!r} names an item twice")
    return items


def plan(args, flags: list[str], gate_flags: dict[str, list[str]] | None = None) -> list[RunSpec]:
    """The runs of a batch (`args`: a sapo_core.batch.BatchArguments), in order: gate, then convention, sweep point,
    then seed."""
    try:
        seeds = [int(s) for s in _split(args.seeds, "seeds")]
    except ValueError:
        raise BatchError(f"seeds={args.seeds!r} must be comma-separated integers") from None
    axes = sweep_axes(args.sweep, flags)
    swept = {key for axis in axes for key in axis.keys}
    specs = []
    arms = split_arms(args.gates)
    separator = ";" if ";" in args.gates else ","
    matched = (_split(args.width_matched_arms, "width_matched_arms", separator) if args.width_matched_arms.strip()
               else [])
    for arm in matched:
        if arm not in arms or G.is_method(arm_gate(arm)):
            raise BatchError(f"width_matched_arms: {arm!r} must be one of the smooth gates' arms of --gates "
                             f"({args.gates})")
    for arm in arms:
        gate, taus = parse_arm(arm)
        if taus is not None and swept & set(TAU_KEYS):
            raise BatchError(f"gates: arm {arm!r} sets the temperatures that --sweep sweeps; give the gate without "
                             "@POS:NEG (the sweep's points are its temperatures)")
        tau_flags = () if taus is None else ("--sapo_temperature_pos", f"{taus[0]:g}",
                                             "--sapo_temperature_neg", f"{taus[1]:g}")
        conventions = _split(args.tau_conventions, "tau_conventions")
        for convention in conventions + (["width_matched"] if arm in matched and "width_matched" not in conventions
                                         else []):
            if G.is_method(gate) and convention != "equal":
                continue  # a trust-region method (clip, cispo, ...) has no temperature to match
            for point in dict.fromkeys(_points(axes, gate)):  # a method without temperatures: each other point once
                axis_flags = tuple(token for key, text, value in point
                                   for token in (f"--{key}", *(text.split() if isinstance(value, tuple) else [text])))
                specs.extend(RunSpec(gate, seed, convention, tuple(flags) + tuple((gate_flags or {}).get(gate, ()))
                                     + tau_flags + axis_flags, taus, tuple((key, value) for key, _, value in point))
                             for seed in seeds)
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # e.g. one expression written twice with other spacing: one run directory for two arms
        raise BatchError(f"gates={args.gates!r} names the same run twice ({', '.join(twice)}): give each gate once")
    return specs


def _points(axes: list[Axis], gate: str) -> list[tuple[tuple[str, str, object], ...]]:
    """The cross product of the axes' points, each point as (key, text, value) per key; for a method without
    temperatures (clip, cispo, ...) the temperature keys are left out, so its points repeat (the caller keeps one)."""
    points = []
    for combo in itertools.product(*(zip(axis.texts, axis.values) for axis in axes)):
        point = tuple((key, text, value) for axis, (texts, values) in zip(axes, combo)
                      for key, text, value in zip(axis.keys, texts, values))
        points.append(tuple(p for p in point if not (G.is_method(gate) and p[0] in TAU_KEYS)))
    return points


def parse_axis(text: str) -> Axis:
    """One --sweep axis: `KEY=V1,V2,...`, or `K1,K2=a:b,c:d` (a joint axis: K1=a and K2=b at its first point);
    each value is read by the training CLI's parser (`recipe.flag_value`: the key's type and choices)."""
    keys_text, eq, values_text = text.partition("=")
    if not eq or not keys_text.strip():
        raise BatchError(f"sweep {text!r} must be KEY=V1,V2,... or K1,K2=a:b,c:d (e.g. learning_rate=1e-5,3e-5)")
    keys = tuple(_split(keys_text, f"sweep {text!r}: its keys"))
    for key in keys:
        if key in OWN_AXES:
            raise BatchError(f"sweep {text!r}: {key} is the batch's own axis; use {OWN_AXES[key]}")
    texts = []
    for point in _split(values_text, f"sweep {text!r}: its values"):
        parts = tuple(p.strip() for p in point.split(":")) if len(keys) > 1 else (point,)
        if len(parts) != len(keys) or not all(parts):
            raise BatchError(f"sweep {text!r}: point {point!r} must give {len(keys)} values separated by ':', one per "
                             f"key ({', '.join(keys)})")
        texts.append(parts)
    try:
        values = [tuple(_hashable(flag_value(k, t, f"--sweep {text}")) for k, t in zip(keys, p)) for p in texts]
    except ConfigError as err:
        raise BatchError(f"sweep {text!r}: {err}") from None
    twice = [p for p, v in zip(texts, values) if values.count(v) > 1]
    if twice:
        raise BatchError(f"sweep {text!r} gives the same point twice ({' and '.join(':'.join(p) for p in twice)})")
    return Axis(keys, tuple(texts), tuple(values))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def sweep_axes(sweep: list[str], flags: list[str]) -> list[Axis]:
    """The --sweep axes, each key swept once and not also given as a training flag."""
    axes = [parse_axis(text) for text in sweep]
    keys = [key for axis in axes for key in axis.keys]
    given = {f.split("=", 1)[0] for f in flags if f.startswith("--")}
    for key in keys:
        if keys.count(key) > 1:
            raise BatchError(f"sweep: {key} is swept by two axes; sweep it once (a joint axis sets keys together)")
        if {f"--{key}", f"--no_{key}", f"--no-{key.replace('_', '-')}"} & given:
            raise BatchError(f"sweep: {key} is swept and also given as the flag --{key}; drop one")
    return axes


def split_arms(gates: str) -> list[str]:
    """The arms of a --gates string, ';'-separated when a gate spec holds a comma, else ','."""
    return _split(gates, "gates", ";" if ";" in gates else ",")


def arm_gate(text: str) -> str:
    """The gate spec of an arm (`GATE` or `GATE@POS:NEG`)."""
    return parse_arm(text)[0]


def parse_arm(text: str) -> tuple[str, tuple[float, float] | None]:
    """`GATE` (the recipe's temperatures) or `GATE@POS:NEG` (this arm's tau_pos and tau_neg, method §2)."""
    if "@" not in text:
        return text, None
    gate, _, taus = text.rpartition("@")
    try:
        pos, neg = (float(t) for t in taus.split(":"))
    except ValueError:
        raise BatchError(f"gates: arm {text!r} must be GATE@TAU_POS:TAU_NEG, e.g. erf@5:6") from None
    if G.is_method(gate) or not (0 < pos < float("inf") and 0 < neg < float("inf")):
        raise BatchError(f"gates: arm {text!r} needs a smooth gate and finite temperatures > 0 (a trust-region "
                         "method such as clip has none)")
    return gate, (pos, neg)


def training_argv(config: str, spec: RunSpec, run_dir: Path) -> list[str]:
    """The training CLI's arguments for one run (notebook 02's parameters are these)."""
    return ["--config", config, "--gate", spec.gate, "--seed", str(spec.seed), "--tau_convention",
            spec.tau_convention, "--run_dir", str(run_dir), *spec.flags]
