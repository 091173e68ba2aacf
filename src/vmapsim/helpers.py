"""
vmap helpers with drgn's names and meanings
-------------------------------------------

``vmapsim.helpers`` gives a simulated kernel the vmalloc helpers of drgn
(``drgn.helpers.linux.mm``), so that a drgn script runs on the model once its
``prog`` is a :class:`vmapsim.Kernel`:

>>> from vmapsim.helpers import *
>>> k = vmapsim.Kernel(cpus=4)                  # 2.6.28
>>> addr = k.vmalloc(3 * 4096); b = k.vmalloc(4096)
>>> for va in for_each_vmap_area(k):
...     print(f"{hex(va.va_start)}-{hex(va.va_end)}")
0xffffc20000000000-0xffffc20000004000
0xffffc20000005000-0xffffc20000007000
>>> vmalloc_to_pfn(k, find_vmap_area(k, addr + 0x1234).va_start + 0x2000)
2

The kernel is always the first argument (drgn lets a script leave out its default
program; the model has none). An area is the design's own object: ``va_start`` and
``va_end`` (its guard page included) on every design, and the rest of the kernel's
fields as the design has them (2.6.28: ``flags`` and ``private``; 6.x: ``vm``;
2.6.27, which has no vmap_area, a view of each vm_struct with ``vm``). A page is a
:class:`vmapsim.Page` (``pfn``, ``node``).

Beyond drgn: :func:`for_each_vmap_block`, :func:`for_each_lazy_vmap_area` and
:func:`for_each_free_vmap_area`, for the designs that have those structures.

Every helper only inspects: nothing is charged to the simulated clock, no lock is
taken, and the oracle is not consulted (``vmalloc_to_page`` reads the page table as
the kernel's does, not a CPU's TLB).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, NamedTuple, SupportsIndex

from .errors import PageFault
from .hw import PAGE_SHIFT
from .hw.physmem import Page
from .mm.vmalloc import Kernel

__all__ = (
    "VmapBlockState",
    "find_vmap_area",
    "for_each_free_vmap_area",
    "for_each_lazy_vmap_area",
    "for_each_vmap_area",
    "for_each_vmap_block",
    "vmalloc_to_page",
    "vmalloc_to_pfn",
)


def for_each_vmap_area(k: Kernel) -> Iterator[Any]:
    """
    Iterate over every ``struct vmap_area *`` on the busy list, in the kernel's order.

    As drgn's, this walks ``vmap_area_list`` (6.9: each vmap node's busy list in
    turn, so the areas come node by node, not in address order). The areas of vmap
    blocks and of large vm_map_ram() mappings are there, with no vm_struct. On
    2.6.28 a lazily freed area stays on the list, flagged ``VM_LAZY_FREE``, until the
    purge; 6.x moves it to its purge list (:func:`for_each_lazy_vmap_area`). On
    2.6.27, which has no vmap_area, this is one view per vm_struct on ``vmlist``.

    >>> for va in for_each_vmap_area(k):
    ...     print(f"{hex(va.va_start)}-{hex(va.va_end)}")
    0xffffc20000000000-0xffffc20000004000
    0xffffc20000005000-0xffffc20000007000

    :param k: the kernel (drgn's ``prog``)
    :return: Iterator of ``struct vmap_area *`` objects.
    """
    yield from k.busy_vmap_areas()


def find_vmap_area(k: Kernel, addr: SupportsIndex) -> Any | None:
    """
    Return the ``struct vmap_area *`` containing an address.

    As drgn's: the busy area whose ``[va_start, va_end)`` holds ``addr`` (its guard
    page included), whatever the design's own ``find_vmap_area()`` matches (2.6.28's
    wants the area's start). Lazily freed areas are found on 2.6.28, where they stay
    in the busy tree until the purge, and not on 6.x.

    >>> find_vmap_area(k, 0xffffc20000001234)
    vmap_area(0xffffc20000000000-0xffffc20000004000, flags=0x4)

    :param k: the kernel (drgn's ``prog``)
    :param addr: Address to look up (``unsigned long``).
    :return: ``struct vmap_area *`` (``None`` if not found, drgn's ``NULL``)
    """
    return k.busy_vmap_area(operator.index(addr))


def vmalloc_to_page(k: Kernel, addr: SupportsIndex) -> Page:
    """
    Get the page containing a vmalloc or vmap address.

    The kernel page table's translation of ``addr``, as drgn follows ``init_mm``'s;
    no CPU's TLB is asked. A lazily freed area that 2.6.28 still maps translates.

    >>> vmalloc_to_page(k, addr + 4096)
    Page(pfn=0x1, node=0, zone=DMA32)

    :param k: the kernel (drgn's ``prog``)
    :param addr: ``void *``
    :return: ``struct page *``
    :raises PageFault: if no PTE maps ``addr`` (drgn raises ``FaultError``; the
        kernel's vmalloc_to_page() returns ``NULL``)
    """
    a = operator.index(addr)
    page = k.vmalloc_to_page(a)
    if page is None:
        raise PageFault(f"vmalloc_to_page: no PTE maps {a:#x}")
    return page


def vmalloc_to_pfn(k: Kernel, addr: SupportsIndex) -> int:
    """
    Get the page frame number (PFN) containing a vmalloc or vmap address.

    >>> vmalloc_to_pfn(k, addr + 4096)
    1

    :param k: the kernel (drgn's ``prog``)
    :param addr: ``void *``
    :return: ``unsigned long``
    :raises PageFault: if no PTE maps ``addr``
    """
    return vmalloc_to_page(k, addr).pfn


class VmapBlockState(NamedTuple):
    """One ``struct vmap_block`` as :func:`for_each_vmap_block` gives it."""

    va_start: int  #: the block's first address (its vmap_area's va_start)
    va_end: int  #: its end (exclusive)
    cpu: int  #: the CPU whose ``vmap_block_queue`` owns it
    used_map: int  #: bit i: page i handed out by vb_alloc() (2.6.28's alloc_map)
    dirty_map: int  #: bit i: page i handed out, freed, not flushed yet

    @property
    def nr_pages(self) -> int:
        """Pages in the block (VMAP_BBMAP_BITS)."""
        return (self.va_end - self.va_start) >> PAGE_SHIFT


def for_each_vmap_block(k: Kernel) -> Iterator[VmapBlockState]:
    """
    Iterate over every vmap block (the per-CPU blocks vm_map_ram() carves small
    mappings from), in address order, as ``vmap_block_tree`` (6.x: the
    ``vmap_blocks`` xarrays) indexes them. A page in neither map is free; 6.1 keeps
    no bitmaps, so its ``used_map`` is every page below the bump pointer. Nothing on a
    design without vm_map_ram() (2.6.27).

    >>> for vb in for_each_vmap_block(k):
    ...     print(hex(vb.va_start), vb.cpu, bin(vb.used_map), bin(vb.dirty_map))
    0xffffc20000400000 1 0b1111 0b0

    :param k: the kernel (drgn's ``prog``)
    :return: Iterator of :class:`VmapBlockState`
    """
    for start, end, cpu, used, dirty in k.vmap_block_states():
        yield VmapBlockState(start, end, cpu, used, dirty)


def for_each_lazy_vmap_area(k: Kernel) -> Iterator[Any]:
    """
    Iterate over every lazily freed ``struct vmap_area *`` not purged yet: the areas
    whose TLB flush is still deferred (``vmap_lazy_nr`` counts their pages).
    2.6.28 keeps them on ``vmap_area_list`` flagged ``VM_LAZY_FREE``; 6.1 in
    ``purge_vmap_area_root``, where neighbours coalesce; 6.9 in each vmap node's
    lazy tree, node by node. Nothing on 2.6.27, which frees at once.

    >>> k.vfree(b)
    >>> list(for_each_lazy_vmap_area(k))
    [vmap_area(0xffffc20000005000-0xffffc20000007000, flags=0x5)]

    :param k: the kernel (drgn's ``prog``)
    :return: Iterator of ``struct vmap_area *`` objects.
    """
    yield from k.lazy_vmap_areas()


def for_each_free_vmap_area(k: Kernel) -> Iterator[Any]:
    """
    Iterate over every free ``struct vmap_area *`` (``free_vmap_area_list``, Linux
    5.2 on; on 6.9 the vmap nodes' pools of exact-size areas too), in address order.
    As the kernel's tree, it covers the whole address space outside the busy and lazy
    areas, below VMALLOC_START (from 1) and above VMALLOC_END too.

    :param k: the kernel (drgn's ``prog``)
    :return: Iterator of ``struct vmap_area *`` objects.
    :raises UnsupportedError: on a design that keeps no free areas (2.6.27, 2.6.28:
        their free space is the gaps between the busy areas)
    """
    yield from k.free_areas()
