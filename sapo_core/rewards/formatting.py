"""The format reward (method §3.2, eq. 10), in two kinds a recipe chooses with `format_reward: graded | binary`.

    graded (the paper's eq. 10):  1     the layout is fully satisfied (`is_formatted`)
                                  0.5   it begins with <think> and ends with </answer>
                                  0.25  it begins with <think> or ends with </answer>
                                  0     otherwise
    binary:                       1 when the layout is fully satisfied, else 0

"Fully satisfied" is `is_formatted`: `<think> text </think> <answer> text </answer>`, each tag exactly once,
in this order, both blocks non-blank, nothing but white space outside them. "Begins" and "ends" are read
after white space at the start and the end is stripped, as `is_formatted` ignores it. Both functions keep
the name `format_reward`, so TRL logs either as `rewards/format_reward/mean`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sapo_core.prompts import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN
from sapo_core.rewards.answers import as_batch, check_text, completion_text

__all__ = ["FORMAT_REWARDS", "format_reward", "format_score", "graded_format_reward", "is_formatted"]


def is_formatted(text: str) -> bool:
    """method §3.2 layout: each tag exactly once, in order, non-blank blocks, only white space outside."""
    check_text(text, "text")
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


def format_score(text: str) -> float:
    """method §3.2 eq. 10: 1 fully formatted; 0.5 begins with <think> and ends with </answer>; 0.25 one of
    the two; 0 otherwise (white space at either end ignored)."""
    if is_formatted(text):
        return 1.0
    stripped = text.strip()
    begins, ends = stripped.startswith(THINK_OPEN), stripped.endswith(ANSWER_CLOSE)
    if begins and ends:
        return 0.5
    if begins or ends:
        return 0.25
    return 0.0


def format_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
    """The binary R_format: 1.0 for exactly `<think> .. </think> <answer> .. </answer>`, else 0.0.

    >>> format_reward(["<think> 6 * 7 </think> <answer> 42 </answer>", "42", "<answer> 42 </answer>"])
    [1.0, 0.0, 0.0]
    """
    return [float(is_formatted(completion_text(c))) for c in as_batch(completions, "completions")]


def graded_format_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
    """method §3.2 eq. 10, the graded R_format: 1, 0.5, 0.25 or 0 per completion (`format_score`).

    >>> graded_format_reward(["<think> 6 * 7 </think> <answer> 42 </answer>", "<think> 6 * 7", "42"])
    [1.0, 0.25, 0.0]
    """
    return [format_score(completion_text(c)) for c in as_batch(completions, "completions")]


graded_format_reward.__name__ = "format_reward"  # TRL's metric name, rewards/format_reward/mean, for either kind

# The recipe's `format_reward` key -> the reward function train() passes to TRL (the first is the default).
FORMAT_REWARDS: dict[str, Callable[..., list[float]]] = {"graded": graded_format_reward, "binary": format_reward}
