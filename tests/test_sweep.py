"""``vmapsim sweep``: the grid, the same figures on every runner (in this process, on 2
local processes, on a Dask LocalCluster, in ``vmapsim bench``), resume, failures, Ctrl-C,
grid files, the plot and bad options. Every run is tiny (a few ops per thread)."""

from __future__ import annotations

import csv
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import vmapsim
from vmapsim.cli import main
from vmapsim.sim import sweep as sw

GRID = ["--design", "2.6.27,2.6.28", "--threads", "1,3", "--seeds", "0-1", "--ops", "6"]
XFS = ["--design", "2.6.28", "--workload", "xfsdir", "--threads", "2", "--cpus", "4", "--ops", "3",
       "--cost", "opteron-2008"]


def read_rows(path: Path) -> dict[tuple, dict[str, Any]]:
    """The file's rows by cell, checking it is whole: the header, then complete rows."""
    text = path.read_text()
    assert text.endswith("\n")
    lines = list(csv.reader(text.splitlines()))
    assert tuple(lines[0]) == sw.COLUMNS
    rows = {}
    for values in lines[1:]:
        assert len(values) == len(sw.COLUMNS)
        row = {c: sw.parse_value(c, v) for c, v in zip(sw.COLUMNS, values, strict=True)}
        key = sw.Cell(**{k: row[k] for k in sw.PARAM_COLUMNS}).key()
        assert key not in rows, "a cell appears twice"
        rows[key] = row
    return rows


def sweep(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["sweep", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def simulated(row: dict[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in sw.SIMULATED_FIELDS}


def bounded(fn: Callable[[], Any], seconds: float = 180.0) -> Any:
    """fn() in a thread, failing the test (not hanging the suite) if it takes too long."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the test's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not finish within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-worker Dask LocalCluster on 127.0.0.1, stopped after the module's tests."""
    import logging

    distributed = pytest.importorskip("distributed")
    c = bounded(lambda: distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                 host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                                 silence_logs=logging.ERROR), 120)
    try:
        assert c.scheduler_address.startswith("tcp://127.0.0.1:")
        yield c.scheduler_address
    finally:
        bounded(c.close, 60)


def test_grid_is_the_product_with_bench_defaults() -> None:
    cells = sw.expand({"design": ["2.6.27", "rewrite"], "threads": [1, 16], "seeds": [0, 1]})
    assert len(cells) == 8
    by = {(c.design, c.threads, c.seed): c for c in cells}
    assert set(by) == {(d, t, s) for d in ("2.6.27", "2.6.28") for t in (1, 16) for s in (0, 1)}
    c = by[("2.6.28", 1, 0)]
    assert (c.workload, c.cost, c.cpus, c.pages, c.ops_per_thread, c.other_ns) == \
        ("maptouch", "opteron-2008", 8, 4, 12288, None)
    assert by[("2.6.27", 16, 1)].cpus == 16 and by[("2.6.27", 16, 1)].ops_per_thread == 2048
    x = sw.expand({"workload": ["xfsdir"], "design": ["2.6.28"], "threads": [4]})[0]
    assert (x.cost, x.cpus, x.pages) == ("altix-2008", 64, 16)
    assert len(sw.expand({})) == 8  # as bench: both designs at 1, 2, 4, 8 threads


def test_same_figures_sequential_local_processes_dask_and_bench(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster: str) -> None:
    files = {name: tmp_path / f"{name}.csv" for name in ("seq", "local", "dask")}
    grids = (GRID, XFS)
    for name, extra in (("seq", ["-j", "1"]), ("local", ["-j", "2"]), ("dask", ["--dask", cluster])):
        for grid in grids:
            rc, out, err = bounded(lambda grid=grid, extra=extra, name=name:
                                   sweep(capsys, *grid, *extra, "--out", str(files[name])))
            assert rc == 0, err
    rows = {name: read_rows(p) for name, p in files.items()}
    assert len(rows["seq"]) == 9
    assert all(r["status"] == "ok" and r["ns_per_op"] > 0 for r in rows["seq"].values())
    workers = {name: {r["worker"] for r in rs.values() if r["workload"] == "maptouch"}
               for name, rs in rows.items()}
    assert workers["seq"] == {sw.worker_name()}  # -j 1: in this process
    # worker processes, not this one (which of the two takes a tiny cell is up to the pool)
    assert 1 <= len(workers["local"]) <= 2 and sw.worker_name() not in workers["local"]
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers["dask"]) and 1 <= len(workers["dask"]) <= 2
    for key, r in rows["seq"].items():
        assert simulated(rows["local"][key]) == simulated(r)
        assert simulated(rows["dask"][key]) == simulated(r)
    # vmapsim bench with the same options: every simulated field, bit for bit
    fields = [f for f in sw.SIMULATED_FIELDS if f != "other_ns"]  # bench has no --other-ns
    for grid in grids:
        for seed in (0, 1) if grid is GRID else (0,):
            assert main(_bench_argv(grid, seed)) == 0
            results = json.loads(capsys.readouterr().out)["results"]
            assert len(results) == (4 if grid is GRID else 1)
            for b in results:
                (r,) = [r for r in rows["seq"].values()
                        if (r["design"], r["threads"], r["seed"], r["workload"]) ==
                        (b["design"], b["threads"], seed, b["workload"])]
                assert {f: b[f] for f in fields} == {f: r[f] for f in fields}


def _bench_argv(grid: list[str], seed: int) -> list[str]:
    """The sweep's grid options as bench takes them, for one seed."""
    out = ["bench", "--json", "--seed", str(seed)]
    it = iter(grid)
    for opt in it:
        val = next(it)
        if opt == "--seeds":
            continue
        out += [opt, val]
    return out


def test_xfsdir_other_ns_reaches_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv"
    assert sweep(capsys, *XFS, "--other-ns", "0,20000", "--out", str(out))[0] == 0
    rows = sorted(read_rows(out).values(), key=lambda r: r["other_ns"])
    assert [r["other_ns"] for r in rows] == [0.0, 20000.0]
    assert rows[1]["ns_per_op"] > rows[0]["ns_per_op"] + 10000


def test_dask_local_cluster_and_version_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmapsim, "__version__", "0.0.0-other")
    rc, _, err = bounded(lambda: sweep(capsys, *GRID, "--dask", cluster, "--out", str(tmp_path / "v.csv")))
    assert rc == 1
    assert f"Dask worker {cluster.rsplit(':', 1)[0]}:" in err
    assert "has vmapsim 0.1.0, this is 0.0.0-other" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(sw.SweepError, match="cannot import vmapsim"):
        sw.check_worker_versions({"tcp://10.0.0.9:4000": None})


def test_dask_local_starts_and_stops_its_own_cluster(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "l.csv"
    rc, _, err = bounded(lambda: sweep(capsys, "--design", "2.6.28", "--threads", "1,2", "--ops", "3",
                                       "--dask", "local", "-j", "1", "--out", str(out)))
    assert rc == 0, err
    rows = read_rows(out)
    assert len(rows) == 2 and {r["worker"].rsplit(":", 1)[0] for r in rows.values()} == {"tcp://127.0.0.1"}


def test_without_dask_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc, _, err = sweep(capsys, *GRID, "--dask", "local", "--out", str(tmp_path / "n.csv"))
    assert rc == 2 and err == "vmapsim sweep: --dask needs Dask's distributed scheduler: " \
                              "pip install 'vmapsim[dask]'\n"
    # and a sweep without --dask does not need it
    assert sweep(capsys, "--design", "2.6.28", "--threads", "1", "--ops", "2", "-j", "1")[0] == 0


def test_resume_skips_finished_cells_and_reruns_failed_ones(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.csv"
    assert sweep(capsys, "--design", "2.6.28", "--threads", "1,2", "--ops", "4", "-j", "1",
                 "--out", str(out))[0] == 0
    first = read_rows(out)
    # a failed row and a row torn by a kill in mid-write
    lines = out.read_text().splitlines(keepends=True)
    bad = next(csv.reader([lines[1]]))
    bad[sw.COLUMNS.index("threads")] = "4"
    for c in sw.RESULT_COLUMNS:
        bad[sw.COLUMNS.index(c)] = ""
    bad[sw.COLUMNS.index("status")] = "error"
    bad[sw.COLUMNS.index("error")] = "RuntimeError: boom"
    torn = lines[2].replace("2.6.28", "2.6.27")[:40]
    out.write_text("".join(lines) + sw.ResultFile._csv_line(bad) + torn)
    rc, _, err = sweep(capsys, "--design", "2.6.28", "--threads", "1,2,4,8", "--ops", "4", "-j", "1",
                       "--out", str(out))
    assert rc == 0
    assert "2 of 4 cells already in" in err and "2 cells run, 0 failed, 2 already done" in err
    rows = read_rows(out)
    assert sorted(r["threads"] for r in rows.values()) == [1, 2, 4, 8]
    assert all(r["status"] == "ok" for r in rows.values())
    for key, r in first.items():
        assert rows[key] == r  # the cells already there were kept, not rerun
    rc, _, err = sweep(capsys, "--design", "2.6.28", "--threads", "1,2,4,8", "--ops", "4", "--out", str(out))
    assert rc == 0 and "4 of 4 cells already in" in err and read_rows(out) == rows


def test_a_file_of_other_columns_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    rc, _, err = sweep(capsys, *GRID, "--out", str(out))
    assert rc == 2 and err.startswith(f"vmapsim sweep: {out} is not a result file") and err.count("\n") == 1
    assert out.read_text() == "a,b\n1,2\n"


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runmod = importlib.import_module("vmapsim.sim.run")  # vmapsim.sim.run is also the function
    real = runmod.run

    def flaky(design: str, threads: int, **kw: Any) -> Any:
        if threads == 2 and design == "2.6.27":
            raise RuntimeError("simulated failure")
        return real(design, threads, **kw)

    monkeypatch.setattr(runmod, "run", flaky)
    out = tmp_path / "f.csv"
    rc, _, err = sweep(capsys, "--threads", "1,2", "--ops", "3", "-j", "1", "--out", str(out))
    assert rc == 1
    assert "vmapsim sweep: cell failed: 2.6.27 maptouch opteron-2008 2 thr/8 cpu" in err
    assert "RuntimeError: simulated failure" in err and "3 cells run, 1 failed" in err
    rows = list(read_rows(out).values())
    assert len(rows) == 4
    (bad,) = [r for r in rows if r["status"] != "ok"]
    assert (bad["design"], bad["threads"], bad["error"], bad["ns_per_op"]) == \
        ("2.6.27", 2, "RuntimeError: simulated failure", None)


def _die_on_two_threads(cell: sw.Cell) -> dict[str, Any]:
    if cell.threads == 2:
        os._exit(3)  # the worker process dies, as if killed
    return sw.run_cell(cell)


def test_a_lost_worker_process_fails_its_cell_only() -> None:
    cells = sw.expand({"design": ["2.6.28"], "threads": [1, 2, 3, 4, 5], "ops": [3]})
    events = bounded(lambda: list(sw.run_local(cells, 1, fn=_die_on_two_threads)))
    done = {e.cell.threads: e.row for e in events if e.kind == "done"}
    assert sorted(done) == [1, 2, 3, 4, 5]
    assert "worker process lost" in done[2]["error"]
    assert all(done[t]["status"] == "ok" for t in (1, 3, 4, 5))
    assert len({done[t]["worker"] for t in (1, 3, 4, 5)}) == 2  # a new pool after the loss


def test_ctrl_c_leaves_a_valid_file_and_the_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    argv = [sys.executable, "-m", "vmapsim", "sweep", "--design", "2.6.28", "--threads", "8", "--ops", "3000",
            "--seeds", "0-60", "-j", "2", "--out", str(out)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        while p.poll() is None and not (out.exists() and out.read_text().count("\n") >= 3):
            time.sleep(0.05)  # waiting for the first rows, not timing anything
        # the first rows are in: Ctrl-C, as a terminal sends it, to the whole process group
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.startswith("vmapsim sweep: interrupted after ") and "rerun the same command to resume" in err
    rows = read_rows(out)
    assert 2 <= len(rows) < 61
    assert all(r["status"] == "ok" for r in rows.values())


def test_grid_file_blocks_and_command_line_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text('ops = 3\nseeds = "0-1"\n\n'
                    '[[grid]]\ndesign = ["2.6.27", "2.6.28"]\nthreads = [1, 2]\n\n'
                    '[[grid]]\ndesign = "rewrite"\nthreads = "16"\ncost = "modern-x86"\nops = 2\n')
    out = tmp_path / "g.csv"
    assert sweep(capsys, "--grid", str(grid), "--out", str(out), "-j", "1")[0] == 0
    rows = list(read_rows(out).values())
    got = sorted((r["design"], r["threads"], r["cost"], r["ops_per_thread"], r["seed"]) for r in rows)
    want = sorted([(d, t, "opteron-2008", 3, s) for d in ("2.6.27", "2.6.28") for t in (1, 2) for s in (0, 1)]
                  + [("2.6.28", 16, "modern-x86", 2, s) for s in (0, 1)])
    assert got == want
    out2 = tmp_path / "g2.csv"
    assert sweep(capsys, "--grid", str(grid), "--seeds", "5", "--out", str(out2), "-j", "1")[0] == 0
    assert {r["seed"] for r in read_rows(out2).values()} == {5} and len(read_rows(out2)) == 5


@pytest.mark.parametrize("text, needle", [
    ("threads = [1, 2]\nbogus = 3\n", "unknown key 'bogus'"),
    ("threads = [0]\n", "threads: 0 is out of range 1..1024"),
    ("design = [\"2.6.99\"]\n", "unknown design '2.6.99'"),
    ("threads = 1.5\n", "give an integer"),
    ("threads = [\n", "--grid"),
    ("[[grid]]\nthreads = []\n", "empty"),
])
def test_bad_grid_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   text: str, needle: str) -> None:
    grid = tmp_path / "bad.toml"
    grid.write_text(text)
    rc, out, err = sweep(capsys, "--grid", str(grid))
    assert rc == 2 and out == ""
    assert err.startswith("vmapsim sweep: ") and err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize("argv, needle", [
    (["--threads", "0"], "threads: 0 is out of range 1..1024"),
    (["--threads", "4-2"], "is empty"),
    (["--design", "foo"], "unknown design 'foo'"),
    (["--cost", "cray-1"], "unknown 'cray-1'"),
    (["--workload", "nope"], "unknown 'nope'"),
    (["--seeds", "x"], "is not an integer"),
    (["--other-ns", "-1"], "must be a finite number >= 0"),
    (["-j", "0"], "must be positive"),
    (["--threads", "16", "--cpus", "8"], "cpus 8 is fewer than threads 16"),
    (["--plot", "x.txt"], "must end in .png or .svg"),
])
def test_bad_options_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             needle: str) -> None:
    try:
        rc = main(["sweep", *argv])
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("vmapsim sweep: ") and err.count("\n") == 1 and needle in err, err


def test_json_object_to_stdout_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = sweep(capsys, "--design", "2.6.28", "--threads", "1,2", "--ops", "3", "--json", "--quiet")
    assert rc == 0 and err == ""
    rows = json.loads(out)["results"]
    assert [tuple(r) for r in rows] == [sw.COLUMNS] * 2
    assert sorted(r["threads"] for r in rows) == [1, 2] and all(r["status"] == "ok" for r in rows)


def test_json_lines_file_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    base = ["--design", "2.6.28", "--ops", "3", "--json", "-j", "1", "--out", str(out)]
    assert sweep(capsys, *base, "--threads", "1")[0] == 0
    rc, _, err = sweep(capsys, *base, "--threads", "1,2")
    assert rc == 0 and "1 of 2 cells already in" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["threads"] for r in rows) == [1, 2]


def test_plot_small_multiples_with_a_band(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image as mpimg

    one = tmp_path / "one.png"
    two = tmp_path / "two.png"
    assert sweep(capsys, *GRID, "-j", "1", "--plot", str(one), "--quiet")[0] == 0
    assert sweep(capsys, *GRID, "--cost", "opteron-2008,modern-x86", "-j", "1", "--plot", str(two),
                 "--quiet")[0] == 0
    h1, w1 = mpimg.imread(one).shape[:2]
    h2, w2 = mpimg.imread(two).shape[:2]
    assert h1 == h2 and w2 > 1.8 * w1  # two panels side by side
    svg = tmp_path / "s.svg"
    assert sweep(capsys, *GRID, "-j", "1", "--plot", str(svg), "--quiet")[0] == 0
    text = svg.read_text()
    assert "2.6.27 (2 seeds)" in text and "2.6.28 (2 seeds)" in text
    # fill_between draws each design's band over seeds as a filled path
    assert text.count("PolyCollection") >= 2 or text.count("fill-opacity: 0.2") >= 2
