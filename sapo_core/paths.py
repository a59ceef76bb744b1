"""Where things live: the repository, figures and run directories (one place, no literals elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "figures_dir", "runs_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def figures_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """`out_dir` if given, else $SAPO_FIGURES_DIR, else <repo>/figures; created if missing."""
    path = Path(out_dir or os.environ.get("SAPO_FIGURES_DIR") or REPO_ROOT / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """`out_dir` if given, else $SAPO_RUNS_DIR, else <repo>/runs (git-ignored); created if missing."""
    path = Path(out_dir or os.environ.get("SAPO_RUNS_DIR") or REPO_ROOT / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path
