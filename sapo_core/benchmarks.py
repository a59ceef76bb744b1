"""The evaluation benchmarks (method §6): names, sample counts, generation budgets and loaders.

`BENCHMARKS` is the one list of benchmark names: the evaluation, the recipe's held-out check
(`heldout_benchmarks`) and batches read it. `aime` is the paper's "AIME": AIME24 and AIME25 pooled (60
problems, so its accuracies are multiples of 1/60 at n = 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from datasets import Dataset

from sapo_core import data
from sapo_core.checks import check_int
from sapo_core.data import SyntheticTask

__all__ = ["BENCHMARKS", "Benchmark", "EvaluationError", "load_benchmark"]


class EvaluationError(ValueError):
    """A bad evaluation input (benchmark, backend, n, temperature, model path, output directory)."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its default number of samples per problem and generation budget, and the dataset column whose
    equal values make problems one instance (resampled together by the interval of method §6; None: each problem
    is its own)."""

    name: str
    default_n: int        # samples per problem; sized so the interval is useful (AIME: 30 problems)
    max_new_tokens: int   # generation budget per sample
    description: str
    instance_column: str | None = None


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("gsm8k", 1, 2048, "GSM8K test, 1319 grade-school word problems"),
    Benchmark("math500", 4, 2048, "MATH-500, 500 competition problems"),
    Benchmark("aime", 32, 2048, "AIME 2024 and 2025 pooled (the paper's AIME), 60 problems"),
    Benchmark("aime24", 32, 2048, "AIME 2024 I+II, 30 problems"),
    Benchmark("aime25", 32, 2048, "AIME 2025 I+II, 30 problems"),
    # a synthetic problem's solution is its arithmetic and answer: problems worded apart share it (method §3.3)
    Benchmark("synthetic", 8, 64, "held-out synthetic arithmetic (the tiny model's task)", "solution"),
)}


def load_benchmark(name: str, *, data_dir: str | os.PathLike | None = None, synthetic: SyntheticTask | None = None,
                   limit: int | None = None) -> Dataset:
    """The benchmark's dataset (columns prompt, answer, source, id), its first `limit` problems if given."""
    if name not in BENCHMARKS:
        raise EvaluationError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    if limit is not None:
        check_int("limit", limit, minimum=1)
    if name == "synthetic":
        ds = (synthetic or SyntheticTask()).dataset()
    elif name == "gsm8k":
        ds = data.gsm8k("test", data_dir=data_dir)
    else:
        ds = getattr(data, name)(data_dir=data_dir)
    column = BENCHMARKS[name].instance_column
    if column is not None and column not in ds.column_names:  # before anything is generated or written
        raise EvaluationError(f"benchmark {name!r}: its instance column {column!r} is not in the dataset (columns: "
                              f"{', '.join(ds.column_names)})")
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds
