"""``vmapsim trace``: run a workload on the model and write its vmalloc-layer trace in the
format of the real kprobe captures (so ``vmapsim replay --trace`` can read it back)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ._args import add_cpus, add_design, add_seed, nonneg_int
from ._output import add_output
from ._result import add_formats, parameters, print_json, progress

NAME = "trace"
HELP = "generate an ftrace-style kprobe trace of the model running a workload"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..workloads.trace import WORKLOADS

    p.add_argument("--workload", default="mixed", choices=WORKLOADS,
                   help="forkstorm (vmalloc'd stacks), xfsdir (vm_map_ram of 16 pages), mixed (the whole API)")
    p.add_argument("--ops", type=nonneg_int, default=10000, help="about this many calls (default 10000)")
    add_cpus(p)
    add_seed(p)
    add_design(p, "2.6.28", "the design to trace (one)")
    add_output(p, "--out", metavar="FILE", help="write the trace here (default: standard output)")
    add_output(p, "--kprobe-events", metavar="FILE", help="also write the probe definitions here")
    add_output(p, "--vmallocinfo", metavar="FILE",
                   help="also write the model's vmallocinfo after the run (modern format)")
    add_formats(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import VmapError
    from ..workloads.trace import KPROBE_EVENTS, generate_trace
    from ..workloads.vmallocinfo import render_modern

    if args.ops < 0:
        print("vmapsim trace: --ops must not be negative", file=sys.stderr)
        return 2
    if len(args.design) > 1:
        print("vmapsim trace: --design: one design per trace", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        with progress(args, f"tracing {args.workload} on {args.design[0]}"):
            k, rec = generate_trace(args.workload, args.ops, args.cpus, args.seed, design=args.design[0])
    except VmapError as e:
        print(f"vmapsim trace: {e}", file=sys.stderr)
        return 1
    text = rec.text()
    if args.json:
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        _write_extras(args, k, KPROBE_EVENTS, render_modern)
        print_json(NAME, parameters(args), [{
            "design": k.design, "workload": args.workload, "cpus": k.cpus, "events": rec.events,
            "lines": text.count("\n"), "out": args.out,
            "trace_text": None if args.out else text}], time.perf_counter() - t0)
        return 0
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {rec.events} events to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    _write_extras(args, k, KPROBE_EVENTS, render_modern)
    return 0


def _write_extras(args: argparse.Namespace, k: Any, kprobe_events: str, render: Any) -> None:
    if args.kprobe_events:
        with open(args.kprobe_events, "w") as f:
            f.write(kprobe_events)
    if args.vmallocinfo:
        with open(args.vmallocinfo, "w") as f:
            f.write(render(k))
