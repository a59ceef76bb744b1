"""Seeds that vary everywhere (method §7.8): `seed` reaches the colocated vLLM engine (with the process index),
`data_seed` fixes the prompt order of TRL's sampler, and on CPU two seeds sample different completions of the same
prompts while one seed repeats its own."""

from pathlib import Path

import pytest
import trl.generation.vllm_generation as trl_vllm
from transformers import AutoTokenizer
from trl.trainer.utils import RepeatSampler

from sapo_core.recipe import parse_args
from sapo_core.rewards import correctness_reward, format_reward
from sapo_core.train import datasets_for, model_path
from sapo_core.trainer import GatedGRPOTrainer, vllm_engine_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
# one step of 2 prompts x 8 rollouts, short completions (conftest's TINY_RUN_FLAGS budget)
ONE_STEP = ["--max_steps", "1", "--train_size", "32", "--per_device_train_batch_size", "16",
            "--max_completion_length", "24", "--heldout_eval_steps", "0"]


def _run(tmp_path, *extra):
    return parse_args(["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml"), "--run_dir", str(tmp_path / "run"),
                       *ONE_STEP, *extra])


def _trainer(run, reward_funcs=(format_reward, correctness_reward)):
    args = run.training
    args.save_strategy = "no"
    path = model_path(run.script)
    return GatedGRPOTrainer(model=path, reward_funcs=list(reward_funcs), args=args,
                            train_dataset=datasets_for(run.script, args.data_seed),
                            processing_class=AutoTokenizer.from_pretrained(path))


def test_engine_seed_is_seed_times_engines_plus_engine():
    assert [vllm_engine_seed(s, 0, 1, 1) for s in (0, 1, 2)] == [0, 1, 2]  # one process: the seed itself
    # 4 processes, tensor parallel 2: two engines; the ranks of one engine share its seed, no two (seed, engine) meet
    assert [vllm_engine_seed(3, p, 4, 2) for p in range(4)] == [6, 6, 7, 7]
    seeds = {vllm_engine_seed(s, p, 8, 1) for s in range(5) for p in range(8)}
    assert len(seeds) == 40
    with pytest.raises(ValueError, match=r"seed=4294967295 with 2 vLLM engines .* choose seed < 2147483648"):
        vllm_engine_seed(2**32 - 1, 0, 2, 1)


class _FakeLLM:
    """Stands in for vllm.LLM at the name TRL calls (vLLM is not installed here): records its arguments."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        _FakeLLM.made.append(kwargs)


@pytest.mark.parametrize("seed", [0, 5])
def test_the_colocated_vllm_engine_is_seeded_from_seed(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(trl_vllm, "LLM", _FakeLLM, raising=False)
    monkeypatch.setattr(trl_vllm, "is_vllm_available", lambda *a, **k: True)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):  # TRL sets them; put back after
        # setenv first: monkeypatch records nothing for delenv of an absent name, and would leave TRL's value behind
        # (later subprocesses then inherit MASTER_PORT and try to join a process group on it)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    _FakeLLM.made.clear()
    _trainer(_run(tmp_path, "--seed", str(seed), "--use_vllm", "true", "--vllm_mode", "colocate"))
    assert len(_FakeLLM.made) == 1
    assert _FakeLLM.made[0]["seed"] == seed  # TRL 1.16 alone would pass process_index // tp = 0 for every seed
    assert _FakeLLM.made[0]["tensor_parallel_size"] == 1
    assert trl_vllm.LLM is _FakeLLM  # replaced for the constructor only


def test_the_prompt_sampler_follows_data_seed_not_seed(tmp_path):
    samplers = {(seed, data_seed): _trainer(_run(tmp_path, "--seed", str(seed), "--data_seed", str(data_seed)))
                ._get_train_sampler() for seed, data_seed in ((0, 0), (1, 0), (0, 1))}
    for (_, data_seed), sampler in samplers.items():
        assert isinstance(sampler, RepeatSampler) and sampler.seed == data_seed
    orders = {key: list(sampler) for key, sampler in samplers.items()}
    assert orders[(0, 0)] == orders[(1, 0)]  # RL seeds share the prompt order ...
    assert orders[(0, 0)] != orders[(0, 1)]  # ... which data_seed decides


def _first_step(run_dir, seed: int) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of a one-step CPU run with `seed`, in the order they were scored."""
    seen = []

    def recording_reward(completions, prompts, **kwargs):
        seen.extend(zip((p[-1]["content"] for p in prompts), (c[0]["content"] for c in completions)))
        return [0.0] * len(completions)

    run = _run(run_dir, "--seed", str(seed))
    run.training.reward_weights = None
    _trainer(run, reward_funcs=(recording_reward,)).train()
    return seen


@pytest.mark.slow
def test_two_seeds_sample_different_completions_of_the_same_prompts_and_one_seed_repeats(tmp_path):
    first, again, other = (_first_step(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert len(first) == 16 and first == again  # the same seed: identical rollouts
    assert [p for p, _ in other] == [p for p, _ in first]  # another seed: the same prompts (data_seed) ...
    assert [c for _, c in other] != [c for _, c in first]  # ... and other completions
