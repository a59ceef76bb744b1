"""Shared fixtures: the benchmark data directory (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
