"""The cost model: simulated nanoseconds per hardware primitive.

Every constant names the primitive it prices and the source of its value. The
``opteron-2008`` preset models the seed's machine (2 sockets x 4 cores, 2008 Opteron);
sources are in ``shared/reference/cost-model.md``. Constants marked *fitted* were set
from the seed's ONE-thread column only (see ``vmapsim.sim.fit``); the multi-thread
cells are predictions and are never used to set anything here. ``threadripper-3970x``
(issue 9) models the machine of the vmap-nodes series' figures; its two fitted
constants come from that series' two one-job cells alone.

Where a cache line moves between two CPUs is the preset's topology (``levels()``): a
hierarchy of groups, each level with its own transfer cost, worked out per machine
size by ``topology_tables`` into the tables locks and cross-calls read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import ConfigError

#: One level of a machine's topology: (CPUs per group, ns to move a cache line between
#: two CPUs whose smallest common group is a group of this level).
Level = tuple[int, float]


@dataclass(slots=True)
class CostModel:
    """Nanoseconds charged by each hardware primitive (see the module docstring).

    Sources are abbreviated: [CM] is ``shared/reference/cost-model.md``, where each
    measurement is quoted with its author; "estimate" marks a value with no published
    2008 figure (an order of magnitude from the CPU's documented behaviour, not tuned
    to any seed cell); "fitted" marks the two constants ``vmapsim.sim.fit`` solves for
    from the seed's one-thread cells (re-run ``python -m vmapsim.sim.fit`` to check).
    """

    name: str = "opteron-2008"
    #: CPU clock, converting the cycle counts quoted below: 2.3 GHz, the clock of the
    #: quad-core Opteron 2356 (Barcelona, 2008), a 2-socket x 4-core part as the seed's.
    ghz: float = 2.3
    #: Sockets of the preset's machine (its CPU count is sockets x cores_per_socket):
    #: the seed's "4 core, 2 socket opteron".
    sockets: int = 2
    #: Cores per socket: cache-line transfers between sockets cost more. Seed: 4.
    #: (With SMT it counts the CPUs the kernel sees, hardware threads.)
    cores_per_socket: int = 4
    #: Hardware threads per core, numbered as Linux numbers them on x86: thread t of
    #: core c is CPU c + t * cores (cores = ceil(cpus / smt)), so CPUs 0..cores-1 are
    #: the first threads of distinct cores and CPU c + cores is c's sibling. 1: no SMT.
    smt: int = 1
    #: Where a cache line moves between two CPUs: the levels of the machine's hierarchy
    #: of groups, innermost first, as (CPUs per group, ns per line transfer between two
    #: CPUs whose smallest common group is this level). Groups are runs of consecutive
    #: CPUs in the numbering above (each size a multiple of the one before); two CPUs
    #: with no common group (a run with more CPUs than the preset's machine) pay the
    #: outermost level's ns. None: the two-level socket rule, ((cores_per_socket,
    #: line_transfer), (sockets x cores_per_socket, line_transfer_remote)); see
    #: ``levels()``. A preset that sets it no longer reads the two constants below.
    topology: tuple[Level, ...] | None = None
    # --- memory and page tables -------------------------------------------------
    #: One cache line read that misses the caches (a list/tree node visit): local DRAM
    #: latency of a K10 Opteron, ~60 ns (estimate; 2008 reviews quote 60-70 ns).
    mem_access: float = 60.0
    #: One cache line read that hits L1/L2 (a bitmap word): ~3 ns = 7 cycles (estimate).
    cache_hit: float = 3.0
    #: Map one page: set_pte_at() in vmap_page_range() plus everything per page the
    #: model does not itemise (walking to the PTE page, cold PTE lines, per-page
    #: bookkeeping of the 2008 code). *Fitted* to the seed's one-thread rewrite cell.
    pte_write: float = 479.7
    #: Clear one PTE (ptep_get_and_clear in vunmap_pte_range): one locked xchg on a
    #: line just written, ~90 cycles (estimate).
    pte_clear: float = 40.0
    #: Hardware page walk on a TLB miss, upper levels in the page-walk cache:
    #: ~100 cycles (estimate).
    tlb_miss: float = 45.0
    #: First store to a page (the "touch"): one cache line from DRAM plus the store,
    #: ~160 cycles (estimate, mem_access + a few cycles).
    touch: float = 70.0
    # --- TLB flushes -------------------------------------------------------------
    #: Local flush of every entry, global ones too (CR4.PGE toggle): 828 (Westmere)
    #: - 960 (Haswell) cycles [CM, Hansen 2015] -> 390 ns at 2.3 GHz.
    flush_all_local: float = 390.0
    #: One INVLPG: 216-260 cycles [CM, Hansen 2015; Molnar 2015]; the kernel's own
    #: comment "each single flush is about 100 ns" [CM].
    flush_one_local: float = 100.0
    # --- IPIs (smp_call_function, wait=1) ------------------------------------------
    # No primary per-CPU IPI figure for 2008 Opterons exists [CM]; the send and
    # handler costs below are estimates, and the idle wake-up, which dominates the
    # one-thread legacy cell (7 idle targets), is fitted to it.
    #: Sender: one APIC ICR write per target (physical destination mode, as x86_64
    #: uses for > 8 CPUs): an uncached MMIO write, ~440 cycles (estimate).
    ipi_send: float = 190.0
    #: Receiver: interrupt entry, the call-function handler, ack, exit; the flush
    #: itself is flush_all_local on top. ~2000 cycles (estimate; Hansen's 2014 full
    #: flush incl. its remote part averaged 2283 cycles [CM]).
    ipi_handle: float = 900.0
    #: Extra latency before a halted (idle) CPU takes the interrupt and acks: leaving
    #: HLT/C1E. *Fitted* to the seed's one-thread legacy cell.
    ipi_idle_wakeup: float = 7911.0
    #: Sender: fixed cost of a cross-call (build call data, lock it, enter the wait
    #: loop), ~900 cycles (estimate).
    ipi_call_setup: float = 400.0
    # --- locks and atomics ---------------------------------------------------------
    #: Uncontended lock acquire+release on a line this CPU owns: a locked op,
    #: ~20 cycles (estimate; AMD's optimisation guide gives ~20 for lock-prefixed ops).
    lock_acquire: float = 10.0
    #: Moving a cache line from another core of the same socket (shared L3): ~50 ns
    #: (estimate, ~115 cycles). Also each cross-call acknowledgement: the receivers
    #: drop their reference to the call data one by one under its lock (2.6.27's
    #: generic smp_call_function), so the sender's wait grows by one transfer per
    #: target [CM: shootdown cost linear in the CPU count].
    line_transfer: float = 50.0
    #: Moving a cache line across sockets (one HyperTransport hop, probe + response):
    #: ~120 ns (estimate, about twice a local DRAM access).
    line_transfer_remote: float = 120.0
    # --- allocators ----------------------------------------------------------------
    #: kmalloc/kfree of a small object (slab fast path): ~100 cycles (estimate).
    kmalloc: float = 45.0
    #: alloc_page/__free_page (buddy fast path, per-CPU lists): ~250 cycles (estimate).
    page_alloc: float = 110.0
    #: Fixed cost of entering a kernel API function (call, checks, preempt count):
    #: ~50 cycles (estimate).
    call: float = 20.0
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.smt, int) or self.smt < 1:
            raise ConfigError(f"smt must be a positive int, got {self.smt!r}")
        if self.topology is not None:
            levels = tuple((int(n), float(ns)) for n, ns in self.topology)
            if not levels:
                raise ConfigError("topology needs at least one level")
            prev = 1
            for n, ns in levels:
                if n < prev or n % prev or ns < 0:
                    raise ConfigError(
                        f"topology levels must grow by whole multiples with ns >= 0: {self.topology!r}")
                prev = n
            self.topology = levels

    def replace(self, **changes: object) -> CostModel:
        """A copy with some constants changed (unknown names raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ConfigError(f"CostModel has no constant {key!r}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | str | int | tuple[Level, ...] | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}

    def levels(self) -> tuple[Level, ...]:
        """The topology, innermost level first (the socket rule unless ``topology`` is set)."""
        if self.topology is not None:
            return self.topology
        per = max(1, self.cores_per_socket)
        return ((per, self.line_transfer), (per * max(1, self.sockets), self.line_transfer_remote))

    def position(self, cpu: int, ncpus: int) -> int:
        """``cpu``'s place in the topology's order (its groups are runs of places):
        with SMT, thread t of core c (CPU c + t * cores) sits at c * smt + t."""
        smt = self.smt
        if smt == 1:
            return cpu
        cores = -(-ncpus // smt)
        return (cpu % cores) * smt + cpu // cores

    def transfer_ns(self, a: int, b: int, ncpus: int) -> float:
        """ns to move a line from CPU ``a`` to CPU ``b`` of an ``ncpus``-CPU machine
        (0 for the same CPU): the reference rule the machine's tables are built by."""
        if a == b:
            return 0.0
        pa, pb = self.position(a, ncpus), self.position(b, ncpus)
        levels = self.levels()
        for n, ns in levels:
            if pa // n == pb // n:
                return ns
        return levels[-1][1]


class TopologyTables(NamedTuple):
    """The topology worked out for one machine size (``topology_tables``)."""

    #: each CPU's innermost group (index into ``rows``)
    group: list[int]
    #: rows[g][h]: ns to move a line between a CPU of innermost group g and one of h
    #: (rows[g][g]: two distinct CPUs of one innermost group); CPUs of a group share a row
    rows: list[list[float]]
    #: each CPU's sum of transfers from every other CPU: the cross-call acknowledgements
    ack: list[float]
    #: the mean transfer from CPU 0 to another CPU picked at random (0.0 for one CPU)
    mean_from_0: float


def topology_tables(cost: CostModel, ncpus: int) -> TopologyTables:
    """Per-group transfer rows and per-CPU sums for an ``ncpus``-CPU machine.

    O(groups^2) list slices, done once per machine, so that a lock's hot path is one
    index (``cpu.xfer[owner.tgroup]``). Sums are taken level by level, innermost first
    (count x ns), which for the two-level socket rule is the old expression exactly.
    """
    levels = cost.levels()
    inner = levels[0][0]
    pos = [cost.position(i, ncpus) for i in range(ncpus)]
    group = [p // inner for p in pos]
    ngroups = max(group) + 1
    rows: list[list[float]] = []
    outer_ns = levels[-1][1]
    for g in range(ngroups):
        row = [outer_ns] * ngroups
        # from the outer levels in, overwrite the groups sharing that level's group with g
        for n, ns in reversed(levels):
            span = n // inner
            lo = (g // span) * span
            hi = min(ngroups, lo + span)
            row[lo:hi] = [ns] * (hi - lo)
        rows.append(row)
    # CPUs sharing each level's group with a CPU: counts per group id, level by level
    counts = []
    for n, _ in levels:
        c: dict[int, int] = {}
        for p in pos:
            c[p // n] = c.get(p // n, 0) + 1
        counts.append(c)
    ack = []
    for i in range(ncpus):
        p = pos[i]
        total = 0.0
        below = 1  # CPUs (this one) already counted at inner levels
        for k, (n, ns) in enumerate(levels):
            inside = counts[k][p // n] if k < len(levels) - 1 else ncpus
            if inside > below:
                total += (inside - below) * ns
                below = inside
        ack.append(total)
    mean = ack[0] / (ncpus - 1) if ncpus > 1 else 0.0
    return TopologyTables(group, rows, ack, mean)


def _modern() -> CostModel:
    # A 2020s x86 server: faster DRAM paths, much cheaper IPIs (x2APIC), no idle
    # wakeup penalty modelled (idle=poll style); figures from Hansen 2014/2015.
    return CostModel(
        name="modern-x86",
        ghz=3.0,
        sockets=2,
        cores_per_socket=16,
        mem_access=80.0,
        pte_write=30.0,
        pte_clear=15.0,
        tlb_miss=30.0,
        touch=40.0,
        flush_all_local=300.0,
        flush_one_local=75.0,
        ipi_send=60.0,
        ipi_handle=500.0,
        ipi_idle_wakeup=2000.0,
        ipi_call_setup=200.0,
        line_transfer=40.0,
        line_transfer_remote=110.0,
        kmalloc=20.0,
        page_alloc=60.0,
        call=5.0,
    )


#: Facts behind ``altix-2008`` (sources in ``docs/timing-model.md``, "The 64-CPU machine").
#: SHub local memory latency, Itanium 2 on Altix (Wikipedia, "Itanium": SHUB section).
ALTIX_LOCAL_MEM_NS = 132.0
#: Each crossing of a NUMAlink router adds 50 ns (same source; also Texas A&M's Altix
#: 3700 "cosmos" hardware page: fat tree, path length O(log N), 50 ns per router).
ALTIX_ROUTER_NS = 50.0
#: Routers crossed one way between two nodes of a 64-CPU (32-node) fat tree: the
#: 128-CPU cosmos has at most 5; 2 is the mean we take for 64 CPUs (estimate).
ALTIX_MEAN_ROUTERS = 2.0
#: Itanium 2 clock of the Altix systems of the time: 1.5 GHz (SGI MPT paper, Feind &
#: McMahon, 512-CPU Altix; cosmos: 1.3 GHz).
ALTIX_GHZ = 1.5


def _altix(mean_routers: float = ALTIX_MEAN_ROUTERS) -> CostModel:
    # The seed's XFS machine: a 64-CPU SGI Altix (ia64, sn2: its before profile names
    # sn2_send_IPI and sn_send_IPI_phys). Derived, not fitted: there is no one-thread
    # cell for this machine, and nothing here is set from the seed's XFS figures (only
    # pte_write and ipi_idle_wakeup carry the Opteron preset's one-thread fits, below).
    # - Memory and coherence from the NUMAlink facts above: a line from another node
    #   is a 3-leg directory intervention (requester -> home -> owner -> requester),
    #   each leg crossing ALTIX_MEAN_ROUTERS routers, on top of the SHub latency; an
    #   IPI is one uncached write to the target's SHub (pio_phys_write_mmr): 2 legs.
    #   The legs and their router counts are our assumption (the sources give 50 ns
    #   per router crossed, not a path); docs/timing-model.md shows 1 and 3 routers.
    # - CPU-bound work: the opteron-2008 preset's figures as cycles, at 1.5 GHz (the
    #   fitted pte_write included: the per-page work is assumed the same in cycles).
    # - ipi_idle_wakeup: the opteron-2008 fit kept as is (no ia64 PAL_HALT_LIGHT figure).
    o = CostModel()
    cyc = o.ghz / ALTIX_GHZ  # opteron ns -> the same cycles at the Altix clock
    leg = mean_routers * ALTIX_ROUTER_NS  # benchmarks/bench_altix.py varies it
    return o.replace(
        name="altix-2008",
        ghz=ALTIX_GHZ,
        sockets=32,  # 32 nodes: a SHub with 2 CPUs on one snoopy front-side bus
        cores_per_socket=2,
        mem_access=ALTIX_LOCAL_MEM_NS,
        cache_hit=7 / ALTIX_GHZ,  # L2 hit, 7 cycles (cosmos cache table)
        pte_write=round(o.pte_write * cyc, 1),
        pte_clear=round(o.pte_clear * cyc, 1),
        tlb_miss=round(o.tlb_miss * cyc, 1),
        touch=ALTIX_LOCAL_MEM_NS + 5,  # a line from local memory plus the store (+5: estimate)
        flush_all_local=round(o.flush_all_local * cyc, 1),
        flush_one_local=round(o.flush_one_local * cyc, 1),
        ipi_send=ALTIX_LOCAL_MEM_NS + 2 * leg,
        ipi_handle=round(o.ipi_handle * cyc, 1),
        ipi_call_setup=round(o.ipi_call_setup * cyc, 1),
        lock_acquire=round(o.lock_acquire * cyc, 1),
        line_transfer=ALTIX_LOCAL_MEM_NS,  # the other CPU on the node's bus: via the SHub
        line_transfer_remote=ALTIX_LOCAL_MEM_NS + 3 * leg,
        kmalloc=round(o.kmalloc * cyc, 1),
        page_alloc=round(o.page_alloc * cyc, 1),
        call=round(o.call * cyc, 1),
    )


#: Facts behind ``threadripper-3970x`` (docs/timing-model.md, "The Threadripper 3970X
#: (issue 9)", quotes each). [C2C]: nviennot/core-to-core-latency, results for "AMD
#: Ryzen Threadripper 3960X, 3.80GHz, 24 Cores, Zen 2" (data by Mathias Siegel): the same
#: Zen 2 package (CCDs of two 4-core CCXs around one I/O die; 3 cores per CCX enabled
#: on the 3960X), each figure half the round trip of two CPUs compare-exchanging one
#: line in turn (src/bench/cas.rs: "duration / num_round_trips / 2"). Medians over the
#: CPU pairs of each kind, computed from the published CSV.
TR_GHZ = 3.7  # AMD: 3970X base clock
TR_C2C_SMT_NS = 6.5  # [C2C] README, "Hyper-threads" table: 6.5ns (24 sibling pairs)
TR_C2C_CCX_NS = 23.7  # [C2C] README: "24ns, 94ns"; median of the 24 same-CCX pairs
TR_C2C_CCD_NS = 85.2  # [C2C] CSV: median of the 36 other-CCX, same-CCD pairs (72-96)
TR_C2C_IOD_NS = 96.4  # [C2C] CSV: median of the 216 other-CCD pairs (78-103)
#: AnandTech, "AMD Rome Second Generation EPYC Review" (EPYC 7742), Memory Subsystem:
#: Latency: L2 "13 cycles", L3 "~34 cycles (avg) ~10.27 ns", DRAM "128MB Full Random
#: ~122ns (NPS1)". Rome's figures: the 3970X has the same CCDs and server I/O die.
TR_L2_CYCLES = 13
TR_L3_NS = 10.27
TR_DRAM_NS = 122.0
#: The locked read-modify-write inside a lock acquire and inside [C2C]'s one-way figure
#: (lock cmpxchg on a line this CPU owns): ~18 cycles, estimate. No Zen 2 figure was found; AMD's
#: Jaguar measured 16-17 cycles (LLVM commit b1bdd97a, Di Biagio 2019: "An atomic
#: CMPXCHG has a latency of ~17cy"), and [C2C]'s 6.5 ns between SMT siblings -- a locked
#: CAS plus a line move inside one core -- bounds it from above (~24 cycles at 3.7 GHz).
TR_LOCK_NS = round(18 / TR_GHZ, 1)


def _threadripper() -> CostModel:
    # AMD Ryzen Threadripper 3970X: 32 Zen 2 cores, SMT (64 CPUs), 8 CCXs of 4 cores
    # sharing an L3, 2 CCXs per CCD, 4 CCDs on one I/O die, one socket. Linux numbers
    # the threads as [C2C]'s CSV shows (CPU n and n + 24 are siblings on the 3960X):
    # smt=2 puts CPU c and c + 32 on core c, CPUs 4k..4k+3 (and their siblings) in CCX
    # k. A line transfer is [C2C]'s one-way figure less the locked op it includes
    # (lock_acquire is charged on its own). The CPU-bound constants are cycle
    # estimates at 3.7 GHz; the local flush figures are Hansen's Intel cycles [CM].
    # *Fitted* (python -m vmapsim.sim.fit --preset threadripper-3970x, FITTABLE there):
    # mem_access and lock_acquire, to Rezki's two one-job fix-size cells (vmalloc()/vfree()
    # of one page: 576.131 ns on 6.1, 555.889 ns on 6.9). Before the fit they were the
    # DRAM latency (TR_DRAM_NS) and the locked op (TR_LOCK_NS).
    lock = TR_LOCK_NS
    cyc = 1 / TR_GHZ  # ns per cycle
    return CostModel(
        name="threadripper-3970x",
        ghz=TR_GHZ,
        sockets=1,
        cores_per_socket=64,  # the 64 CPUs the kernel sees
        smt=2,
        topology=(
            (2, round(TR_C2C_SMT_NS - lock, 1)),  # SMT siblings: one core's L1/L2
            (8, round(TR_C2C_CCX_NS - lock, 1)),  # one CCX: a shared L3
            (16, round(TR_C2C_CCD_NS - lock, 1)),  # one CCD, the other CCX (via the I/O die)
            (64, round(TR_C2C_IOD_NS - lock, 1)),  # another CCD
        ),
        # *fitted*: a tree/list node visit. The loop of one job keeps visiting the same
        # few nodes, so it comes out at an L2 hit (13 cycles = 3.5 ns), not DRAM
        mem_access=4.8,
        cache_hit=round(TR_L2_CYCLES * cyc, 1),
        # a PTE store plus the per-page work not itemised, on lines the loop keeps
        # hot: ~150 cycles (estimate)
        pte_write=round(150 * cyc, 1),
        pte_clear=lock,  # ptep_get_and_clear: one locked xchg on a line just written
        tlb_miss=round(TR_L3_NS + TR_L2_CYCLES * cyc, 1),  # PTE line from L3, upper levels from L2
        # first store to the page: a page just freed on this CPU comes back from the
        # per-CPU page list, its line still in this CCX's L3 (estimate)
        touch=TR_L3_NS,
        flush_all_local=round(960 * cyc, 1),  # CR4.PGE toggle, 960 cycles (Haswell) [CM]
        flush_one_local=round(260 * cyc, 1),  # INVLPG, 260 cycles (Molnar 2015) [CM]
        ipi_send=round(200 * cyc, 1),  # x2APIC: one WRMSR to the ICR per target, ~200 cycles (estimate)
        ipi_handle=round(1500 * cyc, 1),  # entry, handler, ack, exit, ~1500 cycles (estimate)
        ipi_idle_wakeup=2000.0,  # leaving C1/C6 before acking, ~2 us (estimate)
        ipi_call_setup=round(700 * cyc, 1),  # cross-call set-up, ~700 cycles (estimate)
        # *fitted*: an uncontended spin_lock()+spin_unlock(): the out-of-line calls,
        # preempt count, the locked op (TR_LOCK_NS) and the release store
        lock_acquire=32.9,
        line_transfer=round(TR_C2C_CCX_NS - lock, 1),  # not read: topology is set
        line_transfer_remote=round(TR_C2C_IOD_NS - lock, 1),  # not read: topology is set
        kmalloc=round(100 * cyc, 1),  # slab fast path, ~100 cycles (estimate)
        page_alloc=round(250 * cyc, 1),  # buddy fast path (per-CPU lists), ~250 cycles (estimate)
        call=round(50 * cyc, 1),  # entering a kernel API function, ~50 cycles (estimate)
    )


PRESETS = {
    "opteron-2008": CostModel,
    "modern-x86": _modern,
    "altix-2008": _altix,
    "threadripper-3970x": _threadripper,
}


def get_preset(name: str) -> CostModel:
    """Return a fresh copy of the named preset; ConfigError names the known ones."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown cost preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None
    return factory()
