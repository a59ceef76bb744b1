"""User g'(z) as text: a restricted expression parser, and a worker process with time and memory limits.

A g' is a Python expression in z evaluated with torch only::

    1 / (1 + z**2) ** 2        torch.exp(-z.abs())        torch.special.erfc(z.abs())

`parse_gprime` checks its syntax tree and refuses it unless it uses only numbers, arithmetic and comparisons,
the name z, and torch's operations on tensors (`torch.<op>`, `torch.special.<op>`, `torch.nn.functional.<op>`,
tensor methods of the same names, the constants torch.pi/e/inf/nan); no builtins, no strings, nothing private
or in-place (no `out=` either), and no constant arithmetic that overflows a float (`10**10**9`). A checked text
is then run first in a worker process with a time and a memory limit (`LimitedEvaluator`); only a text that
finished there is evaluated in the caller's process. The gate explorer (`sapo_core.explore`) and gate specs
(`sapo_core.gates.resolve_spec`, method §2.6) both use it.
"""

from __future__ import annotations

import ast
import logging
import math
import multiprocessing
import operator
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

import pebble
import torch
from torch.overrides import get_overridable_functions

__all__ = ["ALLOWED", "EXAMPLE", "LimitedEvaluator", "canonical_text", "compile_gprime", "parse_gprime"]

logger = logging.getLogger(__name__)

MAX_TEXT = 300                # characters of a user g'
DEFAULT_TIMEOUT_S = 5.0       # time limit of one user g' in the worker (its whole admissibility check)
DEFAULT_MEMORY_MB = 1024      # memory the worker may allocate beyond what it holds after start-up
STARTUP_TIMEOUT_S = 120.0     # a worker that has not started a task by then is a set-up error
EXAMPLE = "1 / (1 + z**2) ** 2"


# ---------------------------------------------------------------------------------------------
# User g'(z): parse, check the names, compile.
# ---------------------------------------------------------------------------------------------

def _ops(namespace, kinds) -> set[str]:
    """Public, not in-place names in `namespace` that are torch operations on tensors (listed in `kinds`)."""
    ops = {id(f) for kind in kinds for f in _OVERRIDABLE.get(kind, [])}  # functions, compared by identity
    return {name for name in dir(namespace) if not name.startswith("_") and not name.endswith("_")
            and id(getattr(namespace, name)) in ops}


_OVERRIDABLE = get_overridable_functions()  # torch's operations on tensors, by namespace (no factories, no I/O)
_TORCH_OPS = _ops(torch, [torch, torch.functional])
_ALLOWED_PATHS = ({f"torch.{name}" for name in _TORCH_OPS}
                  | {f"torch.special.{name}" for name in _ops(torch.special, [torch.special])}
                  | {f"torch.nn.functional.{name}" for name in _ops(torch.nn.functional, [torch.nn.functional])
                     | {"sigmoid", "tanh", "hardsigmoid", "hardswish"}}  # plain wrappers torch does not list
                  | {"torch.pi", "torch.e", "torch.inf", "torch.nan"})
_NAMESPACES = {"torch", "torch.special", "torch.nn", "torch.nn.functional"}
_TENSOR_METHODS = {name for name in _TORCH_OPS if hasattr(torch.Tensor, name)}
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.keyword, ast.Attribute, ast.Name,
          ast.Constant, ast.Load, ast.operator, ast.unaryop, ast.cmpop)
_CONSTANT_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                 ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
                 ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
ALLOWED = ("numbers, + - * / // % **, comparisons, z, and torch operations on tensors: torch.<op>, "
           "torch.special.<op>, torch.nn.functional.<op>, tensor methods such as z.abs(), torch.pi/e/inf/nan")


def _dotted(node: ast.AST) -> str | None:
    """'torch.special.erf' for an attribute chain rooted at the name torch, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "torch":
        return ".".join(["torch", *reversed(parts)])
    return None


def parse_gprime(text: str) -> ast.Expression:
    """The checked syntax tree of a user g'(z); ValueError naming what is not allowed."""
    if not isinstance(text, str):
        raise TypeError(f"g'(z) must be given as text, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"g'(z) is empty: type an expression in z, e.g. {EXAMPLE}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"g'(z) is {len(text)} characters long; at most {MAX_TEXT} are allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"syntax error at column {err.offset}: {err.msg}") from None
    other = next((node for node in ast.walk(tree) if not isinstance(node, _NODES)), None)
    if other is not None:
        raise ValueError(f"{type(other).__name__} {ast.unparse(other)!r} is not allowed in g'(z); allowed: {ALLOWED}")
    names = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - {"z", "torch"})
    if names:
        raise ValueError(f"name {names[0]!r} is not allowed: g'(z) may use only z and torch")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and (isinstance(node.value, (str, bytes, complex)) or node.value is ...):
            raise ValueError(f"constant {node.value!r} is not allowed: g'(z) takes real numbers only")
        if isinstance(node, ast.keyword) and node.arg is None:
            raise ValueError("**keyword unpacking is not allowed in g'(z)")
        if isinstance(node, ast.keyword) and node.arg == "out":
            raise ValueError("out= is not allowed in g'(z): it would write into its argument")
        if isinstance(node, ast.Attribute):
            path = _dotted(node)
            if node.attr.startswith("_"):
                raise ValueError(f"attribute {node.attr!r} is not allowed: nothing private or dunder in g'(z)")
            if path is None and node.attr not in _TENSOR_METHODS:
                what = "an in-place operation" if node.attr.endswith("_") else "not a torch operation on tensors"
                raise ValueError(f"method .{node.attr}() is {what}; allowed: {ALLOWED}")
            if path is not None and path not in _ALLOWED_PATHS and path not in _NAMESPACES:
                raise ValueError(f"{path} is not a torch operation on tensors; allowed: {ALLOWED}")
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            raise ValueError("@ (matrix product) is not allowed in g'(z): g' acts on each z separately")
    _check_constants(tree.body)
    # torch and its namespaces only as the head of an allowed chain: torch.special alone is no value
    parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        path = _dotted(node)
        if path in _NAMESPACES and not isinstance(parents.get(id(node)), ast.Attribute):
            raise ValueError(f"{path} by itself is not a value; use a torch operation such as torch.exp(z)")
    return tree


def _check_constants(node: ast.AST) -> float | None:
    """The float value of a constant-only subtree (None if it holds z or a call); ValueError when constant
    arithmetic overflows or divides by zero, so that `10**10**9` is refused before anything runs."""
    if isinstance(node, ast.Constant):
        return float(node.value) if isinstance(node.value, (int, float)) and not isinstance(node.value, bool) else None
    if isinstance(node, ast.UnaryOp):
        operands = [node.operand]
    elif isinstance(node, ast.BinOp):
        operands = [node.left, node.right]
    else:
        for child in ast.iter_child_nodes(node):
            _check_constants(child)
        return None
    values = [_check_constants(operand) for operand in operands]
    if None in values or type(node.op) not in _CONSTANT_OPS:
        return None
    try:
        value = _CONSTANT_OPS[type(node.op)](*values)
    except (OverflowError, ZeroDivisionError) as err:
        raise ValueError(f"constant {ast.unparse(node)!r} cannot be computed ({err}): g'(z) takes finite numbers "
                         "only") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise ValueError(f"constant {ast.unparse(node)!r} is {value!r}, not a finite real number")
    return value


def canonical_text(text: str) -> str:
    """The checked g'(z) written one way (ast.unparse): texts that differ only in spacing or brackets agree."""
    return ast.unparse(parse_gprime(text))


def compile_gprime(text: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch function g'(z) from checked user text: one real value per z, in z's dtype (no builtins)."""
    code = compile(parse_gprime(text), "<g'(z)>", "eval")

    def g_prime(z: torch.Tensor) -> torch.Tensor:
        out = eval(code, {"__builtins__": {}}, {"z": z, "torch": torch})  # text checked by parse_gprime
        if not isinstance(out, (int, float, torch.Tensor)):
            raise TypeError(f"g'(z) must give a number or a tensor, got {type(out).__name__}")
        out = torch.as_tensor(out, device=z.device)
        if out.is_complex():
            raise TypeError("g'(z) must be real, got complex values")
        if torch.broadcast_shapes(out.shape, z.shape) != z.shape:
            raise ValueError(f"g'(z) must give one value per z (shape {tuple(z.shape)}), got shape {tuple(out.shape)}")
        return out.to(z.dtype).broadcast_to(z.shape)

    return g_prime


def _start_worker(memory_limit_mb: int) -> None:
    """Pool initializer: one torch thread, and at most `memory_limit_mb` more address space (Linux)."""
    torch.set_num_threads(1)
    try:
        import resource

        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError) as err:
        logger.info("no memory limit for the g' worker on this system (%s)", err)
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + memory_limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


class LimitedEvaluator:
    """Runs `task(text)` for user g' texts in one worker process with a time limit and a memory limit.

    `task` is a module-level function (the worker imports it by name) that returns a dict; a text that runs past
    the limits gives {"problem": what happened}. The worker starts on the first call (a fresh Python with torch:
    seconds) and is replaced when a text runs past the time limit; `close()` stops it."""

    def __init__(self, task: Callable[[str], dict], timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int = DEFAULT_MEMORY_MB):
        if not callable(task):
            raise TypeError(f"task must be a module-level function of the text, got {type(task).__name__}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a finite number > 0, got {timeout_s!r}")
        if not (isinstance(memory_limit_mb, int) and memory_limit_mb >= 64):
            raise ValueError(f"memory_limit_mb must be an int >= 64, got {memory_limit_mb!r}")
        self.task = task
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = memory_limit_mb
        self._pool: pebble.ProcessPool | None = None

    def __call__(self, text: str) -> dict:
        """task(text) as computed in the worker, or {"problem": message} when it ran past the limits."""
        if self._pool is None:
            self._pool = pebble.ProcessPool(max_workers=1, initializer=_start_worker,
                                            initargs=(self.memory_limit_mb,),
                                            context=multiprocessing.get_context("spawn"))
        future = self._pool.schedule(self.task, args=(text,), timeout=self.timeout_s)
        try:
            return future.result(timeout=STARTUP_TIMEOUT_S + self.timeout_s)
        except TimeoutError:  # pebble killed the worker (the time limit counts from the task's start)
            future.cancel()
            return {"problem": f"g'(z) was stopped: it ran past the time limit of {self.timeout_s:g} s "
                               "(huge powers or tensors?)"}
        except pebble.ProcessExpired as err:
            return {"problem": f"g'(z) crashed its worker process (exit code {err.exitcode}); "
                               f"it may need more than {self.memory_limit_mb} MB"}
        except BrokenProcessPool as err:  # the worker could not start: say so, start afresh next time
            self.close()
            return {"problem": f"the worker process that evaluates g'(z) could not start: {err} (a script that gets "
                               "here needs the `if __name__ == '__main__':` guard of multiprocessing's spawn)"}

    def close(self) -> None:
        """Stop the worker process (a later call starts a new one)."""
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None


