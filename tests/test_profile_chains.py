"""``vmapsim profile``'s call-chain views: --folded, --per-cpu, --callers, --flamegraph."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmapsim.cli import main

BASE = ["profile", "--threads", "4", "--cpus", "4", "--ops", "40", "--tick", "1"]
FOLDED = re.compile(r"^(\S[^;]*(?:;[^;]+)*) (\d+)$")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    cap = capsys.readouterr()
    return cap.out, cap.err


def folded(out: str) -> dict[tuple[str, ...], int]:
    chains: dict[tuple[str, ...], int] = {}
    for line in out.splitlines():
        m = FOLDED.match(line)
        assert m, f"not a folded-stack line: {line!r}"
        chain = tuple(m.group(1).split(";"))
        assert chain not in chains, f"chain listed twice: {line!r}"
        chains[chain] = int(m.group(2))
    return chains


def listing_total(out: str) -> int:
    (total,) = [int(line.split()[0]) for line in out.splitlines() if re.match(r"^\s*\d+ total\s", line)]
    return total


def test_folded_lines_are_kernel_call_chains(capsys: pytest.CaptureFixture[str]) -> None:
    chains = folded(run(capsys, *BASE, "--folded")[0])
    # 2.6.27's vunmap takes vmlist_lock for writing in remove_vm_area: the wait is a leaf there
    assert ("vunmap", "__vunmap", "remove_vm_area", "_write_lock (vmlist_lock)") in chains
    assert ("vunmap", "__vunmap", "remove_vm_area", "_write_lock") in chains
    assert any(c[0] == "vmap" and c[-1] == "_write_lock (vmlist_lock)" for c in chains)
    # time outside any kernel call is a chain of one
    assert ("touch",) in chains
    assert all(n > 0 for n in chains.values())


def test_folded_ticks_sum_to_the_listing_total(capsys: pytest.CaptureFixture[str]) -> None:
    chains = folded(run(capsys, *BASE, "--folded")[0])
    total = listing_total(run(capsys, *BASE)[0])
    # each line is rounded to a whole tick (1 ns here): the sums differ by under half a tick a line
    assert abs(sum(chains.values()) - total) <= len(chains) / 2 + 1
    assert total > 1000


def test_folded_leaves_match_the_flat_listing(capsys: pytest.CaptureFixture[str]) -> None:
    chains = folded(run(capsys, *BASE, "--folded")[0])
    listing = run(capsys, *BASE, "--top", "1000")[0]
    flat = {m.group(2).strip(): int(m.group(1)) for m in
            (re.match(r"^\s*(\d+) (.+?)\s+[01]\.\d{4}$", line) for line in listing.splitlines()) if m}
    by_leaf: dict[str, int] = {}
    for chain, n in chains.items():
        by_leaf[chain[-1]] = by_leaf.get(chain[-1], 0) + n
    lock = "_write_lock (vmlist_lock)"
    assert abs(by_leaf[lock] - flat[lock]) <= len(chains)


def test_modern_designs_show_qspinlock_rows(capsys: pytest.CaptureFixture[str]) -> None:
    chains = folded(run(capsys, "profile", "--design", "6.9", "--threads", "4", "--ops", "40", "--tick", "1",
                        "--folded")[0])
    leaves = {c[-1] for c in chains}
    assert "_raw_spin_lock" in leaves
    assert any(leaf.startswith("native_queued_spin_lock_slowpath (") for leaf in leaves)
    assert not any(leaf.startswith("_write_lock") for leaf in leaves)


def test_per_cpu_splits_by_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, *BASE, "--per-cpu", "--top", "1000")[0]
    assert "summed over all CPUs" not in out
    cpus = re.findall(r"^# CPU (\d+)$", out, re.M)
    assert cpus == ["0", "1", "2", "3"]
    for c in cpus:
        assert f"# simulated time on CPU {c} alone;" in out
    per_cpu_totals = [int(line.split()[0]) for line in out.splitlines() if re.match(r"^\s*\d+ total\s", line)]
    assert len(per_cpu_totals) == 4
    total = listing_total(run(capsys, *BASE)[0])
    assert abs(sum(per_cpu_totals) - total) <= 4
    # the folded form puts a cpuN frame at the root, and the CPUs' chains add up to the whole
    split = folded(run(capsys, *BASE, "--per-cpu", "--folded")[0])
    assert {c[0] for c in split} == {"cpu0", "cpu1", "cpu2", "cpu3"}
    whole = folded(run(capsys, *BASE, "--folded")[0])
    key = ("vunmap", "__vunmap", "remove_vm_area", "_write_lock (vmlist_lock)")
    assert abs(sum(n for c, n in split.items() if c[1:] == key) - whole[key]) <= 4


def test_callers_names_the_callers(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, *BASE, "--callers", "remove_vm_area")[0]
    assert "callers of remove_vm_area" in out
    assert re.search(r"^\s*\d+ __vunmap\s", out, re.M)
    assert "vunmap -> __vunmap -> remove_vm_area" in out
    out = run(capsys, *BASE, "--callers", "_write_lock (vmlist_lock)")[0]
    assert re.search(r"^\s*\d+ remove_vm_area\s", out, re.M)
    assert re.search(r"^\s*\d+ __get_vm_area_node\s", out, re.M)


def test_callers_of_an_unknown_function_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--callers", "no_such_function"]) == 1
    err = capsys.readouterr().err
    assert "no_such_function did not run" in err and "Traceback" not in err


def test_flamegraph_writes_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "flame.svg"
    _, err = run(capsys, *BASE, "--flamegraph", str(path))
    assert f"wrote {path}" in err
    text = path.read_text()
    assert text.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in text
    assert "remove_vm_area" in text and "vmlist_lock" in text


def test_flamegraph_bad_path_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([*BASE, "--flamegraph", str(tmp_path / "nodir" / "f.svg")]) == 2
    assert main([*BASE, "--flamegraph", str(tmp_path / "f.txt")]) == 2
    err = capsys.readouterr().err
    assert "no directory" in err and ".svg" in err and "Traceback" not in err
