"""Linux 6.9's vmap layer: Uladzislau Rezki's "vmap nodes" ("Mitigate a vmap lock
contention", v3, merged for 6.9) on top of 6.1 and the 6.3-6.5 changes.

What 6.9 keeps from 6.1 (``vmapsim.mm.linux61``): the global free tree
(``free_vmap_area_root`` under ``free_vmap_area_lock``) and its lowest-fit allocator
(``va_clip`` is 6.1's ``adjust_va_to_fit_type``), ``vmap_purge_lock``, one global
``vmap_lazy_nr`` and the drain work.

What changed before the nodes:

- 6.3 (Baoquan He): ``vmap_area.flags`` with ``VMAP_RAM``/``VMAP_BLOCK``; vmallocinfo
  prints ``vm_map_ram`` only for VMAP_RAM areas; each vmap_block has a ``used_map``;
- 6.4: the vmap blocks live in per-CPU xarrays chosen by ``addr_to_vb_xa()`` (the "CPU"
  is a hash of the address); ``find_unlink_vmap_area()``;
- 6.5 (Thomas Gleixner): ``_vm_unmap_aliases()`` takes ``vmap_purge_lock`` first, walks
  every block of every xarray (so full blocks are flushed too), purges fragmented blocks
  in the same walk only when less than ``VMAP_PURGE_THRESHOLD`` is free, and resets the
  dirty range it flushed.

The nodes: ``nr_vmap_nodes = clamp(num_possible_cpus(), 1, 128)`` ``vmap_node``s, each
with its own busy and lazy trees and locks, ``pool[MAX_VA_SIZE_PAGES]`` of free areas of
one exact size each (``pool_lock``), ``purge_list``, ``purge_work`` and ``nr_purged``.
The address space is cut into 16-page zones dealt round-robin to the nodes
(``addr_to_node``): an area is busy in the node of its start address. An allocation of
the whole vmalloc range first tries the exact-size pool of the allocating CPU's node
(``node_alloc``), else the global free tree, and remembers that node in its flags
(``encode_vn_id``): on free it goes to that node's lazy tree (not coalesced any more).
``__purge_vmap_area_lazy`` decays every node's pools by a quarter, flushes once over all
nodes' lazy areas, and purges the nodes in parallel: helper work on the nodes' CPUs
(``purge_vmap_node``) while the caller purges the rest; an area goes back to its node's
pool if it fits one, else (in descending order) to the global free tree.

Sources: ``shared/reference/linux-vmalloc-modern.md`` sections 2 and 3 (the v3 patches,
the 6.4-era and a recent mm/vmalloc.c).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..errors import ConfigError
from ..hw.locks import SpinLock
from ..hw.physmem import Page
from . import kva
from .constants import PAGE_KERNEL, PAGE_SHIFT, PAGE_SIZE, VM_ALLOC, VMAP_MAX_ALLOC
from .designs import DesignInfo
from .kva import ULONG_MAX, vmap_area, vmap_tree
from .linux61 import Linux61, vmap_block, vmap_block_queue
from .vmalloc import GFP_KERNEL, vm_struct

#: vmap_area.flags (6.3): a vm_map_ram area, and of those a vmap block
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2
VMAP_FLAGS_MASK = 0x3
BITS_PER_BYTE = 8
#: "A fast size storage contains VAs up to 1M size": pools of 1..256 pages
MAX_VA_SIZE_PAGES = 256
#: "Node partition is 16 pages"
VMAP_ZONE_PAGES = 16
#: the upper limit of nr_vmap_nodes
MAX_VMAP_NODES = 128

INFO = DesignInfo(
    name="6.9",
    aliases=("linux-6.9",),
    kernel="Linux 6.9 (May 2024)",
    changed="vmap nodes: per-node busy and lazy trees and locks, per-node pools of exact-size free "
            "areas, parallel purge over the nodes; with 6.3-6.5's area flags, per-CPU block xarrays "
            "and vm_unmap_aliases fixes",
    commit="72210662c5a2 mm: vmalloc: offload free_vmap_area_lock lock (Uladzislau Rezki, 6.9)",
    leaves_out="huge vmalloc, KASAN, module space, vread, vfree from interrupts, the pools' memory "
               "pressure other than the vmap-node shrinker",
)


def encode_vn_id(node_id: int) -> int:
    """The node id kept in ``va->flags`` above the VMAP_* byte (0 = no node)."""
    return (node_id + 1) << BITS_PER_BYTE


class vmap_pool:  # noqa: N801 - kernel type name
    """``struct vmap_pool {head, len}``: free areas of one size, most recent first."""

    __slots__ = ("head", "len")

    def __init__(self) -> None:
        self.head: list[vmap_area] = []  # head[0] is list_first_entry()
        self.len = 0


class rb_list:  # noqa: N801 - kernel type name
    """``struct rb_list {root, head, lock}``: a tree of areas with its list and lock."""

    __slots__ = ("tree", "lock")

    def __init__(self, lock: SpinLock) -> None:
        self.tree = vmap_tree()
        self.lock = lock


class vmap_node:  # noqa: N801 - kernel type name
    """``struct vmap_node`` (6.9): pools, busy and lazy trees, the purge work's state."""

    __slots__ = ("id", "pool", "pool_lock", "skip_populate", "busy", "lazy", "purge_list",
                 "purge_work", "nr_purged")

    def __init__(self, node_id: int, machine: Any) -> None:
        self.id = node_id
        self.pool = [vmap_pool() for _ in range(MAX_VA_SIZE_PAGES)]
        self.pool_lock = SpinLock(machine, f"vmap_nodes[{node_id}].pool_lock")
        self.skip_populate = False
        self.busy = rb_list(SpinLock(machine, f"vmap_nodes[{node_id}].busy.lock"))
        self.lazy = rb_list(SpinLock(machine, f"vmap_nodes[{node_id}].lazy.lock"))
        self.purge_list: list[vmap_area] = []
        #: purge_work.func: set while a helper owns this node's purge (flush_work waits)
        self.purge_work: Callable[[], None] | None = None
        self.nr_purged = 0


class Linux69(Linux61, design=INFO):
    """Linux 6.9's vmap layer (see the module docstring). ``nr_cpus_config`` as 6.1."""

    vunmap_looks_up_twice = False  # 6.3 on: vfree()/vunmap() go to remove_vm_area() at once
    vunmap_name = "vunmap"

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("vm_unmap_aliases_65", True)  # 6.5's walk of every block
        super().__init__(*args, **kw)
        if not self.vm_unmap_aliases_65:
            raise ConfigError("vm_unmap_aliases_65=False: that gap was fixed in 6.5; it is design 6.1's")
        m = self.machine
        n = min(max(m.ncpus, 1), MAX_VMAP_NODES)  # vmap_init_nodes(): clamp(num_possible_cpus(), 1, 128)
        self.nr_vmap_nodes = n
        self.vmap_zone_size = VMAP_ZONE_PAGES * PAGE_SIZE if n > 1 else 1
        self.vmap_nodes = [vmap_node(i, m) for i in range(n)]
        self.VMAP_PURGE_THRESHOLD = self.VMAP_BBMAP_BITS // 4
        #: per block: the pages handed out and not freed (6.3's used_map), bit i = page i
        self.used_map: dict[int, int] = {}

    # -- nodes ---------------------------------------------------------------------------------
    def addr_to_node_id(self, addr: int) -> int:
        return (addr // self.vmap_zone_size) % self.nr_vmap_nodes

    def addr_to_node(self, addr: int) -> vmap_node:
        return self.vmap_nodes[(addr // self.vmap_zone_size) % self.nr_vmap_nodes]

    def id_to_node(self, node_id: int) -> vmap_node:
        return self.vmap_nodes[node_id % self.nr_vmap_nodes]

    def decode_vn_id(self, flags: int) -> int:
        """The node id in ``flags``, or nr_vmap_nodes for "none" (is_vn_id_valid false)."""
        vn_id = flags >> BITS_PER_BYTE
        return vn_id - 1 if vn_id else self.nr_vmap_nodes

    # -- the busy trees (the hooks of the 6.1 code) ---------------------------------------------
    def _insert_busy(self, va: vmap_area) -> None:
        cpu = self._cpu
        vn = self.addr_to_node(va.va_start)
        lock = vn.busy.lock
        lock.lock(cpu)
        kva.insert_vmap_area(va, vn.busy.tree)
        self._charge_walk(vn.busy.tree, "insert_vmap_area")
        lock.unlock(cpu)

    def _unlink_busy(self, va: vmap_area) -> None:
        cpu = self._cpu
        vn = self.addr_to_node(va.va_start)
        vn.busy.lock.lock(cpu)
        kva.unlink_va(va, vn.busy.tree)
        vn.busy.lock.unlock(cpu)

    def _busy_areas(self) -> Iterable[vmap_area]:
        for vn in self.vmap_nodes:
            yield from vn.busy.tree

    def _lazy_areas(self) -> Iterable[vmap_area]:
        for vn in self.vmap_nodes:
            yield from vn.lazy.tree

    def _busy_lookup(self, addr: int) -> vmap_area | None:
        for vn in self.vmap_nodes:
            va = kva.find_vmap_area__(addr, vn.busy.tree)
            vn.busy.tree.visits = 0
            if va is not None:
                return va
        return None

    def _pcpu_insert_busy(self, vas: list[vmap_area]) -> list[vm_struct]:
        """6.9: each area into its address's node, with its vm_struct, under that node's lock."""
        vms: list[vm_struct] = []
        for va in vas:
            va.flags = 0
            self._insert_busy(va)
            vm = vm_struct(va.va_start, va.va_end - va.va_start, VM_ALLOC, self.PCPU_CALLER)
            va.vm = vm
            vms.append(vm)
        return vms

    def vm_map_ram(self, pages: Sequence[Page], count: int, node: int = -1,
                   prot: int = PAGE_KERNEL) -> int | None:
        addr = super().vm_map_ram(pages, count, node, prot)
        if addr is not None and count > VMAP_MAX_ALLOC:
            va = self._busy_lookup(addr)
            assert va is not None
            va.flags |= VMAP_RAM  # alloc_vmap_area(..., VMAP_RAM, NULL) in 6.9
        return addr

    def setup_vmalloc_vm(self, va: vmap_area, vm: vm_struct) -> None:
        # 6.9 sets va->vm inside alloc_vmap_area(), before the area is busy: no lock.
        # Deviation: here it is set just after the insertion (nothing runs in between).
        va.vm = vm

    def _pool_areas(self) -> Iterator[vmap_area]:
        for vn in self.vmap_nodes:
            for vp in vn.pool:
                yield from vp.head

    def _find_busy(self, addr: int, unlink: bool, fn: str) -> vmap_area | None:
        """find_vmap_area()/find_unlink_vmap_area(): from the address's node, then the
        next ones (``i = (i + 1) % nr_vmap_nodes``, as 6.9 has it; the backward scan,
        which finds an area spanning zones sooner, is Baoquan He's April 2025 patch
        "mm/vmalloc.c: find the vmap of vmap_nodes in reverse order"), until an area
        contains ``addr``."""
        cpu = self._cpu
        nr = self.nr_vmap_nodes
        i = j = self.addr_to_node_id(addr)
        while True:
            vn = self.vmap_nodes[i]
            lock = vn.busy.lock
            lock.lock(cpu)
            tree = vn.busy.tree
            va = kva.find_vmap_area__(addr, tree)
            if va is not None and unlink:
                kva.unlink_va(va, tree)
            self._charge_walk(tree, fn)
            lock.unlock(cpu)
            if va is not None:
                return va
            i = (i + 1) % nr
            if i == j:
                return None

    def find_vmap_area(self, addr: int) -> vmap_area | None:
        return self._find_busy(addr, False, "find_vmap_area")

    def find_unlink_vmap_area(self, addr: int) -> vmap_area | None:
        return self._find_busy(addr, True, "find_unlink_vmap_area")

    # -- allocation -------------------------------------------------------------------------------
    def size_to_va_pool(self, vn: vmap_node, size: int) -> vmap_pool | None:
        idx = (size - 1) // PAGE_SIZE
        return vn.pool[idx] if idx < MAX_VA_SIZE_PAGES else None

    def node_pool_del_va(self, vn: vmap_node, size: int, align: int, vstart: int,
                         vend: int) -> vmap_area | None:
        """The first area of the exact-size pool if it is aligned (else it goes to the
        pool's tail and the pool misses); no other entry is looked at."""
        vp = self.size_to_va_pool(vn, size)
        if vp is None or not vp.head:
            return None
        cpu = self._cpu
        vn.pool_lock.lock(cpu)
        va = None
        if vp.head:
            first = vp.head[0]
            if not first.va_start & (align - 1):
                if (first.va_end - first.va_start != size or first.va_start < vstart
                        or first.va_end > vend):
                    self.machine.warn("WARNING: at mm/vmalloc.c node_pool_del_va(): pool entry mismatch")
                else:
                    del vp.head[0]
                    vp.len -= 1
                    va = first
            else:
                vp.head.append(vp.head.pop(0))  # list_move_tail
        self.machine.mem_access(cpu, "node_pool_del_va", 1)
        vn.pool_lock.unlock(cpu)
        return va

    def node_alloc(self, size: int, align: int, vstart: int, vend: int) -> tuple[vmap_area | None, int, int]:
        """``(va or None, addr, vn_id)``: a pool hit of this CPU's node, for allocations of
        the whole vmalloc range only; addr is vend on a miss."""
        if vstart != self.VMALLOC_START or vend != self.VMALLOC_END or self.nr_vmap_nodes == 1:
            return None, vend, 0
        node_id = self._cpu.id % self.nr_vmap_nodes
        va = self.node_pool_del_va(self.id_to_node(node_id), size, align, vstart, vend)
        return va, (va.va_start if va is not None else vend), encode_vn_id(node_id)

    def alloc_vmap_area(self, size: int, align: int, vstart: int, vend: int, node: int,
                        gfp_mask: int = GFP_KERNEL, va_flags: int = 0) -> vmap_area | None:
        """6.9's alloc_vmap_area(): node_alloc(), else the global free tree; the area is
        busy in its address's node and remembers the allocating CPU's node."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "alloc_vmap_area")
        try:
            self._validate_alloc_args(size, align)
            tracing = self.tracer is not None
            if tracing:
                self.trace("alloc", size=size, align=align, vstart=vstart, vend=vend)
            va, addr, vn_id = self.node_alloc(size, align, vstart, vend)
            if va is None:
                self.machine.charge(self._cpu, "kmem_cache_alloc_node", self.cost.kmalloc)
            purged = False
            while True:  # retry:
                if addr == vend:
                    addr = self._alloc_from_free_tree(size, align, vstart, vend, node, gfp_mask)
                if addr != vend:
                    break
                if not purged:
                    self.reclaim_and_purge_vmap_areas()
                    purged = True
                    continue
                self._alloc_failed(size)
                return None
            if va is None:
                va = vmap_area(addr, addr + size)
            va.vm = None
            va.flags = va_flags | vn_id
            self._insert_busy(va)
            if tracing:
                self.trace("alloc_ret", va_start=va.va_start, va_end=va.va_end)
            return va
        finally:
            self.machine.leave(chain_cpu, chain)

    def reclaim_and_purge_vmap_areas(self) -> None:
        """The overflow path: fragmented blocks, then a purge with full pool decay."""
        cpu = self._cpu
        self.vmap_purge_lock.lock(cpu)
        self.purge_fragmented_blocks_allcpus()
        self.purge_vmap_area_lazy__(ULONG_MAX, 0, True)
        self.vmap_purge_lock.unlock(cpu)

    purge_vmap_area_lazy = reclaim_and_purge_vmap_areas

    # -- freeing -----------------------------------------------------------------------------------
    def free_vmap_area_noflush(self, va: vmap_area) -> None:
        """Into the lazy tree of the node that allocated it (not coalesced)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "free_vmap_area_noflush")
        try:
            cpu = self._cpu
            if self.tracer is not None:
                self.trace("free_noflush", va_start=va.va_start, va_end=va.va_end)
            if not kva.list_empty(va):
                self._unlink_busy(va)  # the 6.1 callers did not unlink it first
            self.vmap_lazy_nr += (va.va_end - va.va_start) >> PAGE_SHIFT
            nr_lazy = self.vmap_lazy_nr
            va.vm = None
            va.private = None
            vn_id = self.decode_vn_id(va.flags)
            vn = self.id_to_node(vn_id) if vn_id < self.nr_vmap_nodes else self.addr_to_node(va.va_start)
            lock = vn.lazy.lock
            lock.lock(cpu)
            kva.insert_vmap_area(va, vn.lazy.tree)
            self._charge_walk(vn.lazy.tree, "insert_vmap_area")
            lock.unlock(cpu)
            if nr_lazy > self.lazy_max_pages() and not self.drain_pending:
                self.drain_pending = True
                self.schedule_work("drain_vmap_area_work", self.drain_vmap_area_work)
        finally:
            self.machine.leave(chain_cpu, chain)

    def drain_vmap_area_work(self) -> None:
        """One purge under the mutex (6.9 has no 6.1 loop)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "drain_vmap_area_work")
        try:
            cpu = self._cpu
            self.drain_pending = False
            self.vmap_purge_lock.lock(cpu)
            self.purge_vmap_area_lazy__(ULONG_MAX, 0, False)
            self.vmap_purge_lock.unlock(cpu)
        finally:
            self.machine.leave(chain_cpu, chain)

    def remove_vm_area_(self, addr: int) -> vm_struct | None:
        """find_unlink_vmap_area(), then the lazy free (6.9: one lookup per vfree)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "remove_vm_area")
        try:
            va = self.find_unlink_vmap_area(addr)
            if va is None:
                return None
            if va.vm is None or va.vm.addr != addr:
                # Deviation: put back (6.9 leaves a vm-less area unlinked and returns NULL).
                self._insert_busy(va)
                return None
            vm: vm_struct = va.vm
            va.vm = None
            self._drop_live(va.va_start, va.va_end)
            self.free_unmap_vmap_area(va)
            return vm
        finally:
            self.machine.leave(chain_cpu, chain)

    def _was_freed(self, addr: int) -> bool:
        return any(kva.find_vmap_area__(addr, vn.lazy.tree) is not None for vn in self.vmap_nodes)

    # -- pools -------------------------------------------------------------------------------------
    def node_pool_add_va(self, vn: vmap_node, va: vmap_area) -> bool:
        vp = self.size_to_va_pool(vn, va.va_end - va.va_start)
        if vp is None:
            return False
        cpu = self._cpu
        vn.pool_lock.lock(cpu)
        vp.head.insert(0, va)  # list_add: at the head
        vp.len += 1
        vn.pool_lock.unlock(cpu)
        return True

    def reclaim_list_global(self, areas: list[vmap_area]) -> None:
        """Merge ``areas`` into the global free tree, in the order given."""
        if not areas:
            return
        cpu = self._cpu
        free = self.free_vmap_area_root
        self.free_vmap_area_lock.lock(cpu)
        for va in areas:
            va.rb_parent = va.rb_left = va.rb_right = None
            va.list_prev = va.list_next = va
            va.flags = 0
            kva.merge_or_add_vmap_area_augment(va, free)
        self._charge_walk(free, "reclaim_list_global")
        self.free_vmap_area_lock.unlock(cpu)

    def decay_va_pool_node(self, vn: vmap_node, full_decay: bool) -> None:
        """Give about a quarter of each pool back (all with ``full_decay``), coalesced.

        The kernel's quirk is kept: ``n_decay = len >> 2`` is 0 for a pool of fewer than
        four areas, and ``--n_decay`` wraps (unsigned), so such a pool decays entirely."""
        cpu = self._cpu
        decay = vmap_tree()
        for vp in vn.pool:
            if not vp.head:
                continue
            vn.pool_lock.lock(cpu)
            tmp = vp.head
            vp.head = []
            vn.pool_lock.unlock(cpu)
            if full_decay:
                vp.len = 0
            n_decay = vp.len >> 2
            taken = 0
            for va in tmp:
                taken += 1
                va.list_prev = va.list_next = va
                kva.merge_or_add_vmap_area(va, decay)
                if not full_decay:
                    vp.len -= 1
                    n_decay = (n_decay - 1) & ULONG_MAX
                    if not n_decay:
                        break
            rest = tmp[taken:]
            if not full_decay and rest:
                vn.pool_lock.lock(cpu)
                vp.head = rest
                vn.pool_lock.unlock(cpu)
        self._charge_walk(decay, "decay_va_pool_node")
        self.reclaim_list_global(list(decay))

    def purge_vmap_node(self, vn: vmap_node) -> None:
        """A node's purge (the helpers' work): each area back to its node's pool if it fits
        one, else (in descending address order) to the global free tree."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "purge_vmap_node")
        try:
            vn.nr_purged = 0
            nr_pages = 0
            local: list[vmap_area] = []
            for va in vn.purge_list:
                nr_pages += (va.va_end - va.va_start) >> PAGE_SHIFT
                vn.nr_purged += 1
                va.rb_parent = va.rb_left = va.rb_right = None
                va.list_prev = va.list_next = va
                if self.decode_vn_id(va.flags) < self.nr_vmap_nodes and not vn.skip_populate:
                    if self.node_pool_add_va(vn, va):
                        continue
                local.append(va)
            vn.purge_list = []
            self.vmap_lazy_nr -= nr_pages
            local.reverse()  # list_add() pushes at the head: descending address order
            self.reclaim_list_global(local)
        finally:
            self.machine.leave(chain_cpu, chain)

    def purge_vmap_area_lazy__(self, start: int, end: int, full_pool_decay: bool = False) -> bool:
        """6.9's __purge_vmap_area_lazy(): decay every node's pools, take every node's lazy
        areas, one flush over them all, then purge the nodes: helper work on the first
        ``clamp(vmap_lazy_nr / lazy_max_pages(), 1, nodes) - 1`` nodes' CPUs in parallel,
        the rest inline; wait for the helpers."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__purge_vmap_area_lazy")
        try:
            m = self.machine
            cpu = self._cpu
            if self.tracer is not None:
                self.trace("purge", start=start, end=end)
            purge_nodes: list[vmap_node] = []
            for vn in self.vmap_nodes:
                vn.purge_list = []
                vn.skip_populate = full_pool_decay
                self.decay_va_pool_node(vn, full_pool_decay)
                if not len(vn.lazy.tree):
                    continue
                vn.lazy.lock.lock(cpu)
                vn.purge_list = list(vn.lazy.tree)
                vn.lazy.tree = vmap_tree()
                vn.lazy.lock.unlock(cpu)
                start = min(start, vn.purge_list[0].va_start)
                end = max(end, vn.purge_list[-1].va_end)
                purge_nodes.append(vn)
            m.mem_access(cpu, "__purge_vmap_area_lazy", self.nr_vmap_nodes)
            nr_purged = 0
            if purge_nodes:
                self.flush_tlb_kernel_range(start, end)
                helpers = min(max(self.vmap_lazy_nr // self.lazy_max_pages(), 1), len(purge_nodes)) - 1
                done_at: list[float] = []
                for vn in purge_nodes:
                    if helpers > 0:
                        target = vn.id if vn.id < m.ncpus else cpu.id  # schedule_work_on(i) if online
                        vn.purge_work = self.purge_vmap_node_work(vn)
                        done_at.append(self.run_helper_work(target, vn.purge_work))
                        helpers -= 1
                    else:
                        vn.purge_work = None
                        self.purge_vmap_node(vn)
                        nr_purged += vn.nr_purged
                for vn in purge_nodes:
                    if vn.purge_work is not None:
                        nr_purged += vn.nr_purged
                        vn.purge_work = None
                if done_at and max(done_at) > cpu.clock:  # flush_work(): wait for the helpers
                    m.charge(cpu, "flush_work", max(done_at) - cpu.clock)
                self.purges += 1
            if self.tracer is not None:
                self.trace("purge_ret", ret=int(nr_purged > 0))
            return nr_purged > 0
        finally:
            self.machine.leave(chain_cpu, chain)

    def purge_vmap_node_work(self, vn: vmap_node) -> Callable[[], None]:
        def work() -> None:
            self.purge_vmap_node(vn)
        return work

    def run_helper_work(self, cpu_id: int, fn: Callable[[], None]) -> float:
        """Run queued work on CPU ``cpu_id`` starting now (this CPU's clock), as its
        kworker would, and return when it ends on that CPU's clock.

        Shortcut: the work runs at once in Python (the caller waits for it with
        flush_work() anyway); its time is charged to that CPU, which, if it was busy
        with its own work, starts the helper at its own clock (later)."""
        m = self.machine
        me = self._cpu
        other = m.cpus[cpu_id]
        if other is me:
            fn()
            return me.clock
        was_idle = other.idle
        if was_idle:
            m.set_idle(other, False)
        if other.clock < me.clock:
            other.clock = me.clock
        m.sync(other)
        self._cpu = other
        try:
            fn()
        finally:
            self._cpu = me
            if was_idle:
                m.set_idle(other, True)
        return other.clock

    # -- the vmap-node shrinker -----------------------------------------------------------------
    def vmap_node_shrink_count(self) -> int:
        """count_objects of the "vmap-node" shrinker: areas held in every pool."""
        return sum(vp.len for vn in self.vmap_nodes for vp in vn.pool)

    def vmap_node_shrink_scan(self) -> int:
        """scan_objects: every node's pools decayed in full; returns SHRINK_STOP (-1)."""
        cpu = self._cpu
        self.vmap_purge_lock.lock(cpu)  # the later stable fix (Fixes: 7679ba6b36db)
        for vn in self.vmap_nodes:
            self.decay_va_pool_node(vn, True)
        self.vmap_purge_lock.unlock(cpu)
        return -1

    # -- vmap blocks: 6.3-6.5 -----------------------------------------------------------------------
    def addr_to_vb_xa_cpu(self, addr: int) -> int:
        """Which CPU's xarray holds the block at ``addr`` (6.4: a hash of the address).

        Deviation: the model keeps 6.1's one ``vmap_blocks`` dict for lookups (same
        results: an index finds one block either way) and uses this hash only where the
        order of the per-CPU xarrays shows, in _vm_unmap_aliases()'s walk."""
        return (addr // self.VMAP_BLOCK_SIZE) % self.machine.ncpus

    def new_vmap_block(self, order: int, vstart: int | None = None) -> int | None:
        addr = super().new_vmap_block(order, vstart)
        if addr is not None:
            vb = self.vmap_blocks[self.addr_to_vb_idx(addr)]
            vb.va.flags |= VMAP_RAM | VMAP_BLOCK
            self.used_map[addr] = (1 << (1 << order)) - 1
        return addr

    def free_vmap_block(self, vb: vmap_block) -> None:
        self.used_map.pop(vb.va.va_start, None)
        super().free_vmap_block(vb)

    def vb_alloc(self, count: int) -> int | None:
        addr = super().vb_alloc(count)
        if addr is not None:
            n = 1 << (count - 1).bit_length()
            base = addr & ~(self.VMAP_BLOCK_SIZE - 1)
            if base in self.used_map:
                self.used_map[base] |= ((1 << n) - 1) << ((addr - base) >> PAGE_SHIFT)
        return addr

    def vb_free(self, addr: int, count: int) -> None:
        n = 1 << (count - 1).bit_length()
        base = addr & ~(self.VMAP_BLOCK_SIZE - 1)
        if base in self.used_map:
            self.used_map[base] &= ~(((1 << n) - 1) << ((addr - base) >> PAGE_SHIFT))
        super().vb_free(addr, count)

    def purge_fragmented_block(self, vb: vmap_block, vbq: vmap_block_queue, purge: list[vmap_block],
                               force_purge: bool) -> bool:
        """6.5: purge a block with no live mapping, unless it still has a quarter free."""
        bits = self.VMAP_BBMAP_BITS
        if vb.free + vb.dirty != bits or vb.dirty == bits:
            return False
        if not (force_purge or vb.free < self.VMAP_PURGE_THRESHOLD):
            return False
        vb.free = 0
        vb.dirty = bits
        vb.dirty_min = 0
        vb.dirty_max = bits
        cpu = self._cpu
        vbq.lock.lock(cpu)
        if vb.on_free_list:
            vbq.free.remove(vb)
            vb.on_free_list = False
        vbq.lock.unlock(cpu)
        purge.append(vb)
        return True

    def purge_fragmented_blocks(self, cpu_id: int) -> None:
        cpu = self._cpu
        vbq = self.vmap_block_queue[cpu_id]
        purge: list[vmap_block] = []
        for vb in list(vbq.free):
            vb.lock.lock(cpu)
            self.purge_fragmented_block(vb, self.vmap_block_queue[vb.cpu], purge, True)
            vb.lock.unlock(cpu)
        self.machine.mem_access(cpu, "purge_fragmented_blocks", len(vbq.free) + len(purge))
        for vb in purge:
            self.free_vmap_block(vb)

    def vm_unmap_aliases_(self, start: int, end: int, flush: bool) -> None:
        """6.5's _vm_unmap_aliases(): under vmap_purge_lock, every block of every CPU's
        xarray: purge it if fragmented (and not a quarter free), else add its dirty range
        to the flush and reset that range."""
        cpu = self._cpu
        bits = self.VMAP_BBMAP_BITS
        self.vmap_purge_lock.lock(cpu)
        purge: list[vmap_block] = []
        by_xa: dict[int, list[vmap_block]] = {}
        for vb in self.vmap_blocks.values():
            by_xa.setdefault(self.addr_to_vb_xa_cpu(vb.va.va_start), []).append(vb)
        for xa_cpu in sorted(by_xa):
            for vb in sorted(by_xa[xa_cpu], key=lambda b: b.va.va_start):  # xa_for_each: index order
                vb.lock.lock(cpu)
                if (not self.purge_fragmented_block(vb, self.vmap_block_queue[vb.cpu], purge, False)
                        and vb.dirty_max and vb.dirty != bits):
                    base = vb.va.va_start
                    start = min(base + (vb.dirty_min << PAGE_SHIFT), start)
                    end = max(base + (vb.dirty_max << PAGE_SHIFT), end)
                    vb.dirty_min = bits  # "Prevent that this is flushed again"
                    vb.dirty_max = 0
                    vb.unflushed = 0
                    flush = True
                vb.lock.unlock(cpu)
        for vb in purge:  # free_purged_blocks()
            self.free_vmap_block(vb)
        if not self.purge_vmap_area_lazy__(start, end, False) and flush:
            self.flush_tlb_kernel_range(start, end)
        self.vmap_purge_lock.unlock(cpu)

    # -- inspection ----------------------------------------------------------------------------------
    def vmap_areas(self) -> list[vmap_area]:
        out = list(self._busy_areas()) + list(self._lazy_areas())
        out.sort(key=lambda va: va.va_start)
        return out

    def free_areas(self) -> list[vmap_area]:
        """The global free tree's areas and the pools' (sorted by address)."""
        out = list(self.free_vmap_area_root) + list(self._pool_areas())
        out.sort(key=lambda va: va.va_start)
        return out

    def vmallocinfo_areas(self) -> Iterator[tuple[int, int, str, vm_struct | None]]:
        for vn in self.vmap_nodes:
            for va in vn.busy.tree:
                if va.vm is not None:
                    yield va.va_start, va.va_end, "vm", va.vm
                elif va.flags & VMAP_RAM:
                    yield va.va_start, va.va_end, "vm_map_ram", None
        for vn in self.vmap_nodes:
            for va in vn.lazy.tree:
                yield va.va_start, va.va_end, "unpurged", None

    def vmallocinfo(self, style: str | None = None) -> str:
        """/proc/vmallocinfo as 6.9 prints it: node by node, each node's busy areas in
        address order (``vm_map_ram`` only for VMAP_RAM areas), then node by node the
        lazy areas, one line each (so not globally sorted)."""
        if style not in (None, "modern"):
            return super().vmallocinfo(style)
        cpu = self._cpu
        nodes = self.machine.mem.nodes
        out: list[str] = []
        # vmalloc_info_show() is one show function (no s_start, so no vmap_purge_lock as
        # 6.1 took): each node's busy list under its busy.lock, then show_purge_info():
        # each node's lazy list under its lazy.lock
        for vn in self.vmap_nodes:
            vn.busy.lock.lock(cpu)
            for va in vn.busy.tree:
                if va.vm is not None:
                    out.append(self._vm_line(va.vm, nodes))
                elif va.flags & VMAP_RAM:
                    out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {va.va_end - va.va_start:7d} "
                               f"vm_map_ram\n")
            vn.busy.lock.unlock(cpu)
        for vn in self.vmap_nodes:
            vn.lazy.lock.lock(cpu)
            for va in vn.lazy.tree:
                out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {va.va_end - va.va_start:7d} "
                           f"unpurged vm_area\n")
            vn.lazy.lock.unlock(cpu)
        return "".join(out)

    def _reserved(self, addr: int) -> bool:
        if self._was_freed(addr):
            return True
        vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
        if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
            return False
        return ((addr - vb.va.va_start) >> PAGE_SHIFT) < self.VMAP_BBMAP_BITS - vb.free

    # -- checks: one per invariant ---------------------------------------------------------------
    def _check_design(self) -> None:
        self._check_globals_unused()
        self._check_node_trees()
        self._check_node_placement()
        self._check_pools()
        super()._check_design()

    def _check_globals_unused(self) -> None:
        if len(self.vmap_area_root) or len(self.purge_vmap_area_root):
            raise AssertionError("6.1's global busy/lazy trees hold areas (6.9 keeps them per node)")

    def _check_node_trees(self) -> None:
        for vn in self.vmap_nodes:
            for name, tree in (("busy", vn.busy.tree), ("lazy", vn.lazy.tree)):
                try:
                    kva.check_rbtree(tree)
                    kva.check_list(tree)
                    kva.check_no_overlap(tree)
                except AssertionError as e:
                    raise AssertionError(f"node {vn.id} {name} tree: {e}") from None

    def _check_node_placement(self) -> None:
        """A busy area sits in the node of its start address; a lazy one in its vn_id's."""
        for vn in self.vmap_nodes:
            for va in vn.busy.tree:
                if self.addr_to_node_id(va.va_start) != vn.id:
                    raise AssertionError(f"busy area {va.va_start:#x} in node {vn.id}, "
                                         f"its address's node is {self.addr_to_node_id(va.va_start)}")
            for va in vn.lazy.tree:
                vn_id = self.decode_vn_id(va.flags)
                want = vn_id if vn_id < self.nr_vmap_nodes else self.addr_to_node_id(va.va_start)
                if want != vn.id:
                    raise AssertionError(f"lazy area {va.va_start:#x} in node {vn.id}, not node {want}")

    def _check_pools(self) -> None:
        for vn in self.vmap_nodes:
            for idx, vp in enumerate(vn.pool):
                if vp.len != len(vp.head):
                    raise AssertionError(f"node {vn.id} pool[{idx}].len is {vp.len}, it holds {len(vp.head)}")
                for va in vp.head:
                    if (va.va_end - va.va_start - 1) // PAGE_SIZE != idx:
                        raise AssertionError(f"node {vn.id} pool[{idx}] holds an area of "
                                             f"{va.va_end - va.va_start:#x} bytes")

    def _all_areas(self) -> Iterator[tuple[int, int, str]]:
        for va in self._busy_areas():
            yield va.va_start, va.va_end, "busy"
        for va in self.free_vmap_area_root:
            yield va.va_start, va.va_end, "free"
        for va in self._lazy_areas():
            yield va.va_start, va.va_end, "lazy"
        for va in self._pool_areas():
            yield va.va_start, va.va_end, "pooled"

    def _check_trees(self) -> None:
        try:
            kva.check_free_tree(self.free_vmap_area_root)
        except AssertionError as e:
            raise AssertionError(f"free tree: {e}") from None

    def _check_lazy_count(self) -> None:
        lazy = sum((va.va_end - va.va_start) >> PAGE_SHIFT for va in self._lazy_areas())
        if lazy != self.vmap_lazy_nr:
            raise AssertionError(f"vmap_lazy_nr is {self.vmap_lazy_nr}, the lazy trees hold {lazy} pages")

    def _check_blocks(self) -> None:
        super()._check_blocks()
        for start in self.used_map:
            if self.vmap_blocks.get(self.addr_to_vb_idx(start)) is None:
                raise AssertionError(f"used_map of a freed block at {start:#x}")

    def _check_ram_maps(self) -> None:
        for addr, count in self._ram_maps.items():
            if count <= VMAP_MAX_ALLOC:
                vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
                if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} has no block")
                if ((addr - vb.va.va_start) >> PAGE_SHIFT) + count > self.VMAP_BBMAP_BITS - vb.free:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} beyond its block's bump pointer")
            else:
                va = self._busy_lookup(addr)
                if (va is None or va.va_start != addr or va.vm is not None
                        or isinstance(va.private, vmap_block)):
                    raise AssertionError(f"large vm_map_ram mapping {addr:#x} has no busy area")
                if va.flags & VMAP_FLAGS_MASK != VMAP_RAM:
                    raise AssertionError(f"large vm_map_ram mapping {addr:#x}: flags {va.flags:#x}, "
                                         f"not VMAP_RAM alone")
