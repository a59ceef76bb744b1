"""One config dataclass for a training run, filled from a YAML recipe plus `key=value` overrides.

    cfg = load_config("configs/tiny-cpu.yaml", ["gate=erf", "seed=1", "learning_rate=1e-5"])

Every hyperparameter is a field here with a one-line doc (STYLE §4). The CLI (`python -m
sapo_core.train`) and the papermill parameters cell of notebook 02 read the same recipe. Unknown keys
and values of the wrong type or outside the allowed set fail with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sapo_core import gates as G
from sapo_core.paths import REPO_ROOT

__all__ = ["TrainConfig", "ConfigError", "load_config", "parse_overrides", "CHOICES"]

CHOICES = {
    "tau_convention": G.TAU_CONVENTIONS,
    "level": ("token", "sequence"),
    "aggregation": ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"),
    "dataset": ("synthetic", "mix", "gsm8k"),
    "vllm_mode": ("colocate", "server"),
}


class ConfigError(ValueError):
    """A recipe or override names an unknown key or gives a bad value."""


@dataclass
class TrainConfig:
    """Everything one training run needs; see configs/*.yaml for the two recipes."""

    # --- model and data --------------------------------------------------------------------------
    model: str = "tiny"  # "tiny" (the embedded offline model, sapo_core.tiny) or a hub id / local path
    dataset: str = "synthetic"  # "synthetic" (offline arithmetic), "mix" (GSM8K+DeepMath, SPEC §3), "gsm8k"
    train_size: int = 4096  # number of training prompts drawn from the dataset
    data_dir: str | None = None  # local copy of the hub datasets (layout of ../shared/data); None: hub
    synthetic_max_steps: int = 1  # synthetic task: operations per problem (1..this)
    synthetic_max_operand: int = 99  # synthetic task: largest operand
    eval_size: int = 200  # held-out synthetic prompts for the greedy-accuracy check (tiny recipe)
    # --- gate (SPEC §1-§2) ------------------------------------------------------------------------
    gate: str = "sigmoid"  # registered gate name, or "clip" for GRPO's hard clipping
    tau_pos: float = 1.0  # base temperature for tokens with A > 0
    tau_neg: float = 1.05  # base temperature for tokens with A <= 0
    tau_convention: str = "equal"  # "equal": tau as given; "width_matched": tau * halfmax_gate/halfmax_sigmoid
    level: str = "token"  # importance ratio per token, or per sequence (GSPO-style geometric mean)
    aggregation: str = "seq_mean_token_mean"  # SAPO/GRPO; "token_mean" (DAPO); "seq_mean_token_sum_norm" (Dr. GRPO)
    epsilon_low: float = 0.2  # hard clip lower bound 1 - eps (also the "outside trust region" metric)
    epsilon_high: float = 0.2  # hard clip upper bound 1 + eps
    log_ratio_clamp: float = 20.0  # |log r| is clamped to this before exp
    # --- reward (SPEC §3, eq. 9) -----------------------------------------------------------------
    format_weight: float = 1.0  # weight of R_format in R
    correctness_weight: float = 1.0  # weight of R_correct in R
    # --- RL loop ------------------------------------------------------------------------------------
    max_steps: int = 100  # optimizer steps
    learning_rate: float = 1e-6  # AdamW learning rate
    lr_scheduler_type: str = "constant"  # transformers scheduler name
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping norm
    num_generations: int = 8  # rollouts per prompt (the group size G)
    max_completion_length: int = 512  # new tokens per rollout
    per_device_train_batch_size: int = 1  # completions per device per micro-batch
    gradient_accumulation_steps: int = 16  # micro-batches per optimizer step
    steps_per_generation: int | None = None  # micro-batches per generation batch; None: gradient_accumulation_steps
    num_iterations: int = 2  # gradient updates per generated batch (mu); 1 makes every gate inert
    beta: float = 0.0  # KL coefficient to the reference model
    temperature: float = 1.0  # rollout sampling temperature
    top_p: float = 1.0  # rollout nucleus sampling
    scale_rewards: str = "group"  # advantage std normalisation: "group", "batch" or "none"
    seed: int = 0  # RL seed: data order, rollout sampling, dropout (the tiny base model is fixed)
    data_seed: int = 0  # which prompts the task holds; fixed across RL seeds so runs differ only by RL noise
    # --- hardware -----------------------------------------------------------------------------------
    bf16: bool = False  # bfloat16 mixed precision
    gradient_checkpointing: bool = False  # trade compute for memory
    use_vllm: bool = False  # generate rollouts with vLLM (GPU only)
    vllm_mode: str = "colocate"  # "colocate" (same GPUs) or "server" (trl vllm-serve)
    vllm_gpu_memory_utilization: float = 0.3  # share of GPU memory vLLM may take in colocate mode
    vllm_importance_sampling_correction: bool = False  # TRL's vLLM-vs-trainer IS correction; off for gate comparisons
    # --- logging and checkpoints -------------------------------------------------------------------
    logging_steps: int = 1  # log (and compute loss metrics) every this many steps
    save_steps: int = 50  # checkpoint every this many steps
    save_total_limit: int | None = 2  # keep at most this many checkpoints
    report_to: list[str] = field(default_factory=list)  # extra trackers ("wandb", "tensorboard", ...)
    log_completions: bool = False  # TRL's completion tables

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Type- and range-check every field; raise ConfigError naming the first bad one."""
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for f in dataclasses.fields(self):  # nan passes every comparison below, inf most of them
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r} must be a finite number")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not allowed; choose one of {', '.join(allowed)}")
        if self.gate != "clip":
            try:
                G.get_gate(self.gate)
            except ValueError as err:
                raise ConfigError(f"gate={self.gate!r}: {err}; or 'clip'") from None
        positive = ("tau_pos", "tau_neg", "learning_rate", "max_steps", "num_generations", "max_completion_length",
                    "per_device_train_batch_size", "gradient_accumulation_steps", "num_iterations", "train_size",
                    "eval_size", "logging_steps", "save_steps", "temperature", "log_ratio_clamp",
                    "synthetic_max_steps", "synthetic_max_operand")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be > 0")
        for key in ("epsilon_low", "epsilon_high", "beta", "weight_decay", "warmup_steps", "format_weight",
                    "correctness_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be >= 0")
        for key in ("seed", "data_seed"):
            if not 0 <= getattr(self, key) < 2**32:
                raise ConfigError(f"{key}={getattr(self, key)} must be in [0, 2**32 - 1] (numpy's seed range)")
        if self.num_generations < 2:
            raise ConfigError(f"num_generations={self.num_generations} must be >= 2 (advantages are group-relative)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1]")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError(f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization} must be in (0, 1]")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm={self.max_grad_norm} must be >= 0 (0: no clipping)")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(f"save_total_limit={self.save_total_limit} must be >= 1 (or null: keep all)")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(f"scale_rewards={self.scale_rewards!r} is not allowed; choose one of group, batch, none")
        if self.steps_per_generation is not None and self.steps_per_generation <= 0:
            raise ConfigError(f"steps_per_generation={self.steps_per_generation} must be > 0 (or null)")
        cycle = self.generation_cycle_micro_batches()
        if (self.save_steps * self.gradient_accumulation_steps) % cycle:
            raise ConfigError(
                f"save_steps={self.save_steps} must put every checkpoint at the end of a generation cycle "
                f"(steps_per_generation x num_iterations = {cycle} micro-batches; an optimizer step is "
                f"{self.gradient_accumulation_steps}): a checkpoint taken between a batch's generation and its "
                "last reuse resumes as a different run, since the generated batch is not saved")
        if self.save_steps % self.logging_steps:
            raise ConfigError(f"save_steps={self.save_steps} must be a multiple of logging_steps={self.logging_steps}: a "
                              "run resumed from a checkpoint inside a logging window would log a shorter window")
        if self.use_vllm is False and self.vllm_importance_sampling_correction:
            raise ConfigError("vllm_importance_sampling_correction=true needs use_vllm=true")

    # -- derived values -----------------------------------------------------------------------------
    def generation_cycle_micro_batches(self) -> int:
        """Micro-batches from one generation to the next (TRL: steps_per_generation x num_iterations)."""
        return (self.steps_per_generation or self.gradient_accumulation_steps) * self.num_iterations

    def gate_taus(self) -> tuple[float, float]:
        """(tau_pos, tau_neg) actually used by the gate, after the tau convention (SPEC §2)."""
        if self.gate == "clip":
            return self.tau_pos, self.tau_neg
        return (G.resolve_tau(self.gate, self.tau_pos, self.tau_convention),
                G.resolve_tau(self.gate, self.tau_neg, self.tau_convention))

    def to_dict(self) -> dict:
        """Plain dict of every field (for YAML/JSON)."""
        return dataclasses.asdict(self)


def _check_type(name: str, value, hint) -> None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                _check_type(name, value, option)
                return
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{name} must not be null")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}={value!r} must be a list")
        (inner,) = typing.get_args(hint)
        for item in value:
            _check_type(name, item, inner)
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}={value!r} must be a number")
        return
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{name}={value!r} must be an integer")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be true or false")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{name}={value!r} must be a string")


def parse_overrides(overrides: list[str] | dict | None) -> dict:
    """`["key=value", ...]` (values parsed as YAML scalars) or a dict, as a dict."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe path, or the name of one under configs/ ("tiny-cpu" -> configs/tiny-cpu.yaml)."""
    path = Path(recipe)
    if not path.exists():
        named = REPO_ROOT / "configs" / f"{recipe}.yaml"
        if named.exists():
            return named
        raise ConfigError(f"recipe {recipe!r} not found (neither a file nor a name under configs/)")
    return path


def load_config(recipe: str | Path | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """TrainConfig from a YAML recipe (path or name under configs/) with overrides applied on top."""
    values: dict = {}
    if recipe is not None:
        path = resolve_recipe(recipe)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"recipe {path} must be a mapping of key: value")
        values.update(loaded)
    values.update(parse_overrides(overrides))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}")
    # YAML reads 1e-6 as a string; accept numeric strings only for float fields.
    hints = typing.get_type_hints(TrainConfig)
    for key, value in values.items():
        if isinstance(value, str) and hints[key] in (float, float | None):
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return TrainConfig(**values)
