"""Replay a traced kernel's vmalloc activity on the model and compare the outcomes.

The model is driven with the trace's own requests: every allocation with its exact
size (guard page included), alignment and [vstart, vend], every free, every
vm_map_ram/vm_unmap_ram, on the CPU the trace names. The model's VMALLOC_START is the
traced kernel's (the ``vstart`` of the first allocation: KASLR's base of that boot), so
addresses are the kernel's own; a capture the design cannot start there is rebased.

Two modes:

- decision (the default on a design that ``takes_placements``): at every allocation the
  design's allocator says where it would put the area, that choice is compared with
  the kernel's, and the area is then placed where the kernel put it, so one miss does
  not shift every later one: the rate counts decisions;
- free-run (``free_run=True``, and on designs that cannot be told the kernel's
  choice): the model keeps its own choices and the rate counts addresses.

Purges: on a design whose lazy purge is deferred work (``purges_deferred``: 6.x's
drain worker) the replay follows the kernel's purges by default, since their timing
is the machine's, not the model's: the model's own drain work is dropped, and the
lazily freed areas return to the free tree at the kernel's flush of the purge (the
``flush`` after a ``purge`` entry from the same task), frees traced between the purge's
entry and its flush after it (the kernel had taken its lazy list already). Other
designs purge by themselves, as they did in the calling path.

Mapping rules (kprobe form): an ``alloc`` outside vm_map_ram is a vm_struct area,
``get_vm_area_node__(size - PAGE_SIZE, ..., align=align)``, given pages when the
trace later vfree()s it (or the after-snapshot shows pages); the area is freed at its
``free_noflush`` (6.1 defers vfree() from interrupts to a worker: the free_noflush is
when the range turns lazy). An allocation inside vm_map_ram is that call's new vmap
block (or large area): the model's vm_map_ram makes its own, placed at the kernel's
block in decision mode.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, VmapError
from ..inputs.lines import INPUT_MEM_PAGES
from ..mm import designs
from ..mm.constants import GFP_KERNEL, PAGE_SIZE, VM_ALLOC, VMAP_MAX_ALLOC
from ..mm.vmalloc import Kernel
from . import vmallocinfo as vi
from .trace import ALLOC, FLUSH, FREE, MAP_RAM, PURGE, UNMAP_ALIASES, UNMAP_RAM, VFREE, Op, Trace

#: Linux 6.1 x86_64 (Debian, NR_CPUS=8192): VMALLOC_SPACE / NR_CPUS / 16 = 256 pages.
LINUX_61_BLOCK_PAGES = 256
#: The pages a replay maps in all (the pages it gives allocations, and those of
#: vm_map_ram calls; 8 GiB, about 5 s of the host's time): past it, allocations are
#: placed without their pages and vm_map_ram calls are not replayed, each counted in
#: the report, so no input makes a replay run without bound. The real captures map
#: under 20,000.
REPLAY_PAGE_BUDGET = 1 << 21
#: The address space a replay's allocations may span in all, in pages (256 GiB): the
#: model walks an area's range page by page when it unmaps it (about 40 ns a page),
#: so an allocation past it is not replayed, and counted.
REPLAY_VA_BUDGET = 1 << 26

DECISION = "decision"
FREE_RUN = "free-run"


def _ranges(areas: list[tuple[int, int]]) -> str:
    return " ".join(f"[{s:#x}-{e:#x})" for s, e in areas) or "(none)"


@dataclass
class Mismatch:
    """The first difference: where, both addresses, the model's free areas around them
    at the moment the model chose (before the area was placed) on a design that
    ``takes_placements``, else just after the model placed it."""

    line: int
    kernel: int
    model: int | None
    what: str  # "allocation", "vmap block", "vm_map_ram"
    free_near_kernel: list[tuple[int, int]] = field(default_factory=list)
    free_near_model: list[tuple[int, int]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"  first difference at line {self.line} ({self.what}): kernel {self.kernel:#x}, model "
               + (f"{self.model:#x}" if self.model is not None else "NULL")]
        out.append(f"    the model's free areas near the kernel's address: {_ranges(self.free_near_kernel)}")
        if self.model is not None and self.free_near_model != self.free_near_kernel:
            out.append(f"    the model's free areas near its own address: {_ranges(self.free_near_model)}")
        return out


@dataclass
class ReplayResult:
    """What a replay measured (see ``report()`` for the report)."""

    design: str
    cpus: int
    mode: str = DECISION
    following_purges: bool = False
    ops: int = 0
    lines: int = 0
    alloc_compared: int = 0
    alloc_matched: int = 0
    block_compared: int = 0  # vmap blocks (and large areas) allocated inside vm_map_ram
    block_matched: int = 0
    map_compared: int = 0
    map_matched: int = 0
    map_offset_matched: int = 0  # same offset inside its vmap block (vb_alloc's choice)
    model_failed: int = 0  # the kernel's call succeeded, the model's did not
    kernel_failed: int = 0
    placed_as_kernel: int = 0  # decision mode: misses placed at the kernel's address
    first_mismatch: tuple[int, int, int | None] | None = None  # (line, kernel, model)
    mismatch: Mismatch | None = None
    #: the rate of the other mode, when it was run too: mode -> (matched, compared)
    rates: dict[str, tuple[int, int]] = field(default_factory=dict)
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
        return self.alloc_compared + self.block_compared + self.map_compared

    @property
    def matched(self) -> int:
        return self.alloc_matched + self.block_matched + self.map_matched

    @property
    def match_rate(self) -> float:
        return self.matched / self.compared if self.compared else 1.0

    def rate_of(self, mode: str) -> float | None:
        """The match rate of ``mode`` (this replay's, or the other pass's), None if not run."""
        if mode == self.mode:
            return self.match_rate
        got = self.rates.get(mode)
        if got is None:
            return None
        return got[0] / got[1] if got[1] else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("initial", "vmallocinfo", "mismatch", "rates")}
        d["skipped"] = dict(self.skipped)
        d["errors"] = dict(self.errors)
        d["notes"] = dict(self.notes)
        d["match_rate"] = self.match_rate
        d["decision_rate"] = self.rate_of(DECISION)
        d["free_run_rate"] = self.rate_of(FREE_RUN)
        d["rates"] = {m: {"matched": a, "compared": c} for m, (a, c) in self.rates.items()}
        d["lines_per_second"] = self.lines / self.seconds if self.seconds else None
        if self.mismatch is not None:
            d["mismatch"] = dict(self.mismatch.__dict__)
        if self.initial is not None:
            d["initial"] = {"placed": len(self.initial.placed), "skipped": dict(self.initial.skipped),
                            "notes": dict(self.initial.notes)}
        return d

    def report(self) -> list[str]:
        out = [f"replayed {self.ops} operations ({self.lines} lines) on design {self.design}, "
               f"{self.cpus} CPUs, {self.mode} mode, in {self.seconds:.2f} s "
               f"({self.lines / max(self.seconds, 1e-9):,.0f} lines/s)"]
        if self.kernel_base == self.model_base:
            out.append(f"VMALLOC_START {self.model_base:#x}, the traced kernel's: addresses are its own")
        else:
            out.append(f"addresses rebased {self.kernel_base:#x} -> {self.model_base:#x}")
        if self.initial is not None and (self.initial.placed or self.initial.skipped):
            out.append(f"initial population: {len(self.initial.placed)} areas rebuilt before the first event")
            out += ["  " + s for s in self.initial.lines()[1:]]
        what = "decisions" if self.mode == DECISION else "addresses"
        if self.compared:
            out.append(f"address match ({what}): {self.matched}/{self.compared} = {100 * self.match_rate:.1f}% "
                       f"(allocations {self.alloc_matched}/{self.alloc_compared}, vmap blocks "
                       f"{self.block_matched}/{self.block_compared}, vm_map_ram {self.map_matched}/"
                       f"{self.map_compared})")
        else:
            out.append(f"address match ({what}): nothing to compare (no allocation or vm_map_ram of the "
                       f"trace was replayed)")
        for mode, (m, c) in self.rates.items():
            out.append(f"  {mode} mode: {m}/{c} = {100 * (m / c if c else 1.0):.1f}%")
        if self.mode == DECISION and self.placed_as_kernel:
            out.append(f"  misses placed at the kernel's address afterwards: {self.placed_as_kernel}")
        if self.map_compared and self.model_block_pages:
            out.append(f"  vm_map_ram at the same offset inside its vmap block: "
                       f"{self.map_offset_matched}/{self.map_compared}")
        if self.mismatch is not None:
            out += self.mismatch.lines()
        if self.model_failed or self.kernel_failed:
            out.append(f"failures: model {self.model_failed} where the kernel succeeded; kernel {self.kernel_failed}")
        if self.kernel_block_pages or self.model_block_pages:
            out.append(f"vmap block: kernel {self.kernel_block_pages or '-'} pages, model "
                       f"{self.model_block_pages or '-'} pages")
        out.append(f"purges: kernel {self.kernel_purges}, model {self.model_purges}"
                   + (" (following the kernel's)" if self.following_purges else "")
                   + f"; global TLB flushes: kernel {self.kernel_flushes}, model {self.model_flushes}")
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
            if a["lines_equal"]:
                out.append(f"  line for line in (address, size, kind): all {a['lines_captured']} lines equal")
            else:
                d = a["first_line_difference"]
                out.append(f"  line for line in (address, size, kind): differ first at line {d['index'] + 1}: "
                           f"captured {d['captured']}, model {d['model']}")
        out.append("check(): " + ("all invariants hold" if self.check_ok else "FAILED"))
        return out


def _bits_kernel(trace: Trace, after: vi.Snapshot | None) -> int | None:
    size = trace.block_size()
    if size is None and after is not None:
        sizes = {a.size for a in after.areas if a.kind == "vm_map_ram"}
        if len(sizes) == 1:
            size = sizes.pop()
    return size // PAGE_SIZE if size else None


def make_kernel(trace: Trace, design: str = "6.1", block_pages: int | str = "auto",
                after: vi.Snapshot | None = None, **kw: Any) -> tuple[Kernel, int | None]:
    """A Kernel for replaying ``trace``: the trace's CPUs, the memory of a machine built
    for an input (``INPUT_MEM_PAGES``: 1 GiB), its VMALLOC_START, and vmap blocks of
    ``block_pages`` ("auto": the trace's, else Linux 6.1's 256; "model": the design's
    own default). Returns the kernel and the traced block size. A block size the
    design cannot have is a ConfigError naming the trace line (or option) it came from."""
    kbits = _bits_kernel(trace, after)
    kw.setdefault("mem_pages", INPUT_MEM_PAGES)  # page frames are created lazily
    if "vmalloc_start" not in kw:
        start = vi.vmalloc_start_for(design, trace.vstart)
        if start is not None:
            kw["vmalloc_start"] = start
    cpus = trace.nr_cpus
    cls = designs.design_class(design)
    if cls.has_vm_map_ram and block_pages != "model":
        want = (kbits or LINUX_61_BLOCK_PAGES) if block_pages == "auto" else int(block_pages)
        conf = cls.config_for(cpus, want)
        if conf is None:
            bop = trace.block_op()
            if block_pages != "auto":
                raise ConfigError(f"block_pages must be auto, model or a power of two in 128..1024 "
                                  f"(for {cpus} CPUs), got {block_pages}")
            if bop is not None and bop.block is not None:
                raise ConfigError(f"{trace.path}:{bop.block[2]}: the vmap block allocated here has {want} pages; "
                                  f"design {design} has blocks of a power of two in 128..1024 pages "
                                  f"(for {cpus} CPUs): choose one with --block-pages")
            raise ConfigError(f"{after.path if after else trace.path}: the vmap blocks shown have {want} pages; "
                              f"design {design} has blocks of a power of two in 128..1024 pages "
                              f"(for {cpus} CPUs): choose one with --block-pages")
        for key, v in conf.items():
            kw.setdefault(key, v)
    return Kernel(cpus=cpus, design=design, **kw), kbits


def initial_population(trace: Trace, before: vi.Snapshot | None) -> list[vi.Area]:
    """The areas alive when the trace starts: freed in the trace without being allocated
    in it, plus the before-snapshot's areas the trace does not create (the snapshot may
    have been taken after the trace began: the stack of the task that read it is the
    trace's own allocation, taken out here and replayed). A busy snapshot area is the
    trace's own if an allocation of the trace overlaps it; an ``unpurged`` one only if
    that allocation comes before the trace's first purge (until then a lazy range
    cannot be reused)."""
    allocated: list[tuple[int, int, int]] = []  # (start, end, op index)
    seen: set[int] = set()
    pre: dict[int, vi.Area] = {}
    first_purge = len(trace.ops)
    for i, op in enumerate(trace.ops):
        if op.kind == ALLOC and op.start is not None and op.end is not None:
            allocated.append((op.start, op.end, i))
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
                 hints: dict[int, tuple[bool, vi.Area | None]], follow_purges: bool,
                 decide: bool) -> None:
        self.k = k
        self.trace = trace
        self.res = res
        self.delta = k.VMALLOC_START - kbase
        self.lo, self.hi = k.VMALLOC_START, k.VMALLOC_END
        self.hints = hints
        self.follow = follow_purges
        self.decide = decide  # decision mode: place each area at the kernel's address
        self.vm: dict[int, int] = {}  # kernel start -> model start (vm_struct areas)
        self.ram: dict[int, tuple[int, int]] = {}  # kernel addr -> (model addr, count)
        self.blocks: set[int] = set()
        self.pool = [p for p in (k.alloc_page() for _ in range(VMAP_MAX_ALLOC)) if p is not None]
        self.big_pool: list[Any] = []
        self.budget = REPLAY_PAGE_BUDGET  # pages this replay may still map (see REPLAY_PAGE_BUDGET)
        self.va_budget = REPLAY_VA_BUDGET  # address space its allocations may still span
        self.klazy = 0
        self.via_vmap = not k.has_vm_map_ram  # the design has no vm_map_ram: replay it as vmap()
        self.unmade: set[int] = set()  # kernel vm_map_ram addresses the model failed to map
        # the placement hook's state: the kernel's address for the allocation under way
        self.expect: int | None = None
        self.choice: int | None = None
        self.asked = 0
        self.what = "allocation"
        self.op: Op | None = None
        # purges followed at their flush: the purging task, frees held until its flush
        self.kprobe_purges = "kprobe" in trace.forms
        self.purging: int | None = None
        self.held: list[Op] = []
        self.dropped: Counter[str] = Counter()

    # -- the design's hooks ------------------------------------------------------------------
    def install(self) -> None:
        k = self.k
        if k.takes_placements:
            k.placement_hook = self.placement
        if self.follow:
            k.work_scheduler = self.drop_work

    def uninstall(self) -> None:
        self.k.placement_hook = None
        self.k.work_scheduler = None

    def drop_work(self, cpu: int, name: str, fn: Callable[[], None]) -> None:
        """The model's own deferred work (its drain of lazy areas): the traced kernel's
        purges are followed instead."""
        self.dropped[name] += 1

    def placement(self, size: int, align: int, vstart: int, vend: int, choice: int | None) -> int | None:
        """The design's allocator asks: its own ``choice``; the answer is the kernel's
        address in decision mode (None: keep the choice). The first miss is recorded
        with the free areas around both addresses, before anything moves."""
        self.asked += 1
        self.choice = choice
        want = self.expect
        if want is None:
            return None
        if choice != want and self.res.mismatch is None and self.op is not None:
            self.record(self.op, want, choice, self.what)
        return want if self.decide else None

    def record(self, op: Op, kern: int, model: int | None, what: str) -> None:
        if self.res.mismatch is not None:
            return
        k = self.k
        self.res.first_mismatch = (op.lineno, kern, model)
        self.res.mismatch = Mismatch(op.lineno, kern, model, what, k.free_areas_near(kern),
                                     k.free_areas_near(model) if model is not None else [])

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> None:
        k, res = self.k, self.res
        ops = self.trace.ops
        every = max(1, len(ops) // 200)
        set_cpu = k.set_cpu
        ncpu = k.cpus
        self.install()
        try:
            for i, op in enumerate(ops):
                if op.cpu >= ncpu:
                    res.skipped["event on a CPU the model lacks"] += 1
                    continue
                set_cpu(op.cpu)
                self.step(op, i)
                if i % every == 0:
                    res.lazy.append((op.lineno, self.klazy, k.vmap_lazy_nr))
            self.end_purge()
        finally:
            self.uninstall()
        for name, n in self.dropped.items():
            res.notes[f"{name} queued by the model and dropped (the kernel's purges are followed)"] += n
        res.lazy.append((ops[-1].lineno if ops else 0, self.klazy, k.vmap_lazy_nr))

    def step(self, op: Op, i: int) -> None:
        k, res = self.k, self.res
        kind = op.kind
        if self.purging is not None and op.pid == self.purging and kind != FLUSH:
            self.end_purge()  # the purge flushed nothing: its lazy list was empty
        try:
            if kind == ALLOC:
                self.alloc(op, i)
            elif kind == FREE:
                if self.purging is not None:
                    self.held.append(op)  # after the purge took its list: lazy until the next
                else:
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
                if self.follow:
                    if self.kprobe_purges:
                        self.end_purge()
                        self.purging = op.pid  # the areas return at this task's flush
                    elif k.vmap_lazy_nr:
                        k.purge_vmap_area_lazy()  # the tracepoint fires when the purge is done
            elif kind == FLUSH:
                res.kernel_flushes += 1
                self.klazy = 0
                if self.purging == op.pid:
                    if k.vmap_lazy_nr:
                        # Deviation: 6.1's drain does not purge fragmented vmap blocks; the
                        # model's purge_vmap_area_lazy() does (none are fragmented here).
                        k.purge_vmap_area_lazy()
                    self.end_purge()
            elif kind == UNMAP_ALIASES:
                k.vm_unmap_aliases()
        except VmapError as e:
            res.errors[f"{type(e).__name__}: {str(e).split(' (')[0][:80]}"] += 1

    def end_purge(self) -> None:
        self.purging = None
        held, self.held = self.held, []
        for op in held:
            try:
                self.free(op)
            except VmapError as e:
                self.res.errors[f"{type(e).__name__}: {str(e).split(' (')[0][:80]}"] += 1

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
        if size // PAGE_SIZE > self.va_budget:
            res.skipped[f"allocation past the replay's budget of {REPLAY_VA_BUDGET * PAGE_SIZE >> 30} GiB "
                        f"of address space"] += 1
            return
        self.va_budget -= size // PAGE_SIZE
        vfreed, hint = self.hints.get(i, (False, None))
        caller = hint.caller if hint is not None else op.caller or "alloc_vmap_area"
        kern = None if op.start is None else op.start + self.delta
        self.expect, self.op, self.what, self.asked = kern, op, "allocation", 0
        try:
            area = k.get_vm_area_node__(size - PAGE_SIZE, VM_ALLOC, vstart, vend, -1, GFP_KERNEL,
                                        caller, align=max(align, 1))
        finally:
            self.expect = self.op = None
        if kern is None:
            res.kernel_failed += 1
            if area is not None:
                k.vunmap(area.addr)
            return
        res.alloc_compared += 1
        # the model's own choice: what its allocator said, else where the area went
        choice = self.choice if self.asked else (None if area is None else area.addr)
        if choice == kern:
            res.alloc_matched += 1
        else:
            self.record(op, kern, choice, "allocation")
            if area is not None and area.addr == kern:
                res.placed_as_kernel += 1
        if area is None:
            res.model_failed += 1
            return
        self.vm[op.start] = area.addr  # type: ignore[index]
        if hint is not None:
            area.flags = hint.flags or VM_ALLOC
            if hint.phys:
                area.phys_addr = hint.phys
        npages = (hint.pages or 0) if hint is not None else (size // PAGE_SIZE - 1 if vfreed else 0)
        if npages and area.flags & VM_ALLOC:
            if npages > self.budget:
                res.notes[f"allocation placed without its pages (the replay's budget of "
                          f"{REPLAY_PAGE_BUDGET:,} mapped pages is spent)"] += 1
                return
            if npages > k.nr_free_pages():
                res.notes["allocation placed without its pages (more than the model's free memory)"] += 1
                return
            self.budget -= npages
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
        if count > len(pool) and count - len(self.big_pool) > k.nr_free_pages():
            res.skipped["vm_map_ram larger than the model's memory"] += 1
            return
        if count > self.budget:
            res.skipped[f"vm_map_ram past the replay's budget of {REPLAY_PAGE_BUDGET:,} mapped pages"] += 1
            return
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
        self.budget -= count
        kblock = None
        if op.block is not None:
            self.blocks.add(op.block[0])
            kblock = op.block[0] + self.delta
        maddr = None
        self.expect, self.op, self.what, self.asked = kblock, op, "vmap block", 0
        try:
            if not self.via_vmap:
                maddr = k.vm_map_ram(pool, count, node)
            else:
                # 2.6.27 had no vm_map_ram; XFS mapped its multi-page buffers with vmap()
                res.notes["vm_map_ram replayed as vmap() (the design has no vm_map_ram)"] += 1
                maddr = k.vmap(pool, count)
        finally:
            self.expect = self.op = None
        if self.asked and not self.via_vmap:
            if kblock is not None:
                res.block_compared += 1
                if self.choice == kblock:
                    res.block_matched += 1
            elif op.start:
                res.notes["vm_map_ram: the model allocated a new block where the kernel did not"] += 1
        elif kblock is not None and k.takes_placements and not self.via_vmap:
            res.block_compared += 1  # the kernel needed a new block, the model did not
            res.notes["vm_map_ram: the kernel allocated a new block where the model did not"] += 1
        if not op.start:
            res.kernel_failed += 1
            if maddr is not None:
                if self.via_vmap:
                    k.vunmap(maddr)
                else:
                    k.vm_unmap_ram(maddr, count)
            return
        kern = op.start + self.delta
        res.map_compared += 1
        if maddr is None:
            res.model_failed += 1
            self.unmade.add(op.start)
            self.record(op, kern, None, "vm_map_ram")
            return
        if maddr == kern:
            res.map_matched += 1
        else:
            self.record(op, kern, maddr, "vm_map_ram")
        block = k.vmap_block_pages * PAGE_SIZE
        if block and op.a <= VMAP_MAX_ALLOC and (maddr - kern) % block == 0:
            res.map_offset_matched += 1
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


def replay_trace(trace: Trace, design: str = "6.1", before: vi.Snapshot | None = None,
                 after: vi.Snapshot | None = None, block_pages: int | str = "auto",
                 follow_purges: bool | None = None, check: bool = True, free_run: bool = False,
                 both_modes: bool = False, **kernel_kw: Any) -> tuple[Kernel, ReplayResult]:
    """Replay ``trace`` on a fresh Kernel of ``design``; returns the kernel and the result.

    Decision mode unless ``free_run`` (or the design cannot be told the kernel's
    choices: then free-run). ``follow_purges`` None: follow the kernel's purges on a
    design whose purges are deferred work. ``both_modes``: replay once more in the
    other mode (on a design that takes placements) and keep its rate in ``rates``."""
    t0 = time.perf_counter()
    k, kbits = make_kernel(trace, design, block_pages, after, **kernel_kw)
    decide = not free_run and k.takes_placements
    follow = k.purges_deferred if follow_purges is None else follow_purges
    res = ReplayResult(design=k.design, cpus=k.cpus, mode=DECISION if decide else FREE_RUN,
                       following_purges=follow, ops=len(trace.ops), lines=trace.lines)
    res.kernel_block_pages = kbits
    res.model_block_pages = k.vmap_block_pages or None
    kbase = trace.vstart
    if kbase is None:
        snap = before or after
        kbase = min((a.start for a in snap.areas), default=0) & ~(vi.GIB - 1) if snap else k.VMALLOC_START
    res.kernel_base, res.model_base = kbase, k.VMALLOC_START
    init = initial_population(trace, before)
    purges0, flushes0 = k.purges, k.stats["tlb_flushes"]
    r = _Replayer(k, trace, res, kbase, _hints(trace, after), follow, decide)
    if init:
        res.initial = vi.rebuild(k, init, kernel_base=kbase, hashed=False, path=before.path if before else "")
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
    if both_modes and k.takes_placements:
        _, other = replay_trace(trace, design, before, None, block_pages, follow_purges, False,
                                free_run=decide, **kernel_kw)
        res.rates[other.mode] = (other.matched, other.compared)
    return k, res


def _line_key(a: vi.Area, delta: int) -> tuple[int, int, str]:
    return a.start + delta, a.size, a.label


def compare_after(k: Kernel, after: vi.Snapshot, kbase: int, text: str | None = None) -> dict[str, Any]:
    """The captured after-snapshot (areas inside the model's range) against the model's:
    counts by kind, (kind, size) pairs, areas at the same (address, size, kind), and
    the two files line for line in (address, size, kind)."""
    delta = k.VMALLOC_START - kbase
    inside = [a for a in after.areas
              if k.VMALLOC_START <= a.start + delta and a.end + delta <= k.VMALLOC_END + 1]
    model = vi.parse_vmallocinfo(text if text is not None else vi.render_modern(k), "<model>")
    out = vi.compare(inside, model)
    mset = {(a.start, a.size, a.label) for a in model.areas}
    out["exact_areas"] = sum(1 for a in inside if _line_key(a, delta) in mset)
    out["captured_outside"] = len(after.areas) - len(inside)
    out.update(vi.compare_lines(inside, model.areas, delta))
    return out
