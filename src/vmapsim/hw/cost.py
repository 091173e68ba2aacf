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
    """Nanoseconds charged by each hardware primitive (see the module docstring)."""

    name: str = "opteron-2008"
    #: CPU clock; converts the cycle counts quoted below to ns.
    ghz: float = 2.3
    #: Cores per socket: cache-line transfers between sockets cost more.
    cores_per_socket: int = 4
    # --- memory and page tables -------------------------------------------------
    #: One cache line read that misses the local cache (tree/list node visit):
    #: ~60 ns DRAM latency on a 2008 Opteron (K10 local DRAM ~60-70 ns).
    mem_access: float = 60.0
    #: One cache line read that hits (a slab object, a bitmap word): ~4 cycles+.
    cache_hit: float = 3.0
    #: Write one PTE (set_pte_at in vmap_pte_range, incl. the page-table walk to it).
    #: Fitted from the one-thread rewrite cell.
    pte_write: float = 105.0
    #: Clear one PTE (ptep_get_and_clear in vunmap_pte_range): an xchg on the entry.
    pte_clear: float = 40.0
    #: Hardware page walk on a TLB miss (4 levels, upper levels cached): ~100 cycles.
    tlb_miss: float = 45.0
    #: First store to a page (the "touch"): a cold cache line from DRAM.
    touch: float = 70.0
    # --- TLB flushes (Hansen 2015, Westmere/Haswell cycles; /ghz) -------------------
    #: Local full flush of kernel (global) entries: CR4.PGE toggle, 828-960 cycles.
    flush_all_local: float = 390.0
    #: One INVLPG: 216-260 cycles.
    flush_one_local: float = 100.0
    # --- IPIs (no 2008 per-CPU figure published: fitted to the one-thread legacy cell)
    #: Sender: write the APIC ICR for one target (smp_call_function loop).
    ipi_send: float = 190.0
    #: Receiver: interrupt entry + handler + exit, excluding the flush itself.
    ipi_handle: float = 900.0
    #: Extra latency before a halted (idle) CPU takes the interrupt. *Fitted*.
    ipi_idle_wakeup: float = 7400.0
    #: Sender: fixed cost of a cross-call (set up call data, wait loop entry).
    ipi_call_setup: float = 400.0
    # --- locks and atomics ---------------------------------------------------------
    #: Uncontended lock acquire+release on a line this CPU owns: a locked op, ~20 cycles.
    lock_acquire: float = 10.0
    #: Moving a cache line from another core of the same socket: ~50 ns.
    line_transfer: float = 50.0
    #: Moving a cache line across sockets (HyperTransport hop): ~120 ns.
    line_transfer_remote: float = 120.0
    # --- allocators ----------------------------------------------------------------
    #: kmalloc/kfree of a small object (slab fast path): ~100 cycles.
    kmalloc: float = 45.0
    #: alloc_page/__free_page (buddy fast path, per-CPU lists): ~250 cycles.
    page_alloc: float = 110.0
    #: Fixed cost of entering a kernel API function (call, checks, preempt count).
    call: float = 20.0
    extra: dict[str, float] = field(default_factory=dict)

    def replace(self, **changes: float) -> CostModel:
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


PRESETS = {
    "opteron-2008": CostModel,
    "modern-x86": _modern,
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
