"""Answer text (method §3.2): the completion's text, its <answer> block, and one string normal form shared
by model answers and gold answers. Pure functions: no math-verify, no processes.

`quick_verdict` settles the pairs that need no symbolic comparison (integer against integer, the same
plain words); everything else goes to math-verify in the grading workers (`sapo_core.rewards.grading`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from sapo_core.prompts import ANSWER_CLOSE, ANSWER_OPEN

__all__ = ["as_batch", "check_text", "completion_text", "extract_answer", "normalize_answer", "normalize_gold",
           "quick_verdict"]

QUICK_MAX_DIGITS = 100  # integers longer than this go to math-verify like anything else

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
_WORDS_RE = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]+)*")  # `east`, `True`, `no solution`
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("\\boxed{", "}"), ("\\fbox{", "}"))


def check_text(value: Any, name: str) -> str:
    """`value` if it is a string, else a TypeError naming `name`."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r:.100}")
    return value


def as_batch(values: Any, name: str) -> list:
    """A reward's column (`completions`, `answer`) as a list; a bare string, which would be read per
    character, is refused."""
    if isinstance(values, (str, bytes, bytearray, dict)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list with one entry per completion, "
                        f"got {type(values).__name__} {values!r:.100}")
    return list(values)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the last assistant message of a conversation.

    >>> completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    'a'
    """
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
            raise TypeError(f"the assistant message's content must be a string or a list of content parts, "
                            f"got {type(content).__name__} {content!r:.100}")
        if messages:  # chat messages, none of them the model's
            roles = [m.get("role") for m in messages]
            raise ValueError(f"a chat completion has no assistant message to read (roles found: {roles}); "
                             "a completion is the model's reply, not the prompt's messages")
    raise TypeError(f"a completion must be a string or a list of chat messages, got {completion!r:.200}")


def extract_answer(text: str) -> str | None:
    """The stripped text of the last `<answer> ... </answer>` block, or None when there is none.

    >>> extract_answer("<think> 6 * 7 </think> <answer> 42 </answer>")
    '42'
    >>> extract_answer("<answer> 42") is None
    True
    """
    check_text(text, "text")
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
    """String normal form shared by answers and golds: delimiters, \\boxed, currency, separators.

    >>> normalize_answer("$\\\\boxed{1,000}$")
    '1000'
    >>> normalize_answer("18 dollars")
    '18'
    >>> normalize_answer("\\\\frac{1}{2}")
    '\\\\frac{1}{2}'
    """
    check_text(text, "text")
    s = text.strip()
    for _ in range(3):  # peel up to three layers, e.g. `$\boxed{72}$`
        before = s
        for prefix, suffix in _DELIMITERS:
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
    """Gold answer as a string: GSM8K's `reasoning #### 1,000` -> `1000`, AIME's int 25 -> `25`;
    "" (cannot be judged) for a missing gold (None, or pandas' NaN). Bytes are refused: decode them first.

    >>> normalize_gold("Natalia sold 48 + 24 = 72 clips.\\n#### 72")
    '72'
    >>> normalize_gold(25)
    '25'
    >>> normalize_gold(None)
    ''
    """
    if isinstance(gold, (bytes, bytearray)):
        raise TypeError(f"a gold answer must be text or a number, got bytes {bytes(gold)!r:.100}; "
                        "decode it first (e.g. gold.decode('utf-8'))")
    if gold is None or isinstance(gold, bool) or (isinstance(gold, float) and math.isnan(gold)):
        return ""  # no gold: it cannot be parsed, the item scores None
    s = str(gold)
    if "####" in s:  # GSM8K: the final answer follows the last '####'
        s = s.rsplit("####", 1)[1]
    return normalize_answer(s)


def quick_verdict(answer: str, gold: str) -> float | None:
    """Numeric pre-check on normalised texts: 1.0/0.0 when both are plain integers (exact, `025` == 25);
    1.0 when both are the same plain words up to case and spacing (math-verify reads words as
    case-sensitive products of symbols); None to defer to math-verify.

    >>> quick_verdict("025", "25"), quick_verdict("26", "25"), quick_verdict("0.5", "1/2")
    (1.0, 0.0, None)
    """
    check_text(answer, "answer")
    check_text(gold, "gold")
    if (_WORDS_RE.fullmatch(gold) and _WORDS_RE.fullmatch(answer)
            and " ".join(answer.casefold().split()) == " ".join(gold.casefold().split())):
        return 1.0  # different words go to math-verify: `ab` and `ba` are the same product
    if (len(answer) <= QUICK_MAX_DIGITS and len(gold) <= QUICK_MAX_DIGITS
            and _INT_RE.fullmatch(answer) and _INT_RE.fullmatch(gold)):
        return float(int(answer) == int(gold))
    return None
