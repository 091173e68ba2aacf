"""The model's O(log n) search must give exactly 2.6.28's alloc_vmap_area: the same
address and the same number of areas visited (descent + rb_next walk), which is what
the model charges (one cache-line read each, under "alloc_vmap_area")."""

from __future__ import annotations

import random

import pytest

import vmapsim
from vmapsim.mm.rbtree import rb_next

PS = vmapsim.PAGE_SIZE


def kernel_alloc_vmap_area(root, size: int, align: int, vstart: int, vend: int) -> tuple[int, int]:
    """alloc_vmap_area()'s search as 2.6.28 wrote it (descent, then the rb_next walk),
    over the model's tree. Returns (address, nodes visited)."""
    addr = (vstart + align - 1) & ~(align - 1)
    visits = 0
    n = root.rb_node
    if n is None:
        return addr, 0
    first = None
    while n is not None:
        visits += 1
        if n.va_end >= addr:
            if first is None and n.va_start < addr + size:
                first = n
            n = n.rb_left
        else:
            first = n
            n = n.rb_right
    if first is None:
        return addr, visits
    if first.va_end < addr:
        visits += 1
        first = rb_next(first)
        if first is None:
            return addr, visits
    while addr + size > first.va_start and addr + size <= vend:
        visits += 1
        addr = (first.va_end + PS + align - 1) & ~(align - 1)
        first = rb_next(first)
        if first is None:
            break
    return addr, visits


@pytest.mark.parametrize("seed", range(6))
def test_search_matches_the_kernels_walk(seed: int) -> None:
    rng = random.Random(seed)
    k = vmapsim.Kernel(cpus=2, vmalloc_size=rng.choice([256, 1024, 4096]) * PS)
    cpu = k.machine.cpus[0]
    live = []
    walked = 0
    for _ in range(250):
        if live and rng.random() < 0.45:
            k.free_unmap_vmap_area(live.pop(rng.randrange(len(live))))
            continue
        size = rng.choice([1, 2, 3, 5, 8, 16]) * PS
        align = rng.choice([1, PS, 4 * PS, 16 * PS])
        vstart = k.VMALLOC_START + rng.choice([0, 0, 0, 7 * PS])
        vend = k.VMALLOC_END
        want_addr, want_visits = kernel_alloc_vmap_area(k.vmap_area_root, size, align, vstart, vend)
        purges = k.purges
        before = cpu.prof.get("alloc_vmap_area", 0.0)
        va = k.alloc_vmap_area(size, align, vstart, vend, -1)
        if k.purges == purges and k.vmap_lazy_nr == sum(
                (a.va_end - a.va_start) // PS for a in k.vmap_areas() if a.flags & vmapsim.VM_LAZY_FREE):
            charged = (cpu.prof.get("alloc_vmap_area", 0.0) - before) / k.cost.mem_access
            if va is None:
                assert want_addr + size > vend
            else:
                assert va.va_start == want_addr
                assert charged == pytest.approx(want_visits)
                walked += want_visits > 20
        if va is not None:
            live.append(va)
        k.check()
    assert walked > 5  # long walks past busy areas were exercised


@pytest.mark.parametrize("seed", range(4))
def test_legacy_search_matches_the_linear_vmlist_walk(seed: int) -> None:
    rng = random.Random(seed)
    k = vmapsim.Kernel(cpus=2, design="legacy", vmalloc_size=rng.choice([256, 1024, 4096]) * PS)
    live = []
    compared = long = 0
    for _ in range(300):
        if live and rng.random() < 0.3:
            k.vunmap(live.pop(rng.randrange(len(live))).addr)
            continue
        size = rng.choice([1, 2, 3, 5, 8, 16]) * PS
        align = rng.choice([1, PS, 4 * PS, 16 * PS])
        start = k.VMALLOC_START + rng.choice([0, 0, 0, 7 * PS])
        mask = align - 1
        addr = (start + mask) & ~mask
        with_guard = size + PS
        fast = k._first_fit(addr, with_guard, mask, k.VMALLOC_END)
        assert fast == k._first_fit_linear(addr, with_guard, mask, k.VMALLOC_END)
        compared += 1
        long += fast[1] > 10
        area = k.get_vm_area_node__(size, 0, start, k.VMALLOC_END, -1, vmapsim.GFP_KERNEL, "t", align=align)
        assert (area is not None) == fast[2]
        if area is not None:
            assert area.addr == fast[0]
            live.append(area)
        k.check()
    assert compared > 100 and long > 5
