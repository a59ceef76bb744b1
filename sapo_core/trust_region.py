"""Trust-region methods as functions of the ratio r, through the gates' admissibility checker (method §2.8).

For a gate, the gradient of f(r) A is f'(r) r grad log pi A (eq. 4): the weight on grad log pi is r f'(r), and
the checker tests f' (method §2.2). Each method below is written the same way: `log_weight(r)` is its weight on
grad log pi per unit advantage, phi(r), and its f' is phi(r) / r, the slope of the surrogate it differentiates
like (for a stop-gradient weight sg(phi(r)) log pi, d/d theta = phi(r) grad log pi = (phi(r) / r) grad r). So
f' is what the checker tests, at tau = 1 (z = r - 1), and the two readings of (iv) are f' -> 0 and
r f'(r) = phi(r) -> 0 as r -> infinity. A method's weight can depend on the sign of A: each sign is one row.

r <= 0 is not a ratio; the checker's grids reach z = -40, so f' there is continued by its value at r = R_FLOOR.

`method_phi` is each method's phi(r) for any parameters (its spec, sapo_core.methods.METHODS), for the table here and
for the loss's gate-weight and EUR metrics (sapo_core.loss), so that f' = phi(r) / r means the same in both.

    .venv/bin/python -m sapo_core.trust_region docs/method.md      # rewrite the table of method §2.8
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sapo_core import admissibility, quadrature
from sapo_core import gates as G
from sapo_core.cli import ArgumentParser, guarded
from sapo_core.paths import write_atomic

__all__ = ["METHODS", "PROPERTY_COLUMNS", "R_FLOOR", "Method", "main", "method_phi", "method_rows", "vespo_phi",
           "method_table_markdown", "verdicts_markdown", "with_table"]

R_FLOOR = 1e-3
WeightFn = Callable[[torch.Tensor], torch.Tensor]
EPS = 0.2           # GRPO's epsilon (TRL's default), both sides
DELTA = G.METHODS["delta"].defaults["delta"]        # two-sided clipping's bound on r for A < 0 (INTELLECT-2's value)
CISPO_MAX = G.METHODS["cispo"].defaults["eps_max"]  # TRL's epsilon_high for loss_type="cispo", a bound on r itself
_V = G.METHODS["vespo"].defaults                    # TRL 1.16's vespo_k/lambda_pos and _neg defaults
VESPO = {"A > 0": (_V["k_pos"], _V["lambda_pos"]), "A < 0": (_V["k_neg"], _V["lambda_neg"])}  # (k, lambda)


def method_phi(spec: str, r: torch.Tensor, sign: torch.Tensor, epsilon_low: float = EPS,
               epsilon_high: float = EPS) -> torch.Tensor:
    """method §2.8: the weight phi(r) on grad log pi per unit advantage of the method `spec` names (a
    sapo_core.methods.METHODS spec), at ratios r (for VESPO the sequence ratio w) and advantage signs `sign`."""
    parsed = G.parse_spec(spec)
    if parsed.kind != "method":
        raise ValueError(f"{spec!r} is not a trust-region method; methods: {', '.join(G.METHODS)}")
    name, p = parsed.parts["method"], parsed.parts["params"]
    pos = sign > 0  # A = 0 takes the A < 0 side, as in min(r A, clip(r) A) (method §7.4); VESPO: A >= 0 (TRL)
    inside = torch.where(pos, r <= 1 + epsilon_high, r >= 1 - epsilon_low)  # clipping's trust region (§2.4)
    if name == "clip":
        return _step(inside, r)
    if name == "delta":  # the ratio clamped at delta: no gradient above it (binds for A < 0 only)
        return _step(inside & (r <= p["delta"]), r)
    if name == "cispo":
        return r.clamp(max=p["eps_max"])
    if name == "ce_gppo":  # outside the trust region: beta2 (1 + eps_high) for A > 0, beta1 (1 - eps_low) for A < 0
        outside = torch.where(pos, r.new_tensor(p["beta2"] * (1 + epsilon_high)), p["beta1"] * (1 - epsilon_low))
        return torch.where(inside, r, outside)
    return vespo_phi(torch.log(r), r, sign >= 0, p)


def vespo_phi(log_w: torch.Tensor, w: torch.Tensor, nonneg: torch.Tensor, params: dict) -> torch.Tensor:
    """VESPO's weight e^lambda w^k e^(-lambda w) = exp(lambda + k log w - lambda w), phi(1) = 1, with (k, lambda) of
    A >= 0 where `nonneg`, else of A < 0 (TRL 1.16's vespo)."""
    k = torch.where(nonneg, w.new_tensor(params["k_pos"]), params["k_neg"])
    lam = torch.where(nonneg, w.new_tensor(params["lambda_pos"]), params["lambda_neg"])
    return torch.exp(lam + k * log_w - lam * w)


@dataclass(frozen=True)
class Method:
    """One row: a method at one advantage sign, its weight phi(r) on grad log pi (per unit A) and that as text."""

    name: str
    sign: str
    phi_text: str
    phi: WeightFn

    def f_prime(self, z: torch.Tensor) -> torch.Tensor:
        """f'(r) = phi(r) / r at r = 1 + z (tau = 1), continued as f'(R_FLOOR) below R_FLOOR."""
        r = (1.0 + z).clamp(min=R_FLOOR)
        return self.phi(r) / r


def _step(condition: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, r, torch.zeros_like(r))


def _phi(spec: str, sign: float) -> WeightFn:
    """method_phi of `spec` at one advantage sign and eps = EPS, as a function of r."""
    return lambda r: method_phi(spec, r, torch.full_like(r, sign))


METHODS = (
    Method("clip (GRPO/PPO)", "A > 0", f"r if r <= 1 + eps else 0 (eps = {EPS:g})", _phi("clip", 1.0)),
    Method("clip (GRPO/PPO)", "A < 0", f"r if r >= 1 - eps else 0 (eps = {EPS:g})", _phi("clip", -1.0)),
    Method("two-sided clip (TRL delta)", "A > 0", f"as clip: r if r <= 1 + eps else 0 (eps = {EPS:g})",
           _phi("delta", 1.0)),
    Method("two-sided clip (TRL delta)", "A < 0", f"r if 1 - eps <= r <= delta else 0 (delta = {DELTA:g})",
           _phi("delta", -1.0)),
    Method("CISPO", "both", f"sg(min(r, r_max)) (r_max = {CISPO_MAX:g})", _phi("cispo", 1.0)),
    Method("CE-GPPO (beta1 = beta2 = 1)", "A > 0", "r if r <= 1 + eps else beta2 (1 + eps)",
           _phi("ce_gppo:beta1=1,beta2=1", 1.0)),
    Method("CE-GPPO (beta1 = beta2 = 1)", "A < 0", "r if r >= 1 - eps else beta1 (1 - eps)",
           _phi("ce_gppo:beta1=1,beta2=1", -1.0)),
    Method("CE-GPPO (beta1 = 0.5, beta2 = 1)", "A < 0", "r if r >= 1 - eps else beta1 (1 - eps)",
           _phi("ce_gppo:beta1=0.5,beta2=1", -1.0)),
    *(Method("VESPO (TRL 1.16 defaults)", label, f"sg(e^lambda w^k e^(-lambda w)), k = {k:g}, lambda = {lam:g}",
             _phi("vespo", sign)) for (label, (k, lam)), sign in zip(VESPO.items(), (1.0, -1.0))),
)
GATES = ("sigmoid", "erf", "arctan", "softsign")
PROPERTY_COLUMNS = ("(i)", "(ii)", "(iii)", *admissibility.READINGS_IV)


def _row(name: str, sign: str, phi_text: str, g: WeightFn, g_prime: WeightFn) -> dict:
    results = admissibility.check(name, g, g_prime).results
    results = {prop: results[prop] for prop in ("(i)", "(ii)", "(iii)")} | admissibility.readings_iv(g_prime)
    return {"method": name, "sign": sign, "weight": phi_text,
            **{prop: ok for prop, (ok, _) in results.items()},
            "evidence": {prop: evidence for prop, (_, evidence) in results.items()}}


def method_rows() -> list[dict]:
    """One row per method and sign, then the paper's gates (tau = 1): pass/fail per property and its evidence."""
    rows = [_row(m.name, m.sign, m.phi_text, quadrature.integral_of(m.f_prime), m.f_prime) for m in METHODS]
    for name in GATES:
        gate = G.get_gate(name)
        rows.append(_row(f"{name} gate", "both", f"r g'(r - 1), g'(z) = {gate.g_prime_text}", gate.g, gate.g_prime))
    return rows


def method_table_markdown(rows: list[dict] | None = None) -> str:
    """The rows as the markdown table of docs/method.md §2.8, then the evidence of every failure."""
    rows = method_rows() if rows is None else rows
    mark = {True: "pass", False: "**FAIL**"}
    lines = ["| method | A | weight on grad log pi, phi(r) | " + " | ".join(PROPERTY_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(PROPERTY_COLUMNS)]
    lines += [f"| {row['method']} | {row['sign']} | `{row['weight']}` | "
              + " | ".join(mark[row[prop]] for prop in PROPERTY_COLUMNS) + " |" for row in rows]
    lines += ["", "Evidence of each failure (z = r - 1, g'(z) = f'(1 + z)):", ""]
    lines += [f"- {row['method']}, {row['sign']}, {prop}: {row['evidence'][prop]}"
              for row in rows for prop in PROPERTY_COLUMNS if not row[prop]]
    return "\n".join(lines)



def verdicts_markdown(rows: list[dict] | None = None) -> str:
    """The trust-region methods' rows of the table, one per method, "A > 0 / A < 0" where the signs differ, without
    the evidence (README's "Gate study" section; the gates, which pass every property, are left out)."""
    rows = method_rows() if rows is None else rows
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        if row["method"] in {m.name for m in METHODS}:
            by_method.setdefault(row["method"], []).append(row)
    mark = {True: "pass", False: "**fail**"}
    lines = ["| method | " + " | ".join(PROPERTY_COLUMNS) + " |", "|---|" + "---|" * len(PROPERTY_COLUMNS)]
    for name, signed in by_method.items():
        cells = [" / ".join(mark[r[prop]] for r in signed) if len({r[prop] for r in signed}) > 1
                 else mark[signed[0][prop]] for prop in PROPERTY_COLUMNS]
        signs = " / ".join(r["sign"] for r in signed)
        lines.append(f"| {name} ({signs}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


START, END = "<!-- method-table:start -->", "<!-- method-table:end -->"


def with_table(text: str, table: str) -> str:
    """`text` (docs/method.md) with `table` between its START and END markers."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the text must hold one {START} ... {END} block")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


@guarded(OSError, ValueError)
def main(argv: list[str] | None = None) -> int:
    """`python -m sapo_core.trust_region [docs/method.md]`: print the table, or write it into that file;
    `python -m sapo_core.trust_region --verdicts README.md`: the methods' verdicts alone (README)."""
    parser = ArgumentParser(prog="python -m sapo_core.trust_region", description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", action="store_true", help="the methods' verdicts alone (README's table)")
    parser.add_argument("path", nargs="?", type=Path, help="a file whose generated table is replaced (else: print)")
    args = parser.parse_args(argv)
    table = verdicts_markdown() if args.verdicts else method_table_markdown()
    if args.path is None:
        print(table)
        return 0
    text = args.path.read_text(encoding="utf-8")
    write_atomic(args.path, with_table(text, table))
    print(f"wrote the method table into {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
