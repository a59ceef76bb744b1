"""Where things live (the repository, figures, run directories) and how files are written there."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "figures_dir", "runs_dir", "write_atomic"]

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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)
    return path
