"""Locks as the hardware sees them: a cache line moved between CPUs, and hold times.

Each acquire costs a locked operation, plus a cache-line transfer when another CPU
(another socket: more) held the lock last. While the timing engine runs
(``machine.timed``), a lock also has a release time: a CPU that wants it earlier
spins until then, and that wait is charged to the CPU under the lock's own profile
entry, e.g. ``_write_lock (vmlist_lock)``.
"""

from __future__ import annotations

from .machine import CPU, Machine


class _LockBase:
    __slots__ = ("name", "machine", "owner", "free_at", "acquisitions", "contended",
                 "wait_ns", "_fn", "_wait_fn")

    kind = "_spin_lock"

    def __init__(self, machine: Machine, name: str) -> None:
        self.name = name
        self.machine = machine
        self.owner: CPU | None = None  # CPU whose cache holds the line
        self.free_at = 0.0
        self.acquisitions = 0
        self.contended = 0
        self.wait_ns = 0.0
        self._fn = self.kind
        self._wait_fn = f"{self.kind} ({name})"

    def _take(self, cpu: CPU, until: float, fn: str) -> None:
        m = self.machine
        c = m.cost
        cost = c.lock_acquire
        owner = self.owner
        if owner is not cpu:
            if owner is not None:
                cost += c.line_transfer if owner.socket == cpu.socket else c.line_transfer_remote
            self.owner = cpu
        if m.timed and until > cpu.clock:
            wait = until - cpu.clock
            self.contended += 1
            self.wait_ns += wait
            m.charge(cpu, self._wait_fn, wait)
        self.acquisitions += 1
        m.charge(cpu, fn, cost)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, acquisitions={self.acquisitions})"


class SpinLock(_LockBase):
    """``spinlock_t``."""

    __slots__ = ()

    def lock(self, cpu: CPU) -> None:
        owner = self.owner
        if owner is cpu and not self.machine.timed:
            # fast path: uncontended, the line is already this CPU's
            self.acquisitions += 1
            ns = self.machine.cost.lock_acquire
            cpu.clock += ns
            prof = cpu.prof
            prof[self._fn] = prof.get(self._fn, 0.0) + ns
            return
        self._take(cpu, self.free_at, self._fn)

    def trylock(self, cpu: CPU) -> bool:
        if self.machine.timed and self.free_at > cpu.clock:
            return False
        self._take(cpu, 0.0, self._fn)
        return True

    def unlock(self, cpu: CPU) -> None:
        self.free_at = cpu.clock


class Mutex(SpinLock):
    """``struct mutex``: waits sleep instead of spinning (same accounting)."""

    __slots__ = ()
    kind = "mutex_lock"


class RWLock(_LockBase):
    """``rwlock_t``: readers share, a writer excludes readers and writers."""

    __slots__ = ("readers_free_at", "_read_fn", "_read_wait_fn")
    kind = "_write_lock"

    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(machine, name)
        self.readers_free_at = 0.0
        self._read_fn = "_read_lock"
        self._read_wait_fn = f"_read_lock ({name})"

    def write_lock(self, cpu: CPU) -> None:
        until = self.free_at if self.free_at > self.readers_free_at else self.readers_free_at
        self._take(cpu, until, self._fn)

    def write_unlock(self, cpu: CPU) -> None:
        self.free_at = cpu.clock

    def read_lock(self, cpu: CPU) -> None:
        wait_fn = self._wait_fn
        self._wait_fn = self._read_wait_fn
        try:
            self._take(cpu, self.free_at, self._read_fn)
        finally:
            self._wait_fn = wait_fn

    def read_unlock(self, cpu: CPU) -> None:
        if cpu.clock > self.readers_free_at:
            self.readers_free_at = cpu.clock
