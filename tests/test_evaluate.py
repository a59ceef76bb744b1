"""Benchmark evaluation (method §6): metrics, the oracle chain on the real benchmarks, the hf backend on the
tiny model, records, regrade and the CLI's refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sapo_core import evaluate as E
from sapo_core import tiny
from sapo_core.data import synthetic_arithmetic
from sapo_core.prompts import format_completion
from sapo_core.rewards import extract_answer

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER_BENCHMARKS = ["gsm8k", "math500", "aime", "aime24", "aime25"]
SIZES = {"gsm8k": 1319, "math500": 500, "aime": 60, "aime24": 30, "aime25": 30}


# ------------------------------------------------------------------------------------- test doubles


class Oracle:
    """A stand-in generator that answers each problem with its gold inside the template (`shift` 0), or with
    gold + shift for numeric golds (and no answer at all for the others)."""

    def __init__(self, datasets, shift: int = 0):
        self.gold = {ds_row["prompt"][-1]["content"]: ds_row["answer"] for ds in datasets for ds_row in ds}
        self.shift = shift

    def info(self):
        return {"name": "oracle", "version": "0", "device": "none"}

    def answer(self, gold: str) -> str:
        if not self.shift:
            return gold
        try:
            return str(Decimal(gold) + self.shift)
        except InvalidOperation:
            return ""

    def generate(self, prompts, *, n, temperature, top_p, max_new_tokens, seed, progress=True):
        texts = [format_completion("I know this one.", self.answer(self.gold[p[-1]["content"]])) for p in prompts]
        return [[E.Completion(text, len(text)) for _ in range(n)] for text in texts]


def _is_number(gold: str) -> bool:
    try:
        Decimal(gold)
        return True
    except InvalidOperation:
        return False


# -------------------------------------------------------------------------------------------- metrics


# Hand-computed: pass@k = 1 - C(4 - c, k) / C(4, k) with C(4, k) = 4, 6, 4, 1 for k = 1..4.
PASS_AT_K_N4 = {
    0: [0, 0, 0, 0],
    1: [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), 1],   # 1 - 3/4, 1 - 3/6, 1 - 1/4, 1 - 0
    2: [Fraction(1, 2), Fraction(5, 6), 1, 1],                # 1 - 2/4, 1 - 1/6, 1 - 0, 1 - 0
    3: [Fraction(3, 4), 1, 1, 1],                             # 1 - 1/4, then C(1, k >= 2) = 0
    4: [1, 1, 1, 1],
}


@pytest.mark.parametrize("c", range(5))
def test_pass_at_k_matches_hand_computed_values(c):
    for k, expected in enumerate(PASS_AT_K_N4[c], start=1):
        assert E.pass_at_k(4, c, k) == pytest.approx(float(expected), abs=1e-12), (c, k)


def test_pass_at_k_refuses_k_above_n_and_impossible_counts():
    with pytest.raises(ValueError, match="k <= n"):
        E.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="k <= n"):
        E.pass_at_k(2, 0, 4)
    with pytest.raises(ValueError, match="correct samples"):
        E.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k <= n"):
        E.pass_at_k(4, 1, 0)


def test_pass_at_k_values_are_powers_of_two_and_n():
    assert E.pass_at_k_values(1) == [1]
    assert E.pass_at_k_values(4) == [1, 2, 4]
    assert E.pass_at_k_values(6) == [1, 2, 4, 6]
    assert E.pass_at_k_values(32) == [1, 2, 4, 8, 16, 32]


def test_majority_vote_breaks_ties_by_first_appearance():
    assert E.majority_vote(["3", "5", "5", "3"], [0.0, 1.0, 1.0, 0.0]) == ("3", 0.0)
    assert E.majority_vote(["5", "3", "3", "5"], [1.0, 0.0, 0.0, 1.0]) == ("5", 1.0)
    assert E.majority_vote(["7", "5", "3"], [0.0, 1.0, 0.0]) == ("7", 0.0)  # three-way tie
    assert E.majority_vote(["3", "5", "5"], [0.0, 1.0, 1.0]) == ("5", 1.0)  # a real majority wins


def test_majority_vote_groups_by_normal_form_and_skips_missing_answers():
    # `1,000`, `1000` and `$1000$` are one answer (the grader's normal form) and outvote `7`, `7`.
    assert E.majority_vote(["7", "1,000", "1000", "7", "$1000$"], [0, 1, 1, 0, 1]) == ("1000", 1.0)
    assert E.majority_vote([None, None, "4"], [0.0, 0.0, 1.0]) == ("4", 1.0)
    assert E.majority_vote([None, ""], [0.0, 0.0]) == (None, 0.0)


def _sample(pid, j, score, answer="1", fmt=1.0, tokens=10):
    return {"benchmark": "b", "problem_id": pid, "sample": j, "completion": "", "extracted_answer": answer,
            "gold": "1", "score": score, "format": fmt, "num_tokens": tokens, "truncated": False}


def test_benchmark_metrics_on_a_crafted_set():
    # p1: 2 of 4 right; p2: 0 of 4 (majority "2" wrong); p3: 4 of 4; p4: gold cannot be judged.
    samples = ([_sample("p1", j, s, a) for j, (s, a) in enumerate([(1.0, "1"), (0.0, "2"), (1.0, "1"), (0.0, "3")])]
               + [_sample("p2", j, 0.0, "2") for j in range(4)] + [_sample("p3", j, 1.0) for j in range(4)]
               + [_sample("p4", j, None, fmt=0.0) for j in range(4)])
    m = E.benchmark_metrics(samples, 4, seed=0)
    assert (m["n_problems"], m["n_samples"], m["n_unjudged"]) == (3, 12, 1)
    assert m["mean@n"] == pytest.approx(6 / 12)
    assert m["pass@k"]["1"] == pytest.approx(m["mean@n"])
    assert m["pass@k"]["2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert m["pass@k"]["4"] == pytest.approx(2 / 3)
    assert m["maj@n"] == pytest.approx(2 / 3)  # p1 "1" (2 votes) right, p2 wrong, p3 right
    assert m["format_rate"] == pytest.approx(12 / 16) and m["mean_length"] == 10
    low, high = m["mean@n_ci95"]
    assert 0 <= low < m["mean@n"] < high <= 1
    assert E.benchmark_metrics(samples, 4, seed=0)["mean@n_ci95"] == m["mean@n_ci95"]  # seeded


def test_benchmark_metrics_needs_n_samples_per_problem():
    with pytest.raises(ValueError, match="n=4"):
        E.benchmark_metrics([_sample("p1", j, 1.0) for j in range(3)], 4)


def test_mean_interval_resamples_instances_with_all_their_problems():
    """40 problems, 10 instances of 4 that succeed or fail together: 10 pieces of evidence, not 40."""
    instances = [f"i{k // 4}" for k in range(40)]
    scores = [float(int(key[1:]) % 3 == 0) for key in instances]
    by_problem = E.mean_interval(scores, seed=0)
    by_instance = E.mean_interval(scores, seed=0, instances=instances)
    of_instances = E.mean_interval([float(k % 3 == 0) for k in range(10)], seed=0)  # the 10 instances alone
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert by_instance[0] < by_problem[0] < 0.4 < by_problem[1] < by_instance[1]
    assert width(by_instance) == pytest.approx(width(of_instances), rel=0.15) and width(by_problem) < 0.6 * width(
        by_instance)
    distinct = [f"p{k}" for k in range(40)]  # every problem its own instance: the plain bootstrap, to the bit
    assert E.mean_interval(scores, seed=0, instances=distinct) == by_problem
    assert E.mean_interval([0.0, 1.0], seed=0, instances=["a", "a"]) is None  # one instance: no interval
    with pytest.raises(ValueError, match="one key per problem \\(2\\), got 1"):
        E.mean_interval([0.0, 1.0], seed=0, instances=["a"])


def test_mean_interval_degenerate_and_single_problem():
    assert E.mean_interval([1.0] * 30, seed=0) == [1.0, 1.0]
    assert E.mean_interval([0.5], seed=0) is None
    a, b = E.mean_interval([0.0, 1.0] * 15, seed=3), E.mean_interval([0.0, 1.0] * 15, seed=3)
    assert a == b and a[0] < 0.5 < a[1]


# ---------------------------------------------------------------------------------- oracle on real data


@pytest.mark.data
def test_oracle_scores_one_on_every_paper_benchmark(data_dir):
    from sapo_core import data

    datasets = [data.gsm8k("test", data_dir), data.math500(data_dir), data.aime24(data_dir), data.aime25(data_dir)]
    ev = E.evaluate(Oracle(datasets), PAPER_BENCHMARKS, data_dir=data_dir, progress=False)
    for name in PAPER_BENCHMARKS:
        m = ev.metrics(name)
        assert (m["n_problems"], m["n_unjudged"], m["n"]) == (SIZES[name], 0, E.BENCHMARKS[name].default_n)
        assert m["n_samples"] == SIZES[name] * m["n"]
        assert m["mean@n"] == 1.0 and m["maj@n"] == 1.0 and m["format_rate"] == 1.0, name
        assert set(m["pass@k"].values()) == {1.0}, name
    assert ev.results["complete"] and ev.results["backend"]["name"] == "oracle"


@pytest.mark.data
def test_oracle_answering_gold_plus_one_scores_zero(data_dir):
    from sapo_core import data

    datasets = [data.gsm8k("test", data_dir), data.math500(data_dir), data.aime24(data_dir), data.aime25(data_dir)]
    ev = E.evaluate(Oracle(datasets, shift=1), PAPER_BENCHMARKS, n=2, data_dir=data_dir, progress=False)
    numeric = [s for s in ev.samples if _is_number(s["gold"])]
    assert len(numeric) > 2 * (1319 + 30 + 30)  # every GSM8K and AIME gold, many MATH-500 ones
    assert all(s["score"] == 0.0 for s in numeric)
    for name in PAPER_BENCHMARKS:
        m = ev.metrics(name)
        assert m["mean@n"] == 0.0 and m["maj@n"] == 0.0 and set(m["pass@k"].values()) == {0.0}, name


# -------------------------------------------------------------------------------- hf backend, tiny model


@pytest.fixture(scope="module")
def tiny_model():
    path = tiny.base_model_path()
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_greedy_synthetic_equals_a_direct_greedy_check(tiny_model):
    model, tokenizer = tiny_model
    ev = E.evaluate("tiny", ["synthetic"], temperature=0, limit=24, backend="hf", batch_size=8, progress=False)
    prompts = synthetic_arithmetic(200, 0, max_steps=1, max_operand=9, split="test").select(range(24))
    direct = []
    for messages in prompts["prompt"]:  # one prompt at a time, no padding
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        gen = model.generate(**ids, do_sample=False, max_new_tokens=64)
        direct.append(tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    assert [s["completion"] for s in ev.samples] == direct
    right = [extract_answer(c) == gold for c, gold in zip(direct, prompts["answer"])]
    m = ev.metrics("synthetic")
    assert m["n"] == 1 and m["mean@n"] == pytest.approx(sum(right) / 24) and m["maj@n"] == m["mean@n"]
    assert 0 < m["mean@n"] < 1  # the tiny model is neither perfect nor useless: the check can fail


def test_sampling_is_seeded_and_leaves_the_caller_alone(tiny_model):
    model, tokenizer = tiny_model
    kwargs = {"n": 4, "temperature": 0.7, "limit": 12, "backend": "hf", "progress": False}
    first = E.evaluate("tiny", ["synthetic"], seed=5, **kwargs)
    again = E.evaluate("tiny", ["synthetic"], seed=5, **kwargs)
    other = E.evaluate("tiny", ["synthetic"], seed=6, **kwargs)
    texts = [[s["completion"] for s in ev.samples] for ev in (first, again, other)]
    assert texts[0] == texts[1] and texts[0] != texts[2]
    assert len(set(texts[0])) > 12  # n samples of a problem are not copies of one another
    # The trainer's path: an in-memory model and tokenizer give the same samples, and neither the caller's RNG
    # nor the model's training mode changes.
    model.train()
    state = torch.random.get_rng_state()
    in_memory = E.evaluate(model, ["synthetic"], tokenizer=tokenizer, seed=5, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), state) and model.training
    model.eval()
    assert [s["completion"] for s in in_memory.samples] == texts[0]
    assert in_memory.results["model"]["given"].startswith("<in-memory")


def test_a_shared_prompt_cache_samples_what_plain_generate_samples(tiny_model):
    model, tokenizer = tiny_model
    prompts = E.load_benchmark("synthetic", limit=12)["prompt"]
    kwargs = {"n": 4, "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64, "seed": 1, "progress": False}
    shared = E.HFGenerator(model, tokenizer, batch_size=16).generate(prompts, **kwargs)
    plain = E.HFGenerator(model, tokenizer, batch_size=16, share_prompt_cache=False).generate(prompts, **kwargs)
    assert shared == plain
    assert sum(len({c.text for c in row}) > 1 for row in shared) >= 3  # sampled, not greedy: the check can fail


def test_the_shared_prompt_cache_path_is_greedy_generate_one_prompt_at_a_time(tiny_model):
    model, tokenizer = tiny_model
    prompts = E.load_benchmark("synthetic", limit=10)["prompt"]
    # Greedy refuses n > 1, so the n samples come from a temperature that makes sampling the arg-max; 3 prompts
    # per batch of 9 rows: three batches reuse one key/value cache, the last (1 prompt) gets its own.
    fast = E.HFGenerator(model, tokenizer, batch_size=9).generate(prompts, n=3, temperature=1e-5, top_p=1.0,
                                                                  max_new_tokens=64, seed=0, progress=False)
    direct = []
    for messages in prompts:  # a plain model.generate loop: one prompt, no padding, no shared cache
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        gen = model.generate(**ids, do_sample=False, max_new_tokens=64)
        direct.append(tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    assert [[c.text for c in row] for row in fast] == [[text] * 3 for text in direct]
    assert len(set(direct)) > 5


def test_records_are_complete(tmp_path):
    out = tmp_path / "ev"
    ev = E.evaluate("tiny", "synthetic", n=3, limit=10, backend="hf", out=out, progress=False,
                    synthetic=E.SyntheticTask(size=50, data_seed=2))
    results = json.loads((out / "results.json").read_text())
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 10 * 3 == results["benchmarks"]["synthetic"]["n_samples"]
    keys = {"benchmark", "problem_id", "instance", "sample", "completion", "extracted_answer", "gold", "score",
            "format", "num_tokens", "truncated"}
    rows = [json.loads(line) for line in lines]
    assert all(keys <= row.keys() for row in rows)
    # a synthetic problem's instance is its arithmetic: problems worded apart share it
    solutions = dict(zip(*E.load_benchmark("synthetic", synthetic=E.SyntheticTask(size=50, data_seed=2),
                                           limit=10).select_columns(["id", "solution"])[:].values()))
    assert all(r["instance"] == solutions[r["problem_id"]] for r in rows)
    instances = len(set(solutions.values()))
    assert results["benchmarks"]["synthetic"]["n_instances"] == instances < 10
    assert f"| synthetic | 10 ({instances} instances) | 3 |" in E.format_table(results)
    assert sorted({(r["problem_id"], r["sample"]) for r in rows}) == sorted(
        (f"synthetic-test-2-{i}", j) for i in range(10) for j in range(3))
    assert results == ev.results and results["complete"]
    assert results["settings"]["synthetic"]["data_seed"] == 2 and results["settings"]["temperature"] == 0.7
    assert results["backend"]["name"] == "hf" and results["backend"]["version"].startswith("transformers")
    assert results["versions"]["torch"] == torch.__version__ and "commit" in results["git"]
    assert results["model"]["path"] == str(tiny.base_model_path().resolve())
    metrics = results["benchmarks"]["synthetic"]
    for key in ("mean@n", "mean@n_ci95", "pass@k", "maj@n", "format_rate", "mean_length", "n_problems",
                "n_samples", "max_new_tokens"):
        assert metrics[key] is not None, key


# ----------------------------------------------------------------------------------------- run directories


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny.base_model_path(), run / "final")
    (run / "provenance.json").write_text(json.dumps({"gate": "erf", "seed": 3}))
    return run


def test_a_run_directory_evaluates_its_final_model_into_its_eval_folder(run_dir):
    source = E.resolve_model(run_dir)
    assert source.path == str((run_dir / "final").resolve()) and source.run == {"gate": "erf", "seed": 3}
    assert E.resolve_model(run_dir / "final").run_dir == str(run_dir.resolve())
    assert E.default_out_dir(source, ["synthetic"], limit=4).parent == run_dir.resolve() / "eval"
    # the validation split is evaluated beside the test split, never into its directory
    assert E.default_out_dir(source, ["synthetic"], split="validation").name == "synthetic-T0.7-split-validation-seed0"
    assert E.default_out_dir(source, ["gsm8k"], split="validation") == E.default_out_dir(source, ["gsm8k"])
    rc = E.main(["--model", str(run_dir), "--limit", "4", "--n", "2", "--backend", "hf"])
    assert rc == 0
    (out,) = (run_dir / "eval").iterdir()
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["run"]["gate"] == "erf"


def test_a_run_without_final_model_is_named(run_dir, capsys):
    shutil.rmtree(run_dir / "final")
    (run_dir / "status.json").write_text(json.dumps({"state": "failed"}))
    assert E.main(["--model", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no final/" in err and "failed" in err and err.count("\n") == 1


# -------------------------------------------------------------------------------------------- regrade


def test_regrade_reproduces_results_from_samples(tmp_path, capsys):
    out = tmp_path / "ev"
    assert E.main(["--model", "tiny", "--limit", "12", "--n", "4", "--out", str(out), "--backend", "hf"]) == 0
    original = json.loads((out / "results.json").read_text())
    # Spoil the stored grading: regrade must recompute it from the completions alone.
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        row.update(score=1.0 - row["score"], extracted_answer="x", format=0.0)
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert E.main(["--regrade", str(out), "--out", str(tmp_path / "re")]) == 0
    regraded = json.loads((tmp_path / "re" / "results.json").read_text())
    assert regraded["benchmarks"] == original["benchmarks"]
    assert regraded["settings"] == original["settings"] and regraded["regraded_from"] == str(out.resolve())
    assert 0 < original["benchmarks"]["synthetic"]["mean@n"] < 1
    assert E.main(["--regrade", str(out), "--out", str(tmp_path / "re")]) == 2  # never overwritten
    assert "never overwritten" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- refusals (CLI)


@pytest.mark.parametrize("argv, named", [
    (["--benchmarks", "synthetic,gsm9k"], "unknown benchmark 'gsm9k'"),
    (["--backend", "tpu"], "unknown backend 'tpu'"),
    (["--n", "0"], "n must be an integer >= 1, got 0"),
    (["--temperature", "-0.5"], "temperature must be a finite number >= 0"),
    (["--temperature", "0", "--n", "4"], "n must be 1, got 4"),
    (["--top_p", "0"], "top_p must lie in (0, 1]"),
    (["--limit", "0"], "limit must be an integer >= 1"),
    (["--n", "two"], "argument --n: invalid int value: 'two'"),
    (["--model", "/nonexistent/ckpt"], "model '/nonexistent/ckpt' is not a directory"),
])
def test_bad_input_is_one_named_line_exit_2_and_no_directory(tmp_path, capsys, argv, named):
    out = tmp_path / "out"
    assert E.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_model_path_without_weights_is_named(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    assert E.main(["--model", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: model path '.*ckpt' holds no model weights .*\n", err)
    assert not (tmp_path / "out").exists()


def test_an_existing_evaluation_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert E.main(["--model", "tiny", "--limit", "2", "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}" and not (out / "samples.jsonl").exists()
    with pytest.raises(E.EvaluationError, match="never overwritten"):
        E.write_records(E.Evaluation({}, []), out)


def test_missing_vllm_names_the_gpu_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    assert E.main(["--model", "tiny", "--backend", "vllm", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backend 'vllm' needs vLLM") and ".[gpu]" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(E.BackendUnavailableError, match=r"\.\[gpu\]"):
        E.VLLMGenerator(tiny.base_model_path())


@pytest.mark.slow
def test_the_cli_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sapo_core.evaluate", "--benchmarks", "aime26", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: unknown benchmark 'aime26'; available: gsm8k, math500, aime, aime24, aime25, "
                           "synthetic\n")


def test_api_refusals():
    with pytest.raises(E.EvaluationError, match="needs its tokenizer"):
        E.evaluate(torch.nn.Linear(1, 1), ["synthetic"])
    with pytest.raises(E.EvaluationError, match="model must be"):
        E.evaluate(3, ["synthetic"])
    with pytest.raises(E.EvaluationError, match="listed twice"):
        E.evaluate("tiny", "synthetic,synthetic")


def test_plots_draw_one_or_several_evaluations():
    from sapo_core import plots

    samples = [_sample("p1", j, float(j < 2)) for j in range(4)] + [_sample("p2", j, 1.0) for j in range(4)]
    results = {"benchmarks": {"a": E.benchmark_metrics(samples, 4), "b": E.benchmark_metrics(samples[:4], 4)}}
    fig = plots.eval_accuracy({"base": results, "trained": results})
    assert len(fig.axes[0].patches) == 4  # a bar per model and benchmark
    fig = plots.pass_at_k_curve(results)
    assert [line.get_xdata().tolist() for line in fig.axes[0].lines] == [[1, 2, 4], [1, 2, 4]]
    with pytest.raises(ValueError, match="benchmark results"):
        plots.eval_accuracy({"benchmarks": {}})


@pytest.mark.parametrize("argv, named", [
    (["--eval_size", "0"], "size (--eval_size) must be an integer >= 1, got 0"),
    (["--synthetic_max_operand", "0"], "--synthetic_max_operand"),
    (["--log_level", "LOUD"], "log_level must be one of"),
])
def test_bad_synthetic_task_and_log_level_are_named(tmp_path, capsys, argv, named):
    assert E.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_bools_are_not_numbers():
    with pytest.raises(E.EvaluationError, match="temperature"):
        E.evaluate("tiny", temperature=True)
    with pytest.raises(E.EvaluationError, match="top_p"):
        E.evaluate("tiny", top_p=True)
    with pytest.raises(ValueError, match="eval_size"):
        E.SyntheticTask(size=True)


def test_a_run_is_evaluated_on_its_own_held_out_synthetic_set(tmp_path):
    from sapo_core.evaluate import ModelSource, SyntheticTask, run_synthetic_task

    source = ModelSource(given=str(tmp_path), path=str(tmp_path / "final"), run_dir=str(tmp_path))
    (tmp_path / "config.yaml").write_text("dataset: synthetic\neval_size: 50\nsynthetic_max_operand: 7\n")
    # keys the run did not set take the training defaults (ScriptArguments, GatedGRPOConfig)
    assert run_synthetic_task(source) == SyntheticTask(size=50, data_seed=0, max_steps=1, max_operand=7, split="test")
    (tmp_path / "config.yaml").write_text("data_seed: 3\nsynthetic_max_steps: 2\n")
    assert run_synthetic_task(source) == SyntheticTask(size=200, data_seed=3, max_steps=2, max_operand=9)
    (tmp_path / "config.yaml").write_text("eval_size: 0\n")
    with pytest.raises(E.EvaluationError, match=r"config.yaml: synthetic task: size \(--eval_size\)"):
        run_synthetic_task(source)
    (tmp_path / "config.yaml").write_text("dataset: gsm8k\n")
    assert run_synthetic_task(source) is None
    assert run_synthetic_task(ModelSource(given="tiny", path="x")) is None


def test_the_cli_evaluates_a_run_on_its_config_sizes_unless_a_flag_says_otherwise(run_dir):
    (run_dir / "config.yaml").write_text("dataset: synthetic\neval_size: 5\ndata_seed: 4\nsynthetic_max_operand: 9\n")
    greedy = ["--model", str(run_dir), "--temperature", "0", "--backend", "hf"]
    assert E.main([*greedy, "--out", str(run_dir / "ev-run")]) == 0
    results = json.loads((run_dir / "ev-run" / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["n_problems"] == 5
    assert results["settings"]["synthetic"] == {"size": 5, "data_seed": 4, "min_steps": 1, "max_steps": 1,
                                                "max_operand": 9, "split": "test"}
    ids = {json.loads(line)["problem_id"] for line in (run_dir / "ev-run" / "samples.jsonl").read_text().splitlines()}
    assert ids == {f"synthetic-test-4-{i}" for i in range(5)}
    assert E.main([*greedy, "--eval_size", "3", "--out", str(run_dir / "ev-flag")]) == 0
    results = json.loads((run_dir / "ev-flag" / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["n_problems"] == 3 and results["settings"]["synthetic"]["data_seed"] == 4


@pytest.mark.data
def test_aime_pools_aime24_and_aime25(data_dir):
    pooled = E.load_benchmark("aime", data_dir=data_dir)
    assert len(pooled) == 60 and len(set(pooled["id"])) == 60
    years = [list(E.load_benchmark(name, data_dir=data_dir)["id"]) for name in ("aime24", "aime25")]
    assert list(pooled["id"]) == years[0] + years[1]
    assert set(pooled["source"]) == {"aime24", "aime25"}


def test_check_settings_takes_keywords_with_evaluate_defaults():
    assert E.check_settings("synthetic, aime") == ["synthetic", "aime"]
    assert E.check_settings(["synthetic"], n=4, temperature=0.7, limit=16, backend="hf", seed=0) == ["synthetic"]
    with pytest.raises(TypeError):
        E.check_settings("synthetic", 4)  # positional settings are refused: ten of them cannot be read
