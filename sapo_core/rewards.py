"""Rewards for maths RL fine-tuning (SPEC §3, eq. 9):  R = R_format + R_correct.

    R_format  = 1 if the completion is `<think> text </think> <answer> text </answer>` with nothing
                but white space outside the two blocks, else 0
    R_correct = 1 if the text of the <answer> block is mathematically equivalent to the gold answer
                (math-verify: numbers, fractions, LaTeX expressions, sets, intervals, ...), else 0

Every reward keeps TRL's signature `(completions, **columns) -> list[float | None]`; completions are
plain strings or TRL conversational completions (lists of messages; the assistant's content is read).
`None` means exactly one thing: the item cannot be judged because its gold answer does not parse.

Grading (`Grader`), the part that must never stall training:

* Answer and gold are first normalised as strings (GSM8K's `... #### 1,000` -> `1000`, AIME's
  `"025"` and `25` -> the same integer, `\\boxed{..}`/`$..$` unwrapped). When both are plain integers
  they are compared exactly, in-process: no sympy, no IPC (most GSM8K and AIME items).
* A pair graded before (or earlier in the same batch) is answered from the grader's verdict cache:
  the G completions of a GRPO group share a gold and often give the same answer.
* Everything else goes to a persistent pool of worker processes, started lazily on first use and
  stopped at exit. A worker holds one item at a time and caches parsed texts (golds repeat, and
  right answers are often the gold's very text). Each item has a time limit `timeout_s`: the
  worker interrupts itself with SIGALRM (it runs math-verify in its own main thread, with
  math-verify's own signal timeouts off), and if it has not answered `kill_grace_s` later -- stuck
  in C code, say -- the parent kills and replaces it. Either way the item scores 0.0 (a wrong
  answer) and is counted in `RewardStats`. The parent side uses no signals, so grading works from
  any thread; a forked child gets workers of its own.

The module-level reward functions share one `Grader`, `default_grader()`, created on first use
(workers: env `SAPO_REWARD_WORKERS`, else min(cores, 8)); `configure_grader(...)` replaces it and
`reward_stats()` reads its counters. For a grader of your own: `make_correctness_reward(Grader(...))`.

Benchmark against TRL's `accuracy_reward`:  python benchmarks/bench_rewards.py
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import weakref
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sapo_core.prompts import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN

__all__ = [
    "DEFAULT_TIMEOUT_S", "DEFAULT_KILL_GRACE_S", "DEFAULT_MEMORY_LIMIT_MB", "WORKERS_ENV", "WARMUP_ANSWERS",
    "RewardStats", "Grader", "default_grader", "configure_grader", "reward_stats",
    "completion_text", "extract_answer", "normalize_gold", "normalize_answer",
    "format_reward", "correctness_reward", "CorrectnessReward", "make_correctness_reward",
    "TotalReward", "make_total_reward", "total_reward", "REWARDS", "get_reward",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0          # per-item time limit inside the worker (SIGALRM)
DEFAULT_KILL_GRACE_S = 1.0       # extra time before the parent kills an unresponsive worker
DEFAULT_MEMORY_LIMIT_MB = 4096   # address-space limit of a worker (a huge power fails, not swaps)
DEFAULT_STARTUP_TIMEOUT_S = 120.0  # a worker that is not ready by then is a set-up error
MAX_WORKERS = 8                  # default pool size is min(cores, MAX_WORKERS)
WORKERS_ENV = "SAPO_REWARD_WORKERS"
_FAST_PATH_MAX_DIGITS = 100      # integers longer than this go to math-verify like anything else
_VERDICT_CACHE = 100_000         # (answer, gold) -> score entries kept by a Grader (LRU)
_WORKER_PARSE_CACHE = 16_384     # parsed texts kept by a worker (LRU)
_PIPELINE_DEPTH = 2              # requests queued per worker, so it never waits for the parent
# Answers a worker grades before it reports ready (Grader(warm_up=True)): the LaTeX parser and sympy
# get much faster once they have seen the common forms, so a new worker is ~25% quicker at once.
WARMUP_ANSWERS = (
    "\\frac{3}{4}", "-\\frac{7}{2}", "2\\sqrt{3}", "\\frac{\\sqrt{5}}{2}", "3+4i", "\\pi", "\\frac{\\pi}{3}",
    "45^\\circ", "0.25", "12\\%", "x^2-3x+2", "(x-1)(x-2)", "\\{1, 2, 3\\}", "(2, 5]",
    "(-\\infty, 0) \\cup (1, \\infty)", "(1, -2)", "\\begin{pmatrix} 1 \\\\ 0 \\end{pmatrix}", "y = 2x + 1",
    "\\text{odd}", "\\sin x", "e^{2}", "\\log_2 8", "\\binom{6}{3}", "1, 2", "3^{5}", "a+b", "\\dfrac{11}{6}",
    "5\\sqrt{2}-1", "\\sqrt[3]{2}", "\\infty", "x \\in [0, 1]", "10_{2}",
)


# ----------------------------------------------------------------------------------------------
# Text handling (cheap, in the calling process)
# ----------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?\d+")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")      # 1,000 or 1,234.5
_LATEX_THOUSANDS_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3}\b)")       # 10,\!080 (MATH style)
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")
# One number amid plain prose (`18 dollars`, `about 18`, `**18**`, `18.`): math-verify would read the words
# inside `$...$` as a product of symbols. Words that carry mathematics keep the text as it is.
_PROSE_NUMBER_RE = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?:/\d+)?(?!\w|\.\d)")
_PROSE_RE = re.compile(r"[A-Za-z\s.,;:!?()'\"*-]*")
_MATH_WORDS = frozenset({"pi", "sqrt", "root", "ln", "log", "exp", "sin", "cos", "tan", "sec", "csc", "cot",
                         "inf", "infinity", "oo", "mod", "choose", "over", "times", "plus", "minus", "squared",
                         "cubed", "power", "percent", "i", "e"})
_WORDS_ANSWER_RE = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")  # `east`, `True`, `no solution`


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the last assistant message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        if assistant:
            content = assistant[-1].get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts, e.g. [{"type": "text", "text": ...}]
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if content is None:
                return ""
    raise TypeError(f"a completion must be a string or a list of chat messages, got {completion!r:.200}")


def extract_answer(text: str) -> str | None:
    """The stripped text of the last `<answer> ... </answer>` block, or None when there is none."""
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN):end].strip()


def _unwrap(s: str, prefix: str, suffix: str) -> str:
    """`s` without one enclosing prefix/suffix pair when it is a single balanced group."""
    if not (s.startswith(prefix) and s.endswith(suffix) and len(s) >= len(prefix) + len(suffix)):
        return s
    inner = s[len(prefix):len(s) - len(suffix)]
    if prefix.endswith("{"):  # the braces must pair up inside, e.g. not `\boxed{1}+\boxed{2}`
        depth = 0
        for ch in inner:
            depth += (ch == "{") - (ch == "}")
            if depth < 0:
                return s
        if depth != 0:
            return s
    elif prefix in inner:  # `$1$ and $2$` is not one math group
        return s
    return inner.strip()


def normalize_answer(text: str) -> str:
    """String normal form shared by answers and golds: delimiters, \\boxed, currency, separators."""
    s = text.strip()
    for _ in range(3):  # peel up to three layers, e.g. `$\boxed{72}$`
        before = s
        for prefix, suffix in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"),
                               ("\\boxed{", "}"), ("\\fbox{", "}")):
            s = _unwrap(s, prefix, suffix)
        if s == before:
            break
    s = s.replace("\\$", "").strip()                  # currency sign, no mathematical content
    s = _LATEX_THOUSANDS_RE.sub("", s)                # 10,\!080 -> 10080
    if _THOUSANDS_RE.fullmatch(s):                    # 1,000 -> 1000 (GSM8K golds, model answers)
        s = s.replace(",", "")
    m = _TEXT_RE.fullmatch(s)                         # \text{east} -> east (both sides alike)
    if m:
        s = m.group(1).strip()
    if s.casefold() in ("true", "false"):             # sympy reads `true` as a boolean math-verify drops
        return s.capitalize()
    return _number_in_prose(s) or s                   # 18 dollars -> 18


def _number_in_prose(s: str) -> str | None:
    """The number of `s` when it is the only one amid plain words (no LaTeX, no operators, no single
    letters or mathematical words such as `pi`); else None."""
    numbers = _PROSE_NUMBER_RE.findall(s)
    if len(numbers) != 1:
        return None
    rest = _PROSE_NUMBER_RE.sub(" ", s)
    if not _PROSE_RE.fullmatch(rest):
        return None
    words = re.findall(r"[A-Za-z]+", rest)
    if any(len(w) < 2 or w.lower() in _MATH_WORDS for w in words):
        return None
    return numbers[0]


def normalize_gold(gold: Any) -> str:
    """Gold answer as a string: GSM8K's `reasoning #### 1,000` -> `1000`, AIME's int 25 -> `25`."""
    if gold is None or isinstance(gold, bool) or (isinstance(gold, float) and math.isnan(gold)):
        return ""  # no gold (None, or pandas' NaN for a missing value): it cannot be parsed, the item scores None
    s = str(gold)
    if "####" in s:  # GSM8K: the final answer follows the last '####'
        s = s.rsplit("####", 1)[1]
    return normalize_answer(s)


def _fast_integer_verdict(answer: str, gold: str) -> float | None:
    """1.0/0.0 when both are plain integers (exact comparison, `025` == 25); 1.0 when both are the same
    plain words up to case and spacing (`East` == `east`: math-verify reads words as case-sensitive
    products of symbols); None to defer."""
    if (_WORDS_ANSWER_RE.fullmatch(gold) and _WORDS_ANSWER_RE.fullmatch(answer)
            and " ".join(answer.casefold().split()) == " ".join(gold.casefold().split())):
        return 1.0  # different words go to math-verify: `ab` and `ba` are the same product
    if (len(answer) <= _FAST_PATH_MAX_DIGITS and len(gold) <= _FAST_PATH_MAX_DIGITS
            and _INT_RE.fullmatch(answer) and _INT_RE.fullmatch(gold)):
        return float(int(answer) == int(gold))
    return None


# ----------------------------------------------------------------------------------------------
# Worker process: math-verify in its own main thread, one item at a time
# ----------------------------------------------------------------------------------------------

_MISS = object()


class _ItemTimeout(BaseException):
    """Raised by SIGALRM inside a worker; a BaseException so math-verify's `except Exception` lets it by."""


def _numerically_different(a: Any, b: Any) -> bool:
    """True when a - b is clearly non-zero at a sample point: it cannot simplify to 0 (a sound refutation)."""
    import cmath

    from sympy import Expr, Rational

    if not (isinstance(a, Expr) and isinstance(b, Expr)):
        return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    # Positive, non-integer sample values: real symbols, square roots and logarithms stay defined.
    point = {sym: Rational(17 + 10 * k, 23) for k, sym in enumerate(symbols)}
    try:
        va, vb = (complex((e.subs(point) if point else e).evalf(30)) for e in (a, b))
    except Exception:  # not a number there (undefined function, zoo, overflow): no verdict
        return False
    if not all(cmath.isfinite(v) for v in (va, vb)):
        return False
    return abs(va - vb) > 1e-9 * max(1.0, abs(va), abs(vb))


def _serve_quietly() -> None:
    """Worker entry point: `_serve` until the parent closes the pipes. A parent that exits (or is killed)
    while a worker is busy is not an error of the worker: it leaves without a traceback."""
    try:
        _serve()
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)  # not sys.exit: flushing the dead pipe at exit would raise again


def _serve() -> None:
    """Worker main loop: read `[job, answer, gold]` JSON lines, write `[job, score, status]` lines."""
    import signal

    config = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # protocol channel; stray prints -> stderr
    os.dup2(2, 1)
    if config.get("memory_limit_mb"):
        import resource
        limit = int(config["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": ours is on

    from functools import lru_cache

    import math_verify.grader
    from math_verify import parse, verify

    # math-verify's last resort, simplify(gold - answer) == 0, is its slowest step and almost always
    # runs for wrong answers. It is reached only after every special case (sets, relations,
    # percentages, symbols, float rounding) has said no; a difference that is clearly non-zero at a
    # sample point cannot simplify to zero, so it is refuted first, and exactly as before otherwise.
    exact_symbolic_eq = getattr(math_verify.grader, "sympy_symbolic_eq", None)
    if exact_symbolic_eq is not None:
        def symbolic_eq(a, b):
            return False if _numerically_different(a, b) else exact_symbolic_eq(a, b)
        math_verify.grader.sympy_symbolic_eq = symbolic_eq

    def parse_math(text: str) -> list:
        # Bare LaTeX (`\dfrac{14}{3}`, `(1,2)`) is only found inside math delimiters; keep the
        # text as is when it already has some, and fall back to the raw text when wrapping fails.
        if any(d in text for d in ("$", "\\(", "\\[", "\\boxed")):
            return parse(text, parsing_timeout=None)
        return parse(f"${text}$", parsing_timeout=None) or parse(text, parsing_timeout=None)

    # One cache for golds and answers: a GRPO group repeats its gold G times, and right answers
    # are often the gold's very text.
    parse_cached = lru_cache(maxsize=_WORKER_PARSE_CACHE)(lambda text: tuple(parse_math(text)))

    def grade_one(answer: str | None, gold: str) -> tuple[float | None, str]:
        gold_parsed = parse_cached(gold)
        if all(isinstance(g, str) for g in gold_parsed):  # only a raw-text fallback: unparseable
            return None, "bad_gold"
        if not answer:
            return 0.0, "ok"
        predicted = parse_cached(answer)
        if not predicted:
            return 0.0, "ok"
        return float(verify(list(gold_parsed), list(predicted), timeout_seconds=None)), "ok"

    def on_alarm(signum, frame):
        raise _ItemTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    soft_s = float(config["timeout_s"])
    warm = WARMUP_ANSWERS if config.get("warm_up") else ("1",)  # at least math-verify's lazy regexes
    for k, gold in enumerate(warm):
        for answer in (gold, warm[(k + 1) % len(warm)], warm[(k + 7) % len(warm)]):
            signal.setitimer(signal.ITIMER_REAL, soft_s)
            try:
                grade_one(answer, gold)
            except (_ItemTimeout, Exception):
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    parse_cached.cache_clear()
    out.write(json.dumps(["ready", os.getpid()]) + "\n")
    out.flush()
    for line in sys.stdin:
        job, answer, gold = json.loads(line)
        try:
            signal.setitimer(signal.ITIMER_REAL, soft_s)
            try:
                score, status = grade_one(answer, gold)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _ItemTimeout:
            score, status = 0.0, "timeout"
        except Exception:  # MemoryError, RecursionError, sympy bugs: a wrong answer, not a crash
            score, status = 0.0, "error"
        out.write(json.dumps([job, score, status]) + "\n")
        out.flush()


# ----------------------------------------------------------------------------------------------
# Parent side: the pool
# ----------------------------------------------------------------------------------------------

@dataclass
class RewardStats:
    """Counters of a `Grader` since it was created or reset; fields count items unless named otherwise."""

    items: int = 0              # answers graded
    correct: int = 0            # scored 1.0
    unparseable_gold: int = 0   # scored None: the gold answer itself does not parse
    timeouts: int = 0           # scored 0.0: over the time limit (interrupted, or worker killed)
    worker_failures: int = 0    # scored 0.0: the worker process died while grading the item
    errors: int = 0             # scored 0.0: math-verify raised (e.g. MemoryError)
    fast_path: int = 0          # integer vs integer, compared in-process
    cache_hits: int = 0         # (answer, gold) pair graded before, or earlier in the same batch
    worker_restarts: int = 0    # worker processes replaced (killed, crashed or found dead)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logging)."""
        return dataclasses.asdict(self)


class _Worker:
    """One grading subprocess and its parent-side bookkeeping."""

    def __init__(self, proc: subprocess.Popen, startup_deadline: float):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = bytearray()
        self.ready = False
        self.startup_deadline = startup_deadline
        self.inflight: deque[tuple[int, int]] = deque()  # (request id, task) sent, oldest first
        self.deadline = 0.0               # when the oldest request in flight is over time


def _stop_workers(workers: list[_Worker], owner_pid: int | None = None) -> None:
    """Close the workers' stdin (they exit on EOF), then kill whatever is still running."""
    if owner_pid is not None and owner_pid != os.getpid():
        return  # a forked copy of the owner: these workers are not ours to stop
    for w in workers:
        for stream in (w.proc.stdin, w.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
    deadline = time.monotonic() + 1.0
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
    workers.clear()


class Grader:
    """Checks answers against golds with math-verify in a pool of worker processes, time-limited per item."""

    def __init__(self, num_workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 kill_grace_s: float = DEFAULT_KILL_GRACE_S,
                 memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
                 startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S, warm_up: bool = True):
        if num_workers is None:
            num_workers = _default_num_workers()
        if not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        if not timeout_s > 0 or not kill_grace_s > 0 or not startup_timeout_s > 0:
            raise ValueError(f"timeouts must be > 0, got timeout_s={timeout_s!r}, "
                             f"kill_grace_s={kill_grace_s!r}, startup_timeout_s={startup_timeout_s!r}")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.kill_grace_s = float(kill_grace_s)
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = float(startup_timeout_s)
        self.warm_up = bool(warm_up)
        self._stats = RewardStats()
        self._bad_golds: set[str] = set()  # distinct unparseable golds, each logged once
        self._lock = threading.Lock()
        self._workers: list[_Worker]
        self._verdicts: OrderedDict[tuple[str | None, str], float | None] = OrderedDict()
        self._next_job = 0
        self._closed = False
        self._adopt_process()

    def _adopt_process(self) -> None:
        """A fresh, empty pool owned by this process (after a fork the parent's workers stay the parent's)."""
        self._owner_pid = os.getpid()
        self._workers = []
        self._selector = selectors.DefaultSelector()
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers, self._owner_pid)

    # -- public -----------------------------------------------------------------------------------

    def grade(self, answers: Sequence[str | None], golds: Sequence[Any]) -> list[float | None]:
        """1.0/0.0 per (answer, gold) pair, None where the gold does not parse; answers may be None."""
        if len(answers) != len(golds):
            raise ValueError(f"got {len(answers)} answers but {len(golds)} golds")
        with self._lock:
            if self._closed:
                raise RuntimeError("this Grader is closed")
            if self._owner_pid != os.getpid():  # running in a forked child
                self._finalizer.detach()
                for w in self._workers:  # drop this process's copies of the parent's pipes
                    for stream in (w.proc.stdin, w.proc.stdout):
                        try:
                            stream.close()
                        except OSError:
                            pass
                self._adopt_process()
            results: list[float | None] = [None] * len(answers)
            tasks: dict[tuple[str | None, str], list[int]] = {}  # distinct pairs -> their items
            for i, (answer, gold) in enumerate(zip(answers, golds)):
                gold_s = normalize_gold(gold)
                answer_s = None if answer is None else normalize_answer(answer)
                verdict = None if answer_s is None else _fast_integer_verdict(answer_s, gold_s)
                if verdict is not None:
                    results[i] = verdict
                    self._stats.fast_path += 1
                    self._count(verdict, "ok", gold_s)
                    continue
                key = (answer_s, gold_s)
                cached = self._verdicts.get(key, _MISS)
                if cached is not _MISS:
                    self._verdicts.move_to_end(key)
                    results[i] = cached
                    self._stats.cache_hits += 1
                    self._count(cached, "ok", gold_s)
                elif key in tasks:
                    tasks[key].append(i)  # graded once, below
                    self._stats.cache_hits += 1
                else:
                    tasks[key] = [i]
            if tasks:
                self._run([(indices, answer_s, gold_s) for (answer_s, gold_s), indices in tasks.items()],
                          results)
            return results

    @property
    def stats(self) -> RewardStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._lock:
            self._stats = RewardStats()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty before first use)."""
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers; the grader cannot be used afterwards."""
        with self._lock:
            self._closed = True
            for w in self._workers:
                self._selector.unregister(w.fd)
            self._finalizer()
            self._selector.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        # Pickles as its configuration (TRL may send reward functions to a spawned process);
        # the copy starts its own workers on first use.
        return (Grader, (self.num_workers, self.timeout_s, self.kill_grace_s, self.memory_limit_mb,
                         self.startup_timeout_s, self.warm_up))

    def __repr__(self) -> str:
        return (f"Grader(num_workers={self.num_workers}, timeout_s={self.timeout_s}, "
                f"kill_grace_s={self.kill_grace_s}, memory_limit_mb={self.memory_limit_mb}, "
                f"warm_up={self.warm_up})")

    # -- internals (called with self._lock held) -------------------------------------------------

    def _count(self, score: float | None, status: str, gold: str) -> None:
        s = self._stats
        s.items += 1
        if score is None:
            s.unparseable_gold += 1
            if gold not in self._bad_golds:
                self._bad_golds.add(gold)
                logger.warning("gold answer cannot be parsed, item scored None: %r", gold[:200])
        elif score == 1.0:
            s.correct += 1
        s.timeouts += status == "timeout"
        s.errors += status == "error"
        s.worker_failures += status == "crash"

    def _spawn(self) -> _Worker:
        config = json.dumps({"timeout_s": self.timeout_s, "memory_limit_mb": self.memory_limit_mb,
                             "warm_up": self.warm_up})
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-c", "from sapo_core.rewards import _serve_quietly; _serve_quietly()", config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
            start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle
        )
        worker = _Worker(proc, time.monotonic() + self.startup_timeout_s)
        os.set_blocking(worker.fd, False)
        self._selector.register(worker.fd, selectors.EVENT_READ, worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` and start a new one in its slot."""
        self._selector.unregister(worker.fd)
        worker.proc.kill()
        _stop_workers([worker])
        self._stats.worker_restarts += 1
        self._workers[self._workers.index(worker)] = self._spawn()

    def _finish(self, worker: _Worker, tasks: list, results: list, score: float | None,
                status: str) -> None:
        """Record the verdict of the worker's oldest request; the next one starts its clock now."""
        _, task = worker.inflight.popleft()
        indices, answer, gold = tasks[task]
        for i in indices:
            results[i] = score
            self._count(score, status, gold)
        if status in ("ok", "bad_gold"):  # deterministic verdicts only; never a timeout
            self._verdicts[(answer, gold)] = score
            if len(self._verdicts) > _VERDICT_CACHE:
                self._verdicts.popitem(last=False)
        worker.deadline = time.monotonic() + self.timeout_s + self.kill_grace_s

    def _fail(self, worker: _Worker, tasks: list, results: list, status: str, queue: deque) -> None:
        """The worker timed out or died on its oldest request: that scores 0.0, the rest are requeued."""
        self._finish(worker, tasks, results, 0.0, status)
        queue.extendleft(reversed([task for _, task in worker.inflight]))  # not their fault
        worker.inflight.clear()
        self._replace(worker)

    def _run(self, tasks: list[tuple[list[int], str | None, str]], results: list) -> None:
        while len(self._workers) < self.num_workers:
            self._workers.append(self._spawn())
        # Each gold has a home worker, so its parse (and sympy's caches about it) is built once; an
        # idle worker whose own queue is empty steals from the tail of the longest other queue.
        queues = [deque() for _ in self._workers]
        for task, (_, _, gold) in enumerate(tasks):
            queues[zlib.crc32(gold.encode("utf-8")) % len(queues)].append(task)
        try:
            while any(queues) or any(w.inflight for w in self._workers):
                for slot, w in enumerate(list(self._workers)):  # keep every ready worker's pipe full
                    while w.ready and len(w.inflight) < _PIPELINE_DEPTH and any(queues):
                        own = queues[slot]
                        task = own.popleft() if own else max(queues, key=len).pop()
                        _, answer, gold = tasks[task]
                        self._next_job += 1
                        try:
                            w.proc.stdin.write((json.dumps([self._next_job, answer, gold]) + "\n").encode())
                            w.proc.stdin.flush()
                        except OSError:  # found dead: requeue everything it held, nobody's fault
                            own.extendleft(reversed([t for _, t in w.inflight] + [task]))
                            w.inflight.clear()
                            self._replace(w)
                            break
                        if not w.inflight:
                            w.deadline = time.monotonic() + self.timeout_s + self.kill_grace_s
                        w.inflight.append((self._next_job, task))
                deadlines = [w.deadline if w.ready else w.startup_deadline for w in self._workers
                             if w.inflight or not w.ready]
                wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                for key, _ in self._selector.select(wait):
                    worker = key.data
                    self._read(worker, tasks, results, queues[self._workers.index(worker)])
                now = time.monotonic()
                for slot, w in enumerate(list(self._workers)):
                    if w.inflight and now > w.deadline:  # unresponsive: kill it
                        self._fail(w, tasks, results, "timeout", queues[slot])
                    elif not w.ready and now > w.startup_deadline:
                        raise RuntimeError(f"a grading worker was not ready after {self.startup_timeout_s} s")
        except BaseException:
            # Interrupted (e.g. KeyboardInterrupt): workers still holding requests are replaced so
            # that no late reply can be mistaken for a later batch's.
            for w in list(self._workers):
                if w.inflight:
                    w.inflight.clear()
                    self._replace(w)
            raise

    def _read(self, worker: _Worker, tasks: list, results: list, queue: deque) -> None:
        try:
            chunk = os.read(worker.fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:  # EOF: the worker died
            if worker.inflight:
                self._fail(worker, tasks, results, "crash", queue)
                return
            if not worker.ready:
                code = worker.proc.wait()
                raise RuntimeError(f"a grading worker exited during start-up (exit code {code}); "
                                   "its error is on stderr above")
            self._replace(worker)
            return
        worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, _, rest = worker.buffer.partition(b"\n")
            worker.buffer = bytearray(rest)
            message = json.loads(line)
            if message[0] == "ready":
                worker.ready = True
            elif worker.inflight and message[0] == worker.inflight[0][0]:
                _, score, status = message
                self._finish(worker, tasks, results, score, status)


def _default_num_workers() -> int:
    """Pool size: env SAPO_REWARD_WORKERS, else the usable cores, at most MAX_WORKERS."""
    env = os.environ.get(WORKERS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{WORKERS_ENV} must be an integer >= 1, got {env!r}")
        return value
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


_default_grader: Grader | None = None
_default_lock = threading.Lock()


def default_grader() -> Grader:
    """The grader of `correctness_reward` and `total_reward`, made on first use (workers on first grading)."""
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = Grader()
        return _default_grader


def configure_grader(**kwargs: Any) -> Grader:
    """Replace the default grader by `Grader(**kwargs)` (the old one's workers are stopped)."""
    global _default_grader
    with _default_lock:
        old, _default_grader = _default_grader, Grader(**kwargs)
    if old is not None:
        old.close()
    return _default_grader


def reward_stats() -> RewardStats:
    """Counters of the default grader: items, correct, unparseable golds, timeouts, failures, ..."""
    return default_grader().stats


# ----------------------------------------------------------------------------------------------
# Rewards with TRL's signature
# ----------------------------------------------------------------------------------------------

def _is_formatted(text: str) -> bool:
    """SPEC §3 layout: each tag exactly once, in order, non-blank blocks, only white space outside."""
    if any(text.count(tag) != 1 for tag in TAGS):  # missing, duplicated or nested tags
        return False
    think_open, think_close = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    answer_open, answer_close = text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)
    if not think_open < think_close < answer_open < answer_close:
        return False
    think = text[think_open + len(THINK_OPEN):think_close]
    answer = text[answer_open + len(ANSWER_OPEN):answer_close]
    outside = (text[:think_open] + text[think_close + len(THINK_CLOSE):answer_open]
               + text[answer_close + len(ANSWER_CLOSE):])
    return bool(think.strip()) and bool(answer.strip()) and not outside.strip()


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """SPEC §3 R_format: 1.0 for exactly `<think> .. </think> <answer> .. </answer>`, else 0.0."""
    return [float(_is_formatted(completion_text(c))) for c in completions]


class CorrectnessReward:
    """SPEC §3 R_correct with a given `Grader` (None: the default grader); a picklable TRL reward."""

    __name__ = "correctness_reward"

    def __init__(self, grader: Grader | None = None):
        self.grader = grader

    def __call__(self, completions: Sequence[Any], answer: Sequence[Any],
                 log_extra: Callable[[str, list], None] | None = None, **kwargs: Any) -> list[float | None]:
        """1.0 if the <answer> block is mathematically the gold `answer`, else 0.0; None: gold unparseable."""
        extracted = [extract_answer(completion_text(c)) for c in completions]
        if log_extra is not None:  # TRL adds this column to its completions table
            log_extra("extracted_answer", [a if a is not None else "[no answer block]" for a in extracted])
        return (self.grader or default_grader()).grade(extracted, list(answer))


def make_correctness_reward(grader: Grader | None = None) -> CorrectnessReward:
    """A correctness reward that grades with `grader` (e.g. another time limit or pool size)."""
    return CorrectnessReward(grader)


correctness_reward = CorrectnessReward()


class TotalReward:
    """SPEC eq. 9: R = format_weight * R_format + correctness_weight * R_correct (None where R_correct is)."""

    __name__ = "total_reward"

    def __init__(self, format_weight: float = 1.0, correctness_weight: float = 1.0,
                 grader: Grader | None = None):
        self.format_weight = float(format_weight)
        self.correctness_weight = float(correctness_weight)
        self.correctness = CorrectnessReward(grader)

    def __call__(self, completions: Sequence[Any], answer: Sequence[Any],
                 **kwargs: Any) -> list[float | None]:
        """Weighted sum of format and correctness rewards per completion."""
        fmt = format_reward(completions)
        correct = self.correctness(completions, answer, **kwargs)
        return [None if c is None else self.format_weight * f + self.correctness_weight * c
                for f, c in zip(fmt, correct)]

    def __repr__(self) -> str:
        return (f"TotalReward(format_weight={self.format_weight}, "
                f"correctness_weight={self.correctness_weight})")


def make_total_reward(format_weight: float = 1.0, correctness_weight: float = 1.0,
                      grader: Grader | None = None) -> TotalReward:
    """R = format_weight * R_format + correctness_weight * R_correct (SPEC eq. 9 has both weights 1)."""
    return TotalReward(format_weight, correctness_weight, grader)


total_reward = make_total_reward()

REWARDS: dict[str, Callable[..., list]] = {
    "format": format_reward,
    "correctness": correctness_reward,
    "total": total_reward,
}


def get_reward(name: str) -> Callable[..., list]:
    """The reward registered under `name` (a recipe's `reward:` entry)."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; available: {', '.join(sorted(REWARDS))}") from None
