"""Bad command-line options give a clear message and exit status 2 (argparse's);
an unwritable output file gives a message and 1, never a traceback."""

from __future__ import annotations

import pytest

from vmapsim.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--design", "foo"], "unknown design 'foo'"),
    (["demo", "--cpus", "0"], "must be positive"),
    (["demo", "--cpus", "5000"], "1..1024"),
    (["map", "--out", "x.png", "--rows", "0"], "must be positive"),
    (["map", "--out", "x.png", "--ops", "-1"], "must not be negative"),
    (["trace", "--cpus", "0"], "must be positive"),
    (["replay", "--trace", "x", "--cpus", "-1"], "must be positive"),
    (["stress", "--nr-pages", "-1"], "must not be negative"),
    (["bench", "--threads", "0"], "out of range"),
])
def test_bad_option_exits_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert needle in capsys.readouterr().err


def test_unwritable_output_is_a_message(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:  # checked when the options are parsed, before the run
        main(["trace", "--ops", "10", "--out", str(tmp_path / "no" / "such" / "dir")])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and "Traceback" not in err
