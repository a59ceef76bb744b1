"""Evaluation records and where they go (method §6): the model's source, results.json and samples.jsonl.

A model is 'tiny', a checkpoint directory, a training run directory (its `final/`, with the run's provenance
and its own held-out synthetic set from config.yaml), or a hub id (`resolve_model`). An evaluation directory
holds `results.json` (metrics per benchmark, settings, backend, model and its run's provenance, package
versions, git commit) and `samples.jsonl` (one line per sample); a directory that holds results is never
overwritten. `regrade` scores stored samples again with today's grader; `format_table` prints results.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sapo_core.benchmarks import EvaluationError
from sapo_core.config import GatedGRPOConfig, ScriptArguments
from sapo_core.data import SyntheticTask
from sapo_core.paths import read_json, runs_dir, write_json
from sapo_core.provenance import git_commit, package_versions
from sapo_core.scoring import INTERVAL_METHOD, benchmark_metrics, grade
from sapo_core.tiny import base_model_path

__all__ = ["RESULTS", "SAMPLES", "Evaluation", "ModelSource", "check_out", "default_out_dir", "example_samples",
           "format_table", "provenance", "read_records", "regrade", "resolve_model", "results_rows",
           "run_synthetic_task", "write_records"]

RESULTS, SAMPLES = "results.json", "samples.jsonl"
PACKAGES = ("sapo_core", "torch", "transformers", "trl", "datasets", "math-verify", "scipy", "vllm")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


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


# A run's config.yaml holds the recipe keys it set; each SyntheticTask field is read from its key (method §3).
RUN_TASK_KEYS = {"size": "eval_size", "data_seed": "data_seed", "max_steps": "synthetic_max_steps",
                 "max_operand": "synthetic_max_operand"}


def run_synthetic_task(source: ModelSource) -> SyntheticTask | None:
    """A training run's own held-out synthetic set: split "test" (method §3.3) with its config.yaml's eval_size,
    data_seed and task (a key the run did not set takes the training default), so that a run is evaluated on the
    problems its recipe held out; None when the model is not a run's or the run did not train on the synthetic task."""
    config = Path(source.run_dir) / "config.yaml" if source.run_dir else None
    if config is None or not config.is_file():
        return None
    try:
        recipe = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise EvaluationError(f"{config}: the run's recipe cannot be read ({' '.join(str(err).split())})") from None
    if not isinstance(recipe, dict):
        raise EvaluationError(f"{config}: the run's recipe must be a mapping of key: value")
    if recipe.get("dataset", "synthetic") != "synthetic":
        return None
    defaults = {**{k: f.default for k, f in GatedGRPOConfig.__dataclass_fields__.items()},
                **{k: f.default for k, f in ScriptArguments.__dataclass_fields__.items()}}
    try:
        return SyntheticTask(**{name: recipe.get(key, defaults[key]) for name, key in RUN_TASK_KEYS.items()},
                             split="test")
    except ValueError as err:
        raise EvaluationError(f"{config}: {err}") from None


def _has_weights(path: Path) -> bool:
    """Whether a directory holds model weight files."""
    return any(any(path.glob(pattern)) for pattern in WEIGHT_FILES)


def resolve_model(model: str | os.PathLike) -> ModelSource:
    """'tiny', a checkpoint directory, a training run directory (its `final/`), or a hub id."""
    given = str(model)
    if given == "tiny":
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
            status = read_json(run_dir / "status.json", "run status") if (run_dir / "status.json").is_file() else {}
            raise EvaluationError(f"run directory {given!r} has no final/ model (status: {status.get('state', '?')})")
    elif path.name == "final" and (path.parent / "provenance.json").is_file():  # a run's final/ given directly
        run_dir = path.parent
    if not (path / "config.json").is_file() or not _has_weights(path):
        raise EvaluationError(f"model path {str(path)!r} holds no model weights (config.json and "
                              f"{' or '.join(WEIGHT_FILES[:2])})")
    has_provenance = run_dir is not None and (run_dir / "provenance.json").is_file()
    run = read_json(run_dir / "provenance.json", "run provenance") if has_provenance else None
    return ModelSource(given, str(path.resolve()), str(run_dir.resolve()) if run_dir else None, run)


@dataclass
class Evaluation:
    """What one evaluation produced: `results` (results.json) and `samples` (samples.jsonl, one per sample)."""

    results: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, benchmark: str) -> dict[str, Any]:
        """The metrics of one benchmark."""
        return self.results["benchmarks"][benchmark]


def check_out(out: Path) -> None:
    """An EvaluationError when `out` is a file or already holds an evaluation's records."""
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"output {str(out)!r} exists and is not a directory")
    held = [name for name in (RESULTS, SAMPLES) if (out / name).exists()]
    if held:
        raise EvaluationError(f"{out} already holds {' and '.join(held)}; an evaluation directory is never "
                              "overwritten: choose another --out")


def provenance() -> dict[str, Any]:
    """Package versions, git commit, command, host and time of this evaluation."""
    return {"versions": package_versions(PACKAGES), "git": git_commit(), "command": sys.argv, "host": platform.node(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_records(evaluation: Evaluation, out: str | os.PathLike) -> Path:
    """Write results.json and samples.jsonl into `out` (created; refused when it already holds results)."""
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / SAMPLES).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in evaluation.samples)
    write_json(out / RESULTS, evaluation.results)
    return out


def read_records(path: str | os.PathLike) -> Evaluation:
    """The evaluation stored in directory `path`."""
    path = Path(path)
    for name in (RESULTS, SAMPLES):
        if not (path / name).is_file():
            raise EvaluationError(f"{path} is not an evaluation directory: no {name}")
    results = read_json(path / RESULTS, "evaluation results")
    samples = [json.loads(line) for line in (path / SAMPLES).read_text(encoding="utf-8").splitlines() if line.strip()]
    return Evaluation(results, samples)


def regrade(source: Evaluation | str | os.PathLike) -> Evaluation:
    """Score the stored completions again with today's grader (no generation) and recompute every metric."""
    old = source if isinstance(source, Evaluation) else read_records(source)
    samples = [{k: v for k, v in s.items() if k not in ("extracted_answer", "score", "format")} for s in old.samples]
    grade(samples)
    results = {**old.results, "benchmarks": {}, **provenance(),
               "regraded_from": None if isinstance(source, Evaluation) else str(Path(source).resolve())}
    seed = old.results["settings"]["seed"]
    for name, before in old.results["benchmarks"].items():
        metrics = benchmark_metrics([s for s in samples if s["benchmark"] == name], before["n"], seed=seed)
        metrics.update({k: before[k] for k in ("max_new_tokens", "generation_seconds") if k in before})
        results["benchmarks"][name] = metrics
    return Evaluation(results, samples)


def default_out_dir(source: ModelSource, benchmarks: Sequence[str], *, n: int | None = None, temperature: float = 0.7,
                    top_p: float = 1.0, max_new_tokens: int | None = None, seed: int = 0,
                    limit: int | None = None, split: str = "test") -> Path:
    """RUN_DIR/eval/<settings> for a run's model, else <runs>/eval/<model>/<settings> (a synthetic split other than
    test is part of the settings)."""
    parts = ["+".join(benchmarks), f"T{temperature:g}"]
    parts += [f"split-{split}"] if split != "test" and "synthetic" in benchmarks else []
    parts += [f"n{n}"] if n is not None else []
    parts += [f"p{top_p:g}"] if top_p != 1.0 else []
    parts += [f"len{max_new_tokens}"] if max_new_tokens is not None else []
    parts += [f"seed{seed}"] + ([f"limit{limit}"] if limit is not None else [])
    settings = "-".join(parts)
    if source.run_dir:
        return Path(source.run_dir) / "eval" / settings
    return runs_dir() / "eval" / source.label / settings


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
        instances = m.get("n_instances", m["n_problems"])  # results written before instances were recorded
        problems = m["n_problems"] if instances == m["n_problems"] else f"{m['n_problems']} ({instances} instances)"
        lines.append(f"| {name} | {problems} | {m['n']} | {_fmt(m['mean@n'])}{interval} | {_fmt(m['maj@n'])} "
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
