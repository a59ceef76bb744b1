"""sapo_core.study: the tail-heaviness axis, the study table on the fabricated example batch, the study's plan and
its refusals (the study's runs are batch runs: tests/test_batch.py trains them; make study is measured in LOG.md)."""

import math

import pytest

from sapo_core import compare, paper, study
from sapo_core.batch import plan


@pytest.mark.parametrize("gate, heaviness", [("arctan", 1.0), ("softsign", 0.5), ("student_t:nu=4", 0.25),
                                             ("student_t:nu=16", 1 / 16), ("erf", 0.0)])
def test_tail_heaviness_is_one_over_nu_on_the_student_t_axis(gate, heaviness):
    assert study.tail_heaviness(gate) == pytest.approx(heaviness, abs=1e-3)


def test_an_exponential_tail_sits_near_the_gaussian_end():
    assert 0 < study.tail_heaviness("sigmoid") < 0.02  # g' ~ 4 e^-z: p = z = 100 at TAIL_Z


def test_the_study_table_has_a_row_per_arm_with_its_formula_values():
    """The example batch's values are formulas of (arm a, seed s) (tools/make_paper_batch.py)."""
    table = study.study_table(compare.load_batch(paper.EXAMPLE_BATCH)).set_index("arm")
    assert list(table.index) == compare.load_batch(paper.EXAMPLE_BATCH).groups
    clip, erf_low = table.loc["clip"], table.loc["erf (equal, tau 1/1.05)"]
    assert clip["kind"] == "method" and math.isnan(clip["tau_pos"]) and math.isnan(clip["tail_heaviness"])
    assert clip["accuracy"] == pytest.approx(0.52) and clip["accuracy_min"] == 0.5 and clip["accuracy_max"] == 0.54
    assert erf_low["tau_pos"] == 1.0 and erf_low["accuracy"] == pytest.approx(0.5 + 0.02 * 5 + 0.02)
    assert erf_low["eur"] == pytest.approx(0.9 - 0.02 * 5 + 0.005)  # second-half mean over both seeds


def test_the_study_plans_each_gate_at_each_temperature_and_each_method_once():
    specs = plan(study.batch_arguments("x", "0,1", 2), [])
    methods = [g for g in study.STUDY_GATES if g in ("clip", "cispo", "delta")]
    assert len(specs) == 2 * (len(methods) + (len(study.STUDY_GATES) - len(methods)) * len(study.STUDY_TAUS))
    assert {s.name for s in specs if s.gate == "erf" and s.seed == 0} == {
        "erf-tau1_1.05-equal-seed0", "erf-tau5_6-equal-seed0", "erf-tau10_12-equal-seed0"}


def test_an_existing_study_directory_is_refused(tmp_path, capsys):
    assert study.main(["--out", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
