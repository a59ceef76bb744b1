"""README.md is the front page: its layout block and its commands must name only what exists.

- the layout block (the code block under "## Layout") names every module of sapo_core and only files that exist;
- every command in README's code blocks names an existing module, script, make target and flag.
Flags are checked against each entry point's own `--help` (its `main`, called in this process), so a renamed
flag fails here, not in a reader's terminal.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 250


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def _layout_block(text: str) -> str:
    section = text.split("\n## Layout", 1)
    assert len(section) == 2, "README has no '## Layout' section"
    blocks = _code_blocks(section[1])
    assert blocks, "the Layout section has no code block"
    return blocks[0][1]


def _commands(text: str) -> list[str]:
    """Shell commands of the bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for lang, body in _code_blocks(text):
        if lang not in ("bash", "sh", "shell"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_readme_is_a_front_page():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; the front page keeps to {MAX_LINES} (move detail to docs/)"


def test_layout_names_every_module_and_only_existing_files():
    layout = _layout_block(README.read_text())
    names = set(re.findall(r"[\w./-]+\.(?:py|yaml|ipynb|md|sh|toml|yml)\b|[\w-]+/", layout))
    modules = {p.name for p in (ROOT / "sapo_core").glob("*.py") if p.name != "__init__.py"}
    packages = {p.name + "/" for p in (ROOT / "sapo_core").iterdir() if (p / "__init__.py").exists()}
    missing = sorted(m for m in modules | packages if m not in names)
    assert not missing, f"README's layout block does not name these modules of sapo_core: {missing}"
    # each named file exists somewhere under the repo (names in the block are relative to their directory)
    existing = {p.name for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    existing |= {p.name + "/" for p in ROOT.rglob("*") if p.is_dir() and ".venv" not in p.parts}
    unknown = sorted(n for n in names if n.rstrip("/").split("/")[-1] + ("/" if n.endswith("/") else "")
                     not in existing)
    assert not unknown, f"README's layout block names files that do not exist: {unknown}"


@cache
def _help(module: str, command: str | None = None) -> str:
    """What `python -m module [command] --help` prints, from the module's own `main` in this process."""
    argv = ([command] if command else []) + ["--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = importlib.import_module(module).main(argv)
        except SystemExit as stop:  # argparse's --help
            code = stop.code
    assert code in (0, None), f"python -m {module} {' '.join(argv)} exited {code}"
    return out.getvalue()


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.slow
def test_every_readme_command_names_what_exists():
    problems = []
    targets = _make_targets()
    for cmd in _commands(README.read_text()):
        words = cmd.split()
        if words[0] == "make":
            for t in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                if t not in targets:
                    problems.append(f"{cmd!r}: no make target {t!r}")
            continue
        for path in re.findall(r"(?:benchmarks|tools|configs|notebooks)/[\w./-]+", cmd):
            if not (ROOT / path).exists():
                problems.append(f"{cmd!r}: {path} does not exist")
        module = re.search(r"-m (sapo_core[\w.]*)", cmd)
        if not module:
            continue
        name = module.group(1)
        if not (ROOT / (name.replace(".", "/") + ".py")).exists():
            problems.append(f"{cmd!r}: no module {name}")
            continue
        rest = cmd.split(f"-m {name}", 1)[1].split()
        command = rest[0] if rest and re.fullmatch(r"[a-z]+", rest[0]) else None  # a sub-command (tiny build)
        # batch passes flags it does not know to training: those must be training flags
        helps = _help(name, command) + (_help("sapo_core.train") if name == "sapo_core.batch" else "")
        for flag in re.findall(r"(?<![\w-])--([a-z][\w-]*)", " ".join(rest)):
            if not re.search(rf"--(?:no_)?{re.escape(flag)}\b", helps):
                problems.append(f"{cmd!r}: {name} has no flag --{flag}")
    assert not problems, "\n".join(problems)


def test_the_logged_metrics_table_in_docs_is_the_registry():
    from sapo_core.metrics import markdown_table

    text = (ROOT / "docs" / "usage.md").read_text()
    table = text.split("<!-- metrics:begin -->\n", 1)[1].split("\n<!-- metrics:end -->", 1)[0]
    assert table == markdown_table().rstrip(), "docs/usage.md's metric table differs from sapo_core.metrics: " \
        "paste the output of markdown_table() between its markers"


def test_the_method_verdicts_in_readme_are_the_checkers():
    from sapo_core import trust_region

    text = (ROOT / "README.md").read_text()
    table = text.split(trust_region.START + "\n", 1)[1].split("\n" + trust_region.END, 1)[0]
    assert table == trust_region.verdicts_markdown(), \
        "README's method table differs from the checker: run python -m sapo_core.trust_region --verdicts README.md"
