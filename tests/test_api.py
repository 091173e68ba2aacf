"""The vmalloc.h API of Linux 2.6.28, function by function.

Tests taking the ``design`` fixture run for every design; the rest exercise what only
the 2008 rewrite has (vm_map_ram blocks, lazy freeing, the allocator gap).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import vmapsim
from conftest import pattern, take_pages, vm_info
from vmapsim import (
    GFP_KERNEL,
    GFP_ZERO__,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    VM_LAZY_FREE,
    VM_MAP,
    VM_USERMAP,
    VM_VPAGES,
    VMALLOC_END,
    VMALLOC_START,
    VMAP_MAX_ALLOC,
    Kernel,
    PageFault,
    vm_area_struct,
    vm_struct,
)
from vmapsim.hw.locks import RWLock
from vmapsim.hw.machine import CPU

P = PAGE_SIZE
INFO_LINE = re.compile(
    r"^0x(?P<start>[0-9a-f]{16})-0x(?P<end>[0-9a-f]{16}) (?P<size> *\d+)"
    r"(?: (?P<caller>\S+\+0x[0-9a-f]+/0x[0-9a-f]+))?(?P<rest>.*)$"
)


def info_lines(k: Kernel) -> list[re.Match[str]]:
    text = k.vmallocinfo()
    assert text == "" or text.endswith("\n")
    out = []
    for line in text.splitlines():
        if line.endswith(" unpurged vm_area"):  # 6.x lists lazily freed areas too
            continue
        m = INFO_LINE.match(line)
        assert m, f"bad vmallocinfo line {line!r}"
        assert len(m["size"]) >= 7, f"size field narrower than %7ld in {line!r}"
        out.append(m)
    return out


def line_for(k: Kernel, addr: int) -> re.Match[str]:
    for m in info_lines(k):
        if int(m["start"], 16) == addr:
            return m
    raise AssertionError(f"{addr:#x} not in vmallocinfo")


def area_of(k: Kernel, addr: int) -> vm_struct:
    area = k.find_vm_area(addr)
    assert area is not None
    return area


# --- exports --------------------------------------------------------------------------
def test_exports() -> None:
    assert vmapsim.PAGE_SIZE == 4096
    assert (VMALLOC_START, VMALLOC_END) == (0xFFFFC20000000000, 0xFFFFE1FFFFFFFFFF)
    assert (vmapsim.VM_IOREMAP, VM_ALLOC, VM_MAP, VM_USERMAP, VM_VPAGES) == (1, 2, 4, 8, 0x10)
    assert VMAP_MAX_ALLOC == 64
    assert PAGE_KERNEL != PAGE_KERNEL_EXEC and PAGE_KERNEL & PAGE_KERNEL_EXEC == PAGE_KERNEL_EXEC
    assert issubclass(vmapsim.PageFault, vmapsim.VmapError)


# --- vmalloc and friends ----------------------------------------------------------------
def test_vmalloc_write_read_vfree(kernel: Kernel) -> None:
    k = kernel
    free0 = k.nr_free_pages()
    a = k.vmalloc(3 * P + 1)  # rounded up to 4 pages
    assert a is not None and a % P == 0 and VMALLOC_START <= a < VMALLOC_END
    assert k.nr_free_pages() == free0 - 4
    data = pattern(1, 4 * P)
    k.write(a, data)
    assert k.read(a, 4 * P) == data
    assert k.read(a + P - 2, 4) == data[P - 2:P + 2]  # crosses a page boundary
    assert get_size(k, a) == 4 * P
    k.check()
    k.vfree(a)
    assert k.nr_free_pages() == free0
    assert k.find_vm_area(a) is None
    k.check()


def get_size(k: Kernel, addr: int) -> int:
    return k.get_vm_area_size(area_of(k, addr))


def test_vmalloc_from_each_cpu_is_readable_from_every_cpu(kernel: Kernel) -> None:
    k = kernel
    addrs = []
    for c in range(k.cpus):
        with k.on_cpu(c):
            a = k.vmalloc(2 * P)
            assert a is not None
            k.write(a, pattern(c, 2 * P))
            addrs.append(a)
    for c in range(k.cpus):
        with k.on_cpu((c + 1) % k.cpus):
            assert k.read(addrs[c], 2 * P) == pattern(c, 2 * P)
    k.check()


def test_guard_page_faults(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(2 * P)
    assert a is not None
    area = area_of(k, a)
    assert area.size == 3 * P  # two pages plus the guard page
    k.touch(a, 2)
    with pytest.raises(PageFault):
        k.read(a + 2 * P, 1)
    with pytest.raises(PageFault):
        k.touch(a, 3)
    b = k.vmalloc(P)
    assert b is not None and b >= a + 3 * P
    k.check()


def test_one_page_allocator_gap() -> None:
    k = Kernel(cpus=2, mem_pages=4096, design="rewrite")
    addrs = [k.vmalloc(P) for _ in range(4)]
    # each area is 2 pages (one guard) and the allocator skips one more page after it
    assert [a - addrs[0] for a in addrs] == [0, 3 * P, 6 * P, 9 * P]  # type: ignore[operator]
    k.check()


def test_vmalloc_user_is_zeroed_and_usermap(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    dirty_page = area_of(k, a).pages[0]  # type: ignore[index]
    k.write(a, b"\xff" * P)
    k.vfree(a)
    u = k.vmalloc_user(P)
    assert u is not None
    area = area_of(k, u)
    assert area.pages[0] is dirty_page  # type: ignore[index]  # the freed page came back...
    assert k.read(u, P) == bytes(P)  # ...zeroed
    assert area.flags & VM_USERMAP and area.flags & VM_ALLOC
    assert " user" in line_for(k, u)["rest"]
    k.check()


def test_plain_vmalloc_does_not_zero(kernel: Kernel) -> None:
    # the control for the test above: only GFP_ZERO__ clears a recycled page
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    k.write(a, b"\xff" * 8)
    k.vfree(a)
    b = k.vmalloc(P)
    assert b is not None
    assert k.read(b, 8) == b"\xff" * 8


def test_vmalloc_32_user(kernel: Kernel) -> None:
    k = kernel
    u = k.vmalloc_32_user(3 * P)
    assert u is not None
    area = area_of(k, u)
    assert area.flags & VM_USERMAP and area.nr_pages == 3
    assert k.read(u, 3 * P) == bytes(3 * P)


def test_vmalloc_exec_and_prot(kernel: Kernel) -> None:
    k = kernel
    x = k.vmalloc_exec(2 * P)
    n = k.vmalloc(P)
    assert x is not None and n is not None
    assert k.machine.pte_prot.get(x >> PAGE_SHIFT) == PAGE_KERNEL_EXEC
    assert k.machine.pte_prot.get((x + P) >> PAGE_SHIFT) == PAGE_KERNEL_EXEC
    assert k.machine.pte_prot.get(n >> PAGE_SHIFT, PAGE_KERNEL) == PAGE_KERNEL
    k.vfree(x)
    k.check()


def test_vmalloc__(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    k.write(a, b"junk")
    k.vfree(a)
    z = k.vmalloc__(P, GFP_KERNEL | GFP_ZERO__, PAGE_KERNEL_EXEC)
    assert z is not None
    assert k.read(z, 4) == bytes(4)
    assert k.machine.pte_prot.get(z >> PAGE_SHIFT) == PAGE_KERNEL_EXEC
    assert "vmalloc" in line_for(k, z)["rest"]


def test_vmalloc_area__(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(3 * P, VM_ALLOC)
    assert area is not None
    with pytest.raises(PageFault):
        k.read(area.addr, 1)
    addr = k.vmalloc_area__(area, GFP_KERNEL, PAGE_KERNEL)
    assert addr == area.addr and area.nr_pages == 3
    k.write(addr, pattern(3, 3 * P))
    assert k.read(addr, 3 * P) == pattern(3, 3 * P)
    assert "pages=3 vmalloc" in line_for(k, addr)["rest"]
    k.check()
    k.vfree(addr)
    k.check()
    with pytest.raises(TypeError):
        k.vmalloc_area__(addr, GFP_KERNEL, PAGE_KERNEL)  # type: ignore[arg-type]


def fill_area(k: Kernel, area: vm_struct) -> int | None:
    return k.vmalloc_area__(area, GFP_KERNEL, PAGE_KERNEL)


@pytest.mark.parametrize("design", ["2.6.27", "2.6.28"])
def test_vmalloc_area__records_its_own_caller(design: str) -> None:
    # __vmalloc_area() passes __builtin_return_address(0) and __vmalloc_area_node() sets
    # area->caller to it (2.6.27, 2.6.28): the area now names fill_area, not get_vm_area's site
    k = Kernel(cpus=2, mem_pages=4096, design=design)
    area = k.get_vm_area(3 * P, VM_ALLOC)
    assert area is not None
    assert area.caller.startswith("test_vmalloc_area__records_its_own_caller+")
    addr = fill_area(k, area)
    assert addr == area.addr and area.caller.startswith("fill_area+")
    assert line_for(k, addr)["caller"] == area.caller
    # the vmalloc()ed page array of a > 512-page area is made for the same caller
    big = k.get_vm_area(600 * P, VM_ALLOC)
    assert big is not None
    b = fill_area(k, big)
    assert b is not None and big.flags & VM_VPAGES
    callers = [m["caller"] for m in info_lines(k)]
    assert len(callers) == 3 and all(c == area.caller for c in callers)
    k.vfree(addr)
    k.vfree(b)
    k.check()

def test_vpages_for_more_than_512_pages(kernel: Kernel) -> None:
    k = kernel
    free0 = k.nr_free_pages()
    small = k.vmalloc(512 * P)
    assert small is not None and " vpages" not in line_for(k, small)["rest"]
    assert len(info_lines(k)) == 1  # 512 pointers fit a kmalloc'ed page
    big = k.vmalloc(513 * P)
    assert big is not None
    area = area_of(k, big)
    # 2.6 marks the area VM_VPAGES; 6.x has no flag (s_show tests is_vmalloc_addr(pages))
    assert area.nr_pages == 513 and bool(area.flags & VM_VPAGES) == bool(k.vpages_flag)
    lines = info_lines(k)
    assert len(lines) == 3  # the page array (513 * 8 bytes) is itself vmalloc'ed
    arr = [m for m in lines if int(m["start"], 16) not in (small, big)][0]
    assert "pages=2 vmalloc" in arr["rest"] and "vpages" not in arr["rest"]
    assert " vpages" in line_for(k, big)["rest"]
    assert k.nr_free_pages() == free0 - 512 - 513 - 2
    k.check()
    k.vfree(big)
    assert len(info_lines(k)) == 1
    assert k.nr_free_pages() == free0 - 512
    k.check()


# --- vmap / vunmap --------------------------------------------------------------------
def test_vmap_aliases_the_same_pages(kernel: Kernel) -> None:
    k = kernel
    pages = take_pages(k, 3)
    a = k.vmap(pages, 3)
    b = k.vmap(pages[::-1], 3)
    assert a is not None and b is not None and a != b
    k.write(a, b"first page")
    assert k.read(b + 2 * P, 10) == b"first page"
    assert area_of(k, a).flags & VM_MAP
    m = line_for(k, a)
    assert int(m["size"]) == 4 * P and m["rest"].strip() == "vmap"
    free = k.nr_free_pages()
    k.vunmap(a)
    k.vunmap(b)
    assert k.nr_free_pages() == free  # vunmap leaves the pages to the caller
    assert bytes(pages[0].data[:10]) == b"first page"  # type: ignore[index]
    k.check()
    for p in pages:
        k.free_page(p)
    k.check()


def test_vmap_flags_and_prot(kernel: Kernel) -> None:
    k = kernel
    pages = take_pages(k, 2)
    a = k.vmap(pages, 2, VM_MAP | VM_USERMAP, PAGE_KERNEL_EXEC)
    assert a is not None
    assert area_of(k, a).flags == VM_MAP | VM_USERMAP
    assert k.machine.pte_prot.get(a >> PAGE_SHIFT) == PAGE_KERNEL_EXEC


def test_vmap_more_than_physical_memory_is_null(kernel: Kernel) -> None:
    k = Kernel(cpus=1, mem_pages=8, design=kernel.design)
    pages = take_pages(k, 1) * 9
    assert k.vmap(pages, 9) is None
    assert k.vmap(pages, 8) is not None
    k.check()


# --- remap_vmalloc_range ----------------------------------------------------------------
def test_remap_vmalloc_range(kernel: Kernel) -> None:
    k = kernel
    u = k.vmalloc_user(4 * P)
    assert u is not None
    k.write(u, pattern(9, 4 * P))
    vma = vm_area_struct(0x7F0000000000, 0x7F0000000000 + 3 * P)
    assert k.remap_vmalloc_range(vma, u, 1) == 0
    assert vma.read(vma.vm_start, 3 * P) == pattern(9, 4 * P)[P:]
    assert vma.vm_flags & vm_area_struct.VM_RESERVED
    free = k.nr_free_pages()
    k.check()
    k.vfree(u)
    # the user mapping still holds three of the four pages
    assert k.nr_free_pages() == free + 1
    assert vma.read(vma.vm_start, 5) == pattern(9, 4 * P)[P:P + 5]
    k.check()
    vma.zap()
    assert k.nr_free_pages() == free + 4
    k.check()


def test_remap_vmalloc_range_einval(kernel: Kernel) -> None:
    k = kernel
    u = k.vmalloc_user(2 * P)
    plain = k.vmalloc(2 * P)
    assert u is not None and plain is not None
    vma = vm_area_struct(0x10000, 0x10000 + 2 * P)
    assert k.remap_vmalloc_range(vma, plain, 0) == -22  # not VM_USERMAP
    assert k.remap_vmalloc_range(vma, u + 8, 0) == -22  # unaligned
    if k.has_vmlist:  # 2.6 looks the area up by its start address
        assert k.remap_vmalloc_range(vma, u + P, 0) == -22  # not the start of an area
    else:  # 6.x: find_vm_area() finds the area containing kaddr; pgoff + size must fit
        assert k.remap_vmalloc_range(vma, u + P, 1) == -22
    assert k.remap_vmalloc_range(vma, u, 1) == -22  # user range larger than the area
    big = vm_area_struct(0x10000, 0x10000 + 3 * P)
    assert k.remap_vmalloc_range(big, u, 0) == -22
    assert not vma.pages
    with pytest.raises(TypeError):
        k.remap_vmalloc_range("vma", u, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        vm_area_struct(0x10001, 0x20000)
    k.check()


def rwlock_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record every (rwlock name, "read_lock"/"write_lock") taken from now on."""
    calls: list[tuple[str, str]] = []
    for op in ("read_lock", "write_lock"):
        orig = getattr(RWLock, op)

        def spy(self: RWLock, cpu: CPU, _orig: Any = orig, _op: str = op) -> None:
            calls.append((self.name, _op))
            _orig(self, cpu)
        monkeypatch.setattr(RWLock, op, spy)
    return calls


@pytest.mark.parametrize("design, usermap", [
    ("2.6.27", [("vmlist_lock", "write_lock")]),  # write_lock + __find_vm_area
    ("2.6.28", []),  # find_vm_area(): the vmap_area tree, no vmlist_lock
])
def test_vmalloc_user_vm_usermap_locking(design: str, usermap: list,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    k = Kernel(cpus=2, mem_pages=4096, design=design)
    calls = rwlock_calls(monkeypatch)
    assert k.vmalloc(2 * P) is not None
    plain = list(calls)
    assert plain == [("vmlist_lock", "write_lock")]  # linking the area into vmlist
    for fn in (k.vmalloc_user, k.vmalloc_32_user):
        calls.clear()
        u = fn(2 * P)
        assert u is not None and calls == plain + usermap
        assert area_of(k, u).flags & VM_USERMAP
    k.check()


@pytest.mark.parametrize("design, taken", [
    ("2.6.27", [("vmlist_lock", "read_lock")]),  # around __find_vm_area and the checks
    ("2.6.28", []),  # find_vm_area() only
])
def test_remap_vmalloc_range_locking(design: str, taken: list,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    k = Kernel(cpus=2, mem_pages=4096, design=design)
    u = k.vmalloc_user(2 * P)
    assert u is not None
    vma = vm_area_struct(0x10000, 0x10000 + 2 * P)
    calls = rwlock_calls(monkeypatch)
    assert k.remap_vmalloc_range(vma, u, 0) == 0
    assert calls == taken
    calls.clear()
    assert k.remap_vmalloc_range(vma, u + P, 0) == -22
    assert calls == taken
    vma.zap()
    k.check()

def test_vmalloc_sync_all_changes_no_mapping(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    pte = dict(k.machine.pte)
    clock = k.this_cpu.clock
    k.vmalloc_sync_all()
    assert k.machine.pte == pte and k.this_cpu.clock > clock
    k.check()


# --- get_vm_area and the vm_struct layer --------------------------------------------------
def test_get_vm_area_and_size(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(5 * P - 100, VM_ALLOC)
    assert isinstance(area, vm_struct)
    assert area.size == 6 * P and k.get_vm_area_size(area) == 5 * P
    assert area.flags == VM_ALLOC and area.nr_pages == 0 and area.pages is None
    assert k.get_vm_area(0, VM_ALLOC) is None
    with pytest.raises(PageFault):
        k.read(area.addr, 1)  # nothing mapped yet
    k.check()


@pytest.mark.parametrize(
    ("size", "align"),
    [(100, 1 << 12), (P, 1 << 13), (2 * P, 1 << 14), (3 * P, 1 << 14), (64 * P, 1 << 19),
     (1 << 20, 1 << 19), (1 << 24, 1 << 19)],
)
def test_ioremap_alignment(kernel: Kernel, size: int, align: int) -> None:
    k = kernel
    if not k.has_vmlist:  # 6.x: 1 << clamp(get_count_order_long(size), PAGE_SHIFT, PUD_SHIFT) on x86_64
        align = 1 << max(12, (((size + P - 1) & -P) - 1).bit_length())
    # put the allocator at an odd place first
    assert k.vmalloc(P) is not None
    area = k.get_vm_area(size, VM_IOREMAP)
    assert area is not None
    assert area.addr % align == 0
    assert " ioremap" in line_for(k, area.addr)["rest"]
    k.check()


def test_ioremap_alignment_is_not_more_than_needed() -> None:
    k = Kernel(cpus=1, mem_pages=1024, design="rewrite")
    a = k.vmalloc(P)  # [0, 2 pages) + gap: the cursor is at page 3
    assert a is not None
    area = k.get_vm_area(P, VM_IOREMAP)  # fls(4096) = 13: 8 KiB alignment
    assert area is not None and area.addr == a + 4 * P


def test_get_vm_area_caller_in_vmallocinfo(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area_caller(2 * P, VM_IOREMAP, "ioremap_nocache+0x1a/0x40")
    assert area is not None
    m = line_for(k, area.addr)
    assert m["caller"] == "ioremap_nocache+0x1a/0x40"
    assert m["rest"] == " ioremap"
    with pytest.raises(TypeError):
        k.get_vm_area_caller(P, VM_IOREMAP, 42)  # type: ignore[arg-type]


def test_get_vm_area__range(kernel: Kernel) -> None:
    k = kernel
    start = k.VMALLOC_START + (1 << 30)
    end = start + 16 * P
    a1 = k.get_vm_area__(4 * P, VM_ALLOC, start, end)
    assert a1 is not None and start <= a1.addr and a1.addr + a1.size <= end
    a2 = k.get_vm_area__(4 * P, VM_ALLOC, start, end)
    assert a2 is not None and a2.addr + a2.size <= end and a2.addr >= a1.addr + a1.size
    assert k.get_vm_area__(8 * P, VM_ALLOC, start, end) is None
    outside = k.vmalloc(P)
    assert outside is not None and not start <= outside < end
    k.check()


def test_get_vm_area_node(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area_node(3 * P, VM_MAP, 0)
    assert area is not None and area.size == 4 * P and area.flags == VM_MAP
    assert info_lines(k)[0]["caller"].startswith("test_get_vm_area_node+")


def test_remove_vm_area(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(2 * P, VM_IOREMAP)
    assert area is not None
    got = k.remove_vm_area(area.addr)
    assert got is area
    # 2.6.x takes the guard page off the size here; 6.x leaves vm->size alone
    assert area.size == (2 * P if k.has_vmlist else 3 * P)
    assert vm_info(k) == "" and not list(k.vm_areas())
    assert k.remove_vm_area(area.addr) is None
    k.check()


def test_map_vm_area_and_unmap_kernel_range(kernel: Kernel) -> None:
    k = kernel
    pages = take_pages(k, 3)
    area = k.get_vm_area(3 * P, VM_MAP)
    assert area is not None
    assert k.map_vm_area(area, PAGE_KERNEL, pages) == 0
    k.write(area.addr, b"mapped")
    for c in range(k.cpus):
        with k.on_cpu(c):
            k.touch(area.addr, 3)
    assert k.read(area.addr, 6) == b"mapped"
    # mapping again over present PTEs: the kernel WARNs, then fails with -EBUSY (2.6.28
    # on) or overwrites every PTE (2.6.27; the same pages here, so nothing goes stale)
    nwarn = len(k.warnings)
    assert k.map_vm_area(area, PAGE_KERNEL, pages) == (0 if k.vmap_pte_overwrite else -16)
    assert len(k.warnings) == nwarn + (3 if k.vmap_pte_overwrite else 1)
    assert "pte already present" in k.warnings[-1]
    k.check()
    flushes, ipis = k.stats["tlb_flushes"], k.stats["ipis"]
    k.unmap_kernel_range(area.addr, 3 * P)
    assert k.stats["tlb_flushes"] == flushes + 1  # immediately, not lazily
    assert k.stats["ipis"] == ipis + k.cpus - 1
    for c in range(k.cpus):
        assert k.tlb_entries(c) == set()
        with k.on_cpu(c), pytest.raises(PageFault):
            k.read(area.addr + P, 1)
    k.check()
    # the area can be mapped again after unmap_kernel_range
    assert k.map_vm_area(area, PAGE_KERNEL, pages[::-1]) == 0
    assert k.read(area.addr + 2 * P, 6) == b"mapped"
    k.check()


def test_vmap_pte_range_refuses_a_present_pte_with_ebusy(rk: Kernel) -> None:
    # 2.6.28's vmap_pte_range(): if (WARN_ON(!pte_none(*pte))) return -EBUSY;
    k = rk
    assert not k.vmap_pte_overwrite
    old, new = take_pages(k, 3), take_pages(k, 3)
    area = k.get_vm_area(3 * P, VM_MAP)
    assert area is not None
    assert k.map_vm_area(area, PAGE_KERNEL, old) == 0
    with k.on_cpu(1):
        k.touch(area.addr, 3)
    writes, nwarn = k.stats["pte_writes"], len(k.warnings)
    assert k.map_vm_area(area, PAGE_KERNEL_EXEC, new) == -16
    assert k.warnings[nwarn:] == [
        f"WARNING: at mm/vmalloc.c vmap_pte_range(): pte already present at {area.addr:#x}"]
    assert k.stats["pte_writes"] == writes  # stopped at the first PTE
    assert [k.vmalloc_to_page(area.addr + i * P) for i in range(3)] == old
    assert not k.machine.pte_prot
    with k.on_cpu(1):
        k.touch(area.addr, 3)  # the old translations are still the live ones
    k.check()

def test_alloc_vm_area_free_vm_area(kernel: Kernel) -> None:
    k = kernel
    area = k.alloc_vm_area(4 * P)
    assert area is not None and area.flags == VM_IOREMAP
    assert area.addr % (1 << 15) == 0  # fls(16384) = 15
    with pytest.raises(PageFault):
        k.touch(area.addr, 1)
    k.free_vm_area(area)
    assert k.find_vm_area(area.addr) is None
    with pytest.raises(vmapsim.BadAddressError):
        k.free_vm_area(area)
    with pytest.raises(TypeError):
        k.free_vm_area(area.addr)  # type: ignore[arg-type]
    k.check()


def test_vmlist_is_address_ordered(kernel: Kernel) -> None:
    if not kernel.has_vmlist:
        pytest.skip("the design has no vmlist (6.x finds areas through va->vm)")
    k = kernel
    addrs = [k.vmalloc((i % 3 + 1) * P) for i in range(12)]
    for a in addrs[::3]:
        k.vfree(a)
    for _ in range(4):
        k.vmalloc(P)
    walk = []
    v = k.vmlist
    while v is not None:
        walk.append(v.addr)
        v = v.next
    assert walk == sorted(walk) and len(walk) == 12
    assert [int(m["start"], 16) for m in info_lines(k)] == walk
    k.check()


# --- /proc/vmallocinfo ------------------------------------------------------------------
def test_vmallocinfo_line_format(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(3 * P)
    assert a is not None
    line = k.vmallocinfo().splitlines()[0]
    assert line.startswith(f"0x{a:016x}-0x{a + 4 * P:016x}   16384 test_vmallocinfo_line_format+0x")
    assert line.endswith(" pages=3 vmalloc N0=3")
    io = k.get_vm_area(P, VM_IOREMAP)
    assert io is not None
    io.phys_addr = 0xFEBF0000
    phys = " phys=0x00000000febf0000" if k.vmallocinfo_style == "modern" else " phys=febf0000"
    assert line_for(k, io.addr)["rest"] == phys + " ioremap"
    m = line_for(k, io.addr)
    assert m["size"] == "   8192"


def test_vmallocinfo_numa_counts() -> None:
    k = Kernel(cpus=2, nodes=2, mem_pages=64)
    with k.on_cpu(0):
        a = k.vmalloc(40 * P)  # node 0 has 32 pages: 8 come from node 1
    assert a is not None
    assert line_for(k, a)["rest"] == " pages=40 vmalloc N0=32 N1=8"
    with k.on_cpu(1):
        b = k.vmalloc(4 * P)
    assert b is not None
    assert line_for(k, b)["rest"] == " pages=4 vmalloc N1=4"


def test_vmallocinfo_big_size_field(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(4096 * P, VM_ALLOC)
    assert area is not None
    assert line_for(k, area.addr)["size"] == f"{4097 * P}"  # wider than %7ld: no padding


# --- lazy freeing and purging (rewrite) -------------------------------------------------
@pytest.mark.parametrize(
    ("cpus", "pages"),
    [(1, 8192), (2, 16384), (3, 16384), (4, 24576), (7, 24576), (8, 32768), (15, 32768), (16, 40960)],
)
def test_lazy_max_pages(cpus: int, pages: int) -> None:
    assert Kernel(cpus=cpus, mem_pages=64, design="rewrite").lazy_max_pages() == pages


def test_purge_when_vmap_lazy_nr_exceeds_lazy_max_pages() -> None:
    k = Kernel(cpus=1, mem_pages=64, design="rewrite")
    areas = [k.get_vm_area(1023 * P, VM_IOREMAP) for _ in range(9)]
    assert all(a is not None for a in areas)
    for i, area in enumerate(areas[:8]):
        k.free_vm_area(area)  # type: ignore[arg-type]
        assert k.vmap_lazy_nr == 1024 * (i + 1)
    assert k.vmap_lazy_nr == k.lazy_max_pages()  # at the limit, not past it
    assert k.stats["purges"] == 0
    assert sum(1 for va in k.vmap_areas() if va.flags & VM_LAZY_FREE) == 8
    k.check()
    k.free_vm_area(areas[8])  # type: ignore[arg-type]
    assert k.stats["purges"] == 1 and k.vmap_lazy_nr == 0
    assert k.vmap_areas() == []
    k.check()


def test_lazy_areas_hold_their_range_until_purged() -> None:
    k = Kernel(cpus=2, mem_pages=1024, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    k.vfree(a)
    b = k.vmalloc(P)
    assert b is not None and b != a  # a's range is not reused before a flush
    assert [va.va_start for va in k.vmap_areas()] == [a, b]
    assert k.vmap_areas()[0].flags & VM_LAZY_FREE and k.vmap_lazy_nr == 2
    k.vm_unmap_aliases()
    assert k.vmap_lazy_nr == 0 and [va.va_start for va in k.vmap_areas()] == [b]
    c = k.vmalloc(P)
    assert c == a  # first fit again
    k.check()


def test_one_flush_covers_many_frees() -> None:
    k = Kernel(cpus=4, mem_pages=4096, design="rewrite")
    addrs = [k.vmalloc(P) for _ in range(50)]
    for a in addrs:
        k.vfree(a)
    assert k.stats["tlb_flushes"] == 0 and k.stats["ipis"] == 0
    k.vm_unmap_aliases()
    assert k.stats["tlb_flushes"] == 1 and k.stats["ipis"] == 3 and k.stats["purges"] == 1
    k.vm_unmap_aliases()  # nothing left: no flush
    assert k.stats["tlb_flushes"] == 1


def test_purge_and_retry_once_on_exhaustion() -> None:
    k = Kernel(cpus=1, mem_pages=256, design="rewrite", vmalloc_size=32 * P)
    addrs = []
    while (a := k.vmalloc(P)) is not None:
        addrs.append(a)
    # 32 pages of space hold areas at 0, 3, ..., 27 (2 pages each, the last page unusable)
    assert len(addrs) == 10
    assert k.warnings[-1] == "vmap allocation failed: use vmalloc=<size> to increase size."
    purges = k.stats["purges"]
    assert purges == 0  # a failed purge with nothing lazy does not flush
    k.vfree(addrs[4])
    nwarn = len(k.warnings)
    again = k.vmalloc(P)
    assert again == addrs[4]  # the range came back after the synchronous purge
    assert k.stats["purges"] == purges + 1 and len(k.warnings) == nwarn
    k.check()
    free = k.nr_free_pages()
    assert k.vmalloc(P) is None
    assert k.nr_free_pages() == free
    assert k.warnings[-1].startswith("vmap allocation failed")
    k.check()


def test_vmalloc_space_exhaustion_frees_nothing(kernel: Kernel) -> None:
    k = Kernel(cpus=2, mem_pages=256, design=kernel.design, vmalloc_size=16 * P)
    free = k.nr_free_pages()
    assert k.vmalloc(20 * P) is None
    assert k.nr_free_pages() == free and k.warnings
    k.check()


# --- vm_map_ram and the per-CPU vmap blocks (rewrite) ----------------------------------------
@pytest.fixture
def ram() -> tuple[Kernel, list]:
    k = Kernel(cpus=2, mem_pages=4096, design="rewrite")
    return k, take_pages(k, 128)


def test_vmap_bbmap_bits() -> None:
    k = Kernel(cpus=8, mem_pages=64, design="rewrite")
    assert k.VMAP_BBMAP_BITS == 1024 and k.VMAP_BLOCK_SIZE == 4 << 20


def test_vm_map_ram_basic(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    a = k.vm_map_ram(pages, 3)
    assert a is not None and a % k.VMAP_BLOCK_SIZE == 0  # the first slot of a new block
    k.write(a + 2 * P, b"third")
    assert bytes(pages[2].data[:5]) == b"third"
    assert vm_info(k) == ""  # 2.6.28 shows no vm_map_ram areas
    [block] = k.vmap_areas()
    assert block.va_end - block.va_start == k.VMAP_BLOCK_SIZE
    k.vm_unmap_ram(a, 3)
    k.check()


def test_vm_map_ram_order_aligned_first_fit(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    a0 = k.vm_map_ram(pages, 1)
    assert a0 is not None
    slot = lambda n: (k.vm_map_ram(pages, n) - a0) // P  # type: ignore[operator]  # noqa: E731
    assert slot(2) == 2  # order 1: naturally aligned
    assert slot(1) == 1  # first fit fills the hole
    assert slot(4) == 4
    assert slot(3) == 8  # 3 pages take an order-2 region
    assert slot(1) == 12
    assert slot(64) == 64
    assert slot(5) == 16
    k.check()


def test_vm_map_ram_freed_slots_are_not_reused(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    a = k.vm_map_ram(pages, 1)
    assert a is not None
    k.vm_unmap_ram(a, 1)
    vb = k.vmap_block_tree[k.addr_to_vb_idx(a)]
    assert vb.dirty == 1 and vb.dirty_map == 1 and vb.free == k.VMAP_BBMAP_BITS - 1
    b = k.vm_map_ram(pages, 1)
    assert b == a + P
    # the dirty slot keeps its PTE (2.6.28 clears nothing in vb_free) ...
    assert k.vmalloc_to_page(a) is pages[0]
    # ... until vm_unmap_aliases()
    k.vm_unmap_aliases()
    assert k.vmalloc_to_page(a) is None and k.vmalloc_to_page(b) is pages[0]
    assert k.vm_map_ram(pages, 1) == a + 2 * P
    k.check()


def test_block_freed_lazily_when_all_dirty(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    per = VMAP_MAX_ALLOC
    n = k.VMAP_BBMAP_BITS // per
    addrs = [k.vm_map_ram(pages, per) for _ in range(n)]
    assert all(a is not None for a in addrs)
    vb = k.vmap_block_tree[k.addr_to_vb_idx(addrs[0])]
    assert vb.free == 0 and vb not in k.vmap_block_queue[0].free  # full: off the free list
    assert {k.addr_to_vb_idx(a) for a in addrs} == {k.addr_to_vb_idx(addrs[0])}  # type: ignore[arg-type]
    extra = k.vm_map_ram(pages, 1)
    assert extra is not None and k.addr_to_vb_idx(extra) != k.addr_to_vb_idx(addrs[0])
    for a in addrs[:-1]:
        k.vm_unmap_ram(a, per)  # type: ignore[arg-type]
    assert k.vmap_lazy_nr == 0 and len(k.vmap_block_tree) == 2
    k.check()
    k.vm_unmap_ram(addrs[-1], per)  # type: ignore[arg-type]
    # all dirty: the block's area goes to the lazy list, its PTEs stay until the purge
    assert len(k.vmap_block_tree) == 1
    assert k.vmap_lazy_nr == k.VMAP_BBMAP_BITS
    lazy = [va for va in k.vmap_areas() if va.flags & VM_LAZY_FREE]
    assert [va.va_start for va in lazy] == [addrs[0]]
    assert k.vmalloc_to_page(addrs[0]) is pages[0]
    k.check()
    k.vm_unmap_aliases()
    assert k.vmap_lazy_nr == 0 and len(k.vmap_areas()) == 1
    assert k.vmalloc_to_page(addrs[0]) is None
    k.check()


def test_new_block_goes_to_the_head_of_the_list(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    first = k.vm_map_ram(pages, 1)
    for _ in range(15):
        assert k.vm_map_ram(pages, 64) is not None  # slots 64..1023
    # 63 pages are free in block A but no 64-aligned region: a new block B
    b = k.vm_map_ram(pages, 64)
    assert b is not None and k.addr_to_vb_idx(b) != k.addr_to_vb_idx(first)  # type: ignore[arg-type]
    # 2.6.28 put B at the head, so a 1-page map comes from B, not from A's hole
    c = k.vm_map_ram(pages, 1)
    assert c == b + 64 * P
    assert k.vmap_block_queue[0].free[0] is k.vmap_block_tree[k.addr_to_vb_idx(b)]
    k.check()


def test_vm_map_ram_large_count_fallback(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    a = k.vm_map_ram(pages, VMAP_MAX_ALLOC + 1)
    assert a is not None
    [va] = k.vmap_areas()
    assert (va.va_start, va.va_end) == (a, a + 65 * P)  # no block, no guard page
    assert not k.vmap_block_tree
    k.touch(a, 65)
    k.vm_unmap_ram(a, 65)
    assert k.vmap_lazy_nr == 65 and va.flags & VM_LAZY_FREE
    k.check()
    k.vm_unmap_aliases()
    assert k.vmap_areas() == [] and k.vmap_lazy_nr == 0
    k.check()


def test_vm_map_ram_uses_the_current_cpus_queue(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    with k.on_cpu(1):
        a = k.vm_map_ram(pages, 2)
    with k.on_cpu(0):
        b = k.vm_map_ram(pages, 2)
    k.set_cpu(1)
    c = k.vm_map_ram(pages, 2)
    assert a is not None and b is not None and c is not None
    ia, ib, ic = (k.addr_to_vb_idx(x) for x in (a, b, c))
    assert ia == ic != ib
    assert c == a + 2 * P
    assert list(k.vmap_block_queue[1].blocks) == [ia]
    assert list(k.vmap_block_queue[0].blocks) == [ib]
    # vm_unmap_ram may run on another CPU: the block is found by address
    with k.on_cpu(0):
        k.vm_unmap_ram(a, 2)
    assert k.vmap_block_queue[1].blocks[ia].dirty == 2
    k.check()


def test_vm_map_ram_prot(ram: tuple[Kernel, list]) -> None:
    k, pages = ram
    a = k.vm_map_ram(pages, 2, -1, PAGE_KERNEL_EXEC)
    assert a is not None and k.machine.pte_prot.get(a >> PAGE_SHIFT) == PAGE_KERNEL_EXEC


def test_on_cpu_restores_and_set_cpu(kernel: Kernel) -> None:
    k = kernel
    with k.on_cpu(2) as cpu:
        assert k.this_cpu is cpu and cpu.id == 2
        with k.on_cpu(3):
            assert k.this_cpu.id == 3
        assert k.this_cpu.id == 2
    assert k.this_cpu.id == 0
    k.set_cpu(1)
    assert k.this_cpu.id == 1
    with pytest.raises(vmapsim.ConfigError):
        k.set_cpu(4)
    with pytest.raises(vmapsim.ConfigError), k.on_cpu(-1):
        pass
    with pytest.raises(TypeError), k.on_cpu("1"):  # type: ignore[arg-type]
        pass


def test_vmalloc_area__on_a_vm_map_area(kernel: Kernel) -> None:
    # __vmalloc_area() may fill any area; its pages belong to the area (check() once
    # called them leaked because the area lacked VM_ALLOC)
    k = kernel
    free = k.nr_free_pages()
    area = k.get_vm_area(2 * P, VM_MAP)
    assert area is not None
    assert k.vmalloc_area__(area, GFP_KERNEL, PAGE_KERNEL) == area.addr
    assert k.nr_free_pages() == free - 2
    k.check()
    k.vfree(area.addr)
    assert k.nr_free_pages() == free
    k.check()
