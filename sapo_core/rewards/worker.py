"""What runs inside a grading worker process: math-verify on one (answer, gold) pair (method §3.2, eq. 11).

The parent (`sapo_core.rewards.grading`) normalises both texts, answers what it can without math-verify
and sends the rest here one pair per task; the pool enforces the time limit by killing the worker.
`init_worker` sets the worker up: a session of its own, math-verify's own signal timeouts off (the pool's
limit is the one that counts), the numeric refutation below, optionally a warm-up on `WARMUP_ANSWERS`,
and an address-space limit (a huge power fails with MemoryError instead of swapping the machine).
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import lru_cache
from typing import Any

__all__ = [
    "WARMUP_ANSWERS",
    "grade_pair",
    "init_worker",
    "install_numeric_refutation",
    "numerically_different",
]

logger = logging.getLogger(__name__)

PARSE_CACHE = 16_384  # parsed texts kept by a worker (LRU): golds repeat, right answers are often the gold's text
# Answers a worker grades at start-up (warm_up=True): the LaTeX parser and sympy get much faster once they
# have seen the common forms.
WARMUP_ANSWERS = (
    "\\frac{3}{4}", "-\\frac{7}{2}", "2\\sqrt{3}", "\\frac{\\sqrt{5}}{2}", "3+4i", "\\pi", "\\frac{\\pi}{3}",
    "45^\\circ", "0.25", "12\\%", "x^2-3x+2", "(x-1)(x-2)", "\\{1, 2, 3\\}", "(2, 5]",
    "(-\\infty, 0) \\cup (1, \\infty)", "(1, -2)", "\\begin{pmatrix} 1 \\\\ 0 \\end{pmatrix}", "y = 2x + 1",
    "\\text{odd}", "\\sin x", "e^{2}", "\\log_2 8", "\\binom{6}{3}", "1, 2", "3^{5}", "a+b", "\\dfrac{11}{6}",
    "5\\sqrt{2}-1", "\\sqrt[3]{2}", "\\infty", "x \\in [0, 1]", "10_{2}",
)


def _mapped_bytes() -> int:
    """The address space this process has mapped now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def init_worker(memory_limit_mb: int | None, warm_up: bool) -> None:
    """Pool initializer: own session, quiet math-verify, refutation, warm-up, memory limit on top of start-up."""
    # Its own session, as the hand-written pool's workers had: terminal signals (Ctrl-C, Ctrl-Z, hang-up)
    # are the parent's, which stops the pool; under the kernel's autogroup scheduling each worker gets a CPU
    # share of its own instead of splitting the trainer's (bench_rewards on a loaded machine: 3.4 vs 2.3).
    with contextlib.suppress(PermissionError):  # already a process group leader: not a pool worker
        os.setsid()
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": the pool's is on
    # math-verify's last resort, simplify(gold - answer) == 0, is its slowest step and almost always runs
    # for wrong answers; a difference clearly non-zero at a sample point is refuted first.
    install_numeric_refutation()
    if warm_up:
        for k, gold in enumerate(WARMUP_ANSWERS):
            for answer in (gold, WARMUP_ANSWERS[(k + 1) % len(WARMUP_ANSWERS)],
                           WARMUP_ANSWERS[(k + 7) % len(WARMUP_ANSWERS)]):
                grade_pair(answer, gold)
        _parse.cache_clear()
    if memory_limit_mb is not None:
        import resource
        # The limit counts from here, on top of what start-up mapped (math-verify, sympy, the warm-up).
        limit = _mapped_bytes() + memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def install_numeric_refutation() -> None:
    """Make math-verify try `numerically_different` before its last resort, simplify(gold - answer) == 0."""
    import math_verify.grader

    exact_symbolic_eq = math_verify.grader.sympy_symbolic_eq

    def refuted_or_symbolic_eq(a: Any, b: Any) -> bool:
        return False if numerically_different(a, b) else exact_symbolic_eq(a, b)

    math_verify.grader.sympy_symbolic_eq = refuted_or_symbolic_eq


def numerically_different(a: Any, b: Any) -> bool:
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


@lru_cache(maxsize=PARSE_CACHE)
def _parse(text: str) -> tuple:
    """math-verify's parse of `text`; bare LaTeX (`\\dfrac{14}{3}`, `(1,2)`) is only found inside math
    delimiters, so it is tried as `$text$` first, then as it is."""
    from math_verify import parse

    if any(d in text for d in ("$", "\\(", "\\[", "\\boxed")):
        return tuple(parse(text, parsing_timeout=None))
    return tuple(parse(f"${text}$", parsing_timeout=None) or parse(text, parsing_timeout=None))


def grade_pair(answer: str | None, gold: str) -> float | None:
    """1.0 if math-verify finds `answer` equal to `gold`, else 0.0; None when the gold does not parse."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    if all(isinstance(g, str) for g in gold_parsed):  # only a raw-text fallback: unparseable
        return None
    if not answer:
        return 0.0
    predicted = _parse(answer)
    if not predicted:
        return 0.0
    return float(verify(list(gold_parsed), list(predicted), timeout_seconds=None))
