"""GatedGRPOTrainer: TRL's GRPOTrainer with the policy loss replaced by `sapo_core.loss.policy_loss`.

Everything else is TRL's (pinned to 1.16.0): generation (transformers or vLLM), reward functions,
group-relative advantages, batch reuse (`num_iterations`), the KL term, the entropy metric and the
logging machinery. Our loss metrics (ratio and gate-weight statistics and the effective update ratio EUR,
method §4; names in `sapo_core.metrics`) are added to TRL's logs, so they reach `trainer.state.log_history`
and every `report_to` backend. They are exact statistics of every unmasked token of the logged optimizer
step: the tokens of all its micro-batches (gradient accumulation) and all processes are pooled before the
statistics are taken. EUR averages over prompts, so every completion carries the id of its prompt group
(`prompt_group`, set where TRL generates the batch, before TRL shuffles and splits it into micro-batches).

    args = GatedGRPOConfig(output_dir="runs/x", gate="erf", tau_convention="width_matched", num_iterations=2)
    trainer = GatedGRPOTrainer(model, reward_funcs=[format_reward, correctness_reward], args=args,
                               train_dataset=dataset, processing_class=tokenizer)

Temperatures: `sapo_temperature_pos` / `sapo_temperature_neg` are the *base* tau; the gate runs at
`resolve_tau(gate, tau, tau_convention)` (method §2). Clipping uses `epsilon` / `epsilon_high`. With `tau_schedule`
or `tau_target_eur` the base tau changes from step to step (`sapo_core.temperature`, method §2.9): each step's loss
reads them before it runs, the controller updates them from the step's EUR when the step is logged, every logged
step carries the gate's temperatures (`tau/pos`, `tau/neg`), and each checkpoint's trainer_state.json holds the
controller's state (`stateful_callbacks["sapo_core.temperature"]`), so that a resumed run continues at the same tau.

TRL's vLLM importance-sampling correction (`vllm_importance_sampling_correction`) multiplies each
token's loss by a truncated pi_old / pi_vllm ratio. That ratio is a second, gate-independent weight on
top of the gate, so it is off in our recipes for gate comparisons (it would change the effective gate
shape differently per run); turn it on explicitly when sampler/trainer mismatch is the object of study.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import trl.generation.vllm_generation as trl_vllm
from accelerate import PartialState
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler

from sapo_core import gates as G
from sapo_core import metrics as M
from sapo_core import temperature as T
from sapo_core.config import GatedGRPOConfig
from sapo_core.loss import (
    MetricTokens,
    importance_log_ratio,
    masked_aggregate,
    metric_tokens,
    policy_loss,
    token_metrics,
)

__all__ = ["GatedGRPOConfig", "GatedGRPOTrainer", "RATIO_HIST_EDGES", "ratio_histogram", "vllm_engine_seed"]

# TRL 1.16 reads the model's `is_gradient_checkpointing`, which transformers 5 renamed and warns about on every
# step; the caller is TRL's, so a user can do nothing about it. Silenced by message, category and module only.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning,
                        module=r"transformers\.modeling_utils")

RATIO_HIST_EDGES = M.RATIO_HIST_EDGES  # the bins of `ratio/hist/NN` (defined with the metric names)
TEMPERATURE_STATE = "sapo_core.temperature"  # the controller's key in a checkpoint's trainer_state.json


def ratio_histogram(ratio: torch.Tensor) -> dict[str, float]:
    """Share of tokens per bin of RATIO_HIST_EDGES (nan when there are no tokens)."""
    edges = torch.tensor(RATIO_HIST_EDGES[1:-1], dtype=ratio.dtype, device=ratio.device)
    counts = torch.bincount(torch.bucketize(ratio, edges, right=True), minlength=len(RATIO_HIST_EDGES) - 1)
    shares = (counts / max(ratio.numel(), 1)).tolist() if ratio.numel() else [float("nan")] * len(counts)
    return {f"ratio/hist/{i:02d}": v for i, v in enumerate(shares)}


def vllm_engine_seed(seed: int, process_index: int, num_processes: int, tensor_parallel_size: int) -> int:
    """The colocated vLLM engine's sampling seed (method §7.8): seed * groups + group, where group =
    process_index // tensor_parallel_size of `groups` (the ranks of one tensor-parallel group share a seed)."""
    groups, group = num_processes // tensor_parallel_size, process_index // tensor_parallel_size
    engine_seed = seed * groups + group
    if engine_seed >= 2**32:  # vLLM seeds numpy, whose seeds are below 2**32
        raise ValueError(f"seed={seed} with {groups} vLLM engines gives engine seed {engine_seed}, above numpy's "
                         f"limit 2**32 - 1; choose seed < {(2**32 - group) // groups}")
    return engine_seed


def _is_rollout_metric(name: str) -> bool:
    """Metrics TRL computes once per generated batch (rewards, completion lengths): group "rollout" of the registry."""
    try:
        return M.get(name).group == "rollout"
    except ValueError:  # a name TRL logs that the registry lacks (tests/test_train.py catches those) is not one
        return False


class _LogLastStep(TrainerCallback):
    """Log the final optimizer step even when max_steps is not a multiple of logging_steps (transformers
    would fold its metrics into the end-of-training summary only)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True


class GatedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose policy loss is `sapo_core.loss.policy_loss` with any gate spec or trust-region method."""

    _UNSUPPORTED = {  # TRL features that act on the per-token loss; refused rather than silently dropped
        "top_entropy_quantile": lambda a: a.top_entropy_quantile < 1.0,
        "off_policy_mask_threshold": lambda a: a.off_policy_mask_threshold is not None,
        "entropy_coef": lambda a: a.entropy_coef != 0.0 or a.use_adaptive_entropy,
        "delta": lambda a: a.delta is not None,
    }

    def __init__(self, *args, **kwargs):
        with self._seeded_vllm_engine(kwargs.get("args", args[2] if len(args) > 2 else None)):
            super().__init__(*args, **kwargs)
        if not isinstance(self.args, GatedGRPOConfig):
            raise TypeError(f"GatedGRPOTrainer needs a GatedGRPOConfig, got {type(self.args).__name__}")
        for option, active in self._UNSUPPORTED.items():
            if active(self.args):
                raise ValueError(f"GatedGRPOTrainer does not support {option}={getattr(self.args, option)!r}; "
                                 "leave it at TRL's default")
        self.gate = self.args.gate if G.is_method(self.args.gate) else G.get_gate(self.args.gate)  # method §2.8
        self.temperature = T.make_temperature(  # method §2.9: the base temperatures of each step
            start=(self.args.sapo_temperature_pos, self.args.sapo_temperature_neg), schedule=self.args.tau_schedule,
            end=(self.args.tau_end_pos, self.args.tau_end_neg), target=self.args.tau_target_eur,
            rate=self.args.tau_controller_rate, tau_min=self.args.tau_min, tau_max=self.args.tau_max,
            max_steps=self.args.max_steps)
        # The gate's arguments, built once: the loss, its metric tokens and the KL's ratio all read these.
        self.gate_args = {"gate": self.gate, **dict(zip(("tau_pos", "tau_neg"), self.args.gate_taus())),
                          "epsilon_low": self.epsilon_low, "epsilon_high": self.epsilon_high,
                          "level": self.args.importance_sampling_level, "log_ratio_clamp": self.args.log_ratio_clamp}
        self._batch_logs: dict[str, float] = {}
        self._step_tokens: dict[str, list[MetricTokens]] = {"train": [], "eval": []}
        self._prompt_groups_seen = 0  # prompt groups generated so far (all processes): the next group's id
        if self.args.logging_strategy != "steps" or self.args.logging_steps != int(self.args.logging_steps):
            raise ValueError(f"GatedGRPOTrainer logs its step metrics every logging_steps (an integer) steps; got "
                             f"logging_strategy={self.args.logging_strategy!r}, "
                             f"logging_steps={self.args.logging_steps}")
        self.add_callback(_LogLastStep())

    # -- seeds (method §7.8) ----------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def _seeded_vllm_engine(args):
        """While GRPOTrainer.__init__ builds its colocated vLLM engine, TRL's `LLM(..., seed=process_index // tp)`
        gets `seed=vllm_engine_seed(args.seed, ...)` instead, so that runs of different `seed` draw different
        rollouts (TRL 1.16 seeds the engine from the process index alone). `LLM` is replaced in TRL's module, the
        name TRL calls, for the duration of the constructor only."""
        build = getattr(trl_vllm, "LLM", None)  # absent without vLLM (TRL then refuses use_vllm itself)
        if build is None or not isinstance(args, GatedGRPOConfig) or not args.use_vllm or args.vllm_mode != "colocate":
            yield
            return

        def seeded_llm(*llm_args, **llm_kwargs):
            state = PartialState()
            llm_kwargs["seed"] = vllm_engine_seed(args.seed, state.process_index, state.num_processes,
                                                  llm_kwargs["tensor_parallel_size"])
            return build(*llm_args, **llm_kwargs)

        trl_vllm.LLM = seeded_llm
        try:
            yield
        finally:
            trl_vllm.LLM = build

    def _get_train_sampler(self, dataset=None):
        """TRL's prompt sampler (RepeatSampler), its shuffle drawn from `data_seed` instead of `seed`, so that the
        prompts come in the same order for every RL seed (method §7.8)."""
        sampler = super()._get_train_sampler(dataset)
        if not isinstance(sampler, RepeatSampler):
            raise TypeError(f"TRL's train sampler is a {type(sampler).__name__}, not the RepeatSampler of TRL 1.16 "
                            "whose seed GatedGRPOTrainer sets; update _get_train_sampler")
        if sampler.shuffle:  # reseeded before it draws anything
            sampler.seed = self.args.data_seed
            sampler.generator.manual_seed(self.args.data_seed)
        return sampler

    # -- logging ------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, plus: a step that reuses a generated batch (num_iterations > 1) repeats that batch's
        rollout metrics (reward, its components, lengths), so every logged step carries them."""
        mode = "train" if self.model.training else "eval"
        if mode == "train" and "loss" in logs:
            current = {k: [x for x in v if x == x] for k, v in self._metrics[mode].items()
                       if _is_rollout_metric(k) and v}  # (x == x drops NaN, as TRL's averaging does)
            if current:
                self._batch_logs = {k: sum(v) / len(v) if v else None for k, v in current.items()}
                logs["batch/reused"] = 0.0
            else:
                logs.update(self._batch_logs)
                logs["batch/reused"] = 1.0
        if self._step_tokens[mode]:
            tokens = self._gather_tokens(MetricTokens.cat(self._step_tokens[mode]))
            self._step_tokens[mode].clear()
            prefix = "eval_" if mode == "eval" else ""
            logs.update({prefix + k: v for k, v in token_metrics(tokens, self.epsilon_low, self.epsilon_high).items()})
            logs.update({prefix + k: v for k, v in ratio_histogram(tokens.ratio).items()})
            if mode == "train" and not G.is_method(self.gate):  # the step's temperatures, then the controller's update
                logs[M.key("tau/pos")], logs[M.key("tau/neg")] = self.gate_args["tau_pos"], self.gate_args["tau_neg"]
                self.temperature.update(logs["eur"])
        super().log(logs, start_time)

    def _gather_tokens(self, tokens: MetricTokens) -> MetricTokens:
        """The metric tokens of every process (collective: every rank logs the same steps)."""
        if self.accelerator.num_processes == 1:
            return tokens
        counts = self.accelerator.gather(torch.tensor([tokens.ratio.numel()], device=self.accelerator.device))
        longest = int(counts.max())
        parts = []
        for t in tokens:  # pad to a common length, gather, then drop the padding of each process
            padded = torch.zeros(longest, dtype=t.dtype, device=self.accelerator.device)
            padded[:t.numel()] = t
            parts.append(self.accelerator.gather(padded.unsqueeze(0)))
        keep = torch.arange(longest, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
        return MetricTokens(*(p[keep] for p in parts))

    # -- temperatures (method §2.9) ---------------------------------------------------------------------
    def _set_step_taus(self) -> None:
        """The gate's temperatures for the current optimizer step: the schedule's or the controller's base tau, after
        the tau convention."""
        base = self.temperature.taus(self.state.global_step)
        self.gate_args["tau_pos"], self.gate_args["tau_neg"] = self.args.gate_taus(base)

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, its trainer_state.json also holding the temperature controller's state."""
        self.state.stateful_callbacks[TEMPERATURE_STATE] = self.temperature.state()
        super()._save_checkpoint(model, trial)

    def _load_callback_state(self) -> None:
        """On resume (transformers calls this once the checkpoint's TrainerState is loaded): the callbacks' state
        as transformers restores it, and the temperature controller's from the same file."""
        saved = self.state.stateful_callbacks.pop(TEMPERATURE_STATE, None)  # (not a callback: kept from transformers)
        super()._load_callback_state()
        self.temperature.load_state(saved)
        self.state.stateful_callbacks[TEMPERATURE_STATE] = saved

    # -- prompt groups (method §4.1: EUR averages over prompts) -----------------------------------------
    def _generate_and_score_completions(self, inputs):
        """TRL's generation and scoring, plus `prompt_group`: the global id of each completion's prompt."""
        output = super()._generate_and_score_completions(inputs)
        # TRL's global batch is the processes' local batches in rank order, each prompt's completions consecutive
        # and num_generations long (TRL's advantages: rewards.view(-1, num_generations)), so local row j of process
        # p is global row p * len(inputs) + j, of group (p * len(inputs) + j) // num_generations. Ids keep counting
        # over generated batches: a step that spans several (steps_per_generation < gradient_accumulation_steps)
        # keeps their prompts apart. TRL then shuffles and splits the batch into micro-batches; the ids go along.
        size = self.num_generations if self.model.training else self.num_generations_eval
        first = self.accelerator.process_index * len(inputs)
        rows = torch.arange(first, first + len(inputs), device=output["advantages"].device)
        output["prompt_group"] = self._prompt_groups_seen + rows // size
        self._prompt_groups_seen += -(-self.accelerator.num_processes * len(inputs) // size)  # ceil
        return output

    # -- when to pay for metrics ---------------------------------------------------------------------
    def _metrics_wanted(self, mode: str) -> bool:
        """Loss metrics on eval and on the optimizer steps that will be logged (logging_steps, the last step)."""
        if mode == "eval":
            return True
        steps, step = self.args.logging_steps, self.state.global_step + 1
        return steps <= 1 or step % steps == 0 or step == self.state.max_steps

    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        forward_keys = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                        "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")
        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled, **{k: inputs.get(k) for k in forward_keys})

        # Behaviour policy: TRL omits old logps when they equal the current ones (on-policy step).
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:
            old_per_token_logps = per_token_logps.detach()
        token_weights = None
        if self.use_vllm and self.args.vllm_importance_sampling_correction:
            token_weights = inputs["importance_sampling_ratio"]

        mode = "train" if self.model.training else "eval"
        self._set_step_taus()
        loss, _ = policy_loss(per_token_logps, old_per_token_logps, inputs["advantages"], mask, **self.gate_args,
                              aggregation=self.args.aggregation, max_completion_length=self.max_completion_length,
                              compute_metrics=False, token_weights=token_weights)
        if self._metrics_wanted(mode):  # pooled over the step's micro-batches and processes in log()
            self._step_tokens[mode].append(metric_tokens(per_token_logps.detach(), old_per_token_logps,
                                                         inputs["advantages"], mask, **self.gate_args,
                                                         groups=inputs["prompt_group"]))

        if self.beta != 0.0:  # KL to the reference (TRL's k3 estimator), aggregated like the policy term
            ref = inputs["ref_per_token_logps"]
            per_token_kl = torch.exp(ref - per_token_logps) - (ref - per_token_logps) - 1
            if self.args.use_bias_correction_kl:  # TRL's default: the KL of pi_old's samples, reweighted by r
                # the loss's own (clamped, token or sequence level) log-ratio, with its gradient
                # (TRL grpo_trainer.py:3083-3105)
                per_token_kl = per_token_kl * torch.exp(importance_log_ratio(
                    per_token_logps, old_per_token_logps, mask, level=self.gate_args["level"],
                    log_ratio_clamp=self.gate_args["log_ratio_clamp"]))
            keep = mask.bool()
            loss = loss + self.beta * masked_aggregate(per_token_kl, keep, self.args.aggregation,
                                                       self.max_completion_length)
            self._metrics[mode]["kl"].append(self._global_masked_mean(per_token_kl, mask))

        # Gradient-accumulation normaliser, as TRL applies it per loss type.
        if self.args.aggregation == "token_mean":
            # DAPO: divide by the tokens of the whole accumulation window (TRL grpo_trainer.py:3169-3173)
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            loss = loss * mask.sum().clamp(min=1.0) / normalizer
        elif mode == "train":
            loss = loss / self.current_gradient_accumulation_steps

        if self.aux_loss_enabled:
            normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        self._metrics[mode]["entropy"].append(self._global_masked_mean(entropies, mask))
        return loss

    def _global_masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean of `values` over the unmasked tokens of all processes (TRL's token-weighted mean)."""
        totals = self.accelerator.reduce(torch.stack([(values.detach() * mask).sum(), mask.sum().float()]),
                                         reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

