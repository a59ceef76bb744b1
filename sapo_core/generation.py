"""Generation backends (method §6): prompts in, `n` sampled completions per prompt out.

`hf` (`HFGenerator`: batched `model.generate`, left padding, prompts sorted by length, each prompt encoded
once and read once per step for its n samples, sapo_core.prefix_attention; CPU or GPU), `vllm`
(`VLLMGenerator`: one `vllm.LLM`, the GPU extra) and `auto` (vLLM when CUDA and vLLM are present, else hf).
Any object with `generate` and `info` (`Generator`) can stand in (the tests plug in an oracle that answers
every problem with its gold).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import platform
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from sapo_core import prefix_attention as PA
from sapo_core.benchmarks import EvaluationError
from sapo_core.checks import check_bool, check_int

__all__ = ["BACKENDS", "CPU_HF_BATCH", "DEFAULT_HF_BATCH", "BackendUnavailableError", "Completion", "Generator",
           "HFGenerator", "VLLMGenerator", "import_vllm", "make_generator", "sampling_config"]

BACKENDS = ("auto", "hf", "vllm")
DEFAULT_HF_BATCH = 128  # sequences (prompts x n) per `model.generate` call on an accelerator
# On CPU the key/value cache lives in ordinary memory and a decoding step's matrices are small: 256 rows per step
# gave 10-20 % more completions per second than 128 with 2 threads (the same with 1), benchmarks/bench_eval.py.
CPU_HF_BATCH = 256


class BackendUnavailableError(RuntimeError):
    """A backend whose package is not installed (the message names the extra that brings it)."""


class Completion(NamedTuple):
    """One sampled completion: its text (decoded without special tokens), length in tokens, and whether
    generation stopped at max_new_tokens rather than at the end-of-sequence token."""

    text: str
    num_tokens: int | None
    truncated: bool = False


class Generator(Protocol):
    """A backend: `n` completions for each prompt (a list of chat messages), and a description of itself."""

    def generate(self, prompts: Sequence[list[dict[str, str]]], *, n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int, progress: bool = True) -> list[list[Completion]]: ...

    def info(self) -> dict[str, Any]: ...


def _render(tokenizer, prompts: Sequence[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each prompt: the chat template with the generation prompt, as TRL renders them."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _eos_ids(model, tokenizer) -> list[int]:
    """Every end-of-sequence id of the model's generation config and the tokenizer."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def sampling_config(model, tokenizer, *, n: int, temperature: float, top_p: float, max_new_tokens: int):
    """A `GenerationConfig` that sets every sampling knob, so the checkpoint's own defaults (e.g. Qwen's
    top_k 20 and repetition penalty 1.05) never leak in: plain temperature / top-p sampling as in vLLM."""
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    greedy = temperature == 0
    knobs = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_p": top_p,
                                                 "top_k": 0, "min_p": None, "typical_p": 1.0}
    return GenerationConfig(**knobs, repetition_penalty=1.0, num_return_sequences=n, max_new_tokens=max_new_tokens,
                            eos_token_id=eos, pad_token_id=pad)


class HFGenerator:
    """transformers backend: prompts sorted by length into batches of `batch_size` sequences, left padded,
    `num_return_sequences = n`, on the model's device; its own RNG stream (the caller's is untouched)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, share_prompt_cache: bool = True):
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
        self.share_prompt_cache = check_bool("share_prompt_cache", share_prompt_cache)  # False: plain generate
        self.model, self.tokenizer = model, tokenizer
        if batch_size is None:
            batch_size = CPU_HF_BATCH if model.device.type == "cpu" else DEFAULT_HF_BATCH
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, batch_size: int | None = None) -> HFGenerator:
        """Load model and tokenizer from `path` (a directory or hub id); on CUDA when there is one."""
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        except (OSError, ValueError) as err:
            raise EvaluationError(f"model {str(path)!r} cannot be loaded: {str(err).splitlines()[0]}") from None
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(model.eval(), tokenizer, batch_size=batch_size)

    def info(self) -> dict[str, Any]:
        device = self.model.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        return {"name": self.name, "version": f"transformers {transformers.__version__}", "device": str(device),
                "device_name": name, "dtype": str(self.model.dtype).removeprefix("torch."),
                "batch_size": self.batch_size, "share_prompt_cache": self.share_prompt_cache}

    def generate(self, prompts, *, n, temperature, top_p, max_new_tokens, seed, progress=True):
        tok, model = self.tokenizer, self.model
        config = sampling_config(model, tok, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        eos = set(config.eos_token_id)
        ids = _render(tok, prompts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: memory trouble shows at once
        per_batch = max(1, self.batch_size // n)
        out: list[list[Completion] | None] = [None] * len(ids)
        was_training = model.training
        model.eval()
        # fork_rng(devices=[]) alone would leave a CUDA generator reseeded by manual_seed: fork the model's too.
        devices = [model.device] if model.device.type == "cuda" else []
        bar = tqdm(total=len(ids) * n, desc=f"generate (hf, n={n})", unit="sample", disable=not progress)
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(seed)
                for start in range(0, len(order), per_batch):
                    batch = order[start:start + per_batch]
                    enc = tok.pad({"input_ids": [ids[i] for i in batch]}, padding=True, padding_side="left",
                                  return_tensors="pt").to(model.device)
                    gen = self._generate(enc, config, n)
                    gen = gen[:, enc["input_ids"].shape[1]:].tolist()
                    for row, i in enumerate(batch):
                        out[i] = [self._completion(gen[row * n + j], eos, max_new_tokens) for j in range(n)]
                    bar.update(len(batch) * n)
        finally:
            bar.close()
            model.train(was_training)
        return out

    def _generate(self, enc, config, n: int):
        """`model.generate` of n samples per prompt (rows grouped by prompt).

        With n > 1 each prompt is encoded once, and decoding reads its keys and values once for its n samples
        (sapo_core.prefix_attention, as vLLM's prefix caching does): on CPU the attention of a plain cache, which
        holds each prompt n times, was most of a decoding step. Models that cannot use it decode plainly."""
        model, ids, mask = self.model, enc["input_ids"], enc["attention_mask"]
        if n == 1 or ids.shape[1] < 2 or not self.share_prompt_cache or not PA.can_switch(model):
            return model.generate(**enc, generation_config=config)
        head = mask[:, :-1]  # every prompt token but the last; generate starts from the last one
        prompt = model(input_ids=ids[:, :-1], attention_mask=head, position_ids=(head.cumsum(-1) - 1).clamp(min=0),
                       use_cache=True, logits_to_keep=1).cache
        if not PA.supports(model, prompt):
            return model.generate(**enc, generation_config=config)
        # the last prompt token and every generated one but the last pass through the cache
        cache = PA.shared_prefix_cache(prompt, head, n, capacity=config.max_new_tokens)
        single = copy.deepcopy(config)
        single.num_return_sequences = 1  # the rows are repeated here
        before = model.config._attn_implementation
        model.set_attn_implementation(PA.ATTENTION)
        try:
            return model.generate(input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                                  cache=cache, generation_config=single)
        finally:
            model.set_attn_implementation(before)

    def _completion(self, tokens: list[int], eos: set[int], max_new_tokens: int) -> Completion:
        """Tokens up to and including the first end-of-sequence token (the rest is padding), decoded."""
        end = next((i + 1 for i, t in enumerate(tokens) if t in eos), None)
        kept = tokens[:end] if end is not None else tokens
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text, len(kept), end is None and len(kept) >= max_new_tokens)


def import_vllm():
    """The vllm module, or an error naming the extra that installs it."""
    try:
        import vllm
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend 'vllm' needs vLLM, which cannot be imported ({err}); install the GPU extra: "
            "pip install -e '.[gpu]' (or conda env create -f environment.yml), or use --backend hf") from None
    return vllm


class VLLMGenerator:
    """vLLM backend: one `vllm.LLM` per model; `generate` with explicit `SamplingParams` (vLLM's default
    max_tokens is 16) and a seed per problem, so a problem's samples do not depend on the others."""

    name = "vllm"

    def __init__(self, path: str | os.PathLike, *, tensor_parallel_size: int = 1, seed: int = 0,
                 max_model_len: int | None = None):
        vllm = import_vllm()
        self.vllm, self.path, self.tensor_parallel_size = vllm, str(path), tensor_parallel_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.llm = vllm.LLM(model=self.path, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype="auto",
                            max_model_len=max_model_len)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": f"vllm {self.vllm.__version__}", "device": "cuda",
                "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "dtype": str(self.llm.llm_engine.model_config.dtype).removeprefix("torch."),
                "tensor_parallel_size": self.tensor_parallel_size}

    def generate(self, prompts, *, n, temperature, top_p, max_new_tokens, seed, progress=True):
        ids = _render(self.tokenizer, prompts)
        params = [self.vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                           seed=seed * 1_000_003 + i, skip_special_tokens=True)
                  for i in range(len(ids))]
        outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], sampling_params=params,
                                    use_tqdm=progress)
        # Decoded by our tokenizer exactly as TRL decodes rollouts (skip_special_tokens=True).
        return [[Completion(self.tokenizer.decode(o.token_ids, skip_special_tokens=True), len(o.token_ids),
                            o.finish_reason == "length") for o in request.outputs] for request in outputs]


def make_generator(path: str | os.PathLike, backend: str = "auto", *, batch_size: int | None = None,
                   tensor_parallel_size: int = 1, seed: int = 0) -> Generator:
    """The backend for a model on disk or on the hub: `auto` = vLLM when CUDA and vLLM are present, else hf."""
    if backend not in BACKENDS:
        raise EvaluationError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"
    if backend == "vllm":
        return VLLMGenerator(path, tensor_parallel_size=tensor_parallel_size, seed=seed)
    return HFGenerator.from_pretrained(path, batch_size=batch_size)
