"""The embedded tiny model: committed checkpoint, tokenizer, chat template, deterministic build."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from sapo_core import tiny
from sapo_core.data import synthetic_arithmetic
from sapo_core.prompts import TAGS, make_prompt

LAYOUT = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)


@pytest.fixture(scope="module")
def checkpoint():
    path = tiny.base_model_path()
    return path, AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_base_model_path_is_a_small_checkpoint():
    path = tiny.base_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < 5_000_000
    info = json.loads((path / tiny.BUILD_INFO).read_text())
    assert info["stop"]["sampled_pass_rate"] >= info["config"]["target_pass_rate"]
    assert 0.0 <= info["greedy_accuracy"] <= 1.0
    # the reported accuracy is the test split's (method §3.3); the fine-tuning saw the train split only
    assert info["greedy_accuracy"] == info["greedy_accuracy_by_split"]["test"]
    assert "split='test'" in info["eval_set"] and "split='train'" in info["sft_set"]


def test_loads_as_float32_qwen2_of_intended_size(checkpoint):
    _, model, tokenizer = checkpoint
    assert model.config.model_type == "qwen2" and model.dtype == torch.float32
    assert 100_000 <= tiny.count_parameters(model) <= 1_000_000
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id


def test_reloaded_tokenizer_encodes_like_the_built_one(checkpoint):
    _, _, reloaded = checkpoint
    built = tiny.build_tokenizer()
    text = "<|user|>Ann has 7 pens.\n  x  <think> 12+30=42 </think> <answer> 42 </answer><|end|> é∑'ll"
    assert reloaded(text)["input_ids"] == built(text)["input_ids"]
    assert reloaded.get_vocab() == built.get_vocab()


def test_character_level_with_tags_as_single_ordinary_tokens(checkpoint):
    _, _, tokenizer = checkpoint
    assert len(tokenizer("Ann has 12 pens.", add_special_tokens=False)["input_ids"]) == len("Ann has 12 pens.")
    for tag in TAGS:
        ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tag not in tokenizer.all_special_tokens
    text = "<think> 88-37=51 </think> <answer> 51 </answer>"
    ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_renders_generation_prompt(checkpoint):
    _, _, tokenizer = checkpoint
    prompt = make_prompt("Ann has 3 pens. How many pens does Ann have?")
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|system|>") and text.endswith("<|end|><|assistant|>")
    assert "<|user|>Ann has 3 pens." in text
    enc = tokenizer.apply_chat_template([prompt, prompt], tokenize=True, add_generation_prompt=True,
                                        return_dict=True)
    assert enc["input_ids"][0] == tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "hi"}], tokenize=False)
    assert full == text + "hi" + tokenizer.eos_token  # eos closes the assistant turn
    with pytest.raises(Exception, match="unsupported role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_greedy_completions_have_layout_and_stop_at_eos(checkpoint):
    _, model, tokenizer = checkpoint
    rows = synthetic_arithmetic(8, seed=123, split="test")
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in rows["prompt"]]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=64, do_sample=False)[:, enc["input_ids"].shape[1]:]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    stopped = [eos in row.tolist() and all(t == pad for t in row.tolist()[row.tolist().index(eos) + 1:])
               for row in out]
    assert sum(stopped) >= 6 and out.shape[1] < 64
    completions = tiny.generate_completions(model, tokenizer, rows["prompt"], temperature=0.0)
    assert completions == tokenizer.batch_decode(out, skip_special_tokens=True)
    assert sum(bool(LAYOUT.fullmatch(c)) for c in completions) >= 6


def test_answer_checking():
    assert tiny.extract_answer("<think> 1+2=3 </think> <answer> 3 </answer>") == "3"
    assert tiny.extract_answer("<answer>\n 12\n</answer>") == "12"  # (sapo_core.rewards.extract_answer)
    assert tiny.extract_answer("<think> 3 </think> 3") is None
    rate = tiny.pass_rate(["<answer> 3 </answer>", "<answer>4</answer>", "3"], ["3", "3", "3"])
    assert rate == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        tiny.pass_rate([], [])


def test_sampling_is_seeded_and_leaves_global_rng_alone(checkpoint):
    _, model, tokenizer = checkpoint
    prompts = synthetic_arithmetic(4, seed=5, split="test")["prompt"]
    state = torch.get_rng_state()
    a = tiny.generate_completions(model, tokenizer, prompts, max_new_tokens=24, temperature=1.0, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert a == tiny.generate_completions(model, tokenizer, prompts, max_new_tokens=24, temperature=1.0, seed=3)


SMALL = tiny.TinyBuildConfig(seed=7, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=32,
                             n_train=64, batch_size=4, warmup_steps=1, target_pass_rate=0.0, probe_every=3,
                             probe_size=4, max_updates=6, eval_size=4, max_new_tokens=8)


def test_build_is_deterministic(tmp_path):
    a = tiny.build(tmp_path / "a", SMALL, progress=False)
    b = tiny.build(tmp_path / "b", SMALL, progress=False)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    info = json.loads((a / tiny.BUILD_INFO).read_text())
    assert info["stop"]["step"] == 3 and info["config"]["seed"] == 7
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_build_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        tiny.build(tmp_path, SMALL, progress=False)
    assert tiny.main(["build", "--out", str(tmp_path)]) == 2  # one line `error: ...` (sapo_core.cli.fail)
    assert (tmp_path / "keep.txt").exists()


def test_unreached_target_raises(tmp_path):
    cfg = tiny.TinyBuildConfig(**{**SMALL.__dict__, "target_pass_rate": 1.0})
    with pytest.raises(RuntimeError, match="never reached"):
        tiny.build(tmp_path / "c", cfg, progress=False)


def test_base_model_path_builds_when_missing(tmp_path, monkeypatch):
    real_build = tiny.build
    monkeypatch.setattr(tiny, "DEFAULT_DIR", tmp_path / "tiny")
    monkeypatch.setattr(tiny, "build", lambda out, force=False: real_build(out, SMALL, force=force, progress=False))
    path = tiny.base_model_path()
    assert path == tmp_path / "tiny" and (path / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # the staging directory was renamed


def test_the_committed_model_was_built_on_the_synthetic_task_every_default_names():
    from sapo_core.config import ScriptArguments
    from sapo_core.data import SyntheticTask

    info = json.loads((tiny.base_model_path() / "build_info.json").read_text())["config"]
    task = SyntheticTask()
    assert (info["task_min_steps"], info["task_max_steps"], info["task_max_operand"]) == (
        task.min_steps, task.max_steps, task.max_operand)
    assert (info["eval_size"], info["eval_seed"]) == (task.size, task.data_seed)
    defaults = ScriptArguments()  # a recipe that leaves the keys out trains the task the tiny model can do
    assert (defaults.eval_size, defaults.synthetic_max_steps, defaults.synthetic_max_operand) == (
        task.size, task.max_steps, task.max_operand)
    built = tiny.TinyBuildConfig()
    assert (built.task_max_steps, built.task_max_operand) == (task.max_steps, task.max_operand)
