"""The one prompt template used by training and evaluation alike (method §3).

The model is asked to reason inside <think> ... </think> and to put only its final answer inside
<answer> ... </answer>; `format_reward` and `correctness_reward` in `sapo_core.rewards` read exactly
this layout. Prompts are in TRL's conversational format (a list of chat messages).
"""

from __future__ import annotations

__all__ = ["SYSTEM_PROMPT", "USER_TEMPLATE", "THINK_OPEN", "THINK_CLOSE", "ANSWER_OPEN", "ANSWER_CLOSE",
           "TAGS", "make_prompt", "format_completion"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

SYSTEM_PROMPT = (
    "Reason step by step inside <think> </think>, then give only the final answer "
    "inside <answer> </answer>."
)
USER_TEMPLATE = "{problem}"


def make_prompt(problem: str) -> list[dict[str, str]]:
    """The chat messages (system + user) that pose `problem`."""
    if not isinstance(problem, str):
        raise TypeError(f"problem must be a non-empty string, got {type(problem).__name__} {problem!r:.100}")
    if not problem.strip():
        raise ValueError(f"problem must be a non-empty string, got {problem!r}")
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(problem=problem)}]


def format_completion(reasoning: str, answer: str) -> str:
    """A completion in the required layout: `<think> reasoning </think> <answer> answer </answer>`."""
    for name, value in (("reasoning", reasoning), ("answer", answer)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r:.100}")
    return f"{THINK_OPEN} {reasoning} {THINK_CLOSE} {ANSWER_OPEN} {answer} {ANSWER_CLOSE}"
