"""Physical memory: lazy page frames, NUMA nodes, the DMA32 zone, accounting."""

from __future__ import annotations

import pytest

from vmapsim import PAGE_SIZE, BadPageError, ConfigError, Kernel, Page
from vmapsim.hw.physmem import DMA32_END_PFN, ZONE_DMA32, ZONE_NORMAL, PhysMem

BIG = 2_000_000  # ~7.6 GiB: node 1 has pages above 4 GiB


def test_pages_are_created_lazily() -> None:
    mem = PhysMem(BIG, 2)
    assert mem.nr_free_pages() == BIG
    # nothing is materialised until allocated
    assert all(not p.free and p.next_pfn == p.end_pfn - p.size for pools in mem.pools for p in pools)
    page = mem.alloc_page(0)
    assert isinstance(page, Page) and page.data is None
    assert mem.nr_free_pages() == BIG - 1 and mem.allocated == 1
    mem._check()


def test_page_contents_are_lazy_and_zero_when_unwritten() -> None:
    k = Kernel(cpus=1, mem_pages=64)
    a = k.vmalloc(2 * PAGE_SIZE)
    assert a is not None
    area = k.find_vm_area(a)
    assert area is not None and area.pages is not None
    assert all(p.data is None for p in area.pages)
    assert k.read(a, 16) == bytes(16)
    k.write(a + PAGE_SIZE + 10, b"xy")
    assert area.pages[0].data is None  # the untouched page still costs nothing
    assert area.pages[1].data is not None and area.pages[1].data[10:12] == b"xy"


def test_node_preference_and_fallback() -> None:
    mem = PhysMem(200, 2)
    got = [mem.alloc_page(1) for _ in range(100)]
    assert all(p is not None and p.node == 1 for p in got)
    assert all(100 <= p.pfn < 200 for p in got)  # type: ignore[union-attr]
    # node 1 is empty: fall back to node 0
    p = mem.alloc_page(1)
    assert p is not None and p.node == 0
    rest = [mem.alloc_page(0) for _ in range(99)]
    assert all(q is not None for q in rest)
    assert mem.alloc_page(0) is None and mem.alloc_page(1) is None
    assert mem.nr_free_pages() == 0
    mem._check()


def test_zones_of_a_big_machine() -> None:
    mem = PhysMem(BIG, 2)
    # node 0 is entirely below 4 GiB; node 1 straddles it
    p0 = mem.alloc_page(0)
    p1 = mem.alloc_page(1)
    assert p0 is not None and p0.zone == ZONE_DMA32 and p0.pfn < DMA32_END_PFN
    assert p1 is not None and p1.zone == ZONE_NORMAL and p1.pfn >= DMA32_END_PFN
    d1 = mem.alloc_page(1, dma32=True)
    assert d1 is not None and d1.node == 1 and d1.zone == ZONE_DMA32
    assert BIG // 2 <= d1.pfn < DMA32_END_PFN


def test_dma32_fallback_never_goes_above_4g() -> None:
    mem = PhysMem(BIG, 2)
    dma_in_node1 = DMA32_END_PFN - BIG // 2
    pages = [mem.alloc_page(1, dma32=True) for _ in range(dma_in_node1)]
    assert all(p is not None and p.node == 1 for p in pages)
    nxt = mem.alloc_page(1, dma32=True)
    assert nxt is not None and nxt.node == 0 and nxt.pfn < DMA32_END_PFN


def test_vmalloc_32_pages_are_below_4g() -> None:
    k = Kernel(cpus=2, nodes=2, mem_pages=BIG)
    with k.on_cpu(1):  # CPU 1 is on node 1, whose Normal zone is above 4 GiB
        a = k.vmalloc_32(8 * PAGE_SIZE)
        b = k.vmalloc(8 * PAGE_SIZE)
        u = k.vmalloc_32_user(2 * PAGE_SIZE)
    assert a is not None and b is not None and u is not None
    for addr in (a, u):
        area = k.find_vm_area(addr)
        assert area is not None and area.pages is not None
        assert all(p.pfn < DMA32_END_PFN and p.zone == ZONE_DMA32 for p in area.pages)
    plain = k.find_vm_area(b)
    assert plain is not None and plain.pages is not None
    assert all(p.pfn >= DMA32_END_PFN and p.node == 1 for p in plain.pages)
    k.check()


def test_vmalloc_node_uses_the_node() -> None:
    k = Kernel(cpus=2, nodes=2, mem_pages=4096)
    with k.on_cpu(0):
        a = k.vmalloc_node(5 * PAGE_SIZE, 1)
        b = k.vmalloc(5 * PAGE_SIZE)  # current CPU's node
    assert a is not None and b is not None
    area_a, area_b = k.find_vm_area(a), k.find_vm_area(b)
    assert area_a is not None and area_a.pages is not None
    assert area_b is not None and area_b.pages is not None
    assert {p.node for p in area_a.pages} == {1}
    assert {p.node for p in area_b.pages} == {0}
    with pytest.raises(ConfigError):
        k.vmalloc_node(PAGE_SIZE, 2)


def test_free_and_reuse_accounting() -> None:
    mem = PhysMem(10, 1)
    pages = [mem.alloc_page(0) for _ in range(10)]
    assert mem.alloc_page(0) is None
    for p in pages:
        mem.free_page(p)  # type: ignore[arg-type]
    assert mem.nr_free_pages() == 10 and mem.allocated == 0
    again = mem.alloc_page(0)
    assert again is pages[-1]  # the free list is reused, no new frame is made
    mem._check()


def test_free_page_misuse() -> None:
    mem = PhysMem(10, 1)
    p = mem.alloc_page(0)
    assert p is not None
    mem.free_page(p)
    with pytest.raises(BadPageError, match="freeing free page"):
        mem.free_page(p)
    with pytest.raises(TypeError):
        mem.free_page("page")  # type: ignore[arg-type]
    mem._check()


def test_check_catches_broken_accounting() -> None:
    mem = PhysMem(10, 1)
    mem.alloc_page(0)
    mem.allocated += 1
    with pytest.raises(AssertionError, match="accounting"):
        mem._check()


@pytest.mark.parametrize(
    ("mem_pages", "nodes", "exc"),
    [("10", 1, TypeError), (10, 1.5, TypeError), (10, 0, ConfigError), (1, 2, ConfigError)],
)
def test_bad_config(mem_pages: object, nodes: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        PhysMem(mem_pages, nodes)  # type: ignore[arg-type]


def test_remainder_pages_belong_to_no_node() -> None:
    mem = PhysMem(11, 2)
    assert mem.nr_free_pages() == 10
    got = [mem.alloc_page(0) for _ in range(11)]
    assert got[-1] is None and {p.pfn for p in got[:-1]} == set(range(10))  # type: ignore[union-attr]
