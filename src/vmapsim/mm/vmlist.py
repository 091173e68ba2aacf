"""``vmlist``: the 2.6 kernels' address-ordered list of ``vm_struct``s, and what uses it.

Both 2008 designs keep every live vm_struct on ``vmlist`` under ``vmlist_lock`` (2.6.27:
it is the allocator's only record; 2.6.28: a second record beside the vmap_area tree)
and print /proc/vmallocinfo from it. Linux 2.6.28 dropped nothing of it; the list went
in Linux 3.10 (Joonsoo Kim, "mm, vmalloc: remove list management of vmlist after
initializing vmalloc"), after which the areas are found through ``va->vm``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InvariantError
from ..hw.locks import RWLock
from .vmalloc import Kernel, vm_struct


class VmlistKernel(Kernel):
    """The 2.6 designs' shared vm_struct list (not a design of its own)."""

    has_vmlist = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        #: vmlist: address-ordered vm_structs (the kernel's singly linked list; kept
        #: as a Python list plus the ``next`` links, so it can be bisected).
        self._vmlist: list[vm_struct] = []
        self._vmlist_addrs: list[int] = []
        self.vmlist_lock = RWLock(self.machine, "vmlist_lock")

    @property
    def vmlist(self) -> vm_struct | None:
        """The head of ``vmlist`` (follow ``.next``)."""
        return self._vmlist[0] if self._vmlist else None

    def vm_areas(self) -> Iterable[vm_struct]:
        return list(self._vmlist)

    def vmlist_link(self, area: vm_struct) -> int:
        """Link ``area`` into vmlist in address order; returns the nodes walked."""
        i = bisect.bisect_left(self._vmlist_addrs, area.addr)
        lst = self._vmlist
        area.next = lst[i] if i < len(lst) else None
        if i:
            lst[i - 1].next = area
        lst.insert(i, area)
        self._vmlist_addrs.insert(i, area.addr)
        return i + 1

    def vmlist_unlink(self, area: vm_struct) -> int:
        """Unlink ``area`` from vmlist; returns the nodes walked to find it."""
        i = bisect.bisect_left(self._vmlist_addrs, area.addr)
        lst = self._vmlist
        if i >= len(lst) or lst[i] is not area:
            raise InvariantError(f"vm_struct at {area.addr:#x} is not on vmlist")
        if i:
            lst[i - 1].next = area.next
        del lst[i]
        del self._vmlist_addrs[i]
        area.next = None
        return i + 1

    def vmallocinfo_areas(self) -> Iterator[tuple[int, int, str, vm_struct | None]]:
        """The vm_structs on vmlist, in address order (a design with vmap blocks or lazy
        freeing adds its own lines)."""
        for v in list(self._vmlist):
            yield v.addr, v.addr + v.size, "vm", v

    def vmallocinfo(self, style: str | None = None) -> str:
        """/proc/vmallocinfo; in 2.6.28's own dialect (one line per vmlist entry) under
        read_lock(&vmlist_lock), as s_start()/s_stop() take it. The modern dialect is
        the model's rendering, not a 2.6 kernel's: it takes no lock."""
        if (self.vmallocinfo_style if style is None else style) != "2.6":
            return super().vmallocinfo(style)
        cpu = self._cpu
        self.vmlist_lock.read_lock(cpu)
        try:
            return super().vmallocinfo(style)
        finally:
            self.vmlist_lock.read_unlock(cpu)

    def _check_vm_structs(self) -> None:
        super()._check_vm_structs()
        self._check_vmlist_index()
        self._check_vmlist_links()

    def _check_vmlist_index(self) -> None:
        if len(self._vmlist_addrs) != len(self._vmlist):
            raise AssertionError("vmlist index length differs from the list")
        for i, v in enumerate(self._vmlist):
            if self._vmlist_addrs[i] != v.addr:
                raise AssertionError(f"vmlist index out of step at {v.addr:#x}")

    def _check_vmlist_links(self) -> None:
        prev: vm_struct | None = None
        for v in self._vmlist:
            if prev is not None and prev.next is not v:
                raise AssertionError(f"vmlist next link broken after {prev.addr:#x}")
            prev = v
        if prev is not None and prev.next is not None:
            raise AssertionError("vmlist tail has a next link")
