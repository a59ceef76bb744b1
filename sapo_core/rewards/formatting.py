"""The format reward (method §3.2, eq. 10): R_format = 1 when the completion is `<think> text </think> <answer> text
</answer>` with nothing but white space outside the two blocks, else 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sapo_core.prompts import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN
from sapo_core.rewards.answers import as_batch, check_text, completion_text

__all__ = ["format_reward", "is_formatted"]


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


def format_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
    """method §3.2 eq. 10, R_format: 1.0 for exactly `<think> .. </think> <answer> .. </answer>`, else 0.0.

    >>> format_reward(["<think> 6 * 7 </think> <answer> 42 </answer>", "42", "<answer> 42 </answer>"])
    [1.0, 0.0, 0.0]
    """
    return [float(is_formatted(completion_text(c))) for c in as_batch(completions, "completions")]
