"""The vmap layer the 2008 rewrite replaced: Linux 2.6.27's ``mm/vmalloc.c``.

- ``vmlist``: a singly linked list of ``vm_struct``s sorted by address, the only
  record of the vmalloc space. ``__get_vm_area_node`` walks it from the head for the
  first gap that fits (the guard page is part of the size; VM_IOREMAP areas are
  aligned as in the shared layer) and links the new area in.
- ``vmlist_lock``: one rwlock, taken for WRITE on every allocation and every free;
  lookups (``find_vm_area``) take it for read.
- ``remove_vm_area``: under the write lock, walks to the area, clears its PTEs and
  does the global TLB flush (``flush_tlb_kernel_range`` -> an IPI to every other CPU,
  waiting for every acknowledgement) before it unlinks the area and unlocks. Nothing
  is deferred, so there is no purge and nothing for ``vm_unmap_aliases`` to do.
- There is no ``vm_map_ram``/``vm_unmap_ram`` (the shared layer's stubs raise
  UnsupportedError); every mapping is a ``vmap``.

The list is the base class's ``_vmlist`` (a Python list kept in step with the
``next`` links): the model bisects it to find its place quickly but charges a cache
miss for every node the kernel's linear walk would visit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from .constants import PAGE_SHIFT, PAGE_SIZE, VM_USERMAP
from .designs import DesignInfo
from .holes import HoleNode, first_end_over, hole_augment, index_erase, index_insert, next_with_hole, rank
from .rbtree import RBRoot
from .vmalloc import vm_struct
from .vmlist import VmlistKernel

#: printk of 2.6.27's __get_vm_area_node when no gap fits.
ALLOC_FAILED_MSG = "allocation failed: out of vmalloc space - use vmalloc=<size> to increase size."


class vm_area_view:  # noqa: N801 - mirrors vmap_area's field names
    """What ``vmap_areas()`` returns for the legacy design: one busy vm_struct.

    2.6.27 has no ``vmap_area``; this read-only view gives a vm_struct the fields the
    API promises (``va_end`` includes the guard page, as a 2.6.28 vmap_area's does).
    """

    __slots__ = ("va_start", "va_end", "flags", "vm")

    def __init__(self, vm: vm_struct) -> None:
        self.va_start = vm.addr
        self.va_end = vm.addr + vm.size
        self.flags = vm.flags
        self.vm = vm

    def __repr__(self) -> str:
        return f"vm_area_view({self.va_start:#x}-{self.va_end:#x}, flags={self.flags:#x})"


class _vm_node(HoleNode["_vm_node"]):  # noqa: N801
    """The model's index entry for one vm_struct on vmlist (not kernel data): lets the
    first-fit search find where 2.6.27's linear walk stops in O(log n) Python steps
    (see mm/holes.py); the walk's every node is still charged."""

    __slots__ = ()


INFO = DesignInfo(
    name="2.6.27",
    aliases=("legacy",),
    kernel="Linux 2.6.27 (October 2008) and before",
    changed="the design the 2008 rewrite replaced: vmlist under one rwlock, a global TLB flush on every vunmap",
    commit="(before db64fe02258f; vmlist dates from Linux 2.4)",
    leaves_out="vm_map_ram (not in 2.6.27); module space",
)


class Legacy(VmlistKernel, design=INFO):
    """Linux 2.6.27's vmap layer (see the module docstring)."""

    #: Nothing is ever freed lazily in 2.6.27 (kept so both designs share the API).
    vmap_lazy_nr = 0
    #: 2.6.27's vmap_pte_range() WARNs on a present PTE and overwrites it (no -EBUSY)
    vmap_pte_overwrite = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        #: Start addresses of areas freed and not handed out again (the model's, to
        #: tell a double free from a bad address).
        self._freed: set[int] = set()
        self._index = RBRoot(hole_augment)
        self._index_head = _vm_node(0, 0)
        self._nodes: dict[int, _vm_node] = {}

    def vmlist_link(self, area: vm_struct) -> int:
        walked = super().vmlist_link(area)
        node = self._nodes[area.addr] = _vm_node(area.addr, area.addr + area.size)
        index_insert(self._index, self._index_head, node)
        return walked

    def vmlist_unlink(self, area: vm_struct) -> int:
        walked = super().vmlist_unlink(area)
        index_erase(self._index, self._index_head, self._nodes.pop(area.addr))
        return walked

    # -- the list walk ----------------------------------------------------------------
    def get_vm_area_node__(self, size: int, flags: int, start: int, end: int, node: int,
                           gfp_mask: int, caller: str, align: int = 1) -> vm_struct | None:
        """__get_vm_area_node(): first fit on vmlist under write_lock(&vmlist_lock)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__get_vm_area_node")
        try:
            req = self._vm_area_request(size, flags, align)
            if req is None:
                return None
            size, align = req
            m = self.machine
            cpu = self._cpu
            mask = align - 1
            addr = (start + mask) & ~mask
            lock = self.vmlist_lock
            lock.write_lock(cpu)
            addr, visited, ok = self._first_fit(addr, size, mask, end)
            m.mem_access(cpu, "__get_vm_area_node", visited)
            if not ok:
                lock.write_unlock(cpu)
                m.charge(cpu, "kfree", self.cost.kmalloc)
                if m.printk_ratelimit(cpu):  # 2.6.27 rate-limits it as 2.6.28 does
                    m.warn(ALLOC_FAILED_MSG)
                return None
            area = vm_struct(addr, size, flags, caller)
            self.vmlist_link(area)  # the walk above found the place: not charged twice
            if self._freed:
                self._freed.discard(addr)
            lock.write_unlock(cpu)
            return area
        finally:
            self.machine.leave(chain_cpu, chain)

    def _first_fit(self, addr: int, size: int, mask: int, end: int) -> tuple[int, int, bool]:
        """2.6.27's vmlist walk from the head: the address it ends with, the nodes it
        visits, and whether it found a place (False: ``addr > end - size``)."""
        if mask >= PAGE_SIZE:
            # An alignment above a page can push addr past the next area's start, where
            # 2.6.27's loop takes its "straddle" branch (no fit or end check): walk it.
            return self._first_fit_linear(addr, size, mask, end)
        lst = self._vmlist
        n = len(lst)
        # Nodes below addr cannot hold the gap and cannot move addr (they end before the
        # next one starts): the kernel walks through them, charged, without effect.
        i = bisect_left(self._vmlist_addrs, addr)
        if i:
            i -= 1
        visited = i
        while i < n and lst[i].addr < addr:  # areas straddling addr push it past them
            tmp = lst[i]
            visited += 1
            if tmp.addr + tmp.size >= addr:
                addr = (tmp.addr + tmp.size + mask) & ~mask
            i += 1
        if i == n:
            return addr, visited, addr <= end - size
        w0 = lst[i]
        visited += 1
        if size + addr <= w0.addr:
            return addr, visited, True
        addr = (w0.addr + w0.size + mask) & ~mask
        if addr > end - size:
            return addr, visited, False
        # From here on the walk reaches each node w with addr = ALIGN(end of the node
        # before w): it stops at the first w whose hole fits, or after the first node
        # whose end pushes addr past end - size.
        x = node0 = self._nodes[w0.addr]
        need = size >> PAGE_SHIFT
        fit = None
        while True:
            w = next_with_hole(x, need)
            if w is None:
                break
            if ((w.list_prev.va_end + mask) & ~mask) + size <= w.va_start:
                fit = w
                break
            x = w
        fail = first_end_over(self._index, end, size, mask, 0)
        if fail is not None and fail.va_start <= w0.addr:
            fail = node0.list_next if node0.list_next is not self._index_head else None
        if fit is not None and (fail is None or fit.va_start <= fail.va_start):
            return (fit.list_prev.va_end + mask) & ~mask, rank(fit) + 1, True
        if fail is not None:
            return (fail.va_end + mask) & ~mask, rank(fail) + 1, False
        addr = (self._index_head.list_prev.va_end + mask) & ~mask
        return addr, n, addr <= end - size

    def _first_fit_linear(self, addr: int, size: int, mask: int, end: int) -> tuple[int, int, bool]:
        """The same walk node by node, exactly as 2.6.27 wrote it (for the tests)."""
        visited = 0
        for tmp in self._vmlist:
            visited += 1
            if tmp.addr < addr:
                if tmp.addr + tmp.size >= addr:
                    addr = (tmp.addr + tmp.size + mask) & ~mask
                continue
            if size + addr <= tmp.addr:
                return addr, visited, True
            addr = (tmp.addr + tmp.size + mask) & ~mask
            if addr > end - size:
                return addr, visited, False
        return addr, visited, addr <= end - size

    def _index_of(self, addr: int) -> int:
        """Index of the vm_struct starting at ``addr`` on vmlist, or -1."""
        i = bisect_left(self._vmlist_addrs, addr)
        if i < len(self._vmlist_addrs) and self._vmlist_addrs[i] == addr:
            return i
        return -1

    def find_vm_area(self, addr: int) -> vm_struct | None:
        """find_vm_area(): __find_vm_area's walk under read_lock(&vmlist_lock)."""
        cpu = self._cpu
        lock = self.vmlist_lock
        lock.read_lock(cpu)
        area = self.find_vm_area__(addr)
        lock.read_unlock(cpu)
        return area

    def find_vm_area__(self, addr: int) -> vm_struct | None:
        """__find_vm_area(): the vmlist walk; the caller holds vmlist_lock."""
        i = self._index_of(addr)
        self.machine.mem_access(self._cpu, "__find_vm_area", i + 1 if i >= 0 else len(self._vmlist))
        return self._vmlist[i] if i >= 0 else None

    def _usermap(self, addr: int | None) -> int | None:
        """vmalloc_user()/vmalloc_32_user()'s VM_USERMAP: 2.6.27 sets it under
        write_lock(&vmlist_lock) around __find_vm_area (2.6.28: find_vm_area, no vmlist_lock)."""
        if addr is not None:
            cpu = self._cpu
            self.vmlist_lock.write_lock(cpu)
            area = self.find_vm_area__(addr)
            assert area is not None
            area.flags |= VM_USERMAP
            self.vmlist_lock.write_unlock(cpu)
        return addr

    def remove_vm_area_(self, addr: int) -> vm_struct | None:
        """remove_vm_area(): walk, unmap, GLOBAL FLUSH, unlink, all under the write lock."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "remove_vm_area")
        try:
            m = self.machine
            cpu = self._cpu
            lock = self.vmlist_lock
            lock.write_lock(cpu)
            i = self._index_of(addr)
            m.mem_access(cpu, "remove_vm_area", i + 1 if i >= 0 else len(self._vmlist))
            if i < 0:
                lock.write_unlock(cpu)
                return None
            area = self._vmlist[i]
            # unmap_vm_area(): unmap_kernel_range(addr, area->size) -- the guard page
            # included -- which ends in flush_tlb_kernel_range(), i.e. flush_tlb_all() on
            # x86: a local flush plus an IPI to every other CPU, waiting for all of them.
            self.unmap_kernel_range(area.addr, area.size)
            self.vmlist_unlink(area)
            area.size -= PAGE_SIZE  # Remove the guard page.
            self._freed.add(addr)
            lock.write_unlock(cpu)
            return area
        finally:
            self.machine.leave(chain_cpu, chain)

    def _was_freed(self, addr: int) -> bool:
        return addr in self._freed

    def can_place(self, addr: int, size: int) -> bool:
        """2.6.27's rule: no vm_struct may end at or after ``addr`` and start before
        ``addr + size`` (the vmlist walk moves past an area ending exactly at ``addr``).
        Nothing is held back lazily; there are no blocks (the base's False for both)."""
        self._check_place("can_place", addr, size)
        if addr < self.VMALLOC_START or addr + size > self.VMALLOC_END + 1:
            return False
        i = bisect_left(self._vmlist_addrs, addr + size)  # vmlist[:i] start before addr + size
        return i == 0 or self._vmlist[i - 1].addr + self._vmlist[i - 1].size < addr

    def vm_unmap_aliases(self) -> None:
        """No-op: 2.6.27 flushes at every vunmap, so no alias is ever deferred."""
        self.machine.charge(self._cpu, "vm_unmap_aliases", self.cost.call)

    # -- inspection and checks ---------------------------------------------------------
    def vmap_areas(self) -> list[vm_area_view]:
        """Every busy area (a view of each vm_struct on vmlist), in address order."""
        return [vm_area_view(v) for v in self._vmlist]

    def busy_vmap_area(self, addr: int) -> vm_area_view | None:
        """The vm_struct on vmlist whose range (its guard page included) holds ``addr``."""
        i = bisect_right(self._vmlist_addrs, addr) - 1
        if i >= 0:
            v = self._vmlist[i]
            if addr < v.addr + v.size:
                return vm_area_view(v)
        return None

    def _reserved(self, addr: int) -> bool:
        return False  # nothing is held back: a freed range is unmapped and flushed at once

    def _check_design(self) -> None:
        lst = self._vmlist
        # the next chain from the head reaches every node exactly once, in order
        seen = 0
        v = self.vmlist
        while v is not None:
            if seen >= len(lst) or lst[seen] is not v:
                raise AssertionError(f"vmlist chain out of step with the list at node {seen}")
            seen += 1
            v = v.next
        if seen != len(lst):
            raise AssertionError(f"vmlist chain has {seen} nodes, the list {len(lst)}")
        lo, hi = self.VMALLOC_START, self.VMALLOC_END
        for v in lst:
            if v.size < 2 * PAGE_SIZE or (v.addr | v.size) & (PAGE_SIZE - 1):
                raise AssertionError(f"vm_struct at {v.addr:#x} has bad size {v.size:#x} (guard page missing?)")
            if v.addr < lo or v.addr + v.size - 1 > hi:
                raise AssertionError(f"vm_struct at {v.addr:#x} lies outside VMALLOC_START..END")
            guard = v.addr + v.size - PAGE_SIZE
            if self.machine.pte_at(guard) is not None:
                raise AssertionError(f"guard page of {v.addr:#x} is mapped")
            if v.addr in self._freed:
                raise AssertionError(f"live area {v.addr:#x} is also recorded as freed")
        if self.vmap_lazy_nr:
            raise AssertionError("legacy design has lazily freed pages")
        # the search index mirrors vmlist node for node
        node = self._index_head.list_next
        for v in lst:
            if node is self._index_head or node.va_start != v.addr or node.va_end != v.addr + v.size:
                raise AssertionError(f"search index out of step with vmlist at {v.addr:#x}")
            sub_gap, sub_n = node.sub_gap, node.sub_n
            hole_augment(node)
            if (sub_gap, sub_n) != (node.sub_gap, node.sub_n):
                raise AssertionError(f"search index: stale subtree data at {v.addr:#x}")
            node = node.list_next
        if node is not self._index_head or len(self._nodes) != len(lst):
            raise AssertionError("search index holds nodes vmlist does not")
