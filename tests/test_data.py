"""Tests for sapo_core.data: counts and schema on the local benchmark data, the DeepMath format
(records built here), the training mixture, error messages, and the hub path with a stand-in hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from sapo_core import data
from sapo_core.prompts import SYSTEM_PROMPT, make_prompt

DEEPMATH_RECORDS = [  # hub format of zwhe99/DeepMath-103K (R1 solutions left out)
    {"question": f"Evaluate the limit number {i}.", "final_answer": answer, "difficulty": 5.0 + i % 3,
     "topic": "Mathematics -> Calculus -> Limits"}
    for i, answer in enumerate(["0", "\\dfrac{1}{2}", "e^{2}", "\\infty", "3", "-1", "\\sqrt{2}", "12"])
]


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def mix_dir(tmp_path, data_dir) -> Path:
    """A data directory with the real GSM8K (linked, not copied) and a few DeepMath records."""
    (tmp_path / "gsm8k").symlink_to(data_dir / "gsm8k", target_is_directory=True)
    write_jsonl(tmp_path / "deepmath" / "train.jsonl", DEEPMATH_RECORDS)
    return tmp_path


def assert_schema(ds: Dataset, source: str) -> None:
    assert tuple(ds.column_names) == data.COLUMNS
    assert set(ds["source"]) == {source}
    assert len(set(ds["id"])) == len(ds)
    assert all(i.startswith(f"{source}-") for i in ds["id"])
    assert all(isinstance(a, str) and a.strip() for a in ds["answer"])
    first = ds[0]["prompt"]
    assert [m["role"] for m in first] == ["system", "user"] and first[0]["content"] == SYSTEM_PROMPT


@pytest.mark.parametrize("loader, args, source, count", [
    (data.gsm8k, ("test",), "gsm8k", 1319),
    (data.gsm8k, ("train",), "gsm8k", 7473),
    (data.math500, (), "math500", 500),
    (data.aime24, (), "aime24", 30),
    (data.aime25, (), "aime25", 30),
])
@pytest.mark.data
def test_counts_and_schema(data_dir, loader, args, source, count):
    ds = loader(*args, data_dir=data_dir)
    assert len(ds) == count
    assert_schema(ds, source)


@pytest.mark.data
def test_same_features_everywhere(data_dir, mix_dir):
    sets = [data.gsm8k("test", data_dir), data.math500(data_dir), data.aime24(data_dir),
            data.aime25(data_dir), data.deepmath(mix_dir), data.synthetic_arithmetic(2)]
    assert all(ds.features[c] == sets[0].features[c] for ds in sets for c in data.COLUMNS)


@pytest.mark.data
def test_answers_and_ids(data_dir):
    gsm = data.gsm8k("test", data_dir)
    first = json.loads((data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert gsm[0]["prompt"] == make_prompt(first["question"])
    assert gsm[0]["answer"] == first["answer"].rsplit("####", 1)[1].strip()
    assert gsm[0]["id"] == "gsm8k-test-0"
    assert all(a.lstrip("-").isdigit() for a in gsm["answer"])  # reduced, commas removed
    aime24 = data.aime24(data_dir)
    assert "025" in aime24["answer"] and aime24[0]["id"] == "aime24-60"  # kept as written
    aime25 = data.aime25(data_dir)
    assert aime25[0]["answer"] == "70" and aime25[0]["id"] == "aime25-0"  # int in the file
    assert data.math500(data_dir)[0]["id"] == "math500-test/precalculus/807.json"


@pytest.mark.data
def test_env_var_selects_local_dir(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("hub used despite SAPO_DATA_DIR"))
    assert len(data.aime25()) == 30


def test_deepmath_hub_format(tmp_path):
    write_jsonl(tmp_path / "deepmath" / "train.jsonl", DEEPMATH_RECORDS)
    ds = data.deepmath(tmp_path)
    assert len(ds) == len(DEEPMATH_RECORDS)
    assert_schema(ds, "deepmath")
    assert ds["answer"] == [r["final_answer"] for r in DEEPMATH_RECORDS]
    assert ds[1]["prompt"][1]["content"] == DEEPMATH_RECORDS[1]["question"]


@pytest.mark.data
def test_training_mix_is_equal_deterministic_and_shuffled(mix_dir):
    n = 2 * len(DEEPMATH_RECORDS)
    mix = data.training_mix(n, seed=3, data_dir=mix_dir)
    assert len(mix) == n and tuple(mix.column_names) == data.COLUMNS
    assert mix["source"].count("gsm8k") == mix["source"].count("deepmath") == n // 2
    assert len(set(mix["id"])) == n
    assert data.training_mix(n, seed=3, data_dir=mix_dir)["id"] == mix["id"]
    other = data.training_mix(n, seed=4, data_dir=mix_dir)["id"]
    assert other != mix["id"]
    sources = mix["source"]
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)  # interleaved
    with pytest.raises(ValueError, match="exceeds"):
        data.training_mix(2 * len(DEEPMATH_RECORDS) + 2, seed=0, data_dir=mix_dir)
    with pytest.raises(ValueError, match="even"):
        data.training_mix(3, seed=0, data_dir=mix_dir)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"math500/test\.jsonl"):
        data.math500(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"deepmath/train\.jsonl"):
        data.deepmath(tmp_path)


def test_missing_field_names_file_and_field(tmp_path):
    records = [dict(DEEPMATH_RECORDS[0]), {"question": "What is 1+1?", "difficulty": 1.0}]
    path = write_jsonl(tmp_path / "deepmath" / "train.jsonl", records)
    with pytest.raises(data.DatasetFormatError) as err:
        data.deepmath(tmp_path)
    assert f"{path}:2" in str(err.value) and "'final_answer'" in str(err.value)

    write_jsonl(tmp_path / "aime25" / "test.jsonl", [{"problem": "p", "answer": "", "id": "0"}])
    with pytest.raises(data.DatasetFormatError, match=r"aime25/test\.jsonl:1.*'answer'"):
        data.aime25(tmp_path)
    write_jsonl(tmp_path / "math500" / "test.jsonl", [{"problem": "p", "answer": "1"}])
    with pytest.raises(data.DatasetFormatError, match=r"math500/test\.jsonl:1.*'unique_id'"):
        data.math500(tmp_path)
    for gold in ("she has 5 apples", "5 apples ####", "####  "):  # GSM8K golds end with '#### <answer>'
        write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [{"question": "q", "answer": gold}])
        with pytest.raises(data.DatasetFormatError, match=r"gsm8k/test\.jsonl:1.*'answer' must end with '#### "):
            data.gsm8k("test", tmp_path)
    (tmp_path / "aime24" / "test.jsonl").parent.mkdir()
    (tmp_path / "aime24" / "test.jsonl").write_text("")
    with pytest.raises(data.DatasetFormatError, match=r"aime24/test\.jsonl: no records"):
        data.aime24(tmp_path)


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="gsm8k, deepmath"):
        data.load_source("svamp", "test")
    with pytest.raises(ValueError, match="train, test"):
        data.gsm8k("validation")


# ---------------------------------------------------------------------------------------------
# the hub path, with a stand-in for datasets.load_dataset (no internet here)
# ---------------------------------------------------------------------------------------------

HUB = {  # (path, config, split) -> records in that hub dataset's own format
    ("openai/gsm8k", "main", "train"): [{"question": "Q1?", "answer": "1+1=2\n#### 2"},
                                        {"question": "Q2?", "answer": "#### 1,200"}],
    ("openai/gsm8k", "main", "test"): [{"question": "T1?", "answer": "#### 5"}],
    ("zwhe99/DeepMath-103K", None, "train"): [dict(r, r1_solution_1="long", r1_solution_2="long",
                                                   r1_solution_3="long") for r in DEEPMATH_RECORDS[:2]],
    ("HuggingFaceH4/MATH-500", None, "test"): [{"problem": "P?", "solution": "s", "answer": "\\frac12",
                                                "subject": "Algebra", "level": 2,
                                                "unique_id": "test/a/1.json"}],
    ("HuggingFaceH4/aime_2024", None, "train"): [{"id": 60, "problem": "A?", "solution": "s",
                                                  "answer": "025", "url": "u", "year": "2024"}],
    ("math-ai/aime25", None, "test"): [{"problem": "B?", "answer": 70, "id": "0"}],
}


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return Dataset.from_list(HUB[(path, name, split)])

    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "load_dataset", load_dataset)
    return calls


def test_hub_path_maps_fields(fake_hub):
    assert data.gsm8k("train")["answer"] == ["2", "1200"]
    assert data.gsm8k("test")["id"] == ["gsm8k-test-0"]
    assert data.deepmath()["answer"] == ["0", "\\dfrac{1}{2}"]
    assert data.math500()[0]["id"] == "math500-test/a/1.json"
    assert data.aime24()[0]["answer"] == "025" and data.aime24()[0]["id"] == "aime24-60"
    assert data.aime25()[0]["answer"] == "70"
    assert ("HuggingFaceH4/aime_2024", None, "train") in fake_hub
    assert {c[0] for c in fake_hub} == {s.hub_path for s in data.SOURCES.values()}


def test_hub_missing_field_names_dataset_and_field(fake_hub, monkeypatch):
    renamed = [{"question": "B?", "answer": "70", "id": "0"}]  # e.g. a copy that calls it "question"
    monkeypatch.setitem(HUB, ("math-ai/aime25", None, "test"), renamed)
    with pytest.raises(data.DatasetFormatError, match=r"math-ai/aime25.*'problem'"):
        data.aime25()


def test_unreachable_hub_says_how_to_work_offline(monkeypatch, tmp_path):
    def offline(path, name=None, split=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "load_dataset", offline)
    with pytest.raises(data.DataUnavailableError, match=r"openai/gsm8k.*ConnectionError.*sapo_core.data download"
                                                        r".*SAPO_DATA_DIR=DIR"):
        data.gsm8k("test")
    with pytest.raises(data.DataUnavailableError, match="MATH-500"):
        data.download(tmp_path, ["math500"])


def test_download_writes_the_local_layout(fake_hub, tmp_path):
    files = data.download(tmp_path)
    expected = {tmp_path / name / f"{split}.jsonl" for name, s in data.SOURCES.items() for split in s.splits}
    assert set(files) == expected
    deepmath_record = json.loads((tmp_path / "deepmath" / "train.jsonl").read_text().splitlines()[0])
    assert set(deepmath_record) == {"question", "final_answer", "difficulty", "topic"}  # no R1 solutions
    # the local loaders read what was downloaded and agree with the hub loaders
    for loader in (lambda d: data.gsm8k("train", d), data.deepmath, data.math500, data.aime24, data.aime25):
        assert loader(tmp_path).to_list() == loader(None).to_list()
    # existing files are kept unless asked to overwrite
    n_calls = len(fake_hub)
    data.download(tmp_path, ["aime25"])
    assert len(fake_hub) == n_calls
    data.main(["download", "--out", str(tmp_path), "--only", "aime25", "--overwrite"])
    assert len(fake_hub) == n_calls + 1


def test_synthetic_arithmetic_unchanged():
    ds = data.synthetic_arithmetic(4, seed=1)
    assert tuple(ds.column_names[:4]) == data.COLUMNS and "solution" in ds.column_names
    assert data.synthetic_arithmetic(4, seed=1)["id"] == ds["id"]


@pytest.mark.data
def test_aime_pools_both_years(data_dir):
    ds = data.aime(data_dir)
    assert len(ds) == 60 and len(set(ds["id"])) == 60 and tuple(ds.column_names) == data.COLUMNS
    assert [ds["source"].count(year) for year in ("aime24", "aime25")] == [30, 30]


def test_the_synthetic_task_is_one_dataclass():
    task = data.SyntheticTask(size=6, data_seed=2, max_operand=5)
    assert task.dataset()["id"] == data.synthetic_arithmetic(6, 2, max_operand=5, split="test")["id"]
    # synthetic_arithmetic's defaults are the dataclass's: operands 1..9, one step (the tiny model's task)
    ds = data.synthetic_arithmetic(300, seed=0)
    assert max(int(a) for a in ds["answer"]) <= 18 and max(int(a) for a in ds["answer"]) > 9
    with pytest.raises(ValueError, match=r"max_operand \(--synthetic_max_operand\) must be an integer >= 1"):
        data.SyntheticTask(max_operand=0)
    with pytest.raises(ValueError, match="split must be one of 'train', 'validation', 'test', got 'val'"):
        data.SyntheticTask(split="val")
