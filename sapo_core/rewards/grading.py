"""The correctness reward (method §3.2, eq. 11): R_correct = 1 when the <answer> block is mathematically the gold
answer (math-verify: numbers, fractions, LaTeX, sets, intervals, ...), else 0; None when the gold itself
cannot be parsed, the one case where an item cannot be judged.

`Grader.grade`, the part that must never stall training, takes three steps per (answer, gold) pair:

1. `quick_verdict` on the normalised texts: integer against integer (most GSM8K and AIME items) and the
   same plain words are settled in-process;
2. `Grader.cached_verdict`: a pair graded before (a GRPO group of G completions shares its gold and often
   its answer) is answered from an LRU cache in the parent;
3. the rest go to a pebble `ProcessPool` (`sapo_core.rewards.worker` runs math-verify there), one pair per
   task with a per-task `timeout_s`: a task over time has its worker stopped (SIGTERM, SIGKILL 3 s later
   if it is stuck in C code) and replaced by pebble, and scores 0.0 (a wrong answer), as does an item
   whose worker dies or raises; they are counted in `RewardStats` and never cached. pebble gives up on
   a pool whose worker dies while no task runs; the grader then starts a new pool.

The pool is started lazily on first use, uses the spawn start method (a clean interpreter: nothing of a
training process, its CUDA state or its threads, is inherited) and is stopped at exit or on `close()`.
Its workers never import the caller's `__main__` (`sapo_core.rewards.spawning`), so grading starts from a
script read from stdin, a script without an `if __name__ == "__main__":` guard, `python -c`, `python -m`
and a notebook alike. Timeouts are the pool's, not signals in the caller, so grading works from any
thread; a forked child starts a pool of its own.

`correctness_reward` grades with `default_grader()`, made on first use (workers: env
`SAPO_REWARD_WORKERS`, else min(cores, 8)); `CorrectnessReward(Grader(...))` grades with a grader of your
own. Benchmark against TRL's `accuracy_reward`:  python benchmarks/bench_rewards.py
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Self

from pebble import ProcessExpired, ProcessPool

from sapo_core.checks import check_bool, check_int, check_positive
from sapo_core.rewards import worker
from sapo_core.rewards.answers import (
    as_batch,
    check_text,
    completion_text,
    extract_answer,
    normalize_answer,
    normalize_gold,
    quick_verdict,
)
from sapo_core.rewards.spawning import WORKER_CONTEXT

__all__ = [
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "WORKERS_ENV",
    "CorrectnessReward",
    "Grader",
    "RewardStats",
    "correctness_reward",
    "default_grader",
    "default_num_workers",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0          # per-item time limit; the worker is killed when it is over
DEFAULT_MEMORY_LIMIT_MB = 4096   # address space a worker may map after start-up
STARTUP_TIMEOUT_S = 120.0        # a pool whose first item is not graded by then is a set-up error
POLL_S = 1.0                     # how often a wait for a verdict checks that the pool is still alive
MAX_WORKERS = 8                  # default pool size is min(cores, MAX_WORKERS)
VERDICT_CACHE = 100_000          # (answer, gold) -> score entries kept by a Grader (LRU)
WORKERS_ENV = "SAPO_REWARD_WORKERS"


@dataclasses.dataclass
class RewardStats:
    """Counters of a `Grader` since it was created; every field counts items."""

    items: int = 0              # answers graded
    correct: int = 0            # scored 1.0
    unparseable_gold: int = 0   # scored None: the gold answer itself does not parse
    timeouts: int = 0           # scored 0.0: over the time limit (the worker was killed)
    worker_failures: int = 0    # scored 0.0: the worker process died while grading the item
    errors: int = 0             # scored 0.0: math-verify raised (e.g. MemoryError)
    fast_path: int = 0          # settled by quick_verdict, in-process
    cache_hits: int = 0         # answered by the verdict cache, or a repeat earlier in the same batch

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logging)."""
        return dataclasses.asdict(self)


def default_num_workers() -> int:
    """Pool size: env SAPO_REWARD_WORKERS (an integer >= 1), else the usable cores, at most MAX_WORKERS."""
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


def _stop_pool(pool: ProcessPool, owner_pid: int) -> None:
    """Stop `pool`'s workers, unless this is a forked copy of its owner (then they are not ours)."""
    if os.getpid() == owner_pid:
        pool.stop()
        pool.join()


class Grader:
    """Checks answers against golds: quick verdicts, a verdict cache, math-verify in a pool with a time limit."""

    def __init__(self, num_workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB, warm_up: bool = True):
        if num_workers is None:
            num_workers = default_num_workers()
        check_int("num_workers", num_workers, minimum=1)
        check_bool("warm_up", warm_up)
        check_positive("timeout_s (seconds)", timeout_s)
        if memory_limit_mb is not None:
            check_int("memory_limit_mb (MiB; None: no limit)", memory_limit_mb, minimum=1)
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = memory_limit_mb
        self.warm_up = warm_up
        self._stats = RewardStats()
        self._verdicts: OrderedDict[tuple[str | None, str], float | None] = OrderedDict()
        self._bad_golds: set[str] = set()  # distinct unparseable golds, each logged once
        self._closed = False
        self._adopt_process()

    def _adopt_process(self) -> None:
        """No pool yet, owned by this process (a forked child leaves the parent's workers to the parent)."""
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._pool: ProcessPool | None = None

    # -- public -------------------------------------------------------------------------------------

    def grade(self, answers: Sequence[str | None], golds: Sequence[Any]) -> list[float | None]:
        """1.0/0.0 per (answer, gold) pair, None where the gold does not parse; answers may be None."""
        answers, golds = as_batch(answers, "answers"), as_batch(golds, "golds")
        if len(answers) != len(golds):
            raise ValueError(f"got {len(answers)} answers but {len(golds)} golds")
        if self._owner_pid != os.getpid():  # running in a forked child
            self._adopt_process()
        results: list[float | None] = [None] * len(answers)
        pending: dict[tuple[str | None, str], list[int]] = {}  # distinct pairs for the pool -> their items
        with self._lock:
            if self._closed:
                raise RuntimeError("this Grader is closed")
            for i, (answer, gold) in enumerate(zip(answers, golds)):
                gold_s = normalize_gold(gold)
                answer_s = None if answer is None else normalize_answer(check_text(answer, f"answers[{i}]"))
                key = (answer_s, gold_s)
                verdict = None if answer_s is None else quick_verdict(answer_s, gold_s)
                if verdict is not None:
                    self._stats.fast_path += 1
                elif key in pending:
                    pending[key].append(i)  # graded once, below
                    self._stats.cache_hits += 1
                    continue
                else:
                    found, verdict = self.cached_verdict(key)
                    if not found:
                        pending[key] = [i]
                        continue
                    self._stats.cache_hits += 1
                results[i] = verdict
                self._count(verdict, gold_s)
        if pending:
            try:
                self._grade_in_pool(pending, results)
            except BrokenProcessPool as error:  # pebble gives up on a pool whose worker died while it was idle
                logger.warning("the grading pool broke (%s); grading the %d pairs left in a new one", error,
                               len(pending))
                self._grade_in_pool(pending, results)
        return results

    def cached_verdict(self, key: tuple[str | None, str]) -> tuple[bool, float | None]:
        """(True, score) when the pair (answer, gold) was graded before (it becomes the most recent one),
        else (False, None). Called with the lock held."""
        if key not in self._verdicts:
            return False, None
        self._verdicts.move_to_end(key)
        return True, self._verdicts[key]

    def remember_verdict(self, key: tuple[str | None, str], score: float | None) -> None:
        """Keep the verdict of a pair, dropping the least recently used beyond VERDICT_CACHE entries.
        Called with the lock held, for deterministic verdicts only (never a timeout or a crash)."""
        self._verdicts[key] = score
        if len(self._verdicts) > VERDICT_CACHE:
            self._verdicts.popitem(last=False)

    def clear_verdicts(self) -> None:
        """Forget every cached verdict (a benchmark's timed pass starts cold; the workers stay up)."""
        with self._lock:
            self._verdicts.clear()

    @property
    def stats(self) -> RewardStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def close(self) -> None:
        """Stop the workers; the grader cannot be used afterwards."""
        with self._lock:
            self._closed = True
            if self._pool is not None:
                self._discard_pool(self._pool)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self):
        # Pickles as its configuration (TRL may send reward functions to a spawned process); the copy
        # starts its own pool on first use.
        return Grader, (self.num_workers, self.timeout_s, self.memory_limit_mb, self.warm_up)

    def __repr__(self) -> str:
        return (f"Grader(num_workers={self.num_workers}, timeout_s={self.timeout_s}, "
                f"memory_limit_mb={self.memory_limit_mb}, warm_up={self.warm_up})")

    # -- internals ----------------------------------------------------------------------------------

    def _live_pool(self) -> ProcessPool:
        """The pool, started and checked with one item on first use (called with the lock held)."""
        if self._closed:
            raise RuntimeError("this Grader is closed")
        if self._pool is not None and not self._pool.active:
            logger.warning("the grading pool broke (a worker died while it was idle); starting a new one")
            self._discard_pool(self._pool)
        if self._pool is None:
            pool = ProcessPool(max_workers=self.num_workers, initializer=worker.init_worker,
                               initargs=(self.memory_limit_mb, self.warm_up),
                               context=WORKER_CONTEXT)
            self._finalizer = weakref.finalize(self, _stop_pool, pool, os.getpid())
            try:  # workers that cannot start would be replaced for ever: fail here, with the reason
                pool.schedule(worker.grade_pair, args=("1", "1")).result(timeout=STARTUP_TIMEOUT_S)
            except Exception as error:
                self._finalizer()
                raise RuntimeError(f"the grading workers could not start ({error!r}); their errors are "
                                   "logged above") from error
            self._pool = pool
        return self._pool

    def _discard_pool(self, pool: ProcessPool) -> None:
        """Stop `pool` if it is still the current one (called with the lock held)."""
        if pool is self._pool:
            self._finalizer()
            self._pool = None

    def _grade_in_pool(self, pending: dict, results: list) -> None:
        """One task per distinct pair, each with the time limit; a timeout, crash or error scores 0.0.
        Graded pairs leave `pending`; on BrokenProcessPool the pool is discarded and the rest stay there."""
        with self._lock:
            pool = self._live_pool()
        futures = {}
        try:
            for key in pending:
                futures[key] = pool.schedule(worker.grade_pair, args=key, timeout=self.timeout_s)
            for key, future in futures.items():
                while not wait([future], timeout=POLL_S).done:  # pebble leaves queued tasks of a pool
                    if not pool.active:                         # that broke or was stopped pending for ever
                        raise BrokenProcessPool("the grading pool stopped")
                try:
                    score, failure = future.result(), None
                except (BrokenProcessPool, CancelledError):  # the pool itself failed or was stopped
                    raise
                except FutureTimeout:
                    score, failure = 0.0, "timeouts"
                except ProcessExpired:
                    score, failure = 0.0, "worker_failures"
                except Exception as error:  # MemoryError, RecursionError, sympy bugs: a wrong answer
                    logger.debug("grading %r raised %r", key, error)
                    score, failure = 0.0, "errors"
                with self._lock:
                    if failure is None:
                        self.remember_verdict(key, score)
                    for i in pending.pop(key):
                        results[i] = score
                        self._count(score, key[1], failure)
        except (BrokenProcessPool, RuntimeError) as error:  # RuntimeError: pebble's schedule on a broken pool
            with self._lock:
                self._discard_pool(pool)
            raise error if isinstance(error, BrokenProcessPool) else BrokenProcessPool(str(error)) from error
        finally:
            for future in futures.values():  # interrupted: stop what is still queued or running
                future.cancel()

    def _count(self, score: float | None, gold: str, failure: str | None = None) -> None:
        """Count one graded item (called with the lock held)."""
        s = self._stats
        s.items += 1
        if score is None:
            s.unparseable_gold += 1
            if gold not in self._bad_golds:
                self._bad_golds.add(gold)
                logger.warning("gold answer cannot be parsed, item scored None: %r", gold[:200])
        elif score == 1.0:
            s.correct += 1
        if failure is not None:
            setattr(s, failure, getattr(s, failure) + 1)


_default_grader: Grader | None = None
_default_lock = threading.Lock()


def default_grader() -> Grader:
    """The grader of `correctness_reward`, made on first use (its workers on first grading)."""
    global _default_grader
    with _default_lock:
        if _default_grader is None:
            _default_grader = Grader()
        return _default_grader


class CorrectnessReward:
    """method §3.2 eq. 11, R_correct, with a given `Grader` (None: the default grader); a picklable TRL reward."""

    __name__ = "correctness_reward"

    def __init__(self, grader: Grader | None = None):
        if grader is not None and not isinstance(grader, Grader):
            raise TypeError(f"grader must be a sapo_core.rewards.Grader or None (the default grader), got "
                            f"{type(grader).__name__} {grader!r:.100}")
        self.grader = grader

    def __call__(self, completions: Sequence[Any], answer: Sequence[Any],
                 log_extra: Callable[[str, list], None] | None = None, **columns: Any) -> list[float | None]:
        """1.0 if the <answer> block is mathematically the gold `answer`, else 0.0; None: gold unparseable."""
        completions, answer = as_batch(completions, "completions"), as_batch(answer, "answer")
        if len(completions) != len(answer):
            raise ValueError(f"got {len(completions)} completions but {len(answer)} gold answers")
        extracted = [extract_answer(completion_text(c)) for c in completions]
        if log_extra is not None:  # TRL adds this column to its completions table
            log_extra("extracted_answer", [a if a is not None else "[no answer block]" for a in extracted])
        return (self.grader or default_grader()).grade(extracted, answer)


correctness_reward = CorrectnessReward()
