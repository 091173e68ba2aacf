"""The cost model: simulated nanoseconds per hardware primitive.

Every constant names the primitive it prices and the source of its value. The
``opteron-2008`` preset models the seed's machine (2 sockets x 4 cores, 2008 Opteron);
sources are in ``shared/reference/cost-model.md``. Constants marked *fitted* were set
from the seed's ONE-thread column only (see ``vmapsim.sim.fit``); the multi-thread
cells are predictions and are never used to set anything here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError


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
    cores_per_socket: int = 4
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

    def replace(self, **changes: float | str | int) -> CostModel:
        """A copy with some constants changed (unknown names raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ConfigError(f"CostModel has no constant {key!r}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | str | int]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}


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


PRESETS = {
    "opteron-2008": CostModel,
    "modern-x86": _modern,
    "altix-2008": _altix,
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
