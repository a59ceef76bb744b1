"""Issue 11: a table-driven corpus of bad inputs across every public entry point, each with its expected outcome.

Four kinds of case, one parametrized test each:

    REFUSED   a public function raises ValueError/TypeError (or the project's own error, or a named OSError) whose
              message holds every one of `words` (case-insensitive): never an AttributeError from inside
    EXITS     a CLI's `main(argv)` (train, evaluate, batch, data) returns 2 with a last stderr line `error: ...`
              holding `words`, and no traceback; SUBPROCESS: the same through `python -m`, end to end
    ACCEPTED  an input that looks odd but is legitimate is taken, and `expect(result)` checks the result
    NOTEBOOK  (slow) papermill with a bad parameter fails in the first code cell after the parameters, naming it

Beside the table: a refused command on a finished or damaged run, and a resume with a failure injected after each of
its steps (lock, checks, every file write, the trainer, the checkpoint load), leave every file of the run
byte-identical (sha256 of each file before and after).

A case whose refusal belongs to a module being changed elsewhere is marked `xfail(strict=True)` with what is
wrong: it turns into a failure the moment the defect is fixed, so that the mark is removed with the fix.

Nothing here trains: `no_work` makes the first training step, any evaluation's generation (train's held-out check
included), an evaluation's model loading and a batch run raise `WorkStarted`, so a refusal that comes too late fails
instead of running.

    .venv/bin/python -m pytest -q tests/test_bad_inputs.py            # -m 'not slow' skips the notebooks
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import pytest
import torch
import yaml

matplotlib.use("Agg")

from sapo_core import (  # noqa: E402
    batch,
    data,
    demo,
    evaluate,
    gates,
    loss,
    plots,
    prompts,
    recipe,
    rewards,
    rundir,
    study,
    tiny,
    train,
    trust_region,
)
from sapo_core.config import ConfigError  # noqa: E402
from sapo_core.paths import REPO_ROOT  # noqa: E402
from sapo_core.recipe import parse_args
from sapo_core.temperature import EURController, eur_tracking, make_temperature  # noqa: E402

TINY_RECIPE = "configs/tiny-cpu.yaml"
PY = sys.executable


class Case(NamedTuple):
    id: str
    call: Callable[[Ctx], Any]
    expect: Any              # REFUSED: the exception class; EXITS: 2; ACCEPTED: a check of the result
    words: tuple[str, ...]   # what the message must name (case-insensitive substrings)
    reason: str              # why this is the right outcome
    marks: tuple = ()


def prefix_cache(mask_rows: int = 3, n: int = 2, capacity: int = 4):
    """sapo_core.prefix_attention.shared_prefix_cache over a 3-prompt, 5-token prompt cache."""
    from transformers.cache_utils import DynamicCache

    from sapo_core import prefix_attention

    cache = DynamicCache()
    cache.update(torch.zeros(3, 2, 5, 4), torch.zeros(3, 2, 5, 4), 0)
    return prefix_attention.shared_prefix_cache(cache, torch.ones(mask_rows, 5), n, capacity)


def xfail(why: str) -> tuple:
    """A defect in a module owned elsewhere: the case must fail until it is fixed (then drop the mark)."""
    return (pytest.mark.xfail(strict=True, reason=why),)


class WorkStarted(AssertionError):
    """Raised by `no_work` when a CLI gets past the point where every refusal should have happened."""


class Ctx:
    """What a case may use: a private temporary directory, file writers and monkeypatch."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp, self.monkeypatch = tmp, monkeypatch

    def file(self, name: str, content: str | bytes = "") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return str(path)

    def data(self, source: str, split: str, records: list) -> str:
        """A local data directory holding `<source>/<split>.jsonl` (dict records as JSON, strings verbatim)."""
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        self.file(f"data/{source}/{split}.jsonl", "".join(line + "\n" for line in lines))
        return str(self.tmp / "data")

    def run_argv(self, *extra: str, run: str = "run") -> list[str]:
        """The training CLI's arguments for a small run in this case's directory."""
        return ["--config", TINY_RECIPE, "--train_size", "64", "--eval_size", "8", "--run_dir", str(self.tmp / run),
                *extra]

    def run_dir(self, *extra: str, files: dict[str, str], resume_config: bool = True) -> list[str]:
        """A run directory holding `files` (and, with `resume_config`, the config.yaml of these arguments);
        returns the arguments that resume it."""
        argv = self.run_argv(*extra)
        if resume_config:
            self.file("run/config.yaml", yaml.safe_dump(parse_args(argv).recipe, sort_keys=False))
        for name, content in files.items():
            self.file(f"run/{name}", content)
        return [*argv, "--resume"]


# ---------------------------------------------------------------------------------------------------- helpers


def x3() -> torch.Tensor:
    return torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)


def erf() -> gates.Gate:
    return gates.get_gate("erf")


def cauchy(z):
    return 1.0 / (1.0 + z * z)


def policy(**overrides):
    """policy_loss on a 2 x 3 micro-batch, with `overrides` replacing any argument."""
    args = {"logps": torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.0]]),
            "old_logps": torch.tensor([[-1.1, -1.9, -0.5], [-0.2, -1.2, -2.2]]),
            "advantages": torch.tensor([0.5, -1.0]), "mask": torch.ones(2, 3)}
    args.update(overrides)
    return loss.policy_loss(args.pop("logps"), args.pop("old_logps"), args.pop("advantages"), args.pop("mask"), **args)


def with_nan(at_masked: bool):
    """policy_loss with a nan log-prob at position (0, 2), masked or not."""
    logps = torch.tensor([[-1.0, -2.0, math.nan], [-0.3, -1.2, -2.0]])
    mask = torch.tensor([[1, 1, 0 if at_masked else 1], [1, 1, 1]])
    return policy(logps=logps, mask=mask)


def math500(uid: str, answer="1") -> dict:
    return {"problem": "What is 1?", "answer": answer, "unique_id": uid}


def env(ctx: Ctx, name: str, value: str) -> Ctx:
    ctx.monkeypatch.setenv(name, value)
    return ctx


def figure():
    return plots.gate_figure(["erf"], n_points=11)


def unwritable_figures(ctx: Ctx):
    """save_figure into a directory the OS says this user cannot write (os.access; root writes anywhere)."""
    out = ctx.tmp / "figs"
    out.mkdir()
    ctx.monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != out)
    return plots.save_figure(figure(), "fig", out)


def same_figure_twice(ctx: Ctx):
    """save_figure twice with the same content: the second call is a no-op, not a refusal."""
    plots.save_figure(figure(), "same", ctx.tmp / "figs")
    return plots.save_figure(figure(), "same", ctx.tmp / "figs")


def changed_figure(ctx: Ctx):
    plots.save_figure(figure(), "fig", ctx.tmp / "figs")
    return plots.save_figure(plots.gate_figure(["arctan"], n_points=11), "fig", ctx.tmp / "figs")


def hub_offline(ctx: Ctx) -> Ctx:
    """load_dataset as it fails without network (datasets raises a ConnectionError, an OSError)."""
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub (OfflineModeIsEnabled)")
    ctx.monkeypatch.setattr(data, "load_dataset", offline)
    return ctx


def nan_gate() -> gates.Gate:
    return gates.Gate("nan_g", lambda z: z * math.nan, cauchy, 1.0, "polynomial")


def grader_with_workers_env(c: Ctx, value: str) -> rewards.Grader:
    """A Grader sized by env SAPO_REWARD_WORKERS (its pool starts only on first use)."""
    c.monkeypatch.setenv("SAPO_REWARD_WORKERS", value)
    return rewards.Grader()


# A data file in Latin-1: its second line holds "é" as the single byte 0xe9.
LATIN1_LINES = (b'{"problem": "p", "answer": "1", "unique_id": "a"}\n'
                b'{"problem": "caf\xe9", "answer": "2", "unique_id": "b"}\n')


def mix_with_short_gsm8k(c: Ctx):
    """training_mix(4) on a local directory with 1 GSM8K row and 3 DeepMath rows."""
    c.data("gsm8k", "train", [{"question": "q", "answer": "#### 1"}])
    return data.training_mix(4, data_dir=c.data("deepmath", "train", [{"question": "q", "final_answer": "1"}] * 3))


def math500_from_env(c: Ctx):
    c.monkeypatch.setenv("SAPO_DATA_DIR", c.data("math500", "test", [math500("e")]))
    return data.math500()


def recipe_from_elsewhere(c: Ctx) -> str:
    """The repository's recipe named relative to the repository root, from another working directory."""
    c.monkeypatch.chdir(c.tmp)
    return parse_args(["--config", TINY_RECIPE, "--run_dir", str(c.tmp / "run")]).config_path


def controller() -> EURController:
    """An EUR controller at the tiny recipe's temperatures."""
    return EURController(start=(1.0, 1.05), target=0.9)


# ------------------------------------------------------------------------------------------------ REFUSED

REFUSED = [
    # --- gates (method §2) ---
    Case("gate-unknown-name", lambda c: gates.get_gate("tanh"), ValueError, ("unknown gate 'tanh'", "available"),
         "a typo must list the registered gates"),
    Case("gate-name-int", lambda c: gates.get_gate(3), TypeError, ("gate must be",),
         "a gate is a name or a Gate"),
    Case("gate-name-none", lambda c: gates.get_gate(None), TypeError, ("gate must be",),
         "None is not a gate"),
    Case("gate-value-tau-zero", lambda c: erf().value(x3(), 0.0), ValueError, ("tau", "> 0"),
         "f_tau divides by tau"),
    Case("gate-value-tau-negative", lambda c: erf().value(x3(), -1.0), ValueError, ("tau", "> 0"),
         "a negative tau flips the gate"),
    Case("gate-value-tau-nan", lambda c: erf().value(x3(), math.nan), ValueError, ("tau", "finite"),
         "nan tau would give nan everywhere, silently"),
    Case("gate-value-tau-inf", lambda c: erf().value(x3(), math.inf), ValueError, ("tau", "finite"),
         "infinite tau is hard clipping in the limit, not a gate value"),
    Case("gate-value-tau-bool", lambda c: erf().value(x3(), True), TypeError, ("tau", "bool"),
         "True is not a temperature"),
    Case("gate-value-tau-str", lambda c: erf().value(x3(), "1"), TypeError, ("tau", "str"),
         "a string is not a temperature"),
    Case("gate-value-tau-tensor-zero", lambda c: erf().value(x3(), torch.tensor([1.0, 0.0, 2.0])), ValueError,
         ("tau", "everywhere"), "every element of a tensor tau must be > 0"),
    Case("gate-value-tau-bool-tensor", lambda c: erf().value(x3(), torch.tensor([True])), TypeError,
         ("tau", "torch.bool"), "a bool tensor is not a temperature"),
    Case("gate-value-x-list", lambda c: erf().value([0.5, 1.0], 1.0), TypeError, ("x must be a torch.Tensor",),
         "the gate is a torch function"),
    Case("gate-value-x-int-tensor", lambda c: erf().value(torch.tensor([1, 2]), 1.0), TypeError,
         ("x must be a floating tensor",), "erf is not defined on integer tensors; refuse instead of a torch error"),
    Case("gate-weight-tau-negative", lambda c: erf().weight(x3(), -2.0), ValueError, ("tau",),
         "the weight g'(tau (x - 1)) needs tau > 0 like the value"),
    Case("gate-width-matched-tau-zero", lambda c: gates.width_matched_tau("erf", 0.0), ValueError, ("tau",),
         "width matching scales a positive tau"),
    Case("gate-width-matched-tau-nan", lambda c: gates.width_matched_tau("erf", math.nan), ValueError,
         ("tau", "finite"), "nan in, nan out silently otherwise"),
    Case("gate-width-matched-reference", lambda c: gates.width_matched_tau("erf", 1.0, reference="tanh"), ValueError,
         ("reference",), "the reference gate is an argument of its own"),
    Case("gate-resolve-tau-convention", lambda c: gates.resolve_tau("erf", 1.0, "matched"), ValueError,
         ("tau convention", "width_matched"), "conventions are a closed set"),
    Case("gate-resolve-tau-negative", lambda c: gates.resolve_tau("erf", -2.0, "equal"), ValueError, ("tau",),
         "'equal' passes tau through, but only a valid one"),
    Case("gate-resolve-tau-inf", lambda c: gates.resolve_tau("erf", math.inf, "width_matched"), ValueError,
         ("tau", "finite"), "infinite tau is refused under every convention"),
    Case("gate-student-t-bool", lambda c: gates.student_t(True), TypeError, ("nu", "bool"),
         "student_t(True) must not be nu = 1"),
    Case("gate-student-t-zero", lambda c: gates.student_t(0), ValueError, ("nu",), "the kernel needs nu > 0"),
    Case("gate-student-t-nan", lambda c: gates.student_t(math.nan), ValueError, ("nu",), "nan nu is no kernel"),
    Case("gate-student-t-str", lambda c: gates.student_t("3"), TypeError, ("nu", "str"), "no silent float('3')"),
    Case("gate-make-reserved-clip", lambda c: gates.make_gate("clip", cauchy), ValueError, ("reserved",),
         "'clip' names hard clipping in recipes"),
    Case("gate-make-empty-name", lambda c: gates.make_gate("", cauchy), ValueError, ("gate name",),
         "a gate is registered by name"),
    Case("gate-make-weight-not-callable", lambda c: gates.make_gate("w", "1 / (1 + z^2)"), TypeError,
         ("weight_fn", "callable"), "g' is a torch function, not text"),
    Case("gate-make-weight-returns-float", lambda c: gates.make_gate("w", lambda z: 1.0), TypeError,
         ("weight_fn", "same shape"), "g' must map a tensor to a tensor"),
    Case("gate-make-weight-raises", lambda c: gates.make_gate("w", lambda z: z.nosuch()), TypeError,
         ("weight_fn", "AttributeError"), "the user's error is reported naming the argument it came from"),
    Case("gate-make-inadmissible-identity", lambda c: gates.make_gate("w", lambda z: z), gates.InadmissibleGateError,
         ("not admissible",), "g'(z) = z has no peak at 0"),
    Case("gate-make-inadmissible-flat", lambda c: gates.make_gate("w", lambda z: 0.5 + 0.5 / (1 + z * z)),
         gates.InadmissibleGateError, ("(iv)",), "g' must decay to 0"),
    Case("gate-make-nan-weight", lambda c: gates.make_gate("w", lambda z: z * math.nan),
         gates.InadmissibleGateError, ("not finite",), "admissibility is nan-safe: nan fails, never passes"),
    Case("gate-make-halfmax-negative", lambda c: gates.make_gate("w", cauchy, halfmax=-1.0), ValueError,
         ("halfmax", "> 0"), "a half-max width is positive"),
    Case("gate-make-halfmax-nan", lambda c: gates.make_gate("w", cauchy, halfmax=math.nan), ValueError,
         ("halfmax",), "nan half-max would make width matching nan"),
    Case("gate-make-halfmax-wrong", lambda c: gates.make_gate("w", cauchy, halfmax=2.0), ValueError,
         ("halfmax", "not the half-max"), "a given half-max must be where g' = 1/2"),
    Case("gate-make-tail-unknown", lambda c: gates.make_gate("w", cauchy, tail="fat"), ValueError,
         ("unknown tail", "polynomial"), "tails are a closed set"),
    Case("gate-register-name", lambda c: gates.register_gate("erf"), TypeError, ("register_gate expects a Gate",),
         "register_gate takes a Gate, not a name"),
    Case("gate-register-inadmissible-direct", lambda c: gates.register_gate(
        gates.Gate("double", lambda z: 2 * torch.atan(z), lambda z: 2 / (1 + z * z), 1.0, "polynomial")),
        gates.InadmissibleGateError, ("double", "(ii)"), "a Gate built directly is checked on registration too"),
    Case("gate-register-wrong-halfmax-direct", lambda c: gates.register_gate(
        gates.Gate("arctan_bad_halfmax", torch.atan, cauchy, 3.0, "polynomial")), ValueError,
        ("halfmax", "not the half-max"), "a directly built Gate's half-max is checked on registration"),
    Case("gate-register-duplicate", lambda c: gates.register_gate(gates.get_gate("erf")), ValueError,
         ("already registered", "overwrite=True"), "a built-in is never replaced silently"),
    Case("gate-register-overwrite-str", lambda c: gates.register_gate(gates.get_gate("erf"), overwrite="yes"),
         TypeError, ("overwrite",), "overwrite is a bool, not a truthy string"),
    Case("gate-direct-halfmax-zero", lambda c: gates.Gate("z", torch.atan, cauchy, 0.0, "polynomial"), ValueError,
         ("halfmax",), "halfmax must be positive in a Gate built directly"),
    Case("gate-direct-tail-unknown", lambda c: gates.Gate("z", torch.atan, cauchy, 1.0, "heavy"), ValueError,
         ("unknown tail",), "tails are a closed set"),
    Case("gate-direct-g-not-callable", lambda c: gates.Gate("z", "atan", cauchy, 1.0, "polynomial"), TypeError,
         ("g must be a callable",), "g is a function"),
    Case("gate-check-admissible-unknown", lambda c: gates.check_admissible("tanh"), ValueError, ("unknown gate",),
         "check_admissible accepts a name, and a wrong one is named"),
    Case("gate-clip-weight-eps-negative", lambda c: gates.clip_weight(x3(), 1.0, eps_low=-0.1), ValueError,
         ("eps_low",), "a trust region has a non-negative width"),
    Case("gate-clip-weight-eps-nan", lambda c: gates.clip_weight(x3(), 1.0, eps_high=math.nan), ValueError,
         ("eps_high",), "nan would make every comparison false"),
    Case("gate-clip-weight-sign-str", lambda c: gates.clip_weight(x3(), "pos"), TypeError, ("advantage_sign",),
         "the sign of A is a number"),
    Case("gate-clip-weight-sign-nan", lambda c: gates.clip_weight(x3(), math.nan), ValueError, ("advantage_sign",),
         "nan > 0 is false: a nan sign would silently take the A < 0 side"),
    Case("gate-table-bare-name", lambda c: gates.gate_table("erf"), TypeError, ("names",),
         "a bare string would be read per character"),
    Case("gate-table-tau-zero", lambda c: gates.gate_table(tau=0.0), ValueError, ("tau",),
         "half-max in x divides by tau"),
    Case("gate-table-unknown", lambda c: gates.gate_table(["tanh"]), ValueError, ("tanh", "names"),
         "the argument holding the bad name is named"),
    Case("gate-spec-dunder", lambda c: gates.resolve_spec("__import__('os')"), ValueError,
         ("'__import__' is not allowed",), "an expression spec is parsed, never run, before its names are checked"),
    Case("gate-spec-family-param", lambda c: gates.resolve_spec("student_t:mu=3"), ValueError, ("'mu'", "nu"),
         "a family names the parameters it takes"),
    Case("gate-spec-import-missing", lambda c: gates.resolve_spec("no_such_pkg_x.gates:g"), ValueError,
         ("cannot be imported", "importable"), "the import-path form says the module must be importable"),
    Case("gate-spec-huge-constant", lambda c: gates.resolve_spec("z * 0 + 10**10**9"), ValueError,
         ("cannot be computed",), "a big-int power is refused before it runs (it would take minutes)"),
    # --- loss (method §1, §2.7, §7) ---
    Case("loss-gate-unknown", lambda c: policy(gate="tanh"), ValueError, ("unknown gate 'tanh'", "clip"),
         "the loss lists what it accepts, 'clip' included"),
    Case("loss-gate-int", lambda c: policy(gate=5), ValueError, ("unknown gate 5",), "a gate is a name or a Gate"),
    Case("loss-mask-two", lambda c: policy(mask=torch.tensor([[1, 2, 1], [1, 1, 1]])), ValueError,
         ("mask", "0 and 1"), "a mask of counts would weight tokens silently"),
    Case("loss-mask-half", lambda c: policy(mask=torch.full((2, 3), 0.5)), ValueError, ("mask", "0 and 1"),
         "a soft mask is not a mask; token_weights exist for weights"),
    Case("loss-mask-shape", lambda c: policy(mask=torch.ones(2, 4)), ValueError, ("mask", "shape"),
         "the mask aligns with logps"),
    Case("loss-dr-grpo-length-short", lambda c: policy(aggregation="seq_mean_token_sum_norm", max_completion_length=2),
         ValueError, ("max_completion_length", "3"), "Dr. GRPO's L below the sequence length overweights tokens"),
    Case("loss-dr-grpo-length-missing", lambda c: policy(aggregation="seq_mean_token_sum_norm"), ValueError,
         ("max_completion_length",), "Dr. GRPO's denominator needs L"),
    Case("loss-length-bool", lambda c: policy(max_completion_length=True), ValueError, ("max_completion_length",),
         "True is not a length"),
    Case("loss-tau-pos-zero", lambda c: policy(tau_pos=0.0), ValueError, ("tau_pos",), "f_tau divides by tau"),
    Case("loss-tau-neg-nan", lambda c: policy(tau_neg=math.nan), ValueError, ("tau_neg",), "nan tau: nan loss"),
    Case("loss-tau-pos-inf", lambda c: policy(tau_pos=math.inf), ValueError, ("tau_pos",), "tau must be finite"),
    Case("loss-tau-bool", lambda c: policy(tau_pos=True), TypeError, ("tau_pos",), "True is not a temperature"),
    Case("loss-tau-beyond-float32", lambda c: policy(tau_neg=1e39), ValueError, ("tau_neg", "float32"),
         "tau = 1e39 is inf in float32 (a bare RuntimeError from torch before)"),
    Case("loss-tau-below-float32", lambda c: policy(tau_pos=1e-46), ValueError, ("tau_pos", "float32"),
         "tau = 1e-46 is 0 in float32: f_tau would divide by zero"),
    Case("loss-clamp-beyond-exp", lambda c: policy(log_ratio_clamp=89.0), ValueError, ("log_ratio_clamp", "88.72"),
         "exp(89) is inf in float32: the loss was nan, silently"),
    Case("loss-epsilon-negative", lambda c: policy(epsilon_low=-0.1), ValueError, ("epsilon_low",),
         "a trust region has a non-negative width"),
    Case("loss-clamp-zero", lambda c: policy(log_ratio_clamp=0.0), ValueError, ("log_ratio_clamp",),
         "a zero clamp pins every ratio at 1"),
    Case("loss-level-unknown", lambda c: policy(level="seq"), ValueError, ("level", "sequence"),
         "levels are a closed set"),
    Case("loss-aggregation-unknown", lambda c: policy(aggregation="mean"), ValueError, ("aggregation", "token_mean"),
         "aggregations are a closed set"),
    Case("loss-logps-list", lambda c: policy(logps=[[-1.0, -2.0, -0.5]]), TypeError, ("logps",),
         "tensors only"),
    Case("loss-logps-1d", lambda c: policy(logps=torch.tensor([-1.0, -2.0]), old_logps=torch.tensor([-1.0, -2.0])),
         ValueError, ("logps", "(B, T)"), "a per-token loss needs a batch of sequences"),
    Case("loss-logps-int", lambda c: policy(logps=torch.ones(2, 3, dtype=torch.long),
                                            old_logps=torch.ones(2, 3, dtype=torch.long)),
         ValueError, ("logps", "floating"), "log-probabilities are floats"),
    Case("loss-old-logps-shape", lambda c: policy(old_logps=torch.zeros(2, 2)), ValueError, ("old_logps", "shape"),
         "ratios are per token"),
    Case("loss-old-logps-dtype", lambda c: policy(old_logps=torch.zeros(2, 3, dtype=torch.float64)), ValueError,
         ("old_logps", "dtype"), "mixed precision inputs are a caller's bug"),
    Case("loss-advantages-shape", lambda c: policy(advantages=torch.zeros(2, 1)), ValueError, ("advantages", "(B,)"),
         "one advantage per completion"),
    Case("loss-advantages-int", lambda c: policy(advantages=torch.tensor([1, -1])), ValueError,
         ("advantages", "floating"), "advantages are standardised floats"),
    Case("loss-token-weights-shape", lambda c: policy(token_weights=torch.ones(3)), ValueError, ("token_weights",),
         "weights align with tokens"),
    Case("loss-token-weights-inf", lambda c: policy(token_weights=torch.tensor([[1.0, math.inf, 1.0]] * 2)),
         ValueError, ("token_weights", "finite"), "the docstring promises finite weights; inf makes the loss inf"),
    Case("loss-compute-metrics-str", lambda c: policy(compute_metrics="yes"), TypeError, ("compute_metrics",),
         "a truthy string is not True"),
    Case("loss-aggregate-unknown", lambda c: loss.masked_aggregate(torch.ones(1, 2), torch.ones(1, 2), "sum"),
         ValueError, ("aggregation",), "masked_aggregate checks its choice like policy_loss"),
    Case("loss-importance-ratio-level", lambda c: loss.importance_log_ratio(torch.ones(1, 2), torch.ones(1, 2),
                                                                           torch.ones(1, 2), level="word"),
         ValueError, ("level",), "the shared log-ratio checks its level"),
    # --- rewards (method §3.2) ---
    Case("reward-format-bare-string", lambda c: rewards.format_reward("<think> a </think> <answer> 1 </answer>"),
         TypeError, ("completions", "list"), "a bare string would be scored per character"),
    Case("reward-format-none", lambda c: rewards.format_reward(None), TypeError, ("completions",),
         "no completions is not an empty batch"),
    Case("reward-format-dict", lambda c: rewards.format_reward({"role": "assistant", "content": "x"}), TypeError,
         ("completions",), "one message is not a batch"),
    Case("reward-format-int-item", lambda c: rewards.format_reward([123]), TypeError, ("completion",),
         "a completion is text or messages"),
    Case("reward-correct-bare-string", lambda c: rewards.correctness_reward("<answer> 1 </answer>", answer=["1"]),
         TypeError, ("completions",), "a bare string would be graded per character"),
    Case("reward-correct-bare-answer", lambda c: rewards.correctness_reward(["<answer> 1 </answer>"], answer="1"),
         TypeError, ("answer",), "the gold column is a list too"),
    Case("reward-correct-length-mismatch",
         lambda c: rewards.correctness_reward(["<answer> 1 </answer>", "<answer> 2 </answer>"], answer=["1"]),
         ValueError, ("2 completions", "1 gold"), "zip would drop the second completion silently"),
    Case("reward-correct-bytes-gold", lambda c: rewards.correctness_reward(["<answer> 42 </answer>"], answer=[b"42"]),
         TypeError, ("bytes", "decode"), "bytes are decoded by the caller, or refused: never graded as b'42'"),
    Case("reward-correct-no-answer-column", lambda c: rewards.correctness_reward(["<answer> 1 </answer>"]), TypeError,
         ("answer",), "the gold column is required"),
    Case("reward-correct-grader-str", lambda c: rewards.CorrectnessReward("fast"), TypeError, ("grader",),
         "a grader is a Grader; otherwise an AttributeError at the first batch"),
    Case("reward-grader-memory-zero", lambda c: rewards.Grader(num_workers=1, memory_limit_mb=0), ValueError,
         ("memory_limit_mb",), "a zero memory limit kills every worker"),
    Case("reward-grader-memory-negative", lambda c: rewards.Grader(num_workers=1, memory_limit_mb=-5), ValueError,
         ("memory_limit_mb",), "the limit must be positive"),
    Case("reward-grader-memory-float", lambda c: rewards.Grader(num_workers=1, memory_limit_mb=1.5), TypeError,
         ("memory_limit_mb", "None: no limit", "float 1.5"), "MiB are whole"),
    Case("reward-grader-timeout-zero", lambda c: rewards.Grader(num_workers=1, timeout_s=0), ValueError,
         ("timeout_s",), "every item would time out"),
    Case("reward-grader-timeout-nan", lambda c: rewards.Grader(num_workers=1, timeout_s=math.nan), ValueError,
         ("timeout_s",), "nan time limit"),
    Case("reward-grader-timeout-inf", lambda c: rewards.Grader(num_workers=1, timeout_s=math.inf), ValueError,
         ("timeout_s",), "no limit at all would let one item stall training"),
    Case("reward-grader-workers-zero", lambda c: rewards.Grader(num_workers=0), ValueError, ("num_workers",),
         "a pool needs a worker"),
    Case("reward-grader-workers-bool", lambda c: rewards.Grader(num_workers=True), TypeError, ("num_workers",),
         "True is not a count"),
    Case("reward-grader-warm-up-str", lambda c: rewards.Grader(num_workers=1, warm_up="no"), TypeError, ("warm_up",),
         "'no' is truthy: it would warm up"),
    Case("reward-workers-env-zero", lambda c: grader_with_workers_env(c, "0"), ValueError,
         ("SAPO_REWARD_WORKERS", "'0'"), "SAPO_REWARD_WORKERS=0: the variable is named, with its value"),
    Case("reward-workers-env-text", lambda c: grader_with_workers_env(c, "all"), ValueError,
         ("SAPO_REWARD_WORKERS", "'all'"), "a non-integer pool size"),
    Case("reward-normalize-gold-bytes", lambda c: rewards.normalize_gold(b"42"), TypeError, ("bytes", "decode"),
         "str(b'42') is \"b'42'\", never the number"),
    Case("reward-normalize-answer-int", lambda c: rewards.normalize_answer(42), TypeError, ("text", "int"),
         "normal forms are of text"),
    Case("reward-extract-answer-none", lambda c: rewards.extract_answer(None), TypeError, ("text",),
         "not an AttributeError on None.rfind"),
    Case("reward-quick-verdict-int", lambda c: rewards.quick_verdict(1, "1"), TypeError, ("answer",),
         "quick verdicts compare normalised strings"),
    Case("reward-is-formatted-none", lambda c: rewards.is_formatted(None), TypeError, ("text",),
         "not an AttributeError on None.count"),
    Case("reward-completion-text-int", lambda c: rewards.completion_text(5), TypeError, ("completion",),
         "a completion is text or messages"),
    Case("reward-grade-answer-int", lambda c: rewards.Grader(num_workers=1).grade([5], ["5"]), TypeError,
         ("answers[0]",), "the bad item is named by its index"),
    # --- prompts ---
    Case("prompt-none", lambda c: prompts.make_prompt(None), TypeError, ("problem",), "a problem is text"),
    Case("prompt-blank", lambda c: prompts.make_prompt("   "), ValueError, ("problem", "non-empty"),
         "a blank problem poses nothing"),
    Case("prompt-completion-none", lambda c: prompts.format_completion(None, "1"), TypeError, ("reasoning",),
         "no 'None' text inside <think>"),
    # --- data ---
    Case("data-unknown-source", lambda c: data.load_source("gsm9k", "train"), ValueError, ("gsm9k", "available"),
         "sources are a closed set"),
    Case("data-unknown-split", lambda c: data.load_source("gsm8k", "dev"), ValueError, ("dev", "train, test"),
         "splits are per source"),
    Case("data-source-list", lambda c: data.load_source(["gsm8k"], "train"), ValueError, ("unknown dataset",),
         "not a TypeError about hashing"),
    Case("data-duplicate-id", lambda c: data.math500(c.data("math500", "test", [math500("a/1"), math500("a/1", "2")])),
         data.DatasetFormatError, ("duplicate id", "math500-a/1", "test.jsonl:2", "test.jsonl:1"),
         "two problems under one id would be merged by per-problem statistics; the id and the file are named"),
    Case("data-duplicate-id-int-and-str",
         lambda c: data.aime24(c.data("aime24", "test", [{"problem": "p", "answer": "1", "id": 7},
                                                         {"problem": "q", "answer": "2", "id": "7"}])),
         data.DatasetFormatError, ("duplicate id", "aime24-7"), "7 and '7' are the same id once written"),
    Case("data-id-list", lambda c: data.math500(c.data("math500", "test", [math500(["a"])])),
         data.DatasetFormatError, ("unique_id", "string or an int"), "an id is a scalar"),
    Case("data-not-json", lambda c: data.math500(c.data("math500", "test", ["{not json"])), data.DatasetFormatError,
         ("test.jsonl:1", "not valid JSON"), "the file and line are named"),
    Case("data-line-not-object", lambda c: data.math500(c.data("math500", "test", ["[1, 2]"])),
         data.DatasetFormatError, ("test.jsonl:1", "JSON object"), "a record is an object"),
    Case("data-not-utf8", lambda c: data.math500(Path(c.file("data/math500/test.jsonl", LATIN1_LINES)).parents[1]),
         data.DatasetFormatError, ("test.jsonl:2", "not UTF-8", "0xe9"), "the file, line and expected encoding"),
    Case("data-missing-field", lambda c: data.math500(c.data("math500", "test", [{"answer": "1", "unique_id": "a"}])),
         data.DatasetFormatError, ("no field 'problem'", "test.jsonl:1"), "the missing field and place are named"),
    Case("data-empty-field", lambda c: data.math500(c.data("math500", "test", [math500("a", answer="  ")])),
         data.DatasetFormatError, ("'answer'", "empty"), "a blank gold cannot be graded"),
    Case("data-answer-list", lambda c: data.math500(c.data("math500", "test", [math500("a", answer=[1, 2])])),
         data.DatasetFormatError, ("'answer'", "string or an int"), "a list gold is no answer"),
    Case("data-answer-bool", lambda c: data.math500(c.data("math500", "test", [math500("a", answer=True)])),
         data.DatasetFormatError, ("'answer'",), "True is not an answer (it is an int in Python)"),
    Case("data-gsm8k-no-hashes",
         lambda c: data.gsm8k("test", c.data("gsm8k", "test", [{"question": "q", "answer": "the answer is 4"}])),
         data.DatasetFormatError, ("####", "test.jsonl:1"), "GSM8K's gold follows '####'"),
    Case("data-empty-file", lambda c: data.math500(c.data("math500", "test", [])), data.DatasetFormatError,
         ("no records",), "an empty benchmark would score nan"),
    Case("data-missing-file", lambda c: data.aime25(c.data("math500", "test", [math500("a")])), FileNotFoundError,
         ("aime25/test.jsonl", "download"), "the missing file is named with how to fill it"),
    Case("data-dir-int", lambda c: data.math500(5), TypeError, ("data_dir",), "not pathlib's TypeError"),
    Case("data-dir-empty", lambda c: data.math500(""), ValueError, ("data_dir", "empty"),
         "'' would silently mean the current directory"),
    Case("data-mix-odd", lambda c: data.training_mix(3), ValueError, ("n", "even"), "equal halves"),
    Case("data-mix-bool", lambda c: data.training_mix(True), TypeError, ("n", "bool"), "True is not a size"),
    Case("data-mix-seed-float", lambda c: data.training_mix(2, seed=0.5), TypeError, ("seed",),
         "a float seed would silently give its own stream"),
    Case("data-mix-too-large", mix_with_short_gsm8k, ValueError, ("exceeds", "gsm8k"),
         "asking for more rows than exist is named"),
    Case("data-synthetic-n-zero", lambda c: data.synthetic_arithmetic(0), ValueError, ("n", ">= 1"),
         "an empty task"),
    Case("data-synthetic-n-bool", lambda c: data.synthetic_arithmetic(True), TypeError, ("n", "bool"),
         "True would silently be one problem"),
    Case("data-synthetic-n-float", lambda c: data.synthetic_arithmetic(2.5), TypeError, ("n", "float"),
         "half a problem"),
    Case("data-synthetic-steps-inverted", lambda c: data.synthetic_arithmetic(2, min_steps=3, max_steps=2),
         ValueError, ("min_steps", "max_steps"), "an empty range of steps"),
    Case("data-synthetic-split", lambda c: data.synthetic_arithmetic(2, split="val"), ValueError, ("split",),
         "train and test streams only"),
    Case("data-synthetic-seed-str", lambda c: data.synthetic_arithmetic(2, seed="0"), TypeError, ("seed",),
         "'0' and 0 would silently be the same stream"),
    Case("data-synthetic-operand-zero", lambda c: data.synthetic_arithmetic(2, max_operand=0), ValueError,
         ("max_operand",), "no operand to draw"),
    Case("data-download-bare-name", lambda c: data.download(c.tmp / "dl", "gsm8k"), TypeError, ("names",),
         "a bare string would be read per character ('g', 's', ...)"),
    Case("data-download-unknown", lambda c: data.download(c.tmp / "dl", ["gsm9k"]), ValueError, ("gsm9k",),
         "refused before anything is downloaded"),
    Case("data-download-out-file", lambda c: data.download(c.file("occupied", "x"), ["aime24"]), ValueError,
         ("out_dir", "not a directory"), "refused before the hub is asked"),
    Case("data-download-offline", lambda c: data.download(hub_offline(c).tmp / "dl", ["math500"]),
         data.DataUnavailableError, ("MATH-500", "could not be loaded", "SAPO_DATA_DIR"),
         "no network: the dataset is named with how to work offline"),
    # --- plots (method §5) ---
    Case("plot-gates-bare-name", lambda c: plots.gate_figure("erf"), TypeError, ("gate_names",),
         "a bare string would be read per character"),
    Case("plot-gates-empty", lambda c: plots.gate_figure([]), ValueError, ("gate_names",), "nothing to draw"),
    Case("plot-gates-unknown", lambda c: plots.gate_figure(["tanh"]), ValueError, ("unknown gate 'tanh'",),
         "the registry's message"),
    Case("plot-tau-negative", lambda c: plots.gate_figure(tau=-1.0), ValueError, ("tau",),
         "tau <= 0 refused in plots.gate_figure"),
    Case("plot-tau-zero", lambda c: plots.gate_figure(tau=0.0), ValueError, ("tau",), "f_tau divides by tau"),
    Case("plot-tau-nan", lambda c: plots.gate_figure(tau=math.nan), ValueError, ("tau",), "an empty nan figure"),
    Case("plot-tau-convention", lambda c: plots.gate_figure(tau_convention="matched"), ValueError,
         ("tau convention",), "conventions are a closed set"),
    Case("plot-x-range-decreasing", lambda c: plots.gate_figure(x_range=(3.0, 0.0)), ValueError, ("x_range",),
         "an empty axis"),
    Case("plot-x-range-scalar", lambda c: plots.gate_figure(x_range=3.0), TypeError, ("x_range",),
         "not a TypeError about subscripting a float"),
    Case("plot-x-range-inf", lambda c: plots.gate_figure(x_range=(0.0, math.inf)), TypeError, ("x_range",),
         "linspace to infinity"),
    Case("plot-epsilon-negative", lambda c: plots.gate_figure(epsilon=-0.1), ValueError, ("epsilon",),
         "the argument is epsilon, not clip_weight's eps_low"),
    Case("plot-n-points-one", lambda c: plots.gate_figure(n_points=1), ValueError, ("n_points",),
         "a curve needs two points"),
    Case("plot-curves-empty", lambda c: plots.training_curves([]), ValueError, ("at least one run",),
         "nothing to draw"),
    Case("plot-curves-str", lambda c: plots.training_curves("runs/x/metrics.jsonl"), TypeError, ("runs",),
         "a path is not the rows (read them with train.read_metrics)"),
    Case("plot-curves-rows-without-step", lambda c: plots.training_curves([{"reward": 1.0}]), ValueError,
         ("step",), "not a KeyError from inside"),
    Case("plot-save-not-figure", lambda c: plots.save_figure("fig", "name", c.tmp), TypeError, ("fig",),
         "not an AttributeError on str.savefig"),
    Case("plot-save-name-path", lambda c: plots.save_figure(figure(), "a/b", c.tmp), ValueError,
         ("figure name",), "a name, not a path"),
    Case("plot-save-name-int", lambda c: plots.save_figure(figure(), 5, c.tmp), TypeError, ("figure name",),
         "not a TypeError about 'in' on an int"),
    Case("plot-save-name-nul", lambda c: plots.save_figure(figure(), "a\0b", c.tmp), ValueError,
         ("figure name", "NUL"), "the OS would refuse it with a bare 'embedded null byte'"),
    Case("plot-save-dir-is-file", lambda c: plots.save_figure(figure(), "fig", c.file("taken", "x")),
         NotADirectoryError, ("figure directory", "taken", "is a file"), "not a raw FileExistsError from mkdir"),
    Case("plot-save-dir-unwritable", unwritable_figures, PermissionError, ("figure directory", "not writable"),
         "named before anything is rendered, not a raw PermissionError from the write"),
    Case("nb02-args-gate-number", lambda c: recipe.notebook_args(TINY_RECIPE, 3, 0, []), ConfigError,
         ("gate must be a gate name", "int 3"), "notebook 02's gate parameter, checked by name"),
    Case("nb02-args-flags-string", lambda c: recipe.notebook_args(TINY_RECIPE, "erf", 0, "--max_steps 3"),
         ConfigError, ("flags must be a list", "'--max_steps 3'"), "one string would be split into characters"),
    Case("nb02-args-seed-float", lambda c: recipe.notebook_args(TINY_RECIPE, "erf", 1.5, []), ConfigError,
         ("seed must be an int",), "str(1.5) would reach the parser as a different refusal"),
    Case("config-argv-one-string", lambda c: parse_args("--gate erf"), ConfigError, ("list of strings", "--gate erf"),
         "a string would be read character by character"),
    Case("config-reward-weights-number", lambda c: parse_args(["--config", c.file("r.yaml", (REPO_ROOT / TINY_RECIPE)
                                                                                 .read_text().replace(
            "reward_weights: [1.0, 1.0]", "reward_weights: 1.0"))]),
         ConfigError, ("reward_weights", "list"), "a number where a list belongs, not a TypeError from inside"),
    Case("config-max-steps-below-minus-one", lambda c: parse_args(c.run_argv("--max_steps", "-2")), ConfigError,
         ("max_steps=-2", "-1"), "-1 means 'by epochs'; below it means nothing"),
    Case("config-report-to-missing-tracker", lambda c: parse_args(c.run_argv("--report_to", "wandb")), ConfigError,
         ("report_to", "wandb", "not installed"), "refused at parse time, before a run directory is claimed"),
    Case("plot-save-changed-content", changed_figure, FileExistsError, ("already exist", "overwrite=True"),
         "a figure whose content changes is never replaced silently"),
    Case("plot-eval-accuracy-int", lambda c: plots.eval_accuracy(5), TypeError, ("results",),
         "not a TypeError about 'in' on an int"),
    Case("plot-eval-accuracy-empty", lambda c: plots.pass_at_k_curve({}), ValueError, ("benchmark results",),
         "nothing to draw"),
    Case("plot-seed-bands-not-batch", lambda c: plots.seed_band_curves({"runs": []}), TypeError, ("BatchData",),
         "the comparison figures take compare.load_batch's result"),
    Case("plot-accuracy-by-gate-not-batch", lambda c: plots.accuracy_by_gate("runs/batch"), TypeError,
         ("BatchData",), "a path is not the loaded batch"),
    # --- the tiny model ---
    Case("tiny-config-lr-negative", lambda c: tiny.TinyBuildConfig(lr=-1.0), ValueError, ("lr",),
         "AdamW would raise from inside after the build started"),
    Case("tiny-config-batch-bool", lambda c: tiny.TinyBuildConfig(batch_size=True), TypeError, ("batch_size",),
         "True would silently be a batch of one"),
    Case("tiny-config-heads", lambda c: tiny.TinyBuildConfig(hidden_size=30), ValueError, ("num_heads", "hidden_size"),
         "not a shape error from inside Qwen2"),
    Case("tiny-config-pass-rate-nan", lambda c: tiny.TinyBuildConfig(target_pass_rate=math.nan), ValueError,
         ("target_pass_rate",), "nan is never reached: the build would run to max_updates and fail"),
    Case("tiny-generate-temperature-nan", lambda c: tiny.generate_completions(None, None, [], temperature=math.nan),
         ValueError, ("temperature",), "checked before the model is touched"),
    Case("tiny-pass-rate-bare-string", lambda c: tiny.pass_rate("abc", ["a", "b", "c"]), TypeError, ("completions",),
         "a bare string would be scored per character"),
    Case("tiny-build-out-file", lambda c: tiny.build(c.file("occupied", "x")), FileExistsError,
         ("not a directory",), "refused before minutes of training"),
    # --- config (the parser itself; the CLI's messages are in EXITS) ---
    Case("config-missing-file", lambda c: parse_args(["--config", str(c.tmp / "no.yaml")]), ConfigError,
         ("no.yaml", "does not exist"), "the file is named"),
    Case("config-needs-file", lambda c: parse_args(["--config"]), ConfigError, ("--config needs a file",),
         "not an IndexError"),
    Case("config-twice", lambda c: parse_args(["--config", TINY_RECIPE, "--config", TINY_RECIPE]), ConfigError,
         ("given twice",), "which one would win is not obvious"),
    Case("config-env-key", lambda c: parse_args(["--config", c.file("env.yaml", "env: {A: 1}\n")]), ConfigError,
         ("'env'", "not supported"), "TRL's env key is refused by name"),
    Case("config-tau-null", lambda c: parse_args(["--config", c.file("t.yaml", "sapo_temperature_pos: null\n")]),
         ConfigError, ("sapo_temperature_pos=None",), "null is no temperature"),
    Case("config-tau-underflow", lambda c: parse_args(c.run_argv("--sapo_temperature_pos", "1e-50")), ConfigError,
         ("sapo_temperature_pos",), "1e-50 rounds to 0 in float32, the compute dtype: the gate divides by 0"),
    # --- temperature schedules and the EUR controller (method §2.9) ---
    Case("temperature-eur-above-one", lambda c: controller().update(1.5), ValueError, ("eur=1.5", "[0, 1]"),
         "no effective update ratio exceeds 1: a wrong metric was passed"),
    Case("temperature-eur-str", lambda c: controller().update("0.9"), TypeError, ("eur", "str"),
         "no silent float('0.9')"),
    Case("temperature-step-negative", lambda c: controller().taus(-1), ValueError, ("step", ">= 0", "-1"),
         "optimizer steps count from 0"),
    Case("temperature-schedule-step-float", lambda c: make_temperature(start=(1.0, 1.0)).taus(1.5),
         TypeError, ("step", "an int", "1.5"), "a step is a count"),
    Case("temperature-load-state-empty", lambda c: controller().load_state({}), ValueError,
         ("temperature-controller state",), "a resume must not silently restart the controller at its start"),
    Case("temperature-make-target-with-schedule", lambda c: make_temperature(
        start=(1.0, 1.0), schedule="linear", end=(2.0, 2.0), target=0.9, max_steps=10), ValueError, ("choose one",),
        "a schedule and the controller would both set tau"),
    Case("temperature-controller-target-one", lambda c: EURController(start=(1.0, 1.0), target=1.0), ValueError,
         ("tau_target_eur=1.0", "(0, 1)"), "the rule divides by 1 - target"),
    Case("temperature-tracking-too-few-rows", lambda c: eur_tracking([{"step": 1, "eur": 0.9}], 0.9),
         ValueError, ("at least 2",), "no second half to average"),
    Case("temperature-make-start-nan", lambda c: make_temperature(start=(math.nan, 1.0)), ValueError,
         ("sapo_temperature_pos", "nan"), "a nan temperature would make every step's loss nan"),
    Case("temperature-make-start-negative-schedule", lambda c: make_temperature(
        start=(-1.0, 1.0), schedule="linear", end=(1.0, 1.0), max_steps=10), ValueError,
        ("sapo_temperature_pos", "-1"), "a schedule from a negative temperature passes through 0"),
    Case("temperature-make-max-steps-float", lambda c: make_temperature(start=(1.0, 1.0), max_steps=2.5), TypeError,
         ("max_steps", "2.5"), "a step count is an int"),
    Case("temperature-controller-log-factor-nan", lambda c: EURController(start=(1.0, 1.0), target=0.9,
                                                                          log_factor=math.nan),
         ValueError, ("log_factor", "nan"), "a nan factor makes every temperature nan"),
    Case("temperature-controller-target-none", lambda c: EURController(start=(1.0, 1.0), target=None), ValueError,
         ("tau_target_eur=None",), "the controller has nothing to steer to"),
    Case("temperature-tracking-target-nan", lambda c: eur_tracking([{"step": 1, "eur": 0.9}, {"step": 2, "eur": 0.9}],
                                                                   math.nan),
         ValueError, ("tau_target_eur=nan",), "'within' of a nan target would be False, silently"),
    Case("temperature-tracking-tolerance-negative", lambda c: eur_tracking(
        [{"step": 1, "eur": 0.9}, {"step": 2, "eur": 0.9}], 0.9, tolerance=-1), ValueError, ("tolerance", "-1"),
        "no mean lies within a negative distance"),
    # --- evaluation (functions) ---
    Case("eval-benchmark-unknown", lambda c: evaluate.evaluate("tiny", "bogus"), evaluate.EvaluationError,
         ("unknown benchmark 'bogus'",), "checked before the model is loaded"),
    Case("eval-model-int", lambda c: evaluate.evaluate(5), evaluate.EvaluationError, ("model must be",),
         "the accepted kinds of model are listed"),
    Case("eval-n-zero", lambda c: evaluate.evaluate("tiny", n=0), evaluate.EvaluationError, ("n must be",),
         "zero samples"),
    Case("eval-temperature-nan", lambda c: evaluate.evaluate("tiny", temperature=math.nan), evaluate.EvaluationError,
         ("temperature",), "nan sampling"),
    Case("eval-limit-bool", lambda c: evaluate.evaluate("tiny", limit=True), evaluate.EvaluationError, ("limit",),
         "True is not a count"),
    Case("eval-temperature-bool", lambda c: evaluate.evaluate("tiny", temperature=True), evaluate.EvaluationError,
         ("temperature",), "True would silently sample at temperature 1"),
    Case("eval-pass-at-k-c-too-large", lambda c: evaluate.pass_at_k(4, 5, 2), ValueError, ("correct samples",),
         "c <= n"),
    Case("eval-pass-at-k-float", lambda c: evaluate.pass_at_k(4.0, 1, 1), TypeError, ("pass@k's n", "float 4.0"),
         "binomials of integers"),
    Case("eval-interval-instances-str", lambda c: evaluate.mean_interval([0.0, 1.0], 0, instances="ab"), TypeError,
         ("instances", "str"), "a string is one key, not one per problem: its characters must not become keys"),
    Case("eval-interval-instances-short", lambda c: evaluate.mean_interval([0.0, 1.0, 1.0], 0, instances=["a"]),
         ValueError, ("one key per problem (3)", "got 1"), "a key per problem is the only pairing that means anything"),
    Case("eval-prefix-cache-mask-shape", lambda c: prefix_cache(mask_rows=1), ValueError,
         ("prompt_mask", "(3, 5)", "(1, 5)"), "one prompt's padding must not broadcast over every prompt"),
    Case("eval-prefix-cache-n-zero", lambda c: prefix_cache(n=0), ValueError, ("n must be", "0"),
         "zero samples per prompt is no cache"),
    Case("eval-prefix-cache-capacity-negative", lambda c: prefix_cache(capacity=-1), ValueError, ("capacity", "-1"),
         "a cache needs room for one token"),
    Case("eval-hf-batch-size-zero", lambda c: evaluate.HFGenerator(None, None, batch_size=0), ValueError,
         ("batch_size", ">= 1"), "0 was silently read as the default batch"),
    Case("eval-hf-share-cache-str", lambda c: evaluate.HFGenerator(None, None, share_prompt_cache="no"), TypeError,
         ("share_prompt_cache",), "'no' is truthy: it would share the cache"),
    Case("eval-load-benchmark-limit-negative", lambda c: evaluate.load_benchmark("synthetic", limit=-3), ValueError,
         ("limit", ">= 1"), "range(-3) was silently empty"),
    Case("eval-out-holds-results", lambda c: evaluate.evaluate("tiny", limit=2, out=Path(c.file("ev/results.json"))
                                                               .parent),
         evaluate.EvaluationError, ("results.json", "never overwritten"), "finished results are never replaced"),
]


# --------------------------------------------------------------------------------------------------- EXITS

def t(*extra: str):
    """The training CLI on a small run in the case's directory."""
    return lambda c: (train.main, c.run_argv(*extra))


def t_recipe(text: str | bytes, *extra: str):
    """The training CLI on a recipe file holding `text`."""
    return lambda c: (train.main, ["--config", c.file("recipe.yaml", text), "--run_dir", str(c.tmp / "run"), *extra])


def e(*argv: str):
    return lambda c: (evaluate.main, list(argv))


def b(*argv: str):
    """The batch CLI on the tiny recipe into the case's directory."""
    return lambda c: (batch.main, ["--config", TINY_RECIPE, "--out", str(c.tmp / "batch"), *argv])


def d(*argv: str):
    return lambda c: (data.main, [a.replace("TMP", str(c.tmp)) for a in argv])


def run_under_file(run: str):
    """The training CLI with --run_dir `run` below a file `occupied` in the case's directory."""
    def call(c: Ctx):
        c.file("occupied", "x")
        return train.main, c.run_argv(run=run)
    return call


def with_files(files: dict[str, str], cli, argv: list[str]):
    """`cli` on `argv` (TMP: the case's directory) after writing `files` there."""
    def call(c: Ctx):
        for name, content in files.items():
            c.file(name, content)
        return cli, [a.replace("TMP", str(c.tmp)) for a in argv]
    return call


def corrupt_checkpoint(c: Ctx):
    argv = c.run_dir(files={"status.json": '{"state": "failed"}',
                            "checkpoints/checkpoint-2/trainer_state.json": '{"global_step": 2}',
                            "checkpoints/checkpoint-2/model.safetensors": "garbage"})
    return train.main, argv


EXITS = [
    # --- training CLI (python -m sapo_core.train), in-process ---
    Case("train-gate-unknown", t("--gate", "tanh"), 2, ("gate='tanh'", "available gates"), "a typo in the gate"),
    Case("train-gate-spec-inadmissible", t("--gate", "student_t:nu=0.001"), 2, ("not admissible", "(iv)"),
         "an inadmissible spec is refused by its property before any run directory"),
    Case("train-recipe-not-yaml", t_recipe("gate: [erf\n"), 2, ("recipe.yaml", "not valid YAML"),
         "the file is named with the parser's reason"),
    Case("train-recipe-not-utf8", t_recipe("gate: \xe9rf\n".encode("latin-1")), 2, ("recipe.yaml", "not UTF-8"),
         "a binary or Latin-1 file"),
    Case("train-recipe-directory", lambda c: (train.main, ["--config", str(c.tmp)]), 2, ("is a directory",),
         "a directory is not a recipe"),
    Case("train-recipe-python-tag", t_recipe("gate: !!python/object/apply:os.system ['echo pwned']\n"), 2,
         ("not valid YAML", "python/object"), "recipes are read with the safe loader: no code runs"),
    Case("train-recipe-duplicate-key", t_recipe("gate: erf\nseed: 1\ngate: arctan\n"), 2,
         ("'gate' appears twice", "recipe.yaml"), "plain YAML keeps the last silently"),
    Case("train-recipe-empty", t_recipe(""), 2, ("recipe.yaml", "is empty"), "an empty file is not the defaults"),
    Case("train-recipe-comment-only", t_recipe("# gate: erf\n"), 2, ("is empty",), "comments only is empty too"),
    Case("train-recipe-list", t_recipe("- gate\n- erf\n"), 2, ("mapping",), "a recipe is key: value"),
    Case("train-recipe-typo", t_recipe("gat: erf\n"), 2, ("'gat'", "did you mean 'gate'"),
         "an unknown key is refused with the closest name"),
    Case("train-recipe-malformed-float", t_recipe("learning_rate: fast\n"), 2, ("learning_rate", "'fast'"),
         "recipe values are converted like flags"),
    Case("train-recipe-list-for-scalar", t_recipe("learning_rate: [1, 2]\n"), 2, ("learning_rate", "list"),
         "one value expected"),
    Case("train-recipe-gate-mapping", t_recipe("gate: {name: erf}\n"), 2, ("gate",),
         "a mapping is not a gate name"),
    Case("train-recipe-bool-maybe", t_recipe("model: tiny\nuse_cpu: maybe\n"), 2, ("use_cpu", "maybe"),
         "a bool key needs a bool"),
    Case("train-recipe-data-seed-null", t_recipe(f"{(REPO_ROOT / TINY_RECIPE).read_text()}\ndata_seed: null\n"
                                                 .replace("data_seed: 0\n", ""), "--train_size", "64"), 2,
         ("data_seed",), "data_seed: null passes the config but is no seed for the task"),
    Case("train-malformed-value", t("--learning_rate", "abc"), 2, ("learning_rate", "'abc'"),
         "a flag's value is converted by name"),
    Case("train-scheduler-unknown", t("--lr_scheduler_type", "bogus"), 2, ("lr_scheduler_type", "'bogus'"),
         "a scheduler name TRL does not know"),
    Case("train-batch-not-divisible", t("--per_device_train_batch_size", "60"), 2,
         ("divisible by num_generations",), "groups must fill the batch"),
    Case("train-num-generations-one", t("--num_generations", "1"), 2, ("num_generations",),
         "group-relative advantages need 2"),
    Case("train-unknown-flag", t("--learnin_rate", "1e-4"), 2, ("'learnin_rate'", "did you mean 'learning_rate'"),
         "a typo in a flag"),
    Case("train-flag-twice", t("--gate", "erf", "--gate", "arctan"), 2, ("--gate given twice",),
         "argparse would keep the last silently"),
    Case("train-output-dir", t("--output_dir", "x"), 2, ("--output_dir", "--run_dir"),
         "the checkpoints live in the run directory"),
    Case("train-config-needs-file", lambda c: (train.main, ["--config"]), 2, ("--config needs a file",),
         "a dangling flag"),
    Case("train-epsilon-one", t("--epsilon", "1.0"), 2, ("epsilon=1.0", "[0, 1)"),
         "epsilon must lie in [0, 1)"),
    Case("train-epsilon-negative", t("--epsilon", "-0.1"), 2, ("epsilon=-0.1",), "a negative trust region"),
    Case("train-epsilon-high-nan", t("--epsilon_high", "nan"), 2, ("epsilon_high=nan",), "nan trust region"),
    Case("train-log-ratio-clamp-large", t("--log_ratio_clamp", "100"), 2, ("log_ratio_clamp", "88.72"),
         "exp(100) overflows float32"),
    Case("train-log-ratio-clamp-zero", t("--log_ratio_clamp", "0"), 2, ("log_ratio_clamp",),
         "every ratio pinned at 1"),
    Case("train-tau-zero", t("--sapo_temperature_pos", "0"), 2, ("sapo_temperature_pos",), "f_tau divides by tau"),
    Case("train-tau-inf", t("--sapo_temperature_neg", "inf"), 2, ("sapo_temperature_neg",), "tau must be finite"),
    Case("train-tau-float32-overflow", t("--sapo_temperature_pos", "1e39"), 2, ("sapo_temperature_pos",),
         "1e39 is inf in float32"),
    Case("train-tau-schedule-unknown", t("--tau_schedule", "step"), 2, ("tau_schedule", "'step'", "cosine"),
         "schedules are a closed set"),
    Case("train-tau-schedule-no-end", t("--tau_schedule", "linear", "--tau_end_pos", "2"), 2,
         ("tau_schedule=linear", "tau_end_neg"), "a schedule needs both end values"),
    Case("train-tau-end-without-schedule", t("--tau_end_pos", "2", "--tau_end_neg", "2"), 2,
         ("tau_end_pos/tau_end_neg", "tau_schedule=constant"), "an end value a constant schedule would ignore"),
    Case("train-tau-end-zero", t("--tau_schedule", "cosine", "--tau_end_pos", "0", "--tau_end_neg", "1"), 2,
         ("tau_end_pos", "> 0", "0.0"), "f_tau divides by tau"),
    Case("train-tau-end-nan", t("--tau_schedule", "cosine", "--tau_end_pos", "1", "--tau_end_neg", "nan"), 2,
         ("tau_end_neg", "nan"), "nan is no temperature"),
    Case("train-tau-target-one", t("--tau_target_eur", "1"), 2, ("tau_target_eur=1.0", "(0, 1)"),
         "EUR 1 is reached only on policy, at any tau: the controller would push tau to its bound"),
    Case("train-tau-target-nan", t("--tau_target_eur", "nan"), 2, ("tau_target_eur=nan",), "nan is no target"),
    Case("train-tau-target-with-schedule", t("--tau_schedule", "linear", "--tau_end_pos", "2", "--tau_end_neg", "2",
                                             "--tau_target_eur", "0.9"), 2, ("tau_target_eur", "choose one"),
         "a schedule and the controller would both set tau"),
    Case("train-tau-controller-without-target", t("--tau_controller_rate", "2"), 2,
         ("tau_controller_rate", "tau_target_eur"), "a controller setting with the controller off would be ignored"),
    Case("train-tau-rate-zero", t("--tau_target_eur", "0.9", "--tau_controller_rate", "0"), 2,
         ("tau_controller_rate", "> 0", "0.0"), "a controller that never moves"),
    Case("train-tau-bounds-inverted", t("--tau_target_eur", "0.9", "--tau_min", "5", "--tau_max", "2"), 2,
         ("tau_min=5.0", "tau_max=2.0"), "an empty range"),
    Case("train-tau-bounds-exclude-start", t("--tau_target_eur", "0.9", "--tau_max", "1.02"), 2,
         ("sapo_temperature_pos/neg=1.0/1.05", "[tau_min, tau_max]"), "the run would start outside its bounds"),
    Case("train-tau-target-clip", t("--gate", "clip", "--tau_target_eur", "0.9"), 2, ("gate=clip",),
         "hard clipping has no temperature to control"),
    Case("train-tau-schedule-clip", t("--gate", "clip", "--tau_schedule", "cosine"), 2, ("gate=clip",),
         "hard clipping has no temperature to schedule"),
    Case("train-tau-target-method", t("--gate", "cispo", "--tau_target_eur", "0.9"), 2, ("gate=cispo", "has none"),
         "a trust-region method (method §2.8) has no temperature either"),
    Case("train-tau-target-logging-steps", t("--tau_target_eur", "0.9", "--logging_steps", "2"), 2,
         ("tau_target_eur", "logging_steps 1"), "EUR is computed on logged steps only"),
    Case("train-tau-convention-unknown", t("--tau_convention", "matched"), 2, ("tau_convention", "width_matched"),
         "conventions are a closed set"),
    Case("train-aggregation-unknown", t("--aggregation", "mean"), 2, ("aggregation", "token_mean"),
         "aggregations are a closed set"),
    Case("train-reward-weights-nan", t("--reward_weights", "1", "nan"), 2, ("reward_weights",),
         "reward weights must be finite"),
    Case("train-reward-weights-count", t("--reward_weights", "1"), 2, ("reward_weights",),
         "two rewards (format, correctness) need two weights"),
    Case("train-seed-negative", t("--seed", "-1"), 2, ("seed=-1",), "numpy's seed range"),
    Case("train-train-size-zero", t("--train_size", "0"), 2, ("train_size",), "an empty task"),
    Case("train-dataset-unknown", t("--dataset", "imagenet"), 2, ("--dataset", "'imagenet'"),
         "datasets are a closed set"),
    Case("train-format-reward-unknown", t("--format_reward", "fancy"), 2, ("--format_reward", "'fancy'", "graded",
                                                                          "binary"),
         "format rewards are a closed set: graded (eq. 10) or binary"),
    Case("train-recipe-format-reward-unknown", t_recipe("format_reward: full\n"), 2,
         ("format_reward", "'full'", "graded, binary"), "a recipe's format_reward is checked as the flag is"),
    Case("train-max-prompt-length-zero", t("--max_prompt_length", "0"), 2, ("max_prompt_length=0", ">= 1"),
         "a prompt limit of 0 would drop every prompt"),
    Case("train-max-prompt-length-negative", t("--max_prompt_length", "-5"), 2, ("max_prompt_length=-5",),
         "a negative prompt limit is meaningless"),
    Case("train-heldout-eval-steps-fraction", t("--heldout_eval_steps", "1.5"), 2, ("--heldout_eval_steps", "'1.5'"),
         "an interval of steps is an integer"),
    Case("train-heldout-eval-steps-negative", t("--heldout_eval_steps", "-2"), 2, ("heldout_eval_steps",),
         "a negative interval is meaningless (0 is off)"),
    Case("train-dry-run-gpu-memory-nan", t("--dry_run", "--gpu_memory_gb", "nan"), 2, ("gpu_memory_gb=nan",),
         "a NaN GPU size would make every comparison false"),
    Case("train-dry-run-gpu-memory-negative", t("--dry_run", "--gpu_memory_gb", "-1"), 2, ("gpu_memory_gb=-1",),
         "a GPU has a positive memory"),
    Case("train-gpu-memory-without-dry-run", t("--gpu_memory_gb", "80"), 2, ("--dry_run only",),
         "given at all (even the default value) it is a dry-run flag: a training run must not ignore it silently"),
    Case("train-dry-run-accelerate-config-directory", t("--dry_run", "--accelerate_config", "configs"), 2,
         ("accelerate_config='configs'", "not a file"), "a directory is not an accelerate config"),
    Case("train-gate-spec-nan-parameter", t("--gate", "student_t:nu=nan"), 2, ("student_t", "finite nu > 0"),
         "a family parameter is checked like the function's argument"),
    Case("train-gate-spec-missing-module", t("--gate", "nosuchmod:g"), 2, ("nosuchmod", "cannot be imported"),
         "an import-path spec names its module"),
    Case("train-run-dir-empty", lambda c: (train.main, ["--config", TINY_RECIPE, "--run_dir", ""]), 2,
         ("run_dir is empty",), "an unset shell variable must not mean the current directory"),
    Case("train-model-missing", t("--model", "/nonexistent/model"), 2, ("model='/nonexistent/model'",),
         "a local checkpoint that does not exist"),
    Case("train-data-dir-missing", lambda c: (train.main, c.run_argv("--dataset", "gsm8k", "--data_dir",
                                                                     str(c.tmp / "nodata"))),
         2, ("nodata/gsm8k/train.jsonl", "download"), "the missing data file is named with how to fill it"),
    Case("train-vllm-missing", t("--use_vllm", "true"), 2, ("vllm",),
         "use_vllm without vLLM installed"),
    Case("train-reward-workers-zero", lambda c: (train.main, env(c, "SAPO_REWARD_WORKERS", "0").run_argv()), 2,
         ("SAPO_REWARD_WORKERS",), "SAPO_REWARD_WORKERS=0"),
    Case("train-grad-accumulation-zero", t("--gradient_accumulation_steps", "0"), 2,
         ("gradient_accumulation_steps",), "no optimizer step"),
    Case("train-batch-size-zero", t("--per_device_train_batch_size", "0"), 2, ("per_device_train_batch_size",),
         "an empty batch"),
    Case("train-max-completion-zero", t("--max_completion_length", "0"), 2, ("max_completion_length",),
         "completions of no tokens"),
    Case("train-learning-rate-nan", t("--learning_rate", "nan"), 2, ("learning_rate",), "nan weights after step 1"),
    Case("train-temperature-negative", t("--temperature", "-1"), 2, ("temperature",), "sampling at T < 0"),
    Case("train-importance-level-unknown", t("--importance_sampling_level", "word"), 2,
         ("importance_sampling_level",), "levels are token or sequence"),
    Case("train-heldout-n-zero", t("--heldout_n", "0"), 2, ("heldout_n",), "the held-out check needs a sample"),
    Case("train-heldout-temperature-nan", t("--heldout_temperature", "nan"), 2, ("heldout_temperature",),
         "nan is no sampling temperature"),
    Case("train-heldout-benchmark-unknown", t("--heldout_benchmarks", "synthetic,bogus"), 2, ("'bogus'",),
         "an unknown held-out benchmark is named before training"),
    Case("train-heldout-greedy-not-bool", t("--heldout_greedy", "sometimes"), 2, ("heldout_greedy",),
         "a boolean flag takes true or false"),
    Case("train-report-to-not-installed", t("--report_to", "wandb"), 2, ("report_to", "'wandb'", "not installed"),
         "TRL would fail in its start-up, after the run directory was made"),
    Case("train-recipe-reward-weights-number", t_recipe("reward_weights: 1.0\n"), 2, ("reward_weights", "a list"),
         "a number where a list belongs, not an uncaught TypeError"),
    Case("train-resume-checkpoints-a-file", lambda c: (train.main, checkpoints_a_file(c)), 2,
         ("checkpoints", "is a file"), "not a traceback after metrics.jsonl was cut and the run marked failed"),
    # --- training CLI: the run directory ---
    Case("train-run-dir-is-file", run_under_file("occupied"), 2, ("occupied", "not a directory"),
         "a file where the run directory should be"),
    Case("train-run-dir-uncreatable", run_under_file("occupied/run"), 2, ("occupied/run",),
         "a run directory that cannot be created (its parent is a file)"),
    Case("train-run-dir-finished", lambda c: (train.main, c.run_dir(files={"status.json": '{"state": "finished"}'},
                                                                    resume_config=False)[:-1]),
         2, ("finished run", "never overwritten"), "finished work is never overwritten"),
    Case("train-run-dir-finished-resume", lambda c: (train.main, c.run_dir(files={"status.json":
                                                                                   '{"state": "finished"}'})),
         2, ("finished run",), "--resume does not reopen a finished run"),
    Case("train-run-dir-unfinished", lambda c: (train.main, c.run_dir(files={"metrics.jsonl": ""},
                                                                      resume_config=False)[:-1]),
         2, ("unfinished run", "--resume"), "an unfinished run is continued only on request"),
    Case("train-resume-changed-config", lambda c: (train.main, [*c.run_dir(files={"metrics.jsonl": ""}), "--gate",
                                                                "arctan"]),
         2, ("different config", "gate"), "a resumed run is the same run"),
    Case("train-resume-no-config", lambda c: (train.main, c.run_dir(files={"metrics.jsonl": ""},
                                                                    resume_config=False)),
         2, ("no config.yaml",), "without the saved config the run cannot be checked"),
    Case("train-resume-corrupt-metrics", lambda c: (train.main, c.run_dir(files={"metrics.jsonl": "not json\n{}\n"})),
         2, ("metrics.jsonl", "line 1"), "a corrupt metrics line is named, and nothing is truncated"),
    Case("train-resume-corrupt-status", lambda c: (train.main, c.run_dir(files={"status.json": "{not json"})),
         2, ("status.json", "cannot be read"), "a damaged status file is named"),
    Case("train-resume-status-list", lambda c: (train.main, c.run_dir(files={"status.json": "[1, 2]"})),
         2, ("status.json", "mapping"), "a status that is not a mapping"),
    Case("train-resume-corrupt-checkpoint", corrupt_checkpoint, 2, ("checkpoint-2",),
         "a corrupt checkpoint is named, not a safetensors traceback"),
    # --- evaluation CLI ---
    Case("evalcli-benchmark-unknown", e("--benchmarks", "bogus"), 2, ("unknown benchmark 'bogus'",),
         "benchmarks are a closed set"),
    Case("evalcli-benchmark-empty", e("--benchmarks", ""), 2, ("unknown benchmark ''",), "an empty list"),
    Case("evalcli-benchmark-twice", e("--benchmarks", "synthetic,synthetic"), 2, ("listed twice",),
         "a benchmark evaluated twice would be written twice"),
    Case("evalcli-n-zero", e("--n", "0"), 2, ("n must be",), "zero samples"),
    Case("evalcli-n-not-int", e("--n", "abc"), 2, ("--n", "'abc'"), "a malformed value"),
    Case("evalcli-temperature-negative", e("--temperature", "-1"), 2, ("temperature",), "T < 0"),
    Case("evalcli-greedy-many", e("--temperature", "0", "--n", "4"), 2, ("greedy", "n must be 1"),
         "greedy decoding gives one completion"),
    Case("evalcli-top-p-zero", e("--top_p", "0"), 2, ("top_p",), "an empty nucleus"),
    Case("evalcli-backend-unknown", e("--backend", "foo"), 2, ("unknown backend 'foo'",), "backends: auto, hf, vllm"),
    Case("evalcli-backend-vllm-missing", e("--backend", "vllm"), 2, ("vllm", "pip install"),
         "use_vllm without vLLM: the extra is named"),
    Case("evalcli-model-missing", e("--model", "/nonexistent/model"), 2, ("/nonexistent/model",),
         "the path is named"),
    Case("evalcli-seed-negative", e("--seed", "-1"), 2, ("seed",), "seeds are >= 0"),
    Case("evalcli-limit-zero", e("--limit", "0"), 2, ("limit",), "no problems"),
    Case("evalcli-unknown-flag", e("--bogus", "1"), 2, ("--bogus",), "an unknown flag is named"),
    Case("evalcli-config-missing", lambda c: (evaluate.main, ["--config", str(c.tmp / "no.yaml")]), 2, ("no.yaml",),
         "the missing file is named"),
    Case("evalcli-regrade-not-eval-dir", lambda c: (evaluate.main, ["--regrade", str(c.tmp)]), 2,
         ("not an evaluation directory",), "a directory without results"),
    Case("evalcli-out-holds-results", with_files({"ev/results.json": "{}"}, evaluate.main,
                                                 ["--limit", "2", "--out", "TMP/ev"]), 2,
         ("results.json", "never overwritten"),
         "an evaluation directory is never overwritten"),
    Case("evalcli-data-dir-missing", lambda c: (evaluate.main, ["--benchmarks", "gsm8k", "--data_dir",
                                                                str(c.tmp / "nodata"), "--out", str(c.tmp / "ev")]),
         2, ("nodata/gsm8k/test.jsonl",), "the missing data file is named"),
    Case("evalcli-operand-zero", e("--synthetic_max_operand", "0"), 2, ("max_operand",), "no operand to draw"),
    Case("evalcli-eval-size-zero", e("--eval_size", "0"), 2, ("eval_size",), "the flag given is named"),
    Case("evalcli-log-level-unknown", e("--log_level", "LOUD"), 2, ("log_level",), "an unknown logging level"),
    # --- batch CLI (unknown flags are training flags) ---
    Case("batch-gates-empty", b("--gates", ""), 2, ("gates is empty",), "no runs"),
    Case("batch-gates-twice", b("--gates", "erf,erf"), 2, ("names an item twice",), "one run directory per gate"),
    Case("batch-gate-unknown", b("--gates", "tanh"), 2, ("gate='tanh'",), "checked before any run starts"),
    Case("batch-seeds-not-int", b("--seeds", "a,b"), 2, ("seeds", "integers"), "seeds are integers"),
    Case("batch-seed-negative", b("--seeds", "-1"), 2, ("seed=-1",), "the training config checks it"),
    Case("batch-jobs-zero", b("--jobs", "0"), 2, ("jobs=0",), "no worker"),
    Case("batch-eval-n-zero", b("--eval_n", "0"), 2, ("eval_n",), "no evaluation samples"),
    Case("batch-timeout-zero", b("--timeout_min", "0"), 2, ("timeout_min",), "every run would time out"),
    Case("batch-width-matched-not-an-arm", b("--gates", "erf", "--width_matched_arms", "arctan"), 2,
         ("width_matched_arms", "arctan"), "an arm that --gates does not run cannot also run width-matched"),
    Case("batch-width-matched-method", b("--gates", "clip,erf", "--width_matched_arms", "clip"), 2,
         ("width_matched_arms", "clip"), "a method has no temperature to match"),
    Case("batch-sweep-unknown-key", b("--sweep", "learnin_rate=1e-4"), 2, ("learnin_rate",), "a typo in a swept key"),
    Case("batch-sweep-nan", b("--sweep", "learning_rate=nan"), 2, ("learning_rate", "nan"), "NaN is not a rate"),
    Case("batch-sweep-negative", b("--sweep", "learning_rate=1e-4,-1"), 2, ("learning_rate",),
         "every point is checked before the batch starts"),
    Case("batch-sweep-empty", b("--sweep", ""), 2, ("sweep",), "an empty axis is no axis"),
    Case("batch-sweep-own-axis", b("--sweep", "seed=0,1"), 2, ("--seeds",), "seeds are the batch's own axis"),
    Case("train-cispo-eps-nan", t("--gate", "cispo:eps_max=nan"), 2, ("eps_max",), "a NaN bound clamps nothing"),
    Case("train-delta-inside-clip", t("--gate", "delta:delta=1.1"), 2, ("delta",),
         "two-sided clipping needs delta > 1 + epsilon_high"),
    Case("train-method-unknown-parameter", t("--gate", "cispo:foo=1"), 2, ("foo",), "a typo in a method parameter"),
    Case("study-jobs-zero", lambda c: (study.main, ["--out", str(c.tmp / "s"), "--jobs", "0"]), 2, ("jobs",),
         "no worker"),
    Case("trust-region-path-missing", lambda c: (trust_region.main, ["--verdicts", str(c.tmp / "none.md")]), 2,
         ("no such file", "none.md"), "nothing to write the table into"),
    Case("trust-region-path-without-block", lambda c: (trust_region.main, [c.file("plain.md", "no table here\n")]),
         2, ("method-table:start",), "a file without the generated block is not overwritten"),
    Case("study-max-steps-negative", lambda c: (study.main, ["--out", str(c.tmp / "s"), "--max_steps", "-1"]), 2,
         ("--max_steps -1", ">= 1"), "-1 would train by epochs, not the steps the flag promises"),
    Case("demo-max-steps-zero", lambda c: (demo.main, ["--out", str(c.tmp / "d"), "--max_steps", "0"]), 2,
         ("--max_steps 0", ">= 1"), "no training at all is no demo"),
    Case("study-seeds-empty", lambda c: (study.main, ["--out", str(c.tmp / "s"), "--seeds", ""]), 2,
         ("seeds=''", "integers"), "no runs"),
    Case("study-out-is-a-file", lambda c: (study.main, ["--out", c.file("taken")]), 2, ("exists",),
         "a study never writes into an existing path"),
    Case("batch-executor-unknown", b("--executor", "cloud"), 2, ("--executor", "'cloud'"), "local or slurm"),
    Case("batch-training-flag-unknown", b("--bogus_flag", "1"), 2, ("'bogus_flag'",),
         "an unknown flag is refused as a training flag, by name"),
    Case("batch-tau-convention-unknown", b("--gates", "erf", "--tau_conventions", "bogus"), 2, ("tau_convention",),
         "the training config checks it"),
    Case("batch-config-missing", lambda c: (batch.main, ["--config", str(c.tmp / "no.yaml"), "--out",
                                                         str(c.tmp / "batch")]),
         2, ("no.yaml", "does not exist"), "the recipe is named"),
    Case("batch-config-required", lambda c: (batch.main, ["--out", str(c.tmp / "batch")]), 2, ("--config",),
         "the recipe is required"),
    Case("batch-out-empty", lambda c: (batch.main, ["--config", TINY_RECIPE, "--out", ""]), 2, ("out is empty",),
         "an unset shell variable"),
    Case("batch-other-settings", with_files({"batch/batch.json": '{"settings": {"gates": "clip"}, "runs": []}'},
                                            batch.main, ["--config", TINY_RECIPE, "--out", "TMP/batch"]), 2,
         ("other settings",), "a batch directory refuses a command with other settings"),
    Case("batch-second-gate-unknown", b("--gates", "sigmoid,tanh"), 2, ("tanh",),
         "every gate is checked before anything starts"),
    Case("batch-clip-only-other-convention", b("--gates", "clip", "--tau_conventions", "width_matched"), 2,
         ("clip",), "no run is planned: say so"),
    Case("batch-eval-temperature-negative", b("--gates", "erf", "--seeds", "0", "--eval_temperature", "-1"), 2,
         ("eval_temperature",), "checked before runs start"),
    Case("batch-eval-benchmark-unknown", b("--gates", "erf", "--seeds", "0", "--eval_benchmarks", "bogus"), 2,
         ("bogus",), "checked before runs start"),
    Case("batch-eval-limit-zero", b("--gates", "erf", "--seeds", "0", "--eval_limit", "0"), 2, ("eval_limit",),
         "checked before runs start"),
    Case("batch-accelerate-config-missing", b("--gates", "erf", "--seeds", "0", "--accelerate_config",
                                              "/nonexistent/zero3.yaml"), 2, ("/nonexistent/zero3.yaml",),
         "a missing accelerate config is named before runs start"),
    Case("batch-flag-twice", b("--gates", "erf", "--gates", "arctan"), 2, ("--gates",),
         "the training CLI refuses a repeated flag; the batch CLI should too"),
    # --- data CLI (python -m sapo_core.data) ---
    Case("datacli-offline", lambda c: (data.main, ["download", "--out", str(hub_offline(c).tmp / "dl"), "--only",
                                                   "math500"]),
         2, ("MATH-500", "could not be loaded", "SAPO_DATA_DIR"), "the data download without network"),
    Case("datacli-unknown-source", d("download", "--out", "TMP/dl", "--only", "bogus"), 2, ("--only", "'bogus'"),
         "one line, not argparse's usage block"),
    Case("datacli-no-command", d(), 2, ("required", "command"), "the subcommand is required"),
    Case("datacli-no-out", d("download"), 2, ("--out",), "the target is required"),
    Case("datacli-out-is-file", lambda c: (data.main, ["download", "--out", c.file("occupied", "x")]), 2,
         ("occupied", "not a directory"), "refused before the hub is asked"),
]


# ------------------------------------------------------------------------------------------------ ACCEPTED

def student_t_one(r) -> bool:
    return r.halfmax == 1.0 and r.tail == "polynomial" and torch.allclose(r.weight(x3()), cauchy(x3() - 1.0))


ACCEPTED = [
    Case("ok-student-t-one", lambda c: gates.student_t(1), student_t_one, (),
         "nu = 1 is the arctan kernel: half-max 1, weight 1/(1 + z^2)"),
    Case("ok-student-t-numpy", lambda c: gates.student_t(__import__("numpy").float64(3.0)),
         lambda r: r.name == "student_t(nu=3)", (), "a numpy scalar is a real number"),
    Case("ok-check-admissible-name", lambda c: gates.check_admissible("softsign"), lambda r: r.passed, (),
         "check_admissible accepts a gate name"),
    Case("ok-check-admissible-nan-safe", lambda c: gates.check_admissible(nan_gate()),
         lambda r: not r.passed and "(i)" in r.failed, (), "a nan g fails (i) instead of passing every comparison"),
    Case("ok-gate-tensor-tau", lambda c: erf().value(x3(), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)),
         lambda r: r.shape == (3,) and bool(torch.isfinite(r).all()), (), "a per-element tau tensor"),
    Case("ok-width-matched-tensor", lambda c: gates.width_matched_tau("arctan", torch.tensor([1.0, 2.0])),
         lambda r: torch.allclose(r, torch.tensor([1.0, 2.0]) / gates.get_gate("sigmoid").halfmax), (),
         "width matching of a tensor tau"),
    Case("ok-gate-passthrough", lambda c: gates.get_gate(erf()), lambda r: r is erf(), (), "a Gate passes through"),
    Case("ok-clip-weight-boundary", lambda c: gates.clip_weight(torch.tensor([0.8, 1.2]), 0.0),
         lambda r: r.tolist() == [1.0, 1.0], (), "A = 0 takes the A < 0 side, boundaries included"),
    Case("ok-loss-nan-unmasked-visible", lambda c: with_nan(at_masked=False),
         lambda r: math.isnan(r[0].item()) and r[1]["tokens/nonfinite_count"] == 1.0, (),
         "a nan at an unmasked token stays visible: nan loss and a count"),
    Case("ok-loss-nan-masked-ignored", lambda c: with_nan(at_masked=True),
         lambda r: math.isfinite(r[0].item()) and r[1]["tokens/nonfinite_count"] == 0.0, (),
         "a nan under the mask is padding"),
    Case("ok-loss-inf-masked", lambda c: policy(logps=torch.tensor([[-1.0, -math.inf, -0.5], [-0.3, -1.2, -2.0]]),
                                                mask=torch.tensor([[1, 0, 1], [1, 1, 1]])),
         lambda r: math.isfinite(r[0].item()), (), "-inf log-probs of padding are set aside"),
    Case("ok-loss-bool-mask", lambda c: (policy(mask=torch.ones(2, 3, dtype=torch.bool))[0], policy()[0]),
         lambda r: torch.equal(r[0], r[1]), (), "a bool mask equals the float 0/1 mask"),
    Case("ok-loss-nan-advantage-visible", lambda c: policy(advantages=torch.tensor([math.nan, 1.0])),
         lambda r: math.isnan(r[0].item()), (), "a nan advantage is not hidden"),
    Case("ok-loss-user-gate", lambda c: policy(gate=gates.make_gate("cauchy_user", cauchy)),
         lambda r: math.isfinite(r[0].item()), (), "a Gate object is a gate"),
    Case("ok-loss-no-completions", lambda c: [policy(logps=torch.zeros(0, 3), old_logps=torch.zeros(0, 3),
                                                     advantages=torch.zeros(0), mask=torch.zeros(0, 3),
                                                     aggregation=a, max_completion_length=3)
                                              for a in loss.AGGREGATIONS],
         lambda r: all(x[0].item() == 0.0 and x[1]["tokens/count"] == 0.0 for x in r), (),
         "B = 0 completions: loss 0 and count 0, as an all-masked batch (nan before)"),
    Case("ok-loss-dr-grpo-exact-length", lambda c: policy(aggregation="seq_mean_token_sum_norm",
                                                          max_completion_length=3),
         lambda r: math.isfinite(r[0].item()), (), "L equal to the sequence length"),
    Case("ok-reward-none-gold", lambda c: rewards.correctness_reward(["<answer> 1 </answer>"], answer=[None]),
         lambda r: r == [None], (), "no gold: the item cannot be judged (None), the one meaning of None"),
    Case("ok-reward-nan-gold", lambda c: rewards.correctness_reward(["<answer> 1 </answer>"], answer=[math.nan]),
         lambda r: r == [None], (), "pandas' missing value is no gold"),
    Case("ok-reward-int-gold", lambda c: rewards.correctness_reward(["<answer> 025 </answer>"], answer=[25]),
         lambda r: r == [1.0], (), "AIME golds are ints; 025 is 25"),
    Case("ok-reward-conversational", lambda c: rewards.format_reward(
        [[{"role": "assistant", "content": "<think> a </think> <answer> 1 </answer>"}]]),
         lambda r: r == [1.0], (), "TRL's conversational completions"),
    Case("ok-reward-empty-batch", lambda c: rewards.format_reward([]), lambda r: r == [], (), "an empty batch"),
    Case("ok-reward-tuple-batch", lambda c: rewards.format_reward(("x",)), lambda r: r == [0.0], (),
         "any sequence of completions"),
    Case("ok-normalize-gold-gsm8k", lambda c: rewards.normalize_gold("so 1,000\n#### 1,000"),
         lambda r: r == "1000", (), "GSM8K's final answer without separators"),
    Case("ok-data-int-answer", lambda c: data.aime24(c.data("aime24", "test", [{"problem": "p", "answer": 25,
                                                                               "id": 60}])),
         lambda r: r[0]["answer"] == "25" and r[0]["id"] == "aime24-60", (), "int answers and ids become strings"),
    Case("ok-data-blank-lines", lambda c: data.math500(c.data("math500", "test", [math500("a"), "", "  ",
                                                                                  math500("b")])),
         lambda r: len(r) == 2, (), "blank lines in a JSONL file are skipped"),
    Case("ok-data-gsm8k-thousands",
         lambda c: data.gsm8k("test", c.data("gsm8k", "test", [{"question": "q", "answer": "x\n#### 1,000"}])),
         lambda r: r[0]["answer"] == "1000" and r[0]["id"] == "gsm8k-test-0", (), "GSM8K's thousands separator"),
    Case("ok-data-env-dir", math500_from_env, lambda r: r[0]["id"] == "math500-e", (),
         "SAPO_DATA_DIR stands in for data_dir"),
    Case("ok-synthetic-deterministic", lambda c: (data.synthetic_arithmetic(20, seed=3),
                                                  data.synthetic_arithmetic(20, seed=3)),
         lambda r: r[0]["id"] == r[1]["id"] and len(set(r[0]["id"])) == 20 and r[0]["answer"] == r[1]["answer"], (),
         "a seed gives the same unique ids and answers"),
    Case("ok-prompt", lambda c: prompts.make_prompt("What is 1 + 1?"),
         lambda r: [m["role"] for m in r] == ["system", "user"], (), "system + user messages"),
    Case("ok-plot-width-matched", lambda c: plots.gate_figure(("erf", "arctan"), tau=2.0,
                                                              tau_convention="width_matched", n_points=11),
         lambda r: isinstance(r, matplotlib.figure.Figure), (), "a tuple of names and the other convention"),
    Case("ok-plot-gate-object", lambda c: plots.gate_figure([erf()], n_points=11),
         lambda r: isinstance(r, matplotlib.figure.Figure), (), "a Gate object is drawn like a name"),
    Case("ok-plot-save-same-content", same_figure_twice, lambda r: [p.suffix for p in r] == [".png", ".pdf"], (),
         "re-saving identical content is a no-op, not a refusal"),
    Case("ok-plot-curves-missing-metric", lambda c: plots.training_curves([{"step": 1, "reward": 0.5}]),
         lambda r: isinstance(r, matplotlib.figure.Figure), (), "a run that lacks some metrics draws what it has"),
    Case("ok-config-width-matched", lambda c: parse_args(c.run_argv("--gate", "erf", "--tau_convention",
                                                                    "width_matched")).training.gate_taus(),
         lambda r: r[0] == pytest.approx(0.6679, abs=1e-3), (), "tau as run is width-matched"),
    Case("ok-config-clip", lambda c: parse_args(c.run_argv("--gate", "clip")).training.loss_type,
         lambda r: r == "grpo", (), "clip is GRPO's hard clipping, not a registered gate"),
    Case("ok-config-repo-relative", recipe_from_elsewhere, lambda r: Path(r) == REPO_ROOT / TINY_RECIPE, (),
         "a recipe path relative to the repository root works from any directory"),
    Case("ok-tiny-config-default", lambda c: tiny.TinyBuildConfig(), lambda r: r.hidden_size % r.num_heads == 0, (),
         "the committed build's settings pass their own checks"),
]


# ----------------------------------------------------------------------------------------------- the tests


@pytest.fixture
def ctx(tmp_path, monkeypatch) -> Ctx:
    monkeypatch.setenv("SAPO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SAPO_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.delenv("SAPO_REWARD_WORKERS", raising=False)
    monkeypatch.delenv("SAPO_DATA_DIR", raising=False)
    return Ctx(tmp_path, monkeypatch)


@pytest.fixture
def no_work(monkeypatch):
    """Every place where a CLI starts real work raises WorkStarted: a refusal must come before it."""
    import trl

    def started(*args, **kwargs):
        raise WorkStarted("the command got past its checks and started working")

    monkeypatch.setattr(trl.GRPOTrainer, "_prepare_inputs", started)   # the first training step
    monkeypatch.setattr(evaluate.HFGenerator, "generate", started)     # any evaluation, train's held-out check too
    monkeypatch.setattr(evaluate, "make_generator", started)           # an evaluation loading its model
    monkeypatch.setattr(tiny, "greedy_accuracy", started)              # the tiny model's own accuracy check
    monkeypatch.setattr(batch, "run_one", started)                     # a batch's run


def params(cases: list[Case]):
    return [pytest.param(case, id=case.id, marks=case.marks) for case in cases]


def _named(message: str, words: tuple[str, ...]) -> None:
    missing = [w for w in words if w.lower() not in message.lower()]
    assert not missing, f"message does not name {missing}: {message!r}"


@pytest.mark.parametrize("case", params(REFUSED))
def test_function_refuses(case: Case, ctx: Ctx, no_work):
    with pytest.raises(case.expect) as info:
        case.call(ctx)
    assert not isinstance(info.value, (AttributeError, KeyError, IndexError))
    _named(str(info.value), case.words)


@pytest.mark.parametrize("case", params(EXITS))
def test_cli_exits_2_with_one_line(case: Case, ctx: Ctx, no_work, capsys):
    main, argv = case.call(ctx)
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == case.expect, f"exit status {status}; stderr: {err[-2000:]}"
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("error: "), f"last stderr line: {lines[-1:]}"
    assert sum(line.startswith("error: ") for line in lines) == 1
    _named(lines[-1], case.words)


@pytest.mark.parametrize("case", params(ACCEPTED))
def test_accepted_with_check(case: Case, ctx: Ctx, no_work):
    result = case.call(ctx)
    assert case.expect(result), f"unexpected result: {result!r:.500}"


# --- a refused or failed resume, and a refused command on a finished run, change no file of the run ---------------


def resumable_run(c: Ctx) -> list[str]:
    """A fabricated interrupted run (3 logged steps, a checkpoint at step 2, an earlier owner); returns the
    arguments that resume it."""
    from safetensors.torch import save_file

    rows = "".join(json.dumps({"step": step, "loss": 0.1 * step}) + "\n" for step in (1, 2, 3))
    argv = c.run_dir(files={"status.json": '{"state": "interrupted", "error": "KeyboardInterrupt: x"}',
                            "provenance.json": '{"gate": "sigmoid", "resumed_from": null}', "metrics.jsonl": rows,
                            "summary.base.json": "{}", "owner.json": '{"pid": 1, "host": "h", "started": "then"}',
                            ".lock": "", "checkpoints/checkpoint-2/trainer_state.json": '{"global_step": 2}'})
    save_file({"w": torch.zeros(2)}, str(c.tmp / "run/checkpoints/checkpoint-2/model.safetensors"))
    return argv


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Fault(Exception):
    """A failure injected into the resume path."""


def after(original: Callable, fault: type[BaseException] = Fault) -> Callable:
    """`original`, then a failure."""
    def step(*args, **kwargs):
        original(*args, **kwargs)
        raise fault(f"injected after {original.__qualname__}")
    return step


def after_write(number: int) -> Callable[[Ctx], None]:
    """A failure right after train's `number`-th file write (owner.json, config.yaml, provenance.json,
    status.json, metrics.jsonl)."""
    def inject(c: Ctx):
        count = [0]

        def counted(original):
            def write(*args, **kwargs):
                out = original(*args, **kwargs)
                count[0] += 1
                if count[0] == number:
                    raise Fault(f"injected after write {number} ({args[0]})")
                return out
            return write

        for module in (train, rundir):  # the run directory's files are written by sapo_core.rundir, the rest by train
            for name in ("write_atomic", "write_json"):
                if hasattr(module, name):
                    c.monkeypatch.setattr(module, name, counted(getattr(module, name)))
    return inject


def patch(owner, name: str, make: Callable[[Callable], Callable]) -> Callable[[Ctx], None]:
    return lambda c: c.monkeypatch.setattr(owner, name, make(getattr(owner, name)))


def _trainer():
    from sapo_core import trainer
    return trainer.GatedGRPOTrainer


RESUME_FAULTS = {
    "lock-acquired": (patch(train.RunLock, "acquire", after), Fault),
    "run-dir-checked": (patch(train, "check_run_dir", after), Fault),
    **{f"write-{n}": (after_write(n), Fault) for n in range(1, 6)},
    "trainer-built": (lambda c: patch(_trainer(), "__init__", after)(c), Fault),
    # no injection: the fabricated checkpoint's weights and trainer_state.json do not load (a real TypeError)
    "checkpoint-does-not-load": (lambda c: None, TypeError),
    "interrupted-before-step-1": (lambda c: patch(_trainer(), "train", lambda f: interrupt)(c), KeyboardInterrupt),
}


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt("injected: Ctrl-C while the checkpoint loads")


@pytest.mark.parametrize("fault", RESUME_FAULTS)
def test_a_resume_that_fails_at_any_step_leaves_every_file_as_it_was(fault, ctx: Ctx, no_work):
    inject, error = RESUME_FAULTS[fault]
    argv = resumable_run(ctx)
    before = fingerprint(ctx.tmp / "run")
    inject(ctx)
    with pytest.raises(error):
        train.main(argv)
    assert fingerprint(ctx.tmp / "run") == before


def finished_run(c: Ctx) -> list[str]:
    return c.run_dir(files={"status.json": '{"state": "finished"}', "metrics.jsonl": '{"step": 1}\n',
                            "owner.json": '{"pid": 1, "host": "h", "started": "then"}', ".lock": ""})


def checkpoints_a_file(c: Ctx) -> list[str]:
    return c.run_dir(files={"status.json": '{"state": "interrupted"}', "checkpoints": "x",
                            "metrics.jsonl": '{"step": 1}\n{"step": 2}\n'})


@pytest.mark.parametrize("make, resume, words", [
    (finished_run, True, ("finished run", "never overwritten")),
    (finished_run, False, ("finished run", "never overwritten")),
    (checkpoints_a_file, True, ("checkpoints", "is a file")),
], ids=["finished-resume", "finished-new", "checkpoints-file"])
def test_a_refused_command_changes_no_file_of_the_run(make, resume, words, ctx: Ctx, no_work, capsys):
    argv = [a for a in make(ctx) if resume or a != "--resume"]
    before = fingerprint(ctx.tmp / "run")
    assert train.main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    _named(last, words)
    assert fingerprint(ctx.tmp / "run") == before


# --- end to end: a real `python -m` process, a real missing network ------------------------------------------------

SUBPROCESS = [
    Case("proc-train-gate-unknown", lambda c: ["-m", "sapo_core.train", "--config", TINY_RECIPE, "--gate", "tanh",
                                               "--run_dir", str(c.tmp / "run")],
         2, ("gate='tanh'",), "the CLI end to end: one line, exit 2, no traceback"),
    Case("proc-train-python-tag", lambda c: ["-m", "sapo_core.train", "--config",
                                             c.file("evil.yaml", "seed: !!python/object/apply:os.getpid []\n")],
         2, ("evil.yaml", "not valid YAML"), "a recipe with a !!python tag runs no code"),
    Case("proc-data-download-offline", lambda c: ["-m", "sapo_core.data", "download", "--out", str(c.tmp / "dl"),
                                                  "--only", "aime24"],
         2, ("aime_2024", "could not be loaded"), "the data download without network (HF offline mode, empty cache)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", params(SUBPROCESS))
def test_cli_process_exits_2_with_one_line(case: Case, ctx: Ctx):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "HF_HOME": str(ctx.tmp / "hf"), "SAPO_RUNS_DIR": str(ctx.tmp / "runs")}
    done = subprocess.run([PY, *case.call(ctx)], cwd=ctx.tmp, env=environment, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == case.expect, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert lines and lines[-1].startswith("error: ") and sum(x.startswith("error: ") for x in lines) == 1
    _named(lines[-1], case.words)


# --- notebooks: a bad parameter fails in the first code cell after the parameters, naming it -------------------------

NOTEBOOKS = [
    Case("nb02-gate-unknown", lambda c: ("02_train.ipynb", {"gate": "tanh", "run_dir": str(c.tmp / "run")}),
         "ConfigError", ("gate='tanh'",), "notebook 02 parses its parameters with the CLI's parser first"),
    Case("nb02-gate-number", lambda c: ("02_train.ipynb", {"gate": 3, "run_dir": str(c.tmp / "run")}),
         "ConfigError", ("gate must be a gate name", "3"), "not an AttributeError on int.strip"),
    Case("nb02-flags-one-string", lambda c: ("02_train.ipynb", {"flags": "--max_steps 3", "run_dir": str(c.tmp / "r")}),
         "ConfigError", ("flags must be a list", "--max_steps 3"), "one string would be split into characters"),
    Case("nb01-tau-negative", lambda c: ("01_gate_properties.ipynb", {"tau": -1, "out_dir": str(c.tmp / "figs")}),
         "ValueError", ("tau",), "tau <= 0 refused in notebook 01's first cell"),
    Case("nb03-n-zero", lambda c: ("03_evaluate.ipynb", {"n": 0, "out": str(c.tmp / "ev")}),
         "EvaluationError", ("n must be",), "notebook 03's settings are checked before the model is loaded"),
]


def _cells(notebook: str, parameters: dict) -> tuple[list, int]:
    """The notebook's code cells as papermill writes them with `parameters`, and the injected cell's index."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(REPO_ROOT / "notebooks" / notebook)), parameters)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    return code, next(i for i, cell in enumerate(code) if "injected-parameters" in cell.metadata.get("tags", []))


@pytest.mark.parametrize("case", params(NOTEBOOKS))
def test_notebook_fails_in_its_first_cell(case: Case, ctx: Ctx):
    """The cells up to papermill's injected parameters run, and the first cell after them raises, naming the
    parameter. The cells run in this process (a kernel per case costs ~8 s); the next test runs one case in a
    real kernel."""
    notebook, parameters = case.call(ctx)
    code, injected = _cells(notebook, parameters)
    ctx.monkeypatch.chdir(ctx.tmp)  # papermill's cwd in a batch
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(code[:injected + 2]):
        run = compile(cell.source, f"{notebook}, code cell {i}", "exec")
        if i <= injected:
            exec(run, namespace)
            continue
        with pytest.raises(Exception) as info:  # noqa: PT011 - the class is checked by name below
            exec(run, namespace)
    assert type(info.value).__name__ == case.expect
    _named(str(info.value), case.words)


@pytest.mark.slow
def test_a_notebook_fails_in_its_first_cell_in_a_real_kernel(ctx: Ctx):
    import papermill
    from nbformat import read

    case = next(c for c in NOTEBOOKS if c.id == "nb02-flags-one-string")
    notebook, parameters = case.call(ctx)
    out = ctx.tmp / notebook
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / notebook), str(out), parameters=parameters,
                                   cwd=str(ctx.tmp), progress_bar=False, start_timeout=120)
    code = [cell for cell in read(out, as_version=4).cells if cell.cell_type == "code"]
    injected = next(i for i, cell in enumerate(code) if "injected-parameters" in cell.metadata.get("tags", []))
    failed = [i for i, cell in enumerate(code) if any(o.output_type == "error" for o in cell.get("outputs", []))]
    assert failed == [injected + 1], f"the error is in code cell {failed}, not in the first after the parameters"
    assert info.value.ename == case.expect
    _named(info.value.evalue, case.words)


# --- the table itself -----------------------------------------------------------------------------------------------


def test_the_corpus_is_well_formed():
    cases = REFUSED + EXITS + ACCEPTED + SUBPROCESS + NOTEBOOKS
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids are unique"
    assert len(cases) >= 100
    assert all(c.reason.strip() for c in cases), "every case says why"
    assert all(c.words for c in cases if c not in ACCEPTED), "every refusal names something"
    for c in REFUSED:  # the project's own errors are ValueError/RuntimeError subclasses; OSErrors name a file
        assert issubclass(c.expect, (ValueError, TypeError, RuntimeError, OSError)), c.id
    assert all(callable(c.expect) for c in ACCEPTED)


def test_a_study_refused_by_the_check_of_its_arms_leaves_no_directory(tmp_path, capsys):
    """A seed the batch refuses (numpy's range) is found before the study claims its --out: a retry can reuse it."""
    assert study.main(["--out", str(tmp_path / "s"), "--seeds", "-1"]) == 2
    assert "seed=-1" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_the_trust_region_cli_refuses_a_second_path(capsys):
    """A second path was silently ignored; argparse now refuses it in one line, exit 2."""
    with pytest.raises(SystemExit) as exit_:
        trust_region.main(["a.md", "b.md"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and "unrecognized arguments: b.md" in err
