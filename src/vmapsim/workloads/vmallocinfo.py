"""/proc/vmallocinfo on the model: rebuild a snapshot's population, summarize and
compare snapshots, and print the model's state in the modern format.

The reader of both formats lives in :mod:`vmapsim.inputs.vmallocinfo` (with
:mod:`vmapsim.inputs.vmallocinfo_26` and :mod:`vmapsim.inputs.vmallocinfo_modern`);
its names are kept here too (``parse_vmallocinfo``, ``read_vmallocinfo``, ``Area``,
``Snapshot``, ``KIND_WORDS``).

Everything is parsed (and every bad line reported as ``FILE:LINE: expected ...``)
before anything is applied to a Kernel; the rebuild checks the snapshot's pages
against the model's memory before it places the first area.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, VmapError
from ..inputs.lines import INPUT_MEM_PAGES
from ..inputs.vmallocinfo import KIND_WORDS, Area, Snapshot, parse_vmallocinfo, read_vmallocinfo
from ..mm import designs
from ..mm.constants import PAGE_KERNEL, PAGE_SHIFT, PAGE_SIZE, VM_ALLOC, VM_MAP, VM_VPAGES, VMAP_MAX_ALLOC
from ..mm.vmalloc import Kernel

__all__ = [
    "GIB", "KIND_WORDS", "Area", "RebuildReport", "Snapshot", "compare", "compare_lines", "kernel_for",
    "largest_gap", "model_summary", "parse_vmallocinfo", "read_vmallocinfo", "rebuild", "render_modern",
    "size_profile", "snapshot_base", "summarize", "vmalloc_start_for",
]

GIB = 1 << 30
#: the largest ioremap alignment of the kernels read (x86_64 6.x: PUD_SHIFT)
IOREMAP_ALIGN_SHIFT = 30


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
            hashed: bool | None = None, cpu: int = 0, path: str = "") -> RebuildReport:
    """Recreate the areas of a snapshot on ``k`` (which may already hold areas).

    Real addresses are rebased from ``kernel_base`` (default: the lowest area rounded
    down to 1 GiB, the alignment of x86_64's randomized vmalloc base) to
    ``k.VMALLOC_START``. All placements are planned and checked (free range, memory)
    before the first is applied. The design places each area where the snapshot has it:
    vm_structs with ``place_vm_area`` (their pages from their node, ``N<n>=``, with
    ``populate_vm_area``), ``unpurged vm_area`` lines with ``place_lazy_area``,
    ``vm_map_ram`` lines with ``place_vmap_block`` (a full block holding one live page:
    vmallocinfo does not say how full a block is). Memory is checked first: a ConfigError
    names the line (of ``path``, or the snapshot's file) whose area passes the model's
    free pages, and nothing is placed.
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
            kernel_base = snapshot_base(areas, hi - lo) or 0
        rep.kernel_base = kernel_base
        rep.model_base = lo
        where = {a.lineno: a.start - kernel_base + lo for a in areas}

    plan: list[tuple[int, Area]] = []
    need = 0
    free = k.nr_free_pages()
    path = snap.path if isinstance(snap, Snapshot) else path
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
        pages = _pages_needed(a)
        need += pages
        if need > free:
            where_ = f"{path}:{a.lineno}: " if path else f"line {a.lineno}: "
            raise ConfigError(
                f"{where_}rebuilding needs {need:,} pages ({need * PAGE_SIZE / GIB:.2f} GiB) up to this area, "
                f"the model has {free:,} free; got an area of {pages:,} pages "
                f"(a machine built for an input has at most {INPUT_MEM_PAGES:,} pages)")
        plan.append((addr, a))
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


def _pages_needed(a: Area) -> int:
    """The pages rebuilding ``a`` takes from the model's memory."""
    if a.kind == "vm":
        if a.flags & VM_ALLOC and a.pages:
            return a.pages
        if a.flags & VM_MAP and not a.flags & VM_ALLOC:
            return a.pages or a.size // PAGE_SIZE - 1
        return 0
    if a.kind == "vm_map_ram":
        return VMAP_MAX_ALLOC  # what vm_map_ram() may map at once while filling the block
    return 0


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


def snapshot_base(snap: Snapshot | list[Area], space: int = 32 << 40) -> int | None:
    """The captured kernel's VMALLOC_START as a snapshot shows it: its lowest area rounded
    down to 1 GiB (x86_64 randomizes the vmalloc base in 1 GiB steps), of the areas a
    vmalloc space of ``space`` bytes from there holds the most of; None if the
    addresses are hashed or there are none."""
    areas = snap.areas if isinstance(snap, Snapshot) else snap
    if not areas or (isinstance(snap, Snapshot) and snap.hashed):
        return None
    # the lowest base whose window holds the most areas: one stray line far below the
    # others does not move every address out of the model's space
    starts = sorted(a.start for a in areas)
    best, best_n, j = starts[0] & ~(GIB - 1), 0, 0
    for i, s in enumerate(starts):
        base = s & ~(GIB - 1)
        if i and base == starts[i - 1] & ~(GIB - 1):
            continue
        j = max(j, i)
        while j < len(starts) and starts[j] < base + space:
            j += 1
        if j - i > best_n:
            best, best_n = base, j - i
    return best


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
    # room for the snapshot's pages twice over, within what a machine for an input gets
    # (rebuild() names the area that passes it)
    kw.setdefault("mem_pages", max(min(max(262144, 2 * pages), INPUT_MEM_PAGES) // nodes * nodes, nodes))
    if vmalloc_start is None:
        vmalloc_start = vmalloc_start_for(design, snapshot_base(snap, designs.design_class(design)
                                                               .default_vmalloc_size()))
    if vmalloc_start is not None:
        kw["vmalloc_start"] = vmalloc_start
    blocks = {a.size for a in snap.areas if a.kind == "vm_map_ram"}
    if len(blocks) == 1:
        conf = designs.design_class(design).config_for(cpus, blocks.pop() // PAGE_SIZE)
        for key, v in (conf or {}).items():
            kw.setdefault(key, v)
    return Kernel(cpus=cpus, design=design, **kw)
