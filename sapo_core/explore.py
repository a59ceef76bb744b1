"""Interactive gate explorer for JupyterLab: pick gates, move tau, type your own g' (method §2).

Notebook 01 calls `gate_explorer(...)`; in a live JupyterLab session (`make lab`) it shows ipywidgets
controls for the gates drawn, tau (log slider), the tau convention, hard clipping's epsilon, the
Student-t nu, the trust-region methods (method §2.8: each ticked one drawn dashed in the weight panel, its
verdicts in a table) and a text box for a user g'(z). Each change redraws the value and weight panels
(`sapo_core.plots.gate_figure`) and the admissibility and half-max tables beside them. Batch runs
(papermill, nbval) skip it: the parameters cell alone drives them. Run it with `make lab`, then open
notebooks/01_gate_properties.ipynb and Run All Cells.

A user g' is a Python expression in z evaluated with torch only (`sapo_core.expressions`: the same
restricted parser as gate specs, method §2.6), e.g. ``1 / (1 + z**2) ** 2``. It runs first in a worker
process with a time and memory limit (`GprimeEvaluator`), where its admissibility is checked; only an
expression that finished there is evaluated in the kernel. So a typo, a name that is not z or torch, a NaN,
or `10**10**9` is reported in the widget, never as a traceback or a frozen kernel.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import logging
import math
import os

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from sapo_core import expressions as X
from sapo_core import gates as G
from sapo_core import plots
from sapo_core import trust_region as TR
from sapo_core.expressions import EXAMPLE, compile_gprime, parse_gprime

__all__ = ["GateExplorer", "GprimeEvaluator", "compile_gprime", "gate_explorer", "in_live_session",
           "method_figure", "parse_gprime"]

logger = logging.getLogger(__name__)


class GprimeEvaluator(X.LimitedEvaluator):
    """Checks user g' texts in a worker with time and memory limits (`sapo_core.expressions`): each call gives
    `gates.expression_report(text)`, {"problem": ...} or {"rows": ...[, "halfmax", "tail" when admissible]}."""

    def __init__(self, timeout_s: float = X.DEFAULT_TIMEOUT_S, memory_limit_mb: int = X.DEFAULT_MEMORY_MB):
        super().__init__(G.expression_report, timeout_s, memory_limit_mb)


_gate_name = G.expression_gate_name


# ---------------------------------------------------------------------------------------------
# The explorer.
# ---------------------------------------------------------------------------------------------

DEFAULT_GATES = ("sigmoid", "erf", "arctan", "softsign")
_student_t = functools.lru_cache(maxsize=128)(G.student_t)  # one gate per nu the slider visits


@functools.lru_cache(maxsize=256)
def _admissibility_rows(gate: G.Gate) -> tuple[dict, ...]:
    """check_admissible(gate).rows(), once per gate (a frozen, hashable dataclass)."""
    return tuple(G.check_admissible(gate).rows())


def available_gates_with_student_t() -> list[str]:
    """The registered gates and "student_t" (drawn at the explorer's nu)."""
    return [*G.available_gates(), "student_t"]


def check_settings(gates, tau, tau_convention, epsilon, nu, gprime, x_range) -> None:
    """The explorer's starting values, else a TypeError/ValueError naming the bad one (sliders never clamp)."""
    if isinstance(gates, str) or not all(isinstance(name, str) for name in gates):
        raise TypeError(f"gates must be a list of gate names, got {gates!r}")
    names = available_gates_with_student_t()
    for name in gates:
        if name not in names:
            raise ValueError(f"unknown gate {name!r}; the explorer offers: {', '.join(names)}")
    for label, value in (("tau", tau), ("epsilon", epsilon), ("nu", nu)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{label} must be a finite number > 0, got {value!r}")
    if tau_convention not in G.TAU_CONVENTIONS:
        raise ValueError(f"unknown tau convention {tau_convention!r}; allowed: {', '.join(G.TAU_CONVENTIONS)}")
    if not epsilon < 1:
        raise ValueError(f"epsilon must be < 1 (the clip region is [1 - eps, 1 + eps]), got {epsilon!r}")
    if not isinstance(gprime, str):
        raise TypeError(f"gprime must be text (a Python expression in z), got {type(gprime).__name__}")
    if not (len(x_range) == 2 and x_range[0] < x_range[1]):
        raise ValueError(f"x_range must be an increasing pair, got {x_range!r}")


def _log_range(value: float, low: float, high: float) -> tuple[float, float]:
    """Exponents (base 10) of a log slider from `low` to `high`, widened to hold `value`."""
    return math.floor(min(math.log10(low), math.log10(value))), math.ceil(max(math.log10(high), math.log10(value)))


def _table(header: list[str], rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th style='padding:0 6px'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 6px'>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption style='text-align:left'><b>{caption}</b></caption><tr>{head}</tr>{body}</table>"


def _admissibility_html(reports: list) -> str:
    """Gate x property: pass / FAIL, the evidence on hover and, for a failure, below the table."""
    header = ["gate", *G.PROPERTIES]
    rows, failures = [], []
    for report in reports:
        cells = [html.escape(report[0]["gate"])]
        for row in report:
            mark = "pass" if row["passed"] else "<b style='color:#c00'>FAIL</b>"
            cells.append(f"<span title='{html.escape(row['evidence'], quote=True)}'>{mark}</span>")
            if not row["passed"]:
                failures.append(f"{html.escape(row['gate'])} {row['property']}: {html.escape(row['evidence'])}")
        rows.append(cells)
    notes = "".join(f"<div style='color:#c00'>{f}</div>" for f in failures)
    return _table(header, rows, "Admissibility (method §2.2)") + notes


METHOD_LABELS = {f"{m.name}, {m.sign}": m for m in TR.METHODS}  # the trust-region methods' rows (method §2.8)


@functools.lru_cache(maxsize=1)
def _method_rows() -> dict[str, dict]:
    """trust_region.method_rows() by label, computed once (the checker takes about a second)."""
    return {f"{row['method']}, {row['sign']}": row for row in TR.method_rows()}


def _methods_html(labels: list[str]) -> str:
    """Method x property (i)-(iv, both readings): pass / FAIL, the evidence on hover (method §2.8)."""
    rows = []
    for label in labels:
        row = _method_rows()[label]
        cells = [html.escape(label)]
        for prop in TR.PROPERTY_COLUMNS:
            mark = "pass" if row[prop] else "<b style='color:#c00'>FAIL</b>"
            cells.append(f"<span title='{html.escape(row['evidence'][prop], quote=True)}'>{mark}</span>")
        rows.append(cells)
    return _table(["method", *TR.PROPERTY_COLUMNS], rows, "Trust-region methods, f' = phi(r)/r (method §2.8)")


def _draw_methods(ax, labels: list[str], r: torch.Tensor, weight_on_log_pi: bool = False, **style) -> None:
    """Each method's f'(r) = phi(r) / r (or phi(r) itself) against r on `ax`, labelled (method §2.8)."""
    for label in labels:
        method = METHOD_LABELS[label]
        ax.plot(r, method.phi(r) if weight_on_log_pi else method.f_prime(r - 1.0), label=label, **style)


def method_figure(gates=DEFAULT_GATES, methods: list[str] | None = None, x_range: tuple[float, float] = (0.02, 6.0),
                  tau: float = 1.0):
    """The trust-region methods beside the gates (method §2.8): left f'(r), what the admissibility checker tests
    (a method's phi(r) / r, a gate's g'(tau (r - 1))); right the weight on grad log pi, phi(r) and r g', whose
    limit is (iv)'s second reading. `methods`: labels of METHOD_LABELS ("CISPO, both", ...), default all."""
    check_settings(gates, tau, "equal", 0.2, 1.0, "", x_range)
    labels = list(METHOD_LABELS) if methods is None else methods
    if isinstance(labels, str) or any(label not in METHOD_LABELS for label in labels):
        raise ValueError(f"methods must be a list of method rows; choose from: {', '.join(METHOD_LABELS)}")
    if not x_range[0] > 0:
        raise ValueError(f"x_range must lie in r > 0 (a ratio), got {x_range!r}")
    r = torch.linspace(*x_range, 1200, dtype=torch.float64)
    fig, (ax_f, ax_phi) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    _draw_methods(ax_f, labels, r, lw=1.2)
    _draw_methods(ax_phi, labels, r, weight_on_log_pi=True, lw=1.2)
    for i, name in enumerate(gates):
        weight = G.get_gate(_student_t(3.0) if name == "student_t" else name).weight(r, tau)
        ax_f.plot(r, weight, "k", lw=0.8, alpha=0.5, ls=":")
        ax_phi.plot(r, r * weight, "k", lw=0.8, alpha=0.5, ls=":",
                    label=f"the gates {', '.join(gates)} (tau = {tau:g})" if i == 0 else None)
    ax_f.set(xlabel="ratio r", ylabel="f'(r) = phi(r) / r", ylim=(0, 2.5), title="what the checker tests")
    ax_phi.set(xlabel="ratio r", ylabel="phi(r), the weight on grad log pi", ylim=(0, 6), title="(iv): x f'(x) = phi")
    ax_phi.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _halfmax_html(shown: list[G.Gate], tau: float, convention: str) -> str:
    rows = []
    for row in G.gate_table(shown, tau=tau, convention=convention):
        rows.append([html.escape(row["gate"]), f"{row['halfmax_z']:.4f}", f"{row['tau_used']:.4g}",
                     f"{row['halfmax_x']:.4f}", row["tail"]])
    return _table(["gate", "half-max z", "tau used", "half-max |x-1|", "tail"], rows,
                  f"Half-max widths (method §2.5; {convention} tau)")


def _problem_html(text: str, problem: str, rows: list[dict] | None = None) -> str:
    lines = [f"<b>{html.escape(_gate_name(text))}</b> cannot be drawn:"]
    if rows is None:
        lines.append(f"<div>{html.escape(problem)}</div>")
    else:
        lines.append("<div>it is not admissible (method §2.2):</div><ul>")
        lines += [f"<li><b>{row['property']}</b> {html.escape(row['statement'])}: <b>FAIL</b>, "
                  f"{html.escape(row['evidence'])}</li>" for row in rows if not row["passed"]]
        lines.append("</ul>")
    return "<div style='color:#a00; padding:8px'>" + "\n".join(lines) + "</div>"


class GateExplorer:
    """ipywidgets controls and the update that redraws figure and tables on every change.

    `widget` is the box to display. After each update, `figure` holds the drawn matplotlib Figure (None when
    the user g' is refused), `drawn` the settings it was drawn with, and `problem` what was wrong, if anything."""

    def __init__(self, gates=DEFAULT_GATES, tau: float = 1.0, tau_convention: str = "equal", epsilon: float = 0.2,
                 nu: float = 3.0, gprime: str = "", x_range: tuple[float, float] = (0.0, 3.0),
                 evaluator: GprimeEvaluator | None = None):
        check_settings(gates, tau, tau_convention, epsilon, nu, gprime, x_range)
        names = available_gates_with_student_t()
        self.x_range = (float(x_range[0]), float(x_range[1]))
        self.evaluator = evaluator or GprimeEvaluator()
        self._user: dict[str, dict] = {}
        self.figure = None
        self.png = b""
        self.drawn: dict = {}
        self.problem: str | None = None

        self.gate_boxes = {name: widgets.Checkbox(value=name in gates, description=name, indent=False,
                                                  layout=widgets.Layout(width="auto"))
                           for name in names}
        lo, hi = _log_range(tau, 0.1, 10.0)
        self.tau = widgets.FloatLogSlider(value=tau, base=10, min=lo, max=hi, step=0.01, description="tau",
                                          continuous_update=False, readout_format=".3g")
        self.convention = widgets.ToggleButtons(options=list(G.TAU_CONVENTIONS), value=tau_convention,
                                                description="tau is", style={"button_width": "130px"})
        self.epsilon = widgets.FloatSlider(value=epsilon, min=0.01, max=max(0.5, epsilon), step=0.01,
                                           description="clip eps", continuous_update=False)
        lo, hi = _log_range(nu, 0.5, 1000.0)
        self.nu = widgets.FloatLogSlider(value=nu, base=10, min=lo, max=hi, step=0.01, description="Student-t nu",
                                         continuous_update=False, readout_format=".3g",
                                         style={"description_width": "initial"})
        self.gprime = widgets.Text(value=gprime, placeholder=f"your g'(z), e.g. {EXAMPLE}", description="g'(z) =",
                                   continuous_update=False, layout=widgets.Layout(width="60%"))
        hint = widgets.HTML("<small>a Python expression in z with torch (press Enter); "
                            "empty: no user gate</small>")
        self.figure_panel = widgets.HTML(layout=widgets.Layout(flex="3 1 0%"))
        self.admissibility = widgets.HTML()
        self.halfmax = widgets.HTML()
        self.method_boxes = {label: widgets.Checkbox(value=False, description=label, indent=False,
                                                     layout=widgets.Layout(width="auto"))
                             for label in METHOD_LABELS}
        self.methods = widgets.HTML()
        classes = {**{f"sapo-gate-{name}": box for name, box in self.gate_boxes.items()},
                   "sapo-tau": self.tau, "sapo-convention": self.convention, "sapo-epsilon": self.epsilon,
                   "sapo-nu": self.nu, "sapo-gprime": self.gprime, "sapo-figure": self.figure_panel,
                   "sapo-admissibility": self.admissibility, "sapo-halfmax": self.halfmax}
        for css, widget in classes.items():
            widget.add_class(css)
        for label, box in self.method_boxes.items():
            box.add_class("sapo-method-" + "".join(c if c.isalnum() else "-" for c in label))
        tables = widgets.VBox([self.admissibility, self.methods, self.halfmax], layout=widgets.Layout(flex="2 1 0%"))
        self.widget = widgets.VBox([
            widgets.HBox([widgets.Label("gates:"), *self.gate_boxes.values()]),
            widgets.HBox([self.tau, self.convention]),
            widgets.HBox([self.epsilon, self.nu]),
            widgets.HBox([self.gprime, hint]),
            widgets.HBox([widgets.Label("methods (dashed, f' only):"), *self.method_boxes.values()],
                         layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([self.figure_panel, tables]),
        ])
        self.widget.add_class("sapo-explorer")
        for control in (*self.gate_boxes.values(), self.tau, self.convention, self.epsilon, self.nu, self.gprime,
                        *self.method_boxes.values()):
            control.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        """Redraw figure and tables from the controls; any failure is shown in the widget, never raised."""
        try:
            self._redraw()
        except Exception as err:  # a widget callback must not leave a traceback in the notebook
            logger.debug("gate explorer update failed", exc_info=True)
            self.figure, self.problem = None, f"{type(err).__name__}: {err}"
            self.figure_panel.value = ("<div style='color:#a00; padding:8px'>The explorer could not draw this "
                                       f"setting: {html.escape(self.problem)}</div>")

    def _user_gate(self, text: str) -> dict:
        """{"gate": Gate, "rows": ...} for an admissible g', else {"problem": ..., "rows": ... or None}."""
        if text not in self._user:
            try:
                parse_gprime(text)  # quick, in the kernel: a bad text never reaches the worker
                result = self.evaluator(text)
            except ValueError as err:
                result = {"problem": str(err)}
            if "problem" not in result and "halfmax" not in result:
                result["problem"] = "not admissible: " + "; ".join(
                    f"{r['property']} {r['evidence']}" for r in result["rows"] if not r["passed"])
            elif "problem" not in result:  # it finished in the worker within the limits: safe to run here
                result["gate"] = G.make_gate(_gate_name(text), compile_gprime(text), halfmax=result["halfmax"],
                                             tail=result["tail"], g_prime_text=text.strip())
            self._user[text] = result
        return self._user[text]

    def _redraw(self) -> None:
        tau, convention, epsilon, nu = self.tau.value, self.convention.value, self.epsilon.value, self.nu.value
        shown = [G.get_gate(name) for name, box in self.gate_boxes.items() if box.value and name != "student_t"]
        if self.gate_boxes["student_t"].value:
            shown.append(_student_t(nu))
        reports = [_admissibility_rows(gate) for gate in shown]
        text = self.gprime.value.strip()
        user = self._user_gate(text) if text else {}
        if "gate" in user:
            shown.append(user["gate"])
        if user.get("rows"):
            reports.append(user["rows"])
        self.admissibility.value = _admissibility_html(reports) if reports else ""
        self.halfmax.value = _halfmax_html(shown, tau, convention) if shown else ""
        methods = [label for label, box in self.method_boxes.items() if box.value]
        self.methods.value = _methods_html(methods) if methods else ""
        self.drawn = {"gates": [gate.name for gate in shown], "methods": methods, "tau": tau,
                      "tau_convention": convention,
                      "taus": {gate.name: G.resolve_tau(gate, tau, convention) for gate in shown},
                      "epsilon": epsilon, "nu": nu, "gprime": text}
        self.problem = user.get("problem")
        if self.problem:  # a refused g' shows what is wrong instead of a plot
            self.figure, self.png = None, b""
            self.figure_panel.value = _problem_html(text, self.problem, user.get("rows"))
            return
        fig = plots.gate_figure(shown, tau=tau, tau_convention=convention, x_range=self.x_range, epsilon=epsilon)
        for ax in fig.axes[len(fig.axes) // 2:]:  # the f' row: each method's f'(r) = phi(r)/r (no tau)
            _draw_methods(ax, methods, torch.linspace(*self.x_range, 601, dtype=torch.float64), ls="--", lw=1.1)
            if methods:
                ax.legend(fontsize=6)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        self.figure, self.png = fig, buf.getvalue()
        data = base64.b64encode(self.png).decode("ascii")
        self.figure_panel.value = f"<img style='max-width:100%' src='data:image/png;base64,{data}'>"

    def close(self) -> None:
        """Close the widgets and stop the g' worker."""
        boxes = [self.widget]
        while boxes:
            box = boxes.pop()
            boxes += [child for child in getattr(box, "children", ()) if isinstance(child, widgets.Widget)]
            box.close()
        self.evaluator.close()


def in_live_session() -> bool:
    """True inside a kernel that a Jupyter server started for a notebook (JupyterLab), not papermill/nbval."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None and bool(os.environ.get("JPY_SESSION_NAME"))


def gate_explorer(gates=DEFAULT_GATES, *, tau: float = 1.0, tau_convention: str = "equal", epsilon: float = 0.2,
                  nu: float = 3.0, gprime: str = "", x_range: tuple[float, float] = (0.0, 3.0),
                  interactive: bool | None = None, evaluator: GprimeEvaluator | None = None) -> GateExplorer | None:
    """Show the gate explorer when `interactive` (None: only in a live JupyterLab session) and return it; else
    check the settings and return None (batch runs: papermill, nbval)."""
    check_settings(gates, tau, tau_convention, epsilon, nu, gprime, x_range)
    if interactive is not None and not isinstance(interactive, bool):
        raise TypeError(f"interactive must be True, False or None (auto), got {interactive!r}")
    if not (in_live_session() if interactive is None else interactive):
        return None
    from IPython.display import display

    explorer = GateExplorer(gates, tau=tau, tau_convention=tau_convention, epsilon=epsilon, nu=nu, gprime=gprime,
                            x_range=x_range, evaluator=evaluator)
    display(explorer.widget)
    return explorer
