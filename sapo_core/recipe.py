"""A run's recipe and flags parsed into a RunConfig (sapo_core.config's dataclasses): TRL's parser, refusing unknown
keys and keys written twice, a flag given twice, and any value its field's type or choices refuse (method §7).

    run = parse_args(["--config", "configs/tiny-cpu.yaml", "--gate", "erf", "--seed", "0"])
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import time
import typing
from pathlib import Path

import torch
import yaml
from trl import TrlParser
from trl.scripts._hf_argparser import string_to_bool  # the converter TrlParser gives boolean fields

from sapo_core.checks import check_bool, check_int, is_real
from sapo_core.config import (
    FROM_RUN_DIR,
    RUN_LOCATION,
    ConfigError,
    GatedGRPOConfig,
    RunConfig,
    ScriptArguments,
    plain_value,
    run_name,
)
from sapo_core.paths import REPO_ROOT, runs_dir

__all__ = ["flag_value", "notebook_args", "parse_args", "print_help", "read_recipe", "recipe_keys_differ"]


class _Parser(TrlParser):
    """TRL's parser for our two dataclasses, whose errors are ConfigErrors instead of exits, and whose config
    file values go through the same type conversion and choices as flags (TrlParser passes them unchecked)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._complete_booleans()

    def _complete_booleans(self) -> None:
        """Every boolean field takes `--x`, `--x true|false`, `--x=false` and `--no_x` (HfArgumentParser gives
        `--no_x` only to fields that default to True, and a bare `--x` only to fields with a bool default)."""
        options = {option for a in self._actions for option in a.option_strings}
        for action in list(self._actions):
            if action.type is not string_to_bool:
                continue
            action.nargs, action.const = "?", True
            negative = f"--no_{action.dest}"
            if negative not in options:
                self.add_argument(negative, f"--no-{action.dest.replace('_', '-')}", action="store_false",
                                  dest=action.dest, default=argparse.SUPPRESS, help=f"same as --{action.dest} false")

    def error(self, message):
        raise ConfigError(message)

    def actions(self) -> dict[str, argparse.Action]:
        """Option actions by field name (a boolean's `--x`, not its `--no_x`, which shares the field)."""
        return {a.dest: a for a in reversed(self._actions) if a.option_strings and a.dest != "help"}

    def option_dests(self) -> dict[str, str]:
        """Field name by option string (a boolean's `--x`, `--no_x` and their dashed spellings all name x)."""
        return {option: a.dest for a in self._actions for option in a.option_strings if a.dest != "help"}

    def convert(self, key: str, value, where: str):
        """A config-file value as the flag's parser would read it."""
        action = self.actions()[key]
        if isinstance(value, dict):
            holder = ScriptArguments if key in ScriptArguments.__dataclass_fields__ else GatedGRPOConfig
            if "dict" not in str(typing.get_type_hints(holder)[key]):  # (the parser rewrites field.type)
                raise ConfigError(f"{key}: {value!r} in {where} is a mapping; a single value is expected")
            return value
        if value is None or action.type is None:
            return value
        if action.type is string_to_bool and not isinstance(value, bool):  # YAML reads true/false as bools
            raise ConfigError(f"{key}: {value!r} in {where} is not true or false")
        if isinstance(value, list):
            if action.nargs not in ("+", "*"):
                raise ConfigError(f"{key}: {value!r} in {where} is a list; a single value is expected")
            return [self.convert_one(key, v, action, where) for v in value]
        if action.nargs in ("+", "*"):
            raise ConfigError(f"{key}: {value!r} in {where} is a single value; a list is expected (e.g. "
                              f"{key}: [{value!r}])")
        return self.convert_one(key, value, action, where)

    @staticmethod
    def convert_one(key, value, action, where):
        try:
            converted = action.type(str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{key}: {value!r} in {where} is not a valid {kind}") from None
        if action.choices is not None and converted not in action.choices:
            raise ConfigError(f"{key}: {value!r} in {where} is not allowed; choose one of "
                              f"{', '.join(map(str, action.choices))}")
        return converted


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice (plain YAML keeps the last silently)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_recipe(path: str | os.PathLike) -> tuple[Path, dict]:
    """The mapping in a recipe file (a path, or a path relative to the repository root)."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} " + ("is a directory" if path.is_dir() else "does not exist"))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if values is None:
        raise ConfigError(f"config file {path} is empty; a recipe is a mapping of key: value")
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value, not a {type(values).__name__}")
    return path, values


def _unknown(keys, known, what: str) -> ConfigError:
    hints = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ConfigError(f"unknown {what} {', '.join(hints)}: not a field of GatedGRPOConfig or ScriptArguments "
                       "(see `python -m sapo_core.train --help`)")


def flag_value(key: str, text: str, where: str = "the command line"):
    """`--KEY TEXT` as the training CLI's parser reads it (the key's type and choices; a list key takes TEXT split at
    spaces); ConfigError for a key that is not a recipe key (or says where a run lives, not what it is) or a bad
    value."""
    parser = _Parser((ScriptArguments, GatedGRPOConfig))
    actions = parser.actions()
    if key in RUN_LOCATION or key in FROM_RUN_DIR:
        raise ConfigError(f"{key} says where or how a run is made, not what it is; it is not a recipe key here")
    if key not in actions:
        raise _unknown([key], [k for k in actions if k not in RUN_LOCATION], "recipe key")
    if not isinstance(text, str):
        raise ConfigError(f"{key}: the value must be text as on the command line, got {type(text).__name__} {text!r}")
    action = actions[key]
    if action.nargs in ("+", "*"):
        return [plain_value(parser.convert_one(key, v, action, where)) for v in text.split()]
    return plain_value(parser.convert_one(key, text, action, where))


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """`--config FILE` (its keys become defaults) and flags -> RunConfig; the run directory resolved."""
    if argv is not None and (isinstance(argv, str) or not isinstance(argv, (list, tuple))
                             or not all(isinstance(a, str) for a in argv)):
        raise ConfigError(f"parse_args takes a list of strings (e.g. ['--gate', 'erf']), got {argv!r}")
    argv = list(argv if argv is not None else [])
    parser = _Parser((ScriptArguments, GatedGRPOConfig))
    actions = parser.actions()
    option_to_dest = parser.option_dests()
    config_path, recipe = None, {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a file")
        path, recipe = read_recipe(argv[i + 1])
        config_path = str(path)
        del argv[i:i + 2]
        if "--config" in argv:
            raise ConfigError("--config given twice")
        if "env" in recipe:
            raise ConfigError(f"config file {path}: 'env' (environment variables) is not supported; set them in "
                              "the shell")
        unknown = [k for k in recipe if k not in actions or k == "output_dir"]
        if unknown:
            raise _unknown(unknown, list(actions), f"key(s) in {path}")
        recipe = {k: parser.convert(k, v, str(path)) for k, v in recipe.items()}
        parser.set_defaults_with_config(**recipe)  # TrlParser: the file's values become the flags' defaults
    given = []
    for token in argv:
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            dest = option_to_dest.get(option)
            if dest is None:
                raise _unknown([option[2:]], list(actions), "flag")
            if dest in given:
                raise ConfigError(f"flag {option} given twice (it sets {dest}, as --{dest} and --no_{dest} do for a "
                                  "boolean)" if actions[dest].type is string_to_bool else f"flag {option} given twice")
            given.append(dest)
    if "output_dir" in given:
        raise ConfigError("--output_dir is set from the run directory (<run_dir>/checkpoints); use --run_dir")
    if "run_name" in given or "run_name" in recipe:
        raise ConfigError("run_name (the trackers' name of the run) is the run directory's name; name the run with "
                          "--run_dir")
    parsed, _ = parser.parse_known_args(args=argv)  # the values as given, before any __post_init__ derives more
    values = {k: plain_value(getattr(parsed, k)) for k in [*recipe, *given] if k not in RUN_LOCATION}
    if parsed.dry_run and "use_cpu" not in given and not torch.cuda.is_available():
        argv = [*argv, "--use_cpu", "true"]  # a dry run plans a bf16 GPU recipe anywhere (transformers refuses bf16
        # on a machine without a GPU unless use_cpu); it trains nothing, and the recipe above is kept as given
    try:
        script, training = parser.parse_args_into_dataclasses(args=argv)
    except ConfigError:
        raise
    except ValueError as err:  # a check in TRL's or transformers' __post_init__
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    if script.run_dir is None:
        name = Path(config_path).stem if config_path else "custom"
        script.run_dir = str(runs_dir() / name / run_name(training.gate, training.tau_convention, training.seed))
    training.output_dir = str(Path(script.run_dir) / "checkpoints")
    training.run_name = Path(script.run_dir).name  # what report_to's trackers call the run (a batch's arm name)
    if script.heldout_eval_steps % training.logging_steps:  # its values join the logged row of their step
        raise ConfigError(f"heldout_eval_steps={script.heldout_eval_steps} must be a multiple of logging_steps="
                          f"{training.logging_steps}: the held-out accuracy is written into that step's logged row")
    return RunConfig(script=script, training=training, recipe=values, config_path=config_path)


def notebook_args(config, gate, seed, flags, run_dir=None, resume=False) -> list[str]:
    """Notebook 02's parameters as the training CLI's arguments, each checked by name first (papermill passes
    whatever YAML gives: a number for the gate, one string for the list of flags). Without `run_dir`, each
    execution gets a new directory: runs/nb02/<run name>-<time>."""
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"config must be a recipe path, got {type(config).__name__} {config!r}")
    if not isinstance(gate, str):
        raise ConfigError(f"gate must be a gate name (a string, e.g. 'erf' or 'clip'), got {type(gate).__name__} "
                          f"{gate!r}")
    try:
        check_int("seed", seed)
        check_bool("resume", resume)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if not (isinstance(flags, (list, tuple)) and all(isinstance(f, str) or is_real(f) for f in flags)):
        raise ConfigError(f"flags must be a list of the CLI's flags and values (e.g. ['--max_steps', '100']), got "
                          f"{type(flags).__name__} {flags!r}")
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        raise ConfigError(f"run_dir must be a path or None, got {type(run_dir).__name__} {run_dir!r}")
    argv = ["--config", str(config), "--gate", gate, "--seed", str(seed), *map(str, flags)]
    if run_dir is None:
        training = parse_args(argv).training
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = runs_dir() / "nb02" / f"{run_name(training.gate, training.tau_convention, training.seed)}-{stamp}"
    return [*argv, "--run_dir", str(run_dir), *(["--resume"] if resume else [])]


def print_help() -> None:
    """Every flag (= recipe key) with its help, as `python -m sapo_core.train --help` shows them."""
    _Parser((ScriptArguments, GatedGRPOConfig), prog="python -m sapo_core.train",
            description="Train a policy with one gate. Flags override the --config file's keys.").print_help()


def recipe_keys_differ(previous: dict, run: RunConfig) -> list[str]:
    """The keys whose value in a run's saved config.yaml differs from this parsed run (resume check)."""
    changed = []
    for key in sorted(previous.keys() | run.recipe.keys()):
        if key in RUN_LOCATION:
            continue
        holder = run.script if key in ScriptArguments.__dataclass_fields__ else run.training
        if not hasattr(holder, key):
            changed.append(key)
            continue
        default = plain_value(_default(holder, key))
        if previous.get(key, default) != run.recipe.get(key, default):
            changed.append(key)
    return changed


def _default(holder, key):
    f = type(holder).__dataclass_fields__[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
