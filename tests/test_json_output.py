"""Every command's --json against docs/schema/result.schema.json, --csv read back with
the csv module, stress's Summary lines as they happen, tables that fit the terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vmapsim.cli import main
from vmapsim.workloads import test_vmalloc as tv

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "schema" / "result.schema.json").read_text())
REAL = ROOT / "tests" / "fixtures" / "real-linux-6.1"
TRACE = str(REAL / "xfsdir" / "trace.txt")
SNAP = str(REAL / "forkstorm" / "vmallocinfo-after.txt")

COMMANDS = {
    "bench": ["bench", "--threads", "1,2", "--ops", "5"],
    "profile": ["profile", "--threads", "2", "--ops", "5", "--top", "4"],
    "stress": ["stress", "--test-loop-count", "2", "--setup-div", "256", "--cpus", "2", "--nr-threads", "2",
               "--run-test-mask", "0x7"],
    "replay_trace": ["replay", "--trace", TRACE, "--no-vmallocinfo"],
    "replay_snapshot": ["replay", "--vmallocinfo", SNAP, "--no-vmallocinfo"],
    "trace": ["trace", "--ops", "200", "--cpus", "2"],
    "map": ["map", "--ops", "200", "--cpus", "2"],
    "designs": ["designs"],
    "sweep": ["sweep", "--design", "2.6.27,2.6.28", "--threads", "1,2", "--ops", "3", "-j", "1", "--quiet"],
}


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def walk(x: Any, path: str = "") -> Any:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, x


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_json_matches_the_schema(name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = list(COMMANDS[name])
    if name == "map":
        argv += ["--out", str(tmp_path / "m.png")]
    doc = json.loads(run(capsys, argv + ["--json"]))
    jsonschema.validate(doc, SCHEMA)
    assert doc["command"] == argv[0] and doc["results"]
    for path, v in walk(doc):
        # no address as a decimal integer: a kernel address is above 2**47
        assert not (isinstance(v, int) and v >= 1 << 47), path
        if isinstance(v, str) and v.startswith("0x"):
            assert re.fullmatch(r"0x[0-9a-f]+", v), path


def test_the_schema_refuses_what_it_should() -> None:
    good = {"vmapsim_version": "0.1.0", "command": "designs", "parameters": {},
            "results": [{"name": "x", "aliases": [], "kernel": "k"}], "wall_seconds": 0.0}
    jsonschema.validate(good, SCHEMA)
    for bad in ({**good, "results": [{"name": "x", "aliases": [], "kernel": "k", "Bad Key": 1}]},
                {**good, "seconds": 1.0},
                {k: v for k, v in good.items() if k != "wall_seconds"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_common_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("bench", "profile", "stress"):
        p = json.loads(run(capsys, COMMANDS[name] + ["--json"]))["parameters"]
        assert {"design", "cpus", "cost", "seed"} <= set(p), name


def test_sweep_json_is_one_object_and_resumes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = tmp_path / "cells.jsonl"
    base = ["sweep", "--design", "2.6.28", "--ops", "3", "-j", "1", "--quiet", "--json", "--out", str(lines)]
    first = json.loads(run(capsys, base + ["--threads", "1"]))
    jsonschema.validate(first, SCHEMA)
    assert [r["threads"] for r in first["results"]] == [1]
    # the rows went to --out as JSON lines, one a line, as the cells finished
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["threads"] for r in rows] == [1]
    # a rerun resumes from the file: one cell run, and the object holds the whole grid
    second = json.loads(run(capsys, base + ["--threads", "1,2"]))
    jsonschema.validate(second, SCHEMA)
    assert second["parameters"]["cells"] == 2 and second["parameters"]["already_done"] == 1
    assert [r["threads"] for r in second["results"]] == [1, 2]
    assert second["results"][0] == first["results"][0]  # read back from the file, not rerun
    assert all(r["status"] == "ok" and r["ns_per_op"] > 0 for r in second["results"])
    assert len(lines.read_text().splitlines()) == 2


def test_sweep_json_without_out_prints_only_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, COMMANDS["sweep"] + ["--json"])
    doc = json.loads(out)  # the whole of stdout is the one object: no JSON lines before it
    assert doc["command"] == "sweep" and len(doc["results"]) == 4
    assert [(r["design"], r["threads"]) for r in doc["results"]] == [
        ("2.6.27", 1), ("2.6.27", 2), ("2.6.28", 1), ("2.6.28", 2)]


def test_replay_pairs_are_labelled(capsys: pytest.CaptureFixture[str]) -> None:
    (d,) = json.loads(run(capsys, COMMANDS["replay_trace"] + ["--json"]))["results"]
    assert d["after"]["by_kind"]["unpurged"] == {"kernel": 47, "model": 47}
    assert d["kernel_base"] == d["model_base"] and d["kernel_base"].startswith("0xffff")
    assert d["rates"] == {"free_run": {"matched": 589, "compared": 589}}
    assert all(set(s) == {"line", "kernel", "model"} for s in d["lazy"])


def test_profile_json_honours_top(capsys: pytest.CaptureFixture[str]) -> None:
    (r,) = json.loads(run(capsys, COMMANDS["profile"] + ["--json"]))["results"]
    assert len(r["entries"]) == 4 < r["entries_all"]
    assert sum(e["ns"] for e in r["entries"]) + r["other_ns"] == pytest.approx(r["total_ns"])
    assert (r["cost"], r["seed"], r["pages"]) == ("opteron-2008", 0, 4)


@pytest.mark.parametrize("name, header", [
    ("bench", ["design", "workload", "threads"]),
    ("profile", ["design", "function", "ns", "ticks", "share"]),
    ("stress", ["design", "worker", "test", "passed", "failed", "expected_failures", "repeat", "loops",
                "avg_usec"]),
    ("replay_trace", ["design", "kind", "kernel_areas", "model_areas", "kernel_bytes", "model_bytes"]),
])
def test_csv_has_one_header_and_plain_numbers(name: str, header: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.reader(io.StringIO(run(capsys, COMMANDS[name] + ["--csv"]))))
    assert rows[0][:len(header)] == header and len(rows) > 1
    numeric = [i for i, h in enumerate(rows[0]) if h in ("threads", "ns_per_op", "ns", "share", "passed",
                                                          "avg_usec", "kernel_areas", "model_bytes")]
    assert numeric
    for row in rows[1:]:
        assert len(row) == len(rows[0])
        for i in numeric:
            float(row[i])  # a plain number: no thousands separator, no unit


def test_json_and_csv_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(COMMANDS["bench"] + ["--json", "--csv"])
    assert e.value.code == 2


def test_stress_lines_come_as_cases_finish(capsys: pytest.CaptureFixture[str]) -> None:
    params = tv.StressParams(nr_threads=2, test_loop_count=2, run_test_mask=0x7, setup_div=256)
    seen: list[str] = []
    r = tv.run(params, cpus=2, on_line=seen.append)
    assert sorted(seen) == sorted(r.lines())  # the same lines, in the order they happened
    for w in r.workers:  # each worker's cycles line after its Summary lines
        mine = [i for i, ln in enumerate(seen) if ln.startswith("All test took worker") and
                ln.startswith(f"All test took worker{w.index}=")]
        assert len(mine) == 1
    out = run(capsys, COMMANDS["stress"])
    printed = [ln for ln in out.splitlines() if ln.startswith(("Summary:", "All test took"))]
    assert printed == seen


def _bench_text(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    return run(capsys, ["bench", "--ops", "5"])


@pytest.mark.parametrize("columns", [80, 120])
def test_bench_tables_cut_no_number(columns: int, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = _bench_text(capsys, monkeypatch, columns)
    assert "…" not in out and "..." not in out
    assert max(len(ln) for ln in out.splitlines()) <= columns
    for col in ("ns/op", "p99 ns", "IPI recv/op", "lock wait/op", "sim ops/s", "70,631", "24.4x"):
        assert col in out, col
    if columns == 80:
        assert "part 2 of" in out  # the per-cell table is split, and says so


def test_ascii_rules_under_lang_c(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LC_ALL", "LC_CTYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "C")
    out = _bench_text(capsys, monkeypatch, 120)
    assert out.isascii() and "+---" in out and "| 2.6.27 (vmapsim)" in out
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert not _bench_text(capsys, monkeypatch, 120).isascii()  # box drawing on a UTF-8 terminal


def test_demo_prints_tlb_contents_in_hex(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, ["demo", "--cpus", "2"])
    tlb = [ln for ln in out.splitlines() if ln.startswith("TLB of CPU")]
    assert tlb and all(re.search(r"0xffff[0-9a-f]+", ln) for ln in tlb if "0 entries" not in ln)


def test_quiet_is_accepted_everywhere(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name, argv in COMMANDS.items():
        if name == "designs":
            continue
        extra = ["--out", str(tmp_path / "m.png")] if name == "map" else []
        assert main(argv + extra + ["--quiet"]) == 0, name
        capsys.readouterr()
    assert os.environ.get("VMAPSIM_DEBUG") is None
