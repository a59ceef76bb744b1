"""What every command-line entry point shares: a refusal is one line `error: <message>` on stderr and exit 2."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

__all__ = ["EXIT_USAGE", "ArgumentParser", "fail", "guarded"]

EXIT_USAGE = 2  # argparse's status for a usage error; every refusal of this project's commands uses it


def fail(message: str) -> int:
    """Print `error: <message>` (one line) to stderr; return the exit status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line `error: <message>` and exit 2 (no usage block)."""

    def error(self, message: str):
        """Refuse a bad command line in one line."""
        sys.exit(fail(f"{self.prog}: {message} (see --help)"))


Main = Callable[[Sequence[str] | None], int | None]


def guarded(*errors: type[BaseException]) -> Callable[[Main], Main]:
    """Decorate an entry point `main(argv)` so that the named error types become `fail(str(err))`, exit 2."""
    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int | None:
            try:
                return main(argv)
            except errors as err:
                return fail(str(err) or type(err).__name__)
        return run
    return wrap
