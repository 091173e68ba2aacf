"""Linux 6.1's vmap layer (``mm/vmalloc.c`` of the 6.1.y stable kernels Debian 12 ships).

Since Linux 5.2 (commit 68ad4a330433, "mm/vmalloc.c: keep track of free blocks for vmap
allocation", Uladzislau Rezki) free space has a tree of its own. Three trees, each an
rbtree plus an address-sorted list (``vmapsim.mm.kva``), with their locks:

- busy: ``vmap_area_root``/``vmap_area_list`` under ``vmap_area_lock``;
- free: ``free_vmap_area_root``/``free_vmap_area_list`` under ``free_vmap_area_lock``,
  augmented with ``subtree_max_size``; it starts as ``[1, ULONG_MAX)`` (no early areas on
  x86_64), so every address is in exactly one of the three trees;
- lazy: ``purge_vmap_area_root``/``purge_vmap_area_list`` under ``purge_vmap_area_lock``,
  coalescing on insert; ``vmap_purge_lock`` (a mutex) serialises purges.

``alloc_vmap_area`` takes the lowest fitting free block (``find_vmap_lowest_match``):
no one-page gap between areas as in 2.6.28, the guard page is part of the area.
Freeing clears the PTEs at once (``vunmap_range_noflush``); only the TLB flush is lazy,
so what the oracle catches after a free is a stale TLB entry, not a stale PTE. Past
``lazy_max_pages()`` a drain is queued as work (``schedule_work(&drain_vmap_work)``),
not run by the caller. ``__purge_vmap_area_lazy`` flushes the lowest-to-highest lazy
span once (x86: INVLPG per page up to 33 pages, else a full flush) and returns the areas
to the free tree in ascending order.

vm_map_ram: per-CPU ``vmap_block``s of ``VMAP_BBMAP_BITS`` pages (NR_CPUS rounded up
to a power of two; Debian's NR_CPUS=8192 gives 256-page blocks), a bump allocator with
``free``/``dirty``/``dirty_min``/``dirty_max`` (no bitmaps until 6.3), one global
``vmap_blocks`` xarray (a dict here; per-CPU xarrays came in 6.4), new blocks at the
tail of this CPU's free list. ``_vm_unmap_aliases`` walks only the per-CPU free lists,
so a block with no free space keeps its dirty range in other CPUs' TLBs (fixed in 6.5
by Thomas Gleixner, "mm/vmalloc: Prevent stale TLBs in fully utilized blocks");
``Kernel(design="6.1", vm_unmap_aliases_65=True)`` walks every block instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import BadAddressError, ConfigError, InvalidArgumentError
from ..hw.locks import QSPINLOCK_SYMBOLS, Mutex, SpinLock
from ..hw.physmem import Page
from . import kva
from .constants import (
    GFP_KERNEL,
    PAGE_KERNEL,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VMALLOC_PAGES,
    VMAP_BBMAP_BITS_MAX,
    VMAP_BBMAP_BITS_MIN,
    VMAP_MAX_ALLOC,
)
from .designs import DesignInfo
from .kva import ULONG_MAX, vmap_area, vmap_tree
from .vmalloc import Kernel, VmapBlockInfo, _check_int, vm_struct

# include/linux/vmalloc.h (6.1): the flags beyond 2.6's (0x10 was 2.6's VM_VPAGES)
VM_DMA_COHERENT = 0x00000010
VM_UNINITIALIZED = 0x00000020
VM_NO_GUARD = 0x00000040
VM_KASAN = 0x00000080
VM_FLUSH_RESET_PERMS = 0x00000100
VM_MAP_PUT_PAGES = 0x00000200
VM_ALLOW_HUGE_VMAP = 0x00000400
#: x86_64 overrides IOREMAP_MAX_ORDER with PUD_SHIFT (arch/x86/include/asm/page_types.h)
IOREMAP_MAX_ORDER_X86_64 = 30
#: __VMALLOC_BASE_L4 (4-level paging); KASLR moves VMALLOC_START per boot, 1 GiB aligned
VMALLOC_BASE_L4 = 0xFFFFC90000000000
#: VMALLOC_SIZE_TB_L4: 32 TiB
VMALLOC_SIZE_L4 = 32 << 40
#: arch/x86/mm/tlb.c: tlb_single_page_flush_ceiling
TLB_SINGLE_PAGE_FLUSH_CEILING = 33

INFO = DesignInfo(
    name="6.1",
    aliases=("linux-6.1",),
    kernel="Linux 6.1 (6.1.y stable, as Debian 12 ships it)",
    changed="free space in its own augmented rbtree, lowest-fit search (5.2); PTEs cleared at free, "
            "only the flush lazy; three trees with their own locks; a drain worker",
    commit="68ad4a330433 mm/vmalloc.c: keep track of free blocks for vmap allocation (Uladzislau Rezki, 5.2)",
    leaves_out="huge vmalloc, KASAN shadow, module space, vfree from interrupts (vfree_deferred), "
               "purge notifiers, cond_resched_lock in the purge loop",
)


def get_count_order_long(x: int) -> int:
    """ceil(log2(x)) for x > 0 (include/linux/bitops.h)."""
    return (x - 1).bit_length()


_U64 = (1 << 64) - 1


def _rotl64(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _U64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    """SIPROUND (include/linux/siphash.h)."""
    v0 = (v0 + v1) & _U64
    v1 = _rotl64(v1, 13) ^ v0
    v0 = _rotl64(v0, 32)
    v2 = (v2 + v3) & _U64
    v3 = _rotl64(v3, 16) ^ v2
    v0 = (v0 + v3) & _U64
    v3 = _rotl64(v3, 21) ^ v0
    v2 = (v2 + v1) & _U64
    v1 = _rotl64(v1, 17) ^ v2
    v2 = _rotl64(v2, 32)
    return v0, v1, v2, v3


def siphash_1u64(first: int, key: tuple[int, int]) -> int:
    """lib/siphash.c siphash_1u64(): SipHash-2-4 of one u64 under the 128-bit ``key``
    (k0, k1)."""
    k0, k1 = key
    v = (0x736F6D6570736575 ^ k0, 0x646F72616E646F6D ^ k1,
         0x6C7967656E657261 ^ k0, 0x7465646279746573 ^ k1)
    for m in (first, 8 << 56):  # the message word, then PREAMBLE's b = sizeof(u64) << 56
        v = (v[0], v[1], v[2], v[3] ^ m)
        v = _sipround(*_sipround(*v))
        v = (v[0] ^ m, v[1], v[2], v[3])
    v = (v[0], v[1], v[2] ^ 0xFF, v[3])
    for _ in range(4):
        v = _sipround(*v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def vmap_bbmap_bits(nr_cpus: int) -> int:
    """VMAP_BBMAP_BITS for NR_CPUS (6.1: rounded up to a power of two first)."""
    rounded = 1 << (nr_cpus - 1).bit_length()
    return min(VMAP_BBMAP_BITS_MAX, max(VMAP_BBMAP_BITS_MIN, VMALLOC_PAGES // rounded // 16))


class vmap_block_queue:  # noqa: N801 - kernel type name
    """Per-CPU ``struct vmap_block_queue {lock, free}`` (6.1: no dirty list)."""

    __slots__ = ("lock", "free")

    def __init__(self, lock: SpinLock) -> None:
        self.lock = lock
        self.free: list[vmap_block] = []


class vmap_block:  # noqa: N801 - kernel type name
    """``struct vmap_block {lock, va, free, dirty, dirty_min, dirty_max, free_list}`` (6.1).

    ``on_free_list`` is ``!list_empty(&vb->free_list)``; ``cpu`` (the model's: which
    queue) lets the 6.5 switch and the checks find a block's queue; ``unflushed`` (the
    model's) is how many freed pages may still be cached in some TLB.
    """

    __slots__ = ("lock", "va", "free", "dirty", "dirty_min", "dirty_max", "on_free_list", "cpu",
                 "unflushed")

    def __init__(self, lock: SpinLock, va: vmap_area, bits: int, cpu: int) -> None:
        self.lock = lock
        self.va = va
        self.free = bits
        self.dirty = 0
        self.dirty_min = bits
        self.dirty_max = 0
        self.on_free_list = False
        self.cpu = cpu
        self.unflushed = 0

    def __repr__(self) -> str:
        return (f"vmap_block({self.va.va_start:#x}, free={self.free}, dirty={self.dirty}, "
                f"dirty=[{self.dirty_min},{self.dirty_max}))")


class Linux61(Kernel, design=INFO):
    """Linux 6.1's vmap layer (see the module docstring).

    ``nr_cpus_config``: NR_CPUS (default: the CPU count), which sizes the vmap blocks;
    ``vm_unmap_aliases_65``: walk every vmap block in vm_unmap_aliases() (the 6.5 fix)
    instead of 6.1's free lists only.
    """

    has_vm_map_ram = True
    has_lazy_free = True
    #: __vunmap() finds the area with find_vm_area() before remove_vm_area() finds it
    #: again (until 6.3 folded vfree/vunmap onto remove_vm_area alone)
    vunmap_looks_up_twice = True
    lock_symbols = QSPINLOCK_SYMBOLS  # perf's names on x86 since qspinlock (4.2)
    vmallocinfo_style = "modern"
    vpages_flag = 0  # 6.1 prints "vpages" when the page array is vmalloc()ed: no flag
    #: a caller's flags: 2.6's plus those the model takes as given (VM_MAP_PUT_PAGES,
    #: VM_ALLOW_HUGE_VMAP: not modelled; VM_KASAN, VM_UNINITIALIZED: the layer's own)
    caller_vm_flags = Kernel.caller_vm_flags | VM_DMA_COHERENT | VM_NO_GUARD | VM_FLUSH_RESET_PERMS
    known_vm_flags = Kernel.caller_vm_flags | 0x7F0  # VM_DMA_COHERENT .. VM_ALLOW_HUGE_VMAP
    takes_placements = True  # alloc_vmap_area() asks placement_hook (_alloc_placed)
    purges_deferred = True  # the lazy purge is drain_vmap_area_work, run by a worker
    placement_order = "ascending"  # lowest fit: boot-time areas were carved lowest first

    def __init__(self, *args: Any, nr_cpus_config: int | None = None,
                 vm_unmap_aliases_65: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        m = self.machine
        if nr_cpus_config is None:
            nr_cpus_config = m.ncpus
        _check_int("Kernel", "nr_cpus_config", nr_cpus_config)
        if not m.ncpus <= nr_cpus_config <= 8192:
            raise ConfigError(f"nr_cpus_config must be cpus..8192 ({m.ncpus}..8192), got {nr_cpus_config}")
        if not isinstance(vm_unmap_aliases_65, bool):
            raise TypeError(f"vm_unmap_aliases_65 must be a bool, not {type(vm_unmap_aliases_65).__name__}")
        self.nr_cpus = nr_cpus_config
        self.vm_unmap_aliases_65 = vm_unmap_aliases_65
        bits = vmap_bbmap_bits(nr_cpus_config)
        self.VMAP_BBMAP_BITS = bits
        self.VMAP_BLOCK_SIZE = bits * PAGE_SIZE
        self.vmap_area_lock = SpinLock(m, "vmap_area_lock")
        self.free_vmap_area_lock = SpinLock(m, "free_vmap_area_lock")
        self.purge_vmap_area_lock = SpinLock(m, "purge_vmap_area_lock")
        self.vmap_purge_lock = Mutex(m, "vmap_purge_lock")
        #: busy, free and lazy trees (each root + list)
        self.vmap_area_root = vmap_tree()
        self.free_vmap_area_root = vmap_tree(augment=True)
        self.purge_vmap_area_root = vmap_tree()
        #: per-CPU spare for the NE split (preload_this_cpu_lock)
        self.ne_fit_preload_node: list[vmap_area | None] = [None] * m.ncpus
        self.vmap_blocks: dict[int, vmap_block] = {}
        self.vmap_block_queue = [vmap_block_queue(SpinLock(m, f"vmap_block_queue[{i}].lock"))
                                 for i in range(m.ncpus)]
        self.vmap_lazy_nr = 0
        self.drain_pending = False
        kva.vmap_init_free_space(self.free_vmap_area_root, ())
        # lib/vsprintf.c's ptr_key is random per boot; the model's own key, derived from
        # this boot's VMALLOC_START, so %p values differ from a real boot's
        self.ptr_key = (0x766D617073696D36 ^ self.VMALLOC_START, 0x2E312070747220 ^ (self.VMALLOC_START >> 30))

    # -- the design's interface ------------------------------------------------------------
    @staticmethod
    def default_vmalloc_start() -> int:
        return VMALLOC_BASE_L4

    @staticmethod
    def default_vmalloc_size() -> int:
        return VMALLOC_SIZE_L4

    @classmethod
    def config_for(cls, cpus: int, block_pages: int | None = None) -> dict[str, Any] | None:
        if block_pages is None:
            return {}
        for n in (cpus, *(1 << i for i in range(14))):
            if cpus <= n <= 8192 and vmap_bbmap_bits(n) == block_pages:
                return {"nr_cpus_config": n}
        return None

    @property
    def vmap_block_pages(self) -> int:
        return self.VMAP_BBMAP_BITS

    def vmap_block_states(self) -> list[tuple[int, int, int, int, int]]:
        """6.1 keeps no bitmaps: "used" is every page below the bump pointer, "dirty"
        those of them no live mapping holds (freed, awaiting a flush)."""
        out = []
        live = self._live
        for vb in self.vmap_blocks.values():
            start = vb.va.va_start
            used = self.VMAP_BBMAP_BITS - vb.free
            vpn = start >> PAGE_SHIFT
            dirty = 0
            for i in range(used):
                if vpn + i not in live:
                    dirty |= 1 << i
            out.append((start, vb.va.va_end, vb.cpu, (1 << used) - 1, dirty))
        out.sort()
        return out

    def vmap_block_for(self, addr: int) -> VmapBlockInfo | None:
        vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
        if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
            return None
        return VmapBlockInfo(vb.cpu, vb.va.va_start, vb.free, vb.dirty)

    tracepoints = frozenset({"alloc", "alloc_ret", "free_noflush", "purge", "purge_ret", "flush",
                             "vfree", "map_ram", "map_ram_ret", "unmap_ram", "unmap_aliases"})

    def can_place(self, addr: int, size: int) -> bool:
        """[addr, addr + size) inside VMALLOC_START..END and inside one free area."""
        self._check_place("can_place", addr, size)
        if addr < self.VMALLOC_START or addr + size > self.VMALLOC_END + 1:
            return False
        va = kva.find_vmap_area__(addr, self.free_vmap_area_root)
        self.free_vmap_area_root.visits = 0  # inspection: not charged
        return va is not None and va.va_end >= addr + size

    def place_lazy_area(self, addr: int, size: int) -> bool:
        """alloc_vmap_area() over exactly [addr, addr + size), then free_unmap_vmap_area()."""
        self._check_place("place_lazy_area", addr, size)
        if not self.can_place(addr, size):
            return False
        va = self.alloc_vmap_area(size, PAGE_SIZE, addr, addr + size, -1)
        if va is None or va.va_start != addr:
            raise InvalidArgumentError(f"place_lazy_area: {addr:#x} was free, alloc_vmap_area() refused it")
        self.free_unmap_vmap_area(va)
        return True

    def place_vmap_block(self, addr: int) -> bool:
        """new_vmap_block() at ``addr``, then vm_map_ram() calls of falling sizes that hand
        out every page of it (the bump pointer to the end); all but the last (one page)
        are unmapped again."""
        _check_int("place_vmap_block", "address", addr)
        bsize = self.VMAP_BLOCK_SIZE
        if addr % bsize or not self.can_place(addr, bsize) or self.vmap_block_queue[self._cpu.id].free:
            return False
        held = [self.alloc_page() for _ in range(VMAP_MAX_ALLOC)]
        if any(p is None for p in held):
            for p in held:
                if p is not None:
                    self.free_page(p)
            return False
        pages = [p for p in held if p is not None]
        if self.new_vmap_block(0, vstart=addr) is None:
            raise InvalidArgumentError(f"place_vmap_block: {addr:#x} was free, new_vmap_block() refused it")
        # new_vmap_block() handed page 0 to its caller: a one-page vm_map_ram mapping
        self._ram_maps[addr] = 1
        self.machine.set_ptes(self._cpu, "vmap_pages_range", addr, pages[:1], PAGE_KERNEL, PAGE_KERNEL)
        self._live[addr >> PAGE_SHIFT] = pages[0]
        maps = [(addr, 1)]
        left = self.VMAP_BBMAP_BITS - 1  # odd: falling powers of two end with a one-page mapping
        c = VMAP_MAX_ALLOC
        while left:
            while c > left:
                c //= 2
            m = self.vm_map_ram(pages, c)
            if m is None or not addr <= m < addr + bsize:
                raise InvalidArgumentError(f"place_vmap_block: vm_map_ram({c}) did not use the new block")
            maps.append((m, c))
            left -= c
        for m, c in maps[:-1]:
            self.vm_unmap_ram(m, c)
        for p in pages[1:]:  # pages[0] stays mapped by the last (one-page) mapping
            self.free_page(p)
        return True

    # -- charging a tree walk ------------------------------------------------------------------
    def _charge_walk(self, tree: vmap_tree, fn: str) -> None:
        n = tree.visits
        if n:
            tree.visits = 0
            self.machine.mem_access(self._cpu, fn, n)

    # -- the busy tree -------------------------------------------------------------------------
    def find_vmap_area(self, addr: int) -> vmap_area | None:
        """The busy area containing ``addr`` (6.1's __find_vmap_area under vmap_area_lock)."""
        cpu = self._cpu
        self.vmap_area_lock.lock(cpu)
        va = kva.find_vmap_area__(addr, self.vmap_area_root)
        self._charge_walk(self.vmap_area_root, "find_vmap_area")
        self.vmap_area_lock.unlock(cpu)
        return va

    # -- allocation ------------------------------------------------------------------------------
    def preload_this_cpu_lock(self, lock: SpinLock, gfp_mask: int, node: int) -> None:
        """Make sure this CPU has a spare vmap_area for an NE split, then take ``lock``."""
        cpu = self._cpu
        if self.ne_fit_preload_node[cpu.id] is None:
            self.machine.charge(cpu, "kmem_cache_alloc_node", self.cost.kmalloc)
            self.ne_fit_preload_node[cpu.id] = vmap_area()
        lock.lock(cpu)

    def _take_spare(self) -> vmap_area | None:
        """``__this_cpu_xchg(ne_fit_preload_node, NULL)``, else a GFP_NOWAIT allocation."""
        i = self._cpu.id
        lva = self.ne_fit_preload_node[i]
        self.ne_fit_preload_node[i] = None
        if lva is None:
            self.machine.charge(self._cpu, "kmem_cache_alloc", self.cost.kmalloc)
            lva = vmap_area()
        return lva

    def alloc_vmap_area(self, size: int, align: int, vstart: int, vend: int, node: int,
                        gfp_mask: int = GFP_KERNEL) -> vmap_area | None:
        """6.1's alloc_vmap_area(): the lowest fit in the free tree, inserted busy; on
        failure one synchronous purge and a retry, then the kernel's message and None."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "alloc_vmap_area")
        try:
            self._validate_alloc_args(size, align)
            if self.tracer is not None:
                self.trace("alloc", size=size, align=align, vstart=vstart, vend=vend)
            self.machine.charge(self._cpu, "kmem_cache_alloc_node", self.cost.kmalloc)
            purged = False
            while True:
                addr = self._alloc_from_free_tree(size, align, vstart, vend, node, gfp_mask)
                if addr != vend:
                    break
                if not purged:
                    self.purge_vmap_area_lazy()
                    purged = True
                    continue
                self._alloc_failed(size)
                return None
            va = vmap_area(addr, addr + size)
            self._insert_busy(va)
            if self.tracer is not None:
                self.trace("alloc_ret", va_start=va.va_start, va_end=va.va_end)
            return va
        finally:
            self.machine.leave(chain_cpu, chain)

    @staticmethod
    def _validate_alloc_args(size: int, align: int) -> None:
        """alloc_vmap_area()'s BUG_ON()s: a page-multiple size, a power-of-two align."""
        if not size or size & (PAGE_SIZE - 1) or align < 1 or align & (align - 1):
            raise InvalidArgumentError(f"kernel BUG at mm/vmalloc.c: alloc_vmap_area(size={size:#x}, align={align:#x})")

    def _alloc_from_free_tree(self, size: int, align: int, vstart: int, vend: int, node: int,
                              gfp_mask: int) -> int:
        """One try on the free tree under free_vmap_area_lock (6.9: "the global heap"):
        the address, or ``vend`` when nothing fits."""
        cpu = self._cpu
        free = self.free_vmap_area_root
        lock = self.free_vmap_area_lock
        self.preload_this_cpu_lock(lock, gfp_mask, node)
        if self.placement_hook is None:
            addr = kva.alloc_vmap_area__(free, size, align, vstart, vend, self._take_spare)
        else:
            addr = self._alloc_placed(size, align, vstart, vend)
        self._charge_walk(free, "__alloc_vmap_area")
        lock.unlock(cpu)
        return addr

    def _alloc_failed(self, size: int) -> None:
        """The overflow path's end: the rate-limited message, the va freed, a failed return."""
        # the vmap_notify_list chain: no notifier is modelled, so nothing is freed
        m = self.machine
        cpu = self._cpu
        if m.printk_ratelimit(cpu):
            m.warn(f"vmap allocation for size {size} failed: use vmalloc=<size> to increase size")
        m.charge(cpu, "kmem_cache_free", self.cost.kmalloc)
        if self.tracer is not None:
            self.trace("alloc_ret", va_start=0, va_end=0)

    def _alloc_placed(self, size: int, align: int, vstart: int, vend: int) -> int:
        """__alloc_vmap_area() under the replay's ``placement_hook``: the walk finds the
        model's own choice (None if nothing fits) without changing the tree, the hook is
        told it and may name the traced kernel's address instead; the area is then
        carved there (an exact-range allocation: the same block and fit type as the
        kernel's, so the tree takes the kernel's shape) if that range is free and inside
        [vstart, vend), else at the model's choice. Charged as one walk."""
        free = self.free_vmap_area_root
        adjust = not (align <= PAGE_SIZE or ((vend - vstart) & ULONG_MAX) == size)
        va = kva.find_vmap_lowest_match(free, size, align, vstart, adjust)
        visits = free.visits
        choice = None
        if va is not None:
            s = va.va_start
            nva = ((s if s > vstart else vstart) + align - 1) & (ULONG_MAX ^ (align - 1))
            if nva + size <= vend:
                choice = nva
        hook = self.placement_hook
        assert hook is not None
        want = hook(size, align, vstart, vend, choice)
        if want is not None and want != choice and vstart <= want and want + size <= vend:
            fva = kva.find_vmap_area__(want, free)
            if fva is not None and fva.va_end >= want + size:
                addr = kva.alloc_vmap_area__(free, size, 1, want, want + size, self._take_spare)
                free.visits = visits
                return vend if addr == want + size else addr
        addr = kva.alloc_vmap_area__(free, size, align, vstart, vend, self._take_spare)
        free.visits = visits
        return addr

    def _insert_busy(self, va: vmap_area) -> None:
        """insert_vmap_area() into the busy tree under vmap_area_lock (6.9: its node's)."""
        cpu = self._cpu
        self.vmap_area_lock.lock(cpu)
        kva.insert_vmap_area(va, self.vmap_area_root)
        self._charge_walk(self.vmap_area_root, "insert_vmap_area")
        self.vmap_area_lock.unlock(cpu)

    def _unlink_busy(self, va: vmap_area) -> None:
        """unlink_va() from the busy tree under vmap_area_lock (6.9: its node's)."""
        cpu = self._cpu
        self.vmap_area_lock.lock(cpu)
        kva.unlink_va(va, self.vmap_area_root)
        self.vmap_area_lock.unlock(cpu)

    def _busy_lookup(self, addr: int) -> vmap_area | None:
        """The busy area containing ``addr``, for inspection (not charged, no lock)."""
        tree = self.vmap_area_root
        va = kva.find_vmap_area__(addr, tree)
        tree.visits = 0
        return va

    def _busy_areas(self) -> Iterable[vmap_area]:
        """Every busy area (in address order here; 6.9: node by node)."""
        return self.vmap_area_root

    def _lazy_areas(self) -> Iterable[vmap_area]:
        """Every lazily freed area (in address order here; 6.9: node by node)."""
        return self.purge_vmap_area_root

    def free_vmap_area(self, va: vmap_area) -> None:
        """free_vmap_area(): unlink from the busy tree, back to the free tree at once (no
        flush: for areas that never mapped anything)."""
        cpu = self._cpu
        self._unlink_busy(va)
        self.free_vmap_area_lock.lock(cpu)
        kva.merge_or_add_vmap_area_augment(va, self.free_vmap_area_root)
        self._charge_walk(self.free_vmap_area_root, "merge_or_add_vmap_area_augment")
        self.free_vmap_area_lock.unlock(cpu)

    # -- lazy freeing ---------------------------------------------------------------------------
    def free_vmap_area_noflush(self, va: vmap_area) -> None:
        """Move ``va`` from the busy tree to the lazy tree; queue a drain past the limit."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "free_vmap_area_noflush")
        try:
            cpu = self._cpu
            if self.tracer is not None:
                self.trace("free_noflush", va_start=va.va_start, va_end=va.va_end)
            self._unlink_busy(va)
            self.vmap_lazy_nr += (va.va_end - va.va_start) >> PAGE_SHIFT
            nr_lazy = self.vmap_lazy_nr
            va.vm = None
            va.private = None
            lock = self.purge_vmap_area_lock
            lock.lock(cpu)
            kva.merge_or_add_vmap_area(va, self.purge_vmap_area_root)
            self._charge_walk(self.purge_vmap_area_root, "merge_or_add_vmap_area")
            lock.unlock(cpu)
            if nr_lazy > self.lazy_max_pages() and not self.drain_pending:
                # schedule_work() of a work already pending does nothing
                self.drain_pending = True
                self.schedule_work("drain_vmap_area_work", self.drain_vmap_area_work)
        finally:
            self.machine.leave(chain_cpu, chain)

    def free_unmap_vmap_area(self, va: vmap_area) -> None:
        """Clear the PTEs now (flush_cache_vunmap is a no-op on x86), flush lazily."""
        self.machine.clear_ptes(self._cpu, "vunmap_range_noflush", va.va_start, va.va_end)
        self.free_vmap_area_noflush(va)

    def drain_vmap_area_work(self) -> None:
        """The drain worker: purge once, then again while vmap_lazy_nr > lazy_max_pages()
        (a do-while: it purges even if a purge since the queueing took the count below the
        limit; no fragmented blocks purged here)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "drain_vmap_area_work")
        try:
            cpu = self._cpu
            self.drain_pending = False
            while True:
                self.vmap_purge_lock.lock(cpu)
                purged = self.purge_vmap_area_lazy__(ULONG_MAX, 0)
                self.vmap_purge_lock.unlock(cpu)
                if not purged or self.vmap_lazy_nr <= self.lazy_max_pages():
                    break
        finally:
            self.machine.leave(chain_cpu, chain)

    def flush_tlb_kernel_range(self, start: int, end: int) -> None:
        """x86: INVLPG per page on every CPU up to 33 pages, else a full flush."""
        if self.tracer is not None:
            self.trace("flush", start=start, end=end)
        self.machine.flush_tlb_kernel_range(self._cpu, "flush_tlb_kernel_range", start, end,
                                            TLB_SINGLE_PAGE_FLUSH_CEILING)

    def purge_vmap_area_lazy__(self, start: int, end: int) -> bool:
        """__purge_vmap_area_lazy(): one flush over the lowest-to-highest lazy span, the
        areas back into the free tree in ascending order; False if nothing was lazy."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__purge_vmap_area_lazy")
        try:
            m = self.machine
            cpu = self._cpu
            if self.tracer is not None:
                self.trace("purge", start=start, end=end)
            lock = self.purge_vmap_area_lock
            lock.lock(cpu)
            purge = self.purge_vmap_area_root
            local = list(purge)
            self.purge_vmap_area_root = vmap_tree()  # WRITE_ONCE(root.rb_node, NULL); list_replace_init
            lock.unlock(cpu)
            if not local:
                if self.tracer is not None:
                    self.trace("purge_ret", ret=0)
                return False
            start = min(start, local[0].va_start)
            end = max(end, local[-1].va_end)
            self.flush_tlb_kernel_range(start, end)
            free = self.free_vmap_area_root
            flock = self.free_vmap_area_lock
            flock.lock(cpu)
            for va in local:
                nr = (va.va_end - va.va_start) >> PAGE_SHIFT
                va.rb_parent = va.rb_left = va.rb_right = None
                va.list_prev = va.list_next = va
                kva.merge_or_add_vmap_area_augment(va, free)
                self.vmap_lazy_nr -= nr
            self._charge_walk(free, "merge_or_add_vmap_area_augment")
            m.mem_access(cpu, "__purge_vmap_area_lazy", len(local))
            flock.unlock(cpu)
            self.purges += 1
            if self.tracer is not None:
                self.trace("purge_ret", ret=1)
            return True
        finally:
            self.machine.leave(chain_cpu, chain)

    def purge_vmap_area_lazy(self) -> None:
        """The synchronous purge of the allocation overflow path."""
        cpu = self._cpu
        self.vmap_purge_lock.lock(cpu)
        self.purge_fragmented_blocks_allcpus()
        self.purge_vmap_area_lazy__(ULONG_MAX, 0)
        self.vmap_purge_lock.unlock(cpu)

    # -- the vm_struct layer ----------------------------------------------------------------------
    def get_vm_area_size(self, area: vm_struct) -> int:
        """Actual size without the guard page (none with VM_NO_GUARD)."""
        if not isinstance(area, vm_struct):
            raise TypeError(f"get_vm_area_size: area must be a vm_struct, not {type(area).__name__}")
        return area.size if area.flags & VM_NO_GUARD else area.size - PAGE_SIZE

    def get_vm_area_node__(self, size: int, flags: int, start: int, end: int, node: int,
                           gfp_mask: int, caller: str, align: int = 1) -> vm_struct | None:
        """6.1's __get_vm_area_node(): ioremap alignment up to x86_64's PUD_SHIFT, the
        guard page at the end unless VM_NO_GUARD, ``va->vm`` instead of a vmlist."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__get_vm_area_node")
        try:
            if size.__class__ is not int or align.__class__ is not int or size < 0 or align < 1 or align & (align - 1):
                self._check_request("__get_vm_area_node", size, align)
            size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            if not size:
                return None
            if flags & VM_IOREMAP:
                order = min(max(get_count_order_long(size), PAGE_SHIFT), IOREMAP_MAX_ORDER_X86_64)
                align = 1 << order
            m = self.machine
            cpu = self._cpu
            m.charge(cpu, "kmalloc", self.cost.kmalloc)  # kzalloc_node(sizeof(*area))
            if not flags & VM_NO_GUARD:
                size += PAGE_SIZE
            va = self.alloc_vmap_area(size, align, start, end, node, gfp_mask)
            if va is None:
                m.charge(cpu, "kfree", self.cost.kmalloc)
                return None
            area = vm_struct(va.va_start, va.va_end - va.va_start, flags, caller)
            self.setup_vmalloc_vm(va, area)
            return area
        finally:
            self.machine.leave(chain_cpu, chain)

    def setup_vmalloc_vm(self, va: vmap_area, vm: vm_struct) -> None:
        """``va->vm = vm`` under vmap_area_lock (6.1: the area is already busy)."""
        cpu = self._cpu
        self.vmap_area_lock.lock(cpu)
        va.vm = vm
        self.vmap_area_lock.unlock(cpu)

    def vunmap__(self, addr: int | None, deallocate_pages: bool, who: str = "vfree") -> None:
        """6.1's __vunmap() looks the area up with find_vm_area() before
        vm_remove_mappings() -> remove_vm_area() looks it up again: two lookups."""
        if self.vunmap_looks_up_twice and addr and addr.__class__ is int and not addr & (PAGE_SIZE - 1):
            self.find_vm_area(addr)
        super().vunmap__(addr, deallocate_pages, who)

    def find_vm_area(self, addr: int) -> vm_struct | None:
        va = self.find_vmap_area(addr)
        return None if va is None else va.vm

    def remove_vm_area_(self, addr: int) -> vm_struct | None:
        """Take the vm_struct off its area and free the area lazily; the vm_struct or None."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "remove_vm_area")
        try:
            cpu = self._cpu
            self.vmap_area_lock.lock(cpu)
            va = kva.find_vmap_area__(addr, self.vmap_area_root)
            self._charge_walk(self.vmap_area_root, "remove_vm_area")
            vm = va.vm if va is not None else None
            if vm is None or vm.addr != addr:
                self.vmap_area_lock.unlock(cpu)
                return None
            assert va is not None
            va.vm = None
            self.vmap_area_lock.unlock(cpu)
            self._drop_live(va.va_start, va.va_end)
            self.free_unmap_vmap_area(va)
            return vm
        finally:
            self.machine.leave(chain_cpu, chain)

    def vm_areas(self) -> Iterable[vm_struct]:
        return sorted((va.vm for va in self._busy_areas() if va.vm is not None), key=lambda v: v.addr)

    def _was_freed(self, addr: int) -> bool:
        return kva.find_vmap_area__(addr, self.purge_vmap_area_root) is not None

    def pr_ptr(self, addr: int) -> str:
        """``%p`` as 6.1 prints it (lib/vsprintf.c ptr_to_id, hashed since 4.15): NULL and
        error pointers raw, else the low 32 bits of siphash_1u64(addr, ptr_key), both as
        16 zero-padded hex digits."""
        if not addr or addr > ULONG_MAX - 4095:  # IS_ERR_OR_NULL(ptr)
            return f"{addr:016x}"
        return f"{siphash_1u64(addr, self.ptr_key) & 0xFFFFFFFF:016x}"

    # -- the percpu allocator's areas (CONFIG_SMP) ----------------------------------------
    #: %pS of the function itself, as the real 6.1 capture prints it (Debian's symbol size)
    PCPU_CALLER = "pcpu_get_vm_areas+0x0/0x1070"

    def pcpu_get_vm_areas(self, offsets: Sequence[int], sizes: Sequence[int],
                          align: int) -> list[vm_struct] | None:
        """pcpu_get_vm_areas(offsets, sizes, nr_vms, align): congruent areas, one per group,
        ``[base + offsets[i], + sizes[i])`` for one ``base`` found top-down from VMALLOC_END
        in the free tree; inserted busy as VM_ALLOC areas. On failure one
        purge_vmap_area_lazy() and a retry, then None."""
        who = "pcpu_get_vm_areas"
        for name, seq in (("offsets", offsets), ("sizes", sizes)):
            if not isinstance(seq, (list, tuple)):
                raise TypeError(f"{who}: {name} must be a list of ints, not {type(seq).__name__}")
            for i, v in enumerate(seq):
                _check_int(who, f"{name}[{i}]", v)
        _check_int(who, "align", align)
        nr_vms = len(offsets)
        if not nr_vms or len(sizes) != nr_vms:
            raise InvalidArgumentError(f"{who}: {nr_vms} offsets and {len(sizes)} sizes (need as many, at least one)")
        if align <= 0 or align & (PAGE_SIZE - 1) or align & (align - 1):
            raise InvalidArgumentError(f"kernel BUG at mm/vmalloc.c: {who}: align {align:#x} is not a "
                                       f"page-aligned power of two")
        last_area = 0
        for area in range(nr_vms):
            start = offsets[area]
            end = start + sizes[area]
            # Deviation: a negative or zero-size group is refused (the kernel never gets one;
            # a zero-size vmap_area would corrupt the trees).
            if start < 0 or sizes[area] <= 0:
                raise InvalidArgumentError(f"{who}: group {area}: offset {start:#x} size {sizes[area]:#x}")
            if start & (align - 1) or sizes[area] & (align - 1):
                raise InvalidArgumentError(f"kernel BUG at mm/vmalloc.c: {who}: group {area} "
                                           f"({start:#x}, {sizes[area]:#x}) not aligned to {align:#x}")
            if start > offsets[last_area]:
                last_area = area
            for area2 in range(area + 1, nr_vms):
                start2 = offsets[area2]
                if start2 < end and start < start2 + sizes[area2]:
                    raise InvalidArgumentError(f"kernel BUG at mm/vmalloc.c: {who}: groups {area} "
                                               f"and {area2} overlap")
        vmalloc_start = (self.VMALLOC_START + align - 1) & (ULONG_MAX ^ (align - 1))
        vmalloc_end = self.VMALLOC_END & (ULONG_MAX ^ (align - 1))
        last_end = offsets[last_area] + sizes[last_area]
        m = self.machine
        cpu = self._cpu
        if vmalloc_end - vmalloc_start < last_end:
            m.warn(f"WARNING: at mm/vmalloc.c: {who}: the groups span {last_end:#x}, more than "
                   f"the vmalloc space")
            return None
        m.charge(cpu, "kmem_cache_zalloc", 2 * nr_vms * self.cost.kmalloc)  # vas[], vms[]
        free = self.free_vmap_area_root
        flock = self.free_vmap_area_lock
        purged = False
        while True:  # retry:
            flock.lock(cpu)
            base = self._pcpu_find_base(offsets, sizes, align, last_area, last_end, vmalloc_start)
            if base is not None:
                vas: list[vmap_area] = []
                for area in range(nr_vms):
                    start = (base + offsets[area]) & ULONG_MAX
                    va = kva.pvm_find_va_enclose_addr(start, free)
                    if va is None or kva.adjust_va_to_fit_type(free, va, start, sizes[area], self._take_spare):
                        # WARN_ON_ONCE, "It is a BUG(), but trigger recovery instead."
                        m.warn(f"WARNING: at mm/vmalloc.c: {who}: no free area at {start:#x}")
                        for done in vas:
                            kva.merge_or_add_vmap_area_augment(done, free)
                        base = None
                        break
                    vas.append(vmap_area(start, start + sizes[area]))
            self._charge_walk(free, who)
            flock.unlock(cpu)
            if base is not None:
                break
            if purged:  # err_free: the kernel prints nothing
                m.warn(f"vmapsim: {who} of {nr_vms} areas failed: no base fits, even after a purge")
                m.charge(cpu, "kfree", 2 * nr_vms * self.cost.kmalloc)
                return None
            self.purge_vmap_area_lazy()
            purged = True
        return self._pcpu_insert_busy(vas)

    def _pcpu_insert_busy(self, vas: list[vmap_area]) -> list[vm_struct]:
        """pcpu_get_vm_areas()'s last step: the areas busy, each with its vm_struct."""
        cpu = self._cpu
        vms: list[vm_struct] = []
        self.vmap_area_lock.lock(cpu)
        for va in vas:
            kva.insert_vmap_area(va, self.vmap_area_root)
            vm = vm_struct(va.va_start, va.va_end - va.va_start, VM_ALLOC, self.PCPU_CALLER)
            va.vm = vm  # setup_vmalloc_vm_locked()
            vms.append(vm)
        self._charge_walk(self.vmap_area_root, "insert_vmap_area")
        self.vmap_area_lock.unlock(cpu)
        return vms

    def _pcpu_find_base(self, offsets: Sequence[int], sizes: Sequence[int], align: int,
                        last_area: int, last_end: int, vmalloc_start: int) -> int | None:
        """The scan of pcpu_get_vm_areas() (free_vmap_area_lock held): from the top, lower
        ``base`` until every group lies inside one free area; None (overflow) if none."""
        free = self.free_vmap_area_root
        head = free.head
        nr_vms = len(offsets)
        area = term_area = last_area
        start = offsets[area]
        end = start + sizes[area]
        va = kva.pvm_find_va_enclose_addr(self.VMALLOC_END & (ULONG_MAX ^ (align - 1)), free)
        top, va = kva.pvm_determine_end_from_reverse(va, align, free, self.VMALLOC_END)
        base = (top - end) & ULONG_MAX
        while True:
            # base might have underflowed: add last_end before comparing
            if (base + last_end) & ULONG_MAX < vmalloc_start + last_end or va is None:
                return None
            if (base + end) & ULONG_MAX > va.va_end:
                top, va = kva.pvm_determine_end_from_reverse(va, align, free, self.VMALLOC_END)
                base = (top - end) & ULONG_MAX
                term_area = area
                continue
            if (base + start) & ULONG_MAX < va.va_start:
                prev = va.list_prev  # node_to_va(rb_prev(&va->rb_node))
                top, va = kva.pvm_determine_end_from_reverse(None if prev is head else prev, align, free,
                                                             self.VMALLOC_END)
                base = (top - end) & ULONG_MAX
                term_area = area
                continue
            area = (area + nr_vms - 1) % nr_vms
            if area == term_area:
                return base
            start = offsets[area]
            end = start + sizes[area]
            va = kva.pvm_find_va_enclose_addr((base + end) & ULONG_MAX, free)

    def pcpu_free_vm_areas(self, vms: Sequence[vm_struct]) -> None:
        """pcpu_free_vm_areas(vms, nr_vms): free_vm_area() of each (lazily, as any area)."""
        if not isinstance(vms, (list, tuple)):
            raise TypeError(f"pcpu_free_vm_areas: vms must be a list of vm_struct, not {type(vms).__name__}")
        seen: set[int] = set()
        for i, vm in enumerate(vms):  # all checked first, so a bad list frees nothing
            if not isinstance(vm, vm_struct):
                raise TypeError(f"pcpu_free_vm_areas: vms[{i}] is {type(vm).__name__}, not a vm_struct")
            if id(vm) in seen or self.find_vm_area(vm.addr) is not vm:
                raise BadAddressError(f"kernel BUG at mm/vmalloc.c: free_vm_area: {vm.addr:#x} is not a live area")
            seen.add(id(vm))
        for vm in vms:
            self.free_vm_area(vm)
        self.machine.charge(self._cpu, "kfree", self.cost.kmalloc)

    # -- per-CPU vmap blocks ------------------------------------------------------------------
    def addr_to_vb_idx(self, addr: int) -> int:
        return (addr - (self.VMALLOC_START & ~(self.VMAP_BLOCK_SIZE - 1))) // self.VMAP_BLOCK_SIZE

    def new_vmap_block(self, order: int, vstart: int | None = None) -> int | None:
        """A new block for this CPU with its first 2**order pages taken; their address.
        ``vstart`` (the model's, for placing a snapshot's block): search from there."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "new_vmap_block")
        try:
            m = self.machine
            cpu = self._cpu
            m.charge(cpu, "kmalloc_node", self.cost.kmalloc)
            va = self.alloc_vmap_area(self.VMAP_BLOCK_SIZE, self.VMAP_BLOCK_SIZE,
                                      self.VMALLOC_START if vstart is None else vstart,
                                      self.VMALLOC_END, cpu.node)
            if va is None:
                m.charge(cpu, "kfree", self.cost.kmalloc)
                return None
            bits = self.VMAP_BBMAP_BITS
            vb = vmap_block(SpinLock(m, "vmap_block.lock"), va, bits, cpu.id)
            vb.free = bits - (1 << order)
            va.private = vb
            self.vmap_blocks[self.addr_to_vb_idx(va.va_start)] = vb  # xa_insert
            vbq = self.vmap_block_queue[cpu.id]
            vbq.lock.lock(cpu)
            vbq.free.append(vb)  # list_add_tail_rcu
            vb.on_free_list = True
            vbq.lock.unlock(cpu)
            return va.va_start
        finally:
            self.machine.leave(chain_cpu, chain)

    def free_vmap_block(self, vb: vmap_block) -> None:
        tmp = self.vmap_blocks.pop(self.addr_to_vb_idx(vb.va.va_start))
        assert tmp is vb, "BUG_ON(tmp != vb)"
        self.free_vmap_area_noflush(vb.va)

    def purge_fragmented_blocks(self, cpu_id: int) -> None:
        """Free this CPU's blocks with no live mapping that are not fully dirty."""
        cpu = self._cpu
        vbq = self.vmap_block_queue[cpu_id]
        bits = self.VMAP_BBMAP_BITS
        purge: list[vmap_block] = []
        for vb in list(vbq.free):
            if not (vb.free + vb.dirty == bits and vb.dirty != bits):
                continue
            vb.lock.lock(cpu)
            vb.free = 0
            vb.dirty = bits
            vb.dirty_min = 0
            vb.dirty_max = bits
            vbq.lock.lock(cpu)
            vbq.free.remove(vb)
            vb.on_free_list = False
            vbq.lock.unlock(cpu)
            vb.lock.unlock(cpu)
            purge.append(vb)
        self.machine.mem_access(cpu, "purge_fragmented_blocks", len(vbq.free) + len(purge))
        for vb in purge:
            self.free_vmap_block(vb)

    def purge_fragmented_blocks_allcpus(self) -> None:
        for cpu_id in range(self.machine.ncpus):
            self.purge_fragmented_blocks(cpu_id)

    def vb_alloc(self, count: int) -> int | None:
        """2**order pages (order = get_order(count pages)) from this CPU's blocks: the
        first block on its free list with room, a bump pointer inside it."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vb_alloc")
        try:
            cpu = self._cpu
            order = (count - 1).bit_length()
            n = 1 << order
            bits = self.VMAP_BBMAP_BITS
            vbq = self.vmap_block_queue[cpu.id]
            walked = 0
            for vb in vbq.free:
                walked += 1
                lk = vb.lock
                lk.lock(cpu)
                if vb.free < n:
                    lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
                    continue
                pages_off = bits - vb.free
                vb.free -= n
                if not vb.free:
                    vbq.lock.lock(cpu)
                    vbq.free.remove(vb)
                    vb.on_free_list = False
                    vbq.lock.unlock(cpu)
                lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
                if walked > 1:
                    self.machine.mem_access(cpu, "vb_alloc", walked - 1)
                return vb.va.va_start + (pages_off << PAGE_SHIFT)
            if walked:
                self.machine.mem_access(cpu, "vb_alloc", walked)
            return self.new_vmap_block(order)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vb_free(self, addr: int, count: int) -> None:
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vb_free")
        try:
            cpu = self._cpu
            n = 1 << (count - 1).bit_length()
            offset = (addr & (self.VMAP_BLOCK_SIZE - 1)) >> PAGE_SHIFT
            vb = self.vmap_blocks[self.addr_to_vb_idx(addr)]  # xa_load
            self.machine.clear_ptes(cpu, "vunmap_range_noflush", addr, addr + (count << PAGE_SHIFT))
            lk = vb.lock
            lk.lock(cpu)
            if offset < vb.dirty_min:
                vb.dirty_min = offset
            if offset + n > vb.dirty_max:
                vb.dirty_max = offset + n
            vb.dirty += n
            vb.unflushed += n
            lk.free_at = cpu.clock  # spin_unlock(&vb->lock)
            if vb.dirty == self.VMAP_BBMAP_BITS:
                assert not vb.free, "BUG_ON(vb->free)"
                self.free_vmap_block(vb)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vm_map_ram(self, pages: Sequence[Page], count: int, node: int = -1,
                   prot: int = PAGE_KERNEL) -> int | None:
        """Map ``count`` pages; up to VMAP_MAX_ALLOC from this CPU's vmap blocks."""
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
            else:
                va = self.alloc_vmap_area(count << PAGE_SHIFT, PAGE_SIZE, self.VMALLOC_START,
                                          self.VMALLOC_END, node)
                addr = None if va is None else va.va_start
            if addr is None:
                if tracing:
                    self.trace("map_ram_ret", addr=0)
                return None
            self._ram_maps[addr] = count
            if self.machine.set_ptes(self._cpu, "vmap_pages_range", addr, pages, prot, PAGE_KERNEL):
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
        """Release a vm_map_ram() mapping: PTEs cleared now, the TLB flush deferred."""
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
        if self._was_freed(addr):
            return True
        vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
        if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
            return False
        return ((addr - vb.va.va_start) >> PAGE_SHIFT) < self.VMAP_BBMAP_BITS - vb.free

    def vm_unmap_aliases(self) -> None:
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vm_unmap_aliases")
        try:
            if self.tracer is not None:
                self.trace("unmap_aliases")
            self.vm_unmap_aliases_(ULONG_MAX, 0, False)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vm_unmap_aliases_(self, start: int, end: int, flush: bool) -> None:
        """_vm_unmap_aliases(): widen [start, end) by the dirty range of each block on the
        per-CPU free lists (every block with ``vm_unmap_aliases_65``), purge fragmented
        blocks and lazy areas; flush the range if the purge flushed nothing."""
        cpu = self._cpu
        bits = self.VMAP_BBMAP_BITS
        blocks: Iterable[vmap_block]
        for vbq in self.vmap_block_queue:
            blocks = vbq.free
            if self.vm_unmap_aliases_65:
                blocks = [vb for vb in self.vmap_blocks.values() if self.vmap_block_queue[vb.cpu] is vbq]
            for vb in blocks:
                vb.lock.lock(cpu)
                if vb.dirty and vb.dirty != bits:
                    base = vb.va.va_start
                    s = base + (vb.dirty_min << PAGE_SHIFT)
                    e = base + (vb.dirty_max << PAGE_SHIFT)
                    start = min(s, start)
                    end = max(e, end)
                    flush = True
                    vb.unflushed = 0
                vb.lock.unlock(cpu)
        self.vmap_purge_lock.lock(cpu)
        self.purge_fragmented_blocks_allcpus()
        if not self.purge_vmap_area_lazy__(start, end) and flush:
            self.flush_tlb_kernel_range(start, end)
        self.vmap_purge_lock.unlock(cpu)

    # -- inspection -------------------------------------------------------------------------------
    def vmap_areas(self) -> list[vmap_area]:
        """Busy areas and lazily freed ones (coalesced, as the purge tree holds them), in
        address order."""
        out = list(self.vmap_area_root) + list(self.purge_vmap_area_root)
        out.sort(key=lambda va: va.va_start)
        return out

    def busy_vmap_areas(self) -> list[vmap_area]:
        """The busy list (vmap_area_list; 6.9: node by node), lazy areas not on it."""
        return list(self._busy_areas())

    def busy_vmap_area(self, addr: int) -> vmap_area | None:
        return self._busy_lookup(addr)

    def lazy_vmap_areas(self) -> list[vmap_area]:
        """The purge tree's areas (6.9: each node's lazy tree in turn)."""
        return list(self._lazy_areas())

    def free_areas(self) -> list[vmap_area]:
        """The free tree's areas, in address order."""
        return list(self.free_vmap_area_root)

    def free_areas_near(self, addr: int, n: int = 2) -> list[tuple[int, int]]:
        """The free tree's areas around ``addr``: up to ``n`` below it, the one holding
        it, up to ``n`` above (inspection: not charged)."""
        out: list[tuple[int, int]] = []
        free = self.free_vmap_area_root
        va = kva.find_vmap_area_exceed_addr(addr, free)  # the first area ending above addr
        free.visits = 0
        head = free.head
        if va is None:
            va = head.list_prev
            if va is head:
                return out
        lo = va
        for _ in range(n):
            if lo.list_prev is head:
                break
            lo = lo.list_prev
        v = lo
        while v is not head and len(out) < 2 * n + 1:
            out.append((v.va_start, v.va_end))
            v = v.list_next
        return out

    def vmallocinfo_areas(self) -> Iterator[tuple[int, int, str, vm_struct | None]]:
        for va in self.vmap_area_root:
            yield va.va_start, va.va_end, "vm" if va.vm is not None else "vm_map_ram", va.vm
        if len(self.vmap_area_root):
            for va in self.purge_vmap_area_root:
                yield va.va_start, va.va_end, "unpurged", None

    def vmallocinfo(self, style: str | None = None) -> str:
        """/proc/vmallocinfo as 6.1's s_show()/show_purge_info() print it: the busy list,
        then (if it is not empty) an ``unpurged vm_area`` line per lazy area; ``style``
        "2.6" renders the vm_structs in 2.6.28's dialect instead."""
        if style not in (None, "modern"):
            return super().vmallocinfo(style)
        cpu = self._cpu
        self.vmap_purge_lock.lock(cpu)
        self.vmap_area_lock.lock(cpu)
        nodes = self.machine.mem.nodes
        out: list[str] = []
        for va in self.vmap_area_root:
            v = va.vm
            if v is None:
                out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {va.va_end - va.va_start:7d} vm_map_ram\n")
                continue
            out.append(self._vm_line(v, nodes))
        if out:
            for va in self.purge_vmap_area_root:
                out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {va.va_end - va.va_start:7d} "
                           f"unpurged vm_area\n")
        self.vmap_area_lock.unlock(cpu)
        self.vmap_purge_lock.unlock(cpu)
        return "".join(out)

    def _vm_line(self, v: vm_struct, nodes: int) -> str:
        s = f"0x{v.addr:016x}-0x{v.addr + v.size:016x} {v.size:7d}"
        if v.caller:
            s += " " + v.caller
        if v.nr_pages:
            s += f" pages={v.nr_pages}"
        if v.phys_addr:
            s += f" phys=0x{v.phys_addr:016x}"
        f = v.flags
        for bit, word in ((VM_IOREMAP, " ioremap"), (VM_ALLOC, " vmalloc"), (VM_MAP, " vmap"),
                          (VM_USERMAP, " user"), (VM_DMA_COHERENT, " dma-coherent")):
            if f & bit:
                s += word
        if id(v) in self._pages_array_addr:  # is_vmalloc_addr(v->pages)
            s += " vpages"
        if v.nr_pages and v.pages and not f & VM_UNINITIALIZED:  # show_numa_info()
            counts = [0] * nodes
            for p in v.pages[:v.nr_pages]:
                counts[p.node] += 1
            s += "".join(f" N{n}={c}" for n, c in enumerate(counts) if c)
        return s + "\n"

    def _reserved(self, addr: int) -> bool:
        """A stale translation at ``addr`` is one the allocator holds back: a lazily freed
        area, or a freed page of a live vmap block (never reused until the block goes)."""
        if kva.find_vmap_area__(addr, self.purge_vmap_area_root) is not None:
            return True
        vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
        if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
            return False
        return ((addr - vb.va.va_start) >> PAGE_SHIFT) < self.VMAP_BBMAP_BITS - vb.free

    # -- checks: one per invariant ----------------------------------------------------------------
    def _check_design(self) -> None:
        self._check_trees()
        self._check_partition()
        self._check_lazy_count()
        self._check_busy_areas()
        self._check_blocks()
        self._check_ram_maps()
        self._check_no_stale_pte()

    def _check_trees(self) -> None:
        for name, tree in (("busy", self.vmap_area_root), ("lazy", self.purge_vmap_area_root)):
            try:
                kva.check_tree(tree)
            except AssertionError as e:
                raise AssertionError(f"{name} tree: {e}") from None
        try:
            kva.check_free_tree(self.free_vmap_area_root)
        except AssertionError as e:
            raise AssertionError(f"free tree: {e}") from None

    def _check_partition(self) -> None:
        """Busy, free and lazy areas tile [1, ULONG_MAX) exactly."""
        areas = sorted(self._all_areas(), key=lambda t: t[0])
        at = 1
        for start, end, kind in areas:
            if start != at:
                raise AssertionError(f"{kind} area at {start:#x}: expected the next area at {at:#x} "
                                     f"({'overlap' if start < at else 'hole'})")
            at = end
        if at != ULONG_MAX:
            raise AssertionError(f"the trees end at {at:#x}, not ULONG_MAX")

    def _all_areas(self) -> Iterator[tuple[int, int, str]]:
        for kind, tree in (("busy", self.vmap_area_root), ("free", self.free_vmap_area_root),
                           ("lazy", self.purge_vmap_area_root)):
            for va in tree:
                yield va.va_start, va.va_end, kind

    def _check_lazy_count(self) -> None:
        lazy = sum((va.va_end - va.va_start) >> PAGE_SHIFT for va in self.purge_vmap_area_root)
        if lazy != self.vmap_lazy_nr:
            raise AssertionError(f"vmap_lazy_nr is {self.vmap_lazy_nr}, the lazy tree holds {lazy} pages")

    def _check_busy_areas(self) -> None:
        for va in self._busy_areas():
            if va.va_start < self.VMALLOC_START or va.va_end > self.VMALLOC_END + 1:
                raise AssertionError(f"busy area {va.va_start:#x} outside VMALLOC_START..END")
            vm = va.vm
            if vm is not None and (vm.addr != va.va_start or vm.size != va.va_end - va.va_start):
                raise AssertionError(f"vm_struct of {va.va_start:#x} does not match its area")
            if vm is None and not isinstance(va.private, vmap_block) and va.va_start not in self._ram_maps:
                raise AssertionError(f"busy area {va.va_start:#x} has no vm_struct, block or vm_map_ram user")

    def _check_blocks(self) -> None:
        bits = self.VMAP_BBMAP_BITS
        for idx, vb in self.vmap_blocks.items():
            if self.addr_to_vb_idx(vb.va.va_start) != idx or vb.va.private is not vb:
                raise AssertionError(f"block {idx} filed under the wrong index or area")
            if self._busy_lookup(vb.va.va_start) is not vb.va:
                raise AssertionError(f"block {idx}'s area is not busy")
            if not 0 <= vb.free <= bits or not 0 <= vb.dirty < bits or vb.free + vb.dirty > bits:
                raise AssertionError(f"block {idx}: free={vb.free} dirty={vb.dirty} of {bits}")
            if vb.on_free_list != (vb in self.vmap_block_queue[vb.cpu].free) or vb.on_free_list != (vb.free > 0):
                raise AssertionError(f"block {idx}: free-list membership wrong (free={vb.free})")
            # (6.5 on reset the range once flushed: dirty_max 0 with dirty pages)
            if vb.dirty_max and not vb.dirty_min < vb.dirty_max <= bits - vb.free:
                raise AssertionError(f"block {idx}: dirty range [{vb.dirty_min}, {vb.dirty_max}) "
                                     f"outside the used part")
        for cpu_id, vbq in enumerate(self.vmap_block_queue):
            for vb in vbq.free:
                if vb.cpu != cpu_id or self.vmap_blocks.get(self.addr_to_vb_idx(vb.va.va_start)) is not vb:
                    raise AssertionError(f"CPU {cpu_id}'s free list holds a foreign or freed block")

    def _check_ram_maps(self) -> None:
        for addr, count in self._ram_maps.items():
            if count <= VMAP_MAX_ALLOC:
                vb = self.vmap_blocks.get(self.addr_to_vb_idx(addr))
                if vb is None or not vb.va.va_start <= addr < vb.va.va_end:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} has no block")
                if ((addr - vb.va.va_start) >> PAGE_SHIFT) + count > self.VMAP_BBMAP_BITS - vb.free:
                    raise AssertionError(f"vm_map_ram mapping {addr:#x} beyond its block's bump pointer")
            else:
                va = kva.find_vmap_area__(addr, self.vmap_area_root)
                if (va is None or va.va_start != addr or va.vm is not None
                        or isinstance(va.private, vmap_block)):
                    raise AssertionError(f"large vm_map_ram mapping {addr:#x} has no busy area")

    def _check_no_stale_pte(self) -> None:
        """6.1 clears PTEs at free: a PTE that is not a live mapping is a bug, not a lazy area."""
        live = self._live
        for vpn, page in self.machine.pte.items():
            if live.get(vpn) is not page:
                raise AssertionError(f"PTE at {vpn << PAGE_SHIFT:#x} survives its free (6.1 clears PTEs at once)")
