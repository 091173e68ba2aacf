"""Speed of ``vmapsim sweep`` (issue 12), printed, never asserted in tests.

    python benchmarks/bench_sweep.py               # 8 cells of about 2.5 s each
    python benchmarks/bench_sweep.py --ops 12000   # shorter cells

The grid is ``vmapsim sweep --design 2.6.28 --threads 8 --ops OPS --seeds 0-7``, run by
the sweep's own runners (what ``-j 1``, ``-j 2`` and ``--dask local -j 2`` use):

1. one worker (``-j 1``, in this process) against two local worker processes (``-j 2``):
   the speedup (target >= 1.7x on a 2-core machine);
2. a 2-worker Dask LocalCluster against the two local processes: the ratio of wall
   times (target within 15%), with and without the cluster's start-up;
3. the overhead per cell (scheduling, transfer of the cell and its row): the round trip
   of a 1-op cell less its time in the worker, one cell in flight, on one local worker
   process and on a 1-worker LocalCluster (target < 50 ms); and, on the big grid, wall
   x workers less the cells' own time, per cell.

It also checks that the three runs gave the same simulated figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vmapsim.sim import sweep as sw  # noqa: E402


def timed(events, ready: list[float] | None = None) -> tuple[float, list[sw.Event]]:
    t0 = time.perf_counter()
    done = [e for e in events if e.kind == "done"]
    return time.perf_counter() - t0, done


def check(done: list[sw.Event]) -> dict[tuple, dict]:
    bad = [e.row["error"] for e in done if e.row is None or e.row["status"] != "ok"]
    if bad:
        raise SystemExit(f"a cell failed: {bad[0]}")
    return {e.cell.key(): {f: e.row[f] for f in sw.SIMULATED_FIELDS} for e in done if e.row is not None}


def overhead(done: list[sw.Event]) -> float:
    """Median seconds per cell between submitting it and having its row, less the cell's own time."""
    return statistics.median(e.roundtrip - e.row["cell_seconds"] for e in done if e.row is not None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=32000, help="ops per thread of a cell (default 32000)")
    ap.add_argument("--cells", type=int, default=8, help="cells (seeds) in the grid (default 8)")
    ap.add_argument("--tiny", type=int, default=40, help="1-op cells for the overhead (default 40)")
    args = ap.parse_args()
    cells = sw.expand({"design": ["2.6.28"], "threads": [8], "ops": [args.ops],
                       "seeds": list(range(args.cells))})
    print(f"grid: vmapsim sweep --design 2.6.28 --threads 8 --ops {args.ops} --seeds 0-{args.cells - 1}"
          f"  ({len(cells)} cells; {len(os.sched_getaffinity(0))} cores; load average "
          f"{os.getloadavg()[0]:.2f} at the start: other processes share the cores)")

    w1, d1 = timed(sw.run_sequential(cells))
    ref = check(d1)
    secs = [e.row["cell_seconds"] for e in d1 if e.row is not None]
    print(f"  cell time: {min(secs):.2f}..{max(secs):.2f} s (mean {statistics.mean(secs):.2f} s)")
    print(f"  1 worker (-j 1):                     {w1:7.2f} s wall")

    w2, d2 = timed(sw.run_local(cells, 2))
    same_local = check(d2) == ref
    print(f"  2 local processes (-j 2):            {w2:7.2f} s wall   speedup {w1 / w2:.2f}x "
          f"(target >= 1.7x: {'ok' if w1 / w2 >= 1.7 else 'SHORT'})")
    sum2 = sum(e.row["cell_seconds"] for e in d2 if e.row is not None)
    print(f"      mean cell time on 2 processes {sum2 / len(cells):.2f} s (1 worker: "
          f"{statistics.mean(secs):.2f} s; longer = the cores were busy with something else too)")

    ready: list[float] = []
    t0 = time.perf_counter()
    wd, dd = timed(sw.run_dask(cells, "local", 2, on_ready=lambda _: ready.append(time.perf_counter())))
    start = ready[0] - t0 if ready else 0.0
    same_dask = check(dd) == ref
    ratio = wd / w2
    ratio_run = (wd - start) / w2
    print(f"  2-worker LocalCluster (--dask local): {wd:7.2f} s wall   {ratio:.3f}x the local processes "
          f"(target within 15%: {'ok' if abs(ratio - 1) <= 0.15 else 'OVER'})")
    print(f"      of which starting the cluster {start:.2f} s; without it {wd - start:.2f} s, "
          f"{ratio_run:.3f}x the local processes")
    sumd = sum(e.row["cell_seconds"] for e in dd if e.row is not None)
    print(f"  same simulated figures on all three: {'yes' if same_local and same_dask else 'NO'}; "
          f"load average now {os.getloadavg()[0]:.2f}")

    tiny = sw.expand({"design": ["2.6.28"], "threads": [1], "ops": [1], "seeds": list(range(args.tiny))})
    _, tl = timed(sw.run_local(tiny, 1))
    check(tl)
    _, td = timed(sw.run_dask(tiny, "local", 1))
    check(td)
    ol, od = overhead(tl[1:]), overhead(td[1:])  # the first cell also pays for the worker's start
    print(f"  overhead per cell, {args.tiny} 1-op cells one at a time (target < 50 ms):")
    print(f"      local worker process {ol * 1000:6.2f} ms   Dask worker {od * 1000:6.2f} ms")
    print("  idle time per cell on the grid, (wall x 2 - cells' own time) / cells, pool or cluster "
          "start-up and the last cell's wait included:")
    print(f"      local processes {(w2 * 2 - sum2) / len(cells) * 1000:6.0f} ms   "
          f"LocalCluster {(wd * 2 - sumd) / len(cells) * 1000:6.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
