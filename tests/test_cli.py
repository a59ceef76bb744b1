"""What the entry points share: one line `error: <message>` on stderr and exit status 2."""

import pytest

from sapo_core.cli import ArgumentParser, fail, guarded


def test_fail_prints_one_line_and_returns_2(capsys):
    assert fail("bad value\n  on two lines") == 2
    assert capsys.readouterr().err == "error: bad value on two lines\n"


def test_the_parser_refuses_in_one_line_with_exit_2(capsys):
    parser = ArgumentParser(prog="prog")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--n", "x"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: prog: argument --n: invalid int value: 'x' (see --help)\n"


def test_guarded_turns_the_named_errors_into_exit_2_and_lets_others_through(capsys):
    @guarded(ValueError)
    def main(argv=None):
        if argv == ["bad"]:
            raise ValueError("bad input")
        if argv == ["bug"]:
            raise KeyError("a bug")
        return 0

    assert main([]) == 0
    assert main(["bad"]) == 2 and capsys.readouterr().err == "error: bad input\n"
    with pytest.raises(KeyError):
        main(["bug"])
