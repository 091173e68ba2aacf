"""The vm_struct layer and the vmalloc API of ``include/linux/vmalloc.h`` (2.6.28).

:class:`Kernel` holds what every design shares: the simulated machine, ``vmlist``,
the vm_struct functions (``vmalloc`` and friends, ``vfree``, ``vmap``/``vunmap``,
``remap_vmalloc_range``, ``/proc/vmallocinfo`` ...) and the correctness oracle. A
design (one module each: ``rewrite``, ``legacy``) subclasses it with
``class X(Kernel, design="name")`` and provides the vmap-area allocator underneath:
``get_vm_area_node__``, ``remove_vm_area``, ``find_vm_area``, ``vm_map_ram``,
``vm_unmap_ram``, ``vm_unmap_aliases``. ``Kernel(design=...)`` builds the right one.

Naming rule for the kernel's double-underscore names: Python mangles ``__name``
inside a class, so a kernel name ``__foo`` is spelled ``foo__`` here (the two leading
underscores move to the end): ``__vmalloc`` -> ``vmalloc__``, ``__get_vm_area`` ->
``get_vm_area__``, ``__purge_vmap_area_lazy`` -> ``purge_vmap_area_lazy__``.

The oracle: the model records every translation the layer *intends* (``_live``:
virtual page number -> Page, set when an area is mapped, dropped when it is freed).
A PTE or TLB entry that is not intended must lie in a range the allocator still
holds back (a lazily freed area, a dirty vmap_block slot); ``check()`` verifies
that, and an access through one raises UseAfterFreeError/StaleTranslationError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import CodeType
from typing import Any, ClassVar, NamedTuple

from ..errors import (
    BadAddressError,
    BadPageError,
    ConfigError,
    DoubleFreeError,
    InvalidArgumentError,
    InvariantError,
    StaleTranslationError,
    UnsupportedError,
    UseAfterFreeError,
)
from ..hw.cost import CostModel, get_preset
from ..hw.machine import CPU, Machine, pr_ptr
from ..hw.physmem import Page
from . import designs
from .constants import (
    EINVAL,
    GFP_DMA32__,
    GFP_HIGHMEM__,
    GFP_KERNEL,
    GFP_VMALLOC32,
    GFP_ZERO__,
    IOREMAP_MAX_ORDER,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VM_VPAGES,
    VMALLOC_END,
    VMALLOC_START,
    fls,
)
from .designs import DesignInfo


class vm_struct:  # noqa: N801 - kernel type name
    """``struct vm_struct`` (include/linux/vmalloc.h, 2.6.28).

    ``size`` includes the guard page while the area is live (get_vm_area_size()
    subtracts it); ``next`` links ``vmlist`` in address order.
    """

    __slots__ = ("next", "addr", "size", "flags", "pages", "nr_pages", "phys_addr", "caller")

    def __init__(self, addr: int, size: int, flags: int, caller: str) -> None:
        self.next: vm_struct | None = None
        self.addr = addr
        self.size = size
        self.flags = flags
        self.pages: list[Page] | None = None
        self.nr_pages = 0
        self.phys_addr = 0
        self.caller = caller

    def __repr__(self) -> str:
        return (f"vm_struct(addr={self.addr:#x}, size={self.size:#x}, flags={self.flags:#x}, "
                f"nr_pages={self.nr_pages}, caller={self.caller!r})")


class vm_area_struct:  # noqa: N801 - kernel type name
    """A minimal user ``struct vm_area_struct`` for remap_vmalloc_range().

    ``pages`` maps each user page address to the Page inserted there (each insert
    takes a page reference, as vm_insert_page() does); ``zap()`` drops them.
    """

    __slots__ = ("vm_start", "vm_end", "vm_flags", "pages", "_kernel")

    VM_RESERVED = 0x00080000

    def __init__(self, vm_start: int, vm_end: int) -> None:
        for name, v in (("vm_start", vm_start), ("vm_end", vm_end)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
            if v & (PAGE_SIZE - 1):
                raise InvalidArgumentError(f"{name} {v:#x} is not page aligned")
        if vm_end <= vm_start:
            raise InvalidArgumentError(f"empty vma [{vm_start:#x}, {vm_end:#x})")
        self.vm_start = vm_start
        self.vm_end = vm_end
        self.vm_flags = 0
        self.pages: dict[int, Page] = {}
        self._kernel: Kernel | None = None

    def read(self, uaddr: int, n: int) -> bytes:
        """Read user memory through this vma (what user space sees after mmap)."""
        out = bytearray()
        while n > 0:
            base = uaddr & PAGE_MASK
            page = self.pages.get(base)
            if page is None:
                raise BadAddressError(f"user address {uaddr:#x} is not mapped in this vma")
            off = uaddr - base
            chunk = min(n, PAGE_SIZE - off)
            out += page.data[off:off + chunk] if page.data is not None else bytes(chunk)
            uaddr += chunk
            n -= chunk
        return bytes(out)

    def zap(self) -> None:
        """Tear the user mapping down (munmap): drop each page reference."""
        k = self._kernel
        for page in self.pages.values():
            if k is not None:
                k.machine.mem.free_page(page)
        self.pages.clear()
        if k is not None:
            k._user_vmas.discard(self)


_symbols: dict[tuple[CodeType, int], str] = {}


def _caller_symbol(depth: int) -> str:
    """The kernel's ``__builtin_return_address(0)`` printed as ``sym+0xoff/0xsize``
    (one string per call site, shared by every area allocated there)."""
    f = sys._getframe(depth + 1)
    key = (f.f_code, f.f_lasti)
    sym = _symbols.get(key)
    if sym is None:
        code = f.f_code
        sym = _symbols[key] = f"{code.co_name}+{f.f_lasti:#x}/{len(code.co_code):#x}"
    return sym


def _check_int(name: str, what: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name}: {what} must be an int, not {type(v).__name__}")
    return v


def _check_size(name: str, size: object) -> int:
    n = _check_int(name, "size", size)
    if n < 0:
        raise InvalidArgumentError(f"{name}: size must not be negative, got {n}")
    return n


def _check_addr(name: str, addr: object) -> int:
    a = _check_int(name, "address", addr)
    if a < 0:
        raise InvalidArgumentError(f"{name}: address must not be negative, got {a}")
    return a


def _check_bool(name: str, v: object) -> bool:
    """A switch: exactly True or False (``"no"`` or ``1`` would silently switch it on)."""
    if v.__class__ is not bool:
        raise TypeError(f"{name} must be a bool (True or False), not {type(v).__name__} {v!r}")
    return bool(v)


#: callers whose symbol text is known to be one vmallocinfo token (bounded: a cache)
_good_callers: set[str] = set()


def _check_caller(who: str, caller: object) -> str:
    """A caller symbol as %pS prints it (``sym+0xoff/0xsize``): a str of printable
    characters without white space, so it stays one field of its vmallocinfo line."""
    if caller.__class__ is str and caller in _good_callers:
        return caller  # type: ignore[return-value]
    if not isinstance(caller, str):
        raise TypeError(f"{who}: caller must be a str (a symbol), not {type(caller).__name__}")
    if not caller.isprintable() or any(c.isspace() for c in caller):
        raise InvalidArgumentError(f"{who}: caller {caller!r} must be one printable word (a symbol "
                                   f"such as 'func+0x1c/0x80'): no spaces, newlines or control characters")
    if len(_good_callers) < 4096:
        _good_callers.add(caller)
    return caller


def vm_line(v: vm_struct, nodes: int, modern: bool = False) -> str:
    """One /proc/vmallocinfo line for ``v``: s_show() of 2.6.28 (``phys=%lx``), or with
    ``modern`` of later kernels (``phys=%pa``: 0x and 16 digits); ``%p`` shown unhashed."""
    s = f"0x{v.addr:016x}-0x{v.addr + v.size:016x} {v.size:7d}"
    if v.caller:
        s += " " + v.caller
    if v.nr_pages:
        s += f" pages={v.nr_pages}"
    if v.phys_addr:
        s += f" phys=0x{v.phys_addr:016x}" if modern else f" phys={v.phys_addr:x}"
    f = v.flags
    if f & VM_IOREMAP:
        s += " ioremap"
    if f & VM_ALLOC:
        s += " vmalloc"
    if f & VM_MAP:
        s += " vmap"
    if f & VM_USERMAP:
        s += " user"
    if f & VM_VPAGES:
        s += " vpages"
    if v.nr_pages and v.pages:  # show_numa_info()
        counts = [0] * nodes
        for p in v.pages[:v.nr_pages]:
            counts[p.node] += 1
        s += "".join(f" N{n}={c}" for n, c in enumerate(counts) if c)
    return s


class VmapBlockInfo(NamedTuple):
    """What ``Kernel.vmap_block_for()`` tells of a vmap_block."""

    cpu: int  # the CPU whose vmap_block_queue it belongs to
    va_start: int
    free: int  # pages never handed out
    dirty: int  # pages handed out and freed again


class Kernel:
    """A simulated kernel: the machine plus one design of the vmap layer.

    ``Kernel(cpus=8, nodes=1, mem_pages=262144, design="2.6.28")``; ``design`` is a
    registered name or alias (``vmapsim.mm.designs``: ``"2.6.27"``/``"legacy"``,
    ``"2.6.28"``/``"rewrite"`` (the default), ``"6.1"``, ...). ``cost`` is a preset
    name or a CostModel; ``tlb_size`` bounds each TLB (None: unbounded, the strictest
    oracle); ``vmalloc_size`` shrinks the vmalloc space (default: x86_64's 32 TiB);
    ``vmalloc_start`` moves it (KASLR moves it every boot on modern kernels).

    What code outside ``mm/`` may ask a design is the public interface below
    ("the design's interface"): capabilities as class attributes, ``config_for()`` for
    the keyword arguments a design wants for N CPUs or a vmap block size, and the
    placement and tracing hooks. Nothing outside ``mm/`` asks for a class or a name.

    The interface, each method documented where it is defined (a design overrides the
    ones marked *design*; the base versions of the others are generic):

    - ``current_cpu`` (property, settable): the CPU the next call runs on (the timing
      engine's fast switch; ``set_cpu(n)``/``on_cpu(n)`` take a CPU number).
    - ``can_place(addr, size)`` *design*: whether an area can go at exactly ``addr``.
    - ``place_vm_area(addr, size, flags, caller)``: a vm_struct at exactly ``addr``.
    - ``populate_vm_area(area, pages_per_node)``: allocate and map an area's pages.
    - ``place_lazy_area(addr, size)`` *design*: a lazily freed area at exactly ``addr``.
    - ``place_vmap_block(addr)`` *design*: a vmap block at exactly ``addr``.
    - ``vmap_block_states()`` *design*: every vmap block with its owner CPU and page states.
    - ``purge_vmap_area_lazy()`` *design*: purge every lazily freed area now.
    - ``vmallocinfo_areas()`` *design*: what /proc/vmallocinfo prints, in its order;
      ``vmallocinfo(style)`` renders it in the design's dialect or the other one.
    - ``tracepoints`` (class attribute) and ``tracer``: the events ``trace()`` fires.
    - ``takes_placements``, ``purges_deferred``, ``placement_order`` (class attributes)
      and ``placement_hook``: what a replay needs to follow a traced kernel's choices;
      ``free_areas_near(addr)``: the free ranges around an address (inspection).
    - ``busy_vmap_areas()``, ``busy_vmap_area(addr)``, ``lazy_vmap_areas()``,
      ``free_areas()`` *design* (inspection, what ``vmapsim.helpers`` walks): the busy
      list in the kernel's order, the busy area holding an address, the lazily freed
      areas, the free tree (UnsupportedError on designs without one).
    """

    #: the design's registry entry (set by ``class X(Kernel, design=DesignInfo(...))``)
    info: ClassVar[DesignInfo]
    #: the design's canonical name ("2.6.28")
    design: ClassVar[str] = ""
    #: capabilities: the per-CPU vm_map_ram()/vm_unmap_ram() interface ...
    has_vm_map_ram: ClassVar[bool] = False
    #: ... a vmlist of vm_structs (2.6 designs; 6.x finds them through va->vm) ...
    has_vmlist: ClassVar[bool] = False
    #: ... lazy freeing (vmap_lazy_nr, purges, vm_unmap_aliases() with work to do)
    has_lazy_free: ClassVar[bool] = False
    #: /proc/vmallocinfo's dialect: "2.6" (phys=%lx, no vm_map_ram lines) or "modern"
    vmallocinfo_style: ClassVar[str] = "2.6"
    #: pages lazily freed and not yet purged (designs with lazy freeing keep it)
    vmap_lazy_nr: int = 0
    #: the tracepoints this design fires through ``trace()`` (names as in ``trace()``);
    #: the base layer fires ``vfree`` (vfree()) and ``flush`` (unmap_kernel_range()'s
    #: flush_tlb_kernel_range()); a design adds those of its own functions
    tracepoints: ClassVar[frozenset[str]] = frozenset({"vfree", "flush"})
    #: the vm_struct flag marking a vmalloc()ed page array (2.6: VM_VPAGES; 6.x has
    #: none and tests is_vmalloc_addr(area->pages) instead: 0)
    vpages_flag: ClassVar[int] = VM_VPAGES
    #: the vm_struct flags a caller of get_vm_area*()/vmap() may pass (2.6: VM_IOREMAP,
    #: VM_ALLOC, VM_MAP, VM_USERMAP; VM_VPAGES is the layer's own) ...
    caller_vm_flags: ClassVar[int] = VM_IOREMAP | VM_ALLOC | VM_MAP | VM_USERMAP
    #: ... and every flag the design knows (what a snapshot's line may show: place_vm_area)
    known_vm_flags: ClassVar[int] = VM_IOREMAP | VM_ALLOC | VM_MAP | VM_USERMAP | VM_VPAGES
    #: the name __vunmap()'s WARN texts give a bad vunmap() (2.6 to 6.2: "vfree"; 6.3 on,
    #: where vunmap() has texts of its own: "vunmap")
    vunmap_name: ClassVar[str] = "vfree"
    #: the profile names of lock acquires and waits (Machine.lock_symbols): 2.6's own
    lock_symbols: ClassVar[dict[str, tuple[str, str]]] = {}
    #: vmap_pte_range() on a present PTE: False, WARN and fail with -EBUSY (2.6.28 on);
    #: True, WARN and overwrite it (2.6.27)
    vmap_pte_overwrite: ClassVar[bool] = False
    #: the design's allocator asks ``placement_hook`` at every vmap area allocation
    #: (a replay then places each area where the traced kernel put it)
    takes_placements: ClassVar[bool] = False
    #: the lazy purge runs as deferred work (``schedule_work``) whose timing is the
    #: machine's, not the freeing call's: a replay follows the traced kernel's purges
    purges_deferred: ClassVar[bool] = False
    #: the order in which a rebuild places a snapshot's areas: "descending" (the 2.6
    #: first fits keep a page after a busy area, so an area is placed below its
    #: neighbour) or "ascending" (the order a lowest-fit allocator carved them in)
    placement_order: ClassVar[str] = "descending"

    def __init_subclass__(cls, design: DesignInfo | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if design is not None:
            cls.info = design
            cls.design = design.name
            designs.register(cls, design)

    def __new__(cls, *args: Any, design: str = "2.6.28", **kw: Any) -> Kernel:
        if cls is Kernel:
            cls = designs.design_class(design)
        return super().__new__(cls)

    @classmethod
    def config_for(cls, cpus: int, block_pages: int | None = None) -> dict[str, Any] | None:
        """Keyword arguments this design wants for a ``cpus``-CPU machine whose vmap
        blocks have ``block_pages`` pages (None: the design's own); None if the design
        cannot have such blocks. Designs without vmap blocks need nothing."""
        return {} if block_pages is None or not cls.has_vm_map_ram else None

    def __init__(
        self,
        cpus: int = 8,
        nodes: int = 1,
        mem_pages: int = 262144,
        design: str = "2.6.28",
        cost: str | CostModel = "opteron-2008",
        tlb_size: int | None = None,
        vmalloc_size: int | None = None,
        vmalloc_start: int | None = None,
    ) -> None:
        model = get_preset(cost) if isinstance(cost, str) else cost
        if not isinstance(model, CostModel):
            raise TypeError(f"cost must be a preset name or a CostModel, not {type(cost).__name__}")
        self.machine = Machine(cpus, nodes, mem_pages, model, tlb_size)
        self.machine.lock_symbols = dict(self.lock_symbols)
        self.cost = model
        start = self.default_vmalloc_start() if vmalloc_start is None else vmalloc_start
        _check_addr("vmalloc_start", start)
        if start & ((1 << 30) - 1) or not 0xFFFF800000000000 <= start < 1 << 64:
            raise ConfigError(f"vmalloc_start must be a 1 GiB aligned kernel address, got {start:#x}")
        full = self.default_vmalloc_size()
        if vmalloc_size is None:
            vmalloc_size = full
        else:
            _check_size("vmalloc_size", vmalloc_size)
            if vmalloc_size < 16 * PAGE_SIZE or vmalloc_size & (PAGE_SIZE - 1) or vmalloc_size > full:
                raise ConfigError(
                    f"vmalloc_size must be a multiple of PAGE_SIZE from 16 pages to x86_64's "
                    f"{full >> 40} TiB, got {vmalloc_size}"
                )
        if start + vmalloc_size > 1 << 64:
            raise ConfigError(f"vmalloc space {start:#x} + {vmalloc_size:#x} passes the end of memory")
        #: VMALLOC_START/VMALLOC_END of this boot (VMALLOC_END inclusive, as x86_64's)
        self.VMALLOC_START = start
        self.VMALLOC_END = start + vmalloc_size - 1
        self.num_physpages = mem_pages
        #: NR_CPUS, the compile-time CPU count (what it sizes is the design's business)
        self.nr_cpus = self.machine.ncpus
        self._cpu: CPU = self.machine.cpus[0]
        # the oracle
        self._live: dict[int, Page] = {}
        self._user_pages: set[Page] = set()
        self._user_vmas: set[vm_area_struct] = set()
        #: id(vm_struct) -> address of its vmalloc()ed page array (VM_VPAGES areas)
        self._pages_array_addr: dict[int, int] = {}
        #: vm_map_ram() mappings handed out: address -> count (to validate vm_unmap_ram)
        self._ram_maps: dict[int, int] = {}
        #: page array address -> address of the area it holds the pages of (the array
        #: is the layer's: only its owner's vfree() frees it)
        self._array_owner: dict[int, int] = {}
        #: addresses of live areas whose pages the layer allocated (vmalloc() and
        #: friends, __vmalloc_area(), populate_vm_area()): only vfree() may free them
        self._vm_pages: set[int] = set()
        self.purges = 0
        #: the tracepoint hook: None, or a callable(event, fields) that sees every
        #: vmalloc-layer event the kprobes of the real captures see (``trace()``)
        self.tracer: Callable[[str, dict[str, int]], None] | None = None
        #: who runs deferred work (``schedule_work``/``queue_work_on``): None runs it at
        #: once on the queueing CPU; the timing engine installs one that runs it as work
        #: of its own in simulated time; a replay installs one that follows the traced
        #: kernel's own timing instead
        self.work_scheduler: Callable[[int, str, Callable[[], None]], None] | None = None
        #: a replay's say in placement (designs that ``takes_placements``): None, or a
        #: callable(size, align, vstart, vend, choice) -> address | None asked at every
        #: vmap area allocation with the design's own choice (None: nothing fits); a
        #: returned address (the traced kernel's) is used instead if that range is free
        self.placement_hook: Callable[[int, int, int, int, int | None], int | None] | None = None

    @staticmethod
    def default_vmalloc_start() -> int:
        """VMALLOC_START of the design's x86_64 (2.6: fixed; 6.x: KASLR's base)."""
        return VMALLOC_START

    @staticmethod
    def default_vmalloc_size() -> int:
        return VMALLOC_END + 1 - VMALLOC_START

    def schedule_work(self, name: str, fn: Callable[[], None], cpu: int | None = None) -> None:
        """schedule_work()/queue_work_on(): run ``fn`` (kernel function ``name``) later
        on CPU ``cpu`` (default: this one, as system_wq's bound workers do)."""
        target = self._cpu.id if cpu is None else cpu
        sched = self.work_scheduler
        if sched is not None:
            sched(target, name, fn)
            return
        old = self._cpu
        self._cpu = self.machine.cpus[target]
        try:
            fn()
        finally:
            self._cpu = old

    def trace(self, event: str, **fields: int) -> None:
        """Fire tracepoint ``event`` (the captures' kprobe names), with int fields:

        - ``alloc(size, align, vstart, vend)``: entry of alloc_vmap_area() (size with
          the guard page); ``alloc_ret(va_start, va_end)``: its return, 0/0 on failure;
        - ``free_noflush(va_start, va_end)``: an area turns lazy (free_vmap_area_noflush,
          2.6.28's free_unmap_vmap_area_noflush);
        - ``purge(start, end)``: entry of __purge_vmap_area_lazy() with its arguments;
          ``purge_ret(ret)``: its return, 1 if it purged and flushed, else 0;
        - ``flush(start, end)``: flush_tlb_kernel_range(start, end);
        - ``vfree(addr)``: entry of vfree() (0 for NULL);
        - ``map_ram(count, node)`` / ``map_ram_ret(addr)`` (0: failed): vm_map_ram();
          ``unmap_ram(addr, count)``: vm_unmap_ram(); ``unmap_aliases()``.

        Each fires when the function is entered (``*_ret``: when it returns), after
        the model's type and page checks and before the kernel's own BUG checks;
        ``tracepoints`` lists those a design fires.
        Callers test ``self.tracer is not None`` first on hot paths."""
        if self.tracer is not None:
            self.tracer(event, fields)

    @property
    def vmap_block_pages(self) -> int:
        """Pages per vmap_block (VMAP_BBMAP_BITS); 0 for a design without blocks."""
        return 0

    def free_areas_near(self, addr: int, n: int = 2) -> list[tuple[int, int]]:
        """Inspection: the free ranges ``[start, end)`` of the vmalloc space around
        ``addr`` (up to ``n`` below it, the one holding it, up to ``n`` above), as the
        allocator sees them. The base derives them from ``vmap_areas()`` (O(n)); a
        design with a free tree of its own lists that."""
        busy = sorted((va.va_start, va.va_end) for va in self.vmap_areas())
        gaps: list[tuple[int, int]] = []
        at = self.VMALLOC_START
        for s, e in busy:
            if s > at:
                gaps.append((at, s))
            at = max(at, e)
        if at < self.VMALLOC_END + 1:
            gaps.append((at, self.VMALLOC_END + 1))
        i = next((j for j, (_, e) in enumerate(gaps) if e > addr), len(gaps) - 1)
        return gaps[max(0, i - n):i + n + 1]

    def vmap_block_for(self, addr: int) -> VmapBlockInfo | None:
        """The vmap_block holding ``addr`` (inspection), or None (none, or no blocks)."""
        return None

    def busy_vmap_areas(self) -> list[Any]:
        """Inspection: the areas on the busy list, in the kernel's order: what drgn's
        for_each_vmap_area() walks (vmap_area_list; 6.9: each vmap node's busy list in
        turn). 2.6.28 keeps a lazily freed area there until the purge; 6.x moves it to
        its purge list. The base: ``vmap_areas()``. Charges nothing."""
        return self.vmap_areas()

    def busy_vmap_area(self, addr: int) -> Any | None:
        """Inspection: the area of ``busy_vmap_areas()`` whose ``[va_start, va_end)``
        holds ``addr`` (what drgn's find_vmap_area() finds in the busy tree), or None.
        The base scans the list; a design with a tree looks it up. Charges nothing."""
        for va in self.busy_vmap_areas():
            if va.va_start <= addr < va.va_end:
                return va
        return None

    def lazy_vmap_areas(self) -> list[Any]:
        """Inspection: the lazily freed areas awaiting a purge (6.1's purge tree
        coalesces neighbours; 6.9: node by node). The base frees nothing lazily: []."""
        return []

    def free_areas(self) -> list[Any]:
        """Inspection: the free space as the allocator keeps it, one vmap_area per free
        range in address order (5.2 on: free_vmap_area_root). The 2.6 designs keep no
        free areas (their free space is the gaps between busy ones, ``free_areas_near``
        lists those), so the base raises UnsupportedError."""
        raise UnsupportedError(f"the {self.design} design keeps no free vmap areas (a free tree "
                               f"came with Linux 5.2); free_areas_near() lists the gaps")

    # -- the design's interface: placement and inspection (see the class docstring) -------
    @property
    def current_cpu(self) -> CPU:
        """The CPU the kernel runs on now (smp_processor_id()). Setting it to one of
        ``machine.cpus`` switches CPUs: the timing engine's switch at every step, so it
        is not checked (``set_cpu(n)`` checks its CPU number)."""
        return self._cpu

    @current_cpu.setter
    def current_cpu(self, cpu: CPU) -> None:
        self._cpu = cpu

    def _check_place(self, who: str, addr: int, size: int) -> None:
        _check_addr(who, addr)
        _check_size(who, size)
        if (addr | size) & (PAGE_SIZE - 1) or not size:
            raise InvalidArgumentError(f"{who}: address {addr:#x} and size {size:#x} must be "
                                       f"page aligned, the size not 0")

    def can_place(self, addr: int, size: int) -> bool:
        """Whether an area of ``size`` bytes (its guard page included) can be placed at
        exactly ``addr`` now: inside VMALLOC_START..VMALLOC_END and clear of every busy
        area, lazily freed ones included (their range is not free until the purge).
        *design*: the base walks ``vmap_areas()`` (O(n)) and asks only that; a design
        overrides it with its own lookup and adds its allocator's neighbour rules (the
        2.6 first fits never start an area at the very end of another: a page must lie
        between). InvalidArgumentError for an unaligned address or size."""
        self._check_place("can_place", addr, size)
        if addr < self.VMALLOC_START or addr + size > self.VMALLOC_END + 1:
            return False
        end = addr + size
        return not any(va.va_start < end and va.va_end > addr for va in self.vmap_areas())

    def place_vm_area(self, addr: int, size: int, flags: int, caller: str) -> vm_struct | None:
        """A vm_struct of ``size`` bytes (guard page included: at least 2 pages) at exactly
        ``addr``, as a snapshot or a trace showed it: ``get_vm_area_node__()`` over just
        that range, so the design's allocator does the work and charges it. None, with
        nothing changed, if ``can_place()`` says no. The pages are not allocated (see
        ``populate_vm_area``); ``phys_addr`` and the like are the caller's to set."""
        self._check_place("place_vm_area", addr, size)
        self._check_flags("place_vm_area", flags, self.known_vm_flags)
        _check_caller("place_vm_area", caller)
        if size < 2 * PAGE_SIZE:
            raise InvalidArgumentError(f"place_vm_area: size {size:#x} leaves no room for the guard page")
        if not self.can_place(addr, size):
            return None
        area = self.get_vm_area_node__(size - PAGE_SIZE, flags, addr, addr + size, -1, GFP_KERNEL,
                                       caller, align=PAGE_SIZE)
        if area is not None and area.addr != addr:
            raise InvariantError(f"place_vm_area: asked for {addr:#x}, the allocator gave {area.addr:#x}")
        return area

    def populate_vm_area(self, area: vm_struct, pages_per_node: dict[int, int]) -> list[Page]:
        """Allocate the pages of a placed area and map them from ``area.addr`` (what
        __vmalloc_area_node() does for a VM_ALLOC area, without a page array):
        ``pages_per_node`` maps a NUMA node (-1: the current CPU's) to how many pages to
        take from it, in ascending node order. Sets ``area.pages``/``nr_pages``; returns
        the pages, fewer than asked if memory ran out (the area then holds those).
        ``area`` must be one just placed (``place_vm_area``, ``get_vm_area_node__``):
        InvalidArgumentError if it has pages already, is too small for them, or a PTE
        of its range is present."""
        who = "populate_vm_area"
        if not isinstance(area, vm_struct):
            raise TypeError(f"{who}: area must be a vm_struct, not {type(area).__name__}")
        if not isinstance(pages_per_node, dict):
            raise TypeError(f"{who}: pages_per_node must be a dict, not {type(pages_per_node).__name__}")
        total = 0
        for node, n in pages_per_node.items():
            self._check_node(who, node)
            total += _check_size(f"{who}: pages of node {node}", n)
        if area.pages is not None:
            raise InvalidArgumentError(f"{who}: the area at {area.addr:#x} has its pages already")
        if total > (area.size - PAGE_SIZE) >> PAGE_SHIFT:
            raise InvalidArgumentError(f"{who}: {total} pages do not fit the area at {area.addr:#x} "
                                       f"({area.size:#x} bytes with its guard page)")
        pte = self.machine.pte
        vpn = area.addr >> PAGE_SHIFT
        for i in range(total):
            if vpn + i in pte:
                raise InvalidArgumentError(f"{who}: {(vpn + i) << PAGE_SHIFT:#x} is mapped already")
        pages: list[Page] = []
        for node, n in sorted(pages_per_node.items()):
            for _ in range(n):
                page = self._alloc_page(node, GFP_KERNEL)
                if page is None:
                    break  # out of memory on this node: no retry per page
                pages.append(page)
        area.pages = pages
        area.nr_pages = len(pages)
        self._vm_pages.add(area.addr)
        self.vmap_page_range_(area.addr, pages, PAGE_KERNEL)
        return pages

    def place_lazy_area(self, addr: int, size: int) -> bool:
        """*design*: a vmap area of ``size`` bytes at exactly ``addr``, freed lazily at
        once, as a snapshot's ``unpurged vm_area`` line shows it: its range stays busy
        and its pages count in ``vmap_lazy_nr`` until a purge (which this may start, as
        any lazy free past lazy_max_pages() does). False, with nothing changed, if the
        design has no lazy freeing (the base) or ``can_place()`` says no."""
        self._check_place("place_lazy_area", addr, size)
        return False

    def place_vmap_block(self, addr: int) -> bool:
        """*design*: a vmap block at exactly ``addr`` owned by the current CPU, in the
        state a snapshot's ``vm_map_ram`` line implies without saying how full: every
        page handed out by vm_map_ram(), all but one unmapped again (dirty, awaiting a
        flush) and one page still mapped, so the block stays. That page comes from
        ``alloc_page()`` and stays allocated. False, with nothing changed, if the
        design has no vmap blocks (the base), ``addr`` is not block aligned,
        ``can_place()`` says no, memory is short, or the current CPU has a block with
        free pages (vm_map_ram() would take those first)."""
        _check_addr("place_vmap_block", addr)
        return False

    def vmap_block_states(self) -> list[tuple[int, int, int, int, int]]:
        """*design*: every vmap block as ``(start, end, cpu, used, dirty)`` in address
        order: the CPU whose queue owns it, and two bitmaps over its pages (bit i = page
        i): handed out by vb_alloc(), and of those, freed but still mapped (awaiting a
        flush). A page in neither is free. The base has no blocks: []."""
        return []

    def purge_vmap_area_lazy(self) -> None:
        """*design*: purge_vmap_area_lazy(): unmap every lazily freed area now, with one
        flush. The base frees nothing lazily, so there is nothing to do."""

    def vmallocinfo_areas(self) -> Iterator[tuple[int, int, str, vm_struct | None]]:
        """*design*: what /proc/vmallocinfo shows, as ``(start, end, kind, vm)`` in the
        order the modern dialect prints it: kind ``"vm"`` (``vm`` the vm_struct, the
        range its guard page included), ``"vm_map_ram"`` (a vmap block or a large
        vm_map_ram() mapping) or ``"unpurged"`` (a lazily freed area), ``vm`` None for
        the last two. The 2.6 dialect prints the ``"vm"`` lines only. Charges nothing."""
        raise NotImplementedError

    # -- /proc/vmallocinfo ------------------------------------------------------------
    def vmallocinfo(self, style: str | None = None) -> str:
        """/proc/vmallocinfo from ``vmallocinfo_areas()``: ``style`` "2.6" (2.6.28's
        s_show(): the vm_structs, ``phys=%lx``) or "modern" (6.x: ``phys=%pa``, then
        ``vm_map_ram`` lines for blocks and ``unpurged vm_area`` lines for lazy areas);
        None: the design's own (``vmallocinfo_style``)."""
        if style is None:
            style = self.vmallocinfo_style
        if style not in ("2.6", "modern"):
            raise ConfigError(f"vmallocinfo style must be '2.6' or 'modern', not {style!r}")
        modern = style == "modern"
        nodes = self.machine.mem.nodes
        out: list[str] = []
        for start, end, kind, vm in self.vmallocinfo_areas():
            if vm is not None:
                out.append(vm_line(vm, nodes, modern))
            elif modern:
                what = "vm_map_ram" if kind == "vm_map_ram" else "unpurged vm_area"
                out.append(f"0x{start:016x}-0x{end:016x} {end - start:7d} {what}")
        return "".join(line + "\n" for line in out)

    # -- the machine ---------------------------------------------------------------
    @property
    def warnings(self) -> list[str]:
        """The kernel log: WARN texts and allocation-failure messages, oldest first."""
        return self.machine.warnings

    @property
    def cpus(self) -> int:
        return self.machine.ncpus

    @property
    def this_cpu(self) -> CPU:
        return self._cpu

    @contextmanager
    def on_cpu(self, cpu: int) -> Iterator[CPU]:
        """Run the calls inside the ``with`` block on CPU ``cpu`` (smp_processor_id())."""
        self._check_cpu(cpu)
        old = self._cpu
        self._cpu = self.machine.cpus[cpu]
        try:
            yield self._cpu
        finally:
            self._cpu = old

    def set_cpu(self, cpu: int) -> None:
        """Switch the current CPU (what ``on_cpu`` does, without restoring it)."""
        self._check_cpu(cpu)
        self._cpu = self.machine.cpus[cpu]

    def _check_cpu(self, cpu: object) -> None:
        n = _check_int("cpu", "cpu", cpu)
        if not 0 <= n < self.machine.ncpus:
            raise ConfigError(f"cpu {cpu} out of range 0..{self.machine.ncpus - 1}")

    def _check_flags(self, who: str, flags: object, allowed: int) -> int:
        """vm_struct flags a caller may pass: an int made of the bits in ``allowed``."""
        if flags.__class__ is int and not flags & ~allowed:  # (a negative int has bits above)
            return flags
        if flags.__class__ is not int:
            _check_int(who, "flags", flags)  # TypeError; an int subclass (not bool) passes
        f: int = flags  # type: ignore[assignment]
        if f & ~allowed or f < 0:
            raise InvalidArgumentError(
                f"{who}: flags {f:#x} has bits outside {allowed:#x}, the flags a caller may pass "
                f"to the {self.design} design (the others, e.g. VM_VPAGES, are the layer's own)")
        return f

    def _check_node(self, who: str, node: object) -> int:
        n = _check_int(who, "node", node)
        if not -1 <= n < self.machine.mem.nodes:
            raise ConfigError(f"{who}: node {n} out of range -1..{self.machine.mem.nodes - 1}")
        return n

    def pr_ptr(self, addr: int) -> str:
        """``addr`` as this kernel's printk ``%p`` prints it: 2.6 unhashed (a design
        whose kernel hashes pointers overrides this)."""
        return pr_ptr(addr)

    def lazy_max_pages(self) -> int:
        """fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)."""
        return fls(self.machine.ncpus) * ((32 * 1024 * 1024) >> PAGE_SHIFT)

    @property
    def stats(self) -> dict[str, int]:
        s = self.machine.counters()
        s["purges"] = self.purges
        s["warnings"] = len(self.machine.warnings)
        return s

    def tlb_entries(self, cpu: int) -> set[int]:
        """The page-aligned virtual addresses cached in ``cpu``'s TLB."""
        self._check_cpu(cpu)
        return {vpn << PAGE_SHIFT for vpn in self.machine.tlb_entries(self.machine.cpus[cpu])}

    def nr_free_pages(self) -> int:
        return self.machine.mem.nr_free_pages()

    # -- physical pages --------------------------------------------------------------
    def alloc_page(self, node: int = -1, gfp_mask: int = GFP_KERNEL) -> Page | None:
        """alloc_pages_node(node, gfp_mask, 0): a Page, or None when memory is out."""
        page = self._alloc_page(node, gfp_mask)
        if page is not None:
            self._user_pages.add(page)
        return page

    def free_page(self, page: Page) -> None:
        """__free_page(): give back a page from alloc_page()."""
        if not isinstance(page, Page):
            raise TypeError(f"free_page() takes a Page, not {type(page).__name__}")
        if page not in self._user_pages:
            raise BadPageError(f"Bad page state: page pfn:{page.pfn:#x} was not allocated by alloc_page()")
        if page in self._live.values():  # identity (Page has no __eq__): one C-level scan
            vpn = next(v for v, p in self._live.items() if p is page)
            raise BadPageError(
                f"Bad page state: page pfn:{page.pfn:#x} is still mapped at {vpn << PAGE_SHIFT:#x} "
                f"(vunmap()/vm_unmap_ram() the mapping first)")
        self._user_pages.discard(page)
        self.machine.mem.free_page(page)
        self.machine.charge(self._cpu, "__free_pages", self.cost.page_alloc)

    def _alloc_page(self, node: int, gfp_mask: int) -> Page | None:
        self._check_node("alloc_page", node)
        _check_int("alloc_page", "gfp_mask", gfp_mask)
        m = self.machine
        cpu = self._cpu
        page = m.mem.alloc_page(cpu.node if node < 0 else node, bool(gfp_mask & GFP_DMA32__))
        m.charge(cpu, "__alloc_pages_internal", self.cost.page_alloc)
        if page is None:
            # 2.6.28's page-allocator printk, so a vmalloc() that runs out of pages leaves a
            # trace in k.warnings; the model has no tasks, so comm is "vmapsim". Under
            # printk_ratelimit() as 2.6.27/2.6.28's __alloc_pages_internal() (no __GFP_NOWARN here).
            if m.printk_ratelimit(cpu):
                m.warn(f"vmapsim: page allocation failure. order:0, mode:{gfp_mask:#x}")
        elif gfp_mask & GFP_ZERO__:
            page.data = None
        return page

    def _free_pages_of(self, pages: Sequence[Page]) -> None:
        mem = self.machine.mem
        for page in pages:
            mem.free_page(page)
        self.machine.charge(self._cpu, "__free_pages", len(pages) * self.cost.page_alloc)

    # -- memory access through the current CPU ------------------------------------------
    def _page_for(self, addr: int) -> Page:
        base = addr & PAGE_MASK
        page, from_tlb = self.machine.translate(self._cpu, base)
        live = self._live.get(base >> PAGE_SHIFT)
        if live is not page:
            if live is None and self.machine.pte_at(base) is page:
                raise UseAfterFreeError(
                    f"use after free at {addr:#x} on CPU {self._cpu.id}: the area was freed "
                    f"but lazy freeing still maps it"
                )
            if live is None and from_tlb and self._reserved(base):
                # designs that clear PTEs at free (6.x): only the TLB entry outlives it
                raise UseAfterFreeError(
                    f"use after free at {addr:#x} on CPU {self._cpu.id}: the area was freed "
                    f"but this CPU's TLB still caches it until the lazy flush"
                )
            raise StaleTranslationError(
                f"stale translation at {addr:#x} on CPU {self._cpu.id}: the "
                f"{'TLB' if from_tlb else 'page table'} maps pfn {page.pfn:#x}, the live "
                f"mapping is {'none' if live is None else hex(live.pfn)}"
            )
        return page

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at kernel virtual address ``addr`` on the current CPU."""
        _check_addr("write", addr)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write: data must be bytes, not {type(data).__name__}")
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1 or view.format != "B":
            # bytes are written, not items: a memoryview of ints, or a 2-D one, as its bytes
            view = memoryview(view.tobytes())
        m = self.machine
        while view:
            page = self._page_for(addr)
            off = addr & (PAGE_SIZE - 1)
            chunk = min(len(view), PAGE_SIZE - off)
            if page.data is None:
                page.data = bytearray(PAGE_SIZE)
            page.data[off:off + chunk] = view[:chunk]
            m.touch(self._cpu)
            view = view[chunk:]
            addr += chunk

    def read(self, addr: int, n: int) -> bytes:
        """Load ``n`` bytes from kernel virtual address ``addr`` on the current CPU."""
        _check_addr("read", addr)
        _check_size("read", n)
        out = bytearray()
        m = self.machine
        while n > 0:
            page = self._page_for(addr)
            off = addr & (PAGE_SIZE - 1)
            chunk = min(n, PAGE_SIZE - off)
            out += page.data[off:off + chunk] if page.data is not None else bytes(chunk)
            m.touch(self._cpu)
            n -= chunk
            addr += chunk
        return bytes(out)

    def touch(self, addr: int, count: int) -> None:
        """Store to each of ``count`` pages from ``addr`` (the seed's "touch").

        Charges a store (and a page walk on a TLB miss) per page and checks each
        translation against the oracle; page contents are left as they are (use
        write() to change them).
        """
        if addr.__class__ is not int or count.__class__ is not int or count <= 0:
            _check_addr("touch", addr)
            _check_int("touch", "count", count)
            raise InvalidArgumentError(f"touch: count must be positive, got {count}")
        if addr & (PAGE_SIZE - 1):
            raise BadAddressError(f"touch: address {addr:#x} is not page aligned")
        pages = self.machine.access_pages(self._cpu, addr, count)
        vpn = addr >> PAGE_SHIFT
        # every page reached must be the intended one (Page compares by identity)
        live = self._live
        ok = len(pages) == count
        if ok:
            for i in range(count):
                if live.get(vpn + i) is not pages[i]:
                    ok = False
                    break
        if not ok:
            for i, page in enumerate(pages):
                if self._live.get(vpn + i) is not page:
                    self._page_for((vpn + i) << PAGE_SHIFT)  # raises the precise error

    def vmalloc_to_page(self, addr: int) -> Page | None:
        """The Page the kernel page table maps at ``addr`` (no TLB involved)."""
        _check_addr("vmalloc_to_page", addr)
        return self.machine.pte_at(addr)

    # -- design hooks -----------------------------------------------------------------
    def get_vm_area_node__(self, size: int, flags: int, start: int, end: int, node: int,
                           gfp_mask: int, caller: str, align: int = 1) -> vm_struct | None:
        raise NotImplementedError

    def remove_vm_area(self, addr: int) -> vm_struct | None:
        """Take the area at ``addr`` off the layer and free its range (lazily where the
        design frees lazily); the vm_struct, or None. The pages stay the caller's: an area
        whose pages vmalloc() allocated (or a page array) is refused, as vunmap() refuses
        it (they would leak for good; the kernel does not check)."""
        _check_addr("remove_vm_area", addr)
        if addr in self._vm_pages or addr in self._array_owner:
            self._check_release("remove_vm_area", addr, False)
        return self.remove_vm_area_(addr)

    def remove_vm_area_(self, addr: int) -> vm_struct | None:
        """*design*: remove_vm_area() itself (the layer calls it; the public method checks
        the caller's right to it first)."""
        raise NotImplementedError

    def find_vm_area(self, addr: int) -> vm_struct | None:
        raise NotImplementedError

    def vm_map_ram(self, pages: Sequence[Page], count: int, node: int = -1,
                   prot: int = PAGE_KERNEL) -> int | None:
        # hook (issue 3): a design without the per-CPU interface keeps this stub
        raise UnsupportedError(f"vm_map_ram() does not exist in the {self.design} design "
                               f"(it came with the 2.6.28 rewrite); use vmap()")

    def vm_unmap_ram(self, mem: int, count: int) -> None:
        raise UnsupportedError(f"vm_unmap_ram() does not exist in the {self.design} design "
                               f"(it came with the 2.6.28 rewrite); use vunmap()")


    def _release_ram_map(self, mem: int, count: int) -> None:
        """vm_unmap_ram()'s checks and bookkeeping, shared by the designs with vm_map_ram:
        the kernel's BUG_ON()s on the address, then the model's check of the address/count
        pair, the tracepoint, and the intended translations dropped (the design frees the
        range itself)."""
        if mem.__class__ is not int or count.__class__ is not int:
            for name, v in (("address", mem), ("count", count)):
                if not isinstance(v, int) or isinstance(v, bool):
                    raise TypeError(f"vm_unmap_ram: {name} must be an int, not {type(v).__name__}")
        if not mem or mem < self.VMALLOC_START or mem > self.VMALLOC_END or mem & (PAGE_SIZE - 1):
            raise BadAddressError(f"kernel BUG at mm/vmalloc.c: vm_unmap_ram({mem:#x}, {count}): bad address")
        ram_maps = self._ram_maps
        got = ram_maps.get(mem)
        if got != count:
            # Deviation: the kernel trusts the caller here; the model checks the pair.
            if got is None:
                raise (DoubleFreeError if self._ram_was_freed(mem) else BadAddressError)(
                    f"kernel BUG at mm/vmalloc.c: vm_unmap_ram({mem:#x}, {count}): not mapped by vm_map_ram()")
            raise BadAddressError(
                f"kernel BUG at mm/vmalloc.c: vm_unmap_ram({mem:#x}, {count}): mapped with count {got}")
        if self.tracer is not None:
            self.trace("unmap_ram", addr=mem, count=count)
        del ram_maps[mem]
        vpn = mem >> PAGE_SHIFT
        pop = self._live.pop
        for i in range(count):
            pop(vpn + i, None)  # a vm_map_ram() that failed half way mapped only some pages

    def _ram_was_freed(self, addr: int) -> bool:
        """Whether ``addr`` was handed out by vm_map_ram() and freed since (design)."""
        return False
    def vm_unmap_aliases(self) -> None:
        raise NotImplementedError

    def vmap_areas(self) -> list[Any]:
        raise NotImplementedError

    def _reserved(self, addr: int) -> bool:
        """Whether a not-live mapping at ``addr`` is one the design still holds back."""
        raise NotImplementedError

    def _check_design(self) -> None:
        raise NotImplementedError

    def vm_areas(self) -> Iterable[vm_struct]:
        """Every live vm_struct in address order (2.6: vmlist; 6.x: the busy areas' ``vm``)."""
        raise NotImplementedError

    # -- the vm_struct layer -------------------------------------------------------------
    def _area_align(self, size: int, flags: int) -> int:
        if flags & VM_IOREMAP:
            bit = fls(size)
            if bit > IOREMAP_MAX_ORDER:
                bit = IOREMAP_MAX_ORDER
            elif bit < PAGE_SHIFT:
                bit = PAGE_SHIFT
            return 1 << bit
        return 1

    def _vm_area_request(self, size: int, flags: int, align: int) -> tuple[int, int] | None:
        """The start of __get_vm_area_node() in both designs: the area's size (page
        aligned, plus the guard page) and alignment (IOREMAP areas: by their size), after
        the vm_struct's kmalloc; None for a zero size."""
        if size.__class__ is not int or align.__class__ is not int or size < 0 or align < 1 or align & (align - 1):
            self._check_request("__get_vm_area_node", size, align)
        align = self._area_align(size, flags) if align == 1 else align
        size = (size + PAGE_SIZE - 1) & PAGE_MASK
        if not size:
            return None
        self.machine.charge(self._cpu, "kmalloc", self.cost.kmalloc)  # kmalloc_node(sizeof(*area))
        return size + PAGE_SIZE, align  # We always allocate a guard page.

    @staticmethod
    def _check_request(who: str, size: object, align: object) -> None:
        """The slow path of the design hooks' size and alignment check (raises)."""
        _check_size(who, size)
        a = _check_int(who, "align", align)
        if a < 1 or a & (a - 1):
            raise InvalidArgumentError(f"{who}: align must be a power of two, got {a}")

    def get_vm_area__(self, size: int, flags: int, start: int, end: int) -> vm_struct | None:
        """__get_vm_area(size, flags, start, end)."""
        _check_size("__get_vm_area", size)
        self._check_flags("__get_vm_area", flags, self.caller_vm_flags)
        _check_addr("__get_vm_area", start)
        _check_addr("__get_vm_area", end)
        # Deviation: the model has only the vmalloc range (no module or fixmap space).
        if start & (PAGE_SIZE - 1) or not self.VMALLOC_START <= start < end <= self.VMALLOC_END + 1:
            raise InvalidArgumentError(
                f"__get_vm_area: range {start:#x}-{end:#x} must be page aligned and inside "
                f"VMALLOC_START..VMALLOC_END ({self.VMALLOC_START:#x}-{self.VMALLOC_END:#x})")
        return self.get_vm_area_node__(size, flags, start, end, -1, GFP_KERNEL, _caller_symbol(1))

    def get_vm_area(self, size: int, flags: int) -> vm_struct | None:
        _check_size("get_vm_area", size)
        self._check_flags("get_vm_area", flags, self.caller_vm_flags)
        return self.get_vm_area_node__(size, flags, self.VMALLOC_START, self.VMALLOC_END, -1,
                                       GFP_KERNEL, _caller_symbol(1))

    def get_vm_area_caller(self, size: int, flags: int, caller: str) -> vm_struct | None:
        _check_size("get_vm_area_caller", size)
        self._check_flags("get_vm_area_caller", flags, self.caller_vm_flags)
        _check_caller("get_vm_area_caller", caller)
        return self.get_vm_area_node__(size, flags, self.VMALLOC_START, self.VMALLOC_END, -1,
                                       GFP_KERNEL, caller)

    def get_vm_area_node(self, size: int, flags: int, node: int,
                         gfp_mask: int = GFP_KERNEL) -> vm_struct | None:
        _check_size("get_vm_area_node", size)
        self._check_flags("get_vm_area_node", flags, self.caller_vm_flags)
        _check_int("get_vm_area_node", "gfp_mask", gfp_mask)
        self._check_node("get_vm_area_node", node)
        return self.get_vm_area_node__(size, flags, self.VMALLOC_START, self.VMALLOC_END, node,
                                       gfp_mask, _caller_symbol(1))

    def get_vm_area_size(self, area: vm_struct) -> int:
        """Actual size without the guard page."""
        if not isinstance(area, vm_struct):
            raise TypeError(f"get_vm_area_size: area must be a vm_struct, not {type(area).__name__}")
        return area.size - PAGE_SIZE

    def map_vm_area(self, area: vm_struct, prot: int, pages: Sequence[Page]) -> int:
        """Map ``pages`` over the area (without its guard page): 0 or -EBUSY/-ENOMEM."""
        self._check_live_area("map_vm_area", area)
        _check_int("map_vm_area", "prot", prot)
        self._check_pages("map_vm_area", pages, self.get_vm_area_size(area) >> PAGE_SHIFT)
        return self._map_vm_area(area, prot, pages)

    def _map_vm_area(self, area: vm_struct, prot: int, pages: Sequence[Page]) -> int:
        """map_vm_area() for callers that made the area and checked the pages."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "map_vm_area")
        try:
            return self.vmap_page_range_(area.addr, pages[:self.get_vm_area_size(area) >> PAGE_SHIFT], prot)
        finally:
            self.machine.leave(chain_cpu, chain)

    def _check_live_area(self, who: str, area: object) -> None:
        if not isinstance(area, vm_struct):
            raise TypeError(f"{who}: area must be a vm_struct, not {type(area).__name__}")
        if self.find_vm_area(area.addr) is not area:
            raise InvalidArgumentError(f"{who}: the vm_struct at {area.addr:#x} is not a live area")

    def vmap_page_range_(self, addr: int, pages: Sequence[Page], prot: int) -> int:
        """vmap_page_range(): set the PTEs and record the intended translations (a
        present PTE: -EBUSY, or overwritten by a design with ``vmap_pte_overwrite``)."""
        err = self.machine.set_ptes(self._cpu, "vmap_page_range", addr, pages, prot, PAGE_KERNEL,
                                    self.vmap_pte_overwrite)
        if err:
            self._record_partial_map(addr, pages)
        else:
            vpn = addr >> PAGE_SHIFT
            self._live.update(zip(range(vpn, vpn + len(pages)), pages))
        return err

    def _record_partial_map(self, addr: int, pages: Sequence[Page]) -> None:
        """After a failed vmap_page_range(): record the pages it did map before failing."""
        pte = self.machine.pte
        live = self._live
        vpn = addr >> PAGE_SHIFT
        for page in pages:
            if vpn in live or pte.get(vpn) is not page:
                break
            live[vpn] = page
            vpn += 1

    def unmap_kernel_range(self, addr: int, size: int) -> None:
        """Unmap [addr, addr+size) and flush the TLBs at once (not lazily)."""
        _check_addr("unmap_kernel_range", addr)
        _check_size("unmap_kernel_range", size)
        if addr & (PAGE_SIZE - 1):
            raise BadAddressError(f"unmap_kernel_range: address {addr:#x} is not page aligned")
        end = addr + ((size + PAGE_SIZE - 1) & PAGE_MASK)
        cpu = self._cpu
        self.machine.clear_ptes(cpu, "vunmap_page_range", addr, end)
        self._drop_live(addr, end)
        if self.tracer is not None:
            self.trace("flush", start=addr, end=end)
        self.machine.flush_tlb_all(cpu, "flush_tlb_kernel_range")

    def _drop_live(self, start: int, end: int) -> None:
        live = self._live
        pop = live.pop
        first, last = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        if last - first > len(live):  # a huge range, mostly unmapped: walk the live pages
            for vpn in [v for v in live if first <= v < last]:
                del live[vpn]
            return
        for vpn in range(first, last):
            pop(vpn, None)

    def alloc_vm_area(self, size: int) -> vm_struct | None:
        """A VM_IOREMAP area with page tables but no pages mapped (for Xen)."""
        _check_size("alloc_vm_area", size)
        return self.get_vm_area_node__(size, VM_IOREMAP, self.VMALLOC_START, self.VMALLOC_END,
                                       -1, GFP_KERNEL, _caller_symbol(1))

    def free_vm_area(self, area: vm_struct) -> None:
        if not isinstance(area, vm_struct):
            raise TypeError(f"free_vm_area: area must be a vm_struct, not {type(area).__name__}")
        # Deviation: looked up first (2.6.28 removes, then BUGs on a mismatch) so that a
        # stale vm_struct never takes down the area now living at its address.
        found = self.find_vm_area(area.addr)
        if found is not area:
            raise BadAddressError(f"kernel BUG at mm/vmalloc.c: free_vm_area: {area.addr:#x} is not a live area")
        self._check_release("free_vm_area", area.addr, False)
        self.remove_vm_area_(area.addr)

    def _check_release(self, who: str, addr: int, frees_pages: bool) -> None:
        """Refuse to release an area the caller does not own as asked: the page array of
        a vmalloc() area (the layer's own: its owner's vfree() frees it), or, without
        freeing the pages (vunmap(), free_vm_area()), an area whose pages the layer
        allocated (they would leak for good). The kernel does neither check (2.6.28
        would free the array twice later, or leak the pages); the model refuses."""
        owner = self._array_owner.get(addr)
        if owner is not None:
            raise BadAddressError(
                f"{who}({addr:#x}): the area is the page array of the vmalloc() area at {owner:#x}, "
                f"the layer's own (vfree({owner:#x}) frees it)")
        if not frees_pages and addr in self._vm_pages:
            raise InvalidArgumentError(
                f"{who}({addr:#x}): the area's pages were allocated by vmalloc(); {who}() would leak "
                f"them: free it with vfree()")

    def vunmap__(self, addr: int | None, deallocate_pages: bool, who: str = "vfree") -> None:
        """__vunmap(): remove the area; with ``deallocate_pages`` free its pages too."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__vunmap")
        try:
            if addr is None or addr == 0:
                return
            _check_addr(who, addr)
            if addr & (PAGE_SIZE - 1):
                msg = f"Trying to {who}() bad address ({self.pr_ptr(addr)})"
                self.machine.warn(msg)
                # Deviation: the kernel WARNs and returns; the model raises so misuse is seen.
                raise BadAddressError(msg)
            if (not deallocate_pages and addr in self._vm_pages) or addr in self._array_owner:
                self._check_release("vfree" if deallocate_pages else "vunmap", addr, deallocate_pages)
            area = self.remove_vm_area_(addr)
            if area is None:
                msg = f"Trying to {who}() nonexistent vm area ({self.pr_ptr(addr)})"
                self.machine.warn(msg)
                raise (DoubleFreeError if self._was_freed(addr) else BadAddressError)(msg)
            self._vm_pages.discard(addr)
            if deallocate_pages and area.pages is not None:
                self._free_pages_of(area.pages[:area.nr_pages])
                arr = self._pages_array_addr.pop(id(area), None)
                if arr is not None:  # the page array was vmalloc()ed too
                    del self._array_owner[arr]
                    self.vunmap__(arr, True)
            self.machine.charge(self._cpu, "kfree", self.cost.kmalloc)
        finally:
            self.machine.leave(chain_cpu, chain)

    def _was_freed(self, addr: int) -> bool:
        return False

    def vfree(self, addr: int | None) -> None:
        """Free a vmalloc()ed area and its pages (NULL is a no-op)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vfree")
        try:
            if self.tracer is not None:
                if addr is not None:
                    _check_addr("vfree", addr)  # refused before the tracepoint fires
                self.trace("vfree", addr=addr or 0)
            self.vunmap__(addr, True, "vfree")
        finally:
            self.machine.leave(chain_cpu, chain)

    def vunmap(self, addr: int | None) -> None:
        """Release a vmap()ed area (the pages stay the caller's)."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vunmap")
        try:
            # 2.6.28's __vunmap() printed "vfree()" for vunmap() too (6.3 gave vunmap() its own)
            self.vunmap__(addr, False, self.vunmap_name)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vmap(self, pages: Sequence[Page], count: int, flags: int = VM_MAP,
             prot: int = PAGE_KERNEL) -> int | None:
        """Map ``count`` pages virtually contiguously; the address or None."""
        self._check_pages("vmap", pages, count)
        self._check_flags("vmap", flags, self.caller_vm_flags)
        _check_int("vmap", "prot", prot)
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "vmap")
        try:
            if count > self.num_physpages:
                return None
            area = self.get_vm_area_node__(count << PAGE_SHIFT, flags, self.VMALLOC_START,
                                           self.VMALLOC_END, -1, GFP_KERNEL, _caller_symbol(1))
            if area is None:
                return None
            if self._map_vm_area(area, prot, pages):
                self.vunmap(area.addr)
                return None
            return area.addr
        finally:
            self.machine.leave(chain_cpu, chain)

    def _check_pages(self, who: str, pages: Sequence[Page], count: int) -> None:
        """``count`` pages of this kernel's machine, each allocated (the fast path is a
        class, count and owner test per page: vmap() and vm_map_ram() call it per call)."""
        cls = pages.__class__
        if (cls is list or cls is tuple) and count.__class__ is int and 0 < count <= len(pages):
            mem = self.machine.mem
            for p in pages[:count]:
                if p.__class__ is not Page or p._count <= 0 or p._mem is not mem:
                    break
            else:
                return
        # slow path: say exactly what is wrong
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"{who}: count must be an int, not {type(count).__name__}")
        if not isinstance(pages, (list, tuple)):
            raise TypeError(f"{who}: pages must be a list of Page, not {type(pages).__name__}")
        if count <= 0:
            raise InvalidArgumentError(f"{who}: count must be positive, got {count}")
        if len(pages) < count:
            raise InvalidArgumentError(f"{who}: count {count} but only {len(pages)} pages given")
        for i in range(count):
            p = pages[i]
            if not isinstance(p, Page):
                raise TypeError(f"{who}: pages[{i}] is {type(p).__name__}, not a Page")
            if p._mem is not self.machine.mem:
                whose = "a Page built by hand" if p._mem is None else "a page of another Kernel"
                raise BadPageError(f"{who}: pages[{i}] (pfn {p.pfn:#x}) is not a page of this kernel's "
                                   f"machine ({whose})")
            if p._count <= 0:
                raise BadPageError(f"{who}: pages[{i}] (pfn {p.pfn:#x}) is a free page")

    # vmalloc and friends --------------------------------------------------------------
    def vmalloc_area_node__(self, area: vm_struct, gfp_mask: int, prot: int, node: int,
                            caller: str) -> int | None:
        """__vmalloc_area_node(): allocate the pages (and page array) and map them."""
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__vmalloc_area_node")
        try:
            nr_pages = self.get_vm_area_size(area) >> PAGE_SHIFT
            array_size = nr_pages * 8
            area.nr_pages = nr_pages
            pages: list[Page] = []
            if array_size > PAGE_SIZE:
                # The page array itself is vmalloc()ed: a second area shows in vmallocinfo.
                arr = self.vmalloc_node__(array_size, gfp_mask | GFP_ZERO__, PAGE_KERNEL, node, caller)
                if arr is None:
                    area.nr_pages = 0
                    self.remove_vm_area_(area.addr)
                    return None
                area.flags |= self.vpages_flag
                self._pages_array_addr[id(area)] = arr
                self._array_owner[arr] = area.addr
            else:
                self.machine.charge(self._cpu, "__kmalloc", self.cost.kmalloc)
            area.pages = pages
            area.caller = caller  # 2.6.27 and 2.6.28 both set area->caller here
            self._vm_pages.add(area.addr)
            for i in range(nr_pages):
                page = self._alloc_page(node, gfp_mask)
                if page is None:
                    # Successfully allocated i pages, free them in __vunmap()
                    area.nr_pages = i
                    self.vfree(area.addr)
                    return None
                pages.append(page)
            if self._map_vm_area(area, prot, pages):
                self.vfree(area.addr)
                return None
            return area.addr
        finally:
            self.machine.leave(chain_cpu, chain)

    def vmalloc_area__(self, area: vm_struct, gfp_mask: int, prot: int) -> int | None:
        """__vmalloc_area(area, gfp_mask, prot): the area's caller becomes this call's
        caller (2.6.28 passes __builtin_return_address(0), as 2.6.27 did)."""
        caller = _caller_symbol(1)
        self._check_live_area("__vmalloc_area", area)
        if area.pages is not None:
            raise InvalidArgumentError(f"__vmalloc_area: the area at {area.addr:#x} has its pages already")
        _check_int("__vmalloc_area", "gfp_mask", gfp_mask)
        _check_int("__vmalloc_area", "prot", prot)
        return self.vmalloc_area_node__(area, gfp_mask, prot, -1, caller)

    def vmalloc_node__(self, size: int, gfp_mask: int, prot: int, node: int,
                       caller: str) -> int | None:
        """__vmalloc_node()."""
        _check_size("vmalloc", size)
        if caller.__class__ is not str or caller not in _good_callers:
            _check_caller("__vmalloc_node", caller)
        if gfp_mask.__class__ is not int or prot.__class__ is not int:
            _check_int("__vmalloc_node", "gfp_mask", gfp_mask)
            _check_int("__vmalloc_node", "prot", prot)
        if node != -1:
            self._check_node("__vmalloc_node", node)
        chain_cpu = self._cpu
        chain = self.machine.enter(chain_cpu, "__vmalloc_node")
        try:
            size = (size + PAGE_SIZE - 1) & PAGE_MASK
            if not size or (size >> PAGE_SHIFT) > self.num_physpages:
                # a model note: 2.6.28's __vmalloc_node() returns NULL here without a message
                self.machine.warn(f"vmapsim: vmalloc of {size} bytes refused: 0 or more than physical memory")
                return None
            area = self.get_vm_area_node__(size, VM_ALLOC, self.VMALLOC_START, self.VMALLOC_END,
                                           node, gfp_mask, caller)
            if area is None:
                return None
            return self.vmalloc_area_node__(area, gfp_mask, prot, node, caller)
        finally:
            self.machine.leave(chain_cpu, chain)

    def vmalloc__(self, size: int, gfp_mask: int = GFP_KERNEL | GFP_HIGHMEM__,
                  prot: int = PAGE_KERNEL) -> int | None:
        """__vmalloc(size, gfp_mask, prot)."""
        _check_int("__vmalloc", "gfp_mask", gfp_mask)
        _check_int("__vmalloc", "prot", prot)
        return self.vmalloc_node__(size, gfp_mask, prot, -1, _caller_symbol(1))

    def vmalloc(self, size: int) -> int | None:
        """Allocate virtually contiguous memory; the address or None."""
        return self.vmalloc_node__(size, GFP_KERNEL | GFP_HIGHMEM__, PAGE_KERNEL, -1,
                                   _caller_symbol(1))

    def vmalloc_node(self, size: int, node: int) -> int | None:
        self._check_node("vmalloc_node", node)
        return self.vmalloc_node__(size, GFP_KERNEL | GFP_HIGHMEM__, PAGE_KERNEL, node,
                                   _caller_symbol(1))

    def vmalloc_exec(self, size: int) -> int | None:
        # __vmalloc() records its caller: this wrapper (as vmalloc_32/_user/_32_user)
        return self.vmalloc_node__(size, GFP_KERNEL | GFP_HIGHMEM__, PAGE_KERNEL_EXEC, -1,
                                   _caller_symbol(0))

    def vmalloc_32(self, size: int) -> int | None:
        return self.vmalloc_node__(size, GFP_VMALLOC32, PAGE_KERNEL, -1, _caller_symbol(0))

    def _usermap(self, addr: int | None) -> int | None:
        """Set VM_USERMAP on a vmalloc_user()/vmalloc_32_user() area (2.6.28: find_vm_area)."""
        if addr is not None:
            area = self.find_vm_area(addr)
            assert area is not None
            area.flags |= VM_USERMAP
        return addr

    def vmalloc_user(self, size: int) -> int | None:
        """Zeroed memory suitable for remap_vmalloc_range (VM_USERMAP)."""
        return self._usermap(self.vmalloc_node__(
            size, GFP_KERNEL | GFP_HIGHMEM__ | GFP_ZERO__, PAGE_KERNEL, -1, _caller_symbol(0)))

    def vmalloc_32_user(self, size: int) -> int | None:
        return self._usermap(self.vmalloc_node__(
            size, GFP_VMALLOC32 | GFP_ZERO__, PAGE_KERNEL, -1, _caller_symbol(0)))

    def vmalloc_sync_all(self) -> None:
        """x86: copy the kernel's vmalloc PGD entries into every mm. The model has one
        kernel page table shared by all CPUs, so there is nothing to copy."""
        self.machine.charge(self._cpu, "vmalloc_sync_all", self.cost.call)

    def remap_vmalloc_range(self, vma: vm_area_struct, addr: int, pgoff: int) -> int:
        """Map a VM_USERMAP area's pages into a user vma: 0 or -EINVAL."""
        if not isinstance(vma, vm_area_struct):
            raise TypeError(f"remap_vmalloc_range: vma must be a vm_area_struct, not {type(vma).__name__}")
        _check_addr("remap_vmalloc_range", addr)
        _check_size("remap_vmalloc_range: pgoff", pgoff)
        if vma._kernel is not None and vma._kernel is not self:
            raise InvalidArgumentError("remap_vmalloc_range: the vma maps pages of another Kernel "
                                       "(a vma belongs to one mm, of one machine)")
        if addr & (PAGE_SIZE - 1):
            return -EINVAL
        # 2.6.28: find_vm_area(), no vmlist_lock; 2.6.27 read-locked vmlist_lock around
        # __find_vm_area() and the checks, which the legacy design's find_vm_area() takes
        area = self.find_vm_area(addr)
        usize = vma.vm_end - vma.vm_start
        ok = (area is not None and area.flags & VM_USERMAP
              and usize + (pgoff << PAGE_SHIFT) <= self.get_vm_area_size(area))
        if not ok:
            return -EINVAL
        assert area is not None and area.pages is not None
        first = pgoff
        for i in range(usize >> PAGE_SHIFT):
            page = area.pages[first + i]
            page._count += 1  # vm_insert_page() takes a reference
            old = vma.pages.get(vma.vm_start + (i << PAGE_SHIFT))
            vma.pages[vma.vm_start + (i << PAGE_SHIFT)] = page
            if old is not None:
                self.machine.mem.free_page(old)
        vma.vm_flags |= vm_area_struct.VM_RESERVED
        vma._kernel = self
        self._user_vmas.add(vma)
        return 0

    # -- checks ----------------------------------------------------------------------------
    def check(self) -> None:
        """Verify every invariant (O(n)); raises InvariantError naming the broken one."""
        try:
            self._check_common()
            self._check_design()
            self._check_vm_structs()
        except AssertionError as e:
            raise InvariantError(str(e)) from None
        except (AttributeError, TypeError) as e:  # a structure holds an object of the wrong kind
            raise InvariantError(f"corrupted model state: {e}") from None

    def _check_vm_structs(self) -> None:
        """Live vm_structs: address order, no overlap, sizes that include the guard page."""
        prev: vm_struct | None = None
        for v in self.vm_areas():
            if v.size < PAGE_SIZE or (v.addr | v.size) & (PAGE_SIZE - 1):
                raise AssertionError(f"vm_struct at {v.addr:#x} has a bad size {v.size:#x}")
            if prev is not None and prev.addr + prev.size > v.addr:
                raise AssertionError(f"vm_structs overlap: {prev.addr:#x} and {v.addr:#x}")
            prev = v

    def _check_common(self) -> None:
        m = self.machine
        m.mem._check()
        # intended translations are what the page table maps
        pte = m.pte
        for vpn, page in self._live.items():
            if pte.get(vpn) is not page:
                raise AssertionError(f"live mapping at {vpn << PAGE_SHIFT:#x} missing from the page table")
            if page._count <= 0:
                raise AssertionError(f"live mapping at {vpn << PAGE_SHIFT:#x} maps free page {page.pfn:#x}")
        # THE invariant: every PTE and every TLB entry that is not a live mapping lies
        # in a range the allocator still holds back (never in one it could hand out).
        live = self._live
        for vpn, page in pte.items():
            if live.get(vpn) is not page and not self._reserved(vpn << PAGE_SHIFT):
                raise AssertionError(
                    f"PTE at {vpn << PAGE_SHIFT:#x} maps pfn {page.pfn:#x} outside any live or held-back range")
        for cpu in m.cpus:
            for vpn, page in m.tlb_entries(cpu).items():
                if live.get(vpn) is page:
                    continue
                addr = vpn << PAGE_SHIFT
                if vpn in live:
                    raise AssertionError(
                        f"CPU {cpu.id} TLB holds a stale translation at {addr:#x} "
                        f"(pfn {page.pfn:#x}, live pfn {live[vpn].pfn:#x})"
                    )
                if not self._reserved(addr):
                    raise AssertionError(
                        f"CPU {cpu.id} TLB caches {addr:#x}, a range the allocator may hand out"
                    )
        # no page leaked: every allocated page has exactly its holders' references
        holders: dict[int, int] = {}
        pages: dict[int, Page] = {}
        for p in self._user_pages:
            holders[id(p)] = holders.get(id(p), 0) + 1
            pages[id(p)] = p
        for v in self.vm_areas():
            # __vmalloc_area() may fill a non-VM_ALLOC area (e.g. VM_MAP); its pages are
            # held all the same (vfree frees any area's pages)
            if v.pages is not None:
                for p in v.pages[:v.nr_pages]:
                    holders[id(p)] = holders.get(id(p), 0) + 1
                    pages[id(p)] = p
        for vma in self._user_vmas:
            for p in vma.pages.values():
                holders[id(p)] = holders.get(id(p), 0) + 1
                pages[id(p)] = p
        for key, n in holders.items():
            if pages[key]._count != n:
                raise AssertionError(
                    f"page pfn {pages[key].pfn:#x} has count {pages[key]._count}, {n} holders"
                )
        if len(pages) != m.mem.allocated:
            raise AssertionError(
                f"page leak: {m.mem.allocated} pages allocated, {len(pages)} held by anyone"
            )

    def deferred_mappings(self) -> list[int]:
        """Addresses still mapped (a PTE, or any CPU's TLB) that no live area owns."""
        m = self.machine
        out = {v for v in m.pte if v not in self._live}
        for cpu in m.cpus:
            out.update(v for v, p in m.tlb_entries(cpu).items() if self._live.get(v) is not p)
        return [v << PAGE_SHIFT for v in sorted(out)]

    def check_no_aliases(self) -> None:
        """The seed's promise for vm_unmap_aliases(): no deferred mapping remains."""
        left = self.deferred_mappings()
        if left:
            raise InvariantError(
                f"{len(left)} deferred mappings survive vm_unmap_aliases(), first at {left[0]:#x}"
            )

