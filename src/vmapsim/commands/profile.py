"""``vmapsim profile``: a readprofile-style listing of where simulated time went.

One line per kernel function (and per lock: a lock's wait is its own entry named
after the lock, e.g. ``_write_lock (vmlist_lock)``), summed over every CPU: ticks
(simulated time / --tick), the function, and its share of the total -- the shape of
the seed's before/after profiles. IPI work appears as ``smp_call_function`` (the
sender: ICR writes and the wait for every acknowledgement),
``smp_call_function_interrupt`` (the receivers' handlers) and the flush function
(``flush_tlb_kernel_range``); idle CPUs' time is ``default_idle``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..errors import ConfigError
from ..hw.cost import get_preset
from ..hw.locks import is_lock_wait
from ..sim.run import RunResult
from ..sim.run import run as simulate
from . import _stacks
from ._args import add_design, positive_float
from ._result import add_formats, parameters, print_json, progress, write_csv
from .bench import add_common, cost_preset, default_pages, positive

NAME = "profile"
HELP = "readprofile-style listing of simulated time per kernel function and lock"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_design(p, "2.6.27", "comma-separated designs, one profile each (the seed's 'before' by default)")
    p.add_argument("--threads", type=positive, default=8, help="threads, one per CPU (default 8)")
    add_common(p)
    p.add_argument("--top", type=positive, default=25, help="lines to list (default 25)")
    p.add_argument("--tick", type=positive_float, default=1000.0,
                   help="simulated ns per tick (default 1000: one tick per microsecond)")
    chains = p.add_argument_group("call chains", _stacks.LOCK_ROWS_HELP)
    chains.add_argument("--folded", action="store_true",
                        help="print folded stacks ('vfree;__vunmap;remove_vm_area;... ticks' per line), "
                             "the input of flamegraph.pl, inferno-flamegraph and speedscope")
    chains.add_argument("--flamegraph", metavar="FILE.svg",
                        help="draw a flame graph of the call chains to FILE (svg, png or pdf)")
    chains.add_argument("--per-cpu", action="store_true",
                        help="split by CPU: a listing per CPU, or a cpuN frame at the root of each stack")
    chains.add_argument("--callers", metavar="FUNC",
                        help="who called into kernel function FUNC, with the time spent in it")
    add_formats(p, "the listed entries (design, function, ns, ticks, share)")


def entries(r: RunResult | dict[str, float]) -> tuple[float, list[dict[str, float | str]]]:
    """(total ns, [{"function", "ns", "share"}] sorted by ns, largest first)."""
    prof = r if isinstance(r, dict) else r.profile
    total = sum(prof.values())
    rows = sorted(prof.items(), key=lambda kv: (-kv[1], kv[0]))
    return total, [{"function": fn, "ns": ns, "share": ns / total if total else 0.0}
                   for fn, ns in rows if ns > 0]


def run(args: argparse.Namespace) -> int:
    if args.tick <= 0:
        print("vmapsim profile: --tick must be positive", file=sys.stderr)
        return 2
    if args.flamegraph is not None:
        out_dir = os.path.dirname(os.path.abspath(args.flamegraph))
        if not os.path.isdir(out_dir):
            print(f"vmapsim profile: --flamegraph {args.flamegraph}: no directory {out_dir}", file=sys.stderr)
            return 2
        if not args.flamegraph.lower().endswith((".svg", ".png", ".pdf")):
            print(f"vmapsim profile: --flamegraph {args.flamegraph}: name an .svg, .png or .pdf file",
                  file=sys.stderr)
            return 2
    results = []
    t0 = time.perf_counter()
    try:
        if args.cpus is not None and args.cpus < args.threads:
            raise ConfigError(f"--cpus {args.cpus} is fewer than --threads {args.threads}")
        with progress(args, "profiling", len(args.design)) as bar:
            for name in args.design:
                bar.describe(f"profiling {name}")
                results.append(simulate(name, args.threads, cpus=args.cpus,
                                        pages=args.pages or default_pages(args.workload), ops=args.ops,
                                        cost=get_preset(cost_preset(args)), seed=args.seed,
                                        workload=args.workload))
                bar.advance()
    except ConfigError as e:
        print(f"vmapsim profile: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    if args.folded or args.flamegraph or args.callers or args.per_cpu:
        return chain_views(results, args)
    if args.json or args.csv:
        out = [profile_json(r, args.tick, args.top) for r in results]
        if args.json:
            print_json(NAME, parameters(args, cost=cost_preset(args)), out, wall)
        else:
            write_csv(("design", "function", "ns", "ticks", "share"),
                      ({"design": d["design"], **e} for d in out for e in d["entries"]))
        return 0
    for i, r in enumerate(results):
        if i:
            print()
        print_profile(r, args)
    return 0


def profile_json(r: RunResult, tick: float, top: int) -> dict[str, Any]:
    """One design's profile: the run's figures, and its first ``top`` entries (the rest
    summed as ``other_ns``)."""
    total, rows = entries(r)
    shown = [{**row, "ticks": float(row["ns"]) / tick} for row in rows[:top]]
    return {"design": r.design, "workload": r.workload, "threads": r.threads, "cpus": r.cpus,
            "pages": r.pages, "ops_per_thread": r.ops_per_thread, "ops": r.ops, "cost": r.cost,
            "seed": r.seed, "tick_ns": tick, "total_ns": total, "total_ticks": total / tick,
            "entries_all": len(rows), "other_ns": sum(float(x["ns"]) for x in rows[top:]),
            "entries": shown}


def print_profile(r: RunResult, args: argparse.Namespace) -> None:
    total, rows = entries(r)
    print(f"# vmapsim profile: {r.design}, {r.workload}, {r.threads} threads on {r.cpus} CPUs, "
          f"{r.ops_per_thread} ops/thread, {r.pages} pages, cost {r.cost}")
    print_listing(r.profile, args.tick, args.top)
    for line in seed_notes(r, total):
        print(line)


def print_listing(profile: dict[str, float], tick: float, top: int, cpu: int | None = None) -> None:
    """readprofile's columns (ticks, function, normalised share), then the lock and IPI
    summary lines; ``cpu``: the listing is that CPU's alone."""
    total, rows = entries(profile)
    where, of = ("summed over all CPUs", "the total") if cpu is None else (f"on CPU {cpu} alone", "the CPU's total")
    print(f"# simulated time {where}; 1 tick = {tick:g} ns; normalised = share of {of}")
    shown = rows[:top]
    width = max([40] + [len(str(row["function"])) for row in shown])
    print(f"{total / tick:>12.0f} {'total':<{width}} {1.0:.4f}")
    for row in shown:
        ns = float(row["ns"])
        print(f"{ns / tick:>12.0f} {row['function']!s:<{width}} {float(row['share']):.4f}")
    for line in lock_notes(profile, total):
        print(line)


#: acquire (uncontended) entries of the lock kinds, 2.6 and qspinlock names
LOCK_FNS = frozenset({"_spin_lock", "_write_lock", "_read_lock", "mutex_lock", "_raw_spin_lock"})


def lock_ipi_share(r: RunResult | dict[str, float], total: float) -> float:
    """Share of all time in lock waits and IPI/flush work."""
    prof = r if isinstance(r, dict) else r.profile
    ipi = {"smp_call_function", "smp_call_function_interrupt", "flush_tlb_kernel_range", "flush_tlb_all"}
    return sum(ns for fn, ns in prof.items() if is_lock_wait(fn) or fn in ipi) / total if total else 0.0


def lock_notes(profile: dict[str, float], total: float) -> list[str]:
    """The lock wait + IPI share, and each lock function's share of non-idle time
    (perf's view: a wait entry ``f (lock)`` counts under ``f``)."""
    out = [f"# lock wait + IPI/flush work: {lock_ipi_share(profile, total):.1%} of all simulated time"]
    busy = total - profile.get("default_idle", 0.0)
    by_fn: dict[str, float] = {}
    for fn, ns in profile.items():
        if is_lock_wait(fn) or fn in LOCK_FNS:
            name = fn.split(" (", 1)[0]
            by_fn[name] = by_fn.get(name, 0.0) + ns
    if by_fn and busy > 0:
        out.append("# lock functions (waits summed over locks), share of non-idle time: " + ", ".join(
            f"{fn} {ns / busy:.1%}" for fn, ns in sorted(by_fn.items(), key=lambda kv: -kv[1])))
    return out


def seed_notes(r: RunResult, total: float) -> list[str]:
    """The seed's figures beside the model's, for the workloads the seed profiled."""
    out: list[str] = []
    if r.workload == "xfsdir":
        from ..workloads import xfsdir

        if "_write_lock (vmlist_lock)" in r.profile:  # the seed's before: a vmlist_lock profile
            wl = r.profile["_write_lock (vmlist_lock)"] / total if total else 0.0
            out.append(f"# _write_lock (vmlist_lock): {wl:.1%} of ticks (prediction); seed's before "
                       f"profile, 64-CPU ia64: {xfsdir.SEED_BEFORE_WRITE_LOCK_SHARE:.1%}")
        else:
            out.append(f"# vmap layer: {xfsdir.vmap_share(r.profile):.2%} of non-idle time (other work "
                       f"fitted to it); seed's after profile: {xfsdir.SEED_AFTER_VMAP_SHARE:.2%}")
    return out


def chain_views(results: list[RunResult], args: argparse.Namespace) -> int:
    """--folded, --flamegraph, --callers and --per-cpu (each design's run in turn)."""
    for i, r in enumerate(results):
        stacks = _stacks.run_stacks(r, args.per_cpu)
        what = (f"{r.design}, {r.workload}, {r.threads} threads on {r.cpus} CPUs, "
                f"{r.ops_per_thread} ops/thread, cost {r.cost}")
        if args.flamegraph:
            path = args.flamegraph
            if len(results) > 1:
                root, ext = os.path.splitext(path)
                path = f"{root}-{r.design}{ext}"
            _stacks.draw_flamegraph(stacks, path, f"Simulated time by kernel call chain: {what}")
            print(f"vmapsim profile: wrote {path}", file=sys.stderr)
        if args.folded:
            for line in _stacks.folded_lines(stacks, args.tick):
                print(line)
        elif args.callers:
            if i:
                print()
            if not _stacks.print_callers(r.stacks(), args.callers, args.tick, args.top):
                print(f"vmapsim profile: {args.callers} did not run in {r.design}'s profile "
                      f"(the chains name e.g. "
                      f"{', '.join(sorted(_stacks.known_functions(r.stacks()))[:6])})", file=sys.stderr)
                return 1
        elif args.per_cpu and not args.flamegraph:
            if i:
                print()
            print(f"# vmapsim profile: {what}")
            for cpu in sorted(r.cpu_stacks):
                flat: dict[str, float] = {}
                for chain, ns in r.cpu_stacks[cpu].items():
                    flat[chain[-1]] = flat.get(chain[-1], 0.0) + ns
                print(f"# CPU {cpu}")
                print_listing(flat, args.tick, args.top, cpu=cpu)
    return 0
