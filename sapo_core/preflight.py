"""The dry run: what a recipe will do and whether it fits one GPU, without loading weights or starting vLLM.

    python -m sapo_core.train --config configs/paper-7b.yaml --gate erf --dry_run \
        [--accelerate_config configs/accelerate/zero3-8gpu.yaml] [--gpu_memory_gb 80]
    python -m sapo_core.batch --config configs/paper-7b.yaml --out runs/paper --dry_run

The plan: the resolved recipe; the model's config (a local directory, or the hub cache: nothing is downloaded);
the training prompts and how many exceed `max_prompt_length`; prompts and completions per optimizer step,
generations, prompts drawn; and a per-GPU memory estimate (docs/gpu.md gives each term and its source):

    weights + gradients + optimizer   16 P / N under ZeRO-3 (N processes), 4 d P without DeepSpeed (d bytes/param)
    ZeRO-3 gathered parameters        2 x 2 bytes x the largest module (the one in use and the one prefetched)
    reference model                   d P (/ N under ZeRO-3), only when beta > 0
    activations                       checkpointed: 2 s b h L + one layer's s b (17 h + 8 I); else every layer's
    LM head                           TRL's chunked head: one [4096, 32768] tile + the head's fp32 gradient
    vLLM (colocate)                   vllm_gpu_memory_utilization x the GPU's memory

with P parameters, s = max_prompt_length + max_completion_length, b = per_device_train_batch_size, h hidden size,
I MLP width, L layers. GB are 2**30 bytes (what nvidia-smi calls an 80 GB card is 80 of them).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sapo_core.checks import check_choice, check_int
from sapo_core.config import GPU_MEMORY_GB, ConfigError, RunConfig

__all__ = ["GB", "LM_HEAD_TILE", "Launch", "memory_estimate", "model_config", "offline", "parameter_counts",
           "plan_text", "prompt_lengths", "read_launch", "step_plan"]

GB = 2**30
# TRL 1.16's chunked LM head (trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE, trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE): the logits exist one [tokens, vocabulary] tile at a time.
LM_HEAD_TILE = (4096, 32768)
ADAM_MIXED_BYTES = 16  # ZeRO (arXiv:1910.02054) §3.1: 2 + 2 bytes of 16-bit weight and gradient, 12 of fp32 Adam


@dataclass(frozen=True)
class Launch:
    """What the memory estimate needs from an accelerate config."""

    name: str
    num_processes: int = 1
    zero_stage: int = 0  # 0: no DeepSpeed
    offload_optimizer: bool = False
    offload_param: bool = False


def read_launch(path: str | None) -> Launch:
    """The processes and ZeRO stage of an accelerate config file (None: one process, no DeepSpeed)."""
    if path is None:
        return Launch("one process, no DeepSpeed (python -m sapo_core.train)")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"accelerate_config={path!r} is not a file (see configs/accelerate/)")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"accelerate_config {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"accelerate_config {path} must be a mapping of key: value")
    deepspeed = data.get("deepspeed_config") or {}
    if not isinstance(deepspeed, dict):
        raise ConfigError(f"accelerate_config {path}: deepspeed_config must be a mapping of key: value, got "
                          f"{type(deepspeed).__name__} {deepspeed!r}")
    try:  # the file's values, as written (a zero_stage of "3" or 2.5 is not read as 3 or 2)
        processes = check_int("num_processes", data.get("num_processes", 1), minimum=1)
        stage = deepspeed.get("zero_stage", 0) if data.get("distributed_type") == "DEEPSPEED" else 0
        check_choice("zero_stage", stage, (0, 1, 2, 3))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"accelerate_config {path}: {err}") from None
    return Launch(file.name, processes, stage, deepspeed.get("offload_optimizer_device", "none") != "none",
                  deepspeed.get("offload_param_device", "none") != "none")


@contextlib.contextmanager
def offline():
    """Hub look-ups read the local cache only (datasets and huggingface_hub), for the length of the block."""
    import datasets
    import huggingface_hub

    with mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True), \
            mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True):
        yield


def model_config(model: str, path: str):
    """The model's config from a local directory or the hub cache; a ConfigError naming what is missing."""
    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        from huggingface_hub.constants import HF_HUB_CACHE

        where = (f"no config.json in the directory {path}" if Path(path).is_dir() else
                 f"{path!r} is neither a local directory nor in the hub cache {HF_HUB_CACHE}")
        raise ConfigError(f"model={model!r}: {where} ({str(err).splitlines()[0][:160]}); the dry run downloads "
                          f"nothing: fetch it first (`hf download {model} config.json tokenizer.json "
                          "tokenizer_config.json`) or give a local directory") from None


def parameter_counts(config) -> tuple[int, int]:
    """(parameters, parameters of the largest module: one decoder layer or an embedding), from a meta-device
    model built from the config (no memory, no weights)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return total, max(layer, embedding)


def prompt_lengths(dataset, tokenizer) -> list[int]:
    """Tokens of each prompt as the trainer feeds it: the chat template applied, the generation prompt added."""
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in dataset["prompt"]]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def step_plan(run: RunConfig, num_processes: int, prompts: int) -> dict[str, float]:
    """Completions and prompts per optimizer step, generations and prompts drawn (TRL's batch arithmetic)."""
    args = run.training
    per_process = args.per_device_train_batch_size * args.gradient_accumulation_steps  # completions per step
    per_step = per_process * num_processes
    generation_batch = args.per_device_train_batch_size * args.steps_per_generation * num_processes
    micro_batches = args.max_steps * args.gradient_accumulation_steps
    generations = math.ceil(micro_batches / (args.steps_per_generation * args.num_iterations))  # method §3: mu
    drawn = generations * generation_batch // args.num_generations
    return {"num_processes": num_processes, "completions_per_step_per_process": per_process,
            "completions_per_step": per_step, "prompts_per_step": per_step / args.num_generations,
            "prompts_per_step_per_process": per_process / args.num_generations,
            "generation_batch": generation_batch, "optimizer_steps": args.max_steps, "generations": generations,
            "prompts_drawn": drawn, "epochs": drawn / prompts if prompts else math.inf}


def memory_estimate(config, run: RunConfig, launch: Launch, gpu_memory_gb: float) -> dict[str, float]:
    """Per-GPU memory terms in GB (docs/gpu.md): weights, gradients and optimizer; gathered parameters; reference
    model; activations; LM head; vLLM; and their total."""
    args, script = run.training, run.script
    params, largest = parameter_counts(config)
    dtype = (args.model_init_kwargs or {}).get("dtype", "float32")
    d = torch.empty((), dtype=getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto"
                    else torch.float32).element_size()
    n = launch.num_processes
    if launch.zero_stage:  # ZeRO §5.1: stage 1 shards the optimizer, 2 also the gradients, 3 also the weights
        weights = 2 * params / (n if launch.zero_stage >= 3 else 1) * (not launch.offload_param)
        grads = 2 * params / (n if launch.zero_stage >= 2 else 1)
        optimizer = 12 * params / n * (not launch.offload_optimizer)
    else:  # plain PyTorch AdamW keeps its two moments in the parameters' dtype, no fp32 master copy
        weights, grads, optimizer = d * params, d * params, 2 * d * params
    gathered = 2 * 2 * largest if launch.zero_stage >= 3 else 0.0
    reference = (d if not launch.zero_stage else 2) * params / (n if launch.zero_stage >= 3 else 1) \
        if args.beta != 0.0 else 0.0
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    s = (script.max_prompt_length or 0) + args.max_completion_length
    b = args.per_device_train_batch_size
    act_bytes = 2 if (args.bf16 or args.fp16) else d
    layer = s * b * (17 * h + 8 * inter) * act_bytes / 2  # Korthikanti et al. 2022 eq. 1 (flash attention, SwiGLU)
    checkpointing = bool(args.activation_checkpointing or args.gradient_checkpointing)
    activations = (act_bytes * s * b * h * layers + layer) if checkpointing else layer * layers
    tokens = min(b * args.max_completion_length, LM_HEAD_TILE[0])
    lm_head = tokens * LM_HEAD_TILE[1] * act_bytes + 4 * config.vocab_size * h  # one tile + fp32 head gradient
    vllm = args.vllm_gpu_memory_utilization * gpu_memory_gb * GB if args.use_vllm and args.vllm_mode == "colocate" \
        else 0.0
    terms = {"weights": weights, "gradients": grads, "optimizer": optimizer, "zero3_gathered": gathered,
             "reference_model": reference, "activations": activations, "lm_head": lm_head, "vllm": vllm}
    out = {k: v / GB for k, v in terms.items()}
    out["total"] = sum(out.values())
    out["parameters"] = params
    out["sequence_length"] = s
    return out


def _tokenizer(path: str):
    """(the tokenizer with its chat template, None) or (None, why not), from the directory or the hub cache."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        return None, str(err).splitlines()[0][:160]
    if not tokenizer.chat_template:
        return None, "no chat template"
    return tokenizer, None


def plan_text(run: RunConfig, path: str, dataset) -> tuple[str, list[str]]:
    """The plan printed by --dry_run (warnings included) and the reasons it cannot train (refusals). Raises
    ConfigError when the model config is missing."""
    script, args = run.script, run.training
    launch = read_launch(script.accelerate_config)
    config = model_config(script.model, path)
    lines = [f"dry run: {run.config_path or '(no config file)'}, gate {args.gate}, seed {args.seed}; run directory "
             f"{run.run_dir} (not created)", "recipe (the keys set by the config file and the flags):"]
    lines += [f"  {k}: {v}" for k, v in run.recipe.items()]
    tau_pos, tau_neg = args.gate_taus()
    lines.append(f"  -> tau as run: ({tau_pos:g}, {tau_neg:g}), loss_type {args.loss_type}, steps_per_generation "
                 f"{args.steps_per_generation}")
    lines.append(f"model: {script.model} ({path}): {config.model_type}, hidden {config.hidden_size}, layers "
                 f"{config.num_hidden_layers}, MLP {config.intermediate_size}, heads {config.num_attention_heads} "
                 f"(KV {getattr(config, 'num_key_value_heads', config.num_attention_heads)}), vocabulary "
                 f"{config.vocab_size}, tied embeddings {config.tie_word_embeddings}")
    warnings, refusals = [], []
    lines.append(f"data: {script.dataset}, {len(dataset)} training prompts")
    tokenizer, why = _tokenizer(path)
    if tokenizer is None:
        lines.append(f"prompt lengths: not checked, no tokenizer in {path} or the hub cache ({why})")
    else:
        lengths = prompt_lengths(dataset, tokenizer)
        over = sum(n > script.max_prompt_length for n in lengths) if script.max_prompt_length else 0
        lines.append(f"prompt tokens: min {min(lengths)}, median {sorted(lengths)[len(lengths) // 2]}, max "
                     f"{max(lengths)}; max_prompt_length {script.max_prompt_length}: {over} would be dropped")
        if over == len(lengths):
            refusals.append(f"every prompt is longer than max_prompt_length={script.max_prompt_length}")
    plan = step_plan(run, launch.num_processes, len(dataset))
    lines.append(f"steps ({launch.num_processes} process(es)): {plan['completions_per_step_per_process']} "
                 f"completions and {plan['prompts_per_step_per_process']:g} prompts per optimizer step per process "
                 f"({plan['completions_per_step']} and {plan['prompts_per_step']:g} in all); "
                 f"{plan['optimizer_steps']} optimizer steps, {plan['generations']} generations of "
                 f"{plan['generation_batch']} completions, {plan['prompts_drawn']} prompts drawn "
                 f"({plan['epochs']:.2f} epochs)")
    gpu_memory_gb = GPU_MEMORY_GB if script.gpu_memory_gb is None else script.gpu_memory_gb
    mem = memory_estimate(config, run, launch, gpu_memory_gb)
    lines.append(f"memory per GPU ({launch.name}, {mem['parameters'] / 1e9:.3g}B parameters, sequence "
                 f"{mem['sequence_length']} tokens; docs/gpu.md), GB:")
    lines += [f"  {k:16s}{mem[k]:9.3f}" for k in ("weights", "gradients", "optimizer", "zero3_gathered",
                                                  "reference_model", "activations", "lm_head", "vllm", "total")]
    if mem["total"] > gpu_memory_gb:
        warnings.append(f"the estimate, {mem['total']:.1f} GB, exceeds the GPU's {gpu_memory_gb:g} GB "
                        "(--gpu_memory_gb): shard over more processes (ZeRO-3), lower vllm_gpu_memory_utilization "
                        "or the batch")
    if script.max_prompt_length is None:
        warnings.append("max_prompt_length is unset: the activation estimate counts completions only")
    return "\n".join(lines + [f"warning: {w}" for w in warnings]), refusals
