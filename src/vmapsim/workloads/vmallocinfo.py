"""/proc/vmallocinfo: parse real snapshots, rebuild their population on the model, and
print the model's state in the modern format.

Formats read (one area per line, ``0x<start>-0x<end> <size>`` first, size in bytes
including the guard page):

- 2.6.x: ``caller pages=N phys=<hex> ioremap vmalloc vmap user vpages N<node>=<n>``
  (``phys=`` without ``0x``);
- modern (4.x-6.x): the same words plus ``dma-coherent``, ``phys=0x<16 hex>``, lines
  ``... <size> vm_map_ram`` for vmap blocks and ``... <size> unpurged vm_area`` for
  lazily freed areas (printed after the busy ones);
- hashed addresses (``%p`` hashing, ``kptr_restrict``): detected when the printed
  ``end - start`` never equals the size; the areas are then laid out in file order,
  adjacent where the kernel printed the same hash for one area's end and the next
  one's start (the same pointer), one page apart otherwise.

Everything is parsed (and every bad line reported as ``FILE:LINE: expected ...``)
before anything is applied to a Kernel.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, VmapError
from ..mm import designs
from ..mm.constants import (
    PAGE_KERNEL,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VM_VPAGES,
    VMAP_MAX_ALLOC,
)
from ..mm.vmalloc import Kernel
from . import InputFormatError

GIB = 1 << 30
#: the largest ioremap alignment of the kernels read (x86_64 6.x: PUD_SHIFT)
IOREMAP_ALIGN_SHIFT = 30

#: The words vmallocinfo prints for vm_struct flags; 0 = printed by modern kernels,
#: not modelled by vmapsim (reported as such when rebuilding).
KIND_WORDS: dict[str, int] = {
    "ioremap": VM_IOREMAP,
    "vmalloc": VM_ALLOC,
    "vmap": VM_MAP,
    "user": VM_USERMAP,
    "dma-coherent": 0,
    "vpages": VM_VPAGES,
    "sparse": 0,
}
_WORD_ORDER = ("ioremap", "vmalloc", "vmap", "user", "dma-coherent", "vpages", "sparse")

_HEAD_RE = re.compile(r"0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)\s+(\d+)(?:\s+(.*?))?\s*$")
_NODE_RE = re.compile(r"N(\d+)=(\d+)$")
_PHYS_RE = re.compile(r"phys=(0x)?([0-9a-fA-F]+)$")
_PAGES_RE = re.compile(r"pages=(\d+)$")

_ATTR_EXPECTED = ("pages=<n>, phys=<addr>, one of " + "/".join(_WORD_ORDER)
                  + ", or N<node>=<pages> after the caller")


@dataclass(slots=True)
class Area:
    """One line of /proc/vmallocinfo."""

    lineno: int
    start: int
    end: int
    size: int
    kind: str  # "vm" (a vm_struct), "unpurged" (lazily freed), "vm_map_ram" (a vmap block)
    caller: str = ""
    pages: int | None = None
    phys: int | None = None
    words: tuple[str, ...] = ()
    nodes: dict[int, int] = field(default_factory=dict)

    @property
    def flags(self) -> int:
        f = 0
        for w in self.words:
            f |= KIND_WORDS[w]
        return f

    @property
    def label(self) -> str:
        """The area's kind for summaries: vmalloc, vmap, ioremap, ... or unpurged/vm_map_ram."""
        if self.kind != "vm":
            return self.kind
        for w in ("vmalloc", "vmap", "ioremap"):
            if w in self.words:
                return w
        return self.words[0] if self.words else "other"


@dataclass
class Snapshot:
    """A parsed /proc/vmallocinfo: the areas (file order), the bad lines skipped."""

    path: str
    areas: list[Area]
    bad: list[InputFormatError]
    hashed: bool
    fmt: str  # "2.6", "modern" or "either"
    lines: int = 0


def _bad(path: str, lineno: int, expected: str, line: str) -> InputFormatError:
    return InputFormatError(path, lineno, expected, line)


def _parse_line(path: str, lineno: int, line: str) -> Area:
    m = _HEAD_RE.match(line)
    if m is None:
        raise _bad(path, lineno, "'0x<start>-0x<end> <size>' followed by the area's description", line)
    start, end, size = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))
    if size <= 0 or size % PAGE_SIZE:
        raise _bad(path, lineno, f"a size that is a positive multiple of {PAGE_SIZE}", line)
    rest = m.group(4) or ""
    if rest == "unpurged vm_area":
        return Area(lineno, start, end, size, "unpurged")
    if rest == "vm_map_ram":
        return Area(lineno, start, end, size, "vm_map_ram")
    tokens = rest.split()
    a = Area(lineno, start, end, size, "vm")
    i = 0
    if tokens and not _is_attr(tokens[0]):
        a.caller = tokens[0]
        i = 1
        if i < len(tokens) and tokens[i].startswith("[") and tokens[i].endswith("]"):
            a.caller += " " + tokens[i]  # %pS of a module symbol: "sym+0x1/0x2 [mod]"
            i += 1
    words: list[str] = []
    for t in tokens[i:]:
        if t in KIND_WORDS:
            if t in words:
                raise _bad(path, lineno, f"{t!r} at most once", line)
            words.append(t)
            continue
        pm = _PAGES_RE.match(t)
        if pm:
            if a.pages is not None:
                raise _bad(path, lineno, "pages= at most once", line)
            a.pages = int(pm.group(1))
            continue
        ph = _PHYS_RE.match(t)
        if ph:
            if a.phys is not None:
                raise _bad(path, lineno, "phys= at most once", line)
            a.phys = int(ph.group(2), 16)
            continue
        nm = _NODE_RE.match(t)
        if nm:
            node = int(nm.group(1))
            if node in a.nodes:
                raise _bad(path, lineno, f"N{node}= at most once", line)
            a.nodes[node] = int(nm.group(2))
            continue
        raise _bad(path, lineno, _ATTR_EXPECTED + f" (not {t!r})", line)
    a.words = tuple(words)
    if a.nodes:
        if a.pages is None:
            raise _bad(path, lineno, "pages=<n> before the N<node>=<pages> counts", line)
        if sum(a.nodes.values()) != a.pages:
            raise _bad(path, lineno, f"N<node>= counts summing to pages={a.pages}", line)
    if a.pages is not None and a.pages > size // PAGE_SIZE:
        raise _bad(path, lineno, f"pages= at most the area's {size // PAGE_SIZE} pages", line)
    return a


def _is_attr(t: str) -> bool:
    return t in KIND_WORDS or t.startswith(("pages=", "phys=")) or _NODE_RE.match(t) is not None


def parse_vmallocinfo(lines: Iterable[str] | str, path: str = "<vmallocinfo>",
                      skip_bad: bool = False) -> Snapshot:
    """Parse a whole snapshot. A bad line raises InputFormatError (the first one, in
    line order) unless ``skip_bad``, which drops and counts it (``Snapshot.bad``)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    areas: list[Area] = []
    bad: list[InputFormatError] = []
    texts: dict[int, str] = {}
    n = 0
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            a = _parse_line(path, n, line)
        except InputFormatError as e:
            if not skip_bad:
                raise
            bad.append(e)
            continue
        areas.append(a)
        texts[n] = line
    real = sum(1 for a in areas if a.end - a.start == a.size)
    hashed = bool(areas) and real * 2 < len(areas)
    errors: list[InputFormatError] = []
    if not hashed:
        for a in areas:
            if a.end - a.start != a.size:
                errors.append(_bad(path, a.lineno, "end - start equal to the size (the other lines "
                                   "of this file have real addresses)", texts[a.lineno]))
            elif a.start % PAGE_SIZE:
                errors.append(_bad(path, a.lineno, "page-aligned addresses", texts[a.lineno]))
        dropped = {e.lineno for e in errors}
        last_end, last_line = -1, 0
        for a in sorted((a for a in areas if a.lineno not in dropped), key=lambda a: (a.start, a.lineno)):
            if a.start < last_end:
                ln = max(a.lineno, last_line)
                errors.append(_bad(path, ln, f"an area not overlapping the one on line "
                                   f"{min(a.lineno, last_line)}", texts[ln]))
                dropped.add(ln)
                if ln == a.lineno:
                    continue
            last_end, last_line = a.end, a.lineno
    if errors:
        errors.sort(key=lambda e: e.lineno)
        if not skip_bad:
            raise errors[0]
        bad.extend(errors)
        gone = {e.lineno for e in errors}
        areas = [a for a in areas if a.lineno not in gone]
        bad.sort(key=lambda e: e.lineno)
    modern = hashed or any(a.kind != "vm" or "dma-coherent" in a.words for a in areas) or any(
        a.phys is not None and "phys=0x" in texts.get(a.lineno, "") for a in areas)
    old = any(a.phys is not None and "phys=0x" not in texts.get(a.lineno, "") for a in areas)
    fmt = "modern" if modern and not old else "2.6" if old and not modern else "either"
    return Snapshot(path, areas, bad, hashed, fmt, n)


def read_vmallocinfo(path: str, skip_bad: bool = False) -> Snapshot:
    """Read and parse a snapshot file (``cat /proc/vmallocinfo > FILE`` as root)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_vmallocinfo(f, path, skip_bad)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


# -- summaries ------------------------------------------------------------------------
def largest_gap(ranges: list[tuple[int, int]], lo: int | None = None, hi: int | None = None) -> int:
    """Largest free stretch between sorted, non-overlapping [start, end) ranges (and the
    bounds ``lo``/``hi`` when given)."""
    rs = sorted(ranges)
    best = 0
    cur = lo if lo is not None else (rs[0][0] if rs else 0)
    for s, e in rs:
        if s > cur:
            best = max(best, s - cur)
        cur = max(cur, e)
    if hi is not None and hi > cur:
        best = max(best, hi - cur)
    return best


def summarize(snap: Snapshot | list[Area]) -> dict[str, Any]:
    """Areas and bytes by kind, pages (pages=), lazy pages (unpurged), largest gap."""
    areas = snap.areas if isinstance(snap, Snapshot) else snap
    by_kind = Counter(a.label for a in areas)
    bytes_by_kind: Counter[str] = Counter()
    for a in areas:
        bytes_by_kind[a.label] += a.size
    out: dict[str, Any] = {
        "areas": len(areas),
        "by_kind": dict(sorted(by_kind.items())),
        "bytes_by_kind": dict(sorted(bytes_by_kind.items())),
        "pages": sum(a.pages or 0 for a in areas),
        "lazy_pages": sum(a.size for a in areas if a.kind == "unpurged") // PAGE_SIZE,
    }
    if not (isinstance(snap, Snapshot) and snap.hashed) and areas:
        out["largest_gap"] = largest_gap([(a.start, a.end) for a in areas])
    return out


def size_profile(snap: Snapshot | list[Area]) -> Counter[tuple[str, int]]:
    """Multiset of (kind, size): what two populations have in common, address-free."""
    areas = snap.areas if isinstance(snap, Snapshot) else snap
    return Counter((a.label, a.size) for a in areas)


def compare_lines(captured: list[Area], model: list[Area], delta: int = 0) -> dict[str, Any]:
    """Two snapshots line for line in (address, size, kind), the captured addresses moved
    by ``delta``: ``lines_equal``, the line counts, and the first difference (index,
    both lines as ``(address, size, kind)`` or None past the end)."""
    a = [(x.start + delta, x.size, x.label) for x in captured]
    b = [(x.start, x.size, x.label) for x in model]
    out: dict[str, Any] = {"lines_equal": a == b, "lines_captured": len(a), "lines_model": len(b),
                           "first_line_difference": None}
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

        def show(t: list[tuple[int, int, str]]) -> str | None:
            return f"{t[i][0]:#x} {t[i][1]} {t[i][2]}" if i < len(t) else None
        out["first_line_difference"] = {"index": i, "captured": show(a), "model": show(b)}
    return out


def compare(captured: Snapshot | list[Area], model: Snapshot | list[Area]) -> dict[str, Any]:
    """Counts by kind side by side and the share of (kind, size) pairs in common."""
    c, m = summarize(captured), summarize(model)
    kinds = sorted(set(c["by_kind"]) | set(m["by_kind"]))
    pc, pm = size_profile(captured), size_profile(model)
    common = sum((pc & pm).values())
    return {
        "by_kind": {k: (c["by_kind"].get(k, 0), m["by_kind"].get(k, 0)) for k in kinds},
        "bytes_by_kind": {k: (c["bytes_by_kind"].get(k, 0), m["bytes_by_kind"].get(k, 0)) for k in kinds},
        "kind_size_common": common,
        "kind_size_captured": sum(pc.values()),
        "kind_size_model": sum(pm.values()),
    }


# -- the model's state in the modern format ----------------------------------------------
def render_modern(k: Kernel) -> str:
    """The model's /proc/vmallocinfo in the modern format (busy areas in address order,
    ``vm_map_ram`` lines for vmap blocks and large vm_map_ram areas, then an ``unpurged
    vm_area`` line per lazily freed area), as the design renders it."""
    return k.vmallocinfo("modern")


def model_summary(k: Kernel) -> dict[str, Any]:
    """summarize() of the model's modern vmallocinfo plus the model's own counters."""
    snap = parse_vmallocinfo(render_modern(k), "<model>")
    s = summarize(snap)
    s["pages_mapped"] = len(k.machine.pte)
    s["lazy_pages"] = k.vmap_lazy_nr
    s["largest_gap"] = largest_gap([(a.va_start, a.va_end) for a in k.vmap_areas()],
                                   k.VMALLOC_START, k.VMALLOC_END + 1)
    return s


# -- rebuilding a population on the model ----------------------------------------------
@dataclass
class RebuildReport:
    """What rebuild() did: placed areas, what it could not model and why."""

    placed: dict[int, int] = field(default_factory=dict)  # snapshot line -> model address
    by_kind: Counter[str] = field(default_factory=Counter)
    exact: int = 0  # placed at the snapshot's (rebased) address
    laid_out: int = 0  # placed in order (hashed addresses)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> areas
    notes: Counter[str] = field(default_factory=Counter)  # partial modelling -> areas
    purges: int = 0
    kernel_base: int | None = None
    model_base: int | None = None
    held_pages: list[Any] = field(default_factory=list)  # pages of vmap()ed areas

    def lines(self) -> list[str]:
        out = [f"rebuilt {sum(self.by_kind.values())} areas: "
               + ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items()))]
        if self.kernel_base is not None and self.kernel_base == self.model_base:
            out.append(f"VMALLOC_START {self.model_base:#x} as the capture's; {self.exact} at their "
                       f"captured address")
        elif self.kernel_base is not None:
            out.append(f"addresses rebased from the capture's {self.kernel_base:#x} to the model's "
                       f"VMALLOC_START; {self.exact} at their exact offset")
        if self.laid_out:
            out.append(f"{self.laid_out} areas laid out in file order (hashed addresses: gaps unknown)")
        for reason, n in sorted(self.skipped.items()):
            out.append(f"not modelled: {n} x {reason}")
        for note, n in sorted(self.notes.items()):
            out.append(f"partly modelled: {n} x {note}")
        if self.purges:
            out.append(f"the model purged {self.purges} times while rebuilding (lazy pages over lazy_max_pages)")
        return out


def _layout_hashed(snap: Snapshot, base: int, block: int) -> dict[int, int]:
    """Addresses for a hashed snapshot: file order; equal hashes mean adjacency."""
    out: dict[int, int] = {}
    cur = base
    prev_end_hash: int | None = None
    for group in (("vm", "vm_map_ram"), ("unpurged",)):
        for a in snap.areas:
            if a.kind not in group:
                continue
            addr = cur if a.start == prev_end_hash else cur + PAGE_SIZE
            if a.kind == "vm_map_ram" and block:
                addr = (addr + block - 1) // block * block
            elif "ioremap" in a.words and a.size > PAGE_SIZE:
                # aligned as __get_vm_area_node() aligns ioremap areas: to their size rounded
                # up to a power of two (x86_64 6.x: up to 1 GiB, 2.6: up to 512 KiB)
                al = 1 << min(max((a.size - PAGE_SIZE - 1).bit_length(), PAGE_SHIFT), IOREMAP_ALIGN_SHIFT)
                addr = (addr + al - 1) // al * al
            out[a.lineno] = addr
            cur = addr + a.size
            prev_end_hash = a.end
        cur += PAGE_SIZE
        prev_end_hash = None
    return out


def rebuild(k: Kernel, snap: Snapshot | list[Area], kernel_base: int | None = None,
            hashed: bool | None = None, cpu: int = 0) -> RebuildReport:
    """Recreate the areas of a snapshot on ``k`` (which may already hold areas).

    Real addresses are rebased from ``kernel_base`` (default: the lowest area rounded
    down to 1 GiB, the alignment of x86_64's randomized vmalloc base) to
    ``k.VMALLOC_START``. All placements are planned and checked (free range, memory)
    before the first is applied. The design places each area where the snapshot has it:
    vm_structs with ``place_vm_area`` (their pages from their node, ``N<n>=``, with
    ``populate_vm_area``), ``unpurged vm_area`` lines with ``place_lazy_area``,
    ``vm_map_ram`` lines with ``place_vmap_block`` (a full block holding one live page:
    vmallocinfo does not say how full a block is).
    """
    areas = snap.areas if isinstance(snap, Snapshot) else list(snap)
    if hashed is None:
        hashed = snap.hashed if isinstance(snap, Snapshot) else False
    rep = RebuildReport()
    has_lazy = k.has_lazy_free
    block = k.vmap_block_pages * PAGE_SIZE
    nodes = k.machine.mem.nodes
    existing = sorted((a.va_start, a.va_end) for a in k.vmap_areas())
    lo, hi = k.VMALLOC_START, k.VMALLOC_END + 1
    if hashed:
        top = max((e for _, e in existing), default=lo - PAGE_SIZE)
        where = _layout_hashed(snap if isinstance(snap, Snapshot) else Snapshot("", areas, [], True, ""),
                               top, block)
    else:
        if kernel_base is None:
            kernel_base = min((a.start for a in areas), default=0) & ~(GIB - 1)
        rep.kernel_base = kernel_base
        rep.model_base = lo
        where = {a.lineno: a.start - kernel_base + lo for a in areas}

    plan: list[tuple[int, Area]] = []
    need = 0
    for a in areas:
        addr = where[a.lineno]
        reason = None
        if addr < lo or addr + a.size > hi:
            reason = "area outside the model's vmalloc space (e.g. module space)"
        elif not k.can_place(addr, a.size):
            reason = "range already busy in the model"
        elif a.kind == "unpurged" and not has_lazy:
            reason = f"unpurged area (design {k.design!r} has no lazy freeing)"
        elif a.kind == "vm_map_ram":
            if not block:
                reason = f"vm_map_ram block (design {k.design!r} has no vmap blocks)"
            elif a.size != block:
                reason = f"vm_map_ram block of {a.size} bytes (the model's blocks are {block})"
            elif addr % block:
                reason = "vm_map_ram block not aligned to the model's block size"
        elif a.kind == "vm" and a.size < 2 * PAGE_SIZE:
            reason = "one-page vm area (no room for the guard page the model always adds)"
        elif a.kind == "vm" and any(n >= nodes for n in a.nodes):
            reason = f"pages on a NUMA node the model lacks ({nodes} nodes)"
        if reason:
            rep.skipped[reason] += 1
            continue
        if a.kind == "vm":
            if a.flags & VM_ALLOC and a.pages:
                need += a.pages
            elif a.flags & VM_MAP and not a.flags & VM_ALLOC:
                need += a.pages or a.size // PAGE_SIZE - 1
        elif a.kind == "vm_map_ram":
            need += VMAP_MAX_ALLOC  # what vm_map_ram() may map at once while filling the block
        plan.append((addr, a))
    if need > k.nr_free_pages():
        raise ConfigError(f"rebuilding needs {need} pages, the model has {k.nr_free_pages()} free")
    purges0 = k.purges
    old_cpu = k.this_cpu.id
    k.set_cpu(cpu)
    try:
        # the design's order (see _place): ascending for a lowest fit, whose free tree
        # then has the shape of one carved from [1, ULONG_MAX) in address order
        ascending = k.placement_order == "ascending"
        plan.sort(key=lambda p: p[0] if ascending else -p[0])
        for addr, a in plan:
            ok = _place(k, a, addr, rep)
            if ok:
                rep.placed[a.lineno] = addr
                rep.by_kind[a.label] += 1
                if hashed:
                    rep.laid_out += 1
                else:
                    rep.exact += 1
    finally:
        k.set_cpu(old_cpu)
    rep.purges = k.purges - purges0
    return rep


def _place(k: Kernel, a: Area, addr: int, rep: RebuildReport) -> bool:
    """Apply one planned placement, in the design's ``placement_order``: the 2.6
    allocators refuse to put a new area right after a busy one (their one-page gap), so
    their areas are placed from the highest address down and each lands on its own
    range; a lowest-fit allocator (6.x, no gap) has them carved in ascending order, the
    order its own first allocations took, which gives its free tree that shape."""
    if a.kind == "unpurged":
        if not k.place_lazy_area(addr, a.size):
            raise VmapError(f"rebuild: the model refused the planned range {addr:#x} (line {a.lineno})")
        return True
    if a.kind == "vm_map_ram":
        if not k.place_vmap_block(addr):
            rep.skipped["vm_map_ram block (CPU already had a partly used block)"] += 1
            return False
        return True
    flags = a.flags
    area = k.place_vm_area(addr, a.size, flags, a.caller)
    if area is None:
        raise VmapError(f"rebuild: the model refused the planned range {addr:#x} (line {a.lineno})")
    if a.phys:
        area.phys_addr = a.phys
    for w in a.words:
        if not KIND_WORDS[w]:
            rep.notes[f"'{w}' flag (not modelled)"] += 1
    if flags & VM_VPAGES:
        # Deviation: the page array's own area cannot be told apart in the snapshot.
        area.flags &= ~VM_VPAGES
        rep.notes["vpages: page array area not identified, flag dropped"] += 1
    if flags & VM_ALLOC and a.pages:
        got = k.populate_vm_area(area, a.nodes or {-1: a.pages})
        if len(got) != a.pages:
            raise VmapError(f"rebuild: the model ran out of pages for line {a.lineno}")
    elif flags & VM_MAP:
        n = a.pages or a.size // PAGE_SIZE - 1
        node = next(iter(a.nodes), -1)
        user = [k.alloc_page(node) for _ in range(n)]
        assert all(p is not None for p in user)
        k.vmap_page_range_(addr, user, PAGE_KERNEL)  # type: ignore[arg-type]
        rep.held_pages.extend(user)
        if a.pages:
            area.pages = user  # type: ignore[assignment]
            area.nr_pages = n
    elif a.pages:
        rep.notes["pages= on a non-vmalloc, non-vmap area (pages not modelled)"] += 1
    return True


def snapshot_base(snap: Snapshot | list[Area]) -> int | None:
    """The captured kernel's VMALLOC_START as a snapshot shows it: its lowest area rounded
    down to 1 GiB (x86_64 randomizes the vmalloc base in 1 GiB steps); None if the
    addresses are hashed or there are none."""
    areas = snap.areas if isinstance(snap, Snapshot) else snap
    if not areas or (isinstance(snap, Snapshot) and snap.hashed):
        return None
    return min(a.start for a in areas) & ~(GIB - 1)


def vmalloc_start_for(design: str, base: int | None) -> int | None:
    """``base`` if the design's vmalloc space can start there (a 1 GiB aligned x86_64
    kernel address with room for the space after it), else None (the design's default:
    addresses are then rebased)."""
    if base is None or base & (GIB - 1) or not 0xFFFF800000000000 <= base < 1 << 64:
        return None
    if base + designs.design_class(design).default_vmalloc_size() > 1 << 64:
        return None
    return base


def kernel_for(snap: Snapshot, design: str = "6.1", cpus: int = 2, vmalloc_start: int | None = None,
               **kw: Any) -> Kernel:
    """A Kernel sized for ``snap``: its NUMA nodes, enough memory, vmap blocks of the
    snapshot's vm_map_ram size when it shows any, and the captured kernel's
    VMALLOC_START (``vmalloc_start``, else ``snapshot_base()`` when the design's space
    fits there, else the design's default), so real addresses stay the kernel's."""
    nodes = 1 + max((n for a in snap.areas for n in a.nodes), default=0)
    pages = sum(a.pages or 0 for a in snap.areas) + sum(a.size for a in snap.areas if a.kind == "vm") // PAGE_SIZE
    kw.setdefault("nodes", nodes)
    kw.setdefault("mem_pages", max(262144, 2 * pages) // nodes * nodes)
    if vmalloc_start is None:
        vmalloc_start = vmalloc_start_for(design, snapshot_base(snap))
    if vmalloc_start is not None:
        kw["vmalloc_start"] = vmalloc_start
    blocks = {a.size for a in snap.areas if a.kind == "vm_map_ram"}
    if len(blocks) == 1:
        conf = designs.design_class(design).config_for(cpus, blocks.pop() // PAGE_SIZE)
        for key, v in (conf or {}).items():
            kw.setdefault(key, v)
    return Kernel(cpus=cpus, design=design, **kw)
