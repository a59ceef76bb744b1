"""One config layer, TRL's own: a recipe is a TRL config file read by `trl.TrlParser`.

    python -m sapo_core.train --config configs/tiny-cpu.yaml --gate erf --seed 0 --learning_rate 1e-4
    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--gate", "erf", "--seed", "0"])

Every recipe key and every flag is a field of one of two dataclasses: `GatedGRPOConfig` (TRL's `GRPOConfig`
plus the gate: `gate`, `tau_convention`, `aggregation`, `log_ratio_clamp`) or `ScriptArguments` (what TRL
lacks: the model, the task and its sizes, the run directory). The recipe sets the defaults, flags override
them (open-r1's pattern). TRL's own names are used throughout: `sapo_temperature_pos/neg` are the base
temperatures tau_pos/tau_neg of method §1, `epsilon`/`epsilon_high` hard clipping's trust region,
`importance_sampling_level` the ratio's level (token, or sequence as GSPO), `reward_weights` the weights of
[R_format, R_correct] (method §3).

Each fact is checked once, where it lives: gate names and tau by `sapo_core.gates`, the aggregation by
`sapo_core.loss`, the rest in the `__post_init__` of the dataclass that holds it. An unknown key or flag,
a value of the wrong type and a value outside its choices are refused by name (`ConfigError`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import hashlib
import importlib.util
import math
import os
import re
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import yaml
from transformers.integrations import integration_utils
from trl import GRPOConfig, TrlParser
from trl.scripts._hf_argparser import string_to_bool  # the converter TrlParser gives boolean fields

from sapo_core import gates as G
from sapo_core import temperature as T
from sapo_core.benchmarks import BENCHMARKS
from sapo_core.checks import check_bool, check_int, is_real
from sapo_core.data import SyntheticTask
from sapo_core.loss import AGGREGATIONS, LEVELS, check_method
from sapo_core.paths import REPO_ROOT, runs_dir

__all__ = ["ConfigError", "GatedGRPOConfig", "RunConfig", "ScriptArguments", "parse_args", "print_help", "run_name",
           "notebook_args", "flag_value", "value_text", "KEY_ALIASES"]

_TRL_LOSS_TYPE = {"seq_mean_token_mean": "grpo", "token_mean": "dapo", "seq_mean_token_sum_norm": "dr_grpo"}
_RUN_LOCATION = ("run_dir", "resume", "dry_run", "gpu_memory_gb", "accelerate_config")  # how to run, not what:
# never part of a run's config.yaml
_FROM_RUN_DIR = ("output_dir", "run_name")  # TrainingArguments fields that parse_args sets from the run directory
REWARDS = ("format_reward", "correctness_reward")  # the reward functions train() passes, in reward_weights' order
GPU_MEMORY_GB = 80.0  # the dry run's default GPU (an A100/H100 80 GB)
_EXP_LIMIT = math.log(torch.finfo(torch.float32).max)  # exp overflows float32 above ~88.72


class ConfigError(ValueError):
    """A recipe or flag names an unknown key or gives a bad value."""


# Short names of swept recipe keys in run names (`run_name`); a key without one is named in full.
KEY_ALIASES = {"learning_rate": "lr", "num_iterations": "mu", "sapo_temperature_pos": "taupos",
               "sapo_temperature_neg": "tauneg"}
_TAU_KEYS = ("sapo_temperature_pos", "sapo_temperature_neg")  # both set: one segment tau<pos>_<neg>
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def value_text(value) -> str:
    """A recipe value as run names and labels write it: numbers by `:g` unless that loses digits (then repr),
    booleans as true/false, lists joined by '_'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        text = f"{value:g}"
        return text if float(text) == value else repr(value)
    if isinstance(value, (list, tuple)):
        return "_".join(map(value_text, value))
    return str(_plain(value))


def _name_part(value) -> str:
    """`value_text` made file-name safe: other characters become '_' and a hash of the text keeps it unique."""
    text = value_text(value)
    if _SAFE_NAME.fullmatch(text) and not text.startswith("."):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("._")[:40] + "~" + digest


def run_name(gate: str, tau_convention: str, seed: int, taus: tuple[float, float] | None = None,
             axes: dict | None = None) -> str:
    """A run directory's name: `<gate>[-tau<pos>_<neg>][-<key><value>...]-<tau convention>-seed<seed>` (inside
    runs/<config name>/ or a batch; the taus only for a run at other temperatures than its recipe's, e.g. a batch arm
    GATE@POS:NEG or a sweep of both temperatures; then one segment per other swept recipe key, `axes` {key: value}
    in order, the key by its KEY_ALIASES name, e.g. erf-lr3e-05-equal-seed0). `<gate>` is the spec's safe name,
    `gates.spec_slug` (e.g. student_t-nu3, expr-<hash>)."""
    axes = dict(axes or {})
    if taus is not None:
        if any(k in axes for k in _TAU_KEYS):
            raise ConfigError(f"run_name: taus={taus} and a swept temperature ({', '.join(axes)}) both set tau")
        axes = {_TAU_KEYS[0]: taus[0], _TAU_KEYS[1]: taus[1], **axes}
    segments = []
    if all(k in axes for k in _TAU_KEYS):
        segments.append(f"tau{_name_part(axes.pop(_TAU_KEYS[0]))}_{_name_part(axes.pop(_TAU_KEYS[1]))}")
    segments += [f"{KEY_ALIASES.get(key, key)}{_name_part(value)}" for key, value in axes.items()]
    try:
        slug = G.spec_slug(gate)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"gate={gate!r}: {err}") from None
    return "-".join([slug, *segments, tau_convention, f"seed{seed}"])


def _check_trackers(report_to: list[str]) -> None:
    """Every tracker in report_to is one transformers knows and is installed (else TRL fails mid-start-up);
    tensorboard needs the tensorboard package itself (sapo_core.train writes with torch.utils.tensorboard, which
    tensorboardX does not provide), installed by the tracking extra."""
    known = integration_utils.INTEGRATION_TO_CALLBACK
    installed = set(integration_utils.get_available_reporting_integrations())
    if integration_utils.is_flytekit_available() and integration_utils.is_flyte_deck_standard_available():
        installed.add("flyte")
    if importlib.util.find_spec("tensorboard") is None:
        installed.discard("tensorboard")
    for name in report_to:
        if name not in known:
            raise ConfigError(f"report_to: unknown tracker {name!r}; choose from none, all, {', '.join(known)}")
        if name not in installed:
            how = "pip install -e '.[tracking]'" if name == "tensorboard" else "install it"
            raise ConfigError(f"report_to: tracker {name!r} is not installed in this environment; {how} "
                              "or use report_to none")


@dataclass
class ScriptArguments:
    """What a run needs besides TRL's trainer config: the model, the task, the run directory."""

    model: str = field(default="tiny", metadata={
        "help": "'tiny' (the embedded offline model, sapo_core.tiny), a hub id or a local checkpoint directory"})
    dataset: Literal["synthetic", "mix", "gsm8k"] = field(default="synthetic", metadata={
        "help": "synthetic (offline arithmetic), mix (GSM8K + DeepMath-103K, method §3) or gsm8k"})
    # The kinds are the keys of sapo_core.rewards.FORMAT_REWARDS (method §3.2 eq. 10).
    format_reward: Literal["graded", "binary"] = field(default="graded", metadata={
        "help": "R_format: graded (the paper's eq. 10: 1, 0.5, 0.25 or 0) or binary (1 when fully formatted, else 0)"})
    train_size: int = field(default=4096, metadata={"help": "training prompts drawn from the dataset"})
    eval_size: int = field(default=SyntheticTask.size, metadata={
        "help": "held-out synthetic prompts: the validation split for the checks during training (method §3.3), "
                "the test split for sapo_core.evaluate of the run"})
    data_dir: str | None = field(default=None, metadata={
        "help": "local copy of the hub datasets (see README, 'Data'); unset: the Hugging Face hub"})
    # The synthetic task's defaults are data.SyntheticTask's (the tiny model's task), defined there only.
    synthetic_max_steps: int = field(default=SyntheticTask.max_steps, metadata={
        "help": "synthetic task: operations per problem (1..this)"})
    synthetic_max_operand: int = field(default=SyntheticTask.max_operand, metadata={
        "help": "synthetic task: largest operand"})
    heldout_benchmarks: str = field(default="", metadata={
        "help": "benchmarks evaluated before and after training (sapo_core.evaluate; e.g. 'synthetic'); empty: none"})
    heldout_n: int = field(default=8, metadata={"help": "held-out check: samples per problem at heldout_temperature"})
    heldout_temperature: float = field(default=0.7, metadata={
        "help": "held-out check: sampling temperature (a greedy pass is added when heldout_greedy)"})
    heldout_greedy: bool = field(default=True, metadata={"help": "held-out check: also evaluate greedily (n = 1)"})
    heldout_eval_steps: int = field(default=0, metadata={
        "help": "accuracy over training: every this many optimizer steps (a multiple of logging_steps) and at the "
                "last, the held-out check's sampled mean@n (seed = the step) joins the step's row of metrics.jsonl "
                "as heldout/<benchmark>/* (method §6); 0: off"})
    run_dir: str | None = field(default=None, metadata={
        "help": "run directory (default runs/<config name>/<gate>-<tau convention>-seed<seed>)"})
    resume: bool = field(default=False, metadata={"help": "continue an unfinished run from its last checkpoint"})
    max_prompt_length: int | None = field(default=None, metadata={
        "help": "prompts longer than this many tokens (chat template applied) are dropped from the training set "
                "when it is prepared, never truncated (a cut problem has another answer); unset: no limit"})
    dry_run: bool = field(default=False, metadata={
        "help": "print the plan (recipe, model config, data, prompt lengths, steps, per-GPU memory estimate, "
                "sapo_core.preflight) without loading weights; exit 0, or 2 when an input is missing"})
    gpu_memory_gb: float | None = field(default=None, metadata={
        "help": f"dry run: memory of one GPU (GB) the estimate is compared with (unset: {GPU_MEMORY_GB:g})"})
    accelerate_config: str | None = field(default=None, metadata={
        "help": "dry run: the accelerate config the run will be launched with (configs/accelerate/*.yaml); "
                "unset: one process without DeepSpeed"})

    def __post_init__(self):
        if self.train_size <= 0:
            raise ConfigError(f"train_size={self.train_size!r} must be > 0")
        try:  # the synthetic task checks its own settings, naming the recipe keys
            SyntheticTask(size=self.eval_size, max_steps=self.synthetic_max_steps,
                          max_operand=self.synthetic_max_operand)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.run_dir is not None and not str(self.run_dir).strip():
            raise ConfigError("run_dir is empty (an unset shell variable?); give a directory or leave it out")
        if self.heldout_n < 1 or not self.heldout_temperature > 0:
            raise ConfigError(f"heldout_n={self.heldout_n} must be >= 1 and heldout_temperature="
                              f"{self.heldout_temperature} > 0 (the greedy pass is heldout_greedy)")
        if isinstance(self.heldout_eval_steps, bool) or not isinstance(self.heldout_eval_steps, int) \
                or self.heldout_eval_steps < 0:
            raise ConfigError(f"heldout_eval_steps={self.heldout_eval_steps!r} must be an integer >= 0 (0: off)")
        if self.heldout_eval_steps and not self.heldout_benchmarks.strip():
            raise ConfigError(f"heldout_eval_steps={self.heldout_eval_steps} evaluates heldout_benchmarks, which is "
                              "empty; name the benchmarks (e.g. heldout_benchmarks: synthetic) or set it to 0")
        unknown = [b for b in self.heldout_benchmarks.split(",") if b.strip() and b.strip() not in BENCHMARKS]
        if unknown:
            raise ConfigError(f"heldout_benchmarks: unknown benchmark {unknown[0]!r}; choose from "
                              f"{', '.join(BENCHMARKS)}")
        if not self.model.strip():
            raise ConfigError("model is empty; give 'tiny', a hub id or a local directory")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ConfigError(f"max_prompt_length={self.max_prompt_length} must be >= 1 (or unset: no limit)")
        if self.gpu_memory_gb is not None and not (math.isfinite(self.gpu_memory_gb) and self.gpu_memory_gb > 0):
            raise ConfigError(f"gpu_memory_gb={self.gpu_memory_gb} must be a finite number > 0")
        if (self.accelerate_config is not None or self.gpu_memory_gb is not None) and not self.dry_run:
            raise ConfigError("accelerate_config and gpu_memory_gb are read by --dry_run only (a run is launched "
                              "with `accelerate launch --config_file FILE`)")


@dataclass
class GatedGRPOConfig(GRPOConfig):
    """TRL's GRPOConfig plus the gate. `loss_type` is derived from `gate` and `aggregation` (TRL's warnings
    read it); the loss itself is `sapo_core.loss.policy_loss`."""

    gate: str = field(default="sigmoid", metadata={"help": "a gate spec (sapo_core.gates.resolve_spec): a name (erf), "
                                                            "a family (student_t:nu=3), an import path (mypkg.gates:"
                                                            "cauchy2) or an expression of g'(z) (1/(1+z**2)**2); or "
                                                            "a trust-region method (method §2.8): clip (GRPO), "
                                                            "delta:delta=4, cispo:eps_max=5, ce_gppo:beta1=0.5,"
                                                            "beta2=1, vespo:k_pos=2,lambda_pos=3,k_neg=3,lambda_neg=2"})
    tau_convention: str = field(default="equal", metadata={
        "help": "'equal': the gate runs at sapo_temperature_pos/neg; 'width_matched': at tau * halfmax_gate / "
                "halfmax_sigmoid (method §2)"})
    aggregation: str = field(default="seq_mean_token_mean", metadata={
        "help": "seq_mean_token_mean (SAPO/GRPO) | token_mean (DAPO) | seq_mean_token_sum_norm (Dr. GRPO)"})
    log_ratio_clamp: float = field(default=20.0, metadata={"help": "|log r| is clamped to this before exp"})
    data_seed: int | None = field(default=0, metadata={
        "help": "which prompts the task holds and the order TRL's sampler draws them in (method §7.8); fixed "
                "across RL seeds, so that runs of different `seed` see the same prompts in the same order and "
                "differ by their sampling noise (rollouts, vLLM's engine seed) only"})
    vllm_importance_sampling_correction: bool = field(default=False, metadata={
        "help": "TRL's vLLM-vs-trainer IS correction; off by default: a second weight on top of the gate"})
    # transformers 5 renamed gradient checkpointing to activation_checkpointing and warns on the old name, which
    # TRL's GRPOConfig sets by default; unset here, so only a recipe that asks for it gets the warning.
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "deprecated alias of activation_checkpointing (transformers 5); use that"})
    # The temperatures over training (method §2.9, sapo_core.temperature): a schedule or the EUR controller.
    tau_schedule: str = field(default="constant", metadata={
        "help": f"{' | '.join(T.SCHEDULES)}: the base temperatures from sapo_temperature_pos/neg at the first step to "
                "tau_end_pos/neg at the last (method §2.9)"})
    tau_end_pos: float | None = field(default=None, metadata={"help": "tau_pos at the last step (linear, cosine)"})
    tau_end_neg: float | None = field(default=None, metadata={"help": "tau_neg at the last step (linear, cosine)"})
    tau_target_eur: float | None = field(default=None, metadata={
        "help": "EUR in (0, 1) the controller keeps the run at: after each step both temperatures are multiplied by "
                "exp(tau_controller_rate (EUR - target) / (1 - target)), within [tau_min, tau_max] (method §2.9); "
                "unset: off"})
    tau_controller_rate: float = field(default=T.CONTROLLER_RATE, metadata={
        "help": "the controller's change of log tau per step and unit of relative EUR error (EUR - target) / "
                "(1 - target)"})
    tau_min: float = field(default=T.TAU_MIN, metadata={"help": "the controller's lower bound on each base tau"})
    tau_max: float = field(default=T.TAU_MAX, metadata={"help": "the controller's upper bound on each base tau"})

    def __post_init__(self):
        try:
            if G.is_method(self.gate):  # a trust-region method (method §2.8): its parameters and what it needs
                check_method(self.gate, self.epsilon if self.epsilon_high is None else self.epsilon_high,
                             self.importance_sampling_level)
            else:
                G.resolve_spec(self.gate)  # a gate spec (method §2.6), checked for admissibility before any run dir
        except (TypeError, ValueError) as err:
            raise ConfigError(f"gate={self.gate!r}: {err}; or a trust-region method ({', '.join(G.METHODS)})") from None
        if self.tau_convention not in G.TAU_CONVENTIONS:
            raise ConfigError(f"tau_convention={self.tau_convention!r} is not allowed; choose one of "
                              f"{', '.join(G.TAU_CONVENTIONS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation={self.aggregation!r} is not allowed; choose one of "
                              f"{', '.join(AGGREGATIONS)}")
        for key in ("sapo_temperature_pos", "sapo_temperature_neg"):  # the gate computes in float32 at least
            tau = getattr(self, key)
            if not (isinstance(tau, (int, float)) and torch.finfo(torch.float32).tiny <= tau
                    < torch.finfo(torch.float32).max):
                raise ConfigError(f"{key}={tau!r} must be a finite number > 0 (representable in float32: "
                                  f"{torch.finfo(torch.float32).tiny:.3g} to {torch.finfo(torch.float32).max:.3g})")
        if not 0 < self.log_ratio_clamp < _EXP_LIMIT:
            raise ConfigError(f"log_ratio_clamp={self.log_ratio_clamp!r} must be in (0, {_EXP_LIMIT:.2f}) so that "
                              "exp stays finite in float32")
        for key in ("epsilon", "epsilon_high"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{key}={value!r} must be in [0, 1) (the trust region is [1 - epsilon, "
                                  "1 + epsilon_high])")
        for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
                    "num_generations"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}={value} must be >= 1")
        for key in ("learning_rate", "temperature", "top_p", "beta", "max_grad_norm", "weight_decay"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{key}={value!r} must be a finite number >= 0")
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0 (rollouts are sampled)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1]")
        if self.importance_sampling_level not in LEVELS:
            raise ConfigError(f"importance_sampling_level={self.importance_sampling_level!r} is not allowed; choose "
                              f"one of {', '.join(LEVELS)}")
        if self.data_seed is None:
            raise ConfigError("data_seed must be an integer (it fixes which prompts the task holds)")
        for key in ("seed", "data_seed"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 2**32:
                raise ConfigError(f"{key}={value} must be in [0, 2**32 - 1] (numpy's seed range)")
        if self.num_generations is not None and self.num_generations < 2:
            raise ConfigError(f"num_generations={self.num_generations} must be >= 2 (advantages are group-relative)")
        if self.num_iterations < 1:
            raise ConfigError(f"num_iterations={self.num_iterations} must be >= 1")
        if self.max_steps != -1 and self.max_steps < 1:  # transformers reads max_steps <= 0 as "unset"
            raise ConfigError(f"max_steps={self.max_steps} must be >= 1, or -1 to train for num_train_epochs")
        if self.reward_weights is not None and not (isinstance(self.reward_weights, (list, tuple))
                                                    and all(is_real(w) for w in self.reward_weights)):
            raise ConfigError(f"reward_weights={self.reward_weights!r} must be a list of {len(REWARDS)} numbers, one "
                              f"per reward: {', '.join(REWARDS)} (method §3)")
        if self.reward_weights is not None and not all(math.isfinite(w) for w in self.reward_weights):
            raise ConfigError(f"reward_weights={self.reward_weights} must be finite numbers")
        if self.reward_weights is not None and len(self.reward_weights) != len(REWARDS):
            raise ConfigError(f"reward_weights={self.reward_weights} must hold {len(REWARDS)} weights, one per reward: "
                              f"{', '.join(REWARDS)} (method §3)")
        try:  # method §2.9: the schedule and the controller check their own settings
            T.check_settings(start=(self.sapo_temperature_pos, self.sapo_temperature_neg), schedule=self.tau_schedule,
                             end=(self.tau_end_pos, self.tau_end_neg), target=self.tau_target_eur,
                             rate=self.tau_controller_rate, tau_min=self.tau_min, tau_max=self.tau_max,
                             max_steps=self.max_steps, gate=self.gate)
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
        if self.tau_target_eur is not None and self.logging_steps != 1:
            raise ConfigError(f"tau_target_eur adjusts the temperatures after every optimizer step from that step's "
                              f"EUR, which is computed on logged steps: set logging_steps 1 (got {self.logging_steps})")
        if self.vllm_importance_sampling_correction and not self.use_vllm:
            raise ConfigError("vllm_importance_sampling_correction=true needs use_vllm=true")
        if self.logging_steps != int(self.logging_steps) or self.logging_steps < 1:
            raise ConfigError(f"logging_steps={self.logging_steps} must be an integer >= 1 (the gate's metrics are "
                              "pooled over whole optimizer steps)")
        derived = "sapo" if (self.gate == "sigmoid" and self.aggregation == "seq_mean_token_mean") \
            else _TRL_LOSS_TYPE[self.aggregation]
        if self.loss_type not in (GRPOConfig.loss_type, derived):  # GRPOConfig's default, or already derived
            raise ConfigError(f"loss_type={self.loss_type!r} is not used by GatedGRPOConfig: choose the loss with "
                              f"gate= and aggregation= (this combination corresponds to TRL's {derived!r})")
        self.loss_type = derived
        if cpu_processes():
            self.use_cpu = True
        super().__post_init__()
        _check_trackers(self.report_to)  # a list after TrainingArguments.__post_init__ ("none" -> [])
        cycle = self.steps_per_generation * self.num_iterations  # micro-batches from one generation to the next
        if self.save_strategy == "steps" and (self.save_steps * self.gradient_accumulation_steps) % cycle:
            raise ConfigError(
                f"save_steps={self.save_steps} must put every checkpoint at the end of a generation cycle "
                f"(steps_per_generation x num_iterations = {cycle} micro-batches; an optimizer step is "
                f"{self.gradient_accumulation_steps}): a checkpoint taken between a batch's generation and its "
                "last reuse resumes as a different run, since the generated batch is not saved")
        if self.save_strategy == "steps" and self.save_steps % self.logging_steps:
            raise ConfigError(f"save_steps={self.save_steps} must be a multiple of logging_steps={self.logging_steps}: "
                              "a run resumed from a checkpoint inside a logging window would log a shorter window")

    def gate_taus(self, base: tuple[float, float] | None = None) -> tuple[float, float]:
        """(tau_pos, tau_neg) the gate runs at, after the tau convention (method §2), for the base temperatures
        `base` (a step's, method §2.9; default the recipe's sapo_temperature_pos/neg)."""
        tau_pos, tau_neg = base if base is not None else (self.sapo_temperature_pos, self.sapo_temperature_neg)
        if G.is_method(self.gate):  # no temperature (method §2.8)
            return tau_pos, tau_neg
        return (G.resolve_tau(self.gate, tau_pos, self.tau_convention),
                G.resolve_tau(self.gate, tau_neg, self.tau_convention))


def cpu_processes() -> bool:
    """Whether this is one of several processes on a machine without CUDA (torchrun, `accelerate launch` on a
    CPU machine): such ranks can only join over gloo as CPU processes, so GatedGRPOConfig sets use_cpu. A single
    process keeps transformers' own device choice (CUDA, MPS or CPU)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


@dataclass
class RunConfig:
    """A parsed run: the script arguments, TRL's trainer config, and the recipe as given (keys -> values)."""

    script: ScriptArguments
    training: GatedGRPOConfig
    recipe: dict  # the keys set by the config file and the flags, with their parsed values (config.yaml)
    config_path: str | None = None

    @property
    def run_dir(self) -> Path:
        """Where this run lives."""
        return Path(self.script.run_dir)

    def synthetic_task(self, split: str) -> SyntheticTask:
        """The run's synthetic task of one split (method §3.3): its training prompts ("train", train_size) or a
        held-out set ("validation" for the checks during training, "test" for evaluate; eval_size), all drawn
        with data_seed."""
        size = self.script.train_size if split == "train" else self.script.eval_size
        return SyntheticTask(size=size, data_seed=self.training.data_seed, max_steps=self.script.synthetic_max_steps,
                             max_operand=self.script.synthetic_max_operand, split=split)


class _Parser(TrlParser):
    """TRL's parser for our two dataclasses, whose errors are ConfigErrors instead of exits, and whose config
    file values go through the same type conversion and choices as flags (TrlParser passes them unchecked)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._complete_booleans()

    def _complete_booleans(self) -> None:
        """Every boolean field takes `--x`, `--x true|false`, `--x=false` and `--no_x` (HfArgumentParser gives
        `--no_x` only to fields that default to True, and a bare `--x` only to fields with a bool default)."""
        options = {option for a in self._actions for option in a.option_strings}
        for action in list(self._actions):
            if action.type is not string_to_bool:
                continue
            action.nargs, action.const = "?", True
            negative = f"--no_{action.dest}"
            if negative not in options:
                self.add_argument(negative, f"--no-{action.dest.replace('_', '-')}", action="store_false",
                                  dest=action.dest, default=argparse.SUPPRESS, help=f"same as --{action.dest} false")

    def error(self, message):
        raise ConfigError(message)

    def actions(self) -> dict[str, argparse.Action]:
        """Option actions by field name (a boolean's `--x`, not its `--no_x`, which shares the field)."""
        return {a.dest: a for a in reversed(self._actions) if a.option_strings and a.dest != "help"}

    def option_dests(self) -> dict[str, str]:
        """Field name by option string (a boolean's `--x`, `--no_x` and their dashed spellings all name x)."""
        return {option: a.dest for a in self._actions for option in a.option_strings if a.dest != "help"}

    def convert(self, key: str, value, where: str):
        """A config-file value as the flag's parser would read it."""
        action = self.actions()[key]
        if isinstance(value, dict):
            holder = ScriptArguments if key in ScriptArguments.__dataclass_fields__ else GatedGRPOConfig
            if "dict" not in str(typing.get_type_hints(holder)[key]):  # (the parser rewrites field.type)
                raise ConfigError(f"{key}: {value!r} in {where} is a mapping; a single value is expected")
            return value
        if value is None or action.type is None:
            return value
        if action.type is string_to_bool and not isinstance(value, bool):  # YAML reads true/false as bools
            raise ConfigError(f"{key}: {value!r} in {where} is not true or false")
        if isinstance(value, list):
            if action.nargs not in ("+", "*"):
                raise ConfigError(f"{key}: {value!r} in {where} is a list; a single value is expected")
            return [self.convert_one(key, v, action, where) for v in value]
        if action.nargs in ("+", "*"):
            raise ConfigError(f"{key}: {value!r} in {where} is a single value; a list is expected (e.g. "
                              f"{key}: [{value!r}])")
        return self.convert_one(key, value, action, where)

    @staticmethod
    def convert_one(key, value, action, where):
        try:
            converted = action.type(str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{key}: {value!r} in {where} is not a valid {kind}") from None
        if action.choices is not None and converted not in action.choices:
            raise ConfigError(f"{key}: {value!r} in {where} is not allowed; choose one of "
                              f"{', '.join(map(str, action.choices))}")
        return converted


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice (plain YAML keeps the last silently)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_recipe(path: str | os.PathLike) -> tuple[Path, dict]:
    """The mapping in a recipe file (a path, or a path relative to the repository root)."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} " + ("is a directory" if path.is_dir() else "does not exist"))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if values is None:
        raise ConfigError(f"config file {path} is empty; a recipe is a mapping of key: value")
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value, not a {type(values).__name__}")
    return path, values


def _unknown(keys, known, what: str) -> ConfigError:
    hints = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ConfigError(f"unknown {what} {', '.join(hints)}: not a field of GatedGRPOConfig or ScriptArguments "
                       "(see `python -m sapo_core.train --help`)")


def _plain(value):
    """A parsed value as YAML can hold it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flag_value(key: str, text: str, where: str = "the command line"):
    """`--KEY TEXT` as the training CLI's parser reads it (the key's type and choices; a list key takes TEXT split at
    spaces); ConfigError for a key that is not a recipe key (or says where a run lives, not what it is) or a bad
    value."""
    parser = _Parser((ScriptArguments, GatedGRPOConfig))
    actions = parser.actions()
    if key in _RUN_LOCATION or key in _FROM_RUN_DIR:
        raise ConfigError(f"{key} says where or how a run is made, not what it is; it is not a recipe key here")
    if key not in actions:
        raise _unknown([key], [k for k in actions if k not in _RUN_LOCATION], "recipe key")
    if not isinstance(text, str):
        raise ConfigError(f"{key}: the value must be text as on the command line, got {type(text).__name__} {text!r}")
    action = actions[key]
    if action.nargs in ("+", "*"):
        return [_plain(parser.convert_one(key, v, action, where)) for v in text.split()]
    return _plain(parser.convert_one(key, text, action, where))


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """`--config FILE` (its keys become defaults) and flags -> RunConfig; the run directory resolved."""
    if argv is not None and (isinstance(argv, str) or not isinstance(argv, (list, tuple))
                             or not all(isinstance(a, str) for a in argv)):
        raise ConfigError(f"parse_args takes a list of strings (e.g. ['--gate', 'erf']), got {argv!r}")
    argv = list(argv if argv is not None else [])
    parser = _Parser((ScriptArguments, GatedGRPOConfig))
    actions = parser.actions()
    option_to_dest = parser.option_dests()
    config_path, recipe = None, {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a file")
        path, recipe = read_recipe(argv[i + 1])
        config_path = str(path)
        del argv[i:i + 2]
        if "--config" in argv:
            raise ConfigError("--config given twice")
        if "env" in recipe:
            raise ConfigError(f"config file {path}: 'env' (environment variables) is not supported; set them in "
                              "the shell")
        unknown = [k for k in recipe if k not in actions or k == "output_dir"]
        if unknown:
            raise _unknown(unknown, list(actions), f"key(s) in {path}")
        recipe = {k: parser.convert(k, v, str(path)) for k, v in recipe.items()}
        parser.set_defaults_with_config(**recipe)  # TrlParser: the file's values become the flags' defaults
    given = []
    for token in argv:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            dest = option_to_dest.get(option)
            if dest is None:
                raise _unknown([option[2:]], list(actions), "flag")
            if dest in given:
                raise ConfigError(f"flag {option} given twice (it sets {dest}, as --{dest} and --no_{dest} do for a "
                                  "boolean)" if actions[dest].type is string_to_bool else f"flag {option} given twice")
            given.append(dest)
    if "output_dir" in given:
        raise ConfigError("--output_dir is set from the run directory (<run_dir>/checkpoints); use --run_dir")
    if "run_name" in given or "run_name" in recipe:
        raise ConfigError("run_name (the trackers' name of the run) is the run directory's name; name the run with "
                          "--run_dir")
    parsed, _ = parser.parse_known_args(args=argv)  # the values as given, before any __post_init__ derives more
    values = {k: _plain(getattr(parsed, k)) for k in [*recipe, *given] if k not in _RUN_LOCATION}
    if parsed.dry_run and "use_cpu" not in given and not torch.cuda.is_available():
        argv = [*argv, "--use_cpu", "true"]  # a dry run plans a bf16 GPU recipe anywhere (transformers refuses bf16
        # on a machine without a GPU unless use_cpu); it trains nothing, and the recipe above is kept as given
    try:
        script, training = parser.parse_args_into_dataclasses(args=argv)
    except ConfigError:
        raise
    except ValueError as err:  # a check in TRL's or transformers' __post_init__
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    if script.run_dir is None:
        name = Path(config_path).stem if config_path else "custom"
        script.run_dir = str(runs_dir() / name / run_name(training.gate, training.tau_convention, training.seed))
    training.output_dir = str(Path(script.run_dir) / "checkpoints")
    training.run_name = Path(script.run_dir).name  # what report_to's trackers call the run (a batch's arm name)
    if script.heldout_eval_steps % training.logging_steps:  # its values join the logged row of their step
        raise ConfigError(f"heldout_eval_steps={script.heldout_eval_steps} must be a multiple of logging_steps="
                          f"{training.logging_steps}: the held-out accuracy is written into that step's logged row")
    return RunConfig(script=script, training=training, recipe=values, config_path=config_path)


def notebook_args(config, gate, seed, flags, run_dir=None, resume=False) -> list[str]:
    """Notebook 02's parameters as the training CLI's arguments, each checked by name first (papermill passes
    whatever YAML gives: a number for the gate, one string for the list of flags). Without `run_dir`, each
    execution gets a new directory: runs/nb02/<run name>-<time>."""
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"config must be a recipe path, got {type(config).__name__} {config!r}")
    if not isinstance(gate, str):
        raise ConfigError(f"gate must be a gate name (a string, e.g. 'erf' or 'clip'), got {type(gate).__name__} "
                          f"{gate!r}")
    try:
        check_int("seed", seed)
        check_bool("resume", resume)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if not (isinstance(flags, (list, tuple)) and all(isinstance(f, str) or is_real(f) for f in flags)):
        raise ConfigError(f"flags must be a list of the CLI's flags and values (e.g. ['--max_steps', '100']), got "
                          f"{type(flags).__name__} {flags!r}")
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"run_dir must be a path or None, got {type(run_dir).__name__} {run_dir!r}")
    argv = ["--config", str(config), "--gate", gate, "--seed", str(seed), *map(str, flags)]
    if run_dir is None:
        training = parse_args(argv).training
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = runs_dir() / "nb02" / f"{run_name(training.gate, training.tau_convention, training.seed)}-{stamp}"
    return [*argv, "--run_dir", str(run_dir), *(["--resume"] if resume else [])]


def print_help() -> None:
    """Every flag (= recipe key) with its help, as `python -m sapo_core.train --help` shows them."""
    _Parser((ScriptArguments, GatedGRPOConfig), prog="python -m sapo_core.train",
            description="Train a policy with one gate. Flags override the --config file's keys.").print_help()


def recipe_keys_differ(previous: dict, run: RunConfig) -> list[str]:
    """The keys whose value in a run's saved config.yaml differs from this parsed run (resume check)."""
    changed = []
    for key in sorted(previous.keys() | run.recipe.keys()):
        if key in _RUN_LOCATION:
            continue
        holder = run.script if key in ScriptArguments.__dataclass_fields__ else run.training
        if not hasattr(holder, key):
            changed.append(key)
            continue
        default = _plain(_default(holder, key))
        if previous.get(key, default) != run.recipe.get(key, default):
            changed.append(key)
    return changed


def _default(holder, key):
    f = type(holder).__dataclass_fields__[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
