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

import enum
import hashlib
import importlib.util
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers.integrations import integration_utils
from trl import GRPOConfig

from sapo_core import gates as G
from sapo_core import temperature as T
from sapo_core.benchmarks import BENCHMARKS
from sapo_core.checks import is_real
from sapo_core.data import SyntheticTask
from sapo_core.loss import AGGREGATIONS, LEVELS
from sapo_core.methods import check_method

__all__ = ["ConfigError", "FROM_RUN_DIR", "GatedGRPOConfig", "KEY_ALIASES", "RUN_LOCATION", "RunConfig",
           "ScriptArguments", "plain_value", "run_name", "value_text"]

_TRL_LOSS_TYPE = {"seq_mean_token_mean": "grpo", "token_mean": "dapo", "seq_mean_token_sum_norm": "dr_grpo"}
RUN_LOCATION = ("run_dir", "resume", "dry_run", "gpu_memory_gb", "accelerate_config")  # how to run, not what:
# never part of a run's config.yaml
FROM_RUN_DIR = ("output_dir", "run_name")  # TrainingArguments fields that parse_args sets from the run directory
REWARDS = ("format_reward", "correctness_reward")  # the reward functions train() passes, in reward_weights' order
GPU_MEMORY_GB = 80.0  # the dry run's default GPU (an A100/H100 80 GB)
_EXP_LIMIT = math.log(torch.finfo(torch.float32).max)  # exp overflows float32 above ~88.72


class ConfigError(ValueError):
    """A recipe or flag names an unknown key or gives a bad value."""


# Short names of swept recipe keys in run names (`run_name`); a key without one is named in full.
KEY_ALIASES = {"learning_rate": "lr", "num_iterations": "mu", "sapo_temperature_pos": "taupos",
               "sapo_temperature_neg": "tauneg"}
TAU_KEYS = ("sapo_temperature_pos", "sapo_temperature_neg")  # both set: one segment tau<pos>_<neg>
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def plain_value(value):
    """A parsed value as YAML can hold it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


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
    return str(plain_value(value))


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
        if any(k in axes for k in TAU_KEYS):
            raise ConfigError(f"run_name: taus={taus} and a swept temperature ({', '.join(axes)}) both set tau")
        axes = {TAU_KEYS[0]: taus[0], TAU_KEYS[1]: taus[1], **axes}
    segments = []
    if all(k in axes for k in TAU_KEYS):
        segments.append(f"tau{_name_part(axes.pop(TAU_KEYS[0]))}_{_name_part(axes.pop(TAU_KEYS[1]))}")
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
