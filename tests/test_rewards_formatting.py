"""Tests for sapo_core.rewards.formatting: the R_format table (method §3) and its TRL call."""

from __future__ import annotations

import pytest

from sapo_core.prompts import format_completion
from sapo_core.rewards import format_reward

FORMAT_CASES = [
    # (completion, reward, what it checks)
    ("<think>a</think><answer>1</answer>", 1.0, "minimal, no spaces"),
    ("<think> a </think> <answer> 1 </answer>", 1.0, "spaces between blocks"),
    ("\n  <think>a</think>\n\n<answer>1</answer>\n", 1.0, "white space around and between"),
    ("<think>line 1\nline 2\n\n</think>\n<answer>\n\\frac{1}{2}\n</answer>", 1.0, "newlines inside"),
    ("<think>x < y and y > z, a<b</think><answer>x<y</answer>", 1.0, "angle brackets inside"),
    ("<think>see <b>bold</b></think><answer>1</answer>", 1.0, "other tags inside"),
    ("\t<think>a</think>\t<answer>1</answer>\t", 1.0, "tabs outside"),
    ("<answer>1</answer>", 0.0, "think missing"),
    ("<think>a</think>", 0.0, "answer missing"),
    ("", 0.0, "empty completion"),
    ("just text 42", 0.0, "no tags"),
    ("<think>a</think><answer>1", 0.0, "answer not closed (truncated)"),
    ("<think>a<answer>1</answer>", 0.0, "think not closed"),
    ("<answer>1</answer><think>a</think>", 0.0, "reordered blocks"),
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0, "duplicated answer"),
    ("<think>a</think><think>b</think><answer>1</answer>", 0.0, "duplicated think"),
    ("<think>a <think>b</think> c</think><answer>1</answer>", 0.0, "nested think"),
    ("<think>a</think><answer>1 <answer>2</answer></answer>", 0.0, "nested answer"),
    ("<think>a <answer>1</answer></think><answer>1</answer>", 0.0, "answer inside think"),
    ("<think>a</think><answer>1 </think></answer>", 0.0, "stray closing tag inside answer"),
    ("Sure! <think>a</think><answer>1</answer>", 0.0, "text before"),
    ("<think>a</think><answer>1</answer> Hope this helps.", 0.0, "text after"),
    ("<think>a</think> so <answer>1</answer>", 0.0, "text between"),
    ("<think></think><answer>1</answer>", 0.0, "empty think block"),
    ("<think>a</think><answer> \n </answer>", 0.0, "blank answer block"),
    ("<THINK>a</THINK><ANSWER>1</ANSWER>", 0.0, "tags are case-sensitive"),
    ("< think >a</ think ><answer>1</answer>", 0.0, "malformed tag"),
    ("<think>a</think><answer>1</answer>" + "\n" * 1000, 1.0, "long trailing white space"),
]


@pytest.mark.parametrize("completion, expected, why", FORMAT_CASES, ids=[c[2] for c in FORMAT_CASES])
def test_format_reward_table(completion, expected, why):
    assert format_reward([completion]) == [expected]
    assert format_reward([[{"role": "assistant", "content": completion}]]) == [expected]


def test_format_reward_matches_prompt_template():
    assert format_reward([format_completion("r", "a")]) == [1.0]
    assert len(FORMAT_CASES) >= 20


def test_format_reward_takes_trl_columns():
    completions = [[{"role": "assistant", "content": format_completion("r", "a")}]]
    assert format_reward(completions=completions, prompts=[[]], answer=["a"], trainer_state=None,
                         log_extra=lambda *a: None, log_metric=lambda *a: None) == [1.0]
    assert format_reward([]) == []


def test_bare_string_is_refused_not_scored_per_character():
    with pytest.raises(TypeError, match="completions must be a list"):
        format_reward("<think>a</think><answer>1</answer>")
