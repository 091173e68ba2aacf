"""``vmapsim map``: draw the vmalloc address space of the model (PNG or SVG).

The space is a strip wrapped into rows, one unit per page. 32 TiB of address space is
almost all empty, so every free stretch longer than a threshold is drawn as a short
hatched break labelled with the size it stands for; the picture says so in its title.
Colours: busy vm_struct areas by kind, lazily freed areas, per-CPU vmap blocks (live,
dirty and free pages inside each block), large vm_map_ram areas, free space.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

from ._args import CPUS_HELP, add_cpus, add_design, add_seed, nonneg_int, positive_int
from ._output import add_output

NAME = "map"
HELP = "draw the vmalloc address space (busy, lazy, free, per-CPU blocks) as PNG/SVG"

COLOURS = {
    "vmalloc": "#1f77b4",
    "vmap": "#17becf",
    "ioremap": "#9467bd",
    "other": "#7f7f7f",
    "lazy": "#ff7f0e",
    "block live": "#2ca02c",
    "block dirty": "#d62728",
    "block free": "#c7e9c0",
    "vm_map_ram": "#bcbd22",
    "free": "#ffffff",
}


@dataclass
class MapLayout:
    """The picture's content: pieces in display units (pages), compressed breaks."""

    pieces: list[tuple[int, int, str]] = field(default_factory=list)  # (x, width, category)
    breaks: list[tuple[int, int, int]] = field(default_factory=list)  # (x, width, bytes hidden)
    marks: list[tuple[int, int]] = field(default_factory=list)  # (x, address) at cluster starts
    xaddr: list[tuple[int, int, bool]] = field(default_factory=list)  # (x, address, is a break)
    width: int = 0  # total display units
    span: int = 0  # bytes from the first to the last area
    hidden: int = 0  # bytes of free space drawn as breaks
    block_cpus: dict[int, int] = field(default_factory=dict)  # block start -> CPU
    block_x: list[tuple[int, int, int]] = field(default_factory=list)  # (x, width, CPU)


def _regions(k: Any) -> list[tuple[int, int, str, Any]]:
    """(start, end, category, extra) for every busy area of the model, address order
    (what its /proc/vmallocinfo shows, with the blocks' owners and page states)."""
    from ..mm.constants import VM_ALLOC, VM_IOREMAP, VM_MAP

    blocks = {start: (cpu, used, dirty) for start, _, cpu, used, dirty in k.vmap_block_states()}
    out: list[tuple[int, int, str, Any]] = []
    for start, end, kind, vm in k.vmallocinfo_areas():
        if kind == "unpurged":
            out.append((start, end, "lazy", None))
        elif vm is not None:
            f = vm.flags
            cat = ("vmalloc" if f & VM_ALLOC else "vmap" if f & VM_MAP
                   else "ioremap" if f & VM_IOREMAP else "other")
            out.append((start, end, cat, None))
        elif start in blocks:
            out.append((start, end, "block", blocks[start]))
        else:
            out.append((start, end, "vm_map_ram", None))
    out.sort(key=lambda r: r[0])
    return out


def layout(k: Any, max_gap_pages: int | None = None, break_units: int | None = None) -> MapLayout:
    """Lay the model's areas out in display units, compressing free stretches longer
    than ``max_gap_pages`` (default: 1/50 of the occupied pages, at least 64) into
    breaks of ``break_units``."""
    from ..mm.constants import PAGE_SHIFT

    regs = _regions(k)
    lay = MapLayout()
    if not regs:
        return lay
    busy_pages = sum((e - s) >> PAGE_SHIFT for s, e, _, _ in regs)
    if max_gap_pages is None:
        max_gap_pages = max(64, busy_pages // 50)
    if break_units is None:
        break_units = max(8, max_gap_pages // 4)
    lay.span = regs[-1][1] - regs[0][0]
    x = 0
    prev_end = None
    for s, e, cat, extra in regs:
        if prev_end is None:
            lay.marks.append((x, s))
        elif s > prev_end:
            gap = (s - prev_end) >> PAGE_SHIFT
            if gap > max_gap_pages:
                lay.xaddr.append((x, s, True))
                lay.breaks.append((x, break_units, s - prev_end))
                lay.hidden += s - prev_end
                x += break_units
                lay.marks.append((x, s))
            else:
                lay.xaddr.append((x, prev_end, False))
                lay.pieces.append((x, gap, "free"))
                x += gap
        lay.xaddr.append((x, s, False))
        n = (e - s) >> PAGE_SHIFT
        if cat == "block":
            cpu, used, dirty = extra
            lay.block_cpus[s] = cpu
            lay.block_x.append((x, n, cpu))
            for i, sub in _block_runs(used, dirty, n):
                lay.pieces.append((x + i[0], i[1], sub))
        else:
            lay.pieces.append((x, n, cat))
        x += n
        prev_end = e
    lay.width = x
    return lay


def address_at(lay: MapLayout, x: int) -> int | None:
    """The address drawn at display unit ``x`` (the one after a break inside a break)."""
    import bisect

    i = bisect.bisect_right(lay.xaddr, (x, 1 << 65, True)) - 1
    if i < 0:
        return None
    x0, addr, is_break = lay.xaddr[i]
    return addr if is_break else addr + (x - x0) * 4096


def _block_runs(amap: int, dmap: int, n: int) -> list[tuple[tuple[int, int], str]]:
    """Runs of live / dirty / free pages inside one vmap block, from its bitmaps of
    pages handed out (``amap``) and of those freed but not flushed (``dmap``)."""
    out: list[tuple[tuple[int, int], str]] = []
    cur, start = None, 0
    for i in range(n + 1):
        if i == n:
            state = None
        elif (dmap >> i) & 1:
            state = "block dirty"
        elif (amap >> i) & 1:
            state = "block live"
        else:
            state = "block free"
        if state != cur:
            if cur is not None:
                out.append(((start, i - start), cur))
            cur, start = state, i
    return out


def _human(b: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b} B"


def _stretches(n: int) -> str:
    """``1 free stretch``, ``5 free stretches``."""
    return f"{n} free stretch{'' if n == 1 else 'es'}"


def draw(k: Any, out: str, title: str = "", rows: int = 24) -> MapLayout:
    """Draw the layout of ``k`` to ``out`` (.png or .svg) with matplotlib (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lay = layout(k)
    width = max(lay.width, 1)
    row = max(64, -(-width // rows))
    nrows = max(1, -(-width // row))
    # constrained layout makes room for the title lines, the x label and the legend below
    # it, whatever the number of rows (tight_layout's fixed margins lost the title of a
    # one-row strip and left a blank band above the legend of a tall one)
    fig_h = 2.0 + 0.32 * nrows
    fig, ax = plt.subplots(figsize=(13, fig_h), layout="constrained")
    per_row: dict[tuple[int, str], list[tuple[int, int]]] = {}

    def add(x: int, w: int, cat: str) -> None:
        while w > 0:
            r, off = divmod(x, row)
            take = min(w, row - off)
            per_row.setdefault((r, cat), []).append((off, take))
            x += take
            w -= take

    for x, w, cat in lay.pieces:
        add(x, w, cat)
    for (r, cat), bars in per_row.items():
        ax.broken_barh(bars, (nrows - 1 - r + 0.1, 0.8), facecolors=COLOURS.get(cat, "#000000"),
                       edgecolor="none" if cat != "free" else "#dddddd", linewidth=0.3)
    for x, w, hidden in lay.breaks:
        r, off = divmod(x, row)
        ax.broken_barh([(off, min(w, row - off))], (nrows - 1 - r + 0.1, 0.8), facecolors="#eeeeee",
                       hatch="////", edgecolor="#999999", linewidth=0.3)
        ax.text(off + min(w, row - off) / 2, nrows - 1 - r + 0.5, _human(hidden), ha="center",
                va="center", fontsize=6, color="#333333")
    for x, w, cpu in lay.block_x:  # which CPU's vmap_block_queue owns each block
        r, off = divmod(x, row)
        if w >= row // 40:
            ax.text(off + 1, nrows - 1 - r + 0.5, f"CPU{cpu}", ha="left", va="center", fontsize=5,
                    color="#000000")
    ylabels = []
    for r in range(nrows):
        first = address_at(lay, r * row)
        ylabels.append(f"+{(first - k.VMALLOC_START):#x}" if first is not None else "")
    ax.set_yticks([nrows - 1 - r + 0.5 for r in range(nrows)], ylabels, fontsize=6)
    ax.set_xlim(0, row)
    ax.set_ylim(0, nrows)
    ax.set_xlabel(f"pages (one row = {row} pages = {_human(row * 4096)} of used address space)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    used = {cat for _, _, cat in lay.pieces}
    handles = [Patch(facecolor=COLOURS[c], edgecolor="#999999", label=c) for c in COLOURS if c in used]
    if lay.breaks:
        handles.append(Patch(facecolor="#eeeeee", hatch="////", edgecolor="#999999",
                             label="free, compressed"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(handles)), fontsize=7,
               frameon=False)
    cpus = sorted(set(lay.block_cpus.values()))
    sub = (f"{_stretches(len(lay.breaks))} totalling {_human(lay.hidden)} drawn compressed "
           f"(hatched, labelled with their size)" if lay.breaks else "no free stretch compressed")
    sub += "; y labels: offset from VMALLOC_START"
    if cpus:
        sub += f"; vmap blocks of CPU{'s' if len(cpus) > 1 else ''} {', '.join(map(str, cpus))}"
    lines = textwrap.wrap(title, 150) if title else []
    ax.set_title("\n".join(lines + textwrap.wrap(sub, 170)), fontsize=8)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return lay


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_output(p, "--out", image=True, metavar="FILE", required=True, help="FILE.png or FILE.svg")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--trace", metavar="FILE", help="replay this trace first (see `vmapsim replay`)")
    src.add_argument("--vmallocinfo", metavar="FILE", help="rebuild this snapshot first")
    src.add_argument("--workload", default="mixed", help="else run this built-in workload: "
                     "forkstorm, xfsdir or mixed (default)")
    p.add_argument("--ops", type=nonneg_int, default=3000, help="calls of the built-in workload (default 3000)")
    add_cpus(p, what=CPUS_HELP + "; with --trace, the trace's")
    add_seed(p)
    add_design(p)
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input lines (counted)")
    p.add_argument("--rows", type=positive_int, default=24, help="rows of the strip (default 24)")
    from ._result import add_formats

    add_formats(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import VmapError
    from ..workloads import InputFormatError

    if not args.out.endswith((".png", ".svg")):
        print("vmapsim map: --out must end in .png or .svg", file=sys.stderr)
        return 2
    if len(args.design) > 1:
        print("vmapsim map: --design: one design per picture", file=sys.stderr)
        return 2
    from ._result import hexaddr, parameters, print_json, progress

    params = parameters(args)
    t0 = time.perf_counter()
    args.design = args.design[0]
    try:
        with progress(args, f"drawing {args.out}"):
            k, what = _build(args)
            lay = draw(k, args.out, what, args.rows)
    except (InputFormatError, VmapError) as e:
        print(f"vmapsim map: {e}", file=sys.stderr)
        return 1
    if args.json:
        print_json(NAME, params, [{
            "design": k.design, "out": args.out, "what": what, "vmalloc_start": hexaddr(k.VMALLOC_START),
            "pieces": len(lay.pieces), "compressed_free_stretches": len(lay.breaks),
            "hidden_bytes": lay.hidden, "span_bytes": lay.span,
            "block_cpus": sorted(set(lay.block_cpus.values()))}], time.perf_counter() - t0)
        return 0
    print(f"wrote {args.out}: {what}; {len(lay.pieces)} piece{'s' if len(lay.pieces) != 1 else ''}, "
          f"{_stretches(len(lay.breaks))} compressed ({_human(lay.hidden)} hidden)")
    return 0


def _build(args: argparse.Namespace) -> tuple[Any, str]:
    if args.trace:
        from ..workloads import replay as rp
        from ..workloads import trace as tr
        from ..workloads import vmallocinfo as vi
        from .replay import _sibling

        t = tr.read_trace(args.trace, args.skip_bad)
        before = _sibling(args.trace, "vmallocinfo-before.txt")
        k, res = rp.replay_trace(t, args.design, vi.read_vmallocinfo(before, args.skip_bad) if before else None)
        return k, f"{args.trace} replayed on {k.design} ({res.ops} operations)"
    if args.vmallocinfo:
        from ..workloads import vmallocinfo as vi

        snap = vi.read_vmallocinfo(args.vmallocinfo, args.skip_bad)
        k = vi.kernel_for(snap, args.design, args.cpus)
        vi.rebuild(k, snap)
        return k, f"{args.vmallocinfo} rebuilt on {k.design}"
    from ..mm.vmalloc import Kernel
    from ..workloads.trace import run_workload

    k = Kernel(cpus=args.cpus, design=args.design)
    for _ in run_workload(k, args.workload, args.ops, args.seed, cleanup=False):
        pass
    return k, f"workload {args.workload} ({args.ops} calls, {args.cpus} CPU{'s' if args.cpus != 1 else ''}) on {k.design}"
