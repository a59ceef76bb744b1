"""sapo_core.paper: the paper's Figures 2-5 and Table 1 from a fabricated batch (tools/make_paper_batch.py)."""

import filecmp
import importlib.util
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sapo_core import batch, compare, paper
from sapo_core.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("make_paper_batch", REPO_ROOT / "tools" / "make_paper_batch.py")
maker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(maker)


@pytest.fixture(autouse=True)
def _close_figures():
    """Each test's figures are closed after it (pyplot keeps every figure open until then)."""
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return compare.load_batch(maker.write_batch(tmp_path_factory.mktemp("paper") / "batch"))


def _copy(tmp_path):
    """A writable copy of the fabricated batch."""
    return shutil.copytree(paper.EXAMPLE_BATCH, tmp_path / "batch")


def test_committed_example_batch_is_what_the_tool_writes(tmp_path):
    fresh = maker.write_batch(tmp_path / "batch")
    files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(paper.EXAMPLE_BATCH) for p in paper.EXAMPLE_BATCH.rglob("*") if p.is_file())
    assert files == committed
    _, mismatch, errors = filecmp.cmpfiles(fresh, paper.EXAMPLE_BATCH, [str(f) for f in files], shallow=False)
    assert mismatch == errors == []


def test_tool_refuses_an_existing_directory(tmp_path):
    with pytest.raises(FileExistsError, match="never overwritten"):
        maker.write_batch(tmp_path)


def test_paper_numbers_are_read_from_the_data_file(tmp_path):
    table = paper.paper_table1()
    assert table["base"] == {"gsm8k": 80.3, "math500": 56.6, "aime": 3.3}
    assert table["erf"]["aime"] == 10.0 and table["clip"]["math500"] == 58.6
    assert set(table) == {"base", "clip", "sigmoid", "erf", "arctan", "softsign"}
    assert "2602.19345v2" in paper.TABLE1_FILE.read_text()
    other = tmp_path / "t.csv"
    other.write_text("# a comment\narm,gsm8k\nbase,1.5\n")
    assert paper.paper_table1(other) == {"base": {"gsm8k": 1.5}}


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _band(ax, i):
    """(min, max) of the i-th band's polygon (seaborn draws the errorbar band as a PolyCollection)."""
    y = ax.collections[i].get_paths()[0].vertices[:, 1]
    return y.min(), y.max()


def test_figure3_arms_means_and_minmax_band(data):
    fig = paper.figure3(data)
    ax = fig.axes[0]
    assert _legend(ax) == ["GRPO (clip, eps 0.2)", "sigmoid (10, 12)", "erf (10, 12)", "arctan (10, 12)",
                           "softsign (10, 12)"]
    # arm a (ARMS order), seeds 0 and 1: reward = 0.2 + 0.05 a + 0.1 k + 0.02 s
    for i, a in enumerate(range(5)):
        x, y = ax.lines[i].get_data()
        np.testing.assert_allclose(x, [1, 2, 3, 4])
        np.testing.assert_allclose(y, [0.2 + 0.05 * a + 0.1 * k + 0.01 for k in (1, 2, 3, 4)], atol=1e-9)
        low, high = _band(ax, i)
        assert low == pytest.approx(0.2 + 0.05 * a + 0.1) and high == pytest.approx(0.2 + 0.05 * a + 0.4 + 0.02)
    assert "Figure 3" in fig._suptitle.get_text()


def test_figure2_and_5_draw_erf_at_each_temperature(data):
    fig = paper.figure2(data)
    assert _legend(fig.axes[0]) == ["erf (1, 1.05)", "erf (5, 6)", "erf (10, 12)", "erf (13, 15)"]
    fig = paper.figure5(data)
    entropy, eur = fig.axes[:2]
    assert entropy.get_title() == "policy entropy" and "EUR" in eur.get_title()
    # eur = 0.9 - 0.02 a + 0.01 s; erf (1, 1.05) is arm 5: mean 0.805, band [0.8, 0.81]
    np.testing.assert_allclose(eur.lines[0].get_ydata(), [0.805] * 4, atol=1e-9)
    assert _band(eur, 0) == pytest.approx((0.8, 0.81))
    assert "(5, 6)" in fig._suptitle.get_text() and "Figure 5" in fig._suptitle.get_text()


def test_figure4_entropy_and_eur_of_the_paper_arms(data):
    fig = paper.figure4(data)
    entropy, eur = fig.axes[:2]
    assert _legend(entropy) == _legend(eur) == ["GRPO (clip, eps 0.2)", "sigmoid (10, 12)", "erf (10, 12)",
                                                "arctan (10, 12)", "softsign (10, 12)"]
    np.testing.assert_allclose(eur.lines[4].get_ydata(), [0.9 - 0.08 + 0.005] * 4, atol=1e-9)  # softsign, a = 4


def test_caption_states_figure_paper_recipe_taus_seeds_commit(data):
    text = paper.figure4(data)._suptitle.get_text()
    for part in ("Figure 4", "arXiv 2602.19345v2", "recipe tiny-paper", "tau (pos, neg) (10, 12)", "seeds 0, 1",
                 "commit fabricated", "min-max", "2 seeds per arm"):
        assert part in text, part
    assert "(1, 1.05); (5, 6); (10, 12); (13, 15)" in paper.figure2(data)._suptitle.get_text()


def test_a_metric_not_logged_is_said_not_drawn(tmp_path):
    path = _copy(tmp_path)
    for metrics in path.glob("*/metrics.jsonl"):
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        metrics.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "eur"}) + "\n" for r in rows))
    eur = paper.figure4(compare.load_batch(path)).axes[1]
    assert not eur.lines and "'eur' is not logged" in eur.texts[0].get_text()


def test_a_figure_without_its_arms_is_an_error(tmp_path):
    path = _copy(tmp_path)
    runs = json.loads((path / "batch.json").read_text())
    runs["runs"] = [r for r in runs["runs"] if r["gate"] != "erf"]
    (path / "batch.json").write_text(json.dumps(runs))
    with pytest.raises(ValueError, match=r"none of the arms erf \(1, 1.05\)"):
        paper.figure2(compare.load_batch(path))


def test_table1_rows_intervals_and_gpu_only(data):
    table = paper.table1(data)
    assert list(table.index) == ["base model", "+ GRPO (clip)", "+ SAPO (sigmoid)", "+ SAPO (erf)",
                                 "+ SAPO (arctan)", "+ SAPO (softsign)"]
    # erf (10, 12) is arm 2: seeds 0.54, 0.58; mean 56.0, t(0.975, 1) = 12.706 x sem 0.02 = 25.4
    assert table.loc["+ SAPO (erf)", "ours synthetic"] == "56.0 [30.6, 81.4] (2 seeds)"
    assert table.loc["base model", "ours synthetic"] == "45.0 [40.0, 50.0] (1 evaluation)"  # its bootstrap interval
    for bench in ("GSM8K", "MATH500", "AIME"):
        assert set(table[f"ours {bench}"]) == {"GPU only"}
    assert table.loc["+ SAPO (erf)", "paper AIME"] == "10.0" and table.loc["base model", "paper GSM8K"] == "80.3"
    assert "paper synthetic" not in table.columns


def test_table1_reads_gpu_benchmarks_and_pools_aime(tmp_path):
    """aime24 and aime25 evaluated separately are pooled by problems; a pooled `aime` is read as it is."""
    path = _copy(tmp_path)
    for results in path.glob("*/eval/batch/results.json"):
        res = json.loads(results.read_text())
        res["benchmarks"]["aime24"] = {"mean@n": 0.1, "mean@n_ci95": [0, 0.2], "n": 8, "n_problems": 30}
        res["benchmarks"]["aime25"] = {"mean@n": 0.3, "mean@n_ci95": [0, 0.4], "n": 8, "n_problems": 10}
        results.write_text(json.dumps(res))
    table = paper.table1(compare.load_batch(path))
    # (30 x 0.1 + 10 x 0.3) / 40 = 15%, the same for both seeds: no spread
    assert table.loc["+ SAPO (erf)", "ours AIME"] == "15.0 [15.0, 15.0] (2 seeds)"
    assert table.loc["base model", "ours AIME"] == "not evaluated"  # the base file has no AIME
    assert set(table["ours GSM8K"]) == {"GPU only"}
    results = path / "arctan-equal-seed0" / "eval" / "batch" / "results.json"
    res = json.loads(results.read_text())
    res["benchmarks"]["aime"] = {"mean@n": 0.5, "mean@n_ci95": [0.4, 0.6], "n": 8, "n_problems": 60}
    results.write_text(json.dumps(res))
    table = paper.table1(compare.load_batch(path))
    # seeds 50 and 15: sem 17.5, t(0.975, 1) = 12.706: the interval is unbounded by [0, 100], as two seeds give
    assert table.loc["+ SAPO (arctan)", "ours AIME"] == "32.5 [-189.9, 254.9] (2 seeds)"


def test_save_paper_figures_names(data, tmp_path):
    paths = paper.save_paper_figures(data, (3, 5), tmp_path)
    assert [p.name for p in paths] == ["paper_fig3_reward.png", "paper_fig3_reward.pdf",
                                       "paper_fig5_erf_entropy_eur.png", "paper_fig5_erf_entropy_eur.pdf"]
    with pytest.raises(ValueError, match="choose from 2, 3, 4, 5"):
        paper.save_paper_figures(data, (1,), tmp_path)


def test_batch_arms_with_temperatures():
    args = batch.BatchArguments(config="configs/tiny-cpu.yaml", out="x", gates="clip,erf,erf@5:6", seeds="0")
    specs = batch.plan(args, ["--max_steps", "2"])
    assert [s.name for s in specs] == ["clip-equal-seed0", "erf-equal-seed0", "erf-tau5_6-equal-seed0"]
    assert specs[2].flags == ("--max_steps", "2", "--sapo_temperature_pos", "5", "--sapo_temperature_neg", "6")
    assert specs[1].flags == ("--max_steps", "2")
    for bad in ("erf@5", "clip@1:2", "erf@0:1", "erf@a:b"):
        with pytest.raises(batch.BatchError, match="GATE@TAU_POS:TAU_NEG|smooth gate"):
            batch.plan(batch.BatchArguments(config="c", out="x", gates=bad, seeds="0"), [])


def test_compare_groups_a_gate_by_temperature(data):
    assert data.groups == ["clip", "sigmoid (equal, tau 10/12)", "erf (equal, tau 10/12)", "arctan (equal, tau 10/12)",
                           "softsign (equal, tau 10/12)", "erf (equal, tau 1/1.05)", "erf (equal, tau 5/6)",
                           "erf (equal, tau 13/15)"]


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="BatchData"):
        paper.figure3("runs/batch")
    with pytest.raises(TypeError, match="BatchData"):
        paper.table1({"runs": []})


def test_the_demo_summary_names_the_claims_it_leaves_to_make_paper():
    """The example batch has no width_matched arm: each claim judged at that convention is listed as left to
    `make paper`, whose batch runs the gates that `claims.width_matched_gates` names at that convention too."""
    from sapo_core import claims as C
    from sapo_core import compare, demo

    text = demo.summary_text(paper.EXAMPLE_BATCH)
    listed = {line.split(": ", 1)[1] for line in text.split("Left to `make paper`")[1].splitlines()
              if line.startswith("- ")}
    expected = {row["claim"] for row in compare.claims(compare.load_batch(paper.EXAMPLE_BATCH))
                if row["convention"] == "width_matched" and row["verdict"].startswith(C.NOT_MEASURED)}
    assert listed == expected and len(expected) >= 3
    assert C.width_matched_gates(["clip", "sigmoid", "erf", "arctan", "softsign"]) == ["erf", "arctan", "softsign"]


def test_width_matched_runs_of_the_same_base_pair_are_not_pooled_with_the_paper_arms(data, tmp_path):
    """A batch that also ran erf width-matched (its recipe names the same base pair (10, 12)): the paper's figures
    and Table 1 draw the equal-tau runs alone, as without those runs."""
    fig = paper.figure3(data)
    before_table, before_line = paper.table1(data), fig.axes[0].lines[2].get_data()
    plt.close(fig)
    root = _copy(tmp_path)
    manifest = json.loads((root / "batch.json").read_text())
    for seed in (0, 1):
        source, run = root / f"erf-equal-seed{seed}", f"erf-width_matched-seed{seed}"
        shutil.copytree(source, root / run)
        (root / run / "config.yaml").write_text((source / "config.yaml").read_text().replace(
            "tau_convention: equal", "tau_convention: width_matched"))
        (root / run / "metrics.jsonl").write_text("".join(  # far from every equal-tau arm
            json.dumps({**json.loads(line), "reward": 5.0}) + "\n"
            for line in (source / "metrics.jsonl").read_text().splitlines()))
        results = json.loads((root / run / "eval" / "batch" / "results.json").read_text())
        results["benchmarks"]["synthetic"]["mean@n"] = 0.99
        (root / run / "eval" / "batch" / "results.json").write_text(json.dumps(results))
        row = next(r for r in manifest["runs"] if r["run"] == source.name)
        manifest["runs"].append({**row, "run": run, "tau_convention": "width_matched"})
    (root / "batch.json").write_text(json.dumps(manifest))
    both = compare.load_batch(root)
    assert len(both.runs) == len(data.runs) + 2 and "erf (width_matched, tau 10/12)" in both.groups
    assert paper.table1(both).equals(before_table)
    fig = paper.figure3(both)
    np.testing.assert_allclose(fig.axes[0].lines[2].get_data(), before_line)
    plt.close(fig)
