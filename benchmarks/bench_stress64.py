"""The kernel's 64-thread stress run on the Threadripper, both 6.x designs (issue 9).

    python benchmarks/bench_stress64.py [--loops N] [--designs 6.1,6.9]

Runs ``vmapsim stress --run-test-mask 7 --nr-threads 64 --setup-div 1 --design D --cost
threadripper-3970x --test-loop-count N --check end`` (the kernel's set-up sizes; check()
once at the end) for each design and prints, per design, the wall time of the run (the
target: under 10 minutes each on this machine), the simulated time of the whole run,
and the ratio of the simulated times (a prediction: nothing was fitted to multi-job
figures).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vmapsim.workloads import test_vmalloc as tv  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=100, help="test_loop_count (default 100)")
    ap.add_argument("--designs", default="6.1,6.9")
    args = ap.parse_args()
    params = tv.StressParams(nr_threads=64, test_loop_count=args.loops, run_test_mask=7, setup_div=1)
    print(f"python {sys.version.split()[0]}; run_test_mask=7 nr_threads=64 setup_div=1 "
          f"test_loop_count={args.loops}, cost threadripper-3970x, check at the end")
    sim: dict[str, float] = {}
    for design in args.designs.split(","):
        t = time.perf_counter()
        r = tv.run(params, design=design, cost="threadripper-3970x", check="end")
        wall = time.perf_counter() - t
        sim[design] = r.makespan_ns
        failed = sum(d.failed - d.expected_failures for w in r.workers for d in w.data)
        print(f"  {design:5s} wall {wall:7.1f} s   simulated run {r.makespan_ns / 1e6:12,.3f} ms   "
              f"unexpected failures {failed}")
    names = list(sim)
    if len(names) == 2 and sim[names[1]]:
        print(f"  simulated time ratio {names[0]} / {names[1]}: {sim[names[0]] / sim[names[1]]:.2f}x "
              f"(prediction)")


if __name__ == "__main__":
    main()
