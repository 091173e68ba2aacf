"""`python -m vmapsim demo`: prints /proc/vmallocinfo and the counters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DESIGNS
from vmapsim import cli

SRC = str(Path(__file__).resolve().parents[1] / "src")
LINE = re.compile(r"^0x[0-9a-f]{16}-0x[0-9a-f]{16} +\d+ \S+")


def check_demo_output(out: str, cpus: int) -> None:
    # modern kernels also list vmap blocks (vm_map_ram) and lazily freed areas
    info = [line for line in out.splitlines() if LINE.match(line)
            and not line.endswith((" vm_map_ram", " unpurged vm_area"))]
    # one vmalloc per CPU is kept (one freed again) plus the ioremap area
    assert len(info) == cpus - 1 + 1, out
    assert sum(" vmalloc" in line and "pages=3" in line for line in info) == cpus - 1
    assert sum(line.endswith(" ioremap") for line in info) == 1
    for c in range(cpus):
        assert f"hello from CPU {c}" in out
    counters = re.search(r"^counters: (.*)$", out, re.M)
    assert counters, out
    values = dict(kv.split("=") for kv in counters.group(1).split(", "))
    assert {"ipis", "tlb_flushes", "purges"} <= values.keys()
    assert all(v.isdigit() for v in values.values())
    assert "all invariants hold" in out


def test_demo_subprocess() -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "vmapsim", "demo"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    check_demo_output(proc.stdout, 8)  # every command's default machine: 8 CPUs


@pytest.mark.parametrize("design", DESIGNS)
def test_demo_in_process(capsys: pytest.CaptureFixture[str], design: str) -> None:
    assert cli.main(["demo", "--cpus", "3", "--design", design]) == 0
    out = capsys.readouterr().out
    check_demo_output(out, 3)
    assert f"design={design}" in out


def test_rewrite_demo_flushes_once_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--cpus", "4"]) == 0
    out = capsys.readouterr().out
    before = re.search(r"^counters: .*\bipis=(\d+)", out, re.M)
    after = re.search(r"^after vm_unmap_aliases\(\): .*\bipis=(\d+)", out, re.M)
    assert before and after
    assert int(after.group(1)) == int(before.group(1)) + 3  # one global flush: 3 IPIs


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out
