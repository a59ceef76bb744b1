"""Datasets with one schema everywhere (method §3).

Every loader returns a `datasets.Dataset` with the columns

    prompt  : list of chat messages (`sapo_core.prompts.make_prompt`), TRL's conversational format
    answer  : the gold answer as a string (GSM8K: the final number after `####`, commas removed)
    source  : which dataset the row came from ("gsm8k", "deepmath", "math500", "aime24", "aime25",
              "synthetic")
    id      : a stable identifier of the row, `<source>-<native id or split-index>`

Training (method §3): `training_mix(n, seed)`, an equal, shuffled mixture of GSM8K train and
DeepMath-103K. Evaluation: `gsm8k("test")`, `math500()`, `aime24()`, `aime25()`, and `aime()`: the paper's
"AIME", AIME24 and AIME25 pooled (60 problems).

Where the data comes from: the Hugging Face hub by default, or a local directory when `data_dir`
is given or env `SAPO_DATA_DIR` is set. The local layout holds one JSONL file per split with the
hub's own records (field names unchanged), so both paths share one field mapping:

    <data_dir>/gsm8k/train.jsonl     openai/gsm8k (config "main"), split train : question, answer
    <data_dir>/gsm8k/test.jsonl      openai/gsm8k (config "main"), split test  : question, answer
    <data_dir>/deepmath/train.jsonl  zwhe99/DeepMath-103K, split train         : question, final_answer
    <data_dir>/math500/test.jsonl    HuggingFaceH4/MATH-500, split test        : problem, answer, unique_id
    <data_dir>/aime24/test.jsonl     HuggingFaceH4/aime_2024, split train (!)  : problem, answer, id
    <data_dir>/aime25/test.jsonl     math-ai/aime25, split test                : problem, answer, id

Fill a directory from the hub (needs internet):  python -m sapo_core.data download --out DIR

`synthetic_arithmetic` is the offline task of the embedded CPU default; it additionally carries
`solution`, a worked completion in the required layout, used to warm-start the tiny model. Its problems come
in three instance-disjoint splits (method §3.3): an instance is a problem's arithmetic, assigned by a stable
hash to train (training, the tiny model's fine-tuning), validation (the checks during training, where recipe
values are chosen) or test (the reported evaluation). `SyntheticTask`
holds the task's settings in one place (training, held-out evaluation, the tiny model's build and the recipe
keys `eval_size`, `data_seed`, `synthetic_max_steps`, `synthetic_max_operand` all read it); its defaults are
the tiny model's task (data/tiny/build_info.json: one step, operands 1..9).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets, load_dataset

from sapo_core.checks import check_int
from sapo_core.cli import fail
from sapo_core.paths import write_atomic
from sapo_core.prompts import format_completion, make_prompt
from sapo_core.rewards import normalize_gold

__all__ = ["COLUMNS", "DATA_DIR_ENV", "SOURCES", "DataUnavailableError", "DatasetFormatError", "Source",
           "SPLITS", "SPLIT_FRACTIONS", "SyntheticTask", "instance_split", "check_split",
           "synthetic_arithmetic", "load_source", "gsm8k", "deepmath", "math500", "aime24",
           "aime25", "aime", "training_mix", "download"]

logger = logging.getLogger(__name__)

COLUMNS = ("prompt", "answer", "source", "id")
DATA_DIR_ENV = "SAPO_DATA_DIR"


class DatasetFormatError(ValueError):
    """A data file or hub dataset lacks a field or holds an unusable value (the message names both)."""


class DataUnavailableError(RuntimeError):
    """A hub dataset could not be loaded (offline, no access, wrong name); the message says how to work offline."""


def _load_hub(source: Source, split: str, where: str):
    try:
        return load_dataset(source.hub_path, source.hub_config, split=split)
    except OSError as err:  # ConnectionError, DatasetNotFoundError and friends
        raise DataUnavailableError(
            f"{where}: could not be loaded from the Hugging Face hub ({type(err).__name__}: {err}). Offline? "
            f"Download once where the hub is reachable (python -m sapo_core.data download --out DIR), then set "
            f"{DATA_DIR_ENV}=DIR or data_dir in the recipe") from err


@dataclass(frozen=True)
class Source:
    """Where one dataset lives on the hub and which of its fields become `prompt`, `answer` and `id`."""

    name: str                      # `source` column and local sub-directory
    hub_path: str                  # Hugging Face dataset id
    hub_config: str | None         # its config ("subset"), if any
    splits: dict[str, str]         # our split name (= local file stem) -> hub split name
    problem_field: str             # becomes the user message of `prompt`
    answer_field: str              # becomes `answer` (through `normalize_gold` for GSM8K)
    id_field: str | None           # native id; None: `<split>-<index>`
    keep_fields: tuple[str, ...] | None = None  # fields `download` writes; None: all of them


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("gsm8k", "openai/gsm8k", "main", {"train": "train", "test": "test"},
           "question", "answer", None),
    # DeepMath's three R1 solutions per row are several GB; the loader needs none of them.
    Source("deepmath", "zwhe99/DeepMath-103K", None, {"train": "train"},
           "question", "final_answer", None, ("question", "final_answer", "difficulty", "topic")),
    Source("math500", "HuggingFaceH4/MATH-500", None, {"test": "test"},
           "problem", "answer", "unique_id"),
    # The 30 AIME 2024 I+II problems are published as the hub's "train" split.
    Source("aime24", "HuggingFaceH4/aime_2024", None, {"test": "train"}, "problem", "answer", "id"),
    # AIME 2025 I (ids "0"-"14") and II ("15"-"29"); answers are integers in some copies.
    Source("aime25", "math-ai/aime25", None, {"test": "test"}, "problem", "answer", "id"),
)}


def _check_dir(name: str, value: Any) -> Path:
    """A directory argument as a Path: a non-empty str or os.PathLike, else TypeError/ValueError naming `name`."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__} {value!r}")
    if not str(value).strip():
        raise ValueError(f"{name} is empty (an unset shell variable?); give a directory")
    return Path(value)


def _resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """`data_dir`, else env SAPO_DATA_DIR, else None (the hub)."""
    if data_dir is not None:
        return _check_dir("data_dir", data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) for each line of a JSONL file; location is `path:line`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file (layout: <data_dir>/<source>/<split>.jsonl; "
                                "fill it with `python -m sapo_core.data download --out <data_dir>`)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        line_no = err.object[:err.start].count(b"\n") + 1
        raise DatasetFormatError(f"{path}:{line_no}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                                 f"{err.start}); data files are JSONL encoded as UTF-8") from None
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{path}:{line_no}: not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        yield f"{path}:{line_no}", record


def _hub_records(source: Source, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) for each row of the hub split; only the mapped fields are read."""
    hub_split = source.splits[split]
    config = f" (config {source.hub_config})" if source.hub_config else ""
    where = f"hub dataset {source.hub_path}{config}, split {hub_split}"
    ds = _load_hub(source, hub_split, where)
    fields = [f for f in (source.problem_field, source.answer_field, source.id_field) if f]
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise DatasetFormatError(f"{where}: no field {missing[0]!r} (fields: {', '.join(ds.column_names)})")
    for i, record in enumerate(ds.select_columns(fields)):
        yield f"{where}, row {i}", record


def _field(record: dict[str, Any], field: str, where: str) -> Any:
    """record[field], or an error naming the place and the field."""
    if field not in record:
        raise DatasetFormatError(f"{where}: no field {field!r} (fields: {', '.join(sorted(record))})")
    value = record[field]
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise DatasetFormatError(f"{where}: field {field!r} is empty or not usable: {value!r}")
    return value


def _rows(source: Source, split: str, records: Iterable[tuple[str, dict[str, Any]]], origin: str) -> Dataset:
    """The common schema (COLUMNS) from raw records."""
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    first_seen: dict[str, str] = {}  # id -> where it first appeared
    for index, (where, record) in enumerate(records):
        problem = _field(record, source.problem_field, where)
        answer = _field(record, source.answer_field, where)
        if not isinstance(problem, str):
            raise DatasetFormatError(f"{where}: field {source.problem_field!r} must be a string, "
                                     f"got {problem!r:.80}")
        if not isinstance(answer, (str, int)):
            raise DatasetFormatError(f"{where}: field {source.answer_field!r} must be a string or an int, "
                                     f"got {answer!r:.80}")
        native = _field(record, source.id_field, where) if source.id_field else f"{split}-{index}"
        if not isinstance(native, (str, int)):
            raise DatasetFormatError(f"{where}: field {source.id_field!r} (the id) must be a string or an int, "
                                     f"got {native!r:.80}")
        row_id = f"{source.name}-{native}"
        if row_id in first_seen:  # two problems under one id would be merged by every per-problem statistic
            raise DatasetFormatError(f"{where}: duplicate id {row_id!r} ({source.id_field} {native!r}), first at "
                                     f"{first_seen[row_id]}; ids must be unique within {origin}")
        first_seen[row_id] = where
        rows["prompt"].append(make_prompt(problem))
        # GSM8K golds are `reasoning #### 1,000`: keep the final answer, `1000` (the reward accepts both).
        if source.name == "gsm8k":
            if not (isinstance(answer, str) and "####" in answer and answer.rsplit("####", 1)[1].strip()):
                raise DatasetFormatError(f"{where}: field {source.answer_field!r} must end with '#### <final answer>' "
                                         f"(GSM8K's format), got {answer!r:.80}")
            answer = normalize_gold(answer)
        rows["answer"].append(str(answer).strip())
        rows["source"].append(source.name)
        rows["id"].append(row_id)
    if not rows["id"]:
        raise DatasetFormatError(f"{origin}: no records ({source.name} {split})")
    return Dataset.from_dict(rows)


def load_source(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Dataset `name` (a key of SOURCES), `split`, from `data_dir`/env SAPO_DATA_DIR if set, else the hub."""
    if not isinstance(name, str) or name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(SOURCES)}")
    source = SOURCES[name]
    if not isinstance(split, str) or split not in source.splits:
        raise ValueError(f"{name} has no split {split!r}; available: {', '.join(source.splits)}")
    root = _resolve_data_dir(data_dir)
    if root is None:
        return _rows(source, split, _hub_records(source, split), f"hub dataset {source.hub_path}")
    path = root / name / f"{split}.jsonl"
    return _rows(source, split, _read_jsonl(path), str(path))


def gsm8k(split: str = "train", data_dir: str | os.PathLike | None = None) -> Dataset:
    """GSM8K (7473 train / 1319 test grade-school word problems); `answer` is the final number."""
    return load_source("gsm8k", split, data_dir)


def deepmath(data_dir: str | os.PathLike | None = None) -> Dataset:
    """DeepMath-103K (train only): hard, verifiable problems with a `final_answer`."""
    return load_source("deepmath", "train", data_dir)


def math500(data_dir: str | os.PathLike | None = None) -> Dataset:
    """MATH-500, the PRM800K test subset of Hendrycks' MATH (500 problems)."""
    return load_source("math500", "test", data_dir)


def aime24(data_dir: str | os.PathLike | None = None) -> Dataset:
    """AIME 2024 I and II (30 problems, integer answers 0-999, some written with leading zeros)."""
    return load_source("aime24", "test", data_dir)


def aime25(data_dir: str | os.PathLike | None = None) -> Dataset:
    """AIME 2025 I and II (30 problems, integer answers 0-999)."""
    return load_source("aime25", "test", data_dir)


def aime(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The paper's "AIME": AIME24 and AIME25 pooled (60 problems; `source` keeps the year)."""
    return concatenate_datasets([aime24(data_dir), aime25(data_dir)])


def training_mix(n: int, seed: int = 0, data_dir: str | os.PathLike | None = None) -> Dataset:
    """method §3 training data: n/2 GSM8K-train and n/2 DeepMath rows, drawn and shuffled with `seed`."""
    check_int("n", n)
    if n < 2 or n % 2:
        raise ValueError(f"n must be an even int >= 2 (equal halves), got {n!r}")
    check_int("seed", seed)
    parts = [gsm8k("train", data_dir), deepmath(data_dir)]
    half = n // 2
    for part in parts:
        if len(part) < half:
            raise ValueError(f"n/2 = {half} exceeds the {len(part)} rows of {part[0]['source']}; "
                             "ask for fewer rows and train for more epochs")
    rng = random.Random(f"training-mix-{seed}")
    mix = concatenate_datasets([part.select(sorted(rng.sample(range(len(part)), half))) for part in parts])
    order = list(range(n))
    rng.shuffle(order)
    return mix.select(order)


def download(out_dir: str | os.PathLike, names: Sequence[str] | None = None,
             overwrite: bool = False) -> list[Path]:
    """Write the hub datasets into `out_dir` in the local layout (<source>/<split>.jsonl); returns paths."""
    out = _check_dir("out_dir", out_dir)
    if isinstance(names, (str, bytes)) or not (names is None or isinstance(names, Sequence)):
        raise TypeError(f"names must be a list of dataset names (or None for all), got {type(names).__name__} "
                        f"{names!r}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    for name in names or ():
        if not isinstance(name, str) or name not in SOURCES:
            raise ValueError(f"unknown dataset {name!r}; available: {', '.join(SOURCES)}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
    written = []
    for name in names or list(SOURCES):
        source = SOURCES[name]
        for split, hub_split in source.splits.items():
            path = out / name / f"{split}.jsonl"
            if path.exists() and not overwrite:
                logger.info("%s exists, kept (pass overwrite=True / --overwrite to replace)", path)
                written.append(path)
                continue
            ds = _load_hub(source, hub_split, f"hub dataset {source.hub_path}, split {hub_split}")
            if source.keep_fields is not None:
                missing = [f for f in source.keep_fields if f not in ds.column_names]
                if missing:
                    raise DatasetFormatError(f"hub dataset {source.hub_path}, split {hub_split}: no field "
                                             f"{missing[0]!r} (fields: {', '.join(ds.column_names)})")
                ds = ds.select_columns(list(source.keep_fields))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in ds))
            logger.info("wrote %s (%d records from %s)", path, len(ds), source.hub_path)
            written.append(path)
    return written


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are raised (main prints them as one line) instead of a usage block and exit."""

    def error(self, message):
        raise ValueError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m sapo_core.data download --out DIR [--only gsm8k math500 ...] [--overwrite]`.

    A refused input, an unreachable hub or an unwritable directory is one line `error: ...` on stderr and
    exit status 2."""
    parser = _Parser(prog="python -m sapo_core.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    dl = commands.add_parser("download", help="download the hub datasets into the local layout")
    dl.add_argument("--out", required=True, type=Path, help="target directory (use it as SAPO_DATA_DIR)")
    dl.add_argument("--only", nargs="+", choices=list(SOURCES), help="datasets to fetch (default: all)")
    dl.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        args = parser.parse_args(argv)
        for path in download(args.out, args.only, args.overwrite):
            logger.info("ok %s", path)
    except (ValueError, DataUnavailableError, OSError) as err:  # DatasetFormatError is a ValueError
        return fail(str(err))
    return 0


_NAMES = ("Ann", "Ben", "Cal", "Dee", "Eve", "Finn", "Gus", "Hal", "Ivy", "Jo")
_ITEMS = ("apples", "pens", "coins", "cards", "books", "shells", "stamps", "marbles")

# method §3.3: an instance is a problem's arithmetic (its worked equations); each instance belongs to one split
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}
MAX_MISSES = 100_000  # consecutive draws outside the wanted split before a task is declared too small to split


def instance_split(work: str) -> str:
    """The split of the instance a problem is (method §3.3): its arithmetic `work` (e.g. "7-3=4", names and items
    aside), hashed stably into SPLIT_FRACTIONS."""
    u = int.from_bytes(hashlib.sha256(work.encode("utf-8")).digest()[:8], "big") / 2**64
    bound = 0.0
    for split in SPLITS:
        bound += SPLIT_FRACTIONS[split]
        if u < bound:
            return split
    return SPLITS[-1]


def check_split(split: str) -> str:
    """`split` when it is one of SPLITS, else a ValueError naming it and the three allowed."""
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"synthetic task: split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    return split


def _problem(rng: random.Random, steps: int, max_operand: int) -> tuple[str, str, str]:
    """One word problem with `steps` operations: (question, reasoning, answer)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    total = rng.randint(1, max_operand)
    text = [f"{name} has {total} {item}."]
    work = []
    for _ in range(steps):
        amount = rng.randint(1, max_operand)
        if rng.random() < 0.5 or amount > total:  # never go negative
            text.append(f"{name} gets {amount} more.")
            work.append(f"{total}+{amount}={total + amount}")
            total += amount
        else:
            text.append(f"{name} gives away {amount}.")
            work.append(f"{total}-{amount}={total - amount}")
            total -= amount
    text.append(f"How many {item} does {name} have?")
    return " ".join(text), " ".join(work), str(total)


@dataclass(frozen=True)
class SyntheticTask:
    """The synthetic task's settings, defined once; the defaults are the tiny model's task (build_info.json)."""

    size: int = 200          # problems (the recipe key eval_size for the held-out set)
    data_seed: int = 0       # the recipe key data_seed
    min_steps: int = 1       # fewest operations per problem
    max_steps: int = 1       # most operations per problem (the recipe key synthetic_max_steps)
    max_operand: int = 9     # largest operand (the recipe key synthetic_max_operand)
    split: str = "test"      # "train", "validation" or "test": instance-disjoint (method §3.3)

    def __post_init__(self):
        # Named by the recipe keys / CLI flags that set them.
        for name, key, least in (("size", "eval_size", 1), ("data_seed", "data_seed", 0), ("min_steps", None, 1),
                                 ("max_steps", "synthetic_max_steps", 1),
                                 ("max_operand", "synthetic_max_operand", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                named = f"{name} (--{key})" if key else name
                raise ValueError(f"synthetic task: {named} must be an integer >= {least}, got {value!r}")
        if self.min_steps > self.max_steps:
            raise ValueError(f"synthetic task: min_steps {self.min_steps} exceeds max_steps "
                             f"(--synthetic_max_steps) {self.max_steps}")
        check_split(self.split)

    def dataset(self) -> Dataset:
        """The task's `size` problems (`synthetic_arithmetic`)."""
        return synthetic_arithmetic(self.size, self.data_seed, min_steps=self.min_steps, max_steps=self.max_steps,
                                    max_operand=self.max_operand, split=self.split)


def synthetic_arithmetic(n: int, seed: int = 0, *, min_steps: int = SyntheticTask.min_steps,
                         max_steps: int = SyntheticTask.max_steps, max_operand: int = SyntheticTask.max_operand,
                         split: str = "train") -> Dataset:
    """`n` integer word problems (min_steps..max_steps additions/subtractions) of one split, deterministic for a
    seed: the generator's draws whose instance falls in `split` (method §3.3)."""
    check_int("n", n, 1)
    check_int("seed", seed)
    check_int("min_steps", min_steps, 1)
    check_int("max_steps", max_steps, 1)
    if min_steps > max_steps:
        raise ValueError(f"need min_steps <= max_steps, got min_steps={min_steps!r}, max_steps={max_steps!r}")
    check_int("max_operand", max_operand, 1)
    check_split(split)
    # One stream per split and seed (different seeds draw different problems); the split itself is the
    # instance's, so no seed can put one instance in two splits.
    rng = random.Random(f"synthetic-{split}-{seed}")
    rows = {"prompt": [], "answer": [], "source": [], "id": [], "solution": []}
    misses = 0
    while len(rows["id"]) < n:
        question, work, answer = _problem(rng, rng.randint(min_steps, max_steps), max_operand)
        if instance_split(work) != split:
            misses += 1
            if misses == MAX_MISSES:
                raise ValueError(f"synthetic task: no {split!r} problem in {MAX_MISSES} draws; the task "
                                 f"(max_operand={max_operand}, steps {min_steps}..{max_steps}) has too few distinct "
                                 "instances to fill three disjoint splits (method §3.3)")
            continue
        misses = 0
        rows["prompt"].append(make_prompt(question))
        rows["answer"].append(answer)
        rows["source"].append("synthetic")
        rows["id"].append(f"synthetic-{split}-{seed}-{len(rows['id'])}")
        rows["solution"].append(format_completion(work, answer))
    return Dataset.from_dict(rows)


if __name__ == "__main__":
    sys.exit(main())
