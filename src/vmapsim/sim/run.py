"""One benchmark cell: a design, a workload on N CPUs of an M-CPU machine, in simulated time."""

from __future__ import annotations

import random
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..hw.cost import CostModel, get_preset
from ..mm import designs
from ..mm.vmalloc import Kernel
from .engine import Engine
from .workload import WorkloadParams, load

#: Seed's figures (ns per map+touch+unmap of 4 pages, 8-CPU Opteron), by the kernel
#: they were measured on (a design's canonical name), then by threads.
SEED_TABLE: dict[str, dict[int, float]] = {
    "2.6.27": {1: 14700, 2: 33600, 4: 49500, 8: 70631},
    "2.6.28": {1: 2900, 2: 3000, 4: 2800, 8: 2900},
}

#: Default maptouch operations per CPU, by whether the design frees lazily. With lazy
#: freeing it takes well over 10,000 four-page ops per CPU for the lazy purge to fire
#: several times at 8 CPUs (lazy_max_pages = 32768); without, there is no purge and
#: each op costs the same from the first one.
DEFAULT_OPS = {True: 12288, False: 2048}


def default_ops(design: str, workload: str = "maptouch") -> int:
    """Operations per thread a cell runs unless told (asks the design whether it frees lazily)."""
    if workload == "maptouch":
        return DEFAULT_OPS[designs.design_class(design).has_lazy_free]
    return int(getattr(load(workload), "DEFAULT_OPS", WORKLOAD_OPS.get(workload, 1000)))

#: Default operations per CPU of the other workloads.
WORKLOAD_OPS = {"xfsdir": 300}

IDLE_FN = "default_idle"


@dataclass
class RunResult:
    """Figures of one run (see ``run``); ``profile`` maps function -> simulated ns,
    ``cpu_stacks`` CPU -> call chain (outermost function, ..., leaf) -> simulated ns."""

    design: str
    workload: str
    threads: int
    cpus: int
    pages: int
    ops_per_thread: int
    ops: int
    ns_per_op: float
    p99_ns: float
    ipis_per_op: float
    ipis_received_per_op: float
    flushes: int
    purges: int
    lock_wait_per_op: float
    wall_seconds: float
    sim_ops_per_sec: float
    makespan_ns: float
    cost: str
    seed: int
    steps: int
    profile: dict[str, float] = field(default_factory=dict, repr=False)
    cpu_stacks: dict[int, dict[tuple[str, ...], float]] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["profile"], d["cpu_stacks"]
        return d

    def stacks(self, cpu: int | None = None) -> dict[tuple[str, ...], float]:
        """Simulated ns by call chain, summed over every CPU (or of CPU ``cpu`` only)."""
        if cpu is not None:
            return dict(self.cpu_stacks.get(cpu, {}))
        out: dict[tuple[str, ...], float] = {}
        for stacks in self.cpu_stacks.values():
            for chain, ns in stacks.items():
                out[chain] = out.get(chain, 0.0) + ns
        return out


def default_cost(workload: str) -> str:
    """The cost preset a workload runs on by default: the machine its seed figures came from."""
    return str(getattr(load(workload), "DEFAULT_COST", "opteron-2008"))


def machine_cpus(cost: CostModel) -> int:
    """CPUs of the preset's machine (sockets x cores per socket)."""
    return max(1, cost.sockets * cost.cores_per_socket)


def _p99(lat: array) -> float:
    if not len(lat):
        return 0.0
    try:
        import numpy as np

        return float(np.percentile(np.frombuffer(lat, dtype=np.float64), 99, method="lower"))
    except ImportError:  # pragma: no cover - numpy is a test dependency
        s = sorted(lat)
        return s[min(len(s) - 1, (len(s) * 99) // 100)]


def run(
    design: str = "2.6.28",
    threads: int = 1,
    cpus: int | None = None,
    pages: int = 4,
    ops: int | None = None,
    cost: str | CostModel | None = None,
    seed: int = 0,
    workload: str = "maptouch",
    other_ns: float | None = None,
    check: bool = False,
) -> RunResult:
    """Run ``workload`` on CPUs 0..threads-1 of a ``cpus``-CPU machine (default: the
    preset's machine, or ``threads`` CPUs if more); the other CPUs stay idle (halted).
    ``cost`` defaults to the workload's machine (``DEFAULT_COST``; else ``opteron-2008``).

    ``check`` runs ``k.check()`` after the run (O(state); off for benchmarks).
    """
    mod = load(workload)
    if cost is None:
        cost = default_cost(workload)
    model = get_preset(cost) if isinstance(cost, str) else cost
    for name, v in (("threads", threads), ("pages", pages), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if cpus is None:
        cpus = max(threads, machine_cpus(model))
    if not 1 <= threads <= 1024:
        raise ConfigError(f"threads must be 1..1024, got {threads}")
    if not threads <= cpus <= 1024:
        raise ConfigError(f"cpus must be threads..1024 (threads={threads}), got {cpus}")
    if not 1 <= pages <= 1024:
        raise ConfigError(f"pages must be 1..1024, got {pages}")
    if ops is None:
        ops = default_ops(design, workload)
    if not isinstance(ops, int) or ops < 1:
        raise ConfigError(f"ops must be a positive int, got {ops!r}")
    params = WorkloadParams(ops=ops, pages=pages, other_ns=other_ns)
    k = Kernel(cpus=cpus, design=design, cost=model, mem_pages=max(262144, cpus * pages * 32))
    m = k.machine
    eng = Engine(k, seed)
    rng = eng.rng
    lat = array("d")
    gens = [mod.start(k, c, params, random.Random(rng.random()), lat) for c in range(threads)]
    # The clock starts now: every CPU at the same time, setup costs forgotten.
    t0 = max(c.clock for c in m.cpus)
    for c in m.cpus:
        m.sync(c)  # flushes of the setup reach idle CPUs for free
        c.clock = t0
        c.clear_profile()
    base = {key: getattr(m, key) for key in ("ipis", "tlb_flushes", "lock_wait_ns")}
    base_recv = sum(c.ipis_received for c in m.cpus)
    base_purges = k.purges
    wall0 = time.perf_counter()
    m.timed = True
    try:
        for cpu_id, gen in enumerate(gens):
            m.set_idle(m.cpus[cpu_id], False)
            # a little seeded jitter so the threads do not start in lock step
            eng.process(cpu_id, gen, start=t0 + rng.random() * 100.0)
        eng.run()
    finally:
        m.timed = False
        for cpu_id in range(threads):
            m.set_idle(m.cpus[cpu_id], True)
    wall = time.perf_counter() - wall0
    t_end = max(c.clock for c in m.cpus)
    for c in m.cpus:
        m.sync(c)
    if check:
        k.check()
    n = len(lat)
    prof: dict[str, float] = {}
    cpu_stacks: dict[int, dict[tuple[str, ...], float]] = {}
    for c in m.cpus:
        for fn, ns in c.prof.items():
            prof[fn] = prof.get(fn, 0.0) + ns
        stacks = c.stacks()
        idle = t_end - c.clock
        if idle > 0:
            prof[IDLE_FN] = prof.get(IDLE_FN, 0.0) + idle
            stacks[(IDLE_FN,)] = stacks.get((IDLE_FN,), 0.0) + idle
        if stacks:
            cpu_stacks[c.id] = stacks
    return RunResult(
        design=k.design,
        workload=workload,
        threads=threads,
        cpus=cpus,
        pages=pages,
        ops_per_thread=ops,
        ops=n,
        ns_per_op=sum(lat) / n if n else 0.0,
        p99_ns=_p99(lat),
        ipis_per_op=(m.ipis - base["ipis"]) / n if n else 0.0,
        ipis_received_per_op=(sum(c.ipis_received for c in m.cpus) - base_recv) / n if n else 0.0,
        flushes=m.tlb_flushes - base["tlb_flushes"],
        purges=k.purges - base_purges,
        lock_wait_per_op=(m.lock_wait_ns - base["lock_wait_ns"]) / n if n else 0.0,
        wall_seconds=wall,
        sim_ops_per_sec=n / wall if wall > 0 else 0.0,
        makespan_ns=t_end - t0,
        cost=model.name,
        seed=seed,
        steps=eng.steps,
        profile=prof,
        cpu_stacks=cpu_stacks,
    )
