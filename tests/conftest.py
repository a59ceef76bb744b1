"""Shared fixtures: the benchmark data directory (never copied into the repo), and one real tiny training run per
session for tests that need a finished run directory rather than their own training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transformers import TrainerCallback

REPO_ROOT = Path(__file__).resolve().parents[1]

# The smallest real run of the tiny-cpu recipe: one generation cycle (a generation step and a reuse step) of
# 2 prompts x 8 rollouts, short completions, an 8-problem held-out check at n=2; a few seconds on CPU.
TINY_RUN_FLAGS = ["--max_steps", "2", "--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size", "16",
                  "--max_completion_length", "24", "--save_steps", "2", "--learning_rate", "1e-3", "--heldout_n", "2"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local benchmark data: env SAPO_DATA_DIR, else ../shared/data beside the clone, else skip."""
    env = os.environ.get("SAPO_DATA_DIR")
    if env:
        return Path(env)
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    pytest.skip("no benchmark data directory: set SAPO_DATA_DIR or place ../shared/data beside the clone")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 2-step tiny-cpu run directory (config, provenance, metrics, a checkpoint, final model), trained once
    per session and shared: read it, or copy it (shutil.copytree) before changing anything. Mark users slow."""
    from sapo_core.recipe import parse_args
    from sapo_core.train import train

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    train(parse_args(["--config", str(REPO_ROOT / "configs" / "tiny-cpu.yaml"), "--run_dir", str(run_dir),
                      *TINY_RUN_FLAGS]))
    return run_dir


class CrashAfterStep(TrainerCallback):
    """Simulates a crash right after step `at` is logged (and before any checkpoint of that step)."""

    def __init__(self, at):
        self.at = at

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")
