"""Wall time of the model's hot paths on every design, side by side (printed, not asserted).

    python benchmarks/bench_designs.py            # full run (~40 s)
    python benchmarks/bench_designs.py --quick

For each design: wall-clock ns per vmalloc(1 page)+vfree pair and per
vm_map_ram(4)+touch+vm_unmap_ram (vmap+vunmap where the design has no vm_map_ram), with
100 and 10,000 live one-page areas, on a one-CPU kernel. The designs are timed in
interleaved rounds (this machine's speed drifts within a run) and the median of each is
printed, with the ratio of every design to 2.6.28 per round (median). Target of issue 8:
6.1's vmalloc+vfree within 1.5x of 2.6.28's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import vmapsim  # noqa: E402
from vmapsim import PAGE_SIZE  # noqa: E402
from vmapsim.mm import designs  # noqa: E402

BASE = "2.6.28"


def make(design: str, live: int) -> tuple[vmapsim.Kernel, list]:
    k = vmapsim.Kernel(cpus=1, mem_pages=1 << 20, design=design)
    pages = [k.alloc_page() for _ in range(4)]
    for _ in range(live):
        k.get_vm_area(PAGE_SIZE, vmapsim.VM_IOREMAP)
    return k, pages


def vmalloc_pairs(k: vmapsim.Kernel, pages: list, n: int) -> float:
    vmalloc, vfree = k.vmalloc, k.vfree
    t = time.perf_counter()
    for _ in range(n):
        vfree(vmalloc(PAGE_SIZE))
    return (time.perf_counter() - t) / n * 1e9


def map_pairs(k: vmapsim.Kernel, pages: list, n: int) -> float:
    touch = k.touch
    t = time.perf_counter()
    if k.has_vm_map_ram:
        vm_map_ram, vm_unmap_ram = k.vm_map_ram, k.vm_unmap_ram
        for _ in range(n):
            a = vm_map_ram(pages, 4)
            touch(a, 4)
            vm_unmap_ram(a, 4)
    else:
        vmap, vunmap = k.vmap, k.vunmap
        for _ in range(n):
            a = vmap(pages, 4)
            touch(a, 4)
            vunmap(a)
    return (time.perf_counter() - t) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, rounds = (2000, 3) if args.quick else (10000, 7)
    names = designs.design_names()
    print(f"python {sys.version.split()[0]}; {n} ops per round, {rounds} interleaved rounds; designs {', '.join(names)}")
    for what, fn in (("vmalloc+vfree (1 page)", vmalloc_pairs), ("vm_map_ram(4)+touch+unmap", map_pairs)):
        for live in (100, 10000):
            ks = {d: make(d, live) for d in names}
            times: dict[str, list[float]] = {d: [] for d in names}
            for _ in range(rounds):
                for d in names:
                    times[d].append(fn(*ks[d], n))
            print(f"\n{what}, {live:,} live areas: wall ns per op (median of {rounds})")
            for d in names:
                ratios = [a / b for a, b in zip(times[d], times[BASE])]
                print(f"  {d:8s} {statistics.median(times[d]):9,.0f} ns   x{statistics.median(ratios):.2f} of {BASE}")


if __name__ == "__main__":
    main()
