"""``vmapsim replay``: rebuild a /proc/vmallocinfo snapshot, or replay an ftrace trace,
on the model and compare."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._args import CPUS_HELP, DEFAULT_CPUS, add_cpus, add_design, integer
from ._result import (
    add_formats,
    counts,
    hexaddr,
    pair,
    pairs,
    parameters,
    print_json,
    progress,
    snake,
    write_csv,
)

NAME = "replay"
HELP = "replay a real /proc/vmallocinfo snapshot or ftrace trace on the model and compare"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vmallocinfo", metavar="FILE", help="a /proc/vmallocinfo snapshot (2.6.x or modern)")
    src.add_argument("--trace", metavar="FILE", help="ftrace text output (vmalloc tracepoints or kprobes)")
    p.add_argument("--before", metavar="FILE", help="vmallocinfo before the trace (default: "
                   "vmallocinfo-before.txt beside the trace, if present)")
    p.add_argument("--after", metavar="FILE", help="vmallocinfo after the trace (default: "
                   "vmallocinfo-after.txt beside the trace, if present)")
    p.add_argument("--no-snapshots", action="store_true", help="ignore vmallocinfo files beside the trace")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed lines (counted) instead of stopping")
    add_design(p, default="6.1")
    add_cpus(p, None, CPUS_HELP + "; with --trace, the trace's, or --cpus if more")
    p.add_argument("--block-pages", default="auto", type=_block_pages,
                   help="vmap block size in pages: auto (the capture's, else Linux 6.1's 256), "
                        "model (the design's own default) or a power of two 128..1024")
    p.add_argument("--follow-purges", action=argparse.BooleanOptionalAction, default=None,
                   help="purge the model where the traced kernel purged (at the flush of its purge) "
                        "and drop the model's own drain work (default: on designs whose lazy purge "
                        "is deferred work, 6.x)")
    p.add_argument("--free-run", action="store_true",
                   help="let the model keep its own address choices (default: decision mode, on "
                        "designs that can be told the kernel's choice: each allocation is compared, "
                        "then placed where the kernel put it); both rates are reported")
    p.add_argument("--vmalloc-start", type=integer, metavar="ADDR",
                   help="--vmallocinfo: the model's VMALLOC_START (default: the snapshot's lowest "
                        "area rounded down to 1 GiB, the captured kernel's own base)")
    p.add_argument("--no-vmallocinfo", action="store_true", help="do not print the model's vmallocinfo")
    add_formats(p, "the per-kind comparison (design, kind, kernel and model areas and bytes)")


def _block_pages(text: str) -> int | str:
    """``--block-pages``: auto, model, or a power of two 128..1024 (argparse type)."""
    if text in ("auto", "model"):
        return text
    try:
        n = integer(text)
    except argparse.ArgumentTypeError:
        n = 0
    if not 128 <= n <= 1024 or n & (n - 1):
        raise argparse.ArgumentTypeError(f"must be auto, model or a power of two in 128..1024, got {text!r}")
    return n


def _sibling(path: str, name: str) -> str | None:
    cand = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return cand if os.path.exists(cand) else None


def run(args: argparse.Namespace) -> int:
    from ..errors import VmapError
    from ..workloads import InputFormatError

    status = 0
    names: list[str] = args.design
    params = parameters(args, vmalloc_start=hexaddr(args.vmalloc_start))
    args.json = args.json or args.csv  # both collect the results first
    docs: list[dict[str, Any]] = []  # --json/--csv: one result per design, printed together
    t0 = time.perf_counter()
    try:
        for i, name in enumerate(names):
            if i and not args.json:
                print()
            args.design = name  # one design per pass
            with progress(args, f"replaying on {name}"):
                status = max(status, _run_snapshot(args, docs) if args.vmallocinfo else _run_trace(args, docs))
        if args.csv:
            write_csv(CSV_FIELDS, kind_rows(docs))
        elif args.json:
            print_json(NAME, params, docs, time.perf_counter() - t0)
        return status
    except InputFormatError as e:
        hint = " (--skip-bad skips such lines)" if e.lineno and not args.skip_bad else ""
        print(f"vmapsim replay: {e}{hint}", file=sys.stderr)
        return 1
    except VmapError as e:
        print(f"vmapsim replay: {e}", file=sys.stderr)
        return 1


#: --csv's columns: one row per kind of area, captured (kernel) beside the model
CSV_FIELDS = ("design", "kind", "kernel_areas", "model_areas", "kernel_bytes", "model_bytes")


def kind_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-kind comparison of each design's result (a trace's: its after snapshot's)."""
    rows = []
    for d in docs:
        cmp = d.get("compare") or d.get("after") or {}
        nbytes = cmp.get("bytes_by_kind", {})
        for kind, n in cmp.get("by_kind", {}).items():
            b = nbytes.get(kind, {"kernel": None, "model": None})
            rows.append({"design": d["design"], "kind": kind, "kernel_areas": n["kernel"],
                         "model_areas": n["model"], "kernel_bytes": b["kernel"], "model_bytes": b["model"]})
    return rows


def compare_json(cmp: dict[str, Any] | None) -> dict[str, Any] | None:
    """vmallocinfo.compare()'s result with labelled pairs."""
    if cmp is None:
        return None
    out = dict(cmp)
    for key in ("by_kind", "bytes_by_kind"):
        if key in out:
            out[key] = pairs(out[key])
    diff = out.get("first_line_difference")
    if diff is not None:
        out["first_line_difference"] = {"index": diff["index"], **pair(diff["captured"], diff["model"])}
    return out


def trace_json(d: dict[str, Any]) -> dict[str, Any]:
    """ReplayResult.to_dict() in the one JSON shape: addresses in hex, pairs labelled,
    counters keyed by sentences as lists."""
    d = dict(d)
    for key in ("kernel_base", "model_base"):
        d[key] = hexaddr(d[key])
    fm = d.get("first_mismatch")
    if fm is not None:
        d["first_mismatch"] = {"line": fm[0], **pair(hexaddr(fm[1]), hexaddr(fm[2]))}
    mm = d.get("mismatch")
    if mm is not None:
        mm = dict(mm)
        mm["kernel"], mm["model"] = hexaddr(mm["kernel"]), hexaddr(mm["model"])
        for key in ("free_near_kernel", "free_near_model"):
            mm[key] = [{"start": hexaddr(a), "end": hexaddr(b)} for a, b in mm[key]]
        d["mismatch"] = mm
    d["lazy"] = [{"line": line, **pair(k, m)} for line, k, m in d.get("lazy", [])]
    d["rates"] = {snake(m): r for m, r in d.get("rates", {}).items()}
    for key in ("skipped", "errors", "notes"):
        d[key] = counts(d.get(key, {}))
    if d.get("initial") is not None:
        ini = dict(d["initial"])
        ini["skipped"], ini["notes"] = counts(ini["skipped"]), counts(ini["notes"])
        d["initial"] = ini
    d["after"] = compare_json(d.get("after"))
    return d


def _bad_lines(bad: list[Any], what: str, total: int) -> list[str]:
    if not total:
        return []
    out = [f"skipped {total} malformed line(s) of {what}:"]
    out += [f"  {e}" for e in bad[:5]]
    if total > 5:
        out.append(f"  ... and {total - 5} more")
    return out


def _run_snapshot(args: argparse.Namespace, docs: list[dict[str, Any]]) -> int:
    from ..workloads import vmallocinfo as vi

    snap = vi.read_vmallocinfo(args.vmallocinfo, args.skip_bad)
    kw: dict[str, Any] = {}
    if args.block_pages not in ("auto", "model"):
        kw.update(_block_config(args.design, int(args.block_pages), args.cpus or DEFAULT_CPUS))
    k = vi.kernel_for(snap, args.design, args.cpus or DEFAULT_CPUS, args.vmalloc_start, **kw)
    # the captured kernel's VMALLOC_START
    kbase = None if snap.hashed else vi.snapshot_base(snap, k.VMALLOC_END + 1 - k.VMALLOC_START)
    rep = vi.rebuild(k, snap, kernel_base=kbase)
    k.check()
    text = vi.render_modern(k)
    captured = vi.summarize(snap)
    model = vi.model_summary(k)
    mod = vi.parse_vmallocinfo(text, "<model>")
    cmp = vi.compare(snap, mod)
    if not snap.hashed and rep.kernel_base is not None:
        delta = k.VMALLOC_START - rep.kernel_base
        inside = [a for a in snap.areas
                  if k.VMALLOC_START <= a.start + delta and a.end + delta <= k.VMALLOC_END + 1]
        cmp.update(vi.compare_lines(inside, mod.areas, delta))
    if args.json:
        docs.append({"design": k.design, "file": snap.path, "format": snap.fmt, "hashed": snap.hashed,
                     "vmalloc_start": hexaddr(k.VMALLOC_START), "kernel_base": hexaddr(rep.kernel_base),
                     "bad_lines": [str(e) for e in snap.bad],
                     "bad_line_count": snap.bad_count, "rebuilt": len(rep.placed),
                     "not_modelled": counts(rep.skipped), "partly_modelled": counts(rep.notes),
                     "captured": captured, "model": model, "compare": compare_json(cmp),
                     "vmallocinfo": None if args.no_vmallocinfo else text})
        return 0
    print(f"vmapsim replay on design {k.design} ({_kernel_of(k.design)}): {snap.path}: "
          f"{len(snap.areas)} areas, {snap.fmt} format"
          + (", hashed addresses" if snap.hashed else "") + f"; rebuilt on design {k.design}")
    for line in _bad_lines(snap.bad, snap.path, snap.bad_count) + rep.lines():
        print(line)
    if not args.no_vmallocinfo:
        print("\nthe model's /proc/vmallocinfo:")
        sys.stdout.write(text)
    print("\nsummary            captured     model")
    for kind, (c, m) in cmp["by_kind"].items():
        print(f"  {kind:14s} {c:10d} {m:9d}")
    print(f"  {'pages':14s} {captured['pages']:10d} {model['pages']:9d}")
    print(f"  {'lazy pages':14s} {captured['lazy_pages']:10d} {model['lazy_pages']:9d}")
    if "largest_gap" in captured:
        print(f"  {'largest gap':14s} {captured['largest_gap']:#10x} (between its areas)")
    print(f"  model: {model['pages_mapped']} pages mapped (PTEs), largest free gap "
          f"{model['largest_gap']:#x} bytes")
    if "lines_equal" in cmp:
        if cmp["lines_equal"]:
            print(f"  rendered back line for line in (address, size, kind): all {cmp['lines_captured']} "
                  f"lines inside the model's range equal")
        else:
            d = cmp["first_line_difference"]
            print(f"  rendered back line for line in (address, size, kind): first difference at line "
                  f"{d['index'] + 1} of those inside the model's range: captured {d['captured']}, "
                  f"model {d['model']}")
    return 0


def _kernel_of(design: str) -> str:
    from ..mm import designs

    return designs.design_class(design).info.kernel


def _block_config(design: str, bits: int, cpus: int) -> dict[str, Any]:
    """The design's kernel arguments for ``bits``-page vmap blocks (asked of the design)."""
    from ..errors import ConfigError
    from ..mm import designs

    kw = designs.design_class(design).config_for(cpus, bits)
    if kw is None:
        raise ConfigError(f"--block-pages must be auto, model or a power of two in 128..1024, got {bits}")
    return kw


def _run_trace(args: argparse.Namespace, docs: list[dict[str, Any]]) -> int:
    from ..workloads import replay as rp
    from ..workloads import trace as tr
    from ..workloads import vmallocinfo as vi

    before_path = args.before or (None if args.no_snapshots else _sibling(args.trace, "vmallocinfo-before.txt"))
    after_path = args.after or (None if args.no_snapshots else _sibling(args.trace, "vmallocinfo-after.txt"))
    # parse everything before the model is touched
    trace = tr.read_trace(args.trace, args.skip_bad)
    before = vi.read_vmallocinfo(before_path, args.skip_bad) if before_path else None
    after = vi.read_vmallocinfo(after_path, args.skip_bad) if after_path else None
    if args.cpus:
        trace.nr_cpus = max(trace.nr_cpus, args.cpus)
    bp: int | str = args.block_pages if args.block_pages in ("auto", "model") else int(args.block_pages)
    k, res = rp.replay_trace(trace, args.design, before, after, bp, args.follow_purges,
                             free_run=args.free_run, both_modes=True)
    if args.json:
        d = trace_json(res.to_dict())
        d["trace"] = {"file": trace.path, "lines": trace.lines, "events": trace.events,
                      "forms": sorted(trace.forms), "bad_lines": [str(e) for e in trace.bad],
                      "bad_line_count": trace.bad_count,
                      "lost_events": trace.lost_events, "unfinished_calls": trace.unfinished}
        d["snapshots"] = {"before": before_path, "after": after_path}
        if not args.no_vmallocinfo:
            d["vmallocinfo"] = res.vmallocinfo
        docs.append(d)
        return 0 if res.check_ok else 1
    print(f"vmapsim replay on design {k.design} ({_kernel_of(k.design)}): {trace.path}: {trace.lines} lines, "
          f"{trace.events} events ({', '.join(sorted(trace.forms)) or 'none'}), {trace.nr_cpus} CPUs")
    if before_path or after_path:
        print(f"snapshots: before={before_path or '-'} after={after_path or '-'}")
    out = _bad_lines(trace.bad, trace.path, trace.bad_count)
    for snap in (before, after):
        if snap is not None:
            out += _bad_lines(snap.bad, snap.path, snap.bad_count)
    if trace.lost_events:
        out.append(f"warning: the trace lost {trace.lost_events} events (ring buffer overrun)")
    if trace.unfinished:
        out.append(f"{trace.unfinished} calls still open at the end of the trace (not replayed)")
    for line in out + res.report():
        print(line)
    if not args.no_vmallocinfo:
        print("\nthe model's /proc/vmallocinfo after the replay:")
        sys.stdout.write(res.vmallocinfo)
    return 0 if res.check_ok else 1
