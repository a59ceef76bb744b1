"""Tests for sapo_core.rewards.answers: completion text, answer extraction, normal forms of answers and golds,
quick verdicts, and the refusal of batches that are bare strings and of bytes golds."""

from __future__ import annotations

import pytest

from sapo_core.rewards.answers import (
    as_batch,
    completion_text,
    extract_answer,
    normalize_answer,
    normalize_gold,
    quick_verdict,
)


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think><answer> 42 </answer>", "42"),
    ("<answer>\n\\frac{1}{2}\n</answer>", "\\frac{1}{2}"),
    ("<answer>1</answer> then <answer>2</answer>", "2"),          # the last block counts
    ("<answer><answer>3</answer>", "3"),                          # innermost before the close
    ("<answer></answer>", ""),
    ("<answer>7", None),                                          # truncated
    ("no block", None),
    ("</answer><answer>", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_completion_text_forms():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text({"role": "assistant", "content": "abc"}) == "abc"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
                            {"role": "assistant", "content": "a2"}]) == "a2"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b"}]}]) == "ab"
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    for bad in (42, [], ["text"], None):
        with pytest.raises(TypeError, match="a completion must be a string or a list of chat messages"):
            completion_text(bad)


def test_chat_completion_without_an_assistant_message_names_the_roles():
    with pytest.raises(ValueError, match=r"no assistant message .*roles found: \['system', 'user'\]"):
        completion_text([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}])
    with pytest.raises(TypeError, match="assistant message's content must be a string or a list"):
        completion_text([{"role": "assistant", "content": 42}])


@pytest.mark.parametrize("gold, expected", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
    ("... #### 1,000", "1000"),
    ("#### 1,450,000", "1450000"),
    (25, "25"),
    ("025", "025"),
    ("\\$32,\\!348", "32348"),
    ("10,\\!080", "10080"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("$\\frac{1}{2}$", "\\frac{1}{2}"),
    ("\\text{Evelyn}", "Evelyn"),
    ("1,-2", "1,-2"),
    ("3, 5, 7", "3, 5, 7"),
    (None, ""), (float("nan"), ""),                               # missing: cannot be judged
])
def test_normalize_gold(gold, expected):
    assert normalize_gold(gold) == expected


@pytest.mark.parametrize("gold", [b"72", bytearray(b"#### 1,000")])
def test_bytes_gold_is_refused(gold):
    # str(b"72") is "b'72'": it used to be graded as that text
    with pytest.raises(TypeError, match="got bytes .*decode it first"):
        normalize_gold(gold)


@pytest.mark.parametrize("text, expected", [
    ("$\\boxed{72}$", "72"), ("\\boxed{1}+\\boxed{2}", "\\boxed{1}+\\boxed{2}"), ("$1$ and $2$", "$1$ and $2$"),
    ("18 dollars", "18"), ("about 18", "18"), ("**18**", "18"), ("2 pi", "2 pi"), ("5 apples and 3 pears",
    "5 apples and 3 pears"), ("TRUE", "True"), ("\\text{false}", "False"), ("1,234.5", "1234.5"),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("answer, gold, expected", [
    ("25", "025", 1.0), ("-3", "-3", 1.0), ("26", "025", 0.0), ("+7", "7", 1.0),
    ("East", "east", 1.0), ("no Solution", "No solution", 1.0), ("no  solution", "No solution", None),
    ("ab", "ba", None),                                           # a product of symbols: math-verify decides
    ("0.5", "1/2", None), ("1" * 101, "1" * 101, None),           # not integers, or too long for the shortcut
])
def test_quick_verdict(answer, gold, expected):
    assert quick_verdict(answer, gold) == expected


@pytest.mark.parametrize("values", ["abc", b"abc", {"a": 1}, 42, None])
def test_as_batch_refuses_what_is_not_a_list_of_items(values):
    with pytest.raises(TypeError, match="completions must be a list with one entry per completion"):
        as_batch(values, "completions")


def test_as_batch_accepts_sequences_and_iterables():
    assert as_batch(("a", "b"), "completions") == ["a", "b"]
    assert as_batch(iter(["a"]), "completions") == ["a"]
