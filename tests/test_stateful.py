"""Hypothesis stateful tests: random sequences of the whole API on several CPUs.

The reference model is deliberately simple: which allocations are live (start, pages,
kind), what every physical page should contain (by the writes the test made), and
which virtual pages were freed. After every step ``k.check()`` must pass, every read
must return what the reference expects, and a freed address must fault (or raise the
oracle's use-after-free error), never return data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import DESIGNS, has_vm_map_ram
from vmapsim import (
    GFP_KERNEL,
    GFP_ZERO__,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    PAGE_SIZE,
    VM_IOREMAP,
    VM_MAP,
    VM_VPAGES,
    BadAddressError,
    BadPageError,
    InvalidArgumentError,
    Kernel,
    Page,
    PageFault,
    UseAfterFreeError,
    VmapError,
    vm_area_struct,
)
from vmapsim.hw.physmem import DMA32_END_PFN

P = PAGE_SIZE
CPUS = 4

VMALLOCS = ["vmalloc", "vmalloc_user", "vmalloc_32", "vmalloc_32_user", "vmalloc_exec",
            "vmalloc_node", "vmalloc__"]
ZEROED = {"vmalloc_user", "vmalloc_32_user", "vmalloc__"}  # vmalloc__ is called with GFP_ZERO__


@dataclass(eq=False)
class Alloc:
    kind: str  # a VMALLOCS name, "vmap", "ram" (vm_map_ram) or "area" (get_vm_area)
    addr: int
    npages: int
    pages: list[Page] = field(default_factory=list)
    mapped: bool = True  # "area": whether map_vm_area() mapped it


class VmapMachine(RuleBasedStateMachine):
    design = "rewrite"

    allocs = Bundle("allocs")
    dead = Bundle("dead")

    def __init__(self) -> None:
        super().__init__()
        self.k: Kernel | None = None
        self.live: dict[int, Alloc] = {}
        self.content: dict[Page, bytearray] = {}
        self.user_pages: list[Page] = []
        self.dead_pages: set[int] = set()
        self.vmas: list[tuple[vm_area_struct, list[Page]]] = []
        #: VM_VPAGES allocations: start -> (address, pages) of the vmalloc()ed page array
        self.arrays: dict[int, tuple[int, int]] = {}

    # -- set-up ---------------------------------------------------------------------------
    @precondition(lambda self: self.k is None)
    @rule(nodes=st.sampled_from([1, 2]), small_space=st.booleans(),
          tlb=st.sampled_from([None, 8]), flaw=st.booleans())
    def boot(self, nodes: int, small_space: bool, tlb: int | None, flaw: bool) -> None:
        # the vm_unmap_aliases() gap of full blocks: a switch on 2.6.28, the default on 6.1
        kw: dict[str, bool] = {"2.6.28": {"vm_unmap_aliases_2628": flaw},
                               "6.1": {"vm_unmap_aliases_65": not flaw}}.get(self.design, {})
        self.small = small_space
        self.k = Kernel(cpus=CPUS, nodes=nodes, mem_pages=4096, design=self.design,
                        tlb_size=tlb, vmalloc_size=1024 * P if small_space else None, **kw)
        self.free0 = self.k.nr_free_pages()
        self.flaw = flaw and bool(kw)

    def booted(self) -> bool:
        return self.k is not None

    # -- helpers ------------------------------------------------------------------------
    @property
    def kern(self) -> Kernel:
        assert self.k is not None
        return self.k

    def expect(self, page: Page) -> bytearray:
        buf = self.content.get(page)
        if buf is None:
            buf = self.content[page] = bytearray(P)
        return buf

    def became_live(self, a: Alloc) -> Alloc:
        assert a.addr % P == 0 and a.addr not in self.live
        for other in self.live.values():
            assert not (other.addr < a.addr + a.npages * P and a.addr < other.addr + other.npages * P), \
                f"{a.kind} at {a.addr:#x} overlaps live {other.kind} at {other.addr:#x}"
        for arr, n in self.arrays.values():
            assert not (arr < a.addr + a.npages * P and a.addr < arr + n * P), "overlaps a page array"
        self.live[a.addr] = a
        self.dead_pages.difference_update(range(a.addr, a.addr + (a.npages + 1) * P, P))
        return a

    def died(self, a: Alloc) -> int:
        del self.live[a.addr]
        if a.addr in self.arrays:
            arr, n = self.arrays.pop(a.addr)
            self.dead_pages.update(range(arr, arr + n * P, P))
        self.dead_pages.update(range(a.addr, a.addr + a.npages * P, P))
        return a.addr

    def covered(self, addr: int) -> bool:
        """Whether addr lies in a live allocation or in a live VM_VPAGES page array."""
        return (any(a.addr <= addr < a.addr + a.npages * P for a in self.live.values())
                or any(arr <= addr < arr + n * P for arr, n in self.arrays.values()))

    def mapped_user_pages(self) -> set[Page]:
        return {p for a in self.live.values() if a.kind in ("vmap", "ram", "area") and a.mapped
                for p in a.pages}

    def can_fail(self, npages: int) -> bool:
        """Whether the kernel may legitimately refuse an allocation of npages."""
        return self.small or self.kern.nr_free_pages() < npages + 64

    def log_mark(self) -> int:
        """Messages logged plus those printk_ratelimit() dropped: each failure adds one."""
        return len(self.kern.warnings) + self.kern.machine.printk_suppressed

    def refused(self, before_free: int, before_mark: int) -> None:
        k = self.kern
        assert k.nr_free_pages() == before_free, "a failed allocation must give its pages back"
        assert self.log_mark() > before_mark, "a failed allocation must log the kernel's message"

    # -- rules: CPUs ------------------------------------------------------------------------
    @precondition(booted)
    @rule(cpu=st.integers(0, CPUS - 1), scoped=st.booleans())
    def switch_cpu(self, cpu: int, scoped: bool) -> None:
        k = self.kern
        if scoped:
            with k.on_cpu(cpu):
                assert k.this_cpu.id == cpu
        else:
            k.set_cpu(cpu)
            assert k.this_cpu.id == cpu

    # -- rules: vmalloc family ----------------------------------------------------------
    @precondition(booted)
    @rule(target=allocs, kind=st.sampled_from(VMALLOCS),
          npages=st.one_of(st.integers(1, 6), st.sampled_from([200, 520])),
          extra=st.integers(0, P - 1))
    def vmalloc(self, kind: str, npages: int, extra: int) -> Alloc:
        k = self.kern
        size = (npages - 1) * P + extra + 1
        free, nwarn = k.nr_free_pages(), self.log_mark()
        if kind == "vmalloc_node":
            addr = k.vmalloc_node(size, k.machine.mem.nodes - 1)
        elif kind == "vmalloc__":
            addr = k.vmalloc__(size, GFP_KERNEL | GFP_ZERO__, PAGE_KERNEL_EXEC)
        else:
            addr = getattr(k, kind)(size)
        if addr is None:
            assert self.can_fail(npages), f"{kind}({npages} pages) failed with room to spare"
            self.refused(free, nwarn)
            return Alloc(kind, 0, 0)  # a NULL the rules below skip
        area = k.find_vm_area(addr)
        assert area is not None and area.nr_pages == npages and area.pages is not None
        array_pages = -(-npages * 8 // P) if npages * 8 > P else 0
        assert k.nr_free_pages() == free - npages - array_pages
        a = self.became_live(Alloc(kind, addr, npages, list(area.pages)))
        if array_pages:
            known = set(self.live) | {arr for arr, _ in self.arrays.values()}
            new = [v for v in k.vm_areas() if v.addr not in known]
            assert len(new) == 1 and new[0].nr_pages == array_pages, "one page array per VM_VPAGES area"
            self.arrays[addr] = (new[0].addr, array_pages)
            for p in new[0].pages or ():  # the array is vmalloc()ed with __GFP_ZERO
                self.content[p] = bytearray(P)
            self.dead_pages.difference_update(range(new[0].addr, new[0].addr + (array_pages + 1) * P, P))
        for p in a.pages:
            if kind in ZEROED:
                self.content[p] = bytearray(P)
            if kind.startswith("vmalloc_32"):
                assert p.pfn < DMA32_END_PFN
            if kind == "vmalloc_node":
                assert p.node == k.machine.mem.nodes - 1 or k.nr_free_pages() < 2048
        if kind in ZEROED:
            for i in sorted({0, npages - 1} | set(range(min(npages, 8)))):
                assert k.read(addr + i * P, P) == bytes(P), f"{kind} page {i} not zeroed"
        return a

    @rule(a=consumes(allocs))
    def free(self, a: Alloc) -> None:
        if a.addr == 0 or a.addr not in self.live or self.live[a.addr] is not a:
            return
        k = self.kern
        free = k.nr_free_pages()
        if a.kind in VMALLOCS:
            k.vfree(a.addr)
            array_pages = -(-a.npages * 8 // P) if a.npages * 8 > P else 0
            held = sum(1 for p in a.pages if any(p in ps for _, ps in self.vmas))
            assert k.nr_free_pages() == free + a.npages - held + array_pages
        elif a.kind == "vmap":
            k.vunmap(a.addr)
            assert k.nr_free_pages() == free
        elif a.kind == "ram":
            k.vm_unmap_ram(a.addr, a.npages)
            assert k.nr_free_pages() == free
        else:
            area = k.find_vm_area(a.addr)
            assert area is not None
            k.free_vm_area(area)
        self.died(a)
        return None

    @rule(target=dead, a=allocs)
    def remember_dead(self, a: Alloc) -> int:
        return a.addr

    # -- rules: mappings of caller pages ------------------------------------------------
    @precondition(booted)
    @rule(n=st.integers(1, 8))
    def alloc_pages(self, n: int) -> None:
        for _ in range(n):
            p = self.kern.alloc_page()
            assert p is not None or self.can_fail(1)
            if p is not None:
                self.user_pages.append(p)

    @precondition(lambda self: self.k is not None and self.user_pages)
    @rule(i=st.integers(0, 63))
    def free_user_page(self, i: int) -> None:
        busy = self.mapped_user_pages()
        idle = [p for p in self.user_pages if p not in busy]
        if not idle:
            return
        p = idle[i % len(idle)]
        self.user_pages.remove(p)
        self.kern.free_page(p)

    def pick_pages(self, count: int, rot: int) -> list[Page] | None:
        if not self.user_pages:
            return None
        n = len(self.user_pages)
        return [self.user_pages[(rot + i) % n] for i in range(count)]

    @precondition(lambda self: self.k is not None and self.user_pages)
    @rule(target=allocs, count=st.integers(1, 12), rot=st.integers(0, 99),
          exec_=st.booleans())
    def vmap(self, count: int, rot: int, exec_: bool) -> Alloc:
        k = self.kern
        pages = self.pick_pages(count, rot)
        assert pages is not None
        free, nwarn = k.nr_free_pages(), self.log_mark()
        addr = k.vmap(pages, count, VM_MAP, PAGE_KERNEL_EXEC if exec_ else PAGE_KERNEL)
        if addr is None:
            assert self.small, "vmap failed with a 32 TiB vmalloc space"
            self.refused(free, nwarn)
            return Alloc("vmap", 0, 0)
        return self.became_live(Alloc("vmap", addr, count, pages))

    @precondition(lambda self: self.k is not None and self.user_pages and has_vm_map_ram(self.k))
    @rule(target=allocs, count=st.one_of(st.integers(1, 8), st.sampled_from([33, 64, 65])),
          rot=st.integers(0, 99))
    def vm_map_ram(self, count: int, rot: int) -> Alloc:
        k = self.kern
        pages = self.pick_pages(count, rot)
        assert pages is not None
        addr = k.vm_map_ram(pages, count)
        if addr is None:
            assert self.small, "vm_map_ram failed with a 32 TiB vmalloc space"
            return Alloc("ram", 0, 0)
        if count <= 64:
            order = (count - 1).bit_length()
            if k.design == "2.6.28":  # bitmap_find_free_region; 6.1 bumps a pointer
                assert (addr - k.VMALLOC_START) % (P << order) == 0, "block slots are order-aligned"
            vb = k.vmap_block_for(addr)
            assert vb is not None and vb.cpu == k.this_cpu.id, "vm_map_ram must use the current CPU's blocks"
        return self.became_live(Alloc("ram", addr, count, pages))

    @precondition(lambda self: self.k is not None and self.user_pages and has_vm_map_ram(self.k))
    @rule(target=allocs, cpu=st.integers(0, CPUS - 1), unmap=st.booleans())
    def fill_a_block(self, cpu: int, unmap: bool) -> object:
        """vm_map_ram(64) until a block of this CPU is full, touching each mapping from
        two CPUs; optionally unmap the first (the 2.6.28 flaw's set-up)."""
        k = self.kern
        out: list[Alloc] = []
        with k.on_cpu(cpu):
            for _ in range(2 * k.VMAP_BBMAP_BITS // 64):
                a = self.vm_map_ram(64, cpu)
                if a.addr == 0:
                    break
                out.append(a)
                k.touch(a.addr, 64)
                with k.on_cpu((cpu + 1) % CPUS):
                    k.touch(a.addr, 64)
                vb = k.vmap_block_for(a.addr)
                assert vb is not None
                if vb.free == 0:
                    break
            if unmap and out:
                k.vm_unmap_ram(out[0].addr, 64)
                self.died(out.pop(0))
        return multiple(*out)

    @precondition(booted)
    @rule(target=allocs, npages=st.integers(1, 6), ioremap=st.booleans())
    def get_vm_area(self, npages: int, ioremap: bool) -> Alloc:
        k = self.kern
        area = k.get_vm_area(npages * P, VM_IOREMAP if ioremap else VM_MAP)
        if area is None:
            assert self.small
            return Alloc("area", 0, 0)
        if ioremap and not k.has_vmlist:  # 6.x on x86_64: clamp(get_count_order_long(size), 12, 30)
            assert area.addr % (1 << max(12, (npages * P - 1).bit_length())) == 0
        elif ioremap:
            assert area.addr % (1 << max(12, min(19, (npages * P).bit_length()))) == 0
        return self.became_live(Alloc("area", area.addr, npages, [], mapped=False))

    @rule(a=allocs, rot=st.integers(0, 99))
    def map_area(self, a: Alloc, rot: int) -> None:
        if a.kind != "area" or self.live.get(a.addr) is not a or a.mapped:
            return
        pages = self.pick_pages(a.npages, rot)
        if pages is None:
            return
        area = self.kern.find_vm_area(a.addr)
        assert area is not None
        assert self.kern.map_vm_area(area, PAGE_KERNEL, pages) == 0
        a.pages, a.mapped = pages, True

    @rule(a=allocs)
    def unmap_kernel_range(self, a: Alloc) -> None:
        if a.kind != "area" or self.live.get(a.addr) is not a or not a.mapped:
            return
        k = self.kern
        flushes = k.stats["tlb_flushes"]
        k.unmap_kernel_range(a.addr, a.npages * P)
        assert k.stats["tlb_flushes"] == flushes + 1
        a.mapped, a.pages = False, []
        for c in range(CPUS):
            with k.on_cpu(c):
                try:
                    k.touch(a.addr, 1)
                except PageFault:
                    pass
                else:
                    raise AssertionError("unmap_kernel_range left the area reachable")

    # -- rules: data --------------------------------------------------------------------
    @rule(a=allocs, off=st.one_of(st.integers(0, 2 * P), st.integers(0, 1 << 30)),
          data=st.binary(min_size=1, max_size=300))
    def write(self, a: Alloc, off: int, data: bytes, view: memoryview | None = None) -> None:
        if a.addr == 0 or self.live.get(a.addr) is not a or not a.mapped:
            return
        size = a.npages * P
        off %= size
        if view is not None and len(data) > size - off:
            return  # a view is written whole
        data = data[: size - off]
        self.kern.write(a.addr + off, data if view is None else view)
        pos = 0
        while pos < len(data):
            page = a.pages[(off + pos) // P]
            po = (off + pos) % P
            n = min(len(data) - pos, P - po)
            self.expect(page)[po:po + n] = data[pos:pos + n]
            pos += n

    @rule(a=allocs, which=st.integers(0, 1 << 20), cpu=st.integers(0, CPUS - 1))
    def read_back(self, a: Alloc, which: int, cpu: int) -> None:
        if a.addr == 0 or self.live.get(a.addr) is not a:
            return
        k = self.kern
        i = which % a.npages
        with k.on_cpu(cpu):
            if not a.mapped:
                try:
                    k.read(a.addr + i * P, 1)
                except PageFault:
                    return
                raise AssertionError("an unmapped area read back data")
            got = k.read(a.addr + i * P, P)
            # a recycled page keeps its old contents unless zeroed: only pages the
            # reference knows are compared byte for byte
            if a.pages[i] in self.content:
                assert got == bytes(self.content[a.pages[i]]), f"{a.kind} page {i} differs"
            k.touch(a.addr, a.npages)

    @precondition(lambda self: self.k is not None and self.dead_pages)
    @rule(which=st.integers(0, 1 << 30), cpu=st.integers(0, CPUS - 1))
    def access_freed(self, which: int, cpu: int) -> None:
        k = self.kern
        dead = sorted(self.dead_pages)
        addr = dead[which % len(dead)]
        if self.covered(addr):
            return
        with k.on_cpu(cpu):
            try:
                k.read(addr, 8)
            except (PageFault, UseAfterFreeError):
                return
        raise AssertionError(f"a read of freed {addr:#x} returned data")

    @rule(addr=dead, who=st.sampled_from(["vfree", "vunmap", "vm_unmap_ram"]))
    def free_again(self, addr: int, who: str) -> None:
        if addr == 0 or self.covered(addr):
            return
        k = self.kern
        if who == "vm_unmap_ram" and not has_vm_map_ram(k):
            return
        nwarn = len(k.warnings)
        with pytest.raises(BadAddressError):
            if who == "vm_unmap_ram":
                k.vm_unmap_ram(addr, 1)
            else:
                getattr(k, who)(addr)
        if who != "vm_unmap_ram":
            assert len(k.warnings) == nwarn + 1 and "nonexistent vm area" in k.warnings[-1]

    # -- rules: user mappings --------------------------------------------------------------
    @rule(a=allocs, pgoff=st.integers(0, 2), n=st.integers(1, 3))
    def remap_vmalloc_range(self, a: Alloc, pgoff: int, n: int) -> None:
        if self.live.get(a.addr) is not a or a.npages > 8:
            return
        k = self.kern
        vma = vm_area_struct(0x7F0000000000, 0x7F0000000000 + n * P)
        rv = k.remap_vmalloc_range(vma, a.addr, pgoff)
        if a.kind not in ("vmalloc_user", "vmalloc_32_user") or pgoff + n > a.npages:
            assert rv == -22 and not vma.pages
            return
        assert rv == 0
        self.vmas.append((vma, a.pages[pgoff:pgoff + n]))

    @precondition(lambda self: bool(self.vmas))
    @rule(i=st.integers(0, 99), zap=st.booleans())
    def use_vma(self, i: int, zap: bool) -> None:
        vma, pages = self.vmas[i % len(self.vmas)]
        for j, p in enumerate(pages):
            if p in self.content:
                assert vma.read(vma.vm_start + j * P, P) == bytes(self.content[p])
        if zap:
            self.vmas.remove((vma, pages))
            vma.zap()

    # -- rules: flushing --------------------------------------------------------------------
    @precondition(booted)
    @rule(op=st.sampled_from(["vm_unmap_aliases", "vmalloc_sync_all", "vmalloc_sync_all"]))
    def flush(self, op: str) -> None:
        k = self.kern
        if op == "vmalloc_sync_all":
            pte = dict(k.machine.pte)
            k.vmalloc_sync_all()
            assert k.machine.pte == pte
            return
        k.vm_unmap_aliases()
        if not self.flaw:
            k.check_no_aliases()
        else:
            try:
                k.check_no_aliases()
            except VmapError:
                # the 2.6.28 flaw: only dirty slots of full blocks may survive
                for addr in k.deferred_mappings():
                    vb = k.vmap_block_for(addr)
                    assert vb is not None and vb.free == 0, f"{addr:#x} survived outside a full block"

    # -- rules: misuse, each refused with nothing changed -------------------------------------
    def snap(self) -> tuple:
        k = self.kern
        return (k.nr_free_pages(), k.vmallocinfo(), k.stats, k.vmap_lazy_nr, dict(k.machine.pte),
                [(va.va_start, va.va_end, va.flags) for va in k.vmap_areas()], len(k.warnings))

    def refused_call(self, exc: type[BaseException], fn: Any, *args: Any, match: str | None = None) -> None:
        before = self.snap()
        with pytest.raises(exc, match=match):
            fn(*args)
        assert self.snap() == before, f"a refused {fn.__name__}() changed the model"

    @rule(a=allocs, how=st.sampled_from(["vunmap", "free_vm_area"]))
    def misuse_release_vmalloc_area(self, a: Alloc, how: str) -> None:
        """vunmap()/free_vm_area() of an area whose pages vmalloc() allocated."""
        if a.kind not in VMALLOCS or self.live.get(a.addr) is not a:
            return
        k = self.kern
        if how == "vunmap":
            self.refused_call(InvalidArgumentError, k.vunmap, a.addr, match="vfree")
        else:
            self.refused_call(InvalidArgumentError, k.free_vm_area, k.find_vm_area(a.addr), match="vfree")

    @precondition(lambda self: bool(self.arrays))
    @rule(i=st.integers(0, 99), how=st.sampled_from(["vfree", "vunmap", "free_vm_area"]))
    def misuse_free_page_array(self, i: int, how: str) -> None:
        """A caller's free of the page array of a large vmalloc() area."""
        owner = sorted(self.arrays)[i % len(self.arrays)]
        arr = self.arrays[owner][0]
        k = self.kern
        if how == "free_vm_area":
            self.refused_call(BadAddressError, k.free_vm_area, k.find_vm_area(arr), match="page array")
        else:
            self.refused_call(BadAddressError, getattr(k, how), arr, match="page array")

    @rule(i=st.integers(0, 99))
    def misuse_free_mapped_page(self, i: int) -> None:
        """free_page() of a caller's page a live vmap()/vm_map_ram()/map_vm_area() maps."""
        busy = sorted(self.mapped_user_pages(), key=lambda p: p.pfn)
        if busy:
            self.refused_call(BadPageError, self.kern.free_page, busy[i % len(busy)], match="still mapped")

    @precondition(booted)
    @rule(flags=st.sampled_from([-1, 1 << 80, VM_VPAGES | VM_MAP, 0x8000 | VM_IOREMAP]),
          how=st.sampled_from(["get_vm_area", "vmap"]))
    def misuse_flags(self, flags: int, how: str) -> None:
        k = self.kern
        if flags >= 0 and flags & k.caller_vm_flags == flags:
            return  # a caller's flag on this design (6.x: 0x10 is VM_DMA_COHERENT)
        if how == "vmap":
            pages = self.pick_pages(1, 0)
            if pages is None:
                return
            self.refused_call(InvalidArgumentError, k.vmap, pages, 1, flags, match="flags")
        else:
            self.refused_call(InvalidArgumentError, k.get_vm_area, P, flags, match="flags")

    @precondition(booted)
    @rule(caller=st.sampled_from(["a b", "x\n0xffffc20000000000-0xffffc20000002000 8192 fake", "\x07"]))
    def misuse_caller(self, caller: str) -> None:
        self.refused_call(InvalidArgumentError, self.kern.get_vm_area_caller, P, VM_IOREMAP, caller, match="caller")

    @precondition(booted)
    @rule(foreign=st.sampled_from(["other kernel", "by hand"]), ram=st.booleans())
    def misuse_foreign_pages(self, foreign: str, ram: bool) -> None:
        k = self.kern
        if foreign == "by hand":
            page = Page(7, 0, "Normal")
            page._count = 1
        else:
            other = Kernel(cpus=1, mem_pages=64, design=self.design)
            got = other.alloc_page()
            assert got is not None
            page = got
        mine = self.pick_pages(2, 0) or []
        if ram and has_vm_map_ram(k):
            self.refused_call(BadPageError, k.vm_map_ram, [*mine, page], len(mine) + 1, match="not a page of this")
        else:
            self.refused_call(BadPageError, k.vmap, [*mine, page], len(mine) + 1, match="not a page of this")
        self.refused_call(BadPageError, k.free_page, page)

    @precondition(booted)
    @rule(what=st.sampled_from(["vmap None", "vmap dict", "align None", "vmalloc str", "write str"]))
    def misuse_types(self, what: str) -> None:
        k = self.kern
        if what == "vmap None":
            self.refused_call(TypeError, k.vmap, None, 1, match="pages")
        elif what == "vmap dict":
            self.refused_call(TypeError, k.vmap, {0: 1}, 1, match="pages")
        elif what == "align None":
            self.refused_call(TypeError, k.get_vm_area_node__, P, VM_IOREMAP, k.VMALLOC_START, k.VMALLOC_END,
                         -1, GFP_KERNEL, "c", None, match="align")
        elif what == "vmalloc str":
            self.refused_call(TypeError, k.vmalloc, "4096", match="size")
        else:
            self.refused_call(TypeError, k.write, k.VMALLOC_START, "text", match="data")

    @rule(a=allocs, off=st.integers(0, 2 * P), data=st.binary(min_size=4, max_size=64),
          shape=st.sampled_from(["I", "2d"]))
    def write_a_memoryview(self, a: Alloc, off: int, data: bytes, shape: str) -> None:
        """write() of a memoryview whose items are not bytes, or a 2-D one: its bytes."""
        if a.addr == 0 or self.live.get(a.addr) is not a or not a.mapped:
            return
        raw = data[: len(data) // 4 * 4]
        view = memoryview(raw).cast("I") if shape == "I" else memoryview(raw).cast("B", (len(raw) // 4, 4))
        self.write(a, off, raw, view)

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def kernel_consistent(self) -> None:
        if self.k is None:
            return
        k = self.k
        k.check()
        held = set(self.user_pages)
        arrays = 0
        for a in self.live.values():
            if a.kind in VMALLOCS:
                held.update(a.pages)
                if a.npages * 8 > P:
                    arrays += -(-a.npages * 8 // P)
        for _, ps in self.vmas:
            held.update(ps)
        assert k.nr_free_pages() == self.free0 - len(held) - arrays, "pages leaked or lost"
        vmlist = [v.addr for v in k.vm_areas()]
        # VM_VPAGES page arrays are vmlist entries of their own
        expect = sorted([a.addr for a in self.live.values() if a.kind != "ram"]
                        + [arr for arr, _ in self.arrays.values()])
        assert vmlist == expect


def _machine_for(design: str) -> type[VmapMachine]:
    return type(f"VmapMachine_{design}", (VmapMachine,), {"design": design})


FAST = settings(max_examples=100, stateful_step_count=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.parametrize("design", DESIGNS)
def test_random_api_sequences(design: str) -> None:
    run_state_machine_as_test(_machine_for(design), settings=FAST)


@pytest.mark.slow
@pytest.mark.parametrize("design", DESIGNS)
def test_random_api_sequences_long(design: str) -> None:
    run_state_machine_as_test(
        _machine_for(design),
        settings=settings(FAST, max_examples=25, stateful_step_count=120),
    )
