"""The model's O(log n) search must give exactly 2.6.28's linear first-fit walk:
the same address and the same number of areas visited (which is what is charged)."""

from __future__ import annotations

import random

import pytest

import vmapsim
from vmapsim.mm.rewrite import _rank

PS = vmapsim.PAGE_SIZE


def literal_walk(areas, size: int, align: int, vstart: int, vend: int) -> tuple[int, int, int]:
    """alloc_vmap_area's loop as 2.6.28 wrote it, over the address-ordered areas.
    Returns (address, areas walked, index of the first area)."""
    mask = align - 1
    addr = (vstart + mask) & ~mask
    first = next((i for i, va in enumerate(areas) if va.va_end >= addr), None)
    if first is None:
        return addr, 0, -1
    i = first
    walked = 0
    while i < len(areas) and addr + size > areas[i].va_start and addr + size <= vend:
        walked += 1
        addr = (areas[i].va_end + PS + mask) & ~mask
        i += 1
    return addr, walked, first


@pytest.mark.parametrize("seed", range(6))
def test_accelerated_walk_matches_the_linear_walk(seed: int) -> None:
    rng = random.Random(seed)
    k = vmapsim.Kernel(cpus=2, vmalloc_size=rng.choice([256, 1024, 4096]) * PS)
    live = []
    compared = 0
    for _ in range(250):
        if live and rng.random() < 0.45:
            k.free_unmap_vmap_area(live.pop(rng.randrange(len(live))))
            continue
        size = rng.choice([1, 2, 3, 5, 8, 16]) * PS
        align = rng.choice([1, PS, 4 * PS, 16 * PS])
        vstart = k.VMALLOC_START + rng.choice([0, 0, 0, 7 * PS])
        vend = k.VMALLOC_END
        areas = k.vmap_areas()
        want_addr, want_walked, first = literal_walk(areas, size, align, vstart, vend)
        mask = align - 1
        start = (vstart + mask) & ~mask
        if first >= 0 and start + size > areas[first].va_start and start + size <= vend:
            stop, addr = k._walk_stop(areas[first], size, mask, vend)
            assert addr == want_addr
            assert _rank(stop) - _rank(areas[first]) + 1 == want_walked
            compared += 1
        purges = k.purges
        va = k.alloc_vmap_area(size, align, vstart, vend, -1)
        if k.purges == purges:  # no purge-and-retry: the first walk decided
            if va is None:
                assert want_addr + size > vend
            else:
                assert va.va_start == want_addr
        if va is not None:
            live.append(va)
        k.check()
    assert compared > 20  # the interesting case (a walk past busy areas) was exercised
