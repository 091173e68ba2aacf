"""Speed of the timing engine (issue 3), printed, never asserted in tests.

    python benchmarks/bench_sim.py            # all three figures
    python benchmarks/bench_sim.py --quick    # smaller runs

Prints the wall-clock time and simulated operations per wall second of:
1. the default ``vmapsim bench`` (both designs, 1/2/4/8 threads, default ops per
   thread) -- target under 20 s, with the rewrite's lazy purge firing several times
   at 8 CPUs;
2. the rewrite at 1024 CPUs x 1,000 ops each -- target under a minute;
3. the legacy design at 64 CPUs (default ops per thread) -- target under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vmapsim.sim.run import default_ops, run  # noqa: E402


def line(label: str, results: list, wall: float, target: float) -> None:
    ops = sum(r.ops for r in results)
    flag = "ok" if wall < target else "OVER TARGET"
    print(f"{label:<44} {wall:7.2f} s wall  {ops:>9,} ops  {ops / wall:>9,.0f} sim ops/s  "
          f"(target < {target:.0f} s: {flag})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the operations")
    args = ap.parse_args()
    scale = 10 if args.quick else 1

    t0 = time.perf_counter()
    res = [run(d, t, ops=default_ops(d) // scale) for d in ("legacy", "rewrite") for t in (1, 2, 4, 8)]
    wall = time.perf_counter() - t0
    line("default bench (both designs, 1/2/4/8 thr)", res, wall, 20)
    r8 = res[-1]
    print(f"    rewrite at 8 CPUs: {r8.purges} lazy purges, {r8.ops_per_thread} ops/CPU, "
          f"{r8.ns_per_op:.0f} ns/op")
    for r in res:
        print(f"    {r.design:8s} {r.threads} thr: {r.wall_seconds:6.2f} s  {r.sim_ops_per_sec:>8,.0f} sim ops/s")

    t0 = time.perf_counter()
    big = run("rewrite", 1024, ops=1000 // scale)
    wall = time.perf_counter() - t0
    line("rewrite, 1024 CPUs x 1,000 ops", [big], wall, 60)
    print(f"    {big.ns_per_op:.0f} ns/op, {big.purges} purges, {big.ipis_per_op:.3g} IPIs sent/op, "
          f"{big.ipis_received_per_op:.3g} received/op")

    t0 = time.perf_counter()
    leg = run("legacy", 64, ops=default_ops("legacy") // scale)
    wall = time.perf_counter() - t0
    line(f"legacy, 64 CPUs x {leg.ops_per_thread:,} ops", [leg], wall, 60)
    print(f"    {leg.ns_per_op:.0f} ns/op, {leg.ipis_per_op:.0f} IPIs sent/op, "
          f"lock wait {leg.lock_wait_per_op:.0f} ns/op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
