"""The timing engine: one heap of ``(time, priority, seq, event)`` tuples.

SimPy-style discrete-event loop. An event is either a *process* (a workload's
generator bound to one simulated CPU) or a plain callback. A process yields after
each kernel call; that call ran atomically in Python, and what the hardware
primitives charged to the CPU during it (``cpu.clock``) is its duration. The process
is then rescheduled at its CPU's new clock, so the heap always hands the next step to
the CPU that is furthest behind in simulated time, and every lock a step takes sees
the releases of all steps that started earlier (see ``hw/locks.py``).

Deviation from a fine-grained simulation: a step is not split at its lock
acquisitions. A step that started earlier but takes a lock late in its call still
holds it before a later-starting step asks; the error is bounded by the work a call
does before its first lock (a few tens of ns in the mm code).

Determinism: ties are broken by priority, then by a sequence number; the only
randomness is the seeded ``random.Random`` handed to the workloads (and the start
jitter it draws), so a seed gives the same run bit for bit.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from typing import Any

from ..hw.machine import CPU, Machine

#: Priority of process steps; callbacks default to run before them at equal times.
PRIO_PROCESS = 1
PRIO_CALLBACK = 0


class Process:
    """A workload generator running on one CPU; ``done`` once it returns."""

    __slots__ = ("cpu", "gen", "done", "name")

    def __init__(self, cpu: CPU, gen: Iterator[Any], name: str) -> None:
        self.cpu = cpu
        self.gen = gen
        self.done = False
        self.name = name

    def __repr__(self) -> str:
        return f"Process({self.name!r} on CPU {self.cpu.id}, done={self.done})"


class Engine:
    """Runs processes (one per CPU) and callbacks in simulated time.

    ``kernel`` is anything with ``machine`` and a settable ``current_cpu`` (the current CPU,
    i.e. smp_processor_id(), which each step switches to its process's CPU).
    """

    def __init__(self, kernel: Any, seed: int = 0) -> None:
        self.kernel = kernel
        self.machine: Machine = kernel.machine
        self.rng = random.Random(seed)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.steps = 0
        self.processes: list[Process] = []
        # the kernel's deferred work (schedule_work) runs as events of its own
        kernel.work_scheduler = self.run_work

    def process(self, cpu_id: int, gen: Iterator[Any], start: float | None = None,
                name: str = "") -> Process:
        """Run ``gen`` on CPU ``cpu_id`` from ``start`` (default: that CPU's clock)."""
        cpu = self.machine.cpus[cpu_id]
        if any(p.cpu is cpu and not p.done for p in self.processes):
            raise ValueError(f"CPU {cpu_id} already runs a process")
        proc = Process(cpu, gen, name or f"cpu{cpu_id}")
        self.processes.append(proc)
        t = cpu.clock if start is None else max(start, cpu.clock)
        self.seq += 1
        heapq.heappush(self.heap, (t, PRIO_PROCESS, self.seq, proc))
        return proc

    def call_at(self, time: float, fn: Callable[[], Any], priority: int = PRIO_CALLBACK) -> None:
        """Call ``fn()`` at simulated ``time``."""
        self.seq += 1
        heapq.heappush(self.heap, (time, priority, self.seq, fn))

    def run_work(self, cpu_id: int, name: str, fn: Callable[[], Any]) -> None:
        """Deferred kernel work (a kworker) queued now on CPU ``cpu_id``: it runs there as
        an event of its own at that CPU's clock, between two steps of its process, and
        its time is that CPU's (so the kernel's ``work_scheduler`` hook points here)."""
        cpu = self.machine.cpus[cpu_id]
        k = self.kernel

        def work() -> None:
            m = self.machine
            old = k.current_cpu
            k.current_cpu = cpu
            was_idle = cpu.idle
            if was_idle:  # an idle CPU wakes for the kworker, then halts again
                cpu.clock = max(cpu.clock, when)
                m.set_idle(cpu, False)
            m.sync(cpu)
            try:
                fn()
            finally:
                k.current_cpu = old
                if was_idle:
                    m.set_idle(cpu, True)

        when = max(cpu.clock, k.this_cpu.clock)
        self.call_at(when, work)

    def run(self, until: float = float("inf")) -> float:
        """Run until no event is left (or the next one is after ``until``); the last time."""
        heap = self.heap
        m = self.machine
        k = self.kernel
        sync = m.sync
        heapreplace = heapq.heapreplace
        heappop = heapq.heappop
        seq = self.seq
        steps = 0
        now = 0.0
        proc_cls = Process
        try:
            while heap:
                top = heap[0]
                now = top[0]
                if now > until:
                    break
                ev = top[3]
                if ev.__class__ is proc_cls:
                    cpu = ev.cpu
                    if cpu.clock < now:
                        cpu.clock = now  # the process starts (or resumes) later than its CPU's clock
                    k.current_cpu = cpu
                    if cpu.ipi_gen != m.flush_gen and (
                            cpu.tlb_gen != m.flush_gen or cpu.idle
                            or m.flush_times[cpu.ipi_gen] <= cpu.clock):
                        sync(cpu)  # IPIs that reached this CPU since its last step
                    try:
                        next(ev.gen)
                    except StopIteration:
                        ev.done = True
                        heappop(heap)
                        continue
                    steps += 1
                    seq += 1
                    heapreplace(heap, (cpu.clock, PRIO_PROCESS, seq, ev))
                else:
                    heappop(heap)
                    ev()
        finally:
            self.seq = seq
            self.steps += steps
        return now
