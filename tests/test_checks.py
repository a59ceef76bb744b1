"""The shared argument checks: TypeError for a wrong type, ValueError for a bad value, each naming the argument,
the value and what is allowed; nothing coerced."""

import math

import numpy as np
import pytest

from sapo_core.checks import check_bool, check_choice, check_int, check_positive, is_real


@pytest.mark.parametrize("value, real", [(1, True), (0.5, True), (np.float32(2), True), (np.int64(3), True),
                                         (math.nan, True), (True, False), ("1", False), (None, False),
                                         (1 + 0j, False)])
def test_is_real(value, real):
    assert is_real(value) is real


def test_check_positive():
    assert check_positive("tau", 2.0) == 2.0 and check_positive("eps", 0, strict=False) == 0
    for value, error, words in [(True, TypeError, "bool True"), ("1", TypeError, "str '1'"),
                                (0, ValueError, "> 0, got 0"), (-1e-9, ValueError, "> 0"),
                                (math.nan, ValueError, "nan"), (math.inf, ValueError, "inf")]:
        with pytest.raises(error, match=f"tau must be a finite real number.*{words}"):
            check_positive("tau", value)
    with pytest.raises(ValueError, match=">= 0, got -1"):
        check_positive("eps", -1, strict=False)


def test_check_int():
    assert check_int("n", 3) == 3 and check_int("n", np.int64(1), minimum=1) == 1
    with pytest.raises(TypeError, match="n must be an int >= 1, got float 2.0"):
        check_int("n", 2.0, minimum=1)
    with pytest.raises(TypeError, match="n must be an int, got bool True"):
        check_int("n", True)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int("n", 0, minimum=1)


def test_check_choice():
    assert check_choice("level", "token", ("token", "sequence")) == "token"
    with pytest.raises(ValueError, match="unknown level 'word'; allowed: 'token', 'sequence'"):
        check_choice("level", "word", ("token", "sequence"))
    with pytest.raises(TypeError, match="level must be one of 'token', 'sequence'; got int 1"):
        check_choice("level", 1, ("token", "sequence"))
    with pytest.raises(TypeError, match="got bool True"):
        check_choice("k", True, (0, 1))  # a bool is not the int 1


def test_check_bool():
    assert check_bool("greedy", False) is False
    for value in (0, 1, "true", None):
        with pytest.raises(TypeError, match="greedy must be True or False"):
            check_bool("greedy", value)
