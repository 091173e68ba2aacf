"""The 2008 rewrite of the vmap layer, as shipped in Linux 2.6.28 (``mm/vmalloc.c``).

Commit db64fe02258f "mm: rewrite vmap layer" (Nick Piggin, 2008), with the three
fixes merged before 2.6.28 shipped (hole check off-by-one, retry from vstart, the
first purge synchronous). Structures mirror the kernel's:

- ``vmap_area`` in an rbtree (``vmap_area_root``) and an address-sorted list
  (``vmap_area_list``), both under the spinlock ``vmap_area_lock``;
- lazy freeing: a freed area keeps its PTEs and stays in the tree (so its range
  cannot be reused) until ``__purge_vmap_area_lazy`` unmaps every lazy area and does
  ONE ``flush_tlb_kernel_range`` over their union;
- per-CPU ``vmap_block`` allocators for ``vm_map_ram``: ``vmap_block_queue`` per CPU,
  blocks found from an address through ``vmap_block_tree`` (a radix tree in the
  kernel, a dict here).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ConfigError, InvariantError
from ..hw.locks import SpinLock
from ..hw.physmem import Page
from .constants import (
    PAGE_KERNEL,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_LAZY_FREE,
    VM_LAZY_FREEING,
    VM_VM_AREA,
    VMALLOC_PAGES,
    VMAP_BBMAP_BITS_MAX,
    VMAP_BBMAP_BITS_MIN,
    VMAP_MAX_ALLOC,
)
from .designs import DesignInfo
from .holes import HoleNode, first_end_over, index_erase, index_insert
from .holes import hole_augment as _vmap_area_augment
from .holes import next_with_hole as _next_with_gap
from .holes import rank as _rank
from .rbtree import (
    RBRoot,
    rb_check,
    rb_first,
    rb_next,
)
from .vmalloc import VmapBlockInfo, _check_bool, _check_int, vm_struct
from .vmlist import VmlistKernel


def vmap_bbmap_bits(nr_cpus: int) -> int:
    """VMAP_BBMAP_BITS for NR_CPUS ``nr_cpus`` (2.6.28: not rounded to a power of two by the
    kernel; see the deviation in Rewrite.__init__)."""
    # VMALLOC_PAGES is VMALLOC_SPACE / PAGE_SIZE, a fixed guess of 128 GiB on 64-bit
    # (not the real 32 TiB range), so NR_CPUS=8192 gives 256-page blocks as in 6.1.
    bits = min(VMAP_BBMAP_BITS_MAX, max(VMAP_BBMAP_BITS_MIN, VMALLOC_PAGES // nr_cpus // 16))
    # Deviation: rounded down to a power of two, as ALIGN() to the block size needs one.
    return 1 << (bits.bit_length() - 1)


def nr_cpus_for_block_pages(bits: int, cpus: int) -> int | None:
    """An NR_CPUS >= ``cpus`` that gives ``bits``-page vmap blocks, or None."""
    if bits < 1 or bits & (bits - 1) or not VMAP_BBMAP_BITS_MIN <= bits <= VMAP_BBMAP_BITS_MAX:
        return None
    n = max(cpus, VMALLOC_PAGES // (16 * bits))
    for cand in (n, n - 1, n + 1, max(cpus, n // 2)):
        if cand >= cpus and vmap_bbmap_bits(cand) == bits:
            return cand
    return None


class vmap_area(HoleNode["vmap_area"]):  # noqa: N801 - kernel type name
    """``struct vmap_area {va_start, va_end, flags, rb_node, list, purge_list, private}``.

    The rb_node is this object's own RBNode fields; ``list_next``/``list_prev`` are
    ``list`` (vmap_area_list); ``private`` is the vm_struct or the vmap_block using
    the area. ``va_seq`` numbers allocations (the model's, to check the allocator gap).
    """

    __slots__ = ("flags", "private", "va_seq")

    def __init__(self, va_start: int, va_end: int, seq: int) -> None:
        # HoleNode.__init__ inlined (one vmap_area per allocation)
        self.rb_parent = None
        self.rb_left = None
        self.rb_right = None
        self.rb_red = True
        self.va_start = va_start
        self.va_end = va_end
        self.flags = 0
        self.private: Any = None
        self.list_next = self
        self.list_prev = self
        self.va_seq = seq
        # The model's search accelerator (not in 2.6.28): over the subtree, the largest
        # hole before an area (va_start - previous va_end, see _gap) and the node count.
        # They let alloc_vmap_area find where 2.6.28's linear walk stops in O(log n)
        # Python steps while still charging every area the kernel walks.
        self.sub_gap = 0
        self.sub_n = 1

    def __repr__(self) -> str:
        return f"vmap_area({self.va_start:#x}-{self.va_end:#x}, flags={self.flags:#x})"


class vmap_block_queue:  # noqa: N801 - kernel type name
    """Per-CPU ``struct vmap_block_queue {lock, free, dirty, nr_dirty}``.

    ``free`` is the free list, head first. ``blocks`` (the model's) holds every block
    this CPU created, full ones too: the fixed vm_unmap_aliases() walks it.
    """

    __slots__ = ("lock", "free", "dirty", "nr_dirty", "blocks")

    def __init__(self, lock: SpinLock) -> None:
        self.lock = lock
        self.free: list[vmap_block] = []
        self.dirty: list[vmap_block] = []
        self.nr_dirty = 0
        self.blocks: dict[int, vmap_block] = {}


class vmap_block:  # noqa: N801 - kernel type name
    """``struct vmap_block {lock, va, vbq, free, dirty, alloc_map, dirty_map, free_list}``.

    Bitmaps are Python ints (bit i = page i of the block). ``unflushed`` holds the
    dirty pages whose PTEs vm_unmap_aliases() has not cleared yet (the 2023 fix keeps
    such a range instead of re-flushing the whole dirty map). ``hint`` is the lowest
    page that may be free: alloc_map bits are never cleared, so the search may start
    there without changing the result (the simulated cost still counts a scan from 0).
    """

    __slots__ = ("lock", "va", "vbq", "free", "dirty", "alloc_map", "dirty_map",
                 "unflushed", "on_free_list", "hint")

    def __init__(self, lock: SpinLock, va: vmap_area, vbq: vmap_block_queue, bits: int) -> None:
        self.lock = lock
        self.va = va
        self.vbq = vbq
        self.free = bits
        self.dirty = 0
        self.alloc_map = 0
        self.dirty_map = 0
        self.unflushed = 0
        self.on_free_list = True
        self.hint = 0


INFO = DesignInfo(
    name="2.6.28",
    aliases=("rewrite",),
    kernel="Linux 2.6.28 (December 2008)",
    changed="vmap_areas in an rbtree, lazy batched TLB flushing, vm_unmap_aliases(), per-CPU vmap blocks (vm_map_ram)",
    commit="db64fe02258f mm: rewrite vmap layer (Nick Piggin)",
    leaves_out="the vfree_deferred path for vfree() from interrupts; module space",
)


class Rewrite(VmlistKernel, design=INFO):
    """Linux 2.6.28's vmap layer (see the module docstring).

    ``vm_unmap_aliases_2628=True`` keeps the shipped flaw: vm_unmap_aliases() walks
    only the per-CPU free lists, so dirty pages of full blocks stay mapped and cached
    (fixed upstream in 6.5 by Thomas Gleixner). By default the seed's promise holds.
    ``nr_cpus_config`` is NR_CPUS, which sizes VMAP_BBMAP_BITS.
    """

    has_vm_map_ram = True
    has_lazy_free = True
    tracepoints = frozenset({"alloc", "alloc_ret", "free_noflush", "purge", "purge_ret", "flush", "vfree",
                             "map_ram", "map_ram_ret", "unmap_ram", "unmap_aliases"})

    def __init__(self, *args: Any, vm_unmap_aliases_2628: bool = False,
                 nr_cpus_config: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        m = self.machine
        self.vm_unmap_aliases_2628 = _check_bool("vm_unmap_aliases_2628", vm_unmap_aliases_2628)
        if nr_cpus_config is None:
            nr_cpus_config = m.ncpus  # NR_CPUS follows the CPU count unless given
        _check_int("Kernel", "nr_cpus_config", nr_cpus_config)
        if nr_cpus_config < m.ncpus:
            raise ConfigError(f"nr_cpus_config ({nr_cpus_config}) < cpus ({m.ncpus})")
        bits = vmap_bbmap_bits(nr_cpus_config)
        self.nr_cpus = nr_cpus_config
        self.VMAP_BBMAP_BITS = bits
        self.VMAP_BLOCK_SIZE = bits * PAGE_SIZE
        self._vb_base = self.VMALLOC_START & ~(self.VMAP_BLOCK_SIZE - 1)
        self.vmap_area_lock = SpinLock(m, "vmap_area_lock")
        self.purge_lock = SpinLock(m, "purge_lock")
        self.vmap_block_tree_lock = SpinLock(m, "vmap_block_tree_lock")
        self.vmap_area_root: RBRoot[vmap_area] = RBRoot(_vmap_area_augment)
        self.vmap_area_list = vmap_area(0, 0, -1)  # list head sentinel, never in the tree
        self.vmap_block_tree: dict[int, vmap_block] = {}
        self.vmap_block_queue = [
            vmap_block_queue(SpinLock(m, f"vmap_block_queue[{i}].lock")) for i in range(m.ncpus)
        ]
        self.vmap_lazy_nr = 0
        self._seq = 0
        self._nr_areas = 0

    @classmethod
    def config_for(cls, cpus: int, block_pages: int | None = None) -> dict[str, Any] | None:
        """``nr_cpus_config`` for vmap blocks of ``block_pages`` pages on ``cpus`` CPUs."""
        if block_pages is None:
            return {}
        n = nr_cpus_for_block_pages(block_pages, cpus)
        return None if n is None else {"nr_cpus_config": n}

    @property
    def vmap_block_pages(self) -> int:
        return self.VMAP_BBMAP_BITS

    def vmap_block_for(self, addr: int) -> VmapBlockInfo | None:
        vb = self.vmap_block_tree.get(self.addr_to_vb_idx(addr))
        if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
            return None
        return VmapBlockInfo(self.vmap_block_queue.index(vb.vbq), vb.va.va_start, vb.free, vb.dirty)

    # -- the design's interface (Kernel's docstrings say what each method promises) -----------
    def can_place(self, addr: int, size: int) -> bool:
        """2.6.28's rule: no busy area (lazy ones included) may end at or after ``addr``
        and start before ``addr + size``: alloc_vmap_area()'s descent takes an area
        ending exactly at ``addr`` as in the way (its one-page gap)."""
        self._check_place("can_place", addr, size)
        if addr < self.VMALLOC_START or addr + size > self.VMALLOC_END + 1:
            return False
        n = self.vmap_area_root.rb_node
        first = None  # the lowest area with va_end >= addr
        while n is not None:
            if n.va_end >= addr:
                first = n
                n = n.rb_left
            else:
                n = n.rb_right
        return first is None or first.va_start >= addr + size

    def place_lazy_area(self, addr: int, size: int) -> bool:
        """alloc_vmap_area() over exactly [addr, addr + size), then free_unmap_vmap_area()."""
        self._check_place("place_lazy_area", addr, size)
        if not self.can_place(addr, size):
            return False
        va = self.alloc_vmap_area(size, PAGE_SIZE, addr, addr + size, -1)
        if va is None or va.va_start != addr:
            raise InvariantError(f"place_lazy_area: {addr:#x} was free, alloc_vmap_area() refused it")
        self.free_unmap_vmap_area(va)
        return True

    def place_vmap_block(self, addr: int) -> bool:
        """new_vmap_block() at ``addr``, then vm_map_ram() calls of falling sizes that
        hand out every page of it; all but the last (one page) are unmapped again."""
        _check_int("place_vmap_block", "address", addr)
        bsize = self.VMAP_BLOCK_SIZE
        if addr % bsize or not self.can_place(addr, bsize):
            return False
        if self.vmap_block_queue[self._cpu.id].free:
            return False  # vm_map_ram() would take this CPU's free pages first
        held = [self.alloc_page() for _ in range(VMAP_MAX_ALLOC)]
        if any(p is None for p in held):
            for p in held:
                if p is not None:
                    self.free_page(p)
            return False
        pages = [p for p in held if p is not None]
        if self.new_vmap_block(vstart=addr) is None:
            raise InvariantError(f"place_vmap_block: {addr:#x} was free, new_vmap_block() refused it")
        counts = [VMAP_MAX_ALLOC]
        left = self.VMAP_BBMAP_BITS - VMAP_MAX_ALLOC
        while left > VMAP_MAX_ALLOC:
            counts.append(VMAP_MAX_ALLOC)
            left -= VMAP_MAX_ALLOC
        c = VMAP_MAX_ALLOC // 2
        while left and c:
            if left - c >= 1:
                counts.append(c)
                left -= c
            c //= 2
        counts += [1] * left
        maps = []
        for c in counts:
            m = self.vm_map_ram(pages, c)
            if m is None or not addr <= m < addr + bsize:
                raise InvariantError(f"place_vmap_block: vm_map_ram({c}) did not use the new block at {addr:#x}")
            maps.append((m, c))
        for m, c in maps[:-1]:
            self.vm_unmap_ram(m, c)
        for p in pages[1:]:  # pages[0] stays mapped by the last (one-page) mapping
            self.free_page(p)
        return True

    def vmap_block_states(self) -> list[tuple[int, int, int, int, int]]:
        out = [(vb.va.va_start, vb.va.va_end, cpu_id, vb.alloc_map, vb.dirty_map)
               for cpu_id, vbq in enumerate(self.vmap_block_queue) for vb in vbq.blocks.values()]
        out.sort()
        return out

    def vmallocinfo_areas(self) -> Iterator[tuple[int, int, str, vm_struct | None]]:
        """The busy areas in address order (vm_structs; vmap blocks and large vm_map_ram
        areas as ``vm_map_ram``), then the lazily freed ones, as 6.x's s_show() and
        show_purge_info() print them. Deviation from 6.x: it coalesces adjacent lazy
        areas in its purge tree; 2.6.28 keeps them apart, one line per freed area."""
        lazy: list[vmap_area] = []
        ram = self._ram_maps
        for va in self.vmap_areas():
            priv = va.private
            if va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING):
                lazy.append(va)
            elif va.flags & VM_VM_AREA and isinstance(priv, vm_struct):
                yield va.va_start, va.va_end, "vm", priv
            elif isinstance(priv, vmap_block) or va.va_start in ram:
                yield va.va_start, va.va_end, "vm_map_ram", None
        for va in lazy:
            yield va.va_start, va.va_end, "unpurged", None

    # -- the rbtree of vmap_areas ---------------------------------------------------------
    def find_vmap_area(self, addr: int) -> vmap_area | None:
        """The busy area starting exactly at ``addr`` (lazy ones included)."""
        cpu = self._cpu
        lock = self.vmap_area_lock
        lock.lock(cpu)
        n = self.vmap_area_root.rb_node
        visits = 0
        while n is not None:
            visits += 1
            if addr < n.va_start:
                n = n.rb_left
            elif addr >= n.va_end:
                n = n.rb_right
            else:
                break
        self.machine.mem_access(cpu, "find_vmap_area", visits)
        lock.unlock(cpu)
        if n is not None and n.va_start == addr:
            return n
        return None

    def _area_containing(self, addr: int) -> vmap_area | None:
        n = self.vmap_area_root.rb_node
        while n is not None:
            if addr < n.va_start:
                n = n.rb_left
            elif addr >= n.va_end:
                n = n.rb_right
            else:
                return n
        return None

    def insert_vmap_area__(self, va: vmap_area) -> None:
        """__insert_vmap_area(): link into the rbtree and, after its rb_prev, the list."""
        index_insert(self.vmap_area_root, self.vmap_area_list, va)
        self._nr_areas += 1

    def free_vmap_area__(self, va: vmap_area) -> None:
        """__free_vmap_area(): unlink from the rbtree and the list (caller holds the lock)."""
        index_erase(self.vmap_area_root, self.vmap_area_list, va)
        va.private = None
        self._nr_areas -= 1

    def _walk_stop(self, first: vmap_area, size: int, mask: int, vend: int) -> tuple[vmap_area, int]:
        """Where alloc_vmap_area's linear walk from ``first`` stops: the last area it
        visits and the address it ends with (the hole after that area, aligned).

        The walk visits ``first`` and each following area w while the aligned address
        after the previous area plus ``size`` overlaps w and stays <= vend.
        """
        need = (size >> PAGE_SHIFT) + 1  # pages: a hole that fits has va_start - prev.va_end >= this
        x = first
        while True:
            w = _next_with_gap(x, need)
            if w is None:
                break
            prev = w.list_prev
            a = (prev.va_end + PAGE_SIZE + mask) & ~mask
            if a + size <= w.va_start:
                break
            x = w
        # the first area after which the address would pass vend ends the walk too
        over = first_end_over(self.vmap_area_root, vend, size, mask, PAGE_SIZE)
        last = w.list_prev if w is not None else self.vmap_area_list.list_prev
        if over is not None and over.va_start < last.va_start:
            last = over if over.va_start >= first.va_start else first
        return last, (last.va_end + PAGE_SIZE + mask) & ~mask

    def alloc_vmap_area(self, size: int, align: int, vstart: int, vend: int,
                        node: int) -> vmap_area | None:
        """First-fit allocation of [addr, addr+size) in [vstart, vend], aligned.

        Leaves a one-page gap after every area it skips; on failure purges the lazy
        areas synchronously and retries once from vstart, then prints the kernel's
        message and returns None (the kernel's ERR_PTR(-EBUSY)).
        """
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "alloc_vmap_area")
        try:
            assert size and not size & (PAGE_SIZE - 1)
            m = self.machine
            cpu = self._cpu
            if self.tracer is not None:
                self.trace("alloc", size=size, align=align, vstart=vstart, vend=vend)
            m.charge(cpu, "kmalloc", self.cost.kmalloc)
            root = self.vmap_area_root
            lock = self.vmap_area_lock
            mask = align - 1
            purged = False
            while True:
                addr = (vstart + mask) & ~mask
                lock.lock(cpu)
                visits = 0
                # 2.6.28's descent: ``first`` is the first area met that overlaps
                # [addr, addr+size) on the way left, or the last one passed going right.
                first = None
                n = root.rb_node
                while n is not None:
                    visits += 1
                    if n.va_end >= addr:
                        if first is None and n.va_start < addr + size:
                            first = n
                        n = n.rb_left
                    else:
                        first = n
                        n = n.rb_right
                if first is not None and first.va_end < addr:
                    visits += 1
                    first = first.list_next  # rb_next(): the list has the same order
                    if first is self.vmap_area_list:
                        first = None
                if first is not None and addr + size > first.va_start and addr + size <= vend:
                    # 2.6.28 walks with rb_next() from ``first``, moving addr past each area
                    # it clashes with, until the hole before an area fits or addr passes vend.
                    # The model finds where that walk stops in O(log n) and charges every
                    # area the kernel visits (visits = areas walked).
                    stop, addr = self._walk_stop(first, size, mask, vend)
                    visits += _rank(stop) - _rank(first) + 1
                m.mem_access(cpu, "alloc_vmap_area", visits)
                if addr + size > vend or addr < vstart:
                    lock.unlock(cpu)
                    if not purged:
                        self.purge_vmap_area_lazy()
                        purged = True
                        continue
                    if m.printk_ratelimit(cpu):
                        m.warn("vmap allocation failed: use vmalloc=<size> to increase size.")
                    m.charge(cpu, "kfree", self.cost.kmalloc)
                    if self.tracer is not None:
                        self.trace("alloc_ret", va_start=0, va_end=0)
                    return None
                self._seq += 1
                va = vmap_area(addr, addr + size, self._seq)
                self.insert_vmap_area__(va)
                lock.unlock(cpu)
                if self.tracer is not None:
                    self.trace("alloc_ret", va_start=va.va_start, va_end=va.va_end)
                return va
        finally:
            self.machine.leave(chain_cpu, chain)

    # -- lazy freeing -------------------------------------------------------------------
    def purge_vmap_area_lazy__(self, start: int, end: int, sync: bool, force_flush: bool) -> None:
        """__purge_vmap_area_lazy(): unmap every lazy area, one flush over the union.

        ``start``/``end`` widen the flushed range (vm_unmap_aliases passes the dirty
        block ranges); without sync or force_flush, a purge already running elsewhere
        means this one is skipped (trylock).
        """
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__purge_vmap_area_lazy")
        try:
            m = self.machine
            cpu = self._cpu
            tracing = self.tracer is not None
            if tracing:
                self.trace("purge", start=start, end=end)
            if not sync and not force_flush:
                if not self.purge_lock.trylock(cpu):
                    if tracing:
                        self.trace("purge_ret", ret=0)
                    return
            else:
                self.purge_lock.lock(cpu)
            valist = []
            nr = 0
            head = self.vmap_area_list
            va = head.list_next
            walked = 0
            while va is not head:
                walked += 1
                if va.flags & VM_LAZY_FREE:
                    if va.va_start < start:
                        start = va.va_start
                    if va.va_end > end:
                        end = va.va_end
                    nr += (va.va_end - va.va_start) >> PAGE_SHIFT
                    m.clear_ptes(cpu, "vunmap_page_range", va.va_start, va.va_end)
                    valist.append(va)
                    va.flags = (va.flags | VM_LAZY_FREEING) & ~VM_LAZY_FREE
                va = va.list_next
            m.mem_access(cpu, "__purge_vmap_area_lazy", walked)
            if nr:
                assert nr <= self.vmap_lazy_nr, "BUG_ON(nr > vmap_lazy_nr)"
                self.vmap_lazy_nr -= nr
            if nr or force_flush:
                # x86 2.6.28: flush_tlb_kernel_range() is flush_tlb_all(): a global IPI.
                m.flush_tlb_all(cpu, "flush_tlb_kernel_range")
                self.purges += 1
            if nr:
                self.vmap_area_lock.lock(cpu)
                for va in valist:
                    self.free_vmap_area__(va)
                m.charge(cpu, "kfree", len(valist) * self.cost.kmalloc)
                self.vmap_area_lock.unlock(cpu)
            self.purge_lock.unlock(cpu)
            if tracing:
                # Deviation: flush fires after the purge (its range is the same), where the
                # model's traces have always put it, so generated traces keep their timestamps.
                if nr or force_flush:
                    self.trace("flush", start=start, end=end)
                self.trace("purge_ret", ret=int(bool(nr or force_flush)))
        finally:
            self.machine.leave(chain_cpu, chain)

    def try_purge_vmap_area_lazy(self) -> None:
        self.purge_vmap_area_lazy__(1 << 64, 0, False, False)

    def purge_vmap_area_lazy(self) -> None:
        self.purge_vmap_area_lazy__(1 << 64, 0, True, False)

    def free_unmap_vmap_area_noflush(self, va: vmap_area) -> None:
        """Mark ``va`` lazily freed; its PTEs stay until the next purge (2.6.28)."""
        if self.tracer is not None:
            self.trace("free_noflush", va_start=va.va_start, va_end=va.va_end)
        va.flags |= VM_LAZY_FREE
        self.vmap_lazy_nr += (va.va_end - va.va_start) >> PAGE_SHIFT
        if self.vmap_lazy_nr > self.lazy_max_pages():
            self.try_purge_vmap_area_lazy()

    def free_unmap_vmap_area(self, va: vmap_area) -> None:
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "free_unmap_vmap_area")
        try:
            # flush_cache_vunmap() is a no-op on x86.
            self.free_unmap_vmap_area_noflush(va)
        finally:
            self.machine.leave(chain_cpu, chain)

    # -- the vm_struct hooks ---------------------------------------------------------------
    def get_vm_area_node__(self, size: int, flags: int, start: int, end: int, node: int,
                           gfp_mask: int, caller: str, align: int = 1) -> vm_struct | None:
        """__get_vm_area_node(): a vmap_area plus a vm_struct linked into vmlist."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__get_vm_area_node")
        try:
            req = self._vm_area_request(size, flags, align)
            if req is None:
                return None
            size, align = req
            m = self.machine
            cpu = self._cpu
            va = self.alloc_vmap_area(size, align, start, end, node)
            if va is None:
                m.charge(cpu, "kfree", self.cost.kmalloc)
                return None
            area = vm_struct(va.va_start, size, flags, caller)
            va.private = area
            va.flags |= VM_VM_AREA
            self.vmlist_lock.write_lock(cpu)
            walked = self.vmlist_link(area)
            m.mem_access(cpu, "__get_vm_area_node", walked)
            self.vmlist_lock.write_unlock(cpu)
            return area
        finally:
            self.machine.leave(chain_cpu, chain)

    def find_vm_area(self, addr: int) -> vm_struct | None:
        va = self.find_vmap_area(addr)
        if va is not None and va.flags & VM_VM_AREA and not va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING):
            area: vm_struct = va.private
            return area
        return None

    def remove_vm_area_(self, addr: int) -> vm_struct | None:
        """Take the area off vmlist and free its vmap_area lazily; the vm_struct or None."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "remove_vm_area")
        try:
            va = self.find_vmap_area(addr)
            # Deviation: a lazily freed area still has VM_VM_AREA in 2.6.28, so a second
            # vfree() would free it twice; the model refuses it as nonexistent.
            if va is None or not va.flags & VM_VM_AREA or va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING):
                return None
            vm: vm_struct = va.private
            cpu = self._cpu
            self._drop_live(va.va_start, va.va_end)
            self.free_unmap_vmap_area(va)
            vm.size -= PAGE_SIZE
            self.vmlist_lock.write_lock(cpu)
            walked = self.vmlist_unlink(vm)
            self.machine.mem_access(cpu, "remove_vm_area", walked)
            self.vmlist_lock.write_unlock(cpu)
            return vm
        finally:
            self.machine.leave(chain_cpu, chain)

    def _was_freed(self, addr: int) -> bool:
        va = self._area_containing(addr)
        return va is not None and va.va_start == addr and bool(va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING))

    # -- per-CPU vmap blocks ---------------------------------------------------------------
    def addr_to_vb_idx(self, addr: int) -> int:
        return (addr - self._vb_base) // self.VMAP_BLOCK_SIZE

    def new_vmap_block(self, vstart: int | None = None) -> vmap_block | None:
        """A new block for this CPU, at the head of its free list. ``vstart`` (the
        model's, for place_vmap_block()): exactly there, not the first fit from
        VMALLOC_START."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "new_vmap_block")
        try:
            m = self.machine
            cpu = self._cpu
            m.charge(cpu, "kmalloc", self.cost.kmalloc)
            size = self.VMAP_BLOCK_SIZE
            va = self.alloc_vmap_area(size, size, self.VMALLOC_START if vstart is None else vstart,
                                      self.VMALLOC_END if vstart is None else vstart + size, cpu.node)
            if va is None:
                m.charge(cpu, "kfree", self.cost.kmalloc)
                return None
            vbq = self.vmap_block_queue[cpu.id]
            vb = vmap_block(SpinLock(m, "vmap_block.lock"), va, vbq, self.VMAP_BBMAP_BITS)
            va.private = vb
            idx = self.addr_to_vb_idx(va.va_start)
            self.vmap_block_tree_lock.lock(cpu)
            self.vmap_block_tree[idx] = vb
            self.vmap_block_tree_lock.unlock(cpu)
            vbq.lock.lock(cpu)
            vbq.free.insert(0, vb)  # list_add: new blocks go to the head (2.6.28)
            vbq.blocks[idx] = vb
            vbq.lock.unlock(cpu)
            return vb
        finally:
            self.machine.leave(chain_cpu, chain)

    def free_vmap_block(self, vb: vmap_block) -> None:
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "free_vmap_block")
        try:
            cpu = self._cpu
            vbq = vb.vbq
            vbq.lock.lock(cpu)
            if vb.on_free_list:
                vbq.free.remove(vb)
                vb.on_free_list = False
            if vb.dirty:
                vbq.dirty.remove(vb)
                vbq.nr_dirty -= 1
            idx = self.addr_to_vb_idx(vb.va.va_start)
            del vbq.blocks[idx]
            vbq.lock.unlock(cpu)
            self.vmap_block_tree_lock.lock(cpu)
            tmp = self.vmap_block_tree.pop(idx)
            self.vmap_block_tree_lock.unlock(cpu)
            assert tmp is vb, "BUG_ON(tmp != vb)"
            self.free_unmap_vmap_area_noflush(vb.va)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vb_alloc(self, count: int) -> int | None:
        """Allocate 2**order pages (order = get_order(count pages)) from this CPU's blocks."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vb_alloc")
        try:
            cpu = self._cpu
            order = (count - 1).bit_length()
            n = 1 << order
            region = (1 << n) - 1
            bits = self.VMAP_BBMAP_BITS
            vbq = self.vmap_block_queue[cpu.id]
            while True:
                for vb in vbq.free:
                    lk = vb.lock
                    lk.lock(cpu)
                    amap = vb.alloc_map
                    # bitmap_find_free_region(): first naturally aligned free region.
                    i = (vb.hint + n - 1) & ~(n - 1)
                    while i < bits and (amap >> i) & region:
                        i += n
                    # the kernel scans from bit 0: charge one region test per candidate
                    ns = ((i >> order) + 1) * self.cost.cache_hit
                    cpu.clock += ns
                    prof = cpu.cprof
                    prof["bitmap_find_free_region"] = prof.get("bitmap_find_free_region", 0.0) + ns
                    if i < bits:
                        amap |= region << i
                        vb.alloc_map = amap
                        if i == vb.hint:
                            vb.hint = (~amap & (amap + 1)).bit_length() - 1
                        vb.free -= n
                        if not vb.free:
                            vbq.lock.lock(cpu)
                            vbq.free.remove(vb)
                            vb.on_free_list = False
                            vbq.lock.unlock(cpu)
                        lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
                        return vb.va.va_start + (i << PAGE_SHIFT)
                    lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
                if self.new_vmap_block() is None:
                    return None
        finally:
            self.machine.leave(chain_cpu, chain)

    def vb_free(self, addr: int, count: int) -> None:
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vb_free")
        try:
            cpu = self._cpu
            n = 1 << (count - 1).bit_length()
            vb = self.vmap_block_tree[(addr - self._vb_base) // self.VMAP_BLOCK_SIZE]  # radix_tree_lookup
            bits = ((1 << n) - 1) << ((addr - vb.va.va_start) >> PAGE_SHIFT)
            lk = vb.lock
            lk.lock(cpu)
            vb.dirty_map |= bits
            vb.unflushed |= bits
            if not vb.dirty:
                vbq = vb.vbq
                vbq.lock.lock(cpu)
                vbq.dirty.append(vb)
                vbq.nr_dirty += 1
                vbq.lock.unlock(cpu)
            vb.dirty += n
            lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
            if vb.dirty == self.VMAP_BBMAP_BITS:
                assert not vb.free and not vb.on_free_list, "BUG_ON(vb->free || !list_empty(&vb->free_list))"
                self.free_vmap_block(vb)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vm_map_ram(self, pages: Sequence[Page], count: int, node: int = -1,
                   prot: int = PAGE_KERNEL) -> int | None:
        """Map ``count`` pages; small counts come from this CPU's vmap_block."""
        self._check_pages("vm_map_ram", pages, count)
        if node != -1:
            self._check_node("vm_map_ram", node)
        if prot != PAGE_KERNEL:
            _check_int("vm_map_ram", "prot", prot)
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vm_map_ram")
        try:
            pages = pages[:count]
            tracing = self.tracer is not None
            if tracing:
                self.trace("map_ram", count=count, node=node)
            if count <= VMAP_MAX_ALLOC:
                addr = self.vb_alloc(count)
                if addr is None:
                    if tracing:
                        self.trace("map_ram_ret", addr=0)
                    return None
            else:
                va = self.alloc_vmap_area(count << PAGE_SHIFT, PAGE_SIZE, self.VMALLOC_START,
                                          self.VMALLOC_END, node)
                if va is None:
                    if tracing:
                        self.trace("map_ram_ret", addr=0)
                    return None
                addr = va.va_start
            self._ram_maps[addr] = count
            # vmap_page_range(), inlined on this hot path
            if self.machine.set_ptes(self._cpu, "vmap_page_range", addr, pages, prot, PAGE_KERNEL):
                self._record_partial_map(addr, pages)
                self.vm_unmap_ram(addr, count)
                if tracing:
                    self.trace("map_ram_ret", addr=0)
                return None
            vpn = addr >> PAGE_SHIFT
            live = self._live
            for i in range(count):
                live[vpn + i] = pages[i]
            if tracing:
                self.trace("map_ram_ret", addr=addr)
            return addr
        finally:
            self.machine.leave(chain_cpu, chain)

    def vm_unmap_ram(self, mem: int, count: int) -> None:
        """Release a vm_map_ram() mapping (lazily: the TLB flush is deferred)."""
        self._release_ram_map(mem, count)
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vm_unmap_ram")
        try:
            if count <= VMAP_MAX_ALLOC:
                self.vb_free(mem, count)
            else:
                va = self.find_vmap_area(mem)
                assert va is not None, "BUG_ON(!va)"
                self.free_unmap_vmap_area(va)
        finally:
            self.machine.leave(chain_cpu, chain)

    def _ram_was_freed(self, addr: int) -> bool:
        va = self._area_containing(addr)
        if va is None:
            return False
        vb = va.private
        if isinstance(vb, vmap_block):
            return bool((vb.dirty_map >> ((addr - va.va_start) >> PAGE_SHIFT)) & 1)
        return va.va_start == addr and bool(va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING))

    def vm_unmap_aliases(self) -> None:
        """Unmap and flush every deferred mapping: dirty block pages and lazy areas."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vm_unmap_aliases")
        try:
            if self.tracer is not None:
                self.trace("unmap_aliases")
            m = self.machine
            cpu = self._cpu
            start, end = 1 << 64, 0
            flush = False
            for vbq in self.vmap_block_queue:
                blocks = vbq.free if self.vm_unmap_aliases_2628 else list(vbq.blocks.values())
                for vb in blocks:
                    vb.lock.lock(cpu)
                    pending = vb.dirty_map if self.vm_unmap_aliases_2628 else vb.unflushed
                    base = vb.va.va_start
                    while pending:
                        i = (pending & -pending).bit_length() - 1
                        run = pending >> i
                        j = i + ((~run & (run + 1)).bit_length() - 1)
                        s = base + (i << PAGE_SHIFT)
                        e = base + (j << PAGE_SHIFT)
                        m.clear_ptes(cpu, "vunmap_page_range", s, e)
                        flush = True
                        if s < start:
                            start = s
                        if e > end:
                            end = e
                        pending &= ~(((1 << (j - i)) - 1) << i)
                    vb.unflushed = 0
                    vb.lock.unlock(cpu)
            self.purge_vmap_area_lazy__(start, end, True, flush)
        finally:
            self.machine.leave(chain_cpu, chain)

    # -- inspection and checks ----------------------------------------------------------------
    def vmap_areas(self) -> list[vmap_area]:
        """Every busy vmap_area (lazily freed ones included), in address order."""
        out = []
        head = self.vmap_area_list
        va = head.list_next
        while va is not head:
            out.append(va)
            va = va.list_next
        return out

    def busy_vmap_area(self, addr: int) -> vmap_area | None:
        """The area of vmap_area_root holding ``addr``, lazily freed ones included (they
        stay in the tree until the purge), uncharged."""
        return self._area_containing(addr)

    def lazy_vmap_areas(self) -> list[vmap_area]:
        """The areas on vmap_area_list flagged VM_LAZY_FREE (or VM_LAZY_FREEING, in a
        purge), in address order: 2.6.28 has no list of its own for them."""
        return [va for va in self.vmap_areas() if va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING)]

    def _reserved(self, addr: int) -> bool:
        va = self._area_containing(addr)
        if va is None:
            return False
        if va.flags & (VM_LAZY_FREE | VM_LAZY_FREEING):
            return True
        vb = va.private
        if isinstance(vb, vmap_block):
            return bool((vb.dirty_map >> ((addr - va.va_start) >> PAGE_SHIFT)) & 1)
        return False

    def _check_design(self) -> None:
        count = rb_check(self.vmap_area_root, lambda n: n.va_start)
        if count != self._nr_areas:
            raise AssertionError(f"rbtree holds {count} areas, {self._nr_areas} counted")
        head = self.vmap_area_list
        va = head.list_next
        node = rb_first(self.vmap_area_root)
        prev: vmap_area | None = None
        lazy = 0
        seen = 0
        while va is not head:
            seen += 1
            if node is not va:
                raise AssertionError(f"vmap_area_list out of step with the rbtree at {va.va_start:#x}")
            if va.list_next.list_prev is not va:
                raise AssertionError(f"vmap_area_list back link broken at {va.va_start:#x}")
            if va.va_start >= va.va_end or (va.va_start | va.va_end) & (PAGE_SIZE - 1):
                raise AssertionError(f"bad vmap_area {va.va_start:#x}-{va.va_end:#x}")
            if va.va_start < self.VMALLOC_START or va.va_end > self.VMALLOC_END + 1:
                raise AssertionError(f"vmap_area {va.va_start:#x} outside VMALLOC_START..END")
            if prev is not None:
                if prev.va_end > va.va_start:
                    raise AssertionError(f"busy areas overlap: {prev.va_start:#x} and {va.va_start:#x}")
                if va.va_seq > prev.va_seq and va.va_start < prev.va_end + PAGE_SIZE:
                    raise AssertionError(f"allocator gap missing before {va.va_start:#x}")
            sub_gap, sub_n = va.sub_gap, va.sub_n
            _vmap_area_augment(va)
            if (sub_gap, sub_n) != (va.sub_gap, va.sub_n):
                raise AssertionError(f"area {va.va_start:#x}: stale subtree data {sub_gap:#x}/{sub_n}")
            if va.flags & VM_LAZY_FREEING:
                raise AssertionError(f"area {va.va_start:#x} left in VM_LAZY_FREEING outside a purge")
            if va.flags & VM_LAZY_FREE:
                lazy += (va.va_end - va.va_start) >> PAGE_SHIFT
            elif va.flags & VM_VM_AREA:
                vm = va.private
                if not isinstance(vm, vm_struct) or vm.addr != va.va_start or vm.size != va.va_end - va.va_start:
                    raise AssertionError(f"vm_struct of {va.va_start:#x} does not match its area")
            prev = va
            node = rb_next(va)
            va = va.list_next
        if seen != count:
            raise AssertionError(f"vmap_area_list has {seen} areas, the rbtree {count}")
        if lazy != self.vmap_lazy_nr:
            raise AssertionError(f"vmap_lazy_nr is {self.vmap_lazy_nr}, lazy areas hold {lazy} pages")
        live_areas = {va.va_start for va in self.vmap_areas()
                      if va.flags & VM_VM_AREA and not va.flags & VM_LAZY_FREE}
        if live_areas != set(self._vmlist_addrs):
            raise AssertionError("vmlist and the live VM_VM_AREA areas differ")
        bits = self.VMAP_BBMAP_BITS
        full = (1 << bits) - 1
        nblocks = 0
        for cpu_id, vbq in enumerate(self.vmap_block_queue):
            for idx, vb in vbq.blocks.items():
                nblocks += 1
                if self.vmap_block_tree.get(idx) is not vb:
                    raise AssertionError(f"block {idx} of CPU {cpu_id} missing from vmap_block_tree")
                if vb.va.private is not vb or vb.va.flags & VM_LAZY_FREE:
                    raise AssertionError(f"block {idx} has a freed or foreign vmap_area")
                if vb.alloc_map & ~full or vb.dirty_map & ~vb.alloc_map or vb.unflushed & ~vb.dirty_map:
                    raise AssertionError(f"block {idx}: bitmaps inconsistent")
                if vb.free != bits - vb.alloc_map.bit_count():
                    raise AssertionError(f"block {idx}: free={vb.free}, bitmap says {bits - vb.alloc_map.bit_count()}")
                if vb.dirty != vb.dirty_map.bit_count():
                    raise AssertionError(f"block {idx}: dirty={vb.dirty}, bitmap says {vb.dirty_map.bit_count()}")
                if vb.dirty >= bits:
                    raise AssertionError(f"block {idx} fully dirty but not freed")
                if vb.on_free_list != (vb in vbq.free) or vb.on_free_list != (vb.free > 0):
                    raise AssertionError(f"block {idx}: free-list membership wrong (free={vb.free})")
                if (vb.dirty > 0) != (vb in vbq.dirty):
                    raise AssertionError(f"block {idx}: dirty-list membership wrong")
                if vb.hint and (vb.alloc_map & ((1 << vb.hint) - 1)) != (1 << vb.hint) - 1:
                    raise AssertionError(f"block {idx}: search hint {vb.hint} skips a free page")
            if vbq.nr_dirty != len(vbq.dirty):
                raise AssertionError(f"CPU {cpu_id}: nr_dirty {vbq.nr_dirty} != {len(vbq.dirty)}")
        if nblocks != len(self.vmap_block_tree):
            raise AssertionError("vmap_block_tree holds blocks no CPU owns")
        for addr, count in self._ram_maps.items():
            if count <= VMAP_MAX_ALLOC:
                blk = self.vmap_block_tree.get(self.addr_to_vb_idx(addr))
                if blk is None:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} has no block")
                off = (addr - blk.va.va_start) >> PAGE_SHIFT
                n = 1 << (count - 1).bit_length()
                region = ((1 << n) - 1) << off
                if blk.alloc_map & region != region or blk.dirty_map & region:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} not allocated or already dirty")
            else:
                area = self._area_containing(addr)
                if area is None or area.va_start != addr or area.flags & VM_LAZY_FREE:
                    raise AssertionError(f"large vm_map_ram mapping {addr:#x} has no busy area")
