"""The metric registry (sapo_core.metrics): one definition per logged name, read by the loss, the trainer,
training, batch summaries, figures and claims. That every name a real run logs is registered (and every
registered name logged) is checked on the runs of tests/test_train.py."""

import re

import pytest

from sapo_core import claims as C
from sapo_core import metrics as M
from sapo_core.batch import SUMMARY_METRICS
from sapo_core.config import REWARDS
from sapo_core.loss import METRIC_KEYS, metric_tokens, token_metrics
from sapo_core.plots import COMPARE_PANELS, TRAINING_PANELS
from sapo_core.train import REQUIRED_METRICS
from sapo_core.trainer import RATIO_HIST_EDGES, ratio_histogram


def test_every_name_is_defined_once_in_a_known_group():
    every = [n for m in M.METRICS for n in M._expanded(m)]
    assert len(every) == len(set(every))
    assert all(m.group in M.GROUPS for m in M.METRICS)
    assert all(m.meaning and "\n" not in m.meaning for m in M.METRICS)
    assert all(m.summary in ("", "all", "signs") for m in M.METRICS)


def test_the_loss_logs_exactly_the_registered_loss_names():
    import torch

    assert METRIC_KEYS == M.names(source="loss")
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]])
    tokens = metric_tokens(logps, logps - 0.1, torch.tensor([1.0, -1.0]), torch.ones(2, 2))
    assert list(token_metrics(tokens)) == list(METRIC_KEYS)
    assert {"eur", "eur/pos", "eur/neg"} <= set(METRIC_KEYS)


def test_by_sign_names_and_refusals():
    assert M.by_sign("ratio/var") == ("ratio/var", "ratio/pos/var", "ratio/neg/var")
    assert M.by_sign("eur") == ("eur", "eur/pos", "eur/neg")
    with pytest.raises(ValueError, match="'entropy' is not logged per sign of A.*eur"):
        M.by_sign("entropy")
    with pytest.raises(ValueError, match="'ratio/pos/var' is not logged per sign"):
        M.by_sign("ratio/pos/var")


def test_lookup_fills_patterns_and_refuses_unknown_names():
    assert M.get("rewards/format_reward/mean").name == "rewards/{reward}/mean"
    assert M.get("ratio/hist/07").group == "histogram"
    assert M.get("eval_eur/neg").name == "eur"
    assert M.key("ratio/pos/p99") == "ratio/pos/p99"
    for bad in ("ratio/hist/7", "rewards/a/b/mean", "eur/zero", "entropy/mean"):
        with pytest.raises(ValueError, match=re.escape(repr(bad)) + " is not in sapo_core.metrics.METRICS"):
            M.get(bad)
    assert M.unlisted({"eur": 1.0, "loss": 0.0, "clip_ratio/region_mean": 0.1}) == ["clip_ratio/region_mean"]
    with pytest.raises(TypeError, match="a metric name is a str, got int 3"):
        M.get(3)


def test_the_histogram_logs_its_registered_bins():
    import torch

    logged = ratio_histogram(torch.tensor([0.5, 1.0, 4.0]))
    assert RATIO_HIST_EDGES is M.RATIO_HIST_EDGES
    assert M.unlisted(logged) == []
    assert set(logged) == {n for n in M.required(REWARDS) if n.startswith("ratio/hist/")}


def test_required_and_summary_names_come_from_the_registry():
    assert REQUIRED_METRICS == M.required(REWARDS)
    assert {"step", "loss", "reward", "rewards/format_reward/mean", "rewards/correctness_reward/mean", "entropy",
            "ratio/var", "gate_weight/mean", "tokens/count", "eur", "eur/pos", "eur/neg"} <= set(REQUIRED_METRICS)
    assert not {"kl", "aux_loss"} & set(REQUIRED_METRICS)  # conditional metrics are not required
    assert {"eur", "eur/pos", "eur/neg", "ratio/var", "gate_weight/low_frac", "reward"} <= set(SUMMARY_METRICS)
    assert "ratio/pos/var" not in SUMMARY_METRICS       # summary "all": the overall name only
    assert M.absent({n: 0.0 for n in REQUIRED_METRICS if n != "eur/neg"}, REWARDS) == ["eur/neg"]


def test_figures_and_claims_read_registered_names():
    panel_names = [key for _, series in TRAINING_PANELS for key, _ in series] + [key for key, _ in COMPARE_PANELS]
    claim_names = list(C.METRIC_KEYS)
    assert M.unlisted(dict.fromkeys(panel_names + claim_names)) == []
    assert ("eur", "eur/pos", "eur/neg") in [tuple(k for k, _ in series) for _, series in TRAINING_PANELS]


def test_markdown_table_has_one_row_per_metric():
    table = M.markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(M.METRICS)
    assert all(line.count(" | ") == 3 for line in rows)  # a bar inside a meaning is escaped
    assert "| `eur` · `eur/pos` · `eur/neg` | eur |" in table and "| beta != 0 |" in table
