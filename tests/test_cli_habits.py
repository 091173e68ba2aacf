"""The habits of kernel tools (issue 11, section 5): ``vmapsim --version``, one set of
defaults across the commands, and test_vmalloc.sh's ``KEY=VALUE`` parameters."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import vmapsim
from vmapsim import cli
from vmapsim.hw.cost import get_preset

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse's own exits (--version, --help, usage errors)
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert vmapsim.__version__ == version
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out == f"vmapsim {version}\n"


# -- one set of defaults ------------------------------------------------------------------
#: the commands with --cpus/--seed, each with the arguments it needs to parse
COMMANDS = {
    "bench": [], "profile": [], "stress": [], "demo": [], "trace": [],
    "map": ["--out", "x.png"], "replay": ["--vmallocinfo", "x"],
}


def test_the_same_defaults_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser, _ = cli.build_parser()
    opteron = get_preset("opteron-2008")
    machine = opteron.sockets * opteron.cores_per_socket
    assert machine == 8 == vmapsim.Kernel().cpus  # the seed's 2-socket x 4-core Opteron
    for name, extra in COMMANDS.items():
        args = parser.parse_args([name, *extra])
        # a fixed count, or None where the cost preset's machine (or a trace) decides
        assert args.cpus in (machine, None), name
        assert getattr(args, "seed", 0) == 0, name
        rc, out, _ = run_cli(capsys, name, "--help")
        assert rc == 0
        text = " ".join(out.split())
        assert "8 on opteron-2008 as in every command" in text or "default 8: the opteron-2008" in text, name
        if "--seed" in out:
            assert "random seed (default 0, as in every command)" in text, name


def test_the_defaults_reach_the_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run_cli(capsys, "demo")
    assert rc == 0 and "vmapsim demo: design=2.6.28, 8 CPUs" in out
    out_file = tmp_path / "t.txt"
    assert run_cli(capsys, "trace", "--ops", "200", "--out", str(out_file))[0] == 0
    cpus = {int(m) for m in re.findall(r"\[(\d{3})\]", out_file.read_text())}
    assert cpus and max(cpus) < 8 and len(cpus) > 4  # the workload spreads over 8 CPUs
    again = tmp_path / "t0.txt"
    assert run_cli(capsys, "trace", "--ops", "200", "--seed", "0", "--out", str(again))[0] == 0
    assert again.read_text() == out_file.read_text()


# -- test_vmalloc.sh's KEY=VALUE ------------------------------------------------------------
def body(out: str) -> list[str]:
    """The run's lines without the wall-clock one."""
    return [line for line in out.splitlines() if "wall-clock" not in line]


def test_key_value_parameters_are_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    rc, words, _ = run_cli(capsys, "stress", "run_test_mask=7", "nr_threads=2", "test_loop_count=3",
                           "--setup-div", "256")
    assert rc == 0
    rc, opts, _ = run_cli(capsys, "stress", "--run-test-mask", "7", "--nr-threads", "2",
                          "--test-loop-count", "3", "--setup-div", "256")
    assert rc == 0
    assert body(words) == body(opts)
    assert "2 worker(s)" in words and "run_test_mask=0x7 " in words
    summaries = [line for line in words.splitlines() if line.startswith("Summary: ")]
    assert len(summaries) == 3 * 2  # cases 0..2 on each of the two workers
    # options first, words after; the module's bool words; hex masks
    rc, out, _ = run_cli(capsys, "stress", "--design", "6.1", "run_test_mask=0x1",
                         "sequential_test_order=y", "test_loop_count=2")
    assert rc == 0 and "6.1, 1 worker(s)" in out and "sequential_test_order=1 " in out


@pytest.mark.parametrize("argv, message", [
    (["run_test_mask=0"], "run_test_mask=0x0 selects no test case: bits 0..10 select the 11 cases"),
    (["--run-test-mask", "0"], "run_test_mask=0x0 selects no test case"),
    (["run_test_mask=0x800"], "run_test_mask=0x800 selects no test case"),
    (["run_test_mask=0x40000000", "--design", "both"], "run_test_mask=0x40000000 selects no test case"),
    (["run_test_mask=7", "--run-test-mask", "3"], "run_test_mask given both as run_test_mask= and as --run-test-mask"),
    (["use_huge=1"], "'use_huge=1': expected KEY=VALUE with KEY one of nr_threads, "),
    (["nr_threads"], "'nr_threads': expected KEY=VALUE"),
    (["nr_threads=many"], "nr_threads=many: 'many' is not an integer"),
    (["nr_pages=-1"], "nr_pages=-1: -1 must not be negative"),
    (["sequential_test_order=2"], "sequential_test_order=2: must be 0 or 1"),
])
def test_bad_key_value_or_empty_mask(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, out, err = run_cli(capsys, "stress", *argv)
    assert rc == 2
    assert out == ""  # nothing ran
    assert err.startswith(f"vmapsim stress: {message}") and err.count("\n") == 1


def test_a_mask_with_an_existing_case_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # bits past the last case are ignored, as the module ignores them
    rc, out, _ = run_cli(capsys, "stress", "run_test_mask=0x40000001", "test_loop_count=2")
    assert rc == 0 and out.count("Summary: fix_size_alloc_test passed: 1 failed: 0") == 1
