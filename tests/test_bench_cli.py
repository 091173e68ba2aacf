"""``vmapsim bench`` and ``vmapsim profile`` on tiny runs: tables, JSON schema, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmapsim.cli import main

RESULT_KEYS = {"design", "threads", "cpus", "pages", "ns_per_op", "p99_ns", "ipis_per_op",
               "ipis_received_per_op", "flushes", "purges", "lock_wait_per_op", "wall_seconds",
               "sim_ops_per_sec", "published_ns_per_op", "deviation"}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_json_default_cells(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "bench", "--ops", "12", "--json")
    assert set(out) == {"vmapsim_version", "command", "parameters", "results", "wall_seconds"}
    assert out["command"] == "bench" and out["wall_seconds"] > 0
    assert out["parameters"]["design"] == ["2.6.27", "2.6.28"] and out["parameters"]["cost"] == "opteron-2008"
    cells = [(r["design"], r["threads"]) for r in out["results"]]
    assert cells == [(d, t) for d in ("2.6.27", "2.6.28") for t in (1, 2, 4, 8)]
    for r in out["results"]:
        assert RESULT_KEYS <= set(r)
        assert r["cpus"] == 8 and r["pages"] == 4 and r["ops_per_thread"] == 12
        assert r["ns_per_op"] > 0 and r["p99_ns"] >= 0
        assert r["published_ns_per_op"] is not None
        assert r["deviation"] == pytest.approx(r["ns_per_op"] / r["published_ns_per_op"] - 1)
    legacy = {r["threads"]: r for r in out["results"] if r["design"] == "2.6.27"}
    assert legacy[4]["ipis_per_op"] == pytest.approx(7.0)


def test_bench_cpus_follow_threads(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "bench", "--design", "rewrite", "--threads", "1,16", "--ops", "5", "--json")
    assert [(r["threads"], r["cpus"]) for r in out["results"]] == [(1, 8), (16, 16)]
    assert all(r["published_ns_per_op"] is None or r["threads"] == 1 for r in out["results"])
    out = run_json(capsys, "bench", "--design", "legacy", "--threads", "2", "--cpus", "4",
                   "--pages", "2", "--ops", "5", "--json")
    (r,) = out["results"]
    assert (r["cpus"], r["pages"], r["published_ns_per_op"]) == (4, 2, None)
    assert r["ipis_per_op"] == pytest.approx(3.0)


def test_bench_table_shows_seed_deviation_and_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--ops", "10", "--threads", "1,8"]) == 0
    out = capsys.readouterr().out
    for text in ("2.6.27 (vmapsim)", "2.6.27 (seed)", "70,631", "2.6.28 deviation", "2.6.28 speedup (seed)",
                 "24.4x", "(fit)", "sim ops/s"):
        assert text in out, text


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_bench_plot_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    path = tmp_path / f"bench{suffix}"
    assert main(["bench", "--ops", "5", "--threads", "1,2", "--plot", str(path)]) == 0
    assert path.stat().st_size > 1000
    head = path.read_bytes()[:64]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in path.read_bytes()[:2000] or b"<?xml" in head


def svg_words(path: Path) -> str:
    """The words of an SVG drawn with text kept as text, one space between pieces."""
    import re

    return " ".join(re.sub(r"<[^>]+>", " ", path.read_text()).split())


def test_bench_plot_says_what_it_shows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib

    path = tmp_path / "bench.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        assert main(["bench", "--ops", "5", "--threads", "1,2,4,8,16", "--plot", str(path)]) == 0
    words = svg_words(path)
    assert "map+touch+unmap of 4 pages on a 2-socket x 4-core Opteron (2008): Linux 2.6.27 vs 2.6.28" in words
    assert "maptouch" not in words and "opteron-2008" not in words
    assert "past 8 threads the machine grows" in words
    # the log y axis (ns/op spans over ten times) labels several ticks, as plain numbers
    assert len({n for n in ("2,000", "5,000", "10,000", "20,000", "50,000", "100,000", "200,000")
                if n in words}) >= 4
    # within the preset's CPUs there is nothing to note
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        assert main(["bench", "--ops", "5", "--threads", "1,2", "--design", "6.9", "--cost", "modern-x86",
                     "--plot", str(path)]) == 0
    words = svg_words(path)
    assert "map+touch+unmap of 4 pages on a 2-socket x 16-core x86 server (2020s): Linux 6.9" in words
    assert "grows" not in words


def test_bench_rejects_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "0"])
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "2000"])
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "a,b"])
    with pytest.raises(SystemExit):
        main(["bench", "--cost", "nope"])
    assert main(["bench", "--threads", "4", "--cpus", "2", "--ops", "3"]) == 2
    assert "--cpus 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:  # refused before the run, by argparse
        main(["bench", "--ops", "3", "--threads", "1", "--plot", str(tmp_path / "x.gif")])
    assert ei.value.code == 2
    assert ".png or .svg" in capsys.readouterr().err


def test_profile_json_schema_and_order(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "profile", "--design", "legacy", "--threads", "8", "--ops", "40", "--json",
                   "--top", "1000")
    assert doc["command"] == "profile" and doc["parameters"]["top"] == 1000
    (out,) = doc["results"]
    assert out["entries_all"] == len(out["entries"]) and out["other_ns"] == 0
    assert {"design", "workload", "threads", "total_ns", "entries"} <= set(out)
    assert (out["design"], out["workload"], out["threads"]) == ("2.6.27", "maptouch", 8)
    ns = [e["ns"] for e in out["entries"]]
    assert ns == sorted(ns, reverse=True)
    assert sum(ns) == pytest.approx(out["total_ns"])
    assert sum(e["share"] for e in out["entries"]) == pytest.approx(1.0)
    assert out["entries"][0]["function"] == "_write_lock (vmlist_lock)"
    names = {e["function"] for e in out["entries"]}
    assert {"smp_call_function", "smp_call_function_interrupt", "flush_tlb_kernel_range"} <= names


def test_profile_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--design", "rewrite", "--threads", "2", "--ops", "30", "--top", "5"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(lines) == 6  # total + 5
    ticks, fn, share = lines[0].split()
    assert fn == "total" and float(share) == 1.0
    rows = [ln.split() for ln in lines[1:]]
    assert [float(r[0]) for r in rows] == sorted((float(r[0]) for r in rows), reverse=True)
    assert main(["profile", "--threads", "4", "--cpus", "2", "--ops", "2"]) == 2
