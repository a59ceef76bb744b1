"""Temperature schedules and the EUR controller (sapo_core.temperature, method §2.9): the schedules' endpoints and
shapes, the controller on synthetic ratio streams whose EUR is a known decreasing function of tau, its bounds, its
state across a resume, and the trainer's wiring on short tiny runs (slow)."""

import json
import math

import pytest
import torch
from conftest import CrashAfterStep

from sapo_core import gates as G
from sapo_core.loss import effective_update_ratio
from sapo_core.recipe import parse_args
from sapo_core.temperature import CONTROLLER_RATE, EURController, Schedule, eur_tracking, make_temperature
from sapo_core.train import read_metrics, train
from sapo_core.trainer import TEMPERATURE_STATE

SIGMOID = G.get_gate("sigmoid")
SETTLE_STEPS = 10  # the controller reaches the target within this many steps on the streams below (measured,
# 20 stream seeds: at most 6)


def stream_eur(tau: float, gen: torch.Generator, sigma: float = 0.05, prompts: int = 8, tokens: int = 256) -> float:
    """EUR of one step of a synthetic stream: log r ~ N(0, sigma^2) per token, the sigmoid gate at tau (§4.1)."""
    ratio = torch.exp(sigma * torch.randn(prompts * tokens, generator=gen, dtype=torch.float64))
    group = torch.arange(prompts).repeat_interleave(tokens)
    return float(effective_update_ratio(SIGMOID.weight(ratio, tau), group))


def run_controller(controller: EURController, steps: int, seed: int = 0) -> tuple[list[float], list[tuple]]:
    """Drive the controller on the synthetic stream (EUR from tau_pos): each step's EUR and temperatures."""
    gen = torch.Generator().manual_seed(seed)
    eurs, taus = [], []
    for step in range(steps):
        taus.append(controller.taus(step))
        eurs.append(stream_eur(taus[-1][0], gen))
        controller.update(eurs[-1])
    return eurs, taus


# -- schedules (2.9a-c) ------------------------------------------------------------------------------------

def test_schedules_run_from_start_to_end_with_their_shapes():
    start, end, steps = (10.0, 12.0), (2.0, 4.0), 11
    linear, cosine = (Schedule(kind, start, end, steps) for kind in ("linear", "cosine"))
    constant = make_temperature(start=start, max_steps=steps)
    for schedule in (linear, cosine):
        assert schedule.taus(0) == start and schedule.taus(steps - 1) == pytest.approx(end)
        assert schedule.taus(steps + 5) == pytest.approx(end)  # held after the last step (an evaluation after it)
        assert schedule.taus(5) == pytest.approx((6.0, 8.0))  # both pass the midpoint halfway
    assert all(constant.taus(t) == start for t in range(steps + 2))
    assert linear.taus(1) == pytest.approx((9.2, 11.2))  # equal steps of (end - start) / (T - 1)
    # cosine: flat at both ends, steepest in the middle, always between start and end, monotone
    pos = [cosine.taus(t)[0] for t in range(steps)]
    assert all(a > b for a, b in zip(pos, pos[1:]))
    assert pos[0] - pos[1] < 0.8 < pos[5] - pos[6] and pos[-2] - pos[-1] < 0.8
    assert pos[1] == pytest.approx(2.0 + 8.0 * (1 + math.cos(math.pi * 0.1)) / 2)
    rising = Schedule("cosine", (1.0, 1.05), (3.0, 2.0), 3)  # each sign on its own path, up or down
    assert rising.taus(1) == pytest.approx((2.0, 1.525))
    assert Schedule("linear", start, end, 1).taus(0) == start  # a one-step run stays at the start


def test_a_schedule_ignores_eur_and_has_no_state():
    schedule = Schedule("linear", (1.0, 1.0), (2.0, 2.0), 3)
    schedule.update(0.1)
    assert schedule.taus(1) == (1.5, 1.5) and schedule.state() == {}


# -- the controller on synthetic ratio streams (2.9d-e) ---------------------------------------------------

def test_the_stream_eur_falls_as_tau_rises():
    gen = torch.Generator().manual_seed(1)
    eurs = [stream_eur(tau, gen) for tau in (1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0)]
    assert all(a > b for a, b in zip(eurs, eurs[1:])), eurs
    assert eurs[0] > 0.99 and 0.85 < eurs[3] < 0.95 and eurs[-1] < 0.6


@pytest.mark.parametrize(("start", "target"), [((2.0, 2.4), 0.9), ((10.0, 12.0), 0.9), ((40.0, 48.0), 0.97),
                                               ((10.0, 12.0), 0.6)])
def test_the_controller_reaches_the_target_and_stays_within_005(start, target):
    eurs, taus = run_controller(EURController(start=start, target=target), steps=60)
    reached = next(i for i, e in enumerate(eurs) if abs(e - target) <= 0.05)
    assert reached <= SETTLE_STEPS, (reached, eurs[:SETTLE_STEPS])
    assert all(abs(e - target) <= 0.05 for e in eurs[reached:]), eurs
    assert abs(sum(eurs[30:]) / 30 - target) < 0.01  # integral action: no offset on average
    assert all(p / n == pytest.approx(start[0] / start[1]) for p, n in taus)  # one factor on both temperatures


def test_the_controller_raises_tau_when_eur_is_high_and_lowers_it_when_low():
    controller = EURController(start=(10.0, 12.0), target=0.9)
    controller.update(0.95)  # relative error (0.95 - 0.9) / (1 - 0.9) = 0.5
    assert controller.taus(1) == pytest.approx((10.0 * math.exp(CONTROLLER_RATE * 0.5),
                                                12.0 * math.exp(CONTROLLER_RATE * 0.5)))
    controller.update(0.85)
    controller.update(0.85)
    assert controller.taus(3)[0] == pytest.approx(10.0 * math.exp(-CONTROLLER_RATE * 0.5))
    before = controller.state()
    controller.update(math.nan)  # a step without tokens: no information, no change
    assert controller.state() == before


def test_the_bounds_hold_per_step_and_overall():
    # an unreachable low target drives tau up to tau_max and keeps it there; tau_neg, the larger, meets the bound
    up = EURController(start=(10.0, 12.0), target=0.2, tau_max=20.0)
    eurs, taus = run_controller(up, steps=30)
    assert max(n for _, n in taus) == pytest.approx(20.0) and all(n <= 20.0 + 1e-9 for _, n in taus)
    assert min(eurs) > 0.5  # the target is out of reach within the bounds
    # an unreachable high target drives tau down to tau_min (tau_pos, the smaller, meets it)
    down = EURController(start=(10.0, 12.0), target=0.9999, tau_min=5.0)
    _, taus = run_controller(down, steps=60)
    assert min(p for p, _ in taus) == pytest.approx(5.0) and all(p >= 5.0 - 1e-9 for p, _ in taus)
    # per step: |x' - x| <= rate max(X, 1 - X) / (1 - X), since EUR and X lie in [0, 1]; both ends are met
    for target in (0.3, 0.9):
        steps = []
        for eur in (0.0, 1.0):
            controller = EURController(start=(10.0, 12.0), target=target, tau_min=1e-6, tau_max=1e6)
            controller.update(eur)
            steps.append(abs(controller.log_factor))
        assert max(steps) == pytest.approx(CONTROLLER_RATE * max(target, 1 - target) / (1 - target))


def test_the_state_survives_a_round_trip_through_json():
    controller = EURController(start=(10.0, 12.0), target=0.9)
    run_controller(controller, steps=7)
    resumed = EURController(start=(10.0, 12.0), target=0.9)
    resumed.load_state(json.loads(json.dumps(controller.state())))
    assert resumed.taus(7) == controller.taus(7)
    eurs_a, _ = run_controller(controller, steps=5, seed=3)
    eurs_b, _ = run_controller(resumed, steps=5, seed=3)
    assert eurs_a == eurs_b and resumed.taus(12) == controller.taus(12)


def test_eur_tracking_reads_the_second_half():
    rows = [{"step": s, "eur": 1.0 if s <= 5 else 0.92} for s in range(1, 11)] + [{"step": 11, "loss": 0.0}]
    result = eur_tracking(rows, 0.9)
    assert result["steps"] == (6, 10) and result["eur"] == pytest.approx(0.92) and result["within"]
    assert not eur_tracking(rows, 0.85)["within"] and eur_tracking(rows, 0.85)["error"] == pytest.approx(0.07)


def test_the_config_resolves_a_steps_base_temperatures_through_the_convention(tmp_path):
    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(tmp_path / "r"), "--gate", "softsign",
                      "--tau_convention", "width_matched"])
    factor = G.resolve_tau("softsign", 1.0, "width_matched")
    assert run.training.gate_taus((2.0, 3.0)) == pytest.approx((2.0 * factor, 3.0 * factor))
    assert run.training.gate_taus() == pytest.approx((1.0 * factor, 1.05 * factor))


# -- the trainer (slow: tiny training runs) ---------------------------------------------------------------

RUN = ["--config", "configs/tiny-cpu.yaml", "--max_steps", "4", "--save_steps", "2", "--train_size", "32",
       "--eval_size", "8", "--per_device_train_batch_size", "16", "--max_completion_length", "24",
       "--learning_rate", "1e-3", "--heldout_n", "2"]


def _run(run_dir, *extra):
    return parse_args([*RUN, "--run_dir", str(run_dir), *extra])


@pytest.mark.slow
def test_a_controlled_run_follows_the_rule_and_resumes_at_the_same_temperatures(tmp_path):
    # a target above the recipe's EUR at tau ~1 (about 0.99): the controller must lower tau, step by step
    control = ["--gate", "sigmoid", "--tau_target_eur", "0.999", "--tau_controller_rate", "0.02"]
    train(_run(tmp_path / "whole", *control))
    rows = read_metrics(tmp_path / "whole")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (rows[0]["tau/pos"], rows[0]["tau/neg"]) == (1.0, 1.05)  # the recipe's at the first step
    for row, after in zip(rows, rows[1:]):  # (2.9d), within the default bounds
        factor = math.exp(0.02 * (row["eur"] - 0.999) / 0.001)
        assert after["tau/pos"] == pytest.approx(row["tau/pos"] * factor, rel=1e-9)
        assert after["tau/neg"] / after["tau/pos"] == pytest.approx(1.05)
    assert len({r["tau/pos"] for r in rows}) == 4
    state = json.loads((tmp_path / "whole" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"][TEMPERATURE_STATE]["log_factor"] == pytest.approx(
        math.log(rows[2]["tau/pos"] / 1.0))
    # a crash after step 3, a resume from checkpoint-2: the same temperatures and EUR at every step
    with pytest.raises(KeyboardInterrupt):
        train(_run(tmp_path / "run", *control), callbacks=[CrashAfterStep(3)])
    train(_run(tmp_path / "run", *control, "--resume"))
    resumed = read_metrics(tmp_path / "run")
    keys = ("step", "tau/pos", "tau/neg", "eur")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in rows]


@pytest.mark.slow
def test_a_scheduled_run_logs_its_schedule(tmp_path):
    train(_run(tmp_path / "run", "--gate", "erf", "--tau_schedule", "cosine", "--tau_end_pos", "3",
               "--tau_end_neg", "2", "--tau_convention", "width_matched"))
    factor = G.resolve_tau("erf", 1.0, "width_matched")
    expected = Schedule("cosine", (1.0, 1.05), (3.0, 2.0), 4)
    for row in read_metrics(tmp_path / "run"):
        base = expected.taus(row["step"] - 1)
        assert (row["tau/pos"], row["tau/neg"]) == pytest.approx((base[0] * factor, base[1] * factor))
