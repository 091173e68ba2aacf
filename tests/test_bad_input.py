"""Refused calls name what was wrong and leave the model consistent (check() passes)."""

from __future__ import annotations

import pytest

import vmapsim
from vmapsim import PAGE_KERNEL, PAGE_SIZE, VM_ALLOC, VM_IOREMAP, VM_MAP, Kernel
from vmapsim.errors import ConfigError, InvalidArgumentError, VmapError

P = PAGE_SIZE


def refused(k: Kernel, exc: type[BaseException], fn, *args, match: str | None = None, **kw) -> None:
    before = (k.nr_free_pages(), k.vmallocinfo(), len(k.machine.pte))
    with pytest.raises(exc, match=match):
        fn(*args, **kw)
    assert (k.nr_free_pages(), k.vmallocinfo(), len(k.machine.pte)) == before
    k.check()


def test_map_vm_area_checks_its_pages_and_that_the_area_is_live(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(2 * P, VM_MAP)
    assert area is not None
    refused(k, TypeError, k.map_vm_area, area, PAGE_KERNEL, "ab", match="pages")
    refused(k, TypeError, k.map_vm_area, area, PAGE_KERNEL, [None, None], match=r"pages\[0\]")
    refused(k, TypeError, k.map_vm_area, area, "rw", [k.alloc_page(), k.alloc_page()], match="prot")
    gone = k.remove_vm_area(area.addr)
    assert gone is area
    pages = [k.alloc_page(), k.alloc_page()]
    refused(k, InvalidArgumentError, k.map_vm_area, area, PAGE_KERNEL, pages, match="not a live area")


def test_vmalloc_area_refuses_a_filled_or_dead_area(kernel: Kernel) -> None:
    k = kernel
    area = k.get_vm_area(2 * P, VM_ALLOC)
    assert area is not None
    assert k.vmalloc_area__(area, vmapsim.GFP_KERNEL, PAGE_KERNEL) == area.addr
    refused(k, InvalidArgumentError, k.vmalloc_area__, area, vmapsim.GFP_KERNEL, PAGE_KERNEL,
            match="pages already")
    k.vfree(area.addr)
    refused(k, InvalidArgumentError, k.vmalloc_area__, area, vmapsim.GFP_KERNEL, PAGE_KERNEL,
            match="not a live area")


@pytest.mark.parametrize("start_off, end_off", [(1, 64), (-P, 64 * P), (0, 0), (64 * P, 32 * P)])
def test_get_vm_area_range_must_be_aligned_and_inside_vmalloc_space(kernel: Kernel, start_off: int,
                                                                    end_off: int) -> None:
    k = kernel
    refused(k, InvalidArgumentError, k.get_vm_area__, P, VM_IOREMAP, k.VMALLOC_START + start_off,
            k.VMALLOC_START + end_off, match="VMALLOC_START")


def test_negative_sizes_and_addresses_are_vmap_errors(kernel: Kernel) -> None:
    k = kernel
    for fn, args in ((k.vmalloc, (-1,)), (k.get_vm_area, (-P, VM_IOREMAP)), (k.vfree, (-P,)),
                     (k.alloc_vm_area, (-1,))):
        with pytest.raises(InvalidArgumentError, match="negative") as ei:
            fn(*args)
        assert isinstance(ei.value, VmapError) and isinstance(ei.value, ValueError)
    k.check()


def test_wrong_types_of_flags_masks_nodes_and_cpus(kernel: Kernel) -> None:
    k = kernel
    pages = [k.alloc_page() for _ in range(2)]
    cases = [
        (k.get_vm_area, (P, "x"), "flags"),
        (k.vmap, (pages, 2), "flags", {"flags": "x"}),
        (k.vmap, (pages, 2), "prot", {"prot": "x"}),
        (k.alloc_page, (), "gfp_mask", {"gfp_mask": "x"}),
        (k.get_vm_area_node, (P, VM_IOREMAP, "0"), "node"),
        (k.set_cpu, ("1",), "cpu"),
        (k.tlb_entries, (1.0,), "cpu"),
        (k.touch, ("x", 1), "address"),
        (k.get_vm_area_size, (None,), "vm_struct"),
    ]
    for case in cases:
        fn, args, what = case[0], case[1], case[2]
        kw = case[3] if len(case) > 3 else {}
        with pytest.raises(TypeError, match=what):
            fn(*args, **kw)
    k.check()


def test_node_and_cpu_ranges(kernel: Kernel) -> None:
    k = kernel
    refused(k, ConfigError, k.vmalloc_node, P, 9, match="node 9")
    refused(k, ConfigError, k.get_vm_area_node, P, VM_IOREMAP, -5, match="node -5")
    refused(k, ConfigError, k.set_cpu, k.cpus, match="out of range")
    refused(k, InvalidArgumentError, k.touch, k.VMALLOC_START, 0, match="positive")


def test_vm_map_ram_node_and_prot_are_checked() -> None:
    k = Kernel(cpus=2)
    pages = [k.alloc_page() for _ in range(2)]
    refused(k, ConfigError, k.vm_map_ram, pages, 2, 9, match="node 9")
    refused(k, TypeError, k.vm_map_ram, pages, 2, -1, "rw", match="prot")


@pytest.mark.parametrize("kw, match", [({"vmalloc_size": 1 << 80}, "vmalloc_size"),
                                       ({"nr_cpus_config": "x"}, "nr_cpus_config")])
def test_constructor_arguments(kw: dict, match: str) -> None:
    with pytest.raises((ConfigError, TypeError), match=match):
        Kernel(cpus=2, **kw)


def test_check_reports_corrupted_state_as_an_invariant_error(kernel: Kernel) -> None:
    k = kernel
    a = k.vmalloc(P)
    assert a is not None
    next(iter(k.vm_areas())).pages = ["not a page"]  # type: ignore[list-item]
    with pytest.raises(vmapsim.InvariantError):
        k.check()
