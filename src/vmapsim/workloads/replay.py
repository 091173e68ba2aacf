"""Replay a traced kernel's vmalloc activity on the model and compare the outcomes.

The model is driven with the trace's own requests: every allocation with its exact
size (guard page included), alignment and [vstart, vend] (rebased from the traced
kernel's VMALLOC_START to the model's), every free, every vm_map_ram/vm_unmap_ram, on
the CPU the trace names. The model decides everything else itself (where areas go,
when to purge), and the replay compares: the addresses it chose with the kernel's,
the number of purges and flushes, lazy pages over time, and /proc/vmallocinfo after.

Mapping rules (kprobe form): an ``alloc`` outside vm_map_ram is a vm_struct area,
``get_vm_area_node__(size - PAGE_SIZE, ..., align=align)``, given pages when the
trace later vfree()s it (or the after-snapshot shows pages); the area is freed at its
``free_noflush`` (6.1 defers vfree() from interrupts to a worker: the free_noflush is
when the range turns lazy). A block allocated inside vm_map_ram is the model's own
business (its vb_alloc makes its own blocks); its kernel address is only compared.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, VmapError
from ..mm import designs
from ..mm.constants import GFP_KERNEL, PAGE_SIZE, VM_ALLOC, VMAP_MAX_ALLOC
from ..mm.vmalloc import Kernel
from . import vmallocinfo as vi
from .trace import ALLOC, FLUSH, FREE, MAP_RAM, PURGE, UNMAP_ALIASES, UNMAP_RAM, VFREE, Op, Trace

#: Linux 6.1 x86_64 (Debian, NR_CPUS=8192): VMALLOC_SPACE / NR_CPUS / 16 = 256 pages.
LINUX_61_BLOCK_PAGES = 256


@dataclass
class ReplayResult:
    """What a replay measured (see ``lines()`` for the report)."""

    design: str
    cpus: int
    ops: int = 0
    lines: int = 0
    alloc_compared: int = 0
    alloc_matched: int = 0
    map_compared: int = 0
    map_matched: int = 0
    map_offset_matched: int = 0  # same offset inside its vmap block (vb_alloc's choice)
    model_failed: int = 0  # the kernel's call succeeded, the model's did not
    kernel_failed: int = 0
    first_mismatch: tuple[int, int, int | None] | None = None  # (line, kernel (rebased), model)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    kernel_purges: int = 0
    kernel_flushes: int = 0
    model_purges: int = 0
    model_flushes: int = 0
    lazy: list[tuple[int, int, int]] = field(default_factory=list)  # (line, kernel, model)
    kernel_block_pages: int | None = None
    model_block_pages: int | None = None
    kernel_base: int = 0
    model_base: int = 0
    initial: vi.RebuildReport | None = None
    after: dict[str, Any] | None = None
    vmallocinfo: str = ""
    seconds: float = 0.0
    check_ok: bool = True

    @property
    def compared(self) -> int:
        return self.alloc_compared + self.map_compared

    @property
    def matched(self) -> int:
        return self.alloc_matched + self.map_matched

    @property
    def match_rate(self) -> float:
        return self.matched / self.compared if self.compared else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("initial", "vmallocinfo")}
        d["skipped"] = dict(self.skipped)
        d["errors"] = dict(self.errors)
        d["notes"] = dict(self.notes)
        d["match_rate"] = self.match_rate
        d["lines_per_second"] = self.lines / self.seconds if self.seconds else None
        if self.initial is not None:
            d["initial"] = {"placed": len(self.initial.placed), "skipped": dict(self.initial.skipped),
                            "notes": dict(self.initial.notes)}
        return d

    def report(self) -> list[str]:
        out = [f"replayed {self.ops} operations ({self.lines} lines) on design={self.design}, "
               f"{self.cpus} CPUs, in {self.seconds:.2f} s ({self.lines / max(self.seconds, 1e-9):,.0f} lines/s)",
               f"addresses rebased {self.kernel_base:#x} -> {self.model_base:#x}"]
        if self.initial is not None and (self.initial.placed or self.initial.skipped):
            out.append(f"initial population: {len(self.initial.placed)} areas rebuilt before the first event")
            out += ["  " + s for s in self.initial.lines()[1:]]
        out.append(f"address match: {self.matched}/{self.compared} = {100 * self.match_rate:.1f}% "
                   f"(allocations {self.alloc_matched}/{self.alloc_compared}, "
                   f"vm_map_ram {self.map_matched}/{self.map_compared})")
        if self.map_compared and self.model_block_pages:
            out.append(f"  vm_map_ram at the same offset inside its vmap block: "
                       f"{self.map_offset_matched}/{self.map_compared}")
        if self.first_mismatch:
            ln, kern, mod = self.first_mismatch
            out.append(f"  first difference at line {ln}: kernel {kern:#x}, model "
                       + (f"{mod:#x}" if mod is not None else "NULL"))
        if self.model_failed or self.kernel_failed:
            out.append(f"failures: model {self.model_failed} where the kernel succeeded; kernel {self.kernel_failed}")
        if self.kernel_block_pages or self.model_block_pages:
            out.append(f"vmap block: kernel {self.kernel_block_pages} pages, model {self.model_block_pages} pages")
        out.append(f"purges: kernel {self.kernel_purges}, model {self.model_purges}; "
                   f"global TLB flushes: kernel {self.kernel_flushes}, model {self.model_flushes}")
        if self.lazy:
            km = max(k for _, k, _ in self.lazy)
            mm = max(m for _, _, m in self.lazy)
            out.append(f"lazy pages: max kernel {km}, model {mm}; at the end kernel {self.lazy[-1][1]}, "
                       f"model {self.lazy[-1][2]} ({len(self.lazy)} samples)")
        for reason, n in sorted(self.skipped.items()):
            out.append(f"not replayed: {n} x {reason}")
        for note, n in sorted(self.notes.items()):
            out.append(f"note: {n} x {note}")
        for err, n in sorted(self.errors.items()):
            out.append(f"model refused: {n} x {err}")
        if self.after is not None:
            a = self.after
            out.append("vmallocinfo after, captured vs model (areas inside the model's range):")
            for kind, (c, m) in a["by_kind"].items():
                out.append(f"  {kind:12s} {c:6d} {m:6d}")
            out.append(f"  same (kind, size): {a['kind_size_common']} of {a['kind_size_captured']} captured; "
                       f"same (address, size, kind): {a['exact_areas']}")
        out.append("check(): " + ("all invariants hold" if self.check_ok else "FAILED"))
        return out


def _bits_kernel(trace: Trace, after: vi.Snapshot | None) -> int | None:
    size = trace.block_size()
    if size is None and after is not None:
        sizes = {a.size for a in after.areas if a.kind == "vm_map_ram"}
        if len(sizes) == 1:
            size = sizes.pop()
    return size // PAGE_SIZE if size else None


def make_kernel(trace: Trace, design: str = "2.6.28", block_pages: int | str = "auto",
                after: vi.Snapshot | None = None, **kw: Any) -> tuple[Kernel, int | None]:
    """A Kernel for replaying ``trace``: the trace's CPUs, plenty of memory, and on the
    rewrite design vmap blocks of ``block_pages`` ("auto": the trace's, else Linux 6.1's
    256; "model": the design's own default). Returns the kernel and the traced block size."""
    kbits = _bits_kernel(trace, after)
    kw.setdefault("mem_pages", 1 << 22)  # page frames are created lazily: costs nothing
    cpus = trace.nr_cpus
    cls = designs.design_class(design)
    if cls.has_vm_map_ram and block_pages != "model":
        want = (kbits or LINUX_61_BLOCK_PAGES) if block_pages == "auto" else int(block_pages)
        conf = cls.config_for(cpus, want)
        if conf is None:
            raise ConfigError(f"block_pages must be a power of two in 128..1024, got {block_pages}")
        for key, v in conf.items():
            kw.setdefault(key, v)
    return Kernel(cpus=cpus, design=design, **kw), kbits


def initial_population(trace: Trace, before: vi.Snapshot | None) -> list[vi.Area]:
    """The areas alive when the trace starts: freed in the trace without being allocated
    in it, plus the before-snapshot's areas the trace does not create (the snapshot may
    have been taken after the trace began). A busy snapshot area is the trace's own if
    an allocation of the trace overlaps it; an ``unpurged`` one only if that allocation
    comes before the trace's first purge (until then a lazy range cannot be reused)."""
    allocated: list[tuple[int, int, int]] = []  # (start, end, op index)
    seen: set[int] = set()
    pre: dict[int, vi.Area] = {}
    first_purge = len(trace.ops)
    for i, op in enumerate(trace.ops):
        if op.kind == ALLOC and op.start is not None:
            allocated.append((op.start, op.end, i))  # type: ignore[arg-type]
            seen.add(op.start)
        elif op.kind == MAP_RAM and op.block is not None:
            allocated.append((op.block[0], op.block[1], i))
            seen.add(op.block[0])
        elif op.kind == FREE and op.start is not None and op.end is not None and op.start not in seen:
            seen.add(op.start)
            # negative line numbers: trace lines, kept apart from the snapshot's
            pre[op.start] = vi.Area(-op.lineno, op.start, op.end, op.end - op.start, "vm", "pre-trace")
        elif op.kind in (PURGE, FLUSH) and first_purge == len(trace.ops):
            first_purge = i
    out = list(pre.values())
    if before is None:
        return out
    ranges = sorted(allocated + [(a.start, a.end, -1) for a in out])
    starts = [r[0] for r in ranges]
    longest = max((e - s for s, e, _ in ranges), default=0)

    def first_overlap(a: vi.Area) -> int | None:
        i = bisect.bisect_left(starts, a.end)
        best = None
        while i > 0:
            i -= 1
            s, e, idx = ranges[i]
            if s + longest <= a.start:
                break
            if e > a.start and (best is None or idx < best):
                best = idx
        return best

    for a in before.areas:
        p = pre.get(a.start)
        if p is not None and a.size == p.size:
            p.caller, p.words, p.pages, p.nodes = a.caller, a.words, a.pages, a.nodes
            continue
        idx = first_overlap(a)
        if idx is None or (a.kind == "unpurged" and idx > first_purge):
            out.append(a)
    return out


class _Replayer:
    def __init__(self, k: Kernel, trace: Trace, res: ReplayResult, kbase: int,
                 hints: dict[int, tuple[bool, vi.Area | None]], follow_purges: bool) -> None:
        self.k = k
        self.trace = trace
        self.res = res
        self.delta = k.VMALLOC_START - kbase
        self.lo, self.hi = k.VMALLOC_START, k.VMALLOC_END
        self.hints = hints
        self.follow = follow_purges
        self.vm: dict[int, int] = {}  # kernel start -> model start (vm_struct areas)
        self.ram: dict[int, tuple[int, int]] = {}  # kernel addr -> (model addr, count)
        self.blocks: set[int] = set()
        self.pool = [p for p in (k.alloc_page() for _ in range(VMAP_MAX_ALLOC)) if p is not None]
        self.big_pool: list[Any] = []
        self.klazy = 0
        self.via_vmap = not k.has_vm_map_ram  # the design has no vm_map_ram: replay it as vmap()
        self.unmade: set[int] = set()  # kernel vm_map_ram addresses the model failed to map

    def mismatch(self, op: Op, kern: int, model: int | None) -> None:
        if self.res.first_mismatch is None:
            self.res.first_mismatch = (op.lineno, kern, model)

    def run(self) -> None:
        k, res = self.k, self.res
        ops = self.trace.ops
        every = max(1, len(ops) // 200)
        set_cpu = k.set_cpu
        ncpu = k.cpus
        for i, op in enumerate(ops):
            if op.cpu >= ncpu:
                res.skipped["event on a CPU the model lacks"] += 1
                continue
            set_cpu(op.cpu)
            kind = op.kind
            try:
                if kind == ALLOC:
                    self.alloc(op, i)
                elif kind == FREE:
                    self.free(op)
                elif kind == MAP_RAM:
                    self.map_ram(op)
                elif kind == UNMAP_RAM:
                    self.unmap_ram(op)
                elif kind == VFREE:
                    pass  # the area turns lazy at its free_noflush
                elif kind == PURGE:
                    res.kernel_purges += 1
                    if op.a:  # the tracepoint's num_purged
                        self.klazy = 0
                    if self.follow and k.vmap_lazy_nr:
                        k.purge_vmap_area_lazy()
                elif kind == FLUSH:
                    res.kernel_flushes += 1
                    self.klazy = 0
                elif kind == UNMAP_ALIASES:
                    k.vm_unmap_aliases()
            except VmapError as e:
                res.errors[f"{type(e).__name__}: {str(e).split(' (')[0][:80]}"] += 1
            if i % every == 0:
                res.lazy.append((op.lineno, self.klazy, k.vmap_lazy_nr))
        res.lazy.append((ops[-1].lineno if ops else 0, self.klazy, k.vmap_lazy_nr))

    def alloc(self, op: Op, i: int) -> None:
        k, res = self.k, self.res
        size, align = op.a, op.b
        vstart, vend = op.c + self.delta, op.d + self.delta
        if vstart < self.lo or vend > self.hi + 1 or vstart >= vend:
            res.skipped["allocation outside the model's vmalloc space"] += 1
            return
        if size < 2 * PAGE_SIZE or size % PAGE_SIZE or align & (align - 1):
            res.skipped["allocation smaller than 2 pages or unaligned"] += 1
            return
        vfreed, hint = self.hints.get(i, (False, None))
        caller = hint.caller if hint is not None else op.caller or "alloc_vmap_area"
        area = k.get_vm_area_node__(size - PAGE_SIZE, VM_ALLOC, vstart, vend, -1, GFP_KERNEL,
                                    caller, align=max(align, 1))
        if op.start is None:
            res.kernel_failed += 1
            if area is not None:
                k.vunmap(area.addr)
            return
        res.alloc_compared += 1
        if area is None:
            res.model_failed += 1
            self.mismatch(op, op.start + self.delta, None)
            return
        if area.addr == op.start + self.delta:
            res.alloc_matched += 1
        else:
            self.mismatch(op, op.start + self.delta, area.addr)
        self.vm[op.start] = area.addr
        if hint is not None:
            area.flags = hint.flags or VM_ALLOC
            if hint.phys:
                area.phys_addr = hint.phys
        npages = (hint.pages or 0) if hint is not None else (size // PAGE_SIZE - 1 if vfreed else 0)
        if npages and area.flags & VM_ALLOC:
            counts: dict[int, int] = {}
            for node, n in (hint.nodes if hint is not None and hint.nodes else {-1: npages}).items():
                node = node if node < k.machine.mem.nodes else -1
                counts[node] = counts.get(node, 0) + n
            k.populate_vm_area(area, counts)

    def free(self, op: Op) -> None:
        k, res = self.k, self.res
        start = op.start
        assert start is not None
        if op.end is not None:
            self.klazy += (op.end - start) // PAGE_SIZE
        else:
            self.klazy = op.a  # the tracepoint's nr_lazy
        maddr = self.vm.pop(start, None)
        if maddr is None:
            if start in self.blocks:
                self.blocks.discard(start)
                return  # a vmap block (or large vm_map_ram area) the model frees itself
            res.skipped["free of an area the replay never saw allocated"] += 1
            return
        area = k.find_vm_area(maddr)
        if area is None:
            res.skipped["free of an area the model already freed"] += 1
            return
        if area.pages and area.flags & VM_ALLOC:
            k.vfree(maddr)
        else:
            k.vunmap(maddr)

    def map_ram(self, op: Op) -> None:
        k, res = self.k, self.res
        count = op.a
        node = op.b if 0 <= op.b < k.machine.mem.nodes else -1
        pool = self.pool
        if count > len(pool):
            while len(self.big_pool) < count:
                p = k.alloc_page()
                if p is None:
                    break
                self.big_pool.append(p)
            pool = self.big_pool
        if count > len(pool):
            res.skipped["vm_map_ram larger than the model's memory"] += 1
            return
        if op.block is not None:
            self.blocks.add(op.block[0])
        maddr = None
        if not self.via_vmap:
            maddr = k.vm_map_ram(pool, count, node)
        else:
            # 2.6.27 had no vm_map_ram; XFS mapped its multi-page buffers with vmap()
            res.notes["vm_map_ram replayed as vmap() (the design has no vm_map_ram)"] += 1
            maddr = k.vmap(pool, count)
        if not op.start:
            res.kernel_failed += 1
            if maddr is not None:
                if self.via_vmap:
                    k.vunmap(maddr)
                else:
                    k.vm_unmap_ram(maddr, count)
            return
        res.map_compared += 1
        if maddr is None:
            res.model_failed += 1
            self.unmade.add(op.start)
            self.mismatch(op, op.start + self.delta, None)
            return
        if maddr == op.start + self.delta:
            res.map_matched += 1
        block = k.vmap_block_pages * PAGE_SIZE
        if block and op.a <= VMAP_MAX_ALLOC and (maddr - op.start - self.delta) % block == 0:
            res.map_offset_matched += 1
        if maddr != op.start + self.delta:
            self.mismatch(op, op.start + self.delta, maddr)
        self.ram[op.start] = (maddr, count)

    def unmap_ram(self, op: Op) -> None:
        assert op.start is not None
        got = self.ram.pop(op.start, None)
        if got is None:
            if op.start in self.unmade:
                self.unmade.discard(op.start)
                self.res.skipped["vm_unmap_ram of a mapping the model could not make"] += 1
            else:
                self.res.skipped["vm_unmap_ram of a mapping made before the trace"] += 1
            return
        if got[1] != op.a:
            self.res.errors["vm_unmap_ram count differs from the vm_map_ram's"] += 1
            self.ram[op.start] = got
            return
        if self.via_vmap:
            self.k.vunmap(got[0])
        else:
            self.k.vm_unmap_ram(got[0], got[1])


def _hints(trace: Trace, after: vi.Snapshot | None) -> dict[int, tuple[bool, vi.Area | None]]:
    """For each allocation (op index): was it vfree()d, and the after-snapshot's line for it
    if it is still alive at the end (its caller, kind and pages)."""
    live: dict[int, int] = {}
    vfreed: set[int] = set()
    for i, op in enumerate(trace.ops):
        if op.kind == ALLOC and op.start is not None:
            live[op.start] = i
        elif op.kind == VFREE and op.start in live:
            vfreed.add(live[op.start])  # type: ignore[index]
        elif op.kind == FREE:
            live.pop(op.start, None)  # type: ignore[arg-type]
    by_start = {a.start: a for a in after.areas if a.kind == "vm"} if after is not None else {}
    out: dict[int, tuple[bool, vi.Area | None]] = {i: (True, None) for i in vfreed}
    for start, i in live.items():
        a = by_start.get(start)
        if a is not None and a.size == trace.ops[i].a:
            out[i] = (i in vfreed, a)
    return out


def replay_trace(trace: Trace, design: str = "2.6.28", before: vi.Snapshot | None = None,
                 after: vi.Snapshot | None = None, block_pages: int | str = "auto",
                 follow_purges: bool = False, check: bool = True, **kernel_kw: Any) -> tuple[Kernel, ReplayResult]:
    """Replay ``trace`` on a fresh Kernel of ``design``; returns the kernel and the result."""
    t0 = time.perf_counter()
    k, kbits = make_kernel(trace, design, block_pages, after, **kernel_kw)
    res = ReplayResult(design=k.design, cpus=k.cpus, ops=len(trace.ops), lines=trace.lines)
    res.kernel_block_pages = kbits
    res.model_block_pages = k.vmap_block_pages or None
    kbase = trace.vstart
    if kbase is None:
        snap = before or after
        kbase = min((a.start for a in snap.areas), default=0) & ~(vi.GIB - 1) if snap else k.VMALLOC_START
    res.kernel_base, res.model_base = kbase, k.VMALLOC_START
    init = initial_population(trace, before)
    purges0, flushes0 = k.purges, k.stats["tlb_flushes"]
    r = _Replayer(k, trace, res, kbase, _hints(trace, after), follow_purges)
    if init:
        res.initial = vi.rebuild(k, init, kernel_base=kbase, hashed=False)
        by_line = {a.lineno: a for a in init}
        for line, maddr in res.initial.placed.items():
            a = by_line[line]
            if a.kind == "vm":
                r.vm[a.start] = maddr
    r.run()
    res.model_purges = k.purges - purges0
    res.model_flushes = k.stats["tlb_flushes"] - flushes0
    res.vmallocinfo = vi.render_modern(k)
    if after is not None:
        res.after = compare_after(k, after, kbase, res.vmallocinfo)
    if check:
        try:
            k.check()
        except VmapError:
            res.check_ok = False
    res.seconds = time.perf_counter() - t0
    return k, res


def compare_after(k: Kernel, after: vi.Snapshot, kbase: int, text: str | None = None) -> dict[str, Any]:
    """The captured after-snapshot (areas inside the model's range) against the model's."""
    delta = k.VMALLOC_START - kbase
    inside = [a for a in after.areas
              if k.VMALLOC_START <= a.start + delta and a.end + delta <= k.VMALLOC_END + 1]
    model = vi.parse_vmallocinfo(text if text is not None else vi.render_modern(k), "<model>")
    out = vi.compare(inside, model)
    mset = {(a.start, a.size, a.label) for a in model.areas}
    out["exact_areas"] = sum(1 for a in inside if (a.start + delta, a.size, a.label) in mset)
    out["captured_outside"] = len(after.areas) - len(inside)
    return out
