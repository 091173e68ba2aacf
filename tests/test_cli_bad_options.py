"""Every subcommand, given bad options, prints one ``vmapsim CMD: ...`` line and exits 2
(bad usage) or 1 (a run that failed); no traceback ever reaches the user (issue 10,
section 2).

The commands and their options are discovered from ``cli.build_parser()``, so a new
command or option is covered without touching this file. Each option that takes a value
is given values no option accepts (``abc``, empty, ``1,,2``, ``nan``; for an output
file, a missing directory, a directory, an empty name). A value argparse refuses must
give one line and 2; a value it lets through (a free-form string) is run in a
subprocess, which must fail cleanly or, if the value is one the command takes, run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmapsim.cli import build_parser, main
from vmapsim.commands._output import OUTPUT_TYPES

PARSER, TABLE = build_parser()
COMMANDS = sorted(TABLE)
JUNK = ["abc", "", "1,,2", "nan"]
NO_VALUE = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
            argparse._VersionAction, argparse.BooleanOptionalAction, argparse._CountAction,
            argparse._StoreConstAction)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A small trace and snapshot of the model's own, for commands that need an input."""
    d = tmp_path_factory.mktemp("inputs")
    trace, info = d / "trace.txt", d / "vmallocinfo.txt"
    assert main(["trace", "--ops", "40", "--out", str(trace), "--vmallocinfo", str(info)]) == 0
    return {"trace": str(trace), "vmallocinfo": str(info)}


def required_args(cmd: str, inputs: dict[str, str], tmp: Path) -> list[str]:
    """Values for what ``cmd`` requires (a required option, one of a required group)."""
    sub = PARSER.subparsers[cmd]
    out: list[str] = []
    needed = [a for a in sub._actions if a.required and a.option_strings]
    for g in sub._mutually_exclusive_groups:
        if g.required:
            needed.append(next(a for a in g._group_actions if a.dest in inputs))
    for a in needed:
        if a.type in OUTPUT_TYPES:
            out += [a.option_strings[0], str(tmp / f"{a.dest}.png")]
        elif a.dest in inputs:
            out += [a.option_strings[0], inputs[a.dest]]
        else:
            raise AssertionError(f"{cmd}: no value known for the required {a.option_strings[0]}; add one here")
    return out


def bad_values(action: argparse.Action, tmp: Path) -> list[str]:
    if action.type in OUTPUT_TYPES:
        return [str(tmp / "no" / "such" / "dir" / "x.png"), str(tmp), ""]
    return JUNK


def cases() -> list[tuple[str, str, str]]:
    out = []
    for cmd in COMMANDS:
        for a in PARSER.subparsers[cmd]._actions:
            if not a.option_strings or isinstance(a, NO_VALUE) or a.nargs == 0:
                continue
            for i in range(4):
                out.append((cmd, a.option_strings[-1], str(i)))
    return out


def check_one_line(cmd: str, rc: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert rc in (1, 2), (rc, err)
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith(f"vmapsim {cmd}: "), err
    assert sum(line.startswith("vmapsim") for line in lines) == 1, err


@pytest.mark.parametrize("cmd, opt, which", cases())
def test_bad_option_values(cmd: str, opt: str, which: str, inputs: dict[str, str], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    sub = PARSER.subparsers[cmd]
    action = next(a for a in sub._actions if opt in a.option_strings)
    values = bad_values(action, tmp_path)
    if int(which) >= len(values):
        pytest.skip("fewer bad values for this option")
    value = values[int(which)]
    base = [a for a in required_args(cmd, inputs, tmp_path)]
    if opt in base:  # replace the required value
        i = base.index(opt)
        del base[i:i + 2]
    for g in sub._mutually_exclusive_groups:  # one of a group: drop the others
        if action in g._group_actions:
            for other in g._group_actions:
                if other is not action and other.option_strings[0] in base:
                    i = base.index(other.option_strings[0])
                    del base[i:i + 2]
    argv = [cmd, *base, f"{opt}={value}"]
    try:
        _, extra = PARSER.parse_known_args(argv)
    except SystemExit as e:  # argparse refused it: check main() says so on one line
        capsys.readouterr()
        with pytest.raises(SystemExit) as ei:
            main(argv)
        check_one_line(cmd, int(ei.value.code or 0), capsys.readouterr().err)
        assert ei.value.code == 2 == e.code
        return
    capsys.readouterr()
    # a free-form value argparse took: run it (in its own process, bounded in time)
    proc = subprocess.Popen([sys.executable, "-m", "vmapsim", *argv], cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:  # the command took the value and is running: fine
        os.killpg(proc.pid, 9)
        proc.communicate()
        return
    if proc.returncode:
        check_one_line(cmd, proc.returncode, err)
    else:
        assert "Traceback" not in err, err


@pytest.mark.parametrize("argv, code, needle", [
    (["bench", "--threads", "1,,2"], 2, "empty entry"),
    (["bench", "--threads", "2,1,2"], 2, "given twice"),
    (["bench", "--plot", "/nonexistent/dir/x.png"], 2, "no such directory"),
    (["bench", "--plot", "x.pdf"], 2, ".png or .svg"),
    (["stress", "--nr-threads", "-5"], 2, "must not be negative"),
    (["stress", "nr_threads=-5"], 2, "nr_threads must not be negative"),
    (["demo", "--cpus", "65000"], 2, "1..1024"),
    (["demo", "stray"], 2, "unrecognized arguments: stray"),
    (["profile", "--tick", "nan"], 2, "positive finite"),
    (["map", "--out", "x.pdf"], 2, ".png or .svg"),
    (["trace", "--out", "same.txt", "--vmallocinfo", "same.txt"], 2, "name the same file"),
    (["trace", "--out", "/nonexistent/x.txt"], 2, "no such directory"),
])
def test_the_issues_examples(argv: list[str], code: int, needle: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    err = capsys.readouterr().err
    check_one_line(argv[0], rc, err)
    assert rc == code and needle in err
    assert not list(tmp_path.iterdir()), "nothing is written when the options are refused"


def test_an_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: argparse.Namespace) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(TABLE["designs"], "run", boom)
    monkeypatch.delenv("VMAPSIM_DEBUG", raising=False)
    assert main(["designs"]) == 1
    err = capsys.readouterr().err
    check_one_line("designs", 1, err)
    assert "internal error: ValueError: a bug" in err
    monkeypatch.setenv("VMAPSIM_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["designs"])


@pytest.mark.parametrize("argv", [["bench", "--threads", "1", "--ops", "200"],
                                  ["bench", "--threads", "1", "--ops", "200", "--json"],
                                  ["profile", "--threads", "1", "--ops", "200"],
                                  ["trace", "--ops", "3000"], ["demo"], ["designs"]])
def test_a_broken_pipe_ends_quietly(argv: list[str]) -> None:
    """``vmapsim bench | head -1``: status 0, nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "vmapsim", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err.strip() == "", err


def test_replay_input_error_is_one_line_and_dask_address_is_checked(tmp_path, capsys) -> None:
    # issue 10: one 'vmapsim CMD: ...' line; a bad --dask address is bad usage (exit 2)
    from vmapsim.cli import main

    bad = tmp_path / "t.txt"
    bad.write_text("# tracer: nop\ngarbage line\n")
    assert main(["replay", "--trace", str(bad), "--no-snapshots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmapsim replay: ")
    assert main(["sweep", "--dask", "abc", "--design", "2.6.28", "--threads", "1", "--ops", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vmapsim sweep: --dask: give a scheduler address (tcp://HOST:8786) or 'local', got 'abc'"]
