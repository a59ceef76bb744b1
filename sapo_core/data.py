"""Datasets with one schema everywhere (SPEC §3).

Every loader returns a `datasets.Dataset` with the columns

    prompt  : list of chat messages (`sapo_core.prompts.make_prompt`), TRL's conversational format
    answer  : the gold answer as a string
    source  : which dataset the row came from ("gsm8k", "deepmath", "math500", "aime24", "aime25",
              "synthetic")
    id      : a stable identifier of the row within its source

`synthetic_arithmetic` is the offline task of the embedded CPU default; it additionally carries
`solution`, a worked completion in the required layout, used to warm-start the tiny model.
"""

from __future__ import annotations

import random

from datasets import Dataset

from sapo_core.prompts import format_completion, make_prompt

__all__ = ["COLUMNS", "synthetic_arithmetic"]

COLUMNS = ("prompt", "answer", "source", "id")

_NAMES = ("Ann", "Ben", "Cal", "Dee", "Eve", "Finn", "Gus", "Hal", "Ivy", "Jo")
_ITEMS = ("apples", "pens", "coins", "cards", "books", "shells", "stamps", "marbles")


def _problem(rng: random.Random, steps: int, max_operand: int) -> tuple[str, str, str]:
    """One word problem with `steps` operations: (question, reasoning, answer)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    total = rng.randint(1, max_operand)
    text = [f"{name} has {total} {item}."]
    work = []
    for _ in range(steps):
        amount = rng.randint(1, max_operand)
        if rng.random() < 0.5 or amount > total:  # never go negative
            text.append(f"{name} gets {amount} more.")
            work.append(f"{total}+{amount}={total + amount}")
            total += amount
        else:
            text.append(f"{name} gives away {amount}.")
            work.append(f"{total}-{amount}={total - amount}")
            total -= amount
    text.append(f"How many {item} does {name} have?")
    return " ".join(text), " ".join(work), str(total)


def synthetic_arithmetic(n: int, seed: int = 0, *, min_steps: int = 1, max_steps: int = 1,
                         max_operand: int = 99, split: str = "train") -> Dataset:
    """`n` integer word problems (min_steps..max_steps additions/subtractions), deterministic for a seed."""
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not (isinstance(min_steps, int) and isinstance(max_steps, int) and 1 <= min_steps <= max_steps):
        raise ValueError(f"need integers 1 <= min_steps <= max_steps, got {min_steps!r}, {max_steps!r}")
    if not isinstance(max_operand, int) or max_operand < 1:
        raise ValueError(f"max_operand must be an int >= 1, got {max_operand!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    # Distinct streams per split so a held-out set never reuses the training draws of the same seed.
    rng = random.Random(f"synthetic-{split}-{seed}")
    rows = {"prompt": [], "answer": [], "source": [], "id": [], "solution": []}
    for i in range(n):
        question, work, answer = _problem(rng, rng.randint(min_steps, max_steps), max_operand)
        rows["prompt"].append(make_prompt(question))
        rows["answer"].append(answer)
        rows["source"].append("synthetic")
        rows["id"].append(f"synthetic-{split}-{seed}-{i}")
        rows["solution"].append(format_completion(work, answer))
    return Dataset.from_dict(rows)
