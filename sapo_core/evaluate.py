"""Benchmark evaluation with the paper's protocol (method §6): sampled accuracy with its uncertainty.

For each benchmark every problem is posed with the training prompt (`sapo_core.prompts`), answered `n`
times (temperature 0.7 by default; temperature 0 is greedy with n = 1) and each answer is scored by the
training grader (`sapo_core.rewards.correctness_reward`), so training and evaluation cannot drift apart.
Per benchmark the results hold

    mean@n   mean score over all samples: the pass@1 estimate, with a 95% percentile-bootstrap interval
             over problems (scipy.stats.bootstrap, seeded)
    pass@k   unbiased pass@k for k = 1, 2, 4, ..., n:  mean over problems of 1 - C(n - c, k) / C(n, k),
             c = correct samples of the problem (Chen et al. 2021)
    maj@n    score of the majority answer (extracted answers in the grader's string normal form; a tie
             goes to the answer that appeared first)
    and the format rate, mean completion length (tokens), share cut at max_new_tokens, problems, samples.

Backends (`Generator`: prompts in, `n` completions per prompt out): `hf` (batched `model.generate`,
left padding, prompts sorted by length, CPU or GPU), `vllm` (one `vllm.LLM`, the GPU extra) and `auto`
(vLLM when CUDA and vLLM are present, else hf). Any object with `generate` and `info` can stand in
(the tests plug in an oracle that answers every problem with its gold).

    python -m sapo_core.evaluate --model tiny --benchmarks synthetic
    python -m sapo_core.evaluate --model runs/tiny-cpu/erf-equal-seed0        # writes RUN_DIR/eval/<settings>/
    python -m sapo_core.evaluate --model Qwen/Qwen2.5-7B-Instruct --benchmarks gsm8k,math500,aime24,aime25 \
        --backend vllm
    python -m sapo_core.evaluate --regrade DIR                                # rescore DIR/samples.jsonl

An evaluation directory holds `results.json` (metrics per benchmark, settings, backend, model and its
run's provenance, package versions, git commit) and `samples.jsonl` (one line per sample); results.json
is rewritten after each finished benchmark, so a crash loses no finished benchmark. A directory that
holds results is never overwritten.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from scipy import stats

from sapo_core.paths import runs_dir, write_atomic
from sapo_core.prompts import SYSTEM_PROMPT, USER_TEMPLATE
from sapo_core.provenance import git_commit, package_versions
from sapo_core.rewards import correctness_reward, extract_answer, format_reward, normalize_gold

__all__ = [
    "BENCHMARKS", "BACKENDS", "Benchmark", "SyntheticTask", "Completion", "Generator", "HFGenerator",
    "VLLMGenerator", "EvaluationError", "BackendUnavailableError", "Evaluation", "ModelSource",
    "pass_at_k", "pass_at_k_values", "majority_vote", "mean_interval", "benchmark_metrics",
    "load_benchmark", "resolve_model", "make_generator", "evaluate", "write_records", "read_records",
    "regrade", "default_out_dir", "results_rows", "format_table", "example_samples", "EvalArguments", "main",
]

logger = logging.getLogger(__name__)

RESULTS, SAMPLES = "results.json", "samples.jsonl"
BACKENDS = ("auto", "hf", "vllm")
CONFIDENCE_LEVEL = 0.95
N_RESAMPLES = 10_000
INTERVAL_METHOD = "percentile bootstrap over problems (scipy.stats.bootstrap)"
PACKAGES = ("sapo_core", "torch", "transformers", "trl", "datasets", "math-verify", "scipy", "vllm")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
DEFAULT_HF_BATCH = 128  # sequences (prompts x n) per `model.generate` call


class EvaluationError(ValueError):
    """A bad evaluation input (benchmark, backend, n, temperature, model path, output directory)."""


class BackendUnavailableError(RuntimeError):
    """A backend whose package is not installed (the message names the extra that brings it)."""


# ------------------------------------------------------------------------------------ benchmarks


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its default number of samples per problem and generation budget."""

    name: str
    default_n: int        # samples per problem; sized so the interval is useful (AIME: 30 problems)
    max_new_tokens: int   # generation budget per sample
    description: str


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("gsm8k", 1, 2048, "GSM8K test, 1319 grade-school word problems"),
    Benchmark("math500", 4, 2048, "MATH-500, 500 competition problems"),
    Benchmark("aime24", 32, 2048, "AIME 2024 I+II, 30 problems"),
    Benchmark("aime25", 32, 2048, "AIME 2025 I+II, 30 problems"),
    Benchmark("synthetic", 8, 64, "held-out synthetic arithmetic (the tiny model's task)"),
)}


@dataclass(frozen=True)
class SyntheticTask:
    """The held-out synthetic set (`data.synthetic_arithmetic`); defaults are configs/tiny-cpu.yaml's."""

    size: int = 200          # problems (a recipe's eval_size)
    data_seed: int = 0       # a recipe's data_seed
    min_steps: int = 1
    max_steps: int = 1       # a recipe's synthetic_max_steps
    max_operand: int = 9     # a recipe's synthetic_max_operand
    split: str = "test"

    def __post_init__(self):
        # Named by the recipe keys / CLI flags that set them.
        for name, flag, least in (("size", "eval_size", 1), ("data_seed", "data_seed", 0), ("min_steps", None, 1),
                                  ("max_steps", "synthetic_max_steps", 1), ("max_operand", "synthetic_max_operand", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                named = f"{name} (--{flag})" if flag else name
                raise EvaluationError(f"synthetic task: {named} must be an integer >= {least}, got {value!r}")
        if self.min_steps > self.max_steps:
            raise EvaluationError(f"synthetic task: min_steps {self.min_steps} exceeds max_steps "
                                  f"(--synthetic_max_steps) {self.max_steps}")
        if self.split not in ("train", "test"):
            raise EvaluationError(f"synthetic task: split must be 'train' or 'test', got {self.split!r}")


def load_benchmark(name: str, *, data_dir: str | os.PathLike | None = None, synthetic: SyntheticTask | None = None,
                   limit: int | None = None):
    """The benchmark's dataset (columns prompt, answer, source, id), its first `limit` problems if given."""
    from sapo_core import data

    if name not in BENCHMARKS:
        raise EvaluationError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    if name == "synthetic":
        task = synthetic or SyntheticTask()
        ds = data.synthetic_arithmetic(task.size, task.data_seed, min_steps=task.min_steps, max_steps=task.max_steps,
                                       max_operand=task.max_operand, split=task.split)
    elif name == "gsm8k":
        ds = data.gsm8k("test", data_dir=data_dir)
    else:
        ds = getattr(data, name)(data_dir=data_dir)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


# -------------------------------------------------------------------------------------- metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct out of n samples: 1 - C(n - c, k) / C(n, k)."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k needs integers, got n={n!r}, c={c!r}, k={k!r}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"the number of correct samples must lie in [0, n={n}], got c={c}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_values(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks if ks[-1] == n else [*ks, n]


def majority_vote(answers: Sequence[str | None], scores: Sequence[float]) -> tuple[str | None, float]:
    """(majority answer, its score): answers compared in the grader's string normal form, samples without an
    answer do not vote, a tie goes to the answer that appeared first; (None, 0.0) when nobody answered."""
    keys = [None if a is None else normalize_gold(a) for a in answers]
    votes = Counter(k for k in keys if k)
    if not votes:
        return None, 0.0
    top = max(votes.values())
    winner = next(k for k in keys if k and votes[k] == top)  # first to appear among the most voted
    return winner, float(scores[keys.index(winner)])


def mean_interval(per_problem: Sequence[float], seed: int) -> list[float] | None:
    """95% percentile-bootstrap interval for the mean of the per-problem scores (None for < 2 problems)."""
    values = np.asarray(per_problem, dtype=float)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):  # every resample has the same mean
        return [float(values[0]), float(values[0])]
    res = stats.bootstrap((values,), np.mean, confidence_level=CONFIDENCE_LEVEL, n_resamples=N_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def benchmark_metrics(samples: Sequence[dict], n: int, *, seed: int = 0) -> dict[str, Any]:
    """Metrics of one benchmark from its sample records (`n` per problem, in sample order)."""
    problems: dict[str, list[dict]] = {}
    for s in samples:
        problems.setdefault(s["problem_id"], []).append(s)
    wrong = {pid: len(rows) for pid, rows in problems.items() if len(rows) != n}
    if wrong:
        raise ValueError(f"every problem needs n={n} samples; {len(wrong)} do not, e.g. {next(iter(wrong.items()))}")
    # A gold the grader cannot parse scores None (cannot be judged): such problems are left out and counted.
    judged = {pid: rows for pid, rows in problems.items() if all(r["score"] is not None for r in rows)}
    scores = [[float(r["score"]) for r in rows] for rows in judged.values()]
    correct = [sum(s == 1.0 for s in row) for row in scores]
    per_problem = [sum(row) / n for row in scores]
    majority = [majority_vote([r["extracted_answer"] for r in rows], [r["score"] for r in rows])[1]
                for rows in judged.values()]
    lengths = [s["num_tokens"] for s in samples if s.get("num_tokens") is not None]
    mean = sum(per_problem) / len(per_problem) if per_problem else None
    return {
        "n": n,
        "n_problems": len(judged),
        "n_samples": len(judged) * n,
        "n_unjudged": len(problems) - len(judged),
        "mean@n": mean,
        "mean@n_ci95": mean_interval(per_problem, seed),
        "pass@k": {str(k): sum(pass_at_k(n, c, k) for c in correct) / len(correct) if correct else None
                   for k in pass_at_k_values(n)},
        "maj@n": sum(majority) / len(majority) if majority else None,
        "format_rate": sum(s["format"] for s in samples) / len(samples) if samples else None,
        "mean_length": sum(lengths) / len(lengths) if lengths else None,
        "truncated_rate": sum(bool(s.get("truncated")) for s in samples) / len(samples) if samples else None,
    }


# ------------------------------------------------------------------------------------- backends


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
    from transformers import GenerationConfig

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
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size or DEFAULT_HF_BATCH
        self.share_prompt_cache = share_prompt_cache  # False: plain `generate(num_return_sequences=n)`

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, batch_size: int | None = None) -> HFGenerator:
        """Load model and tokenizer from `path` (a directory or hub id); on CUDA when there is one."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        except (OSError, ValueError) as err:
            raise EvaluationError(f"model {str(path)!r} cannot be loaded: {str(err).splitlines()[0]}") from None
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(model.eval(), tokenizer, batch_size=batch_size)

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        device = self.model.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        return {"name": self.name, "version": f"transformers {transformers.__version__}", "device": str(device),
                "device_name": name, "dtype": str(self.model.dtype).removeprefix("torch."),
                "batch_size": self.batch_size, "share_prompt_cache": self.share_prompt_cache}

    def generate(self, prompts, *, n, temperature, top_p, max_new_tokens, seed, progress=True):
        import torch
        from tqdm.auto import tqdm

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
                    gen = self._generate(enc, config, n)[:, enc["input_ids"].shape[1]:].tolist()
                    for row, i in enumerate(batch):
                        out[i] = [self._completion(gen[row * n + j], eos, max_new_tokens) for j in range(n)]
                    bar.update(len(batch) * n)
        finally:
            bar.close()
            model.train(was_training)
        return out

    def _generate(self, enc, config, n: int):
        """`model.generate` of n samples per prompt (rows grouped by prompt). With n > 1 each prompt is encoded
        once and its key/value cache repeated for its n samples, as vLLM's prefix caching does: the encoding
        of the prompt, most of the work for short answers, is not done n times over."""
        model, ids, mask = self.model, enc["input_ids"], enc["attention_mask"]
        if n == 1 or ids.shape[1] < 2 or not self.share_prompt_cache:
            return model.generate(**enc, generation_config=config)
        head = mask[:, :-1]  # every prompt token but the last; generate starts from the last one
        prefix = model(input_ids=ids[:, :-1], attention_mask=head, position_ids=(head.cumsum(-1) - 1).clamp(min=0),
                       use_cache=True, logits_to_keep=1)
        cache = prefix.cache
        cache.batch_repeat_interleave(n)
        single = copy.deepcopy(config)
        single.num_return_sequences = 1  # the rows are already repeated
        return model.generate(input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                              cache=cache, generation_config=single)

    def _completion(self, tokens: list[int], eos: set[int], max_new_tokens: int) -> Completion:
        """Tokens up to and including the first end-of-sequence token (the rest is padding), decoded."""
        end = next((i + 1 for i, t in enumerate(tokens) if t in eos), None)
        kept = tokens[:end] if end is not None else tokens
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text, len(kept), end is None and len(kept) >= max_new_tokens)


def _import_vllm():
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
        from transformers import AutoTokenizer

        vllm = _import_vllm()
        self.vllm, self.path, self.tensor_parallel_size = vllm, str(path), tensor_parallel_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.llm = vllm.LLM(model=self.path, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype="auto",
                            max_model_len=max_model_len)

    def info(self) -> dict[str, Any]:
        import torch

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


# ------------------------------------------------------------------------------------------ model


@dataclass
class ModelSource:
    """Where the model comes from: the argument as given, the checkpoint path or hub id, and the run
    (directory and provenance) when it is a training run's `final/`."""

    given: str
    path: str
    run_dir: str | None = None
    run: dict | None = None

    @property
    def label(self) -> str:
        """A short name for directory paths: 'tiny', the run's or checkpoint's directory name, or the hub id."""
        if self.given == "tiny":
            return "tiny"
        if self.run_dir:
            return Path(self.run_dir).name
        return re.sub(r"[^\w.+-]+", "_", self.given.strip("/").replace("/", "__"))


def run_synthetic_task(source: ModelSource) -> SyntheticTask | None:
    """A training run's own held-out synthetic set (its config.yaml's eval_size, data_seed and task), so that a
    run is evaluated on the problems its recipe held out; None when the model is not a run's."""
    import yaml

    config = Path(source.run_dir) / "config.yaml" if source.run_dir else None
    if config is None or not config.is_file():
        return None
    recipe = yaml.safe_load(config.read_text()) or {}
    if not isinstance(recipe, dict) or recipe.get("dataset", "synthetic") != "synthetic":
        return None
    from sapo_core.config import GatedGRPOConfig, ScriptArguments  # a key the run did not set had these defaults

    def value(key, holder=ScriptArguments):
        return recipe.get(key, holder.__dataclass_fields__[key].default)

    return SyntheticTask(size=value("eval_size"), data_seed=value("data_seed", GatedGRPOConfig),
                         max_steps=value("synthetic_max_steps"), max_operand=value("synthetic_max_operand"))


def _has_weights(path: Path) -> bool:
    return any(any(path.glob(pattern)) for pattern in WEIGHT_FILES)


def resolve_model(model: str | os.PathLike) -> ModelSource:
    """'tiny', a checkpoint directory, a training run directory (its `final/`), or a hub id."""
    given = str(model)
    if given == "tiny":
        from sapo_core.tiny import base_model_path
        return ModelSource(given, str(base_model_path()))
    path = Path(given).expanduser()
    if not path.exists():
        if given.startswith(("/", ".", "~")) or given.count("/") != 1:
            raise EvaluationError(f"model {given!r} is not a directory, 'tiny' or a hub id (owner/name)")
        return ModelSource(given, given)  # a hub id such as Qwen/Qwen2.5-7B-Instruct
    if not path.is_dir():
        raise EvaluationError(f"model {given!r} is not a directory")
    run_dir = None
    if (path / "provenance.json").is_file() or (path / "final").is_dir():  # a training run directory
        run_dir, path = path, path / "final"
        if not path.is_dir():
            status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").is_file() else {}
            raise EvaluationError(f"run directory {given!r} has no final/ model (status: {status.get('state', '?')})")
    elif path.name == "final" and (path.parent / "provenance.json").is_file():  # a run's final/ given directly
        run_dir = path.parent
    if not (path / "config.json").is_file() or not _has_weights(path):
        raise EvaluationError(f"model path {str(path)!r} holds no model weights (config.json and "
                              f"{' or '.join(WEIGHT_FILES[:2])})")
    run = json.loads((run_dir / "provenance.json").read_text()) if run_dir and (run_dir / "provenance.json").is_file() \
        else None
    return ModelSource(given, str(path.resolve()), str(run_dir.resolve()) if run_dir else None, run)


def make_generator(source: ModelSource, backend: str = "auto", *, batch_size: int | None = None,
                   tensor_parallel_size: int = 1, seed: int = 0) -> Generator:
    """The backend for a model on disk or on the hub: `auto` = vLLM when CUDA and vLLM are present, else hf."""
    if backend not in BACKENDS:
        raise EvaluationError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "auto":
        import torch
        backend = "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"
    if backend == "vllm":
        return VLLMGenerator(source.path, tensor_parallel_size=tensor_parallel_size, seed=seed)
    return HFGenerator.from_pretrained(source.path, batch_size=batch_size)


# ------------------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """What one evaluation produced: `results` (results.json) and `samples` (samples.jsonl, one per sample)."""

    results: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, benchmark: str) -> dict[str, Any]:
        """The metrics of one benchmark."""
        return self.results["benchmarks"][benchmark]


def check_settings(benchmarks: Sequence[str], n: int | None, temperature: float, top_p: float,
                    max_new_tokens: int | None, limit: int | None, backend: str, batch_size: int | None,
                    tensor_parallel_size: int, seed: int) -> list[str]:
    """The benchmark list, or an EvaluationError naming the first bad setting."""
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",")]
    benchmarks = list(benchmarks)
    if not benchmarks:
        raise EvaluationError(f"no benchmark given; available: {', '.join(BENCHMARKS)}")
    for name in benchmarks:
        if name not in BENCHMARKS:
            raise EvaluationError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    if len(set(benchmarks)) != len(benchmarks):
        raise EvaluationError(f"a benchmark is listed twice: {', '.join(benchmarks)}")
    if backend not in BACKENDS:
        raise EvaluationError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if (not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not math.isfinite(temperature)
            or temperature < 0):
        raise EvaluationError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1:
        raise EvaluationError(f"top_p must lie in (0, 1], got {top_p!r}")
    for name, value in (("n", n), ("max_new_tokens", max_new_tokens), ("limit", limit), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise EvaluationError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise EvaluationError(f"tensor_parallel_size must be an integer >= 1, got {tensor_parallel_size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise EvaluationError(f"seed must be an integer >= 0, got {seed!r}")
    if temperature == 0 and n not in (None, 1):
        raise EvaluationError(f"temperature 0 is greedy decoding, one completion per problem: n must be 1, got {n}")
    return benchmarks


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"output {str(out)!r} exists and is not a directory")
    held = [name for name in (RESULTS, SAMPLES) if (out / name).exists()]
    if held:
        raise EvaluationError(f"{out} already holds {' and '.join(held)}; an evaluation directory is never "
                              "overwritten: choose another --out")


def evaluate(model, benchmarks: Sequence[str] | str = ("synthetic",), *, tokenizer=None, n: int | None = None,
             temperature: float = 0.7, top_p: float = 1.0, max_new_tokens: int | None = None, backend: str = "auto",
             seed: int = 0, limit: int | None = None, batch_size: int | None = None, tensor_parallel_size: int = 1,
             data_dir: str | os.PathLike | None = None, synthetic: SyntheticTask | None = None,
             out: str | os.PathLike | None = None, progress: bool = True) -> Evaluation:
    """Evaluate `model` on `benchmarks` (method §6) and return the results and samples; also write them to
    `out` (created; refused when it already holds results) when given.

    `model`: a path, 'tiny', a training run directory (its final/), a hub id, an in-memory transformers
    model (with `tokenizer`; hf backend, e.g. the trainer's policy), or a `Generator`. `n`: samples per
    problem (default per benchmark, 1 at temperature 0); `max_new_tokens` and `n` default per benchmark
    (BENCHMARKS); `limit`: the first K problems of each; `synthetic`: the synthetic task's parameters.
    """
    names = check_settings(benchmarks, n, temperature, top_p, max_new_tokens, limit, backend, batch_size,
                            tensor_parallel_size, seed)
    # Every input is checked and loaded before anything is written: a bad one leaves no directory.
    source, generator = _model_and_generator(model, tokenizer, backend, batch_size, tensor_parallel_size, seed)
    synthetic = synthetic or run_synthetic_task(source) or SyntheticTask()
    datasets = {name: load_benchmark(name, data_dir=data_dir, synthetic=synthetic, limit=limit) for name in names}
    out = Path(out) if out is not None else None
    if out is not None:
        _check_out(out)
    generator = generator or make_generator(source, backend, batch_size=batch_size,
                                            tensor_parallel_size=tensor_parallel_size, seed=seed)
    results = {
        "model": dataclasses.asdict(source),
        "benchmarks": {},
        "settings": {"benchmarks": names, "temperature": temperature, "top_p": top_p, "seed": seed, "limit": limit,
                     "n": n, "max_new_tokens": max_new_tokens, "data_dir": None if data_dir is None else str(data_dir),
                     "synthetic": dataclasses.asdict(synthetic) if "synthetic" in names else None,
                     "interval": {"method": INTERVAL_METHOD, "confidence_level": CONFIDENCE_LEVEL,
                                  "n_resamples": N_RESAMPLES, "seed": seed}},
        "backend": generator.info(),
        "prompt": {"system": SYSTEM_PROMPT, "user": USER_TEMPLATE},
        "grader": "sapo_core.rewards.correctness_reward",
        **_provenance(),
        "complete": False,
    }
    evaluation = Evaluation(results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec, ds = BENCHMARKS[name], datasets[name]
        k = 1 if temperature == 0 else n or spec.default_n
        budget = max_new_tokens or spec.max_new_tokens
        start = time.perf_counter()
        logger.info("%s: %d problems x %d samples (T=%g, top_p=%g, max_new_tokens=%d)", name, len(ds), k,
                    temperature, top_p, budget)
        completions = generator.generate(ds["prompt"], n=k, temperature=temperature, top_p=top_p,
                                         max_new_tokens=budget, seed=seed, progress=progress)
        if len(completions) != len(ds) or any(len(c) != k for c in completions):
            raise RuntimeError(f"backend {generator.info()['name']!r} returned a wrong number of completions")
        seconds = time.perf_counter() - start
        samples = [{"benchmark": name, "problem_id": pid, "sample": j, "completion": c.text, "num_tokens": c.num_tokens,
                    "truncated": c.truncated, "gold": gold}
                   for pid, gold, row in zip(ds["id"], ds["answer"], completions) for j, c in enumerate(row)]
        _grade(samples)
        metrics = benchmark_metrics(samples, k, seed=seed)
        metrics.update(max_new_tokens=budget, generation_seconds=round(seconds, 3))
        results["benchmarks"][name] = metrics
        evaluation.samples.extend(samples)
        if out is not None:  # each finished benchmark is on disk before the next one starts
            with (out / SAMPLES).open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
            _write_json(out / RESULTS, results)
    results["complete"] = True
    if out is not None:
        _write_json(out / RESULTS, results)
    return evaluation


def _model_and_generator(model, tokenizer, backend, batch_size, tensor_parallel_size, seed):
    """(ModelSource, a ready generator or None to build one later from the source)."""
    import torch

    if isinstance(model, torch.nn.Module):  # an in-memory model, e.g. the trainer's policy
        if tokenizer is None:
            raise EvaluationError("an in-memory model needs its tokenizer: evaluate(model, ..., tokenizer=tok)")
        if backend == "vllm":
            raise EvaluationError("backend 'vllm' loads a model from disk; an in-memory model uses backend 'hf'")
        name = getattr(model, "name_or_path", None) or type(model).__name__
        return ModelSource(f"<in-memory {type(model).__name__}>", str(name)), HFGenerator(model, tokenizer,
                                                                                           batch_size=batch_size)
    if callable(getattr(model, "generate", None)) and callable(getattr(model, "info", None)):  # a Generator
        info = model.info()
        return ModelSource(f"<generator {info.get('name')}>", str(info.get("model", info.get("name")))), model
    if not isinstance(model, (str, os.PathLike)):
        raise EvaluationError(f"model must be a path, 'tiny', a run directory, a hub id, an in-memory model or a "
                              f"Generator, got {type(model).__name__}")
    if backend == "vllm":
        _import_vllm()  # fail before any data is loaded
    return resolve_model(model), None


def _grade(samples: list[dict]) -> None:
    """Extracted answer, correctness (the training grader) and format of each sample, in place."""
    texts = [s["completion"] for s in samples]
    scores = correctness_reward(texts, answer=[s["gold"] for s in samples])
    formats = format_reward(texts)
    for s, text, score, fmt in zip(samples, texts, scores, formats):
        s.update(extracted_answer=extract_answer(text), score=score, format=fmt)


# ----------------------------------------------------------------------------------------- records


def _provenance() -> dict[str, Any]:
    return {"versions": package_versions(PACKAGES), "git": git_commit(), "command": sys.argv, "host": platform.node(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_records(evaluation: Evaluation, out: str | os.PathLike) -> Path:
    """Write results.json and samples.jsonl into `out` (created; refused when it already holds results)."""
    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / SAMPLES).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in evaluation.samples)
    _write_json(out / RESULTS, evaluation.results)
    return out


def read_records(path: str | os.PathLike) -> Evaluation:
    """The evaluation stored in directory `path`."""
    path = Path(path)
    for name in (RESULTS, SAMPLES):
        if not (path / name).is_file():
            raise EvaluationError(f"{path} is not an evaluation directory: no {name}")
    results = json.loads((path / RESULTS).read_text())
    samples = [json.loads(line) for line in (path / SAMPLES).read_text(encoding="utf-8").splitlines() if line.strip()]
    return Evaluation(results, samples)


def regrade(source: Evaluation | str | os.PathLike) -> Evaluation:
    """Score the stored completions again with today's grader (no generation) and recompute every metric."""
    old = source if isinstance(source, Evaluation) else read_records(source)
    samples = [{k: v for k, v in s.items() if k not in ("extracted_answer", "score", "format")} for s in old.samples]
    _grade(samples)
    results = {**old.results, "benchmarks": {}, **_provenance(),
               "regraded_from": None if isinstance(source, Evaluation) else str(Path(source).resolve())}
    seed = old.results["settings"]["seed"]
    for name, before in old.results["benchmarks"].items():
        metrics = benchmark_metrics([s for s in samples if s["benchmark"] == name], before["n"], seed=seed)
        metrics.update({k: before[k] for k in ("max_new_tokens", "generation_seconds") if k in before})
        results["benchmarks"][name] = metrics
    return Evaluation(results, samples)


def default_out_dir(source: ModelSource, benchmarks: Sequence[str], *, n: int | None = None, temperature: float = 0.7,
                    top_p: float = 1.0, max_new_tokens: int | None = None, seed: int = 0,
                    limit: int | None = None) -> Path:
    """RUN_DIR/eval/<settings> for a run's model, else <runs>/eval/<model>/<settings>."""
    parts = ["+".join(benchmarks), f"T{temperature:g}"]
    parts += [f"n{n}"] if n is not None else []
    parts += [f"p{top_p:g}"] if top_p != 1.0 else []
    parts += [f"len{max_new_tokens}"] if max_new_tokens is not None else []
    parts += [f"seed{seed}"] + ([f"limit{limit}"] if limit is not None else [])
    settings = "-".join(parts)
    if source.run_dir:
        return Path(source.run_dir) / "eval" / settings
    return runs_dir() / "eval" / source.label / settings


# ------------------------------------------------------------------------------------------ tables


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def results_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per benchmark (for a table or a DataFrame)."""
    rows = []
    for name, m in results["benchmarks"].items():
        ci = m["mean@n_ci95"] or [None, None]
        rows.append({"benchmark": name, "problems": m["n_problems"], "n": m["n"], "mean@n": m["mean@n"],
                     "ci95_low": ci[0], "ci95_high": ci[1], "maj@n": m["maj@n"],
                     **{f"pass@{k}": v for k, v in m["pass@k"].items()},
                     "format": m["format_rate"], "length": m["mean_length"], "truncated": m["truncated_rate"],
                     "unjudged": m["n_unjudged"]})
    return rows


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of the results: one row per benchmark, pass@k on a line of its own."""
    head = "| benchmark | problems | n | mean@n [95% CI] | maj@n | pass@n | format | length (tokens) |"
    lines = [head, "|---|---:|---:|---|---:|---:|---:|---:|"]
    for name, m in results["benchmarks"].items():
        ci = m["mean@n_ci95"]
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        length = "-" if m["mean_length"] is None else f"{m['mean_length']:.1f}"
        lines.append(f"| {name} | {m['n_problems']} | {m['n']} | {_fmt(m['mean@n'])}{interval} | {_fmt(m['maj@n'])} "
                     f"| {_fmt(m['pass@k'][str(m['n'])])} | {_fmt(m['format_rate'])} | {length} |")
    for name, m in results["benchmarks"].items():
        lines.append(f"{name}: " + "  ".join(f"pass@{k} {_fmt(v)}" for k, v in m["pass@k"].items())
                     + (f"  ({m['n_unjudged']} problems left out: gold cannot be judged)" if m["n_unjudged"] else ""))
    s = results["settings"]
    lines.append(f"T={s['temperature']:g} top_p={s['top_p']:g} seed={s['seed']} backend={results['backend']['name']} "
                 f"({results['backend']['version']}, {results['backend']['device']}); 95% CI: {INTERVAL_METHOD}")
    return "\n".join(lines)


def example_samples(samples: Sequence[dict], benchmark: str, per_kind: int = 1) -> list[dict]:
    """The first `per_kind` right (score 1) and wrong (score 0) samples of a benchmark."""
    right = [s for s in samples if s["benchmark"] == benchmark and s["score"] == 1.0][:per_kind]
    wrong = [s for s in samples if s["benchmark"] == benchmark and s["score"] == 0.0][:per_kind]
    return right + wrong


# ---------------------------------------------------------------------------------------------- CLI


@dataclass
class EvalArguments:
    """Arguments of `python -m sapo_core.evaluate` (also readable from YAML with --config)."""

    model: str = field(default="tiny", metadata={"help": "checkpoint directory, 'tiny', a training run directory "
                                                         "(evaluates its final/), or a hub id"})
    benchmarks: str = field(default="synthetic", metadata={"help": f"comma-separated: {','.join(BENCHMARKS)}"})
    n: int | None = field(default=None, metadata={"help": "samples per problem (default per benchmark: "
                          + ", ".join(f"{b.name} {b.default_n}" for b in BENCHMARKS.values())
                          + "; 1 at temperature 0)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature; 0 = greedy, n = 1"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass in (0, 1]"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "generation budget per sample (default per benchmark: "
                + ", ".join(f"{b.name} {b.max_new_tokens}" for b in BENCHMARKS.values()) + ")"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first K problems of each benchmark"})
    backend: str = field(default="auto", metadata={"help": "auto (vLLM when CUDA and vLLM are present, else hf), "
                                                           "vllm or hf"})
    out: str | None = field(default=None, metadata={"help": "evaluation directory (default RUN_DIR/eval/<settings> "
                                                            "for a run, else runs/eval/<model>/<settings>)"})
    seed: int = field(default=0, metadata={"help": "sampling and bootstrap seed"})
    batch_size: int | None = field(default=None, metadata={"help": f"hf: sequences (prompts x n) per generate call "
                                                                   f"(default {DEFAULT_HF_BATCH})"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model"})
    data_dir: str | None = field(default=None, metadata={"help": "local benchmark data (default env SAPO_DATA_DIR, "
                                                                 "else the Hugging Face hub)"})
    eval_size: int = field(default=SyntheticTask.size, metadata={"help": "synthetic: number of held-out problems"})
    data_seed: int = field(default=SyntheticTask.data_seed, metadata={"help": "synthetic: data seed"})
    synthetic_max_steps: int = field(default=SyntheticTask.max_steps, metadata={"help": "synthetic: most operations"})
    synthetic_max_operand: int = field(default=SyntheticTask.max_operand, metadata={"help": "synthetic: largest "
                                                                                           "operand"})
    regrade: str | None = field(default=None, metadata={"help": "re-score an evaluation directory's samples.jsonl "
                                                                "with today's grader, no generation; writes to --out "
                                                                "(default DIR/regrade-<time>)"})
    log_level: str = field(default="WARNING", metadata={"help": "logging level"})


def _parser():
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message):  # reported by main as one line, without the usage block
            raise EvaluationError(message)

    return Parser([EvalArguments], prog="python -m sapo_core.evaluate",
                  description=__doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the table and the evaluation directory, returns the exit status."""
    from sapo_core.data import DataUnavailableError

    try:
        (args,) = _parser().parse_args_and_config(list(argv) if argv is not None else None)
    except (ValueError, OSError) as err:  # a bad flag or value, a bad --config file
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    levels = [name for name in logging.getLevelNamesMapping() if name != "NOTSET"]
    if args.log_level.upper() not in levels:
        print(f"error: log_level must be one of {', '.join(levels)}, got {args.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.regrade:
            evaluation = regrade(args.regrade)
            out = Path(args.out) if args.out else Path(args.regrade) / f"regrade-{time.strftime('%Y%m%d-%H%M%S')}"
            write_records(evaluation, out)
        else:
            settings = {"n": args.n, "temperature": args.temperature, "top_p": args.top_p,
                        "max_new_tokens": args.max_new_tokens, "seed": args.seed, "limit": args.limit}
            names = check_settings(args.benchmarks, backend=args.backend, batch_size=args.batch_size,
                                    tensor_parallel_size=args.tensor_parallel_size, **settings)
            synthetic = SyntheticTask(size=args.eval_size, data_seed=args.data_seed,
                                      max_steps=args.synthetic_max_steps, max_operand=args.synthetic_max_operand)
            if args.backend == "vllm":
                _import_vllm()
            source = resolve_model(args.model)
            out = Path(args.out) if args.out else default_out_dir(source, names, **settings)
            evaluation = evaluate(args.model, names, backend=args.backend, batch_size=args.batch_size,
                                  tensor_parallel_size=args.tensor_parallel_size, data_dir=args.data_dir,
                                  synthetic=synthetic, out=out, **settings)
    # EvaluationError and DatasetFormatError are ValueErrors, as are the synthetic task's own checks.
    except (ValueError, BackendUnavailableError, DataUnavailableError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(format_table(evaluation.results))
    print(f"records: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
