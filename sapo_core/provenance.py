"""What a result was made with (STYLE §9): the git commit of this checkout and the versions of the packages."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from sapo_core.paths import REPO_ROOT

__all__ = ["git_commit", "package_versions"]


def git_commit() -> dict:
    """{"commit": HEAD's hash, "dirty": whether tracked files differ from it}; None for both outside a checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions(names) -> dict[str, str | None]:
    """Python's version and each named package's installed version (None when it is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
