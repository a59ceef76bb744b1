"""Tests for sapo_core.rewards.formatting: the binary and graded R_format tables (method §3.2 eq. 10) and
their TRL call."""

from __future__ import annotations

import pickle
import typing
from pathlib import Path

import pytest

from sapo_core.prompts import format_completion
from sapo_core.rewards import FORMAT_REWARDS, format_reward, graded_format_reward

TINY_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"

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


GRADED_CASES = [
    # (completion, graded reward, what it checks): every branch of eq. 10
    ("<think>a</think><answer>1</answer>", 1.0, "full format"),
    ("\n <think> a </think>\n<answer> 1 </answer> \n", 1.0, "full format, white space around"),
    ("<think>a</think> so <answer>1</answer>", 0.5, "starts and ends, text between"),
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.5, "starts and ends, repeated answer"),
    ("<think>a</think><think>b</think><answer>1</answer>", 0.5, "starts and ends, repeated think"),
    ("<think></think><answer>1</answer>", 0.5, "starts and ends, empty think block"),
    ("<think>a</think><answer> </answer>", 0.5, "starts and ends, blank answer block"),
    ("<think>a</answer>", 0.5, "starts and ends, nothing else"),
    ("  \t<think>a</think> 42 </answer>\n\n", 0.5, "starts and ends once white space is stripped"),
    ("<think>a</think><answer>1", 0.25, "starts only: truncated answer"),
    ("<think>a</think><answer>1</answer> Hope this helps.", 0.25, "starts only: text after"),
    ("\n<think>a</think>", 0.25, "starts only, after white space"),
    ("Sure! <think>a</think><answer>1</answer>", 0.25, "ends only: text before"),
    ("<answer>1</answer>", 0.25, "ends only: no think block"),
    ("x </answer>\n", 0.25, "ends only, before white space"),
    ("just text 42", 0.0, "neither"),
    ("", 0.0, "empty completion"),
    ("  \n ", 0.0, "white space only"),
    ("<answer>1</answer> done", 0.0, "neither: tags inside, text at both ends"),
    ("<THINK>a</THINK><ANSWER>1</ANSWER>", 0.0, "neither: tags are case-sensitive"),
    ("<think >a</think><answer>1</answer >", 0.0, "neither: malformed tags"),
]


@pytest.mark.parametrize("completion, expected, why", GRADED_CASES, ids=[c[2] for c in GRADED_CASES])
def test_graded_format_reward_table(completion, expected, why):
    assert graded_format_reward([completion]) == [expected]
    assert graded_format_reward([[{"role": "assistant", "content": completion}]]) == [expected]
    assert format_reward([completion]) == [float(expected == 1.0)]  # 1 exactly where the binary reward is 1


def test_graded_agrees_with_binary_where_the_format_is_full():
    for completion, binary, _ in FORMAT_CASES:
        graded = graded_format_reward([completion])[0]
        assert (graded == 1.0) == (binary == 1.0) and graded in (0.0, 0.25, 0.5, 1.0)


def test_both_kinds_keep_trls_metric_name():
    assert list(FORMAT_REWARDS) == ["graded", "binary"]  # the first is the recipe default
    assert FORMAT_REWARDS["graded"] is graded_format_reward and FORMAT_REWARDS["binary"] is format_reward
    assert {f.__name__ for f in FORMAT_REWARDS.values()} == {"format_reward"}  # rewards/format_reward/mean
    assert pickle.loads(pickle.dumps(graded_format_reward)) is graded_format_reward


def test_graded_format_reward_refuses_a_bare_string():
    with pytest.raises(TypeError, match="completions must be a list"):
        graded_format_reward("<think>a</think><answer>1</answer>")


def test_recipe_key_format_reward_selects_the_kind():
    from sapo_core.config import ScriptArguments
    from sapo_core.recipe import parse_args

    assert typing.get_args(typing.get_type_hints(ScriptArguments)["format_reward"]) == tuple(FORMAT_REWARDS)
    assert parse_args(["--config", str(TINY_RECIPE)]).script.format_reward == "binary"  # measured with it
    assert parse_args(["--config", str(TINY_RECIPE), "--format_reward", "graded"]).script.format_reward == "graded"
    assert ScriptArguments().format_reward == "graded"  # the paper's eq. 10 is the default
