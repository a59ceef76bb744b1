"""Where things live (the repository, figures, run directories) and how files are written there."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["REPO_ROOT", "UnreadableFileError", "figures_dir", "read_json", "runs_dir", "writable_dir", "write_atomic",
           "write_json"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class UnreadableFileError(ValueError):
    """A file this project wrote (a JSON record) is missing, unreadable or not what it should hold."""


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """`path` as a directory this process can write into, created if missing; a named OSError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a directory; move it away or choose another")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a parent that is a file, no permission, a read-only disk
        raise type(err)(f"{what} {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path} is not writable by this user; choose another")
    return path


def figures_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """`out_dir` if given, else $SAPO_FIGURES_DIR, else <repo>/figures; created if missing."""
    return writable_dir(out_dir or os.environ.get("SAPO_FIGURES_DIR") or REPO_ROOT / "figures", "figure directory")


def runs_dir(out_dir: str | os.PathLike | None = None) -> Path:
    """`out_dir` if given, else $SAPO_RUNS_DIR, else <repo>/runs (git-ignored); created if missing."""
    return writable_dir(out_dir or os.environ.get("SAPO_RUNS_DIR") or REPO_ROOT / "runs", "runs directory")


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


def read_json(path: str | os.PathLike, what: str) -> dict:
    """The JSON object in `path` (`what` names it in errors); UnreadableFileError if missing, damaged or no object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableFileError(f"{path} ({what}) does not exist") from None
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        raise UnreadableFileError(f"{path} ({what}) cannot be read: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict):
        raise UnreadableFileError(f"{path} ({what}) must hold a JSON object (a mapping), got {type(data).__name__}")
    return data


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as indented JSON to `path` atomically (write_atomic); values JSON lacks are written as str."""
    return write_atomic(path, json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
