"""Every metric a training run logs, defined once (method §4): its name, group, meaning and when it is logged.

`sapo_core.loss` computes the token metrics (groups tokens, ratio, gate, eur) under these names, the trainer
adds the ratio histogram and `batch/reused`, TRL and transformers log the rest. Training (`REQUIRED_METRICS`),
batch summaries (`SUMMARY_METRICS`), figures and claims read their names from here, and the README's table of
what is logged is `markdown_table()`:

    python -c "from sapo_core.metrics import markdown_table; print(markdown_table())"

A metric marked `by_sign` is logged three times: over all tokens, over the tokens with A > 0 and over those
with A < 0 (`ratio/var`, `ratio/pos/var`, `ratio/neg/var`; `eur`, `eur/pos`, `eur/neg`; method §7.4). A name
with a `{field}` is a pattern: `{reward}` is a reward function's name, `{bin}` a two-digit histogram bin,
`{benchmark}` a held-out benchmark's name (group heldout: accuracy over training on its validation split, on some
steps only; reported numbers come from the test split through sapo_core.evaluate).
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["GROUPS", "METRICS", "RATIO_HIST_EDGES", "SIGNS", "Metric", "absent", "by_sign", "get", "key",
           "markdown_table", "names", "required", "summary_names", "unlisted"]

GROUPS = ("run", "optimizer", "rollout", "policy", "tokens", "ratio", "gate", "eur", "temperature", "histogram",
          "sampling", "tools", "heldout")
SIGNS = ("pos", "neg")  # A > 0, A < 0 (method §7.4: A == 0 counts overall only)

# The distribution of the ratios the gate saw (logged as shares of tokens, `ratio/hist/NN`): 60 bins of width 0.05
# over [0, 3) and one for r >= 3, so a comparison can overlay it with each gate's weight f'(r) (notebook 04).
RATIO_HIST_EDGES = tuple(round(0.05 * i, 2) for i in range(61)) + (float("inf"),)


class Metric(NamedTuple):
    """One logged metric: name (or pattern), group, one-line meaning, who logs it, when, and its uses."""

    name: str
    group: str
    meaning: str
    source: str = "trl"          # "trl" (TRL / transformers), "trainer" or "loss" (sapo_core), "train" (the row)
    when: str = ""               # "" = every logged training step; otherwise the condition
    by_sign: bool = False        # also logged for A > 0 and A < 0
    summary: str = ""            # copied into a batch's summary row (sapo_core.batch): "all" tokens, or all "signs"


_HELDOUT = "heldout_eval_steps > 0: every heldout_eval_steps steps and the last"
_EUR = ("effective update ratio (paper eq. 12): per prompt, the token mean of f'(r) over its G completions; "
        "then the mean over prompts (method §4.1)")

METRICS: tuple[Metric, ...] = (
    Metric("step", "run", "optimizer step of the row", source="train"),
    Metric("epoch", "run", "epochs of the training set seen (transformers)"),
    Metric("loss", "optimizer", "training loss, mean over the logging interval (transformers)"),
    Metric("grad_norm", "optimizer", "gradient norm before clipping (transformers)"),
    Metric("learning_rate", "optimizer", "learning rate of the step (transformers)"),
    Metric("step_time", "optimizer", "seconds per optimizer step (TRL)"),
    Metric("num_tokens", "rollout", "prompt and completion tokens seen so far (TRL)"),
    Metric("reward", "rollout", "mean reward R of the generated batch (method §3.2, eq. 9)", summary="all"),
    Metric("reward_std", "rollout", "standard deviation of R over the generated batch"),
    Metric("frac_reward_zero_std", "rollout", "share of prompt groups whose G rewards are all equal (A = 0)"),
    Metric("rewards/{reward}/mean", "rollout", "mean of one reward component (R_format, R_correct)", summary="all"),
    Metric("rewards/{reward}/std", "rollout", "standard deviation of one reward component"),
    Metric("completions/mean_length", "rollout", "mean completion length in tokens", summary="all"),
    Metric("completions/min_length", "rollout", "shortest completion"),
    Metric("completions/max_length", "rollout", "longest completion"),
    Metric("completions/clipped_ratio", "rollout", "share of completions cut at max_completion_length"),
    Metric("completions/mean_terminated_length", "rollout", "mean length of the completions that ended (EOS)"),
    Metric("completions/min_terminated_length", "rollout", "shortest completion that ended"),
    Metric("completions/max_terminated_length", "rollout", "longest completion that ended"),
    Metric("batch/reused", "rollout", "1 when the step reuses a generated batch (its rollout metrics repeated)",
           source="trainer"),
    Metric("entropy", "policy", "token entropy of the policy on the completion tokens", summary="all"),
    Metric("kl", "policy", "k3 estimate of KL(pi_theta || pi_ref) (method §7.6)", when="beta != 0"),
    Metric("aux_loss", "policy", "router auxiliary loss of a mixture-of-experts model",
           when="model with output_router_logits"),
    Metric("tokens/nonfinite_count", "tokens", "unmasked tokens whose log-ratio is not finite (left out below)",
           source="loss"),
    Metric("tokens/count", "tokens", "unmasked tokens with a finite ratio behind the statistics", source="loss",
           by_sign=True),
    Metric("ratio/mean", "ratio", "mean importance ratio r", source="loss", by_sign=True),
    Metric("ratio/std", "ratio", "population standard deviation of r", source="loss", by_sign=True),
    Metric("ratio/var", "ratio", "population variance of r", source="loss", by_sign=True, summary="all"),
    Metric("ratio/min", "ratio", "smallest r", source="loss", by_sign=True),
    Metric("ratio/max", "ratio", "largest r", source="loss", by_sign=True),
    Metric("ratio/p01", "ratio", "1st percentile of r (linear interpolation)", source="loss", by_sign=True),
    Metric("ratio/p99", "ratio", "99th percentile of r", source="loss", by_sign=True),
    Metric("ratio/outside_clip_frac", "ratio", "share of tokens with r outside [1 - eps_low, 1 + eps_high]",
           source="loss", by_sign=True),
    Metric("gate_weight/mean", "gate", "token mean of the gate weight f'(r) (method eq. 2.2, 2.3)", source="loss",
           by_sign=True, summary="all"),
    Metric("gate_weight/low_frac", "gate", "share of tokens with f'(r) < 0.5", source="loss", by_sign=True,
           summary="all"),
    Metric("eur", "eur", _EUR, source="loss", by_sign=True, summary="signs"),
    # method §2.9: constant unless tau_schedule or tau_target_eur moves them
    Metric("tau/pos", "temperature", "tau_pos the gate ran at in the step (after the tau convention; method §2.9)",
           source="trainer", when="gates (not clip or another method of §2.8)"),
    Metric("tau/neg", "temperature", "tau_neg the gate ran at in the step (after the tau convention; method §2.9)",
           source="trainer", when="gates (not clip or another method of §2.8)"),
    Metric("ratio/hist/{bin}", "histogram", "share of tokens with r in bin {bin} of RATIO_HIST_EDGES",
           source="trainer"),
    Metric("sampling/importance_sampling_ratio/{stat}", "sampling", "pi_old / pi_vllm ratio (mean, min, max)",
           when="vLLM generation"),
    Metric("sampling/sampling_logp_difference/{stat}", "sampling", "|log pi_old - log pi_vllm| (mean, max)",
           when="vLLM generation"),
    Metric("tools/call_frequency", "tools", "tool calls per completion", when="tool calling"),
    Metric("tools/failure_frequency", "tools", "share of tool calls that failed", when="tool calling"),
    # Accuracy over training (method §6): added to the logged row of the step by sapo_core.train.HeldoutCurve.
    Metric("heldout/{benchmark}/mean@n", "heldout", "held-out (validation split) mean@n at heldout_temperature "
           "(sampled with seed = the step)", source="train", when=_HELDOUT),
    Metric("heldout/{benchmark}/mean@n_low", "heldout", "lower end of its 95% bootstrap interval over instances",
           source="train", when=_HELDOUT),
    Metric("heldout/{benchmark}/mean@n_high", "heldout", "upper end of its 95% bootstrap interval over instances",
           source="train", when=_HELDOUT),
    Metric("heldout/{benchmark}/format_rate", "heldout", "share of the held-out samples fully formatted",
           source="train", when=_HELDOUT),
)


def by_sign(name: str) -> tuple[str, str, str]:
    """A by_sign metric's three names: all tokens, A > 0, A < 0 ('ratio/var' -> ratio/pos/var, ratio/neg/var)."""
    metric = get(name)
    if not metric.by_sign or metric.name != name:
        raise ValueError(f"metric {name!r} is not logged per sign of A; those that are: "
                         f"{', '.join(m.name for m in METRICS if m.by_sign)}")
    return _expanded(metric)


def _expanded(metric: Metric) -> tuple[str, ...]:
    """The names a metric is logged under (a pattern stays a pattern)."""
    if not metric.by_sign:
        return (metric.name,)
    head, sep, tail = metric.name.partition("/")
    return (metric.name, *(f"{head}/{sign}/{tail}" if sep else f"{metric.name}/{sign}" for sign in SIGNS))


def _pattern(name: str) -> re.Pattern:
    """A name as a regular expression: `{bin}` two digits, any other `{field}` one path segment."""
    parts = re.split(r"(\{\w+\})", name)
    return re.compile("".join(r"\d\d" if p == "{bin}" else r"[^/]+" if p.startswith("{") else re.escape(p)
                              for p in parts) + r"\Z")


_LOOKUP = [(re.compile(re.escape(n) + r"\Z") if "{" not in n else _pattern(n), n, m)
           for m in METRICS for n in _expanded(m)]


def get(name: str) -> Metric:
    """The registered metric a logged name belongs to (an `eval_` prefix is that of evaluation); ValueError if none."""
    if not isinstance(name, str):
        raise TypeError(f"a metric name is a str, got {type(name).__name__} {name!r}")
    bare = name.removeprefix("eval_")
    for regex, _, metric in _LOOKUP:
        if regex.match(bare):
            return metric
    raise ValueError(f"metric {name!r} is not in sapo_core.metrics.METRICS; registered: "
                     f"{', '.join(n for _, n, _ in _LOOKUP)}")


def key(name: str) -> str:
    """`name` itself, once checked to be a registered metric name (for code that reads metrics by name)."""
    get(name)
    return name


def names(*, source: str | None = None, group: str | None = None) -> tuple[str, ...]:
    """Every logged name (patterns as patterns), in registry order, optionally of one source or group."""
    return tuple(n for m in METRICS if source in (None, m.source) and group in (None, m.group) for n in _expanded(m))


def _fill(name: str, reward_names: tuple[str, ...]) -> tuple[str, ...]:
    """A name with its pattern fields filled in: one name per reward function, per histogram bin."""
    if "{reward}" in name:
        return tuple(name.replace("{reward}", r) for r in reward_names)
    if "{bin}" in name:
        return tuple(name.replace("{bin}", f"{i:02d}") for i in range(len(RATIO_HIST_EDGES) - 1))
    return (name,)


def required(reward_names: tuple[str, ...]) -> tuple[str, ...]:
    """The names every logged training step carries, given the run's reward functions."""
    return tuple(f for m in METRICS if not m.when for n in _expanded(m) for f in _fill(n, reward_names))


def summary_names(reward_names: tuple[str, ...]) -> tuple[str, ...]:
    """The final training metrics a batch summary copies (sapo_core.batch)."""
    return tuple(f for m in METRICS if m.summary for n in (_expanded(m) if m.summary == "signs" else (m.name,))
                 for f in _fill(n, reward_names))


def unlisted(row: dict) -> list[str]:
    """The names in a logged row that the registry does not define."""
    return [name for name in row if not any(regex.match(name.removeprefix("eval_")) for regex, _, _ in _LOOKUP)]


def absent(row: dict, reward_names: tuple[str, ...]) -> list[str]:
    """The names every training step logs (`required`) that a logged row lacks."""
    return [n for n in required(reward_names) if n not in row]


def markdown_table() -> str:
    """The registry as a markdown table (name, group, meaning, when), for the README."""
    lines = ["| metric | group | meaning | logged |", "|---|---|---|---|"]
    for m in METRICS:
        shown = " · ".join(f"`{n}`" for n in _expanded(m))
        meaning = m.meaning.replace("|", "\\|")  # a literal bar inside a table cell
        lines.append(f"| {shown} | {m.group} | {meaning} | {m.when or 'every logged step'} |")
    lines.append("\nA name with `pos/` (`neg/`) is the same statistic over the tokens with A > 0 (A < 0) only; "
                 "`{reward}` is a reward function's name, `{bin}` a two-digit bin, `{benchmark}` a held-out benchmark.")
    return "\n".join(lines) + "\n"
