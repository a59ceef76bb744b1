"""A gate is a spec everywhere (method §2.6): a name, a family, an import path or a g' expression reaches
train, batch and notebook 02's parameters; bad or inadmissible specs are refused by name before any run
directory exists, dangerous expressions without running them."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from sapo_core import expressions
from sapo_core import gates as G
from sapo_core.batch import BatchArguments, BatchError, plan
from sapo_core.config import ConfigError
from sapo_core.paths import REPO_ROOT
from sapo_core.recipe import notebook_args, parse_args
from sapo_core.train import provenance

TINY = "configs/tiny-cpu.yaml"
EXPR = "1/(1+z**2)**2"  # one expression throughout: it is checked in a worker once per process
MODULE = "user_gates_for_spec_tests"


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """A module on sys.path with a Gate, a g' function, an inadmissible g' and a non-gate."""
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent("""
        from sapo_core.gates import make_gate

        def cauchy2(z):
            return 1 / (1 + z**2) ** 2

        def slow(z):
            return 1 / (1 + z.abs())

        CAUCHY2 = make_gate("cauchy2", cauchy2)
        NOT_A_GATE = 3
    """))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


SPECS = {  # spec -> (kind, slug)
    "erf": ("name", "erf"),
    "student_t:nu=3": ("family", "student_t-nu3"),
    f"{MODULE}:cauchy2": ("import", f"{MODULE}-cauchy2"),
    f"{MODULE}:CAUCHY2": ("import", f"{MODULE}-CAUCHY2"),
    EXPR: ("expression", None),
}


@pytest.mark.parametrize("spec", SPECS)
def test_each_spec_form_parses_to_its_kind_and_a_safe_slug(spec):
    kind, slug = SPECS[spec]
    assert G.parse_spec(spec).kind == kind
    got = G.spec_slug(spec)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", got)
    assert got == slug if slug else re.fullmatch(r"expr-[0-9a-f]{10}", got)


def test_specs_written_differently_agree_and_different_ones_do_not():
    assert G.parse_spec("student_t:nu=3.0").text == G.parse_spec(" student_t:nu=3 ").text == "student_t:nu=3"
    assert G.spec_slug(EXPR) == G.spec_slug(" 1 / (1 + z ** 2) ** 2 ")
    assert G.spec_slug(EXPR) != G.spec_slug("1/(1+z**2)**3")
    assert G.spec_slug("student_t:nu=2.5") == "student_t-nu2.5"
    assert G.parse_spec("clip").kind == "method" and G.spec_slug("clip") == "clip"  # method §2.8


@pytest.mark.parametrize("spec", SPECS)
def test_each_spec_resolves_to_its_gate(user_module, spec):
    gate = G.resolve_spec(spec)
    z = torch.linspace(-6, 6, 121, dtype=torch.float64)
    expected = {"erf": torch.exp(-z**2 / 2), "student_t:nu=3": (1 + z**2 / 3) ** -2}.get(spec, 1 / (1 + z**2) ** 2)
    torch.testing.assert_close(gate.g_prime(z), expected)
    assert G.get_gate(spec) is gate  # get_gate takes every spec, and a process builds each gate once
    described = G.describe(spec)
    assert described["spec"] == G.parse_spec(spec).text and described["g_prime"].strip()


def test_a_function_spec_records_its_source_and_an_expression_its_text(user_module):
    assert "return 1 / (1 + z**2) ** 2" in G.describe(f"{MODULE}:cauchy2")["g_prime"]
    assert G.describe(EXPR)["g_prime"] == "1 / (1 + z ** 2) ** 2"


def test_clip_stays_hard_clipping_and_is_not_a_gate():
    with pytest.raises(ValueError, match="'clip' is hard clipping"):
        G.resolve_spec("clip")
    assert G.describe("clip", epsilon_low=0.2, epsilon_high=0.2)["name"] == "clip"
    assert parse_args(["--config", TINY, "--gate", "clip"]).training.gate == "clip"


@pytest.mark.parametrize("spec, message", [
    ("tanh", "unknown gate 'tanh'; available gates: .*; or a spec"),
    ("student_t:mu=3", "parameter 'mu' is unknown"),
    ("student_t:nu=abc", "nu='abc' is not a number"),
    ("student_t:nu=-1", "student_t needs a finite nu > 0"),
    ("gamma:k=2", "unknown family 'gamma'"),
    ("no_such_module_x:g", "cannot be imported .*importable in every process"),
    (f"{MODULE}:missing", "has no attribute 'missing'"),
    (f"{MODULE}:NOT_A_GATE", "names a int; it must name a Gate or a g' function"),
    ("", "must be non-empty"),
])
def test_a_bad_spec_is_refused_naming_what_is_wrong(user_module, spec, message):
    with pytest.raises(ValueError, match=message):
        G.resolve_spec(spec)


@pytest.mark.parametrize("spec, message", [
    ("__import__('os').system('true')", "name '__import__' is not allowed"),
    ("z.__class__", "attribute '__class__' is not allowed"),
    ("torch.load('x')", "constant 'x' is not allowed|torch.load is not a torch operation"),
    ("10**10**9", "constant '10 \\*\\* 10 \\*\\* 9' cannot be computed"),
    ("z @ z", "@ \\(matrix product\\) is not allowed"),
    ("(lambda: 1)()", "Lambda .* is not allowed"),
])
def test_a_dangerous_expression_is_refused_without_running_it(monkeypatch, spec, message):
    def never(self, text):
        raise AssertionError(f"the worker ran {text!r}")

    monkeypatch.setattr(expressions.LimitedEvaluator, "__call__", never)
    with pytest.raises(ValueError, match=message):
        G.resolve_spec(spec)
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config", TINY, "--gate", spec])


@pytest.mark.slow
@pytest.mark.parametrize("spec, prop", [
    ("1/(1+z.abs())", "\\(iv\\) .*z g'\\(z\\)"),   # f' -> 0 but x f'(x) does not
    ("student_t:nu=0.001", "\\(iv\\)"),
    (f"{MODULE}:slow", "\\(iv\\)"),
    ("2/(1+z**2)", "\\(ii\\) g'\\(0\\) = 2"),
])
def test_an_inadmissible_spec_is_refused_by_property_before_any_run_directory(user_module, tmp_path, spec, prop):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"gate=.*not admissible: {prop}"):
        parse_args(["--config", TINY, "--gate", spec, "--run_dir", str(run_dir)])
    with pytest.raises(BatchError):
        plan_or_check(spec, tmp_path / "batch")
    assert not run_dir.exists() and not (tmp_path / "batch").exists()


def plan_or_check(spec, out):
    """batch's own check of every arm before its directory exists (run_batch), as a BatchError."""
    from sapo_core.batch import run_batch

    try:
        run_batch(BatchArguments(config=TINY, out=str(out), gates=spec, seeds="0"))
    except ConfigError as err:
        raise BatchError(str(err)) from None


@pytest.mark.parametrize("spec", SPECS)
def test_each_spec_reaches_train_its_run_dir_and_provenance(user_module, spec):
    run = parse_args(["--config", TINY, "--gate", spec, "--seed", "0"])
    assert run.run_dir.name == f"{G.spec_slug(spec)}-equal-seed0"
    assert run.recipe["gate"] == spec  # config.yaml records the spec as given
    assert run.training.gate_taus() == (1.0, 1.05)
    record = provenance(run)
    assert record["gate"] == spec and record["gate_formulas"]["spec"] == G.parse_spec(spec).text
    json.dumps(record)  # provenance.json holds plain text and numbers


@pytest.mark.parametrize("spec", SPECS)
def test_each_spec_reaches_notebook_02s_parameters(user_module, spec):
    argv = notebook_args(TINY, spec, 1, ["--max_steps", "2"])
    assert argv[argv.index("--gate") + 1] == spec
    run_dir = Path(argv[argv.index("--run_dir") + 1])
    assert run_dir.name.startswith(f"{G.spec_slug(spec)}-equal-seed1-")


def test_batch_arms_take_every_spec_form_with_either_separator(user_module, tmp_path):
    gates = f"erf;student_t:nu=3@5:6;{MODULE}:cauchy2;{EXPR};torch.clamp(1 - z**2, 0, 1) * 0 + 1/(1 + z**2)"
    names = [s.name for s in plan(BatchArguments(config=TINY, out=str(tmp_path), gates=gates, seeds="0"), [])]
    assert names[:3] == ["erf-equal-seed0", "student_t-nu3-tau5_6-equal-seed0", f"{MODULE}-cauchy2-equal-seed0"]
    assert re.fullmatch(r"expr-[0-9a-f]{10}-equal-seed0", names[3]) and names[3] != names[4]
    commas = plan(BatchArguments(config=TINY, out=str(tmp_path), gates="erf,student_t:nu=3", seeds="0,1"), [])
    assert [s.name for s in commas] == ["erf-equal-seed0", "erf-equal-seed1", "student_t-nu3-equal-seed0",
                                        "student_t-nu3-equal-seed1"]
    with pytest.raises(BatchError, match="names the same run twice"):
        plan(BatchArguments(config=TINY, out=str(tmp_path), gates=f"{EXPR};1 / (1 + z**2) ** 2", seeds="0"), [])


@pytest.mark.slow
def test_a_run_repeats_from_its_config_yaml_in_a_fresh_process(user_module, tmp_path):
    specs = (EXPR, f"{MODULE}:cauchy2", "student_t:nu=3")
    saved = []
    for i, spec in enumerate(specs):
        run = parse_args(["--config", TINY, "--gate", spec, "--max_steps", "3"])
        saved.append(tmp_path / f"config{i}.yaml")
        saved[-1].write_text(yaml.safe_dump(run.recipe, sort_keys=False))
    code = ("import sys; from sapo_core.recipe import parse_args; from sapo_core import gates as G\n"
            "for path in sys.argv[1:]:\n"
            "    gate = parse_args(['--config', path, '--run_dir', 'x']).training.gate\n"
            "    print(repr((gate, G.describe(gate)['g_prime'])))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), str(REPO_ROOT)]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, *map(str, saved)], capture_output=True, text=True, env=env,
                         cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [repr((spec, G.describe(spec)["g_prime"])) for spec in specs]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the import-path form without its module
    out = subprocess.run([sys.executable, "-m", "sapo_core.train", "--config", str(saved[1]), "--dry_run"],
                         capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 2 and "importable in every process" in out.stderr


@pytest.mark.slow
def test_an_expression_spec_trains_two_steps_and_records_its_text(tmp_path):
    from sapo_core.train import train

    run = parse_args(["--config", TINY, "--gate", EXPR, "--run_dir", str(tmp_path / "run"), "--max_steps", "2",
                      "--train_size", "32", "--eval_size", "8", "--per_device_train_batch_size", "16",
                      "--max_completion_length", "24", "--save_steps", "2", "--heldout_n", "2"])
    train(run)
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["gate"] == EXPR and record["gate_formulas"]["g_prime"] == "1 / (1 + z ** 2) ** 2"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["gate"] == EXPR
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
