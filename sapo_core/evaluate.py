"""Benchmark evaluation with the paper's protocol (method §6): sampled accuracy with its uncertainty.

For each benchmark (`sapo_core.benchmarks`) every problem is posed with the training prompt
(`sapo_core.prompts`), answered `n` times (temperature 0.7 by default; temperature 0 is greedy with n = 1) by
a backend (`sapo_core.generation`: hf, vLLM, or any `Generator`), each answer scored by the training grader
and summarised as mean@n with its 95% bootstrap interval, pass@k and maj@n (`sapo_core.scoring`), and the
results and samples written to an evaluation directory (`sapo_core.records`). This module holds `evaluate()`,
which runs those steps, and the command line.

    python -m sapo_core.evaluate --model tiny --benchmarks synthetic
    python -m sapo_core.evaluate --model runs/tiny-cpu/erf-equal-seed0        # writes RUN_DIR/eval/<settings>/
    python -m sapo_core.evaluate --model Qwen/Qwen2.5-7B-Instruct --benchmarks gsm8k,math500,aime \
        --backend vllm
    python -m sapo_core.evaluate --regrade DIR                                # rescore DIR/samples.jsonl

A training run directory is evaluated on its own held-out synthetic set: the test split (method §3.3; training
checked itself on the validation split) with the eval_size, data_seed and task of its config.yaml; flags given on
the command line override them. results.json is rewritten after each
finished benchmark, so a crash loses no finished benchmark; a directory that holds results is never
overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from trl import TrlParser

from sapo_core.benchmarks import BENCHMARKS, Benchmark, EvaluationError, load_benchmark
from sapo_core.cli import fail
from sapo_core.data import SPLITS, DataUnavailableError, SyntheticTask
from sapo_core.generation import (
    BACKENDS,
    CPU_HF_BATCH,
    DEFAULT_HF_BATCH,
    BackendUnavailableError,
    Completion,
    Generator,
    HFGenerator,
    VLLMGenerator,
    import_vllm,
    make_generator,
    sampling_config,
)
from sapo_core.paths import write_json
from sapo_core.prompts import SYSTEM_PROMPT, USER_TEMPLATE
from sapo_core.records import (
    RESULTS,
    RUN_TASK_KEYS,
    SAMPLES,
    Evaluation,
    ModelSource,
    check_out,
    default_out_dir,
    example_samples,
    format_table,
    provenance,
    read_records,
    regrade,
    resolve_model,
    results_rows,
    run_synthetic_task,
    write_records,
)
from sapo_core.scoring import (
    CONFIDENCE_LEVEL,
    INTERVAL_METHOD,
    N_RESAMPLES,
    benchmark_metrics,
    grade,
    majority_vote,
    mean_interval,
    pass_at_k,
    pass_at_k_values,
)

# The evaluation's public names, wherever they live, so that `from sapo_core.evaluate import X` keeps working.
__all__ = [
    "BENCHMARKS", "BACKENDS", "Benchmark", "SyntheticTask", "Completion", "Generator", "HFGenerator",
    "VLLMGenerator", "EvaluationError", "BackendUnavailableError", "Evaluation", "ModelSource",
    "pass_at_k", "pass_at_k_values", "majority_vote", "mean_interval", "benchmark_metrics", "check_settings",
    "load_benchmark", "resolve_model", "run_synthetic_task", "make_generator", "sampling_config", "evaluate",
    "write_records", "read_records", "regrade", "default_out_dir", "results_rows", "format_table",
    "example_samples", "EvalArguments", "main",
]

logger = logging.getLogger(__name__)


def check_settings(benchmarks: Sequence[str] | str, *, n: int | None = None, temperature: float = 0.7,
                   top_p: float = 1.0, max_new_tokens: int | None = None, limit: int | None = None,
                   backend: str = "auto", batch_size: int | None = None, tensor_parallel_size: int = 1,
                   seed: int = 0) -> list[str]:
    """The benchmark list (names, or one comma-separated string), or an EvaluationError naming the first bad
    setting; the keywords and defaults are `evaluate`'s."""
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
    names = check_settings(benchmarks, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           limit=limit, backend=backend, batch_size=batch_size,
                           tensor_parallel_size=tensor_parallel_size, seed=seed)
    # Every input is checked and loaded before anything is written: a bad one leaves no directory.
    source, generator = _model_and_generator(model, tokenizer, backend, batch_size, tensor_parallel_size, seed)
    synthetic = synthetic or run_synthetic_task(source) or SyntheticTask()
    datasets = {name: load_benchmark(name, data_dir=data_dir, synthetic=synthetic, limit=limit) for name in names}
    out = Path(out) if out is not None else None
    if out is not None:
        check_out(out)
    generator = generator or make_generator(source.path, backend, batch_size=batch_size,
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
        **provenance(),
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
        instances = ds[spec.instance_column] if spec.instance_column else ds["id"]
        samples = [{"benchmark": name, "problem_id": pid, "instance": instance, "sample": j, "completion": c.text,
                    "num_tokens": c.num_tokens, "truncated": c.truncated, "gold": gold}
                   for pid, instance, gold, row in zip(ds["id"], instances, ds["answer"], completions)
                   for j, c in enumerate(row)]
        grade(samples)
        metrics = benchmark_metrics(samples, k, seed=seed)
        metrics.update(max_new_tokens=budget, generation_seconds=round(seconds, 3))
        results["benchmarks"][name] = metrics
        evaluation.samples.extend(samples)
        if out is not None:  # each finished benchmark is on disk before the next one starts
            with (out / SAMPLES).open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
            write_json(out / RESULTS, results)
    results["complete"] = True
    if out is not None:
        write_json(out / RESULTS, results)
    return evaluation


def _model_and_generator(model, tokenizer, backend, batch_size, tensor_parallel_size, seed):
    """(ModelSource, a ready generator or None to build one later from the source)."""
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
        import_vllm()  # fail before any data is loaded
    return resolve_model(model), None


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
                                                                   f"(default {DEFAULT_HF_BATCH} on a GPU, "
                                                                   f"{CPU_HF_BATCH} on CPU)"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model"})
    data_dir: str | None = field(default=None, metadata={"help": "local benchmark data (default env SAPO_DATA_DIR, "
                                                                 "else the Hugging Face hub)"})
    # The synthetic task's flags: unset, a run directory's own config.yaml value applies, else SyntheticTask's.
    eval_size: int | None = field(default=None, metadata={
        "help": f"synthetic: number of held-out problems (default: the run's, else {SyntheticTask.size})"})
    data_seed: int | None = field(default=None, metadata={
        "help": f"synthetic: data seed (default: the run's, else {SyntheticTask.data_seed})"})
    synthetic_max_steps: int | None = field(default=None, metadata={
        "help": f"synthetic: most operations (default: the run's, else {SyntheticTask.max_steps})"})
    synthetic_max_operand: int | None = field(default=None, metadata={
        "help": f"synthetic: largest operand (default: the run's, else {SyntheticTask.max_operand})"})
    split: str = field(default=SyntheticTask.split, metadata={
        "help": f"synthetic: the split, one of {', '.join(SPLITS)} (method §3.3); reported numbers are the test "
                "split's, validation is for choosing recipe values"})
    regrade: str | None = field(default=None, metadata={"help": "re-score an evaluation directory's samples.jsonl "
                                                                "with today's grader, no generation; writes to --out "
                                                                "(default DIR/regrade-<time>)"})
    log_level: str = field(default="WARNING", metadata={"help": "logging level"})


class _Parser(TrlParser):
    """TRL's parser for EvalArguments, whose errors are raised (main prints them as one line, no usage block)."""

    def error(self, message):
        raise EvaluationError(message)


def synthetic_task(args: EvalArguments, source: ModelSource) -> SyntheticTask:
    """The held-out synthetic set: the run's own (config.yaml) or SyntheticTask's defaults, with the flags given."""
    base = run_synthetic_task(source) or SyntheticTask()
    given = {name: getattr(args, key) for name, key in RUN_TASK_KEYS.items() if getattr(args, key) is not None}
    return dataclasses.replace(base, **given, split=args.split)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the table and the evaluation directory, returns the exit status."""
    parser = _Parser([EvalArguments], prog="python -m sapo_core.evaluate", description=__doc__.splitlines()[0])
    try:
        (args,) = parser.parse_args_and_config(list(argv) if argv is not None else None)
    except (ValueError, OSError) as err:  # a bad flag or value, a bad --config file
        return fail(str(err))
    levels = [name for name in logging.getLevelNamesMapping() if name != "NOTSET"]
    if args.log_level.upper() not in levels:
        return fail(f"log_level must be one of {', '.join(levels)}, got {args.log_level!r}")
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
            if args.backend == "vllm":
                import_vllm()
            source = resolve_model(args.model)
            synthetic = synthetic_task(args, source)
            out = Path(args.out) if args.out else default_out_dir(source, names, **settings, split=synthetic.split)
            evaluation = evaluate(args.model, names, backend=args.backend, batch_size=args.batch_size,
                                  tensor_parallel_size=args.tensor_parallel_size, data_dir=args.data_dir,
                                  synthetic=synthetic, out=out, **settings)
    # EvaluationError and DatasetFormatError are ValueErrors, as are the synthetic task's own checks.
    except (ValueError, BackendUnavailableError, DataUnavailableError, FileNotFoundError) as err:
        return fail(str(err))
    print(format_table(evaluation.results))
    print(f"records: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
