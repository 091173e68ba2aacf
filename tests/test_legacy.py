"""The 2.6.27 design (``Kernel(design="legacy")``): vmlist first fit, vmlist_lock, flush per free."""

from __future__ import annotations

import random

import pytest

import vmapsim
from vmapsim import PAGE_SHIFT, PAGE_SIZE, VM_IOREMAP, Kernel
from vmapsim.errors import BadAddressError, DoubleFreeError, InvariantError, UnsupportedError
from vmapsim.mm import designs
from vmapsim.mm.legacy import ALLOC_FAILED_MSG, Legacy


def lk(cpus: int = 4, **kw: object) -> Kernel:
    return Kernel(cpus=cpus, mem_pages=16384, design="legacy", **kw)  # type: ignore[arg-type]


def take(k: Kernel, n: int) -> list:
    pages = [k.alloc_page() for _ in range(n)]
    assert all(p is not None for p in pages)
    return pages


def test_registered_as_legacy() -> None:
    k = lk()
    assert isinstance(k, Legacy) and k.design == "2.6.27"
    assert designs.resolve("legacy") == "2.6.27" and designs.resolve("rewrite") == "2.6.28"
    assert not k.has_vm_map_ram and k.has_vmlist and not k.has_lazy_free
    assert k.vmap_lazy_nr == 0


def test_first_fit_reuses_the_first_gap_and_areas_touch() -> None:
    k = lk()
    a = k.vmalloc(2 * PAGE_SIZE)
    b = k.vmalloc(PAGE_SIZE)
    c = k.vmalloc(3 * PAGE_SIZE)
    assert a == k.VMALLOC_START
    # no allocator gap in 2.6.27: the next area starts right after the guard page
    assert b == a + 3 * PAGE_SIZE and c == b + 2 * PAGE_SIZE
    k.vfree(b)
    d = k.vmalloc(PAGE_SIZE)
    assert d == b  # the hole b left is the first fit
    e = k.vmalloc(2 * PAGE_SIZE)  # too big for any hole: after c
    assert e == c + 4 * PAGE_SIZE
    k.check()


def test_ioremap_alignment() -> None:
    k = lk()
    k.vmalloc(PAGE_SIZE)
    area = k.get_vm_area(5 * PAGE_SIZE, VM_IOREMAP)
    assert area is not None
    # fls(5 pages) = 15 bits -> 32 KiB alignment
    assert area.addr % (1 << 15) == 0 and area.addr > k.VMALLOC_START
    k.check()


def test_list_walk_charged_per_node() -> None:
    k = lk()
    for _ in range(10):
        assert k.vmalloc(PAGE_SIZE) is not None
    cpu = k.this_cpu
    before = cpu.prof.get("__get_vm_area_node", 0.0)
    k.vmalloc(PAGE_SIZE)
    # the first fit is after the 10th area: every node was walked
    assert cpu.prof["__get_vm_area_node"] - before == pytest.approx(10 * k.cost.mem_access)
    before = cpu.prof.get("__find_vm_area", 0.0)
    assert k.find_vm_area(k.VMALLOC_START + 4 * 2 * PAGE_SIZE) is not None
    assert cpu.prof["__find_vm_area"] - before == pytest.approx(5 * k.cost.mem_access)


def test_every_vunmap_is_a_global_flush_under_the_write_lock() -> None:
    k = lk(cpus=4)
    pages = take(k, 4)
    a = k.vmap(pages, 4)
    assert a is not None
    with k.on_cpu(2):
        k.touch(a, 4)  # CPU 2 caches the translations
    assert a in k.tlb_entries(2)
    s0 = dict(k.stats)
    w0 = k.vmlist_lock.acquisitions
    k.vunmap(a)
    assert k.stats["tlb_flushes"] == s0["tlb_flushes"] + 1
    assert k.stats["ipis"] == s0["ipis"] + 3
    assert k.stats["pte_clears"] == s0["pte_clears"] + 4
    assert k.vmlist_lock.acquisitions == w0 + 1
    assert not k.tlb_entries(2)  # flushed at once: nothing deferred
    assert "smp_call_function" in k.this_cpu.prof and "flush_tlb_kernel_range" in k.this_cpu.prof
    k.check()
    k.check_no_aliases()


def test_no_vm_map_ram_in_2627() -> None:
    k = lk()
    pages = take(k, 2)
    with pytest.raises(UnsupportedError, match="vm_map_ram.*2.6.27"):
        k.vm_map_ram(pages, 2)
    with pytest.raises(vmapsim.VmapError):
        k.vm_unmap_ram(k.VMALLOC_START, 2)
    assert not k.vmap_areas()
    k.check()


def test_vm_unmap_aliases_is_a_noop() -> None:
    k = lk()
    a = k.vmalloc(PAGE_SIZE)
    k.vfree(a)
    s0 = dict(k.stats)
    k.vm_unmap_aliases()
    assert k.stats == s0
    assert k.deferred_mappings() == []


def test_out_of_vmalloc_space_message_and_nothing_leaked() -> None:
    k = lk(vmalloc_size=16 * PAGE_SIZE)
    free0 = k.nr_free_pages()
    got = []
    while True:
        a = k.vmalloc(3 * PAGE_SIZE)
        if a is None:
            break
        got.append(a)
    # 3 pages + guard each; as in the kernel (addr > end - size with an inclusive
    # VMALLOC_END), an area may not end exactly at the top: 3 fit in 16 pages
    assert len(got) == 3
    assert got == [k.VMALLOC_START + i * 4 * PAGE_SIZE for i in range(3)]
    assert k.warnings[-1] == ALLOC_FAILED_MSG
    assert k.nr_free_pages() == free0 - 9
    k.check()
    for a in got:
        k.vfree(a)
    assert k.nr_free_pages() == free0
    k.check()


def test_bad_and_double_free() -> None:
    k = lk()
    a = k.vmalloc(PAGE_SIZE)
    assert a is not None
    with pytest.raises(BadAddressError, match="nonexistent vm area"):
        k.vfree(a + 2 * PAGE_SIZE)
    with pytest.raises(BadAddressError, match="bad address"):
        k.vfree(a + 8)
    k.vfree(a)
    with pytest.raises(DoubleFreeError):
        k.vfree(a)
    with pytest.raises(TypeError):
        k.vmalloc("4096")  # type: ignore[arg-type]
    k.vfree(None)
    k.vfree(0)
    k.check()
    b = k.vmalloc(PAGE_SIZE)
    assert b == a  # reused: no longer a double free
    k.vfree(b)


def test_vmap_areas_view_matches_vmlist() -> None:
    k = lk()
    a = k.vmalloc(PAGE_SIZE)
    b = k.get_vm_area(2 * PAGE_SIZE, VM_IOREMAP)
    assert b is not None
    views = k.vmap_areas()
    assert [(v.va_start, v.va_end, v.flags) for v in views] == [
        (a, a + 2 * PAGE_SIZE, vmapsim.VM_ALLOC), (b.addr, b.addr + 3 * PAGE_SIZE, VM_IOREMAP)]


def test_find_vm_area_takes_the_read_lock() -> None:
    k = lk()
    a = k.vmalloc(PAGE_SIZE)
    n = k.vmlist_lock.acquisitions
    area = k.find_vm_area(a)
    assert area is not None and area.addr == a
    assert k.find_vm_area(a + PAGE_SIZE) is None
    assert k.vmlist_lock.acquisitions == n + 2
    assert k.this_cpu.prof.get("_read_lock", 0) > 0


def test_check_catches_a_broken_list() -> None:
    k = lk()
    for _ in range(3):
        k.vmalloc(PAGE_SIZE)
    k.check()
    lst = k._vmlist
    lst[0].next = lst[2]  # skip a node
    with pytest.raises(InvariantError):
        k.check()
    lst[0].next = lst[1]
    k.check()
    lst[1].size = PAGE_SIZE  # guard page lost
    with pytest.raises(InvariantError, match="guard"):
        k.check()


def test_check_catches_a_mapped_guard_page() -> None:
    k = lk()
    a = k.vmalloc(PAGE_SIZE)
    page = take(k, 1)[0]
    k.machine.pte[(a + PAGE_SIZE) >> PAGE_SHIFT] = page
    with pytest.raises(InvariantError):
        k.check()


def test_vmap_pte_range_warns_and_overwrites_a_present_pte() -> None:
    # 2.6.27's vmap_pte_range(): WARN_ON(!pte_none(*pte)), then set_pte_at() all the same
    # and no error (the -EBUSY return came with 2.6.28)
    k = lk(cpus=2)
    old, new = take(k, 3), take(k, 3)
    area = k.get_vm_area(3 * PAGE_SIZE, vmapsim.VM_MAP)
    assert area is not None
    assert k.map_vm_area(area, vmapsim.PAGE_KERNEL_EXEC, old) == 0
    with k.on_cpu(1):
        k.touch(area.addr, 3)  # CPU 1 caches the old translations
    nwarn = len(k.warnings)
    assert k.map_vm_area(area, vmapsim.PAGE_KERNEL, new) == 0
    assert k.warnings[nwarn:] == [
        f"WARNING: at mm/vmalloc.c vmap_pte_range(): pte already present at {area.addr + i * PAGE_SIZE:#x}"
        for i in range(3)]
    vpn = area.addr >> PAGE_SHIFT
    assert [k.vmalloc_to_page(area.addr + i * PAGE_SIZE) for i in range(3)] == new
    assert all(vpn + i not in k.machine.pte_prot for i in range(3))  # PAGE_KERNEL now
    k.touch(area.addr, 3)  # CPU 0 never cached them: it sees the new pages
    # nothing flushed CPU 1's TLB: the oracle catches the stale translations 2.6.27 left
    with k.on_cpu(1), pytest.raises(vmapsim.StaleTranslationError):
        k.read(area.addr, 1)
    with pytest.raises(InvariantError, match="stale translation"):
        k.check()
    k.unmap_kernel_range(area.addr, 3 * PAGE_SIZE)  # flushes every TLB
    k.check()

def test_random_runs_keep_every_invariant() -> None:
    rng = random.Random(7)
    k = lk(cpus=4, vmalloc_size=256 * PAGE_SIZE)
    live: dict[int, tuple[str, int, list]] = {}
    for _ in range(300):
        cpu = rng.randrange(4)
        with k.on_cpu(cpu):
            if live and rng.random() < 0.45:
                addr = rng.choice(sorted(live))
                kind, n, pages = live.pop(addr)
                if kind == "vmalloc":
                    k.vfree(addr)
                else:
                    k.vunmap(addr)
                    for p in pages:
                        k.free_page(p)
            elif rng.random() < 0.5:
                n = rng.randint(1, 8)
                a = k.vmalloc(n * PAGE_SIZE)
                if a is not None:
                    k.write(a, bytes([cpu]) * 16)
                    live[a] = ("vmalloc", n, [])
            else:
                n = rng.randint(1, 4)
                pages = take(k, n)
                a = k.vmap(pages, n)
                if a is None:
                    for p in pages:
                        k.free_page(p)
                else:
                    k.touch(a, n)
                    live[a] = ("vmap", n, pages)
        k.check()
        assert sorted(live) == [v.va_start for v in k.vmap_areas()]
