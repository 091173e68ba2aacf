"""The simulated machine: CPUs with private TLBs, the kernel page table, IPIs.

Knows nothing of vmalloc. Every primitive charges its cost (from the CostModel) to
the CPU that does the work, under the name of the kernel function that does it, so
``cpu.clock`` is that CPU's simulated time in ns and ``cpu.prof`` its profile.

Call chains: each CPU has a current ``Frame`` (``cpu.frame``), a node of that CPU's
tree of call chains (interned: one node per distinct chain), which the kernel code
moves with ``Machine.enter``/``Machine.leave`` at its API entry points and main
internal functions. A charge lands in the current frame's own dict (``cpu.cprof``,
leaf function -> ns), so the chain costs a charge nothing; ``cpu.prof`` (the flat
profile) sums the frames, and ``cpu.stacks()`` lists (chain, leaf) -> ns.

TLB model: each CPU caches translations (page-aligned virtual address -> Page) on
access. A *global* flush (x86 ``flush_tlb_all``: a local flush plus an IPI to every
other CPU) bumps a generation number; each other CPU drops its TLB and pays its IPI
handler the next time it runs or is inspected (``sync``), which is observably the
same as flushing at once because nothing reads a TLB without syncing first, and costs
the simulator O(1) per flush whatever the number of CPUs.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from ..errors import ConfigError, PageFault
from .cost import CostModel, topology_tables
from .physmem import PAGE_SHIFT, PAGE_SIZE, Page, PhysMem

PAGE_MASK = ~(PAGE_SIZE - 1)


def pr_ptr(addr: int) -> str:
    """``addr`` as printk's ``%p`` prints it: 2 * sizeof(void *) = 16 zero-padded lowercase
    hex digits, no ``0x`` (2.6.28 lib/vsprintf.c pointer(), x86_64; unhashed, as 2.6 was)."""
    return f"{addr:016x}"


class Frame:
    """One call chain of a CPU: a kernel function called from its parent's chain.

    ``prof`` holds what was charged while this chain was current (leaf -> ns); the
    root frame (``name`` "") is the CPU outside any instrumented kernel function.
    """

    __slots__ = ("name", "parent", "kids", "prof")

    def __init__(self, parent: Frame | None, name: str) -> None:
        self.name = name
        self.parent = parent
        self.kids: dict[str, Frame] = {}
        self.prof: dict[str, float] = {}

    def chain(self) -> tuple[str, ...]:
        """The function names from the outermost caller down to this frame."""
        names: list[str] = []
        f: Frame | None = self
        while f is not None and f.parent is not None:
            names.append(f.name)
            f = f.parent
        return tuple(reversed(names))

    def walk(self) -> Iterable[Frame]:
        """This frame and every frame below it."""
        todo = [self]
        while todo:
            f = todo.pop()
            yield f
            todo.extend(f.kids.values())


class CPU:
    """One CPU: its clock (ns), its TLB, its profile, whether it is idle (halted)."""

    __slots__ = (
        "id", "socket", "node", "clock", "tlb", "tlb_gen", "ipi_gen", "cprof", "idle",
        "ipis_received", "tlb_misses", "tgroup", "xfer", "frame", "root",
    )

    def __init__(self, cpu_id: int, socket: int, node: int) -> None:
        self.id = cpu_id
        self.socket = socket
        self.node = node
        self.clock = 0.0
        #: virtual page number (vaddr >> PAGE_SHIFT) -> Page
        self.tlb: dict[int, Page] = {}
        self.tlb_gen = 0
        #: global flushes whose IPI this CPU has handled (and paid for); <= tlb_gen
        self.ipi_gen = 0
        #: the call-chain tree, the current chain, and its profile (what charges update)
        self.root = Frame(None, "")
        self.frame = self.root
        self.cprof: dict[str, float] = self.root.prof
        self.idle = True
        self.ipis_received = 0
        self.tlb_misses = 0
        #: innermost topology group, and the ns to bring a line here from a CPU of each
        #: group (``xfer[other.tgroup]``; set by Machine from ``cost.topology_tables``)
        self.tgroup = 0
        self.xfer: list[float] = [0.0]

    @property
    def prof(self) -> dict[str, float]:
        """The flat profile: kernel function (or lock wait) -> simulated ns, every chain summed."""
        root = self.root
        if not root.kids:
            return dict(root.prof)
        out: dict[str, float] = {}
        for f in root.walk():
            for fn, ns in f.prof.items():
                out[fn] = out.get(fn, 0.0) + ns
        return out

    def stacks(self) -> dict[tuple[str, ...], float]:
        """Simulated ns by call chain ending in its leaf function: (outermost, ..., leaf) -> ns.

        A leaf charged under its own name inside its own frame (``remove_vm_area``'s list
        walk, in ``remove_vm_area``) is not repeated.
        """
        out: dict[tuple[str, ...], float] = {}
        for f in self.root.walk():
            if not f.prof:
                continue
            chain = f.chain()
            for fn, ns in f.prof.items():
                key = chain if chain and chain[-1] == fn else chain + (fn,)
                out[key] = out.get(key, 0.0) + ns
        return out

    def clear_profile(self) -> None:
        """Forget every charge (the clock stays); the current chain stays current."""
        for f in self.root.walk():
            f.prof.clear()

    def __repr__(self) -> str:
        return f"CPU({self.id}, socket={self.socket}, node={self.node}, clock={self.clock:.0f}ns)"


class Machine:
    """CPUs, physical memory, the kernel page table (``init_mm``) and the counters."""

    def __init__(
        self,
        cpus: int,
        nodes: int,
        mem_pages: int,
        cost: CostModel,
        tlb_size: int | None = None,
    ) -> None:
        if not isinstance(cpus, int) or isinstance(cpus, bool):
            raise TypeError(f"cpus must be an int, not {type(cpus).__name__}")
        if not 1 <= cpus <= 1024:
            raise ConfigError(f"cpus must be 1..1024, got {cpus}")
        if tlb_size is not None:
            if not isinstance(tlb_size, int) or isinstance(tlb_size, bool):
                raise TypeError(f"tlb_size must be an int or None, not {type(tlb_size).__name__}")
            if tlb_size < 1:
                raise ConfigError(f"tlb_size must be positive or None, got {tlb_size}")
        self.cost = cost
        self.mem = PhysMem(mem_pages, nodes)
        per_socket = max(1, cost.cores_per_socket)
        self.cpus = [CPU(i, i // per_socket, i * nodes // cpus) for i in range(cpus)]
        self.ncpus = cpus
        #: where lines move between CPUs (cost.levels()): per-group rows, per-CPU sums
        self.topology = topology_tables(cost, cpus)
        for c in self.cpus:
            c.tgroup = self.topology.group[c.id]
            c.xfer = self.topology.rows[c.tgroup]
        self.tlb_size = tlb_size
        #: The kernel page table: page-aligned vaddr -> Page (PTE present).
        #: Keyed by virtual page number (vaddr >> PAGE_SHIFT), not by address: CPython
        #: hashes an int to itself and indexes by its low bits, which are all zero in a
        #: page-aligned address, so address keys make every dict probe long chains.
        self.pte: dict[int, Page] = {}
        #: Non-default protections of present PTEs (PAGE_KERNEL is not stored).
        self.pte_prot: dict[int, int] = {}
        self.flush_gen = 0
        #: Simulated send time of each global flush's IPIs (index = generation - 1),
        #: kept non-decreasing; timed runs deliver a flush to a busy CPU only once its
        #: clock has reached the send time.
        self.flush_times = array("d")
        #: True while the timing engine runs: locks then make CPUs wait.
        self.timed = False
        self.nr_idle = cpus
        self.warnings: list[str] = []
        #: printk_ratelimit_state: window start (ns; None: not started, the kernel's
        #: begin == 0), messages printed and missed in the window (see printk_ratelimit)
        self.ratelimit_begin: float | None = None
        self.ratelimit_printed = 0
        self.ratelimit_missed = 0
        #: messages printk_ratelimit() has dropped since boot (the model's count)
        self.printk_suppressed = 0
        # counters
        self.ipis = 0
        self.tlb_flushes = 0  # global flushes (flush_tlb_all / kernel range)
        self.local_flushes = 0
        self.tlb_misses = 0
        self.pte_writes = 0
        self.pte_clears = 0
        #: Total simulated ns CPUs spent waiting for locks (timed runs only).
        self.lock_wait_ns = 0.0
        #: profile names of lock acquires and waits by lock kind (hw.locks): empty, the
        #: 2.6 names (``_spin_lock``); a modern kernel sets hw.locks.QSPINLOCK_SYMBOLS
        self.lock_symbols: dict[str, tuple[str, str]] = {}

    # -- accounting ------------------------------------------------------------------
    @staticmethod
    def charge(cpu: CPU, fn: str, ns: float) -> None:
        """Charge ``ns`` of work done in kernel function ``fn`` to ``cpu`` (and its chain)."""
        cpu.clock += ns
        prof = cpu.cprof
        prof[fn] = prof.get(fn, 0.0) + ns

    @staticmethod
    def enter(cpu: CPU, fn: str) -> Frame:
        """``cpu`` calls kernel function ``fn``: its chain grows by ``fn``. Returns the
        chain to give back to ``leave`` (which restores it even if calls between did
        not leave, e.g. an exception passed through them)."""
        parent = cpu.frame
        f = parent.kids.get(fn)
        if f is None:
            f = parent.kids[fn] = Frame(parent, fn)
        cpu.frame = f
        cpu.cprof = f.prof
        return parent

    @staticmethod
    def leave(cpu: CPU, frame: Frame) -> None:
        """``cpu`` returns to the chain ``frame`` (what ``enter`` returned)."""
        cpu.frame = frame
        cpu.cprof = frame.prof

    def warn(self, msg: str) -> None:
        """A kernel WARN/printk: kept in ``warnings`` (the model's dmesg)."""
        self.warnings.append(msg)

    #: DEFINE_RATELIMIT_STATE(printk_ratelimit_state, 5 * HZ, 10) (kernel/printk.c)
    RATELIMIT_INTERVAL_NS = 5_000_000_000
    RATELIMIT_BURST = 10

    def printk_ratelimit(self, cpu: CPU) -> bool:
        """printk_ratelimit(): whether a rate-limited message may be printed now.

        The rule of __ratelimit() (lib/ratelimit.c, the same in 2.6.27 and 2.6.28) on
        printk_ratelimit_state (kernel/printk.c), one state for every caller: a call
        with no window open starts one at its time; the first call later than 5 s after
        the start prints "__ratelimit: N callbacks suppressed" if N > 0 were dropped and
        closes the window (the next call opens a new one); at most 10 calls per window
        return True, the rest False and count as missed. Time is ``cpu``'s simulated
        clock in ns (deviation: the kernel counts jiffies, 1/HZ s).
        """
        now = cpu.clock
        if self.ratelimit_begin is None:
            self.ratelimit_begin = now
        if now > self.ratelimit_begin + self.RATELIMIT_INTERVAL_NS:
            if self.ratelimit_missed:
                self.warn(f"__ratelimit: {self.ratelimit_missed} callbacks suppressed")
            self.ratelimit_begin = None
            self.ratelimit_printed = 0
            self.ratelimit_missed = 0
        if self.ratelimit_printed < self.RATELIMIT_BURST:
            self.ratelimit_printed += 1
            return True
        self.ratelimit_missed += 1
        self.printk_suppressed += 1
        return False

    def set_idle(self, cpu: CPU, idle: bool) -> None:
        if cpu.idle != idle:
            cpu.idle = idle
            self.nr_idle += 1 if idle else -1

    def mem_access(self, cpu: CPU, fn: str, lines: int, hit: bool = False) -> None:
        """``lines`` cache-line reads in ``fn`` (tree/list nodes, bitmap words)."""
        c = self.cost
        self.charge(cpu, fn, lines * (c.cache_hit if hit else c.mem_access))

    # -- page table --------------------------------------------------------------------
    def set_ptes(self, cpu: CPU, fn: str, addr: int, pages: Sequence[Page], prot: int,
                 default_prot: int, overwrite: bool = False) -> int:
        """vmap_pte_range: map ``pages`` at ``addr``; 0, or -EBUSY after a WARN on a
        present PTE (2.6.28). ``overwrite``: WARN on each present PTE and overwrite it,
        returning 0 (2.6.27's WARN_ON(!pte_none(*pte)) without a return)."""
        pte = self.pte
        vpn = addr >> PAGE_SHIFT
        count = len(pages)
        free = True
        for i in range(count):
            if vpn + i in pte:
                free = False
                break
        if free:
            for i in range(count):
                pte[vpn + i] = pages[i]
            if prot != default_prot:
                pte_prot = self.pte_prot
                for i in range(count):
                    pte_prot[vpn + i] = prot
            n = count
            err = 0
        else:
            n = 0
            err = 0
            for page in pages:
                if vpn in pte:
                    self.warn(f"WARNING: at mm/vmalloc.c vmap_pte_range(): pte already present at {vpn << PAGE_SHIFT:#x}")
                    if not overwrite:
                        err = -16  # -EBUSY
                        break
                pte[vpn] = page
                if prot != default_prot:
                    self.pte_prot[vpn] = prot
                elif overwrite:
                    self.pte_prot.pop(vpn, None)  # the overwritten PTE's protection goes too
                vpn += 1
                n += 1
        self.pte_writes += n
        ns = n * self.cost.pte_write
        cpu.clock += ns
        prof = cpu.cprof
        prof[fn] = prof.get(fn, 0.0) + ns
        return err

    def clear_ptes(self, cpu: CPU, fn: str, start: int, end: int) -> int:
        """vunmap_pte_range over [start, end): clear every PTE; returns how many were set."""
        pte = self.pte
        prot = self.pte_prot
        pop = pte.pop
        cleared = 0
        first, last = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        vpns: Iterable[int] = range(first, last)
        if last - first > len(pte):  # a huge range, mostly unmapped: walk the present PTEs
            vpns = [a for a in pte if first <= a < last]
        for a in vpns:
            if pop(a, None) is not None:
                cleared += 1
                if prot:
                    prot.pop(a, None)
        self.pte_clears += cleared
        self.charge(cpu, fn, ((end - start) // PAGE_SIZE) * self.cost.pte_clear)
        return cleared

    # -- TLB ---------------------------------------------------------------------------
    def sync(self, cpu: CPU) -> None:
        """Deliver the global flushes (IPIs) ``cpu`` has not handled yet.

        O(log flushes) whatever the number of CPUs: a flush only bumps ``flush_gen``;
        each CPU catches up here. Its TLB drops every flush done so far (``tlb_gen``):
        flushing early is always safe, and the mm state this CPU sees may already be
        the one after the flush. Its handler TIME (``ipi_gen``) is paid per flush,
        if the CPU is busy (an idle CPU's handler time comes out of idle time); in a
        timed run a busy CPU pays only for the IPIs sent by its own clock, later ones
        wait until it gets there.
        """
        gen = self.flush_gen
        if cpu.tlb_gen != gen:
            cpu.tlb.clear()
            cpu.tlb_gen = gen
        missed = gen - cpu.ipi_gen
        if missed <= 0:
            return
        if self.timed and not cpu.idle:
            times = self.flush_times
            if times[gen - 1] > cpu.clock:
                gen = bisect_right(times, cpu.clock, cpu.ipi_gen, gen)
                missed = gen - cpu.ipi_gen
                if not missed:
                    return
        cpu.ipi_gen = gen
        cpu.ipis_received += missed
        if not cpu.idle:
            c = self.cost
            self.charge(cpu, "smp_call_function_interrupt", missed * (c.ipi_handle + c.flush_all_local))

    def spin(self, cpu: CPU, until: float, fn: str) -> float:
        """``cpu`` spins (interrupts enabled) until ``until``; returns the time charged to ``fn``.

        IPIs sent before ``until`` are taken during the spin: their handler time is
        charged as handler time and comes out of the spin (if the handlers outlast
        it, the CPU finishes them first).
        """
        if cpu.ipi_gen != self.flush_gen:
            clock = cpu.clock
            cpu.clock = until  # deliver what was sent up to the end of the spin...
            self.sync(cpu)
            handled = cpu.clock - until
            cpu.clock = clock + handled  # ...with the handlers' time inside the spin
        wait = until - cpu.clock
        if wait > 0:
            self.charge(cpu, fn, wait)
            return wait
        return 0.0

    def translate(self, cpu: CPU, addr: int, fn: str = "touch") -> tuple[Page, bool]:
        """The Page ``cpu`` reaches at page-aligned ``addr``, and whether it came from its TLB.

        A TLB miss walks the page table (charged) and fills the TLB; no PTE -> PageFault.
        """
        if cpu.tlb_gen != self.flush_gen:
            self.sync(cpu)
        tlb = cpu.tlb
        vpn = addr >> PAGE_SHIFT
        page = tlb.get(vpn)
        if page is not None:
            return page, True
        page = self.pte.get(vpn)
        self.tlb_misses += 1
        cpu.tlb_misses += 1
        self.charge(cpu, fn, self.cost.tlb_miss)
        if page is None:
            # 2.6.28 arch/x86/mm/fault.c show_fault_oops(): " at %p"
            raise PageFault(f"BUG: unable to handle kernel paging request at {pr_ptr(addr)}")
        tlb[vpn] = page
        if self.tlb_size is not None and len(tlb) > self.tlb_size:
            del tlb[next(iter(tlb))]  # FIFO eviction of the oldest fill
        return page, False

    def tlb_entries(self, cpu: CPU) -> dict[int, Page]:
        """``cpu``'s TLB after delivering pending flushes: virtual page number -> Page."""
        self.sync(cpu)
        return cpu.tlb

    def pte_at(self, addr: int) -> Page | None:
        """The Page the kernel page table maps at ``addr`` (None: no PTE)."""
        return self.pte.get(addr >> PAGE_SHIFT)

    def flush_tlb_one(self, cpu: CPU, fn: str, addr: int) -> None:
        """__flush_tlb_one: INVLPG of one page on this CPU only."""
        if cpu.tlb_gen != self.flush_gen:
            self.sync(cpu)
        cpu.tlb.pop(addr >> PAGE_SHIFT, None)
        self.local_flushes += 1
        self.charge(cpu, fn, self.cost.flush_one_local)

    def flush_tlb_all(self, cpu: CPU, fn: str = "flush_tlb_all") -> None:
        """Global TLB flush: local flush, then an IPI to every other CPU, waiting for all.

        The sender pays the cross-call set-up, one ICR write per target and the wait for
        the slowest acknowledgement (an idle target first has to wake from halt).
        """
        c = self.cost
        if cpu.ipi_gen != self.flush_gen:
            self.sync(cpu)
            if cpu.ipi_gen != self.flush_gen:
                # IPIs sent later (in simulated time) by CPUs whose calls ran first:
                # handled now, before this CPU sends its own (a little early).
                clock = cpu.clock
                cpu.clock = self.flush_times[-1]
                self.sync(cpu)
                cpu.clock = clock + (cpu.clock - self.flush_times[-1])
        cpu.tlb.clear()
        self.tlb_flushes += 1
        self.charge(cpu, fn, c.flush_all_local)
        targets = self.ncpus - 1
        self.flush_gen += 1
        cpu.tlb_gen = cpu.ipi_gen = self.flush_gen
        times = self.flush_times
        t = cpu.clock + c.ipi_call_setup
        times.append(t if not times or t > times[-1] else times[-1])
        if targets:
            self.ipis += targets
            idle_targets = self.nr_idle - (1 if cpu.idle else 0)
            wait = c.ipi_handle + c.flush_all_local + self._ack_serial(cpu)
            if idle_targets:
                wait += c.ipi_idle_wakeup
            self.charge(cpu, "smp_call_function", c.ipi_call_setup + targets * c.ipi_send + wait)

    def flush_tlb_kernel_range(self, cpu: CPU, fn: str, start: int, end: int,
                               ceiling: int | None = 33) -> None:
        """x86's flush_tlb_kernel_range() (arch/x86/mm/tlb.c, Linux 4.x on): a range of
        more than ``ceiling`` pages (``tlb_single_page_flush_ceiling``, default 33) is a
        full flush on every CPU (``flush_tlb_all``); a smaller one is an INVLPG per page
        here and, through an IPI, on every other CPU. ``ceiling=None``: always the full
        flush (x86 2.6.28, whose flush_tlb_kernel_range() was flush_tlb_all()).

        Shortcut: a small range is taken out of the other CPUs' TLBs at once and their
        handler time charged at once to the busy ones (idle ones pay from idle time),
        not at their next step as ``sync`` delivers full flushes; small flushes are rare
        (vmalloc purge spans are usually far above 33 pages).
        """
        pages = (end - start + PAGE_SIZE - 1) >> PAGE_SHIFT
        if ceiling is None or pages > ceiling or pages <= 0:
            self.flush_tlb_all(cpu, fn)
            return
        c = self.cost
        if cpu.tlb_gen != self.flush_gen:
            self.sync(cpu)
        first = start >> PAGE_SHIFT
        local = pages * c.flush_one_local
        handler = c.ipi_handle + local
        for other in self.cpus:
            pop = other.tlb.pop
            for vpn in range(first, first + pages):
                pop(vpn, None)
            if other is not cpu and not other.idle:
                other.ipis_received += 1
                self.charge(other, "flush_tlb_func", handler)
        self.local_flushes += 1
        self.charge(cpu, fn, local)
        targets = self.ncpus - 1
        if targets:
            self.ipis += targets
            wait = handler + self._ack_serial(cpu)
            if self.nr_idle - (1 if cpu.idle else 0):
                wait += c.ipi_idle_wakeup
            self.charge(cpu, "smp_call_function", c.ipi_call_setup + targets * c.ipi_send + wait)

    def _ack_serial(self, cpu: CPU) -> float:
        """The acknowledgements queue on one line: each receiver takes the call data's
        lock to drop its reference (2.6.27's generic cross-call), one transfer per target,
        each priced by the topology (``cost.levels()``) from that target to ``cpu``."""
        return self.topology.ack[cpu.id]

    def access_pages(self, cpu: CPU, addr: int, count: int, fn: str = "touch") -> list[Page]:
        """Store to ``count`` consecutive pages from page-aligned ``addr``: the Pages reached.

        Each page costs a store (``touch``) and, on a TLB miss, a page walk; a page with
        no PTE and no TLB entry raises PageFault (after charging the pages before it).
        """
        if cpu.tlb_gen != self.flush_gen:
            self.sync(cpu)
        tlb = cpu.tlb
        vpn = addr >> PAGE_SHIFT
        out: list[Page] = []
        misses = 0
        fault = None
        pte = self.pte
        for a in range(vpn, vpn + count):
            page = tlb.get(a)
            if page is None:  # TLB miss: walk the page table
                page = pte.get(a)
                if page is None:
                    fault = a
                    break
                tlb[a] = page
                misses += 1
            out.append(page)
        c = self.cost
        ns = misses * c.tlb_miss + len(out) * c.touch
        cpu.clock += ns
        prof = cpu.cprof
        prof[fn] = prof.get(fn, 0.0) + ns
        if misses:
            self.tlb_misses += misses
            cpu.tlb_misses += misses
            if self.tlb_size is not None:
                while len(tlb) > self.tlb_size:
                    del tlb[next(iter(tlb))]  # FIFO eviction of the oldest fill
        if fault is not None:
            raise PageFault(f"BUG: unable to handle kernel paging request at {pr_ptr(fault << PAGE_SHIFT)}")
        return out

    # -- memory contents -------------------------------------------------------------------
    def touch(self, cpu: CPU, fn: str = "touch") -> None:
        self.charge(cpu, fn, self.cost.touch)

    def counters(self) -> dict[str, int]:
        return {
            "ipis": self.ipis,
            "tlb_flushes": self.tlb_flushes,
            "local_tlb_flushes": self.local_flushes,
            "tlb_misses": self.tlb_misses,
            "pte_writes": self.pte_writes,
            "pte_clears": self.pte_clears,
        }
