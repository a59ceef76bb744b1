"""The gate's temperatures over training: a schedule, or a controller that keeps EUR near a target (method §2.9).

    python -m sapo_core.train --config configs/tiny-paper.yaml --gate sigmoid --tau_schedule cosine \
        --tau_end_pos 20 --tau_end_neg 24
    python -m sapo_core.train --config configs/tiny-paper.yaml --gate sigmoid --tau_target_eur 0.9

Both act on the base temperatures (sapo_temperature_pos/neg, before the tau convention of method §2.5) and start
from the recipe's values. A schedule is a function of the optimizer step alone (constant, linear or cosine to
tau_end_pos/neg at the last step). The controller multiplies both
temperatures by one factor after every optimizer step, exp(rate (EUR - target) / (1 - target)) from that step's EUR
(method §4.1): up when EUR is above the target, down when below (a higher tau narrows the gate and lowers EUR),
within [tau_min, tau_max]; its state is the log of the accumulated factor, saved with each checkpoint.
The trainer (`sapo_core.trainer`) reads `taus(step)` before each step's loss and calls `update(eur)` after it;
`eur_tracking` checks a finished run's EUR against the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core.checks import check_choice, check_int, check_positive, is_real

__all__ = ["CONTROLLER_RATE", "SCHEDULES", "TAU_MAX", "TAU_MIN", "EURController", "Schedule", "check_settings",
           "eur_tracking", "make_temperature"]

SCHEDULES = ("constant", "linear", "cosine")
CONTROLLER_RATE = 0.5  # change of log tau per unit of relative error (EUR - X) / (1 - X) and step (method §2.9:
# 1 - EUR grows like tau^2, so 0.5 closes a small error in about one step; tests/test_temperature.py measures it)
TAU_MIN, TAU_MAX = 0.1, 100.0  # the controller's default bounds on each base temperature
TRACKING_TOLERANCE = 0.05  # |mean EUR over the second half - target| a run must stay within (issue 17 item 4)


def _progress(step: int, max_steps: int) -> float:
    """Share of the run done at optimizer step `step` (0-based): 0 at the first step, 1 at the last and after it."""
    check_int("step (the optimizer steps taken so far)", step, 0)
    return min(step / max(max_steps - 1, 1), 1.0)


@dataclass(frozen=True)
class Schedule:
    """Base temperatures as a function of the optimizer step (method §2.9, eq. 2.9a-c); EUR is not read."""

    kind: str
    start: tuple[float, float]   # (tau_pos, tau_neg) at step 0: the recipe's sapo_temperature_pos/neg
    end: tuple[float, float]     # at the last step (max_steps - 1): tau_end_pos/neg
    max_steps: int

    def taus(self, step: int) -> tuple[float, float]:
        """(tau_pos, tau_neg) at optimizer step `step` (0-based)."""
        p = _progress(step, self.max_steps)
        if self.kind == "constant":  # (2.9a)
            return self.start
        if self.kind == "linear":  # (2.9b) tau = start + (end - start) p
            return tuple(s + (e - s) * p for s, e in zip(self.start, self.end))
        # (2.9c) tau = end + (start - end) (1 + cos(pi p)) / 2
        return tuple(e + (s - e) * (1 + math.cos(math.pi * p)) / 2 for s, e in zip(self.start, self.end))

    def update(self, eur: float) -> None:
        """A schedule does not depend on EUR."""

    def state(self) -> dict:
        """Nothing to save: the step determines the temperatures."""
        return {}

    def load_state(self, state: dict | None) -> None:
        """Nothing to restore."""


@dataclass
class EURController:
    """tau <- tau * exp(rate (EUR - X) / (1 - X)) for target X, one factor on both temperatures, within [tau_min,
    tau_max] (method §2.9, eq. 2.9d-e). The state is x = log(tau / tau_start), the same for tau_pos and tau_neg."""

    start: tuple[float, float]
    target: float
    rate: float = CONTROLLER_RATE
    tau_min: float = TAU_MIN
    tau_max: float = TAU_MAX
    log_factor: float = 0.0

    def __post_init__(self):
        _check_controller(self.start, self.target, self.rate, self.tau_min, self.tau_max)
        if not (is_real(self.log_factor) and math.isfinite(self.log_factor)):
            raise ValueError(f"log_factor must be a finite number (log(tau / tau_start)), got {self.log_factor!r}")

    def taus(self, step: int) -> tuple[float, float]:
        """(tau_pos, tau_neg) now: tau_start exp(x), whatever the step."""
        _progress(step, 1)  # the step is checked, not used: the state carries the history
        return tuple(s * math.exp(self.log_factor) for s in self.start)

    def bounds(self) -> tuple[float, float]:
        """[x_min, x_max]: the log-factors that keep both temperatures within [tau_min, tau_max] (eq. 2.9e)."""
        return math.log(self.tau_min / min(self.start)), math.log(self.tau_max / max(self.start))

    def update(self, eur: float) -> None:
        """One step of (2.9d): x <- clip(x + rate (EUR - X) / (1 - X), x_min, x_max); a step without an EUR (nan:
        no tokens) leaves x as it is."""
        if not is_real(eur):
            raise TypeError(f"eur must be a number, got {type(eur).__name__} {eur!r}")
        if math.isnan(eur):
            return
        if not 0 <= eur <= 1:
            raise ValueError(f"eur={eur!r} is not an effective update ratio (they lie in [0, 1], method §4.1)")
        x_min, x_max = self.bounds()
        relative_error = (eur - self.target) / (1 - self.target)
        self.log_factor = min(max(self.log_factor + self.rate * relative_error, x_min), x_max)

    def state(self) -> dict:
        """What a resumed run needs to continue at the same temperatures."""
        return {"log_factor": self.log_factor}

    def load_state(self, state: dict | None) -> None:
        """Continue from a checkpoint's `state()`."""
        if not (isinstance(state, dict) and is_real(state.get("log_factor"))):
            raise ValueError(f"the checkpoint holds no temperature-controller state (got {state!r}); it was not "
                             "written by a run with tau_target_eur")
        self.log_factor = float(state["log_factor"])


def check_settings(*, start: tuple[float, float], schedule: str, end: tuple[float | None, float | None],
                   target: float | None, rate: float, tau_min: float, tau_max: float, max_steps: int,
                   gate: str) -> None:
    """ValueError naming the setting when the schedule or controller settings are inconsistent or out of range."""
    check_choice("tau_schedule", schedule, SCHEDULES)
    check_int("max_steps", max_steps)
    ends = dict(zip(("tau_end_pos", "tau_end_neg"), end))
    controller = {"tau_controller_rate": (rate, CONTROLLER_RATE), "tau_min": (tau_min, TAU_MIN),
                  "tau_max": (tau_max, TAU_MAX)}
    changed = [k for k, (value, default) in controller.items() if value != default]
    if G.is_method(gate):  # clip and the other trust-region methods (method §2.8)
        given = [k for k, v in ends.items() if v is not None] + changed
        if schedule != "constant" or target is not None or given:
            raise ValueError(f"tau_schedule, tau_end_pos/neg, tau_target_eur and the controller's settings act on a "
                             f"smooth gate's temperatures; gate={gate} has none (use a smooth gate, or leave them out)")
        return
    for key, value in (*zip(("sapo_temperature_pos", "sapo_temperature_neg"), start), *ends.items()):
        if value is not None:
            check_positive(key, value)
    if schedule == "constant" and any(v is not None for v in ends.values()):
        raise ValueError("tau_end_pos/tau_end_neg are the end values of a schedule; tau_schedule=constant has none "
                         "(choose tau_schedule linear or cosine, or leave them out)")
    if schedule != "constant":
        if any(v is None for v in ends.values()):
            raise ValueError(f"tau_schedule={schedule} needs both tau_end_pos and tau_end_neg (the temperatures at "
                             "the last step)")
        if max_steps < 1:
            raise ValueError(f"tau_schedule={schedule} runs from step 0 to max_steps; set max_steps (got "
                             f"{max_steps})")
        if target is not None:
            raise ValueError(f"tau_target_eur sets the temperatures from EUR, tau_schedule={schedule} from the step: "
                             "choose one (tau_schedule constant with the controller)")
    if target is None:
        if changed:
            raise ValueError(f"{', '.join(changed)} set the EUR controller, which tau_target_eur turns on; set "
                             "tau_target_eur or leave them out")
        return
    _check_controller(start, target, rate, tau_min, tau_max)


def _check_target(target) -> None:
    if not (is_real(target) and 0 < target < 1):
        raise ValueError(f"tau_target_eur={target!r} must be in (0, 1) (EUR lies in [0, 1] and is 1 on policy)")


def _check_controller(start, target, rate, tau_min, tau_max) -> None:
    """The EUR controller's settings: a target in (0, 1), a positive rate, 0 < tau_min < tau_max, and the starting
    temperatures within [tau_min, tau_max]."""
    _check_target(target)
    check_positive("tau_controller_rate", rate)
    if not (is_real(tau_min) and is_real(tau_max) and 0 < tau_min < tau_max < math.inf):
        raise ValueError(f"tau_min={tau_min!r} and tau_max={tau_max!r} must be finite with 0 < tau_min < tau_max")
    for key, value in zip(("sapo_temperature_pos", "sapo_temperature_neg"), start):
        check_positive(key, value)
    if not tau_min <= min(start) <= max(start) <= tau_max:
        raise ValueError(f"the starting temperatures sapo_temperature_pos/neg={start[0]}/{start[1]} must lie within "
                         f"[tau_min, tau_max] = [{tau_min}, {tau_max}]")


def make_temperature(*, start: tuple[float, float], schedule: str = "constant",
                     end: tuple[float | None, float | None] = (None, None), target: float | None = None,
                     rate: float = CONTROLLER_RATE, tau_min: float = TAU_MIN, tau_max: float = TAU_MAX,
                     max_steps: int = 1) -> Schedule | EURController:
    """The controller when a target EUR is given, else the schedule (settings as `check_settings` takes them)."""
    check_settings(start=start, schedule=schedule, end=end, target=target, rate=rate, tau_min=tau_min,
                   tau_max=tau_max, max_steps=max_steps, gate="")
    if target is not None:
        return EURController(start=tuple(start), target=target, rate=rate, tau_min=tau_min, tau_max=tau_max)
    return Schedule(kind=schedule, start=tuple(start), end=tuple(start) if schedule == "constant" else tuple(end),
                    max_steps=max_steps)


def eur_tracking(rows: list[dict], target: float, tolerance: float = TRACKING_TOLERANCE) -> dict:
    """Whether a run's mean EUR over the second half of its logged steps lies within `tolerance` of `target`:
    {"eur": mean, "steps": (first, last), "error": mean - target, "within": bool}. Rows as `read_metrics` gives."""
    _check_target(target)
    check_positive("tolerance", tolerance, strict=False)
    eur = M.key("eur")
    logged = [r for r in rows if is_real(r.get(eur)) and not math.isnan(r[eur])]
    if len(logged) < 2:
        raise ValueError(f"eur_tracking needs at least 2 logged steps with {eur!r}; got {len(logged)}")
    second = logged[len(logged) // 2:]
    mean = sum(r[eur] for r in second) / len(second)
    return {"eur": mean, "steps": (second[0]["step"], second[-1]["step"]), "error": mean - target,
            "within": abs(mean - target) <= tolerance}
