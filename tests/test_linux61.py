"""The Linux 6.1 design (mm/linux61.py) against the facts of 6.1's mm/vmalloc.c
(/work/shared/reference/linux-vmalloc-modern.md, section 1): the three trees, lowest-fit
placement without gaps, lazy TLB flushing with PTEs cleared at free, the drain work, the
ranged x86 flush, bump-allocator vmap blocks and the vm_unmap_aliases() gap of full
blocks, /proc/vmallocinfo, pcpu_get_vm_areas() and the hashed %p; then one corruption per
invariant check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import take_pages
from vmapsim import (
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    BadAddressError,
    InvalidArgumentError,
    InvariantError,
    Kernel,
    PageFault,
    UseAfterFreeError,
)
from vmapsim.mm import kva
from vmapsim.mm.kva import ULONG_MAX, vmap_area
from vmapsim.mm.linux61 import VM_NO_GUARD, Linux61, siphash_1u64

P = PAGE_SIZE
MiB = 1 << 20
GiB = 1 << 30


def k61(**kw: Any) -> Linux61:
    kw.setdefault("cpus", 4)
    kw.setdefault("mem_pages", 4096)
    k = Kernel(design="6.1", **kw)
    assert isinstance(k, Linux61)
    return k


def ranges(areas: list[vmap_area]) -> list[tuple[int, int]]:
    return [(va.va_start, va.va_end) for va in areas]


def busy(k: Linux61) -> list[tuple[int, int]]:
    return ranges(list(k.vmap_area_root))


def lazy(k: Linux61) -> list[tuple[int, int]]:
    return ranges(list(k.purge_vmap_area_root))


def record_alloc(k: Linux61) -> list[dict[str, int]]:
    """The arguments of every alloc_vmap_area() call from now on."""
    calls: list[dict[str, int]] = []

    def tracer(event: str, fields: dict[str, int]) -> None:
        if event == "alloc":
            calls.append(dict(fields))

    k.tracer = tracer
    return calls


def state(k: Linux61) -> tuple[Any, ...]:
    """What a refused call must leave as it was."""
    return (busy(k), lazy(k), ranges(k.free_areas()), k.vmap_lazy_nr, len(k.warnings),
            k.purges, dict(k.machine.pte), k.nr_free_pages())


# --- the free tree and placement ---------------------------------------------------------
def test_initial_free_tree_is_one_area_from_1_to_ulong_max() -> None:
    k = k61()
    assert ranges(k.free_areas()) == [(1, ULONG_MAX)]
    assert busy(k) == [] and lazy(k) == []
    k.check()


def test_consecutive_vmallocs_are_back_to_back_with_the_guard_page_inside() -> None:
    k = k61()
    s = k.VMALLOC_START
    a = k.vmalloc(P)
    b = k.vmalloc(3 * P)
    c = k.vmalloc(P)
    assert (a, b, c) == (s, s + 2 * P, s + 6 * P)  # no gap page between areas (2.6.28 had one)
    for addr, pages in ((a, 1), (b, 3), (c, 1)):
        vm = k.find_vm_area(addr)
        assert vm is not None and vm.size == (pages + 1) * P and k.get_vm_area_size(vm) == pages * P
        assert k.vmalloc_to_page(addr + pages * P) is None  # the guard page, not mapped
    assert busy(k) == [(s, s + 2 * P), (s + 2 * P, s + 6 * P), (s + 6 * P, s + 8 * P)]
    assert ranges(k.free_areas()) == [(1, s), (s + 8 * P, ULONG_MAX)]
    k.check()


def test_vmalloc_asks_for_align_1() -> None:
    k = k61()
    calls = record_alloc(k)
    k.vmalloc(3 * P)
    b = k.vmalloc(2 * P)  # a 3-page area does not push it to a 4-page boundary
    assert [c["align"] for c in calls] == [1, 1]
    assert [c["size"] for c in calls] == [4 * P, 3 * P]
    assert b == k.VMALLOC_START + 4 * P


@pytest.mark.parametrize("size, align", [
    (P, P),                    # clamp(12, 12, 30)
    (5 * P, 8 * P),            # ceil_log2(20 KiB) = 15: 32 KiB
    (3 * MiB, 4 * MiB),
    (GiB, GiB),
    (GiB + P, GiB),            # ceil_log2 = 31, capped at PUD_SHIFT (x86_64's IOREMAP_MAX_ORDER)
    (5 * GiB, GiB),
])
def test_ioremap_alignment_is_the_size_order_capped_at_pud_shift(size: int, align: int) -> None:
    k = k61(mem_pages=64)  # get_vm_area() takes no pages: the 32 TiB space is all it needs
    calls = record_alloc(k)
    k.vmalloc(P)  # the space below is taken, so the alignment shows in the address
    area = k.get_vm_area(size, VM_IOREMAP)
    assert area is not None
    assert calls[-1]["align"] == align
    # the lowest aligned address above the first area (2 pages with its guard)
    assert area.addr == k.VMALLOC_START + -(-2 * P // align) * align
    assert area.size == size + P
    if align == GiB:  # aligned to 1 GiB only, not to the (larger) size
        assert area.addr % (2 * GiB) == GiB
    k.check()


def test_placement_of_the_real_boot_ioremaps() -> None:
    # tests/fixtures/real-linux-6.1/forkstorm/vmallocinfo-before.txt: a 4-page vmap, then a
    # 1-page and a 3-page ioremap at +0x5000 and +0x8000 (16 KiB aligned)
    k = k61(vmalloc_start=0xFFFFD57440000000)
    pages = take_pages(k, 4)
    v = k.vmap(pages, 4)
    one = k.get_vm_area(P, VM_IOREMAP)
    three = k.get_vm_area(3 * P, VM_IOREMAP)
    assert one is not None and three is not None
    assert (v, one.addr, three.addr) == (0xFFFFD57440000000, 0xFFFFD57440005000, 0xFFFFD57440008000)


def test_vm_no_guard_areas_have_no_guard_page() -> None:
    k = k61()
    s = k.VMALLOC_START
    ng = k.get_vm_area(3 * P, VM_NO_GUARD)
    g = k.get_vm_area(3 * P, 0)
    assert ng is not None and g is not None
    assert (ng.addr, ng.size, k.get_vm_area_size(ng)) == (s, 3 * P, 3 * P)
    assert (g.addr, g.size, k.get_vm_area_size(g)) == (s + 3 * P, 4 * P, 3 * P)
    k.check()


def test_kaslr_base_of_the_real_capture_is_where_the_first_vmalloc_goes() -> None:
    k = k61(vmalloc_start=0xFFFFD26240000000)
    assert k.vmalloc(P) == 0xFFFFD26240000000
    assert k.VMALLOC_END == 0xFFFFD26240000000 + (32 << 40) - 1


@pytest.mark.parametrize("n", [1, 65, 1024])
def test_any_cpu_count_works(n: int) -> None:
    k = k61(cpus=n, mem_pages=1024)
    assert k.lazy_max_pages() == n.bit_length() * 8192
    assert k.VMAP_BBMAP_BITS == 1024  # NR_CPUS <= 2048: the cap
    pages = take_pages(k, 2)
    with k.on_cpu(n - 1):
        a = k.vmalloc(2 * P)
        m = k.vm_map_ram(pages, 2)
        assert a is not None and m is not None
        k.touch(a, 2)
        k.touch(m, 2)
        k.vm_unmap_ram(m, 2)
        k.vfree(a)
    k.vm_unmap_aliases()
    assert k.deferred_mappings() == [] and k.vmap_lazy_nr == 0
    k.check()


# --- freeing: PTEs now, TLBs lazily ---------------------------------------------------------
def test_vfree_clears_ptes_at_once_and_leaves_other_cpus_tlbs_until_the_purge() -> None:
    k = k61()
    a = k.vmalloc(2 * P)
    assert a is not None
    k.write(a, b"secret")
    with k.on_cpu(1):
        k.touch(a, 2)
    k.vfree(a)
    vpn = a >> PAGE_SHIFT
    assert not any(vpn <= v < vpn + 3 for v in k.machine.pte)  # vunmap_range_noflush
    assert {a, a + P} <= k.tlb_entries(1)
    with k.on_cpu(1), pytest.raises(UseAfterFreeError, match="TLB still caches it"):
        k.read(a, 6)
    with k.on_cpu(2), pytest.raises(PageFault):  # no TLB entry there, and no PTE
        k.read(a, 6)
    k.check()  # the stale entries lie in a lazily freed area: held back, not a bug
    k.vm_unmap_aliases()
    assert not {a, a + P} & k.tlb_entries(1)
    k.check_no_aliases()


def test_the_lazy_tree_coalesces_adjacent_freed_areas() -> None:
    k = k61()
    a, b, c, d = (k.vmalloc(P) for _ in range(4))
    assert a and b and c and d
    k.vfree(a)
    k.vfree(c)
    assert lazy(k) == [(a, a + 2 * P), (c, c + 2 * P)]
    k.vfree(b)
    assert lazy(k) == [(a, c + 2 * P)]
    unpurged = [line for line in k.vmallocinfo().splitlines() if line.endswith("unpurged vm_area")]
    assert unpurged == [f"0x{a:016x}-0x{c + 2 * P:016x}   24576 unpurged vm_area"]
    k.check()


def test_vmap_lazy_nr_counts_the_guard_pages() -> None:
    k = k61()
    a = k.vmalloc(3 * P)
    k.vfree(a)
    assert k.vmap_lazy_nr == 4
    area = k.get_vm_area(2 * P, VM_NO_GUARD)
    assert area is not None
    k.free_vm_area(area)
    assert k.vmap_lazy_nr == 6


def test_the_drain_is_queued_work_past_lazy_max_pages() -> None:
    k = k61(cpus=1, mem_pages=64)
    queued: list[tuple[int, str, Callable[[], None]]] = []
    k.work_scheduler = lambda cpu, name, fn: queued.append((cpu, name, fn))
    limit = k.lazy_max_pages()
    assert limit == 8192
    a = k.get_vm_area((limit - 1) * P, 0)  # limit pages with the guard: not past it
    assert a is not None
    k.free_vm_area(a)
    assert k.vmap_lazy_nr == limit and queued == []
    b = k.get_vm_area(P, 0)
    c = k.get_vm_area(P, 0)
    assert b is not None and c is not None
    k.free_vm_area(b)
    assert k.vmap_lazy_nr == limit + 2
    assert [(cpu, name) for cpu, name, _ in queued] == [(0, "drain_vmap_area_work")]
    assert k.purges == 0 and len(lazy(k)) == 1  # not run inline
    k.free_vm_area(c)  # schedule_work() of pending work does nothing
    assert len(queued) == 1
    queued[0][2]()  # the worker runs
    assert k.vmap_lazy_nr == 0 <= limit and k.purges == 1 and lazy(k) == []
    assert ranges(k.free_areas()) == [(1, ULONG_MAX)]
    d = k.get_vm_area(limit * P, 0)  # past the limit again: queued again
    assert d is not None
    k.free_vm_area(d)
    assert len(queued) == 2
    k.check()


def test_the_drain_purges_once_even_below_the_limit() -> None:
    # 6.1's drain_vmap_area_work is a do-while: a work queued past the limit that runs
    # after a synchronous purge still purges what was freed since
    k = k61(cpus=1, mem_pages=64)
    queued: list[Callable[[], None]] = []
    k.work_scheduler = lambda cpu, name, fn: queued.append(fn)
    a = k.get_vm_area(k.lazy_max_pages() * P, 0)
    b = k.get_vm_area(P, 0)
    assert a is not None and b is not None
    k.free_vm_area(a)
    k.purge_vmap_area_lazy()
    k.free_vm_area(b)
    assert len(queued) == 1 and k.vmap_lazy_nr == 2 and k.purges == 1
    queued[0]()
    assert k.vmap_lazy_nr == 0 and k.purges == 2 and lazy(k) == []


def test_without_a_work_scheduler_the_drain_runs_on_the_queueing_cpu() -> None:
    k = k61(cpus=1, mem_pages=64)
    a = k.get_vm_area(k.lazy_max_pages() * P, 0)
    assert a is not None
    k.free_vm_area(a)
    assert k.purges == 1 and k.vmap_lazy_nr == 0


# --- the purge --------------------------------------------------------------------------------
def _purge_scene(k: Linux61, pages: int) -> tuple[int, int, int]:
    """Areas a (pages - 1 pages), b (1 page, live), c (1 page) and d (live), each touched
    on CPU 1; a and c freed. Returns (b, d, a)."""
    a = k.vmalloc((pages - 1) * P)
    b = k.vmalloc(P)
    c = k.vmalloc(P)
    d = k.vmalloc(P)
    assert a and b and c and d
    with k.on_cpu(1):
        for addr, n in ((a, pages - 1), (b, 1), (c, 1), (d, 1)):
            k.touch(addr, n)
    k.vfree(a)
    k.vfree(c)
    return b, d, a


def test_a_small_purge_is_one_invlpg_flush_over_the_lazy_span() -> None:
    k = k61()
    b, d, a = _purge_scene(k, 2)  # span a..c end: 6 pages
    before = dict(k.stats)
    k.vm_unmap_aliases()
    s = k.stats
    assert s["local_tlb_flushes"] == before["local_tlb_flushes"] + 1
    assert s["tlb_flushes"] == before["tlb_flushes"]
    t1 = k.tlb_entries(1)
    assert d in t1  # outside the span: left in place
    assert b not in t1 and a not in t1  # the span, holes (live b) included, was flushed
    k.check_no_aliases()
    k.check()


@pytest.mark.parametrize("pages, full", [(33 - 4, False), (33 - 3, True)])
def test_the_flush_ceiling_is_33_pages(pages: int, full: bool) -> None:
    k = k61()
    b, d, a = _purge_scene(k, pages)  # span: pages + 4 pages
    before = dict(k.stats)
    k.purge_vmap_area_lazy()
    s = k.stats
    assert s["tlb_flushes"] - before["tlb_flushes"] == int(full)
    assert s["local_tlb_flushes"] - before["local_tlb_flushes"] == int(not full)
    assert (d in k.tlb_entries(1)) is not full


def test_purged_areas_go_back_in_ascending_order_and_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    k = k61()
    a, x, b, y, c = (k.vmalloc(P) for _ in range(5))
    assert a and x and b and y and c
    for addr in (c, a, b):
        k.vfree(addr)
    order: list[int] = []
    real = kva.merge_or_add_vmap_area_augment

    def spy(va: vmap_area, root: kva.vmap_tree) -> vmap_area | None:
        if root is k.free_vmap_area_root:
            order.append(va.va_start)
        return real(va, root)

    monkeypatch.setattr(kva, "merge_or_add_vmap_area_augment", spy)
    k.purge_vmap_area_lazy()
    assert order == [a, b, c]
    # a merged into [1, a), c into the space above; b alone between x and y
    assert ranges(k.free_areas()) == [(1, a + 2 * P), (b, b + 2 * P), (c, ULONG_MAX)]
    k.vfree(x)
    k.vfree(y)
    k.purge_vmap_area_lazy()
    assert ranges(k.free_areas()) == [(1, ULONG_MAX)]
    k.check()


# --- allocation failure --------------------------------------------------------------------------
def test_allocation_overflow_purges_once_then_retries() -> None:
    k = k61(vmalloc_size=16 * P)
    a = k.vmalloc(7 * P)
    k.vfree(a)
    events: list[str] = []
    k.tracer = lambda ev, f: events.append(ev)
    b = k.vmalloc(14 * P)  # 15 pages: only after the lazy 8 are purged
    assert b == k.VMALLOC_START
    assert events[:3] == ["alloc", "purge", "flush"] and events.count("alloc") == 1
    assert k.purges == 1 and k.warnings == []
    k.check()


def test_allocation_failure_prints_the_kernels_message_with_the_guard_page() -> None:
    k = k61(vmalloc_size=16 * P)
    k.vfree(k.vmalloc(P))
    before = k.nr_free_pages()
    # 15 pages + the guard: the whole space, but VMALLOC_END (inclusive) keeps the last page
    assert k.vmalloc(15 * P) is None
    assert k.purges == 1  # the synchronous purge before the retry
    assert "vmap allocation for size 65536 failed: use vmalloc=<size> to increase size" in k.warnings
    assert k.nr_free_pages() == before and busy(k) == []
    k.check()


def test_the_ne_split_takes_the_per_cpu_preload_node() -> None:
    k = k61()
    s = k.VMALLOC_START
    assert k.ne_fit_preload_node == [None] * 4
    a = k.vmalloc(4 * P)  # inside [1, ULONG_MAX): an NE split, the spare becomes [1, s)
    assert a == s and k.ne_fit_preload_node[0] is None
    left = k.free_areas()[0]
    assert (left.va_start, left.va_end) == (1, s)
    b = k.vmalloc(P)  # the start of [s + 5P, ...): LE, the refilled spare stays
    spare = k.ne_fit_preload_node[0]
    assert spare is not None and b == s + 5 * P
    k.vfree(a)
    k.purge_vmap_area_lazy()  # [1, s + 5P) free again
    with k.on_cpu(2):
        c = k.vmalloc(P)  # NE split on CPU 2: CPU 2's spare, not CPU 0's
        assert c == s and k.ne_fit_preload_node[2] is None
    assert k.ne_fit_preload_node[0] is spare
    k.vfree(c)
    k.purge_vmap_area_lazy()  # [1, s + 5P) free again
    assert k.vmalloc(P) == s  # NE again, on CPU 0
    assert k.ne_fit_preload_node[0] is None
    assert k.free_areas()[0] is spare and (spare.va_start, spare.va_end) == (1, s)  # the left remainder
    k.check()


# --- vm_map_ram ------------------------------------------------------------------------------
def test_vmap_block_size_follows_nr_cpus() -> None:
    assert k61(nr_cpus_config=8192).VMAP_BBMAP_BITS == 256
    assert k61(nr_cpus_config=4096).VMAP_BBMAP_BITS == 512
    assert k61().VMAP_BBMAP_BITS == 1024
    for k, size in ((k61(nr_cpus_config=8192), MiB), (k61(), 4 * MiB)):
        pages = take_pages(k, 1)
        m = k.vm_map_ram(pages, 1)
        assert m == k.VMALLOC_START  # aligned to its size, no guard page
        assert k.vmallocinfo() == f"0x{m:016x}-0x{m + size:016x} {size:7d} vm_map_ram\n"


def test_vm_map_ram_is_a_bump_allocator() -> None:
    k = k61(nr_cpus_config=8192)
    k.vmalloc(P)  # the block goes to the next block boundary, leaving a free hole
    pages = take_pages(k, 3)
    base = k.VMALLOC_START + MiB
    got = [k.vm_map_ram(pages, n) for n in (3, 3, 1, 2)]
    # get_order rounding (3 pages take 4) and no alignment inside the block (2 at page 9)
    assert got == [base, base + 4 * P, base + 8 * P, base + 9 * P]
    info = k.vmap_block_for(base)
    assert info is not None and (info.free, info.dirty) == (256 - 11, 0)
    assert ranges(k.free_areas()) == [(1, k.VMALLOC_START), (k.VMALLOC_START + 2 * P, base),
                                      (base + MiB, ULONG_MAX)]
    k.check()


def test_new_blocks_go_to_the_tail_of_the_cpus_free_list() -> None:
    k = k61(nr_cpus_config=8192)
    pages = take_pages(k, 64)
    s = k.VMALLOC_START
    for n in (64, 64, 64, 32):
        assert k.vm_map_ram(pages, n) is not None
    assert k.vm_map_ram(pages, 64) == s + MiB  # 32 left in the first: a second block
    assert [vb.va.va_start for vb in k.vmap_block_queue[0].free] == [s, s + MiB]
    assert k.vm_map_ram(pages, 16) == s + 224 * P  # the oldest block first
    with k.on_cpu(1):
        assert k.vm_map_ram(pages, 1) == s + 2 * MiB  # CPU 1 has a queue of its own
    assert [vb.va.va_start for vb in k.vmap_block_queue[1].free] == [s + 2 * MiB]
    k.check()


def test_a_block_is_freed_lazily_once_every_page_is_dirty() -> None:
    k = k61(nr_cpus_config=8192)
    keep = k.vmalloc(P)  # a busy area, so vmallocinfo prints the unpurged lines
    pages = take_pages(k, 64)
    maps = [k.vm_map_ram(pages, 64) for _ in range(4)]
    block = k.VMALLOC_START + MiB
    assert maps == [block + i * 64 * P for i in range(4)]
    assert k.vmap_block_queue[0].free == []  # free == 0: off the list
    for m in maps[:3]:
        k.vm_unmap_ram(m, 64)
    assert k.vmap_block_for(block) is not None and k.vmap_lazy_nr == 0
    k.vm_unmap_ram(maps[3], 64)
    assert k.vmap_block_for(block) is None and k.vmap_blocks == {}
    assert lazy(k) == [(block, block + MiB)] and k.vmap_lazy_nr == 256  # no guard page
    assert k.vmallocinfo().splitlines()[-1] == f"0x{block:016x}-0x{block + MiB:016x} {MiB} unpurged vm_area"
    assert keep is not None
    k.check()


def test_purge_fragmented_blocks_frees_blocks_with_no_live_mapping() -> None:
    k = k61(nr_cpus_config=8192)
    pages = take_pages(k, 64)
    s = k.VMALLOC_START
    m1 = k.vm_map_ram(pages, 64)  # block 1, CPU 0: unmapped again (fragmented)
    with k.on_cpu(1):
        m2 = k.vm_map_ram(pages, 64)  # block 2, CPU 1: stays mapped
    assert (m1, m2) == (s, s + MiB)
    k.vm_unmap_ram(s, 64)
    k.vm_unmap_aliases()
    assert list(k.vmap_blocks.values())[0].va.va_start == s + MiB and len(k.vmap_blocks) == 1
    assert k.vmap_block_queue[0].free == []
    # block 1's area went lazy and was purged in the same call
    assert lazy(k) == [] and ranges(k.free_areas()) == [(1, s + MiB), (s + 2 * MiB, ULONG_MAX)]
    k.check_no_aliases()
    k.check()


@pytest.mark.parametrize("fixed", [False, True])
def test_vm_unmap_aliases_skips_full_blocks_in_61(fixed: bool) -> None:
    k = k61(nr_cpus_config=8192, vm_unmap_aliases_65=fixed)
    pages = take_pages(k, 64)
    maps = [k.vm_map_ram(pages, 64) for _ in range(4)]  # 256 pages: the block is full
    for m in maps:
        assert m is not None
        k.touch(m, 64)
        with k.on_cpu(1):
            k.touch(m, 64)
    vb = next(iter(k.vmap_blocks.values()))
    assert vb.free == 0 and not vb.on_free_list
    for m in maps[1:]:
        k.vm_unmap_ram(m, 64)  # type: ignore[arg-type]
    k.vm_unmap_aliases()
    if fixed:
        k.check_no_aliases()
    else:
        with pytest.raises(InvariantError, match=r"192 deferred mappings survive vm_unmap_aliases\(\)"):
            k.check_no_aliases()
        assert maps[1] in k.tlb_entries(1)
    k.check()  # the stale entries lie in a range the allocator holds back


# --- /proc/vmallocinfo -------------------------------------------------------------------------
def test_vmallocinfo_order_and_format() -> None:
    k = k61(nodes=2, mem_pages=2048)
    s = k.VMALLOC_START
    io = k.get_vm_area(P, VM_IOREMAP)
    assert io is not None
    io.phys_addr = 0xFED00000
    gone = k.vmalloc(P)
    big = k.vmalloc(513 * P)  # 513 * 8 bytes of page array > PAGE_SIZE: vmalloc()ed too
    n1 = k.vmalloc_node(2 * P, 1)
    pages = take_pages(k, 1)
    ram = k.vm_map_ram(pages, 1)
    k.vfree(gone)
    assert (io.addr, gone, big, n1) == (s, s + 2 * P, s + 4 * P, s + 521 * P)
    arr = s + 518 * P  # the page array of big: 2 pages + guard, after big's area
    assert ram == s + 4 * MiB
    vm = {a: k.find_vm_area(a) for a in (io.addr, big, arr, n1)}
    caller = {a: v.caller for a, v in vm.items() if v is not None}
    assert k.vmallocinfo().splitlines() == [
        f"0x{s:016x}-0x{s + 2 * P:016x}    8192 {caller[s]} phys=0x00000000fed00000 ioremap",
        f"0x{big:016x}-0x{big + 514 * P:016x} {514 * P:7d} {caller[big]} pages=513 vmalloc vpages N0=513",
        f"0x{arr:016x}-0x{arr + 3 * P:016x}   12288 {caller[arr]} pages=2 vmalloc N0=2",
        f"0x{n1:016x}-0x{n1 + 3 * P:016x}   12288 {caller[n1]} pages=2 vmalloc N1=2",
        f"0x{ram:016x}-0x{ram + 4 * MiB:016x} {4 * MiB:7d} vm_map_ram",
        f"0x{gone:016x}-0x{gone + 2 * P:016x}    8192 unpurged vm_area",  # lazy: after the busy list
    ]
    k.check()


def test_vmallocinfo_prints_no_unpurged_lines_without_a_busy_area() -> None:
    k = k61()
    k.vfree(k.vmalloc(P))
    assert k.vmap_lazy_nr == 2
    assert k.vmallocinfo() == ""


# --- pcpu_get_vm_areas --------------------------------------------------------------------------
def test_pcpu_area_of_the_real_boot_is_at_the_top() -> None:
    # tests/fixtures/real-linux-6.1/xfsdir: the first percpu chunk of the boot at this base
    k = k61(vmalloc_start=0xFFFFD26240000000)
    vms = k.pcpu_get_vm_areas([0], [2 * MiB], 2 * MiB)
    assert vms is not None and len(vms) == 1
    v = vms[0]
    assert (v.addr, v.size, v.flags, v.nr_pages) == (0xFFFFF2623FC00000, 2 * MiB, VM_ALLOC, 0)
    assert k.vmallocinfo() == ("0xfffff2623fc00000-0xfffff2623fe00000 2097152 "
                               "pcpu_get_vm_areas+0x0/0x1070 vmalloc\n")
    assert k.vmalloc(P) == k.VMALLOC_START  # ordinary vmallocs stay at the bottom
    k.check()


@pytest.mark.parametrize("offsets", [[0, 4 * MiB, 16 * MiB], [16 * MiB, 0, 4 * MiB]])
def test_pcpu_groups_keep_their_relative_offsets(offsets: list[int]) -> None:
    k = k61()
    top = k.VMALLOC_END & ~(2 * MiB - 1)
    vms = k.pcpu_get_vm_areas(offsets, [2 * MiB] * 3, 2 * MiB)
    assert vms is not None
    base = top - 18 * MiB  # the highest group ends at the aligned VMALLOC_END
    assert [v.addr for v in vms] == [base + o for o in offsets]
    k.check()


def test_pcpu_base_is_lowered_until_every_group_fits_one_free_area() -> None:
    k = k61()
    top = k.VMALLOC_END & ~(2 * MiB - 1)
    blocker = k.place_vm_area(top - 5 * MiB, 2 * P, VM_ALLOC, "blocker")  # in group 0's first try
    assert blocker is not None
    vms = k.pcpu_get_vm_areas([0, 4 * MiB], [2 * MiB, 2 * MiB], 2 * MiB)
    assert vms is not None
    assert [v.addr for v in vms] == [top - 8 * MiB, top - 4 * MiB]
    k.check()


def test_pcpu_retries_after_one_purge() -> None:
    k = k61(vmalloc_size=64 * P)
    s = k.VMALLOC_START
    low = k.get_vm_area(59 * P, 0)  # [s, s + 60P), then lazy: no room for 8 pages below the top
    assert low is not None
    k.free_vm_area(low)
    vms = k.pcpu_get_vm_areas([0], [8 * P], P)
    assert vms is not None and k.purges == 1
    assert vms[0].addr == s + 55 * P  # VMALLOC_END's last page is never handed out
    k.pcpu_free_vm_areas(vms)
    assert lazy(k) == [(s + 55 * P, s + 63 * P)]  # free_vm_area(): lazily, as any area
    k.purge_vmap_area_lazy()
    assert ranges(k.free_areas()) == [(1, ULONG_MAX)]
    k.check()


def test_pcpu_failure_after_the_purge_changes_nothing() -> None:
    k = k61(vmalloc_size=64 * P)
    keep = k.get_vm_area(31 * P, 0)
    assert keep is not None
    before = state(k)
    assert k.pcpu_get_vm_areas([0], [40 * P], P) is None
    after = state(k)
    assert after[:4] == before[:4]
    assert k.warnings[-1].startswith("vmapsim: pcpu_get_vm_areas of 1 areas failed")
    # more than the whole space: the kernel's WARN_ON, no purge
    assert k.pcpu_get_vm_areas([0], [64 * P], P) is None
    assert k.warnings[-1].startswith("WARNING: at mm/vmalloc.c")
    k.check()


@pytest.mark.parametrize("args, exc", [
    (((0,), [P], P), None),  # a tuple is a fine sequence
    (("0", [P], P), TypeError),
    (([0], [P], "4096"), TypeError),
    (([0.0], [P], P), TypeError),
    (([True], [P], P), TypeError),
    (([], [], P), InvalidArgumentError),
    (([0, 2 * P], [P], P), InvalidArgumentError),
    (([0], [P], 3 * P), InvalidArgumentError),       # not a power of two
    (([0], [P], P // 2), InvalidArgumentError),      # not page aligned
    (([0], [P], 0), InvalidArgumentError),
    (([P], [2 * P], 2 * P), InvalidArgumentError),   # offset not aligned
    (([0], [3 * P], 2 * P), InvalidArgumentError),   # size not aligned
    (([0], [0], P), InvalidArgumentError),
    (([-P], [P], P), InvalidArgumentError),
    (([0, P], [2 * P, P], P), InvalidArgumentError),  # overlap
    (([2 * P, 0], [P, 3 * P], P), InvalidArgumentError),  # overlap, other order
])
def test_pcpu_argument_checks(args: tuple[Any, Any, Any], exc: type[Exception] | None) -> None:
    k = k61()
    k.vmalloc(P)
    before = state(k)
    if exc is None:
        assert k.pcpu_get_vm_areas(*args) is not None
        return
    with pytest.raises(exc):
        k.pcpu_get_vm_areas(*args)
    assert state(k) == before


def test_pcpu_free_checks_every_area_first() -> None:
    k = k61()
    vms = k.pcpu_get_vm_areas([0, 4 * P], [P, P], P)
    assert vms is not None
    before = state(k)
    for bad in ([vms[0], vms[0]], [vms[0], "x"], vms[0]):
        with pytest.raises((BadAddressError, TypeError)):
            k.pcpu_free_vm_areas(bad)  # type: ignore[arg-type]
        assert state(k) == before
    k.pcpu_free_vm_areas(vms)
    assert busy(k) == [] and k.vmap_lazy_nr == 2
    with pytest.raises(BadAddressError):
        k.pcpu_free_vm_areas(vms)  # freed already
    k.check()


# --- %p ---------------------------------------------------------------------------------------
def test_siphash_1u64_matches_the_reference_vector() -> None:
    # SipHash-2-4 paper, appendix A: key 00..0f, message 00..07
    assert siphash_1u64(0x0706050403020100, (0x0706050403020100, 0x0F0E0D0C0B0A0908)) == 0x93F5F5799A932462


def test_pr_ptr_is_hashed_on_61_and_raw_on_26() -> None:
    a, b = k61(), k61()
    other = k61(vmalloc_start=0xFFFFD26240000000)
    addr = 0xFFFFC90000001000
    h = a.pr_ptr(addr)
    assert h == b.pr_ptr(addr)  # deterministic for one boot's configuration
    assert h != other.pr_ptr(addr)  # another KASLR base, another key
    assert len(h) == 16 and h[:8] == "00000000" and h != f"{addr:016x}"  # 32 bits kept
    assert int(h, 16) == siphash_1u64(addr, a.ptr_key) & 0xFFFFFFFF
    assert a.pr_ptr(addr + P) != h
    assert a.pr_ptr(0) == "0000000000000000"  # NULL prints as it is
    assert Kernel(design="2.6.28").pr_ptr(addr) == "ffffc90000001000"


@pytest.mark.parametrize("who", ["vfree", "vunmap"])
def test_vfree_warnings_print_hashed_pointers(who: str) -> None:
    k = k61()
    a = k.vmalloc(2 * P)
    assert a is not None
    with pytest.raises(BadAddressError) as ei:
        getattr(k, who)(a + P)
    assert str(ei.value) == f"Trying to vfree() nonexistent vm area ({k.pr_ptr(a + P)})"
    assert f"{a + P:x}" not in str(ei.value)
    with pytest.raises(BadAddressError):
        getattr(k, who)(a + 8)
    assert k.warnings[-1] == f"Trying to vfree() bad address ({k.pr_ptr(a + 8)})"


# --- corruption: one per invariant check -----------------------------------------------------------
def _scene() -> tuple[Linux61, int, int, int]:
    """A kernel with a vmalloc (a), a get_vm_area (g) with its area, a lazy area, a vmap
    block with a live vm_map_ram mapping (m)."""
    k = k61(nr_cpus_config=8192)
    a = k.vmalloc(2 * P)
    g = k.get_vm_area(P, 0)
    k.vfree(k.vmalloc(P))
    pages = take_pages(k, 1)
    m = k.vm_map_ram(pages, 1)
    assert a is not None and g is not None and m is not None
    k.check()
    return k, a, g.addr, m


def _corrupt(k: Linux61, what: str, a: int, g: int, m: int) -> None:
    va_g = kva.find_vmap_area__(g, k.vmap_area_root)
    vb = next(iter(k.vmap_blocks.values()))
    lazy_va = next(iter(k.purge_vmap_area_root))
    if what == "busy count":
        k.vmap_area_root.nr += 1
    elif what == "free augment":
        k.free_vmap_area_root.root.rb_node.subtree_max_size += P  # type: ignore[union-attr]
    elif what == "free unmerged":  # split a free area in two touching ones
        top = k.free_areas()[-1]
        mid = top.va_start + P
        top.va_end = mid
        kva.augment_tree_propagate_from(top)
        kva.insert_vmap_area_augment(vmap_area(mid, ULONG_MAX), None, k.free_vmap_area_root)
    elif what == "two trees":
        kva.insert_vmap_area(vmap_area(va_g.va_start, va_g.va_end), k.purge_vmap_area_root)  # type: ignore[union-attr]
    elif what == "hole":
        kva.unlink_va(lazy_va, k.purge_vmap_area_root)
    elif what == "lazy_nr":
        k.vmap_lazy_nr += 1
    elif what == "no user":
        va_g.vm = None  # type: ignore[union-attr]
    elif what == "vm size":
        va_g.vm.size += P  # type: ignore[union-attr]
    elif what == "off free list":
        k.vmap_block_queue[0].free.remove(vb)
    elif what == "dirty":
        vb.dirty = k.VMAP_BBMAP_BITS
    elif what == "block index":
        k.vmap_blocks[k.addr_to_vb_idx(vb.va.va_start) + 1] = k.vmap_blocks.pop(k.addr_to_vb_idx(vb.va.va_start))
    elif what == "ram count":
        k._ram_maps[m] = 2
    elif what == "ram large":
        k._ram_maps[m] = 200
    elif what == "ram block":
        k._ram_maps[m + 4 * MiB] = 1
    elif what == "stale pte":
        page = k.alloc_page()
        assert page is not None
        k.machine.pte[lazy_va.va_start >> PAGE_SHIFT] = page
    else:
        raise AssertionError(what)


@pytest.mark.parametrize("what, message", [
    ("busy count", r"^busy tree: kva: the list holds"),                          # _check_trees
    ("free augment", r"^free tree: kva: .* subtree_max_size"),
    ("free unmerged", r"^free tree: kva: adjacent areas .* were not merged"),
    ("two trees", r"^(busy|lazy) area at .*\(overlap\)$"),                              # _check_partition
    ("hole", r"^free area at .*\(hole\)$"),
    ("lazy_nr", r"^vmap_lazy_nr is 3, the lazy tree holds 2 pages$"),           # _check_lazy_count
    ("no user", r"has no vm_struct, block or vm_map_ram user$"),                  # _check_busy_areas
    ("vm size", r"^vm_struct of 0x[0-9a-f]+ does not match its area$"),
    ("off free list", r"^block \d+: free-list membership wrong"),               # _check_blocks
    ("dirty", r"^block \d+: free=255 dirty=256 of 256$"),
    ("block index", r"^block \d+ filed under the wrong index"),
    ("ram count", r"beyond its block's bump pointer$"),                          # _check_ram_maps
    ("ram large", r"^large vm_map_ram mapping 0x[0-9a-f]+ has no busy area$"),
    ("ram block", r"^vm_map_ram mapping 0x[0-9a-f]+ has no block$"),
    ("stale pte", r"survives its free \(6.1 clears PTEs at once\)$"),            # _check_no_stale_pte
])
def test_check_names_each_corrupted_invariant(what: str, message: str) -> None:
    k, a, g, m = _scene()
    _corrupt(k, what, a, g, m)
    with pytest.raises(InvariantError, match=message):
        k.check()


def test_every_design_check_has_a_corruption_test() -> None:
    checks = {n for n in vars(Linux61) if n.startswith("_check_") and n != "_check_design"}
    assert checks == {"_check_trees", "_check_partition", "_check_lazy_count", "_check_busy_areas",
                      "_check_blocks", "_check_ram_maps", "_check_no_stale_pte"}
