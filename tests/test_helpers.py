"""vmapsim.helpers (issue 11, section 5): drgn's vmalloc helpers on every design, and a
drgn-style script run unchanged but for ``prog`` -> the kernel."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from conftest import take_pages
from vmapsim import PAGE_SIZE, Kernel, PageFault, UnsupportedError
from vmapsim.helpers import (
    find_vmap_area,
    for_each_free_vmap_area,
    for_each_lazy_vmap_area,
    for_each_vmap_area,
    for_each_vmap_block,
    vmalloc_to_page,
    vmalloc_to_pfn,
)

#: the designs keeping their free space as vmap_areas (Linux 5.2's free tree)
FREE_TREE = {"6.1", "6.9"}

#: a drgn script as one would write it for a live kernel; ``prog`` becomes ``k`` and
#: ``ADDR`` an address inside a vmap()ed area
DRGN_SCRIPT = '''
from drgn.helpers.linux.mm import find_vmap_area, for_each_vmap_area, vmalloc_to_pfn

for va in for_each_vmap_area(prog):
    print(f"{hex(va.va_start)}-{hex(va.va_end)}")
va = find_vmap_area(prog, ADDR)
print("found", hex(va.va_start), vmalloc_to_pfn(prog, va.va_start))
'''


def run_drgn_script(k: Kernel, addr: int) -> str:
    script = DRGN_SCRIPT.replace("drgn.helpers.linux.mm", "vmapsim.helpers")
    script = script.replace("prog", "k").replace("ADDR", hex(addr))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script, "<drgn script>", "exec"), {"k": k})
    return out.getvalue()


def test_drgn_script_runs_unchanged(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    a = k.vmalloc(3 * PAGE_SIZE)
    pages = take_pages(k, 4)
    v = k.vmap(pages, 4)
    assert a is not None and v is not None
    out = run_drgn_script(k, v + 2 * PAGE_SIZE + 123)
    lines = out.splitlines()
    ranges = [tuple(int(x, 16) for x in line.split("-")) for line in lines[:-1]]
    # the two areas, each with its guard page, in address order on a fresh kernel
    assert ranges == [(a, a + 4 * PAGE_SIZE), (v, v + 5 * PAGE_SIZE)]
    # the area containing an inner address, and the pfn of the page vmap() was given
    assert lines[-1] == f"found {hex(v)} {pages[0].pfn}"


def test_find_vmap_area_contains_not_starts(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    a = k.vmalloc(2 * PAGE_SIZE)
    assert a is not None
    for off in (0, 1, PAGE_SIZE + 7, 3 * PAGE_SIZE - 1):  # the guard page is the area's
        va = find_vmap_area(k, a + off)
        assert va is not None and (va.va_start, va.va_end) == (a, a + 3 * PAGE_SIZE)
    assert find_vmap_area(k, a + 3 * PAGE_SIZE) is None
    assert find_vmap_area(k, a - 1) is None
    assert find_vmap_area(k, k.VMALLOC_END) is None


def test_vmalloc_to_page_follows_the_page_table(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    pages = take_pages(k, 3)
    v = k.vmap(pages, 3)
    assert v is not None
    assert [vmalloc_to_page(k, v + i * PAGE_SIZE + 5) for i in range(3)] == pages
    assert [vmalloc_to_pfn(k, v + i * PAGE_SIZE) for i in range(3)] == [p.pfn for p in pages]
    with pytest.raises(PageFault, match=re.escape(f"{v + 3 * PAGE_SIZE:#x}")):
        vmalloc_to_pfn(k, v + 3 * PAGE_SIZE)  # the guard page has no PTE
    k.vunmap(v)
    k.purge_vmap_area_lazy()
    with pytest.raises(PageFault):
        vmalloc_to_page(k, v)


def test_lazy_areas_until_the_purge(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    a = k.vmalloc(PAGE_SIZE)
    b = k.vmalloc(2 * PAGE_SIZE)
    assert a is not None and b is not None
    k.vfree(b)
    lazy = list(for_each_lazy_vmap_area(k))
    busy = [(va.va_start, va.va_end) for va in for_each_vmap_area(k)]
    if not k.has_lazy_free:  # 2.6.27 unmaps and flushes at once
        assert lazy == [] and busy == [(a, a + 2 * PAGE_SIZE)]
        assert find_vmap_area(k, b) is None
        return
    assert any(va.va_start <= b and b + 3 * PAGE_SIZE <= va.va_end for va in lazy)
    assert sum(va.va_end - va.va_start for va in lazy) // PAGE_SIZE == k.vmap_lazy_nr == 3
    if design == "2.6.28":  # still on vmap_area_list and in the tree until the purge
        assert (b, b + 3 * PAGE_SIZE) in busy
        assert find_vmap_area(k, b + PAGE_SIZE) is lazy[0]
        assert vmalloc_to_page(k, b) is not None  # and still mapped
    else:  # 6.x: off the busy list, PTEs cleared at free
        assert busy == [(a, a + 2 * PAGE_SIZE)]
        assert find_vmap_area(k, b) is None
        with pytest.raises(PageFault):
            vmalloc_to_page(k, b)
    k.purge_vmap_area_lazy()
    assert list(for_each_lazy_vmap_area(k)) == []
    assert [(va.va_start, va.va_end) for va in for_each_vmap_area(k)] == [(a, a + 2 * PAGE_SIZE)]


def test_vmap_blocks(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    if not k.has_vm_map_ram:
        assert list(for_each_vmap_block(k)) == []
        return
    pages = take_pages(k, 4)
    with k.on_cpu(2):
        m = k.vm_map_ram(pages, 4)
        m2 = k.vm_map_ram(pages, 2)
    assert m is not None and m2 is not None
    (vb,) = list(for_each_vmap_block(k))
    assert vb.cpu == 2 and vb.va_start <= m < m2 < vb.va_end
    assert vb.nr_pages == k.vmap_block_pages
    first, second = (m - vb.va_start) // PAGE_SIZE, (m2 - vb.va_start) // PAGE_SIZE
    assert (vb.used_map >> first) & 0xF == 0xF and (vb.used_map >> second) & 0x3 == 0x3
    assert vb.dirty_map == 0
    # the block's own area is a busy vmap_area, with no vm_struct
    va = find_vmap_area(k, m2 + 1)
    assert va is not None and (va.va_start, va.va_end) == (vb.va_start, vb.va_end)
    assert vmalloc_to_pfn(k, m2 + PAGE_SIZE) == pages[1].pfn
    with k.on_cpu(2):
        k.vm_unmap_ram(m, 4)
    (vb,) = list(for_each_vmap_block(k))
    assert (vb.dirty_map >> first) & 0xF == 0xF and not (vb.dirty_map >> second) & 0x3


def test_free_areas(design: str) -> None:
    k = Kernel(cpus=4, mem_pages=16384, design=design)
    a = k.vmalloc(PAGE_SIZE)
    b = k.vmalloc(PAGE_SIZE)
    assert a is not None and b is not None
    k.vfree(a)
    if design not in FREE_TREE:
        with pytest.raises(UnsupportedError, match="keeps no free vmap areas"):
            list(for_each_free_vmap_area(k))
        return
    k.purge_vmap_area_lazy()
    free = [(va.va_start, va.va_end) for va in for_each_free_vmap_area(k)]
    assert free == sorted(free)
    # free, busy and lazy areas tile the whole address space, as the kernel's trees do
    used = [(va.va_start, va.va_end) for va in for_each_vmap_area(k)]
    used += [(va.va_start, va.va_end) for va in for_each_lazy_vmap_area(k)]
    tiles = sorted(free + used)
    assert tiles[0][0] == 1 and tiles[-1][1] == (1 << 64) - 1
    assert all(e == s for (_, e), (s, _) in zip(tiles, tiles[1:]))
    # the purged area is free again: the free area holding it starts at or below a
    (hole,) = [r for r in free if r[0] <= a < r[1]]
    assert hole[1] <= b
