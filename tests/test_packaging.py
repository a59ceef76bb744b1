"""environment.yml (GPU users), pyproject.toml and the lock file must agree on the key pins."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEY = ("torch", "transformers", "trl", "vllm")


def _pins(lines):
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+).*", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return _pins(lines)


def _environment_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _pins(pip_section)


def test_environment_yml_agrees_with_pyproject_on_key_pins():
    pyproject, environment = _pyproject_pins(), _environment_pins()
    for name in KEY:
        assert name in pyproject, f"pyproject.toml does not pin {name} exactly"
        assert environment.get(name) == pyproject[name], (
            f"{name}: environment.yml pins {environment.get(name)}, pyproject.toml pins {pyproject[name]}")


def test_lock_file_agrees_with_pyproject():
    lock = _pins((ROOT / "requirements" / "lock.txt").read_text().splitlines())
    pyproject = _pyproject_pins()
    assert lock["torch"] == "2.13.0", "the lock file must pin the CPU-installable torch==2.13.0"
    for name, version in pyproject.items():
        if name in lock:
            assert lock[name] == version, f"{name}: lock.txt pins {lock[name]}, pyproject.toml pins {version}"


def test_environment_installs_this_package_with_gpu_and_notebook_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    editable = [p for p in pip_section if p.startswith("-e .")]
    assert editable and "gpu" in editable[0] and "notebooks" in editable[0]
