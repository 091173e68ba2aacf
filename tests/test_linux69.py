"""The Linux 6.9 design (mm/linux69.py) against the facts of 6.9's mm/vmalloc.c
(/work/shared/reference/linux-vmalloc-modern.md, sections 2 and 3): the vmap nodes and
their 64 KiB zones, the node id kept in va->flags, lazy areas per allocating node and not
coalesced, node_alloc's exact-size pools, the purge (one flush, pools LIFO, the rest to
the free tree in descending order), the pools' decay with its quirk, the full decay of
the overflow path, the parallel purge helpers, the node scan of find_vmap_area, the
node-by-node /proc/vmallocinfo, the vmap-node shrinker, and 6.3-6.5's used_map, per-CPU
block xarrays and vm_unmap_aliases() fixes; then one corruption per invariant check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import take_pages
from vmapsim import PAGE_SIZE, VM_IOREMAP, ConfigError, InvariantError, Kernel
from vmapsim.mm import kva
from vmapsim.mm.kva import ULONG_MAX, vmap_area
from vmapsim.mm.linux61 import Linux61
from vmapsim.mm.linux69 import (
    MAX_VA_SIZE_PAGES,
    VMAP_BLOCK,
    VMAP_RAM,
    Linux69,
    encode_vn_id,
)

P = PAGE_SIZE
MiB = 1 << 20
ZONE = 16 * P  # "Node partition is 16 pages"


def k69(**kw: Any) -> Linux69:
    kw.setdefault("cpus", 4)
    kw.setdefault("mem_pages", 4096)
    k = Kernel(design="6.9", **kw)
    assert isinstance(k, Linux69)
    return k


def ranges(areas: Any) -> list[tuple[int, int]]:
    return [(va.va_start, va.va_end) for va in areas]


def busy(k: Linux69, node: int) -> list[tuple[int, int]]:
    return ranges(k.vmap_nodes[node].busy.tree)


def lazy(k: Linux69, node: int) -> list[tuple[int, int]]:
    return ranges(k.vmap_nodes[node].lazy.tree)


def pool(k: Linux69, node: int, pages: int) -> list[int]:
    """The start addresses in node ``node``'s pool of ``pages``-page areas, head first."""
    vp = k.vmap_nodes[node].pool[pages - 1]
    assert vp.len == len(vp.head)
    return [va.va_start for va in vp.head]


def free(k: Linux69) -> list[tuple[int, int]]:
    """The global free tree (not the pools)."""
    return ranges(k.free_vmap_area_root)


def pooled(k: Linux69) -> int:
    return sum(vp.len for vn in k.vmap_nodes for vp in vn.pool)


def alloc_free(k: Linux69, cpu: int, pages: int) -> int:
    """vmalloc() of ``pages`` pages (one more with the guard) on ``cpu``, then vfree()."""
    with k.on_cpu(cpu):
        a = k.vmalloc(pages * P)
        assert a is not None
        k.vfree(a)
    return a


def record(k: Linux69, *events: str) -> list[tuple[str, dict[str, int]]]:
    out: list[tuple[str, dict[str, int]]] = []

    def tracer(event: str, fields: dict[str, int]) -> None:
        if event in events:
            out.append((event, dict(fields)))

    k.tracer = tracer
    return out


# --- the nodes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cpus, nodes", [(1, 1), (4, 4), (128, 128), (130, 128), (1024, 128)])
def test_nr_vmap_nodes_is_the_cpu_count_clamped_to_1_128(cpus: int, nodes: int) -> None:
    k = k69(cpus=cpus, mem_pages=64)
    assert k.nr_vmap_nodes == nodes == len(k.vmap_nodes)
    assert [vn.id for vn in k.vmap_nodes] == list(range(nodes))
    assert all(len(vn.pool) == MAX_VA_SIZE_PAGES == 256 for vn in k.vmap_nodes)
    # "Node partition is 16 pages" once there is more than one node; else the global layer
    assert k.vmap_zone_size == (16 * P if nodes > 1 else 1)


def test_addr_to_node_deals_the_64k_zones_round_robin() -> None:
    k = k69()
    s = k.VMALLOC_START
    assert s % (4 * ZONE) == 0  # so zone i of the space is node i % 4
    for i in range(10):
        for off in (0, ZONE - 1):
            assert k.addr_to_node_id(s + i * ZONE + off) == i % 4
            assert k.addr_to_node(s + i * ZONE + off) is k.vmap_nodes[i % 4]
    assert k.addr_to_node_id(0x10000) == 1 and k.addr_to_node_id(0x50000 - 1) == 0
    assert k.id_to_node(5) is k.vmap_nodes[1]  # id % nr_vmap_nodes
    one = k69(cpus=1)
    assert {one.addr_to_node_id(s + i * P) for i in range(100)} == {0}


def test_encode_vn_id_keeps_the_node_above_the_vmap_flags_byte() -> None:
    assert [encode_vn_id(i) for i in (0, 1, 3, 127)] == [0x100, 0x200, 0x400, 0x8000]
    k = k69()
    assert [k.decode_vn_id(encode_vn_id(i) | VMAP_RAM | VMAP_BLOCK) for i in range(4)] == [0, 1, 2, 3]
    assert k.decode_vn_id(0) == k.decode_vn_id(VMAP_RAM) == k.nr_vmap_nodes  # no node: invalid


def test_a_busy_area_sits_in_its_start_addresss_node_and_remembers_the_cpus() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(3):
        a = k.vmalloc(15 * P)  # 16 pages with the guard: zone 0 exactly
    with k.on_cpu(2):
        b = k.vmalloc(47 * P)  # zones 1, 2 and 3: busy in node 1 (its start)
    c = k.vmalloc(P)  # zone 4: node 0 again
    assert (a, b, c) == (s, s + ZONE, s + 4 * ZONE)
    assert busy(k, 0) == [(a, a + ZONE), (c, c + 2 * P)]
    assert busy(k, 1) == [(b, b + 3 * ZONE)]
    assert busy(k, 2) == busy(k, 3) == []
    flags = {x: k.find_vmap_area(x).flags for x in (a, b, c)}  # type: ignore[union-attr]
    assert flags == {a: encode_vn_id(3), b: encode_vn_id(2), c: encode_vn_id(0)}
    k.check()


def test_a_freed_area_goes_lazy_in_its_allocating_node_not_coalesced() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(3):
        a = k.vmalloc(P)
        b = k.vmalloc(P)  # adjacent to a
    keep = k.vmalloc(P)
    assert (a, b, keep) == (s, s + 2 * P, s + 4 * P)
    with k.on_cpu(1):  # the freeing CPU does not matter, nor does the address's node (0)
        k.vfree(b)
        k.vfree(a)
    assert lazy(k, 3) == [(a, a + 2 * P), (b, b + 2 * P)]  # two areas: 6.1 merged them into one
    assert lazy(k, 0) == lazy(k, 1) == lazy(k, 2) == []
    assert k.vmap_lazy_nr == 4
    unpurged = [line for line in k.vmallocinfo().splitlines() if line.endswith("unpurged vm_area")]
    assert unpurged == [f"0x{a:016x}-0x{a + 2 * P:016x}    8192 unpurged vm_area",
                        f"0x{b:016x}-0x{b + 2 * P:016x}    8192 unpurged vm_area"]
    k.check()


def test_one_node_keeps_the_global_behaviour() -> None:
    k = k69(cpus=1)
    a = k.vmalloc(P)
    assert a is not None
    assert k.find_vmap_area(a).flags == 0  # type: ignore[union-attr]  # node_alloc: vn_id 0
    k.vfree(a)
    assert lazy(k, 0) == [(a, a + 2 * P)]
    k.vm_unmap_aliases()
    assert pooled(k) == 0 and free(k) == [(1, ULONG_MAX)]  # no valid vn_id: never pooled
    assert k.vmalloc(P) == a
    k.check()


# --- node_alloc: the exact-size pools ------------------------------------------------------------
def test_a_purged_area_goes_to_its_nodes_pool_and_only_that_node_takes_it() -> None:
    k = k69()
    s = k.VMALLOC_START
    a = alloc_free(k, 1, 1)  # 2 pages with the guard
    keep = k.vmalloc(P)
    assert (a, keep) == (s, s + 2 * P)
    k.vm_unmap_aliases()  # a purge without the full decay
    assert pool(k, 1, 2) == [a] and pooled(k) == 1
    assert free(k) == [(1, s), (s + 4 * P, ULONG_MAX)]  # not in the free tree
    with k.on_cpu(0):
        x = k.vmalloc(P)  # node 0's pool is empty: the global free tree
    with k.on_cpu(1):
        y = k.vmalloc(2 * P)  # 3 pages: pool[2] of node 1, empty
        z = k.vmalloc(P)  # the exact size: the pool's area
    assert (x, y, z) == (s + 4 * P, s + 6 * P, a)
    assert pool(k, 1, 2) == [] and pooled(k) == 0
    va = k.find_vmap_area(z)
    assert va is not None and (va.va_start, va.va_end, va.flags) == (a, a + 2 * P, encode_vn_id(1))
    k.check()


def test_the_pool_is_the_allocating_cpus_modulo_nr_vmap_nodes() -> None:
    k = k69(cpus=130, mem_pages=64)  # 128 nodes: CPU 129 is node 1's
    s = k.VMALLOC_START
    a = alloc_free(k, 129, 1)
    k.vmalloc(P)
    k.vm_unmap_aliases()
    assert pool(k, 1, 2) == [a]
    with k.on_cpu(129):
        assert k.vmalloc(2 * P) == s + 4 * P  # another size: the global tree
    with k.on_cpu(1):
        b = k.vmalloc(P)
    assert b == a and k.find_vmap_area(b).flags == encode_vn_id(1)  # type: ignore[union-attr]
    k.check()


def test_only_the_first_pool_entry_is_tried_and_an_unaligned_one_goes_to_the_tail() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(1):
        x = k.vmalloc(2 * P)  # [s, s + 3P): 8 KiB aligned
        y = k.vmalloc(2 * P)  # [s + 3P, s + 6P): not
    keep = k.vmalloc(P)
    assert (x, y, keep) == (s, s + 3 * P, s + 6 * P)
    with k.on_cpu(1):
        k.vfree(x)
        k.vfree(y)
    k.vm_unmap_aliases()
    assert pool(k, 1, 3) == [y, x]  # list_add() of each in address order: the last at the head
    calls = record(k, "alloc")
    with k.on_cpu(1):
        io = k.get_vm_area(2 * P, VM_IOREMAP)  # 3 pages with the guard, aligned to 8 KiB
    assert calls[-1][1]["align"] == 2 * P
    assert io is not None and io.addr == s + 8 * P  # a miss: y is unaligned, x never looked at
    assert pool(k, 1, 3) == [x, y]  # y moved to the tail
    with k.on_cpu(1):
        io2 = k.get_vm_area(2 * P, VM_IOREMAP)
        assert io2 is not None and io2.addr == x  # now x is first, and aligned
        io3 = k.get_vm_area(2 * P, VM_IOREMAP)
        assert io3 is not None and io3.addr == s + 12 * P  # y first again: a miss
        assert pool(k, 1, 3) == [y]
        assert k.vmalloc(2 * P) == y  # align 1: any first entry will do
    assert pooled(k) == 0
    k.check()


def test_sizes_over_256_pages_are_never_pooled() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(1):
        a = k.get_vm_area(255 * P, 0)  # 256 pages with the guard: pool[255]
        b = k.get_vm_area(256 * P, 0)  # 257 pages: no pool
    keep = k.get_vm_area(P, 0)
    assert a is not None and b is not None and keep is not None
    assert (a.addr, b.addr, keep.addr) == (s, s + 256 * P, s + 513 * P)
    vn = k.vmap_nodes[1]
    assert k.size_to_va_pool(vn, 256 * P) is vn.pool[255] and k.size_to_va_pool(vn, 257 * P) is None
    with k.on_cpu(1):
        k.free_vm_area(a)
        k.free_vm_area(b)
    k.vm_unmap_aliases()
    assert pool(k, 1, 256) == [s] and pooled(k) == 1
    assert free(k) == [(1, s), (s + 256 * P, s + 513 * P), (s + 515 * P, ULONG_MAX)]
    k.check()


@pytest.mark.parametrize("lo, hi", [(0, -1), (P, 0), (0, 1)])
def test_a_restricted_range_allocation_uses_the_global_free_tree(lo: int, hi: int) -> None:
    k = k69()
    s = k.VMALLOC_START
    a = alloc_free(k, 1, 1)
    k.vmalloc(P)
    k.vm_unmap_aliases()
    assert pool(k, 1, 2) == [a]
    # vstart != VMALLOC_START or vend != VMALLOC_END: node_alloc() returns at once; even
    # VMALLOC_END + 1 (the whole space all the same) is not the range it pools for
    start, end = s + lo, k.VMALLOC_END + hi * P if hi != 1 else k.VMALLOC_END + 1
    with k.on_cpu(1):
        r = k.get_vm_area__(P, 0, start, end)
    assert r is not None and r.addr == s + 4 * P and pool(k, 1, 2) == [a]
    va = k.find_vmap_area(r.addr)
    assert va is not None and va.flags == 0 and k.decode_vn_id(va.flags) == k.nr_vmap_nodes
    with k.on_cpu(1):
        k.free_vm_area(r)
    assert lazy(k, 0) == [(r.addr, r.addr + 2 * P)] and lazy(k, 1) == []  # the address's node
    k.vm_unmap_aliases()  # a decays first (a pool of one); r, with no vn_id, is not pooled
    assert pooled(k) == 0 and free(k) == [(1, s + 2 * P), (s + 4 * P, ULONG_MAX)]
    k.check()


# --- the purge ------------------------------------------------------------------------------------
def test_one_flush_covers_the_lazy_areas_of_every_node() -> None:
    k = k69()
    s = k.VMALLOC_START
    got = []
    for cpu in (2, 0, 3):
        with k.on_cpu(cpu):
            got.append(k.vmalloc(P))
    keep = k.vmalloc(P)
    assert got == [s, s + 2 * P, s + 4 * P] and keep == s + 6 * P
    with k.on_cpu(1):
        for a in [*got, keep]:
            k.touch(a, 1)  # type: ignore[arg-type]
    for a in got:
        k.vfree(a)
    assert [len(lazy(k, i)) for i in range(4)] == [1, 0, 1, 1]
    events = record(k, "flush", "purge_ret")
    before = dict(k.stats)
    k.vm_unmap_aliases()
    assert events == [("flush", {"start": s, "end": s + 6 * P}), ("purge_ret", {"ret": 1})]
    after = k.stats
    assert after["local_tlb_flushes"] - before["local_tlb_flushes"] == 1  # 6 pages: INVLPGs
    assert after["tlb_flushes"] == before["tlb_flushes"] and after["purges"] == before["purges"] + 1
    assert keep in k.tlb_entries(1) and not set(got) & k.tlb_entries(1)
    assert k.vmap_lazy_nr == 0 and all(lazy(k, i) == [] for i in range(4))
    assert pool(k, 2, 2) == [s] and pool(k, 0, 2) == [s + 2 * P] and pool(k, 3, 2) == [s + 4 * P]
    k.check_no_aliases()
    k.check()


def test_pool_sized_areas_go_to_the_pool_head_and_come_back_last_in_first_out() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(1):
        a, b, c = (k.vmalloc(P) for _ in range(3))
    k.vmalloc(P)
    with k.on_cpu(2):
        for x in (b, c, a):
            k.vfree(x)
    k.vm_unmap_aliases()
    assert (a, b, c) == (s, s + 2 * P, s + 4 * P)
    assert pool(k, 1, 2) == [c, b, a]  # the purge list is in address order, each list_add()ed
    with k.on_cpu(1):
        assert [k.vmalloc(P) for _ in range(3)] == [c, b, a]
    k.check()


def test_other_areas_go_back_to_the_free_tree_in_descending_order(monkeypatch: pytest.MonkeyPatch) -> None:
    k = k69()
    s = k.VMALLOC_START
    areas = [k.get_vm_area(256 * P, 0) for _ in range(5)]  # 257 pages each: no pool
    assert all(v is not None for v in areas)
    a, x, b, y, c = (v.addr for v in areas)  # type: ignore[union-attr]
    for v in (areas[2], areas[0], areas[4]):
        k.free_vm_area(v)  # type: ignore[arg-type]
    order: list[int] = []
    real = kva.merge_or_add_vmap_area_augment

    def spy(va: vmap_area, root: kva.vmap_tree) -> vmap_area | None:
        if root is k.free_vmap_area_root:
            order.append(va.va_start)
        return real(va, root)

    monkeypatch.setattr(kva, "merge_or_add_vmap_area_augment", spy)
    k.vm_unmap_aliases()
    assert order == [c, b, a]  # list_add() onto the local list: 6.1 went in ascending order
    assert a == s and free(k) == [(1, s + 257 * P), (b, b + 257 * P), (c, ULONG_MAX)]
    k.check()


def _decays(k: Linux69, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[int, int]]]:
    """What each decay gives back to the free tree (reclaim_list_global's non-empty lists)."""
    given: list[list[tuple[int, int]]] = []
    real = k.reclaim_list_global

    def spy(areas: list[vmap_area]) -> None:
        if areas:
            given.append(ranges(areas))
        real(areas)

    monkeypatch.setattr(k, "reclaim_list_global", spy)
    return given


def test_decay_gives_a_quarter_of_each_pool_back_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(1):
        addrs = [k.vmalloc(P) for _ in range(8)]
    keep = k.vmalloc(P)
    assert addrs == [s + 2 * i * P for i in range(8)] and keep == s + 16 * P
    with k.on_cpu(1):
        for a in addrs:
            k.vfree(a)
    k.vm_unmap_aliases()
    assert pool(k, 1, 2) == addrs[::-1]
    given = _decays(k, monkeypatch)
    k.vm_unmap_aliases()  # nothing lazy: the decay alone, 8 >> 2 = 2 from the head
    assert given == [[(s + 12 * P, s + 16 * P)]]  # the two most recent, merged into one area
    assert pool(k, 1, 2) == addrs[5::-1]
    assert (s + 12 * P, s + 16 * P) in free(k)
    for left in (5, 4, 3):  # 6 >> 2, 5 >> 2, 4 >> 2: one each
        k.vm_unmap_aliases()
        assert pool(k, 1, 2) == addrs[left - 1::-1]
    given.clear()
    k.vm_unmap_aliases()  # 3 >> 2 == 0: --n_decay wraps, the pool decays entirely
    assert given == [[(s, s + 6 * P)]] and pool(k, 1, 2) == []
    assert free(k) == [(1, keep), (keep + 2 * P, ULONG_MAX)]
    k.check()


@pytest.mark.parametrize("n, left", [(1, 0), (2, 0), (3, 0), (4, 3), (7, 6), (8, 6), (12, 9), (16, 12)])
def test_a_partial_decay_takes_len_over_4_and_all_of_a_pool_under_4(n: int, left: int) -> None:
    k = k69()
    with k.on_cpu(2):
        addrs = [k.vmalloc(P) for _ in range(n)]
        k.vmalloc(P)
        for a in addrs:
            k.vfree(a)  # type: ignore[arg-type]
    k.vm_unmap_aliases()
    assert len(pool(k, 2, 2)) == n
    k.vm_unmap_aliases()
    assert pool(k, 2, 2) == (addrs[left - 1::-1] if left else [])  # the oldest stay
    assert k.vmap_nodes[2].pool[1].len == left
    k.check()


def test_the_overflow_path_decays_every_pool_in_full_and_pools_nothing() -> None:
    k = k69(vmalloc_size=64 * P)
    s = k.VMALLOC_START
    with k.on_cpu(1):
        a, b = k.vmalloc(P), k.vmalloc(P)
        k.vfree(a)
        k.vfree(b)
    k.vm_unmap_aliases()
    assert pool(k, 1, 2) == [b, a] == [s + 2 * P, s]
    c = alloc_free(k, 2, 3)  # 4 pages, lazy in node 2: a pool size of node 2
    assert c == s + 4 * P and lazy(k, 2) == [(c, c + 4 * P)]
    events = record(k, "alloc", "purge", "flush")
    with k.on_cpu(1):
        big = k.vmalloc(60 * P)  # 61 pages: only once the pools and the lazy area are back
    assert big == s and k.purges == 2 and k.warnings == []
    assert [e for e, _ in events] == ["alloc", "purge", "flush"]
    assert pooled(k) == 0 and k.vmap_node_shrink_count() == 0  # skip_populate: c not pooled
    assert free(k) == [(1, s), (s + 61 * P, ULONG_MAX)]
    k.check()


def test_the_synchronous_purge_is_the_overflow_paths() -> None:
    k = k69()
    for cpu in (1, 2):
        alloc_free(k, cpu, 1)
    k.vm_unmap_aliases()
    assert pooled(k) == 2
    alloc_free(k, 3, 1)
    k.purge_vmap_area_lazy()  # reclaim_and_purge_vmap_areas(): full decay, skip_populate
    assert pooled(k) == 0 and k.vmap_lazy_nr == 0 and free(k) == [(1, ULONG_MAX)]
    k.check()


def test_the_drain_is_one_purge_without_the_full_decay() -> None:
    k = k69(cpus=2, mem_pages=64)
    queued: list[tuple[str, Callable[[], None]]] = []
    k.work_scheduler = lambda cpu, name, fn: queued.append((name, fn))
    with k.on_cpu(1):
        addrs = [k.vmalloc(P) for _ in range(8)]
        for a in addrs:
            k.vfree(a)  # type: ignore[arg-type]
    k.vm_unmap_aliases()
    assert len(pool(k, 1, 2)) == 8 and k.purges == 1
    big = k.get_vm_area(k.lazy_max_pages() * P, 0)  # lazy_max_pages() + 1 with the guard
    assert big is not None
    k.free_vm_area(big)
    assert [name for name, _ in queued] == ["drain_vmap_area_work"] and k.purges == 1
    queued[0][1]()
    assert k.purges == 2 and k.vmap_lazy_nr == 0
    assert len(pool(k, 1, 2)) == 6  # a quarter decayed (the overflow path would take all)
    k.check()


# --- the parallel purge ------------------------------------------------------------------------------
def _lazy_on_nodes(k: Linux69, nodes: tuple[int, ...], total: int) -> list[Callable[[], None]]:
    """``total`` lazy pages, split over areas allocated on the CPUs ``nodes`` (so lazy in
    those nodes); the drain they queue is held back and returned."""
    queued: list[Callable[[], None]] = []
    k.work_scheduler = lambda cpu, name, fn: queued.append(fn)
    areas = []
    for cpu in nodes:
        with k.on_cpu(cpu):
            areas.append(k.get_vm_area((total // len(nodes) - 1) * P, 0))
    for v in areas:
        assert v is not None
        k.free_vm_area(v)
    assert k.vmap_lazy_nr == total and len(queued) == 1
    return queued


@pytest.mark.parametrize("nodes, times, helpers", [
    ((0, 1, 2, 3), 1.5, ()),        # clamp(1, 1, 4) - 1 = 0: the caller purges every node
    ((0, 1, 2, 3), 3, (0, 1)),      # 3 - 1 helpers: the first two marked nodes
    ((0, 1, 2, 3), 10, (0, 1, 2)),  # clamped to the 4 nodes with lazy areas, minus one
    ((1, 3), 10, (1,)),             # 2 nodes with lazy areas: one helper
])
def test_the_purge_runs_helper_work_on_the_nodes_cpus(nodes: tuple[int, ...], times: float,
                                                     helpers: tuple[int, ...]) -> None:
    k = k69()
    limit = k.lazy_max_pages()
    drain = _lazy_on_nodes(k, nodes, int(times * limit))
    assert k.vmap_lazy_nr // limit == int(times)
    cpus = k.machine.cpus
    before = [(c.clock, dict(c.prof)) for c in cpus]
    with k.on_cpu(3):
        drain[0]()
    for c in cpus[:3]:
        clock, prof = before[c.id]
        worked = prof.get("reclaim_list_global", 0.0) < c.prof.get("reclaim_list_global", 0.0)
        assert worked is (c.id in helpers), c.id  # purge_vmap_node(): the area to the free tree
        assert (c.clock > clock) is (c.id in helpers), c.id
    inline = [n for n in nodes if n not in helpers]
    assert inline and cpus[3].prof["reclaim_list_global"] > before[3][1].get("reclaim_list_global", 0.0)
    assert k.vmap_lazy_nr == 0 and free(k) == [(1, ULONG_MAX)]
    k.check()


def test_the_caller_waits_for_the_slowest_helper() -> None:
    k = k69()
    drain = _lazy_on_nodes(k, (0, 1, 2, 3), 4 * k.lazy_max_pages())  # 3 helpers
    cpus = k.machine.cpus
    k.machine.charge(cpus[1], "other work", 5e6)  # CPU 1 busy: its kworker starts late
    start = cpus[1].clock
    with k.on_cpu(3):
        drain[0]()
    assert cpus[1].clock > start  # the helper ran after CPU 1's own work
    assert cpus[3].clock == max(c.clock for c in cpus) == cpus[1].clock  # flush_work()
    assert cpus[3].prof["flush_work"] > 4e6
    k.check()


# --- find_vmap_area over the nodes --------------------------------------------------------------------
@pytest.mark.parametrize("offset, scanned", [
    (5 * P, [1, 0, 0, 0]),    # zone 0: the area's own node
    (20 * P, [1, 1, 1, 1]),   # zone 1: nodes 1, 2, 3, then 0
    (35 * P, [1, 0, 1, 1]),   # zone 2: nodes 2, 3, then 0 (6.9 scans upwards)
])
def test_find_vmap_area_finds_an_area_from_an_address_in_another_nodes_zone(
        offset: int, scanned: list[int]) -> None:
    k = k69()
    s = k.VMALLOC_START
    a = k.vmalloc(39 * P)  # [s, s + 40P): zones 0, 1, 2; busy in node 0
    assert a == s and busy(k, 0) == [(s, s + 40 * P)]
    locks = [vn.busy.lock for vn in k.vmap_nodes]
    before = [lk.acquisitions for lk in locks]
    va = k.find_vmap_area(s + offset)
    assert va is not None and (va.va_start, va.va_end) == (s, s + 40 * P)
    assert [lk.acquisitions - n for lk, n in zip(locks, before, strict=True)] == scanned
    vm = k.find_vm_area(s + offset)
    assert vm is not None and vm.addr == a
    k.check()


def test_find_vmap_area_of_an_unknown_address_scans_every_node_once() -> None:
    k = k69()
    s = k.VMALLOC_START
    k.vmalloc(P)
    locks = [vn.busy.lock for vn in k.vmap_nodes]
    before = [lk.acquisitions for lk in locks]
    assert k.find_vmap_area(s + 100 * P) is None
    assert [lk.acquisitions - n for lk, n in zip(locks, before, strict=True)] == [1, 1, 1, 1]


def test_vfree_and_vm_unmap_ram_of_areas_spanning_zones() -> None:
    k = k69()
    s = k.VMALLOC_START
    k.vmalloc(15 * P)
    a = k.vmalloc(40 * P)  # from zone 1: node 1
    pages = take_pages(k, 80)
    m = k.vm_map_ram(pages, 80)  # larger than VMAP_MAX_ALLOC: an area of its own
    assert (a, m) == (s + ZONE, s + 57 * P)
    va = k.find_vmap_area(m + 79 * P)
    assert va is not None and va.flags == VMAP_RAM | encode_vn_id(0)
    assert busy(k, 1) == [(a, a + 41 * P)] and busy(k, 3) == [(m, m + 80 * P)]
    k.vm_unmap_ram(m, 80)  # type: ignore[arg-type]
    k.vfree(a)
    assert busy(k, 1) == busy(k, 3) == [] and lazy(k, 0) == [(a, a + 41 * P), (m, m + 80 * P)]
    k.check()


# --- /proc/vmallocinfo -----------------------------------------------------------------------------
def test_vmallocinfo_is_node_by_node_busy_then_node_by_node_lazy() -> None:
    k = k69()
    s = k.VMALLOC_START
    a = k.vmalloc(15 * P)  # zone 0: node 0
    b = k.vmalloc(15 * P)  # zone 1: node 1
    c = k.vmalloc(31 * P)  # zones 2, 3: node 2
    d = k.vmalloc(15 * P)  # zone 4: node 0
    with k.on_cpu(3):
        e = k.vmalloc(P)  # zone 5: busy in node 1, lazy in node 3 once freed
    with k.on_cpu(1):
        f = k.vmalloc(P)  # zone 5: busy in node 1, lazy in node 1 once freed
    g = k.vmalloc(P)  # zone 5: node 1
    pages = take_pages(k, 65)
    ram = k.vm_map_ram(pages, 1)  # a vmap block (VMAP_RAM | VMAP_BLOCK)
    big = k.vm_map_ram(pages, 65)  # VMAP_RAM
    assert (a, b, c, d, e, f, g) == (s, s + ZONE, s + 2 * ZONE, s + 4 * ZONE, s + 5 * ZONE,
                                     s + 5 * ZONE + 2 * P, s + 5 * ZONE + 4 * P)
    assert ram == s + 4 * MiB and big == g + 2 * P  # the block in zone 64 (node 0), big in 5
    k.vfree(f)
    k.vfree(e)
    lines = k.vmallocinfo().splitlines()
    spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in lines]
    assert [st for st, _ in spans] == [a, d, ram, b, g, big, c, f, e]  # not globally sorted
    assert spans[2] == (ram, ram + 4 * MiB) and spans[5] == (big, big + 65 * P)
    kinds = [line.split(None, 2)[2] for line in lines]
    assert kinds[2] == kinds[5] == "vm_map_ram"
    assert kinds[-2:] == ["unpurged vm_area"] * 2
    assert all(kinds[i].endswith(" vmalloc N0=" + str(n))
               for i, n in ((0, 15), (1, 15), (3, 15), (4, 1), (6, 31)))
    k.check()


def test_vmallocinfo_prints_vm_map_ram_only_for_vmap_ram_areas() -> None:
    k = k69()
    s = k.VMALLOC_START
    va = k.alloc_vmap_area(2 * P, P, k.VMALLOC_START, k.VMALLOC_END, -1)  # no vm, no VMAP_RAM
    assert va is not None and va.va_start == s and va.vm is None and not va.flags & VMAP_RAM
    assert k.vmallocinfo() == ""  # 6.1 printed it as vm_map_ram
    va.flags |= VMAP_RAM
    assert k.vmallocinfo() == f"0x{s:016x}-0x{s + 2 * P:016x}    8192 vm_map_ram\n"
    k.free_vmap_area(va)
    assert free(k) == [(1, ULONG_MAX)]
    k.check()


def test_vmallocinfo_prints_the_lazy_areas_even_with_no_busy_one() -> None:
    k = k69()
    a = alloc_free(k, 2, 1)
    assert k.vmallocinfo() == f"0x{a:016x}-0x{a + 2 * P:016x}    8192 unpurged vm_area\n"


def test_vmallocinfo_takes_the_nodes_locks_not_vmap_purge_lock() -> None:
    k = k69()
    alloc_free(k, 2, 1)
    k.vmalloc(P)
    locks = [k.vmap_purge_lock] + [lk for vn in k.vmap_nodes for lk in (vn.busy.lock, vn.lazy.lock)]
    before = [lk.acquisitions for lk in locks]
    k.vmallocinfo()
    assert [lk.acquisitions - n for lk, n in zip(locks, before, strict=True)] == [0] + [1] * 8


# --- the vmap-node shrinker ---------------------------------------------------------------------------
def test_the_vmap_node_shrinker_counts_the_pools_and_empties_them() -> None:
    k = k69()
    s = k.VMALLOC_START
    with k.on_cpu(1):
        x, y = k.vmalloc(P), k.vmalloc(P)
    with k.on_cpu(2):
        z = k.vmalloc(2 * P)
    keep = k.vmalloc(P)
    assert (x, y, z, keep) == (s, s + 2 * P, s + 4 * P, s + 7 * P)
    assert k.vmap_node_shrink_count() == 0
    for cpu, a in ((1, x), (1, y), (2, z)):
        with k.on_cpu(cpu):
            k.vfree(a)  # type: ignore[arg-type]
    k.vm_unmap_aliases()
    assert pool(k, 1, 2) == [y, x] and pool(k, 2, 3) == [z]
    assert k.vmap_node_shrink_count() == 3
    assert k.vmap_node_shrink_scan() == -1  # SHRINK_STOP
    assert k.vmap_node_shrink_count() == 0 and pooled(k) == 0
    assert free(k) == [(1, keep), (keep + 2 * P, ULONG_MAX)]  # coalesced with [1, s)
    k.check()


# --- vmap blocks: 6.3 to 6.5 -----------------------------------------------------------------------------
def test_used_map_marks_the_pages_handed_out_and_the_block_area_is_flagged() -> None:
    k = k69(nr_cpus_config=8192)  # 256-page blocks
    s = k.VMALLOC_START
    pages = take_pages(k, 3)
    with k.on_cpu(2):
        got = [k.vm_map_ram(pages, n) for n in (3, 1, 2)]
    assert got == [s, s + 4 * P, s + 5 * P]  # 3 pages take 4 (get_order)
    assert k.used_map == {s: 0b1111111}
    va = k.find_vmap_area(s)
    assert va is not None and va.flags == VMAP_RAM | VMAP_BLOCK | encode_vn_id(2)
    with k.on_cpu(0):
        k.vm_unmap_ram(s, 3)
    assert k.used_map == {s: 0b1110000}
    with k.on_cpu(2):
        k.vm_unmap_ram(s + 5 * P, 2)
        k.vm_unmap_ram(s + 4 * P, 1)
    assert k.used_map == {s: 0}
    k.check()


def test_blocks_are_filed_in_the_xarray_of_a_hash_of_their_address() -> None:
    k = k69(nr_cpus_config=8192)
    s = k.VMALLOC_START
    pages = take_pages(k, 64)
    maps = [k.vm_map_ram(pages, 64) for _ in range(5)]  # CPU 0: a second block for the 5th
    assert maps[4] == s + MiB
    blocks = sorted(k.vmap_blocks.values(), key=lambda vb: vb.va.va_start)
    assert [vb.cpu for vb in blocks] == [0, 0]  # both on CPU 0's queue...
    # ...but in the xarrays of CPUs (addr / VMAP_BLOCK_SIZE) % num_possible_cpus()
    assert [k.addr_to_vb_xa_cpu(vb.va.va_start) for vb in blocks] == [(s // MiB) % 4, (s // MiB + 1) % 4] == [0, 1]
    for m in maps:
        k.touch(m, 64)  # type: ignore[arg-type]
        with k.on_cpu(2):
            k.touch(m, 64)  # type: ignore[arg-type]
    for m in maps[1:]:
        k.vm_unmap_ram(m, 64)  # type: ignore[arg-type]
    k.vm_unmap_aliases()
    k.check_no_aliases()
    k.check()


def _full_block(k: Linux69) -> list[int]:
    """6.1's gap: a 256-page block filled by four mappings touched on CPUs 0 and 1, three
    of them unmapped: the block is on no free list."""
    pages = take_pages(k, 64)
    maps = [k.vm_map_ram(pages, 64) for _ in range(4)]
    for m in maps:
        assert m is not None
        k.touch(m, 64)
        with k.on_cpu(1):
            k.touch(m, 64)
    vb = next(iter(k.vmap_blocks.values()))
    assert vb.free == 0 and not vb.on_free_list
    for m in maps[1:]:
        k.vm_unmap_ram(m, 64)  # type: ignore[arg-type]
    return maps  # type: ignore[return-value]


def test_vm_unmap_aliases_flushes_full_blocks_too() -> None:
    k = k69(nr_cpus_config=8192)
    maps = _full_block(k)
    assert maps[1] in k.tlb_entries(1)
    k.vm_unmap_aliases()
    k.check_no_aliases()  # 6.1 left 192 deferred mappings here
    assert not set(maps[1:]) & k.tlb_entries(1)
    k.check()
    with pytest.raises(ConfigError):
        k69(vm_unmap_aliases_65=False)


def test_vm_unmap_aliases_resets_the_dirty_range_it_flushed() -> None:
    k = k69(nr_cpus_config=8192)
    _full_block(k)
    vb = next(iter(k.vmap_blocks.values()))
    assert (vb.dirty_min, vb.dirty_max, vb.dirty) == (64, 256, 192)
    before = k.machine.counters()
    k.vm_unmap_aliases()
    assert k.machine.counters()["tlb_flushes"] == before["tlb_flushes"] + 1  # 192 pages: a full flush
    assert (vb.dirty_min, vb.dirty_max, vb.dirty) == (256, 0, 192)  # "Prevent that this is flushed again"
    before = k.machine.counters()
    k.vm_unmap_aliases()
    assert k.machine.counters() == before  # nothing flushed the second time
    k.check()
    # 6.1 with the 6.5 walk alone (no reset) flushes the same range again
    k61 = Kernel(design="6.1", cpus=4, mem_pages=4096, nr_cpus_config=8192, vm_unmap_aliases_65=True)
    assert isinstance(k61, Linux61)
    _full_block(k61)  # type: ignore[arg-type]
    k61.vm_unmap_aliases()
    before = k61.machine.counters()
    k61.vm_unmap_aliases()
    assert k61.machine.counters()["tlb_flushes"] == before["tlb_flushes"] + 1


def _fragmented_block(k: Linux69, used: int) -> int:
    """A 256-page block with ``used`` pages handed out (64-page mappings, then one-page
    ones), all touched on CPU 1 and unmapped again: no live mapping, 256 - used free."""
    pages = take_pages(k, 64)
    maps = []
    left = used
    while left:
        n = 64 if left >= 64 else 1
        m = k.vm_map_ram(pages, n)
        assert m is not None
        with k.on_cpu(1):
            k.touch(m, n)
        maps.append((m, n))
        left -= n
    for m, n in maps:
        k.vm_unmap_ram(m, n)
    vb = next(iter(k.vmap_blocks.values()))
    assert (vb.free, vb.dirty) == (256 - used, used)
    return vb.va.va_start


@pytest.mark.parametrize("used, purged", [(192, False), (193, True)])
def test_vm_unmap_aliases_purges_a_fragmented_block_only_under_a_quarter_free(used: int, purged: bool) -> None:
    k = k69(nr_cpus_config=8192)
    assert k.VMAP_PURGE_THRESHOLD == 64
    start = _fragmented_block(k, used)
    k.vm_unmap_aliases()
    k.check_no_aliases()
    if purged:  # free 63 < 64: freed, lazily, and purged in the same call...
        assert k.vmap_blocks == {} and k.used_map == {} and k.vmap_lazy_nr == 0
        assert pool(k, 0, 256) == [start]  # ...into node 0's pool: a block of 256 pages is a pool size
        pages = take_pages(k, 1)
        assert k.vm_map_ram(pages, 1) == start and pooled(k) == 0  # a new block takes it back
    else:  # free 64: kept for allocations, its dirty range flushed and reset
        vb = k.vmap_blocks[k.addr_to_vb_idx(start)]
        assert (vb.free, vb.dirty, vb.dirty_min, vb.dirty_max) == (64, 192, 256, 0) and vb.on_free_list
        pages = take_pages(k, 1)
        assert k.vm_map_ram(pages, 1) == start + 192 * P
    k.check()


def test_the_overflow_path_purges_a_fragmented_block_whatever_its_free_space() -> None:
    k = k69(nr_cpus_config=8192)
    start = _fragmented_block(k, 64)  # three quarters free
    k.vm_unmap_aliases()
    assert len(k.vmap_blocks) == 1
    k.purge_vmap_area_lazy()  # purge_fragmented_blocks(cpu) with force_purge
    assert k.vmap_blocks == {} and pooled(k) == 0 and free(k) == [(1, ULONG_MAX)]
    assert start == k.VMALLOC_START
    k.check()


# --- corruption: one per invariant check of the design ---------------------------------------------------
def _scene() -> tuple[Linux69, dict[str, int]]:
    """A pooled area (node 1, 2 pages), a busy vmalloc, a lazy area (node 2), a vmap
    block with a one-page mapping and a large vm_map_ram."""
    k = k69(nr_cpus_config=8192)
    p = alloc_free(k, 1, 1)
    keep = k.vmalloc(P)
    k.vm_unmap_aliases()
    a = k.vmalloc(2 * P)
    z = alloc_free(k, 2, 1)
    pages = take_pages(k, 65)
    m = k.vm_map_ram(pages, 1)
    big = k.vm_map_ram(pages, 65)
    assert keep is not None and a is not None and m is not None and big is not None
    assert pool(k, 1, 2) == [p] and lazy(k, 2) == [(z, z + 2 * P)]
    k.check()
    return k, {"p": p, "keep": keep, "a": a, "z": z, "m": m, "big": big}


def _corrupt(k: Linux69, what: str, at: dict[str, int]) -> None:
    busy_a = k.find_vmap_area(at["a"])
    assert busy_a is not None
    lazy_z = next(iter(k.vmap_nodes[2].lazy.tree))
    vp = k.vmap_nodes[1].pool[1]
    if what == "global busy":
        kva.insert_vmap_area(vmap_area(busy_a.va_start, busy_a.va_end), k.vmap_area_root)
    elif what == "global lazy":
        kva.insert_vmap_area(vmap_area(lazy_z.va_start, lazy_z.va_end), k.purge_vmap_area_root)
    elif what == "node tree count":
        k.addr_to_node(at["a"]).busy.tree.nr += 1
    elif what == "node tree overlap":  # keep's end over a's start, both busy in node 0
        keep = k.find_vmap_area(at["keep"])
        assert keep is not None and keep.va_end == at["a"]
        keep.va_end += P
    elif what == "busy node":
        home = k.addr_to_node(at["a"])
        kva.unlink_va(busy_a, home.busy.tree)
        kva.insert_vmap_area(busy_a, k.vmap_nodes[(home.id + 1) % 4].busy.tree)
    elif what == "lazy node":
        kva.unlink_va(lazy_z, k.vmap_nodes[2].lazy.tree)
        kva.insert_vmap_area(lazy_z, k.vmap_nodes[0].lazy.tree)
    elif what == "pool len":
        vp.len += 1
    elif what == "pool size":
        k.vmap_nodes[1].pool[2].head.append(vp.head.pop())
        vp.len -= 1
        k.vmap_nodes[1].pool[2].len += 1
    elif what == "pool lost":
        vp.head.clear()
        vp.len = 0
    elif what == "free augment":
        k.free_vmap_area_root.root.rb_node.subtree_max_size += P  # type: ignore[union-attr]
    elif what == "lazy_nr":
        k.vmap_lazy_nr += 1
    elif what == "used_map":
        k.used_map[at["m"] + MiB] = 1
    elif what == "ram large":
        k._ram_maps[at["m"]] = 200  # the block's start: a busy area, but the block's
    elif what == "ram bump":
        k._ram_maps[at["m"]] = 2
    elif what == "ram flags":
        big = k.find_vmap_area(at["big"])
        assert big is not None
        big.flags |= VMAP_BLOCK
    elif what == "ram block":
        k._ram_maps[at["m"] + 4 * MiB] = 1
    else:
        raise AssertionError(what)


@pytest.mark.parametrize("what, message", [
    ("global busy", r"^6\.1's global busy/lazy trees hold areas"),                    # _check_globals_unused
    ("global lazy", r"^6\.1's global busy/lazy trees hold areas"),
    ("node tree count", r"^node \d busy tree: kva: the rbtree holds \d+ areas, the count says"),  # _check_node_trees
    ("node tree overlap", r"^node 0 busy tree: kva: .* overlaps "),
    ("busy node", r"^busy area 0x[0-9a-f]+ in node \d, its address's node is \d$"),  # _check_node_placement
    ("lazy node", r"^lazy area 0x[0-9a-f]+ in node 0, not node 2$"),
    ("pool len", r"^node 1 pool\[1\]\.len is 2, it holds 1$"),                       # _check_pools
    ("pool size", r"^node 1 pool\[2\] holds an area of 0x2000 bytes$"),
    ("pool lost", r"\(hole\)$"),                                                      # _check_partition (_all_areas)
    ("free augment", r"^free tree: kva: .* subtree_max_size"),                        # _check_trees
    ("lazy_nr", r"^vmap_lazy_nr is 3, the lazy trees hold 2 pages$"),                # _check_lazy_count
    ("used_map", r"^used_map of a freed block at 0x[0-9a-f]+$"),                      # _check_blocks
    ("ram large", r"^large vm_map_ram mapping 0x[0-9a-f]+ has no busy area$"),        # _check_ram_maps
    ("ram bump", r"beyond its block's bump pointer$"),
    ("ram flags", r"^large vm_map_ram mapping 0x[0-9a-f]+: flags 0x[0-9a-f]+, not VMAP_RAM alone$"),
    ("ram block", r"^vm_map_ram mapping 0x[0-9a-f]+ has no block$"),
])
def test_check_names_each_corrupted_invariant(what: str, message: str) -> None:
    k, at = _scene()
    _corrupt(k, what, at)
    with pytest.raises(InvariantError, match=message):
        k.check()


def test_every_design_check_has_a_corruption_test() -> None:
    checks = {n for n in vars(Linux69) if n.startswith("_check_") and n != "_check_design"}
    assert checks == {"_check_globals_unused", "_check_node_trees", "_check_node_placement", "_check_pools",
                      "_check_trees", "_check_lazy_count", "_check_blocks", "_check_ram_maps"}
