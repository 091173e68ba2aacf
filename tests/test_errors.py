"""Bad input and misuse: a clear error naming what was wrong, and nothing lost."""

from __future__ import annotations

import pytest

from conftest import take_pages, vm_info
from vmapsim import (
    GFP_HIGHMEM__,
    GFP_KERNEL,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    BadAddressError,
    BadPageError,
    ConfigError,
    DoubleFreeError,
    Kernel,
    PageFault,
    VmapError,
)
from vmapsim.hw.machine import pr_ptr
from vmapsim.mm import designs

P = PAGE_SIZE


def snapshot(k: Kernel) -> tuple:
    """Everything a refused call must leave as it was."""
    return (k.nr_free_pages(), k.vmallocinfo(), dict(k.machine.pte),
            [(v.va_start, v.va_end, v.flags) for v in k.vmap_areas()])


@pytest.mark.parametrize("who", ["vfree", "vunmap"])
def test_free_of_unknown_address(kernel: Kernel, who: str) -> None:
    k = kernel
    a = k.vmalloc(2 * P)
    assert a is not None
    before = snapshot(k)
    for bad in (a + P, a + 100 * P, 0x1000):
        with pytest.raises(BadAddressError) as ei:
            getattr(k, who)(bad)
        assert not isinstance(ei.value, DoubleFreeError)
        # until 6.3 the shared __vunmap() says vfree() for both; %p: 16 hex digits, no 0x (hashed on 6.x)
        verb = "vfree" if who == "vfree" else k.vunmap_name
        assert str(ei.value) == f"Trying to {verb}() nonexistent vm area ({k.pr_ptr(bad)})"
        assert k.warnings[-1] == str(ei.value)
    assert snapshot(k) == before
    k.check()


@pytest.mark.parametrize("who", ["vfree", "vunmap"])
def test_free_of_unaligned_address(kernel: Kernel, who: str) -> None:
    k = kernel
    a = k.vmalloc(2 * P)
    assert a is not None
    before = snapshot(k)
    verb = "vfree" if who == "vfree" else k.vunmap_name
    with pytest.raises(BadAddressError, match=rf"Trying to {verb}\(\) bad address \([0-9a-f]{{16}}\)$"):
        getattr(k, who)(a + 8)
    assert k.warnings[-1] == f"Trying to {verb}() bad address ({k.pr_ptr(a + 8)})"
    assert snapshot(k) == before
    k.check()


def test_double_vfree(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(3 * P)
    assert a is not None
    k.vfree(a)
    before = snapshot(k)
    with pytest.raises(DoubleFreeError, match=f"Trying to vfree\\(\\) nonexistent vm area \\({k.pr_ptr(a)}\\)"):
        k.vfree(a)
    assert snapshot(k) == before
    k.check()


def test_double_vunmap(kernel: Kernel) -> None:
    k = kernel
    pages = take_pages(k, 2)
    a = k.vmap(pages, 2)
    assert a is not None
    k.vunmap(a)
    with pytest.raises(DoubleFreeError):
        k.vunmap(a)
    k.check()


def test_double_free_after_purge_is_still_refused() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    k.vfree(a)
    k.vm_unmap_aliases()  # the area is gone from the tree
    with pytest.raises(BadAddressError, match="nonexistent vm area"):
        k.vfree(a)
    k.check()


def test_vfree_null_is_a_noop(kernel: Kernel) -> None:
    k = kernel
    assert k.vmalloc(P) is not None
    before = snapshot(k)
    k.vfree(None)
    k.vfree(0)
    k.vunmap(None)
    k.vunmap(0)
    assert snapshot(k) == before and not k.warnings
    k.check()


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.vmalloc("4096"),
        lambda k: k.vmalloc(4096.0),
        lambda k: k.vmalloc(None),
        lambda k: k.vmalloc_user(b"x"),
        lambda k: k.vmalloc_node("1", 0),
        lambda k: k.vmalloc_32([1]),
        lambda k: k.vfree("0xffffc20000000000"),
        lambda k: k.vunmap(1.0),
        lambda k: k.get_vm_area("8192", VM_IOREMAP),
        lambda k: k.get_vm_area_node(P, VM_ALLOC, "0"),
        lambda k: k.vmap("pages", 1),
        lambda k: k.vmap([1, 2], 2),
        lambda k: k.vmap(take_pages(k, 1), "1"),
        lambda k: k.read("addr", 1),
        lambda k: k.write(0xFFFFC20000000000, "text"),
        lambda k: k.free_page(123),
        lambda k: k.map_vm_area("area", 0, []),
        lambda k: k.unmap_kernel_range(0xFFFFC20000000000, "1"),
    ],
)
def test_wrong_types_raise_type_error(kernel: Kernel, call) -> None:  # type: ignore[no-untyped-def]
    k = kernel
    keep = k.vmalloc(P)
    assert keep is not None
    with pytest.raises(TypeError):
        call(k)
    k.check()


def test_negative_sizes_are_value_errors(kernel: Kernel) -> None:
    k = kernel
    with pytest.raises(ValueError, match="negative"):
        k.vmalloc(-4096)
    with pytest.raises(ValueError):
        k.vmap(take_pages(k, 1), 0)
    k.check()


@pytest.mark.parametrize("size", [0, 65 * P, 1 << 40])
def test_vmalloc_failure_returns_none_and_logs(kernel: Kernel, size: int) -> None:
    k = Kernel(cpus=2, mem_pages=64, design=kernel.design)
    free = k.nr_free_pages()
    assert k.vmalloc(size) is None
    assert k.warnings, "an allocation failure must leave the kernel's message"
    assert k.nr_free_pages() == free
    assert vm_info(k) == ""
    k.check()


def test_vmalloc_page_shortage_gives_pages_back(kernel: Kernel) -> None:
    k = Kernel(cpus=2, mem_pages=64, design=kernel.design)
    held = take_pages(k, 40)
    free = k.nr_free_pages()
    assert k.vmalloc(30 * P) is None  # fits the memory size, not what is free
    assert k.nr_free_pages() == free
    assert any("page allocation failure" in w for w in k.warnings)
    assert vm_info(k) == ""
    k.check()
    for p in held:
        k.free_page(p)
    assert k.vmalloc(30 * P) is not None
    k.check()


#: the 2.6 designs' vmalloc-space failure printks (2.6.27 __get_vm_area_node, 2.6.28 alloc_vmap_area)
SPACE_FAILED = {
    "2.6.27": "allocation failed: out of vmalloc space - use vmalloc=<size> to increase size.",
    "2.6.28": "vmap allocation failed: use vmalloc=<size> to increase size.",
}


@pytest.mark.parametrize("design", sorted(SPACE_FAILED))
def test_space_failure_messages_are_rate_limited(design: str) -> None:
    # both kernels print it only `if (printk_ratelimit())`: 10 per 5 s window (5 * HZ)
    k = Kernel(cpus=2, mem_pages=256, design=design, vmalloc_size=16 * P)
    msg = SPACE_FAILED[design]
    m = k.machine
    cpu = k.this_cpu
    for _ in range(11):
        assert k.vmalloc(20 * P) is None
    begin = m.ratelimit_begin
    assert begin is not None and cpu.clock - begin < 1e6  # 11 failures in well under 5 s
    assert k.warnings == [msg] * 10  # the 11th printed nothing
    assert m.printk_suppressed == 1
    with k.on_cpu(1):  # one printk_ratelimit_state for every CPU
        assert k.vmalloc(20 * P) is None
    cpu.clock = begin + 4.9e9  # still inside the window
    assert k.vmalloc(20 * P) is None
    assert len(k.warnings) == 10 and m.printk_suppressed == 3
    cpu.clock = begin + 5e9 + 1  # past it: the count of dropped ones, then the message
    assert k.vmalloc(20 * P) is None
    assert k.warnings[10:] == ["__ratelimit: 3 callbacks suppressed", msg]
    for _ in range(9):  # a new window: 10 in all print again
        assert k.vmalloc(20 * P) is None
    assert k.warnings[11:] == [msg] * 10 and m.printk_suppressed == 3
    assert k.vmalloc(20 * P) is None
    assert len(k.warnings) == 21 and m.printk_suppressed == 4
    k.check()


@pytest.mark.parametrize("design", sorted(SPACE_FAILED))
def test_page_allocation_failures_share_the_rate_limit(design: str) -> None:
    # __alloc_pages_internal() prints under printk_ratelimit() too (2.6.27, 2.6.28)
    k = Kernel(cpus=1, mem_pages=64, design=design)
    held = take_pages(k, 40)
    for _ in range(12):
        assert k.vmalloc(30 * P) is None
    mode = GFP_KERNEL | GFP_HIGHMEM__  # vmalloc()'s
    assert k.warnings == [f"vmapsim: page allocation failure. order:0, mode:{mode:#x}"] * 10
    assert k.machine.printk_suppressed == 2
    for p in held:
        k.free_page(p)
    k.check()


def test_pr_ptr_prints_as_percent_p() -> None:
    # 2.6.28 lib/vsprintf.c pointer(): width 2 * sizeof(void *), zero padded, lower case
    assert pr_ptr(0xFFFFC20000001000) == "ffffc20000001000"
    assert pr_ptr(0x1000) == "0000000000001000"
    k = Kernel(cpus=1, design="2.6.28")
    a = k.vmalloc(P)
    assert a is not None
    assert k.vmallocinfo().startswith(f"0x{a:016x}-")  # vmallocinfo's "0x%p" keeps its 0x

def test_vpages_failure_gives_the_page_array_back(kernel: Kernel) -> None:
    k = Kernel(cpus=1, mem_pages=600, design=kernel.design)
    held = take_pages(k, 100)
    free = k.nr_free_pages()
    assert k.vmalloc(513 * P) is None  # the 2-page array is allocated, then pages run out
    assert k.nr_free_pages() == free and vm_info(k) == ""
    k.check()
    assert held


def test_vmap_failure_leaves_nothing(kernel: Kernel) -> None:
    k = Kernel(cpus=1, mem_pages=64, design=kernel.design, vmalloc_size=16 * P)
    pages = take_pages(k, 20)
    free = k.nr_free_pages()
    assert k.vmap(pages, 20) is None
    assert k.nr_free_pages() == free and k.warnings
    k.check()


def test_vm_unmap_ram_misuse() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    pages = take_pages(k, 4)
    a = k.vm_map_ram(pages, 4)
    big = k.vm_map_ram(take_pages(k, 70), 70)
    assert a is not None and big is not None
    before = snapshot(k)
    with pytest.raises(BadAddressError, match="mapped with count 4"):
        k.vm_unmap_ram(a, 2)
    with pytest.raises(BadAddressError, match="bad address"):
        k.vm_unmap_ram(0, 4)
    with pytest.raises(BadAddressError, match="bad address"):
        k.vm_unmap_ram(a + 1, 4)
    with pytest.raises(BadAddressError, match="bad address"):
        k.vm_unmap_ram(0x1000, 4)  # below VMALLOC_START
    with pytest.raises(BadAddressError, match="not mapped by vm_map_ram"):
        k.vm_unmap_ram(a + 8 * P, 4)
    with pytest.raises(BadAddressError, match="mapped with count 70"):
        k.vm_unmap_ram(big, 64)
    with pytest.raises(TypeError):
        k.vm_unmap_ram(str(a), 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        k.vm_unmap_ram(a, 4.0)  # type: ignore[arg-type]
    assert snapshot(k) == before
    k.check()
    k.vm_unmap_ram(a, 4)
    k.vm_unmap_ram(big, 70)
    with pytest.raises(DoubleFreeError):
        k.vm_unmap_ram(a, 4)
    with pytest.raises(DoubleFreeError):
        k.vm_unmap_ram(big, 70)
    k.check()


def test_vm_unmap_ram_of_a_vmalloc_address() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    a = k.vmalloc(P)
    assert a is not None
    with pytest.raises(BadAddressError):
        k.vm_unmap_ram(a, 1)
    with pytest.raises(BadAddressError):
        k.vfree(k.vm_map_ram(take_pages(k, 1), 1))  # a block slot is no vm area
    k.check()


def test_vm_map_ram_bad_pages() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    pages = take_pages(k, 3)
    before = snapshot(k)
    with pytest.raises(ValueError, match="only 3 pages"):
        k.vm_map_ram(pages, 4)
    with pytest.raises(ValueError, match="positive"):
        k.vm_map_ram(pages, 0)
    with pytest.raises(TypeError, match=r"pages\[1\]"):
        k.vm_map_ram([pages[0], "page", pages[2]], 3)
    k.free_page(pages[2])
    with pytest.raises(BadPageError, match="free page"):
        k.vm_map_ram(pages, 3)
    with pytest.raises(BadPageError, match="free page"):
        k.vmap(pages, 3)
    assert snapshot(k)[1:] == before[1:]
    k.check()


def test_vm_map_ram_not_in_legacy() -> None:
    k = Kernel(cpus=2, mem_pages=256, design="rewrite")
    if "legacy" not in designs.accepted_names():
        pytest.skip("no legacy design registered")
    old = Kernel(cpus=2, mem_pages=256, design="legacy")
    pages = take_pages(old, 1)
    with pytest.raises(VmapError):
        old.vm_map_ram(pages, 1)
    assert k.vm_map_ram(take_pages(k, 1), 1) is not None


def test_free_page_misuse(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    vpage = k.find_vm_area(a).pages[0]  # type: ignore[union-attr,index]
    with pytest.raises(BadPageError):
        k.free_page(vpage)  # owned by the vmalloc area, not by the caller
    p = k.alloc_page()
    assert p is not None
    k.free_page(p)
    with pytest.raises(BadPageError):
        k.free_page(p)
    assert k.read(a, 1) == b"\0"
    k.check()


def test_access_errors(kernel: Kernel) -> None:
    k = kernel
    # x86 show_fault_oops() prints the address with %p
    with pytest.raises(PageFault, match=f"unable to handle kernel paging request at {k.VMALLOC_START:016x}$"):
        k.read(k.VMALLOC_START, 1)
    with pytest.raises(PageFault):
        k.write(k.VMALLOC_START + 5 * P, b"x")
    a = k.vmalloc(P)
    assert a is not None
    with pytest.raises(BadAddressError, match="not page aligned"):
        k.touch(a + 1, 1)
    k.check()


@pytest.mark.parametrize(
    ("kw", "exc"),
    [({"design": "nope"}, ConfigError), ({"cpus": "4"}, TypeError), ({"cpus": 0}, ConfigError),
     ({"nodes": 0}, ConfigError), ({"mem_pages": 0}, ConfigError),
     ({"vmalloc_size": 100}, ConfigError), ({"vmalloc_size": 4 * P}, ConfigError),
     ({"vmalloc_size": "1"}, TypeError), ({"cost": "pentium"}, ConfigError), ({"cost": 3}, TypeError)],
)
def test_bad_kernel_config(kw: dict, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Kernel(**kw)


def test_unknown_design_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="rewrite"):
        Kernel(design="2.6.30")


def test_errors_derive_from_vmap_error() -> None:
    import vmapsim

    for name in ("BadAddressError", "BadPageError", "ConfigError", "DoubleFreeError",
                 "InvariantError", "PageFault", "StaleTranslationError", "UseAfterFreeError"):
        assert issubclass(getattr(vmapsim, name), VmapError), name
