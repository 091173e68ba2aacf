"""The correctness oracle: use-after-free, stale TLB entries, and vm_unmap_aliases()."""

from __future__ import annotations

import pytest

from conftest import take_pages
from vmapsim import (
    PAGE_SHIFT,
    PAGE_SIZE,
    InvariantError,
    Kernel,
    PageFault,
    StaleTranslationError,
    UseAfterFreeError,
)

P = PAGE_SIZE


def no_flush(k: Kernel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Break the machine: global flushes do nothing (and are recorded)."""
    calls: list[str] = []

    def flush_tlb_all(cpu: object, fn: str = "flush_tlb_all") -> None:
        calls.append(fn)

    monkeypatch.setattr(k.machine, "flush_tlb_all", flush_tlb_all)
    return calls


# --- use after free ------------------------------------------------------------------
def test_read_of_lazily_mapped_freed_area_is_use_after_free() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(2 * P)
    assert a is not None
    k.write(a, b"secret")
    k.vfree(a)
    assert k.vmalloc_to_page(a) is not None  # the PTE really is still there
    with pytest.raises(UseAfterFreeError, match="use after free"):
        k.read(a, 6)
    with pytest.raises(UseAfterFreeError):
        k.write(a + P, b"x")
    with k.on_cpu(1), pytest.raises(UseAfterFreeError):
        k.touch(a, 2)
    k.check()  # a use after free is the caller's bug, not a broken invariant
    k.vm_unmap_aliases()
    with pytest.raises(PageFault):
        k.read(a, 6)
    k.check()


def test_use_after_free_through_the_tlb_after_the_pte_is_gone() -> None:
    # legacy-style ordering: PTEs cleared but the TLB not flushed (unmap_kernel_range
    # flushes, so break the flush to see what the oracle reports)
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    with k.on_cpu(1):
        k.touch(a, 1)
    k.unmap_kernel_range(a, P)
    with k.on_cpu(1), pytest.raises(PageFault):
        k.read(a, 1)  # the flush dropped CPU 1's entry


def test_use_after_free_of_a_vm_map_ram_slot() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    pages = take_pages(k, 2)
    a = k.vm_map_ram(pages, 2)
    assert a is not None
    k.touch(a, 2)
    k.vm_unmap_ram(a, 2)
    with pytest.raises(UseAfterFreeError):
        k.read(a + P, 1)
    k.check()


def test_freed_legacy_or_rewrite_area_never_reads_back(kernel: Kernel) -> None:
    # whatever the design, a read of a freed area is an error, never data
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    k.write(a, b"x")
    k.vfree(a)
    with pytest.raises((PageFault, UseAfterFreeError)):
        k.read(a, 1)


# --- stale translations ------------------------------------------------------------------
def test_stale_tlb_entry_in_a_reused_range(monkeypatch: pytest.MonkeyPatch) -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    with k.on_cpu(1):
        k.touch(a, 1)
    assert k.tlb_entries(1) == {a}
    k.vfree(a)
    calls = no_flush(k, monkeypatch)
    k.vm_unmap_aliases()  # unmaps the PTEs; the (broken) flush leaves CPU 1's entry
    assert calls == ["flush_tlb_kernel_range"]
    assert k.tlb_entries(1) == {a}
    # the range is free again while a TLB caches it: THE invariant is broken
    with pytest.raises(InvariantError, match="TLB caches"):
        k.check()
    grab = k.alloc_page()  # take the freed page so the next vmalloc gets another one
    b = k.vmalloc(P)
    assert b == a and grab is not None
    with pytest.raises(InvariantError, match="stale translation"):
        k.check()
    with k.on_cpu(1), pytest.raises(StaleTranslationError, match="TLB maps pfn"):
        k.read(b, 1)
    with k.on_cpu(0):
        assert k.read(b, 1) == b"\0"  # CPU 0 walks the page table: fine


def test_a_working_flush_keeps_the_invariant() -> None:
    # the control for the test above: the same steps with the real flush
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    with k.on_cpu(1):
        k.touch(a, 1)
    k.vfree(a)
    k.vm_unmap_aliases()
    k.check()
    k.alloc_page()
    assert k.vmalloc(P) == a
    with k.on_cpu(1):
        assert k.read(a, 1) == b"\0"
    k.check()


def test_skipped_flush_in_a_threshold_purge_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmapsim import PAGE_KERNEL, VM_MAP

    k = Kernel(cpus=2, mem_pages=64, design="rewrite")
    areas = [k.get_vm_area(2047 * P, VM_MAP) for _ in range(9)]  # 2048 pages with the guard
    assert all(a is not None for a in areas)
    pages = take_pages(k, 1) * 2047
    assert k.map_vm_area(areas[0], PAGE_KERNEL, pages) == 0  # type: ignore[arg-type]
    with k.on_cpu(1):
        k.touch(areas[0].addr, 3)  # type: ignore[union-attr]
    calls = no_flush(k, monkeypatch)
    for area in areas[:8]:
        k.free_vm_area(area)  # type: ignore[arg-type]
    assert calls == [] and k.vmap_lazy_nr == 8 * 2048 == k.lazy_max_pages()
    k.check()  # CPU 1's entries lie in a lazily freed area: held back, fine
    k.free_vm_area(areas[8])  # type: ignore[arg-type]
    assert calls == ["flush_tlb_kernel_range"]  # past lazy_max_pages: try_purge
    assert k.vmap_lazy_nr == 0
    with pytest.raises(InvariantError, match="CPU 1 TLB caches"):
        k.check()


# --- vm_unmap_aliases: the seed's promise and the 2.6.28 flaw ---------------------------------
def fill_block_and_free_all_but_one(k: Kernel) -> list[int]:
    """16 x vm_map_ram(64) on CPU 0 fill one block; touch from two CPUs; unmap 15."""
    pages = take_pages(k, 64)
    with k.on_cpu(0):
        addrs = [k.vm_map_ram(pages, 64) for _ in range(16)]
    assert all(a is not None for a in addrs)
    vb = k.vmap_block_tree[k.addr_to_vb_idx(addrs[0])]  # type: ignore[arg-type]
    assert vb.free == 0 and not vb.on_free_list  # full: not on the per-CPU free list
    for cpu in (0, 1):
        with k.on_cpu(cpu):
            for a in addrs:
                k.touch(a, 64)  # type: ignore[arg-type]
    with k.on_cpu(0):
        for a in addrs[:-1]:
            k.vm_unmap_ram(a, 64)  # type: ignore[arg-type]
    assert vb.dirty == 15 * 64 and len(k.vmap_block_tree) == 1
    k.check()
    return addrs  # type: ignore[return-value]


def test_vm_unmap_aliases_flushes_every_deferred_mapping() -> None:
    k = Kernel(cpus=2, mem_pages=512, design="rewrite")
    addrs = fill_block_and_free_all_but_one(k)
    a = k.vmalloc(P)
    assert a is not None
    k.vfree(a)
    assert k.deferred_mappings()  # dirty block slots and the lazy area
    k.vm_unmap_aliases()
    k.check_no_aliases()
    assert k.deferred_mappings() == []
    for cpu in (0, 1):
        assert k.tlb_entries(cpu) == set()
        with k.on_cpu(cpu), pytest.raises(PageFault):
            k.read(addrs[0], 1)
    with k.on_cpu(1):
        k.touch(addrs[-1], 64)  # the live mapping survives
    k.check()


def test_vm_unmap_aliases_2628_flaw_leaves_full_blocks_mapped() -> None:
    k = Kernel(cpus=2, mem_pages=512, design="rewrite", vm_unmap_aliases_2628=True)
    addrs = fill_block_and_free_all_but_one(k)
    k.vm_unmap_aliases()
    k.check()  # nothing the allocator can hand out is cached: not a broken invariant...
    with pytest.raises(InvariantError, match="deferred mappings survive vm_unmap_aliases"):
        k.check_no_aliases()  # ...but the promise to Xen/PAT is broken
    left = set(k.deferred_mappings())
    assert {addrs[0], addrs[14] + 63 * P} <= left
    assert addrs[-1] not in left
    with k.on_cpu(1), pytest.raises(UseAfterFreeError):
        k.read(addrs[3], 1)  # CPU 1 still reaches the unmapped slot through its TLB


def test_vm_unmap_aliases_2628_handles_blocks_on_the_free_list() -> None:
    # the flaw is only about full blocks: a partly used block is flushed either way
    for flawed in (False, True):
        k = Kernel(cpus=2, mem_pages=512, design="rewrite", vm_unmap_aliases_2628=flawed)
        pages = take_pages(k, 8)
        a = k.vm_map_ram(pages, 8)
        b = k.vm_map_ram(pages, 8)
        assert a is not None and b is not None
        with k.on_cpu(1):
            k.touch(a, 8)
        k.vm_unmap_ram(a, 8)
        k.vm_unmap_aliases()
        k.check_no_aliases()
        k.check()


def test_vm_unmap_aliases_does_not_reflush_clean_blocks() -> None:
    k = Kernel(cpus=2, mem_pages=512, design="rewrite")
    pages = take_pages(k, 4)
    a = k.vm_map_ram(pages, 4)
    assert a is not None
    k.vm_unmap_ram(a, 4)
    k.vm_unmap_aliases()
    flushes = k.stats["tlb_flushes"]
    assert flushes == 1
    k.vm_unmap_aliases()
    assert k.stats["tlb_flushes"] == flushes  # the dirty range was already flushed
    k.check_no_aliases()


def test_check_no_aliases_sees_a_lazy_vfree() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    k.vfree(a)
    with pytest.raises(InvariantError):
        k.check_no_aliases()
    k.vm_unmap_aliases()
    k.check_no_aliases()


def test_vm_unmap_aliases_available_in_every_design(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(2 * P)
    assert a is not None
    k.touch(a, 2)
    k.vfree(a)
    k.vm_unmap_aliases()
    k.check_no_aliases()
    k.check()


# --- check() catches corrupted model state --------------------------------------------
def test_check_catches_a_leaked_page(kernel: Kernel) -> None:
    k = kernel
    k.machine.mem.alloc_page(0)  # taken behind the kernel's back
    with pytest.raises(InvariantError, match="leak"):
        k.check()


def test_check_catches_a_pte_outside_any_area(kernel: Kernel) -> None:
    k = kernel
    page = k.alloc_page()
    assert page is not None
    k.machine.pte[(k.VMALLOC_START + 1000 * P) >> PAGE_SHIFT] = page
    with pytest.raises(InvariantError, match="outside any live or held-back range"):
        k.check()


def test_check_catches_a_missing_live_pte(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    del k.machine.pte[a >> PAGE_SHIFT]
    with pytest.raises(InvariantError, match="missing from the page table"):
        k.check()


def test_check_catches_wrong_vmap_lazy_nr() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    k.vfree(a)
    k.vmap_lazy_nr += 1
    with pytest.raises(InvariantError, match="vmap_lazy_nr"):
        k.check()


def test_check_catches_overlap_and_missing_gap() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    b = k.vmalloc(P)
    assert a is not None and b is not None
    [va, vb] = k.vmap_areas()
    vb.va_start -= P  # gap gone
    vb.private.addr = vb.va_start
    k._vmlist_addrs[1] = vb.va_start
    vb.private.size += P
    with pytest.raises(InvariantError, match="gap"):
        k.check()
    vb.va_start -= P
    vb.private.addr = vb.va_start
    k._vmlist_addrs[1] = vb.va_start
    vb.private.size += P
    with pytest.raises(InvariantError, match="overlap"):
        k.check()


def test_check_catches_a_broken_rbtree() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    for _ in range(5):
        k.vmalloc(P)
    k.vmap_area_root.rb_node.rb_red = True  # type: ignore[union-attr]
    with pytest.raises(InvariantError, match="root is red"):
        k.check()


def test_vm_unmap_aliases_2628_reflushes_old_dirty_ranges() -> None:
    # the second 2.6.28 flaw: dirty bits were never reset, so every call flushes again
    counts = {}
    for flawed in (False, True):
        k = Kernel(cpus=2, mem_pages=512, design="rewrite", vm_unmap_aliases_2628=flawed)
        pages = take_pages(k, 4)
        a = k.vm_map_ram(pages, 4)
        assert a is not None
        k.vm_unmap_ram(a, 4)
        for _ in range(3):
            k.vm_unmap_aliases()
        counts[flawed] = k.stats["tlb_flushes"]
        k.check()
    assert counts == {False: 1, True: 3}
