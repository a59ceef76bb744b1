"""Rewards for maths RL fine-tuning (method §3.2, eq. 9): R = R_format + R_correct, as TRL reward functions.

    answers.py     answer text: completion text, the <answer> block, normal forms, quick verdicts (pure)
    formatting.py  R_format: `<think> .. </think> <answer> .. </answer>` and nothing else; graded (eq. 10) or
                   binary, chosen by the recipe's `format_reward` (`FORMAT_REWARDS`)
    grading.py     R_correct: quick verdicts, a verdict cache, math-verify in a pebble process pool with a
                   per-item time limit (`Grader`, `correctness_reward`)
    worker.py      what runs inside a grading worker (math-verify, numeric refutation, warm-up)
    spawning.py    the workers' start method: spawn, without re-running the caller's __main__

Every reward keeps TRL's signature `(completions, **columns) -> list[float | None]`; completions are plain
strings or TRL conversational completions (lists of messages; the last assistant message is read), and
`None` means exactly one thing: the item cannot be judged because its gold answer does not parse.
TRL weighs and sums the rewards (`reward_weights`). Importing this package starts no process and loads
neither math-verify nor sympy.
"""

from sapo_core.rewards.answers import completion_text, extract_answer, normalize_answer, normalize_gold, quick_verdict
from sapo_core.rewards.formatting import FORMAT_REWARDS, format_reward, format_score, graded_format_reward, is_formatted
from sapo_core.rewards.grading import (
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIMEOUT_S,
    WORKERS_ENV,
    CorrectnessReward,
    Grader,
    RewardStats,
    correctness_reward,
    default_grader,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "FORMAT_REWARDS",
    "WORKERS_ENV",
    "CorrectnessReward",
    "Grader",
    "RewardStats",
    "completion_text",
    "correctness_reward",
    "default_grader",
    "extract_answer",
    "format_reward",
    "format_score",
    "graded_format_reward",
    "is_formatted",
    "normalize_answer",
    "normalize_gold",
    "quick_verdict",
]
