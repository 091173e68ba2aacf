"""Misuse of the API (issue 10, section 3), one test per class of defect, on every design.

Each refused call raises a VmapError subclass (or TypeError for a wrong type) naming the
argument, and leaves check(), vmallocinfo(), nr_free_pages() and the counters as they were.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from typing import Any

import pytest

from conftest import take_pages
from vmapsim import (
    GFP_KERNEL,
    PAGE_KERNEL,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VM_VPAGES,
    BadAddressError,
    BadPageError,
    ConfigError,
    InvalidArgumentError,
    Kernel,
    Page,
    VmapError,
    vm_area_struct,
)
from vmapsim.mm import designs

P = PAGE_SIZE


def state(k: Kernel) -> tuple:
    """What a refused call must leave as it was (check() must pass too)."""
    k.check()
    return (k.nr_free_pages(), k.vmallocinfo(), k.stats, k.vmap_lazy_nr, dict(k.machine.pte),
            [(va.va_start, va.va_end, va.flags) for va in k.vmap_areas()], len(k.warnings))


def refused(k: Kernel, exc: type[BaseException], fn: Callable[..., Any], *args: Any,
            match: str | None = None, **kw: Any) -> BaseException:
    before = state(k)
    with pytest.raises(exc, match=match) as ei:
        fn(*args, **kw)
    assert isinstance(ei.value, (VmapError, TypeError))
    assert state(k) == before, f"{fn.__name__} was refused but changed the model"
    return ei.value


def page_array_of(k: Kernel, owner: int) -> int:
    """The address of the vmalloc()ed page array of the area at ``owner``."""
    others = [v.addr for v in k.vm_areas() if v.addr != owner]
    assert len(others) == 1
    return others[0]


# -- 1. vunmap()/free_vm_area() of an area whose pages the layer allocated ------------------
def test_vunmap_of_a_vmalloc_area_is_refused(kernel: Kernel) -> None:
    k = kernel
    free0 = k.nr_free_pages()
    a = k.vmalloc(3 * P)
    assert a is not None
    refused(k, InvalidArgumentError, k.vunmap, a, match=r"vunmap\(0x[0-9a-f]+\).*vfree\(\)")
    area = k.find_vm_area(a)
    assert area is not None
    refused(k, InvalidArgumentError, k.free_vm_area, area, match="free_vm_area.*vfree")
    # an area filled by __vmalloc_area() holds the layer's pages as well
    b = k.get_vm_area(2 * P, VM_MAP)
    assert b is not None and k.vmalloc_area__(b, GFP_KERNEL, PAGE_KERNEL) == b.addr
    refused(k, InvalidArgumentError, k.vunmap, b.addr, match="vfree")
    refused(k, InvalidArgumentError, k.free_vm_area, b, match="vfree")
    k.vfree(a)
    k.vfree(b.addr)
    k.vm_unmap_aliases()
    assert k.nr_free_pages() == free0
    k.check()
    # a vmap() area at a reused address is not mistaken for the old vmalloc() one
    pages = take_pages(k, 2)
    v = k.vmap(pages, 2)
    assert v is not None
    k.vunmap(v)
    k.check()


# -- 2. the page array of a large vmalloc() is the layer's own -------------------------------
@pytest.mark.parametrize("how", ["vfree", "vunmap", "free_vm_area"])
def test_the_page_array_area_cannot_be_freed_by_a_caller(kernel: Kernel, how: str) -> None:
    k = kernel
    free0 = k.nr_free_pages()
    a = k.vmalloc(600 * P)  # 600 * 8 bytes of page pointers: a vmalloc()ed array
    assert a is not None
    arr = page_array_of(k, a)
    if how == "free_vm_area":
        area = k.find_vm_area(arr)
        assert area is not None
        refused(k, BadAddressError, k.free_vm_area, area, match="page array")
    else:
        refused(k, BadAddressError, getattr(k, how), arr, match=f"page array of the vmalloc\\(\\) area at {a:#x}")
    # the owner's vfree() frees both, and nothing else
    keep = k.vmalloc(P)
    assert keep is not None
    k.vfree(a)
    assert [v.addr for v in k.vm_areas()] == [keep]
    k.vfree(keep)
    k.vm_unmap_aliases()
    assert k.nr_free_pages() == free0
    k.check()


# -- 3. free_page() of a page a live mapping still maps -------------------------------------
def test_free_page_of_a_mapped_page_is_refused(kernel: Kernel) -> None:
    k = kernel
    pages = take_pages(k, 3)
    v = k.vmap(pages, 2)
    assert v is not None
    refused(k, BadPageError, k.free_page, pages[1], match=f"still mapped at {v + P:#x}")
    area = k.get_vm_area(P, VM_MAP)
    assert area is not None and k.map_vm_area(area, PAGE_KERNEL, pages[2:]) == 0
    refused(k, BadPageError, k.free_page, pages[2], match="still mapped")
    mappings = [("vunmap", v), ("free_vm_area", area)]
    if k.has_vm_map_ram:
        m = k.vm_map_ram(pages, 1)
        assert m is not None
        k.vunmap(v)
        refused(k, BadPageError, k.free_page, pages[0], match=f"still mapped at {m:#x}")
        k.vm_unmap_ram(m, 1)
        mappings = mappings[1:]
    for how, what in mappings:
        getattr(k, how)(what)
    for p in pages:  # unmapped (lazily or not): the caller's to free again
        k.free_page(p)
    k.check()


# -- 4. write() stores bytes, whatever the buffer's item size or shape -----------------------
def test_write_stores_the_bytes_of_any_buffer(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(2 * P)
    assert a is not None
    ints = array.array("I", range(3000))  # 12000 bytes: more than two pages' worth of items
    view = memoryview(ints)[: 2 * P // 4 - 2]
    k.write(a + 4, view)
    assert k.read(a + 4, len(view) * 4) == view.tobytes()
    grid = memoryview(bytes(range(256)) * 4).cast("B", (32, 32))
    k.write(a + P - 100, grid)
    assert k.read(a + P - 100, 1024) == grid.tobytes()
    area = k.find_vm_area(a)
    assert area is not None and area.pages is not None
    assert all(p.data is None or len(p.data) == P for p in area.pages)
    k.check()


# -- 5. flags and callers -------------------------------------------------------------------
@pytest.mark.parametrize("flags", [-1, 1 << 80, VM_VPAGES, VM_ALLOC | VM_VPAGES, 0x8000])
def test_flags_a_caller_may_not_pass(kernel: Kernel, flags: int) -> None:
    k = kernel
    pages = take_pages(k, 1)
    if k.caller_vm_flags & flags == flags and flags >= 0:
        pytest.skip(f"{flags:#x} is a caller's flag on {k.design}")
    for fn, args in ((k.get_vm_area, (P, flags)), (k.get_vm_area_caller, (P, flags, "c")),
                     (k.get_vm_area_node, (P, flags, -1)),
                     (k.get_vm_area__, (P, flags, k.VMALLOC_START, k.VMALLOC_END)),
                     (k.vmap, (pages, 1, flags))):
        refused(k, InvalidArgumentError, fn, *args, match=f"{fn.__name__.rstrip('_')}.*flags")
    refused(k, TypeError, k.get_vm_area, P, True, match="flags")
    refused(k, TypeError, k.vmap, pages, 1, 4.0, match="flags")


@pytest.mark.parametrize("caller", ["two words", "line\n0xffffc20000000000-0xffffc20000002000 8192 fake",
                                    "tab\there", "nul\x00"])
def test_a_caller_is_one_printable_word(kernel: Kernel, caller: str) -> None:
    k = kernel
    refused(k, InvalidArgumentError, k.get_vm_area_caller, P, VM_IOREMAP, caller, match="caller")
    refused(k, InvalidArgumentError, k.vmalloc_node__, P, GFP_KERNEL, PAGE_KERNEL, -1, caller,
            match="caller")
    refused(k, InvalidArgumentError, k.place_vm_area, k.VMALLOC_START, 2 * P, VM_IOREMAP, caller,
            match="caller")
    refused(k, TypeError, k.get_vm_area_caller, P, VM_IOREMAP, 5, match="caller")
    refused(k, TypeError, k.vmalloc_node__, P, GFP_KERNEL, PAGE_KERNEL, -1, None, match="caller")
    area = k.get_vm_area_caller(P, VM_IOREMAP, "my_driver+0x1c/0x80")
    assert area is not None and "my_driver+0x1c/0x80 ioremap" in k.vmallocinfo()


def test_vmalloc_node_checks_before_it_allocates(kernel: Kernel) -> None:
    k = kernel
    refused(k, TypeError, k.vmalloc_node__, 3 * P, "GFP_KERNEL", PAGE_KERNEL, -1, "c", match="gfp_mask")
    refused(k, TypeError, k.vmalloc_node__, 3 * P, GFP_KERNEL, None, -1, "c", match="prot")
    refused(k, ConfigError, k.vmalloc_node__, 3 * P, GFP_KERNEL, PAGE_KERNEL, 7, "c", match="node 7")


# -- 6. pages and vmas of another kernel, pages built by hand --------------------------------
def test_pages_of_another_kernel_or_built_by_hand(kernel: Kernel) -> None:
    k = kernel
    other = Kernel(cpus=1, mem_pages=256, design=k.design)
    theirs = other.alloc_page()
    hand = Page(3, 0, "Normal")
    hand._count = 1  # looks allocated
    assert theirs is not None
    mine = take_pages(k, 1)
    area = k.get_vm_area(P, VM_MAP)
    assert area is not None
    for bad, what in ((theirs, "another Kernel"), (hand, "built by hand")):
        refused(k, BadPageError, k.vmap, [bad], 1, match=rf"pages\[0\].*{what}")
        refused(k, BadPageError, k.vmap, [*mine, bad], 2, match=rf"pages\[1\].*{what}")
        refused(k, BadPageError, k.map_vm_area, area, PAGE_KERNEL, [bad], match=what)
        if k.has_vm_map_ram:
            refused(k, BadPageError, k.vm_map_ram, [bad], 1, match=what)
        refused(k, BadPageError, k.free_page, bad)
    other.check()


def test_a_vma_filled_by_another_kernel(kernel: Kernel) -> None:
    k = kernel
    other = Kernel(cpus=1, mem_pages=256, design=k.design)
    vma = vm_area_struct(0x7F0000000000, 0x7F0000000000 + P)
    b = other.vmalloc_user(P)
    assert b is not None and other.remap_vmalloc_range(vma, b, 0) == 0
    a = k.vmalloc_user(P)
    assert a is not None
    area = k.find_vm_area(a)
    assert area is not None and area.flags & VM_USERMAP
    refused(k, InvalidArgumentError, k.remap_vmalloc_range, vma, a, 0, match="another Kernel")
    vma.zap()
    other.vfree(b)
    other.check()


# -- 7. options and argument types -----------------------------------------------------------
@pytest.mark.parametrize("tlb_size, exc", [(1.5, TypeError), (True, TypeError), ("4", TypeError),
                                           (0, ConfigError)])
def test_tlb_size(design: str, tlb_size: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="tlb_size"):
        Kernel(cpus=2, design=design, tlb_size=tlb_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["no", 1, None])
def test_switches_take_only_a_bool(value: object) -> None:
    switches = {"2.6.28": "vm_unmap_aliases_2628", "6.1": "vm_unmap_aliases_65"}
    for design, name in switches.items():
        if design not in designs.design_names():
            continue
        with pytest.raises(TypeError, match=name):
            Kernel(cpus=2, design=design, **{name: value})


def test_argument_types_name_the_argument(kernel: Kernel) -> None:
    k = kernel
    refused(k, TypeError, k.vmap, None, 1, match="pages must be a list")
    refused(k, TypeError, k.vmap, {1: 2}, 1, match="pages must be a list")
    refused(k, TypeError, k.get_vm_area_node__, P, VM_IOREMAP, k.VMALLOC_START, k.VMALLOC_END, -1,
            GFP_KERNEL, "c", align=None, match="align")
    refused(k, InvalidArgumentError, k.get_vm_area_node__, P, VM_IOREMAP, k.VMALLOC_START,
            k.VMALLOC_END, -1, GFP_KERNEL, "c", align=3 * P, match="power of two")
    if k.has_vm_map_ram:
        refused(k, TypeError, k.vm_map_ram, None, 1, match="pages must be a list")
    refused(k, TypeError, k.vfree, "0x1000", match="address")


def test_remove_vm_area_of_a_vmalloc_area_is_refused(kernel: Kernel) -> None:
    # remove_vm_area() leaves the pages to its caller: for vmalloc()'s own pages that is a
    # leak for good, so the model refuses it as it refuses vunmap(); a get_vm_area() area
    # (no pages) is the caller's to remove
    k = kernel
    a = k.vmalloc(3 * PAGE_SIZE)
    assert a is not None
    free, info = k.nr_free_pages(), k.vmallocinfo()
    with pytest.raises(InvalidArgumentError, match=r"remove_vm_area\(.*vfree"):
        k.remove_vm_area(a)
    assert (k.nr_free_pages(), k.vmallocinfo()) == (free, info)
    k.check()
    area = k.get_vm_area(2 * PAGE_SIZE, VM_IOREMAP)
    assert area is not None and k.remove_vm_area(area.addr) is area
    k.vfree(a)
    k.check()
