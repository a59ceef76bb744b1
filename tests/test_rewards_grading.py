"""Tests for sapo_core.rewards.grading and .worker: math-verify grading of equivalent and wrong answers and of
every benchmark gold, the grading pool (time limit, dead and stuck workers, threads, fork, memory limit),
argument checks, and the TRL call convention."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal, InvalidOperation

import pytest

from sapo_core import data
from sapo_core.prompts import format_completion
from sapo_core.rewards import (
    WORKERS_ENV,
    CorrectnessReward,
    Grader,
    RewardStats,
    correctness_reward,
    default_grader,
    format_reward,
)
from sapo_core.rewards.grading import default_num_workers

TIMEOUT_S = 1.0    # the time limit of the short-limit grader below
RESTART_S = 10.0   # generous bound on replacing a killed worker (a fresh interpreter; 2 busy cores)


@pytest.fixture(scope="module")
def grader():
    """A small grader with a short time limit, started (workers ready) before the tests time it."""
    with Grader(num_workers=2, timeout_s=TIMEOUT_S, warm_up=False) as g:
        assert g.grade(["\\frac{1}{2}", "\\frac{2}{4}"], ["0.5", "0.5"]) == [1.0, 1.0]
        yield g


def ok(answer: str) -> str:
    """A completion in the required layout with `answer` in its answer block."""
    return format_completion("some reasoning", answer)


def new_workers(before: set[int]) -> list[int]:
    """Pids of this process's pool workers started since `before` was taken."""
    return [p.pid for p in multiprocessing.active_children() if p.pid not in before]


# ---------------------------------------------------------------------------------------------
# correctness: equivalences
# ---------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("72", "72"), ("72.0", "72"), ("\\frac{144}{2}", "72"), ("72", "#### 72"),
    ("1,000", "#### 1,000"), ("1000", "The total is 10*100 = 1000.\n#### 1,000"), ("$1,000", "1000"),
    ("25", "025"), ("025", 25), ("25", 25), ("\\boxed{25}", "025"),
    ("0.5", "\\frac{1}{2}"), ("1/2", "\\frac12"), ("\\dfrac{1}{2}", "0.5"), ("14/3", "\\frac{14}{3}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"), ("2\\sqrt{2}", "\\sqrt{8}"),
    ("(1+x)^2", "x^2 + 2x + 1"), ("\\pi", "\\pi"), ("-\\frac{\\pi}{6}", "-\\frac{\\pi}{6}"),
    ("\\{2, 1\\}", "\\{1,2\\}"), ("(1, 2)", "(1,2)"), ("[-2, 7]", "[-2,7]"),
    ("(2,\\infty)", "(2, \\infty)"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
    ("6 - 5i", "6-5i"), ("10\\%", "10\\%"), ("\\text{Evelyn}", "Evelyn"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("x = 5", "5"), ("The answer is 5", "5"), ("$\\boxed{5}$", "5"),
    # one number amid plain words: units, hedges, markdown (inside $...$ the words would become symbols)
    ("18 dollars", "#### 18"), ("18 cookies", "18"), ("about 18", "18"), ("**18**", "18"), ("18.", "18"),
    ("18 years old", "18"), ("72 (dollars)", "72"), ("\\text{18 people}", "18"), ("-5 degrees", "-5"),
    ("3/4 cup", "\\frac{3}{4}"), ("0.5 kg", "\\frac12"),
    # words: the same up to case; booleans however written
    ("true", "True"), ("True", "true"), ("\\text{False}", "false"), ("East", "\\text{east}"),
    ("no  solution", "No solution"),
]
NOT_EQUIVALENT = [
    ("73", "72"), ("-72", "72"), ("72", "#### 7,200"), ("26", "025"), ("0.51", "\\frac{1}{2}"),
    ("4.67", "\\frac{14}{3}"), ("\\{1, 3\\}", "\\{1,2\\}"), ("(1, 2]", "(1,2)"), ("\\sqrt{3}", "\\sqrt{2}"),
    ("x^2 + 1", "x^2 + 2x + 1"), ("", "5"), ("no idea", "5"), ("\\frac{1}{0}", "5"),
    # prose with two numbers is not reduced to one of them; mathematical words are mathematics
    ("72 or 73", "73"), ("not 72 but 73", "73"), ("5 apples and 3 pears", "3"), ("2 pi", "2"),
    ("5x", "5"), ("true", "False"), ("yes", "no"),
]


def test_equivalent_answers_score_one():
    answers, golds = zip(*EQUIVALENT)
    scores = correctness_reward([ok(a) for a in answers], answer=list(golds))
    assert scores == [1.0] * len(EQUIVALENT), [p for p, s in zip(EQUIVALENT, scores) if s != 1.0]


def test_wrong_answers_score_zero():
    answers, golds = zip(*NOT_EQUIVALENT)
    scores = correctness_reward([ok(a) for a in answers], answer=list(golds))
    assert scores == [0.0] * len(NOT_EQUIVALENT), [p for p, s in zip(NOT_EQUIVALENT, scores) if s != 0.0]


@pytest.mark.parametrize("a, b, different", [
    ("2*sqrt(2)", "sqrt(8)", False), ("(x + 1)**2", "x**2 + 2*x + 1", False), ("sqrt(x**2)", "x", False),
    ("sin(x)**2 + cos(x)**2", "1", False), ("log(x*y)", "log(x) + log(y)", False),  # equal, or no verdict
    ("Rational(1, 3)", "Rational(1, 2)", True), ("x", "x + 1", True), ("x**2 + 1", "121", True),
    ("pi", "Float('3.14159')", True), ("p - q", "q - p", True),
])
def test_numeric_refutation_only_refutes_real_differences(a, b, different):
    # The workers refute gold != answer numerically before math-verify's simplify(gold - answer).
    import sympy

    from sapo_core.rewards.worker import numerically_different
    real = {name: sympy.Symbol(name, real=True) for name in "xypq"}  # math-verify's symbols are real
    a, b = (sympy.sympify(e, locals=real) for e in (a, b))
    assert numerically_different(a, b) is different


def test_math_verify_hook_point_exists():
    import math_verify.grader  # the workers wrap this function; an upgrade that renames it must fail here

    assert callable(math_verify.grader.sympy_symbolic_eq)


def test_missing_answer_block_scores_zero():
    assert correctness_reward(["<think>72</think> 72", "72", "<answer>72"], answer=["72"] * 3) == [0.0] * 3


def test_unparseable_gold_is_none_and_counted(grader):
    before = grader.stats.unparseable_gold
    bad = ["\\frac{", "???", "", "\\sqrt{", "}{", None, float("nan")]  # NaN: pandas' missing value
    reward = CorrectnessReward(grader)
    for answers in (bad, ["5"] * len(bad), [None] * len(bad)):  # the same text, a number, no answer
        completions = [ok(str(a)) if a is not None else "no block" for a in answers]
        assert reward(completions, answer=bad) == [None] * len(bad)
    assert grader.stats.unparseable_gold == before + 3 * len(bad)


def test_stats_are_an_explicit_snapshot():
    stats = default_grader().stats
    assert isinstance(stats, RewardStats)
    correctness_reward([ok("3"), ok("\\frac{1}{2}")], answer=["3", "0.5"])
    after = default_grader().stats
    assert after.items == stats.items + 2 and after.correct == stats.correct + 2
    assert after.fast_path == stats.fast_path + 1
    assert set(after.as_dict()) >= {"items", "correct", "unparseable_gold", "timeouts", "worker_failures"}


def test_repeated_pairs_are_graded_once(grader):
    before = grader.stats
    answers, golds = ["\\frac{6}{4}", "1.5", "\\frac{6}{4}", "2"], ["\\frac32"] * 4
    assert grader.grade(answers, golds) == [1.0, 1.0, 1.0, 0.0]
    assert grader.grade(answers, golds) == [1.0, 1.0, 1.0, 0.0]
    after = grader.stats
    assert after.items == before.items + 8 and after.correct == before.correct + 6
    assert after.cache_hits == before.cache_hits + 1 + 4  # the repeat in the batch, then all four


def test_cleared_verdicts_are_graded_again(grader):
    answers, golds = ["\\frac{10}{4}", "2.6"], ["2.5"] * 2
    assert grader.grade(answers, golds) == [1.0, 0.0]
    hits = grader.stats.cache_hits
    grader.clear_verdicts()
    assert grader.grade(answers, golds) == [1.0, 0.0]
    assert grader.stats.cache_hits == hits  # both went to the workers again


# ---------------------------------------------------------------------------------------------
# every benchmark gold, written as a model would, is graded correct
# ---------------------------------------------------------------------------------------------

# Golds that are known not to score 1.0 against themselves, with the reason. Empty: all 1879 pass.
GOLD_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _plus_one(gold: str) -> str | None:
    """gold + 1 when the gold is a plain number, else None."""
    try:
        return str(Decimal(gold.replace(",", "")) + 1)
    except InvalidOperation:
        return None


@pytest.mark.data
def test_every_benchmark_gold_is_graded_correct(data_dir):
    sets = {"gsm8k": data.gsm8k("test", data_dir), "math500": data.math500(data_dir),
            "aime24": data.aime24(data_dir), "aime25": data.aime25(data_dir)}
    rows = [(name, row_id, gold) for name, ds in sets.items() for row_id, gold in zip(ds["id"], ds["answer"])]
    assert len(rows) == 1319 + 500 + 30 + 30
    completions = [format_completion("Let me work through this.", gold) for _, _, gold in rows]
    scores = correctness_reward(completions, answer=[gold for _, _, gold in rows])
    failed = {(row_id, gold): s for (_, row_id, gold), s in zip(rows, scores) if s != 1.0}
    assert set(failed) == set(GOLD_EXCEPTIONS), failed

    # numeric golds perturbed by +1 are wrong
    numeric = [(gold, _plus_one(gold)) for _, _, gold in rows if _plus_one(gold) is not None]
    assert len(numeric) > 1319 + 60
    wrong = correctness_reward([ok(p) for _, p in numeric], answer=[g for g, _ in numeric])
    assert wrong == [0.0] * len(numeric), [n for n, s in zip(numeric, wrong) if s != 0.0]


@pytest.mark.data
def test_raw_gold_files_are_graded(data_dir):
    # The reward accepts the golds exactly as the files hold them: GSM8K `... #### 1,000` and the
    # model writing the number as the file does, AIME24 strings with leading zeros, AIME25 integers.
    raw = []
    for name in ("gsm8k/test", "aime24/test", "aime25/test"):
        with open(data_dir / f"{name}.jsonl", encoding="utf-8") as f:
            raw += [json.loads(line)["answer"] for line in f]
    written = [g.rsplit("####", 1)[1].strip() if isinstance(g, str) and "####" in g else str(g) for g in raw]
    assert any("," in w for w in written) and any(w.startswith("0") for w in written)
    assert any(isinstance(g, int) for g in raw)
    scores = correctness_reward([[{"role": "assistant", "content": ok(w)}] for w in written], answer=raw)
    assert scores == [1.0] * len(raw)


# ---------------------------------------------------------------------------------------------
# the grading pool: time limit, dead and stuck workers, threads, fork, memory limit
# ---------------------------------------------------------------------------------------------

# Answers that would hang or exhaust symbolic comparison (huge powers and factorials, deep nesting).
PATHOLOGICAL = ["10^{10^{10^{10}}}", "{" * 25_000 + "}" * 25_000, "\\frac{1}{0}", "{" * 50_000, "(10^{10})!"]
HANGS = "(10^{10})!"


def _grade_hang_then_more(grader):
    """One answer that hangs math-verify, then answers that must still be graded; (scores, seconds)."""
    start = time.monotonic()
    scores = grader.grade([HANGS, "\\sqrt{4}", "\\frac{6}{4}"], ["5", "2", "1.5"])
    return scores, time.monotonic() - start


@pytest.mark.slow
def test_hanging_answer_scores_zero_within_limit_and_the_pool_goes_on(grader):
    assert threading.current_thread() is threading.main_thread()
    before = grader.stats
    scores, elapsed = _grade_hang_then_more(grader)
    assert scores == [0.0, 1.0, 1.0]
    assert elapsed < TIMEOUT_S + RESTART_S, elapsed
    assert grader.stats.timeouts == before.timeouts + 1  # a timeout is never answered from the cache
    assert _grade_hang_then_more(grader)[0] == [0.0, 1.0, 1.0]
    assert grader.stats.timeouts == before.timeouts + 2


@pytest.mark.slow
def test_hanging_answer_from_a_worker_thread(grader):
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=_grade_hang_then_more(grader)))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    scores, elapsed = out["result"]
    assert scores == [0.0, 1.0, 1.0]
    assert elapsed < TIMEOUT_S + RESTART_S, elapsed


@pytest.mark.slow
def test_pathological_answers_all_score_zero(grader):
    scores = CorrectnessReward(grader)([ok(a) for a in PATHOLOGICAL] + [ok("\\sqrt{9}")], answer=["5"] * 5 + ["3"])
    assert scores == [0.0] * len(PATHOLOGICAL) + [1.0]


def test_concurrent_calls_from_threads(grader):
    results = [None] * 4

    def work(k):
        results[k] = grader.grade(["\\frac{1}{2}", str(k)], ["0.5", str(k)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [[1.0, 1.0]] * 4


@pytest.mark.slow
def test_stuck_worker_is_killed_and_replaced():
    # SIGSTOP: a worker stuck where no signal handler runs (e.g. deep in C code); the pool kills it.
    before = {p.pid for p in multiprocessing.active_children()}
    with Grader(num_workers=1, timeout_s=1.0, warm_up=False) as g:
        assert g.grade(["\\sqrt{4}"], ["2"]) == [1.0]
        (pid,) = new_workers(before)
        out = {}
        thread = threading.Thread(target=lambda: out.update(r=g.grade([HANGS], ["5"])))
        start = time.monotonic()
        thread.start()
        time.sleep(0.5)  # the worker has taken the item
        os.kill(pid, signal.SIGSTOP)
        thread.join(timeout=60)
        assert out["r"] == [0.0]
        assert time.monotonic() - start < 1.0 + 3.0 + RESTART_S  # limit + pebble's grace for SIGTERM
        assert g.stats.timeouts == 1
        assert pid not in new_workers(before)
        assert g.grade(["\\sqrt{9}"], ["3"]) == [1.0]


@pytest.mark.slow
def test_worker_crash_scores_zero_and_is_counted():
    before = {p.pid for p in multiprocessing.active_children()}
    with Grader(num_workers=1, timeout_s=60.0, warm_up=False) as g:
        assert g.grade(["\\sqrt{4}"], ["2"]) == [1.0]
        (pid,) = new_workers(before)
        out = {}
        thread = threading.Thread(target=lambda: out.update(r=g.grade([HANGS, "\\sqrt{9}"], ["5", "3"])))
        thread.start()
        time.sleep(1.0)  # the worker is deep in the hanging item
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=60)
        assert out["r"] == [0.0, 1.0]
        stats = g.stats
        assert stats.worker_failures == 1 and stats.timeouts == 0
        assert g.grade(["\\sqrt{16}"], ["4"]) == [1.0]


@pytest.mark.slow
def test_worker_dead_while_idle_does_not_cost_an_item():
    # pebble gives up on a pool whose worker dies while no task runs; the grader starts a new pool
    before = {p.pid for p in multiprocessing.active_children()}
    with Grader(num_workers=1, warm_up=False) as g:
        assert g.grade(["\\sqrt{4}"], ["2"]) == [1.0]
        (pid,) = new_workers(before)
        assert os.getsid(pid) == pid != os.getsid(0)  # a session of its own: terminal signals are the parent's
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert g.grade(["\\sqrt{9}"], ["3"]) == [1.0]
        assert g.stats.worker_failures == 0 and g.stats.items == 2


@pytest.mark.slow
def test_close_while_another_thread_grades():
    # The waiting thread must not hang on the stopped pool's tasks: it is told the grader is closed.
    g = Grader(num_workers=1, timeout_s=60.0, warm_up=False)
    assert g.grade(["\\sqrt{4}"], ["2"]) == [1.0]
    out = {}

    def work():
        try:
            out["r"] = g.grade([HANGS, "\\sqrt{9}", "\\sqrt{16}"], ["5", "3", "4"])
        except RuntimeError as error:
            out["error"] = str(error)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(1.0)
    g.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and out == {"error": "this Grader is closed"}


@pytest.mark.slow
def test_forked_child_gets_its_own_workers(grader):
    parent_pids = {p.pid for p in multiprocessing.active_children()}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: grade, report, leave without running the parent's exit handlers
        try:
            os.write(write_end, json.dumps(grader.grade(["\\sqrt{25}", "\\sqrt{26}"], ["5", "5"])).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        child_scores = json.loads(f.read())
    os.waitpid(pid, 0)
    assert child_scores == [1.0, 0.0]
    assert {p.pid for p in multiprocessing.active_children()} == parent_pids  # the parent's pool untouched
    assert grader.grade(["\\sqrt{36}"], ["6"]) == [1.0]


@pytest.mark.slow
def test_memory_limit_is_set_in_the_worker():
    # The limit counts from the end of start-up: 64 MiB more may be mapped, 256 MiB fails with MemoryError.
    code = ("import resource; from sapo_core.rewards.worker import init_worker, _mapped_bytes\n"
            "init_worker(64, warm_up=False)\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
            "assert soft == hard and 0 <= soft - _mapped_bytes() <= 64 * 2**20, (soft, _mapped_bytes())\n"
            "small = bytearray(16 * 2**20)\n"
            "try:\n    bytearray(256 * 2**20)\nexcept MemoryError:\n    print('refused')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"


@pytest.mark.slow
def test_importing_the_rewards_starts_nothing_heavy():
    code = ("import sys, multiprocessing, sapo_core.rewards\n"
            "print(sorted(m for m in ('sympy', 'math_verify', 'torch', 'transformers') if m in sys.modules),"
            " len(multiprocessing.active_children()))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "[] 0", result.stderr


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error"), [
    ({"num_workers": 0}, ValueError), ({"num_workers": True}, TypeError), ({"num_workers": 1.5}, TypeError),
    ({"timeout_s": 0}, ValueError), ({"timeout_s": -1.0}, ValueError), ({"timeout_s": float("nan")}, ValueError),
    ({"timeout_s": float("inf")}, ValueError), ({"timeout_s": True}, TypeError), ({"timeout_s": "5"}, TypeError),
    ({"memory_limit_mb": 0}, ValueError), ({"memory_limit_mb": -512}, ValueError),
    ({"memory_limit_mb": 1.5}, TypeError), ({"memory_limit_mb": True}, TypeError), ({"warm_up": 1}, TypeError),
])
def test_grader_refuses_bad_arguments(kwargs, error):
    """A value outside the allowed set is a ValueError, a wrong type a TypeError; both name the argument."""
    name, value = next(iter(kwargs.items()))
    with pytest.raises(error, match=rf"^{name}\b[^,]* must be .*{re.escape(repr(value))}$"):
        Grader(**{"num_workers": 1, **kwargs})


def test_grader_checks_batches_and_is_unusable_once_closed():
    g = Grader(num_workers=1, memory_limit_mb=None)  # None: no memory limit
    with pytest.raises(ValueError, match="got 1 answers but 2 golds"):
        g.grade(["1"], ["1", "2"])
    with pytest.raises(TypeError, match="answers must be a list"):
        g.grade("12", ["1", "2"])
    g.close()
    with pytest.raises(RuntimeError, match="closed"):
        g.grade(["1"], ["1"])


@pytest.mark.parametrize("value", ["0", "-2", "four", "1.5", " "])
def test_bad_worker_count_in_the_environment_is_named(monkeypatch, value):
    monkeypatch.setenv(WORKERS_ENV, value)
    with pytest.raises(ValueError, match=f"SAPO_REWARD_WORKERS must be an integer >= 1, got '{value}'"):
        default_num_workers()
    with pytest.raises(ValueError, match="SAPO_REWARD_WORKERS"):
        Grader()


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert Grader().num_workers == 3
    monkeypatch.delenv(WORKERS_ENV)
    assert 1 <= Grader().num_workers <= 8


# ---------------------------------------------------------------------------------------------
# TRL signature, bad columns, pickling
# ---------------------------------------------------------------------------------------------

def test_trl_call_convention():
    logged = {}
    completions = [[{"role": "assistant", "content": ok("\\frac{1}{2}")}],
                   [{"role": "assistant", "content": "<think>hm</think> 3"}]]
    kwargs = {"prompts": [[{"role": "user", "content": "q"}]] * 2, "completion_ids": [[1], [2]],
              "answer": ["0.5", "3"], "source": ["math500", "math500"], "id": ["a", "b"], "trainer_state": None,
              "log_extra": lambda name, values: logged.update({name: values}), "log_metric": lambda *a: None}
    assert correctness_reward(completions=completions, **kwargs) == [1.0, 0.0]
    assert logged["extracted_answer"] == ["\\frac{1}{2}", "[no answer block]"]
    assert format_reward(completions=completions, **kwargs) == [1.0, 0.0]


def test_bare_strings_and_bytes_golds_are_refused():
    with pytest.raises(TypeError, match="completions must be a list"):
        correctness_reward(ok("72"), answer=["72"] * len(ok("72")))   # used to be graded per character
    with pytest.raises(TypeError, match="answer must be a list"):
        correctness_reward([ok("7"), ok("2")], answer="72")
    with pytest.raises(TypeError, match="got bytes"):
        correctness_reward([ok("72")], answer=[b"72"])
    with pytest.raises(ValueError, match="got 2 completions but 1 gold answers"):
        correctness_reward([ok("7"), ok("2")], answer=["72"])


def test_rewards_pickle_for_trl_subprocesses():
    # TRL's async rollout worker sends reward functions to a spawned process.
    own = CorrectnessReward(Grader(num_workers=1, timeout_s=2.0, warm_up=False))
    for reward in (format_reward, correctness_reward, own):
        clone = pickle.loads(pickle.dumps(reward))
        assert getattr(clone, "__name__", None) == reward.__name__
    clone = pickle.loads(pickle.dumps(own))
    assert clone.grader.timeout_s == 2.0 and clone.grader.warm_up is False
    assert clone([ok("2")], answer=["2"]) == [1.0]
    clone.grader.close()
