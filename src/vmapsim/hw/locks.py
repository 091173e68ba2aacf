"""Locks as the hardware sees them: a cache line moved between CPUs, and hold times.

Each acquire costs a locked operation, plus a cache-line transfer when another CPU
held the lock last, priced by where the two CPUs sit in the machine's topology
(``CostModel.levels()``: SMT siblings, a shared L3, a die, a socket, ...; the
machine's per-group table ``cpu.xfer[owner.tgroup]`` keeps it one index). A queued
spinlock's handoff (qspinlock, Linux 4.2+) is the same price: the next waiter spins
on the lock word, so the release hands it one transfer of that line, then its locked
update of the locked byte; its MCS node write to the waiter after it happens inside
the new hold. While the timing engine runs
(``machine.timed``), a lock also has hold times: a CPU that wants it while another
holds it spins until the release, and that wait is charged to the CPU under the
lock's own profile entry, e.g. ``_write_lock (vmlist_lock)``.

Timed semantics (the engine runs each kernel call atomically, always on the CPU
furthest behind in simulated time, see ``vmapsim.sim.engine``):

- a hold is described by ``claim_at`` (when its holder asked for the lock: from then
  on, later requests queue behind it) and ``free_at`` (its release);
- a request at time t >= ``claim_at`` waits until ``free_at`` (FIFO order of
  requests, as the ticket spinlocks of 2.6.25+ give);
- a request at t < ``claim_at`` came earlier in simulated time than the recorded
  hold -- whose holder's call merely ran first in Python, having started earlier but
  reached the lock later -- so it takes the lock at t without waiting ("slips in").
  Deviation: only the latest hold is remembered, so two such early requests do not
  exclude each other; both are short (a few hundred ns) where this happens.
"""

from __future__ import annotations

from collections import deque

from .machine import CPU, Machine

#: Profile entries of lock waits are "<kind> (<lock name>)" with one of these kinds.
LOCK_KINDS = ("_spin_lock", "_write_lock", "_read_lock", "mutex_lock")
#: The symbols perf shows on x86 with queued spinlocks (Linux 4.2 on): an acquire is
#: ``_raw_spin_lock``, a contended one spins in ``native_queued_spin_lock_slowpath``;
#: a kernel sets ``Machine.lock_symbols`` to this (kind -> (acquire, wait)) to use them.
QSPINLOCK_SYMBOLS = {"_spin_lock": ("_raw_spin_lock", "native_queued_spin_lock_slowpath"),
                     "mutex_lock": ("mutex_lock", "__mutex_lock")}
_WAIT_PREFIXES = tuple(f"{k} (" for k in LOCK_KINDS) + tuple(
    f"{wait} (" for _, wait in QSPINLOCK_SYMBOLS.values())


def is_lock_wait(fn: str) -> bool:
    """Whether a profile entry is a lock's wait (e.g. ``_write_lock (vmlist_lock)``)."""
    return fn.startswith(_WAIT_PREFIXES)


class _LockBase:
    __slots__ = ("name", "machine", "owner", "free_at", "claim_at", "acquisitions",
                 "contended", "wait_ns", "_fn", "_wait_fn")

    kind = "_spin_lock"

    def __init__(self, machine: Machine, name: str) -> None:
        self.name = name
        self.machine = machine
        self.owner: CPU | None = None  # CPU whose cache holds the line
        self.free_at = 0.0
        self.claim_at = 0.0
        self.acquisitions = 0
        self.contended = 0
        self.wait_ns = 0.0
        fn, wait = machine.lock_symbols.get(self.kind, (self.kind, self.kind))
        self._fn = fn
        self._wait_fn = f"{wait} ({name})"

    def _take(self, cpu: CPU, until: float, fn: str, wait_fn: str) -> None:
        """Acquire: pay the locked op (+ the line transfer), spinning until ``until``."""
        m = self.machine
        c = m.cost
        cost = c.lock_acquire
        owner = self.owner
        if owner is not cpu:
            if owner is not None:
                cost += cpu.xfer[owner.tgroup]
            self.owner = cpu
        if until > cpu.clock and m.timed:
            # Spin until the holder's release; IPIs that reach this CPU meanwhile are
            # handled during the spin (Machine.spin): their time comes out of the wait.
            wait = m.spin(cpu, until, wait_fn)
            self.contended += 1
            self.wait_ns += wait
            m.lock_wait_ns += wait
        self.acquisitions += 1
        m.charge(cpu, fn, cost)

    def _until(self, t: float) -> float:
        """When a request at ``t`` may take the lock against the recorded hold."""
        if t >= self.claim_at:
            self.claim_at = t
            return self.free_at
        return 0.0  # earlier than the recorded holder's request: slips in before it

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, acquisitions={self.acquisitions})"


class SpinLock(_LockBase):
    """``spinlock_t``."""

    __slots__ = ()

    def lock(self, cpu: CPU) -> None:
        if self.owner is cpu and self.free_at <= cpu.clock:
            # fast path: free, and the line is already this CPU's (this CPU released it
            # last, so untimed runs always come here too)
            self.acquisitions += 1
            ns = self.machine.cost.lock_acquire
            cpu.clock += ns
            prof = cpu.cprof
            prof[self._fn] = prof.get(self._fn, 0.0) + ns
            return
        self._take(cpu, self._until(cpu.clock), self._fn, self._wait_fn)

    def trylock(self, cpu: CPU) -> bool:
        t = cpu.clock
        if self.machine.timed and self.free_at > t and t >= self.claim_at:
            return False
        self._take(cpu, self._until(t) if self.machine.timed else 0.0, self._fn, self._wait_fn)
        return True

    def unlock(self, cpu: CPU) -> None:
        if cpu.clock > self.free_at:
            self.free_at = cpu.clock


class Mutex(SpinLock):
    """``struct mutex``: waits sleep instead of spinning (same accounting)."""

    __slots__ = ()
    kind = "mutex_lock"


class RWLock(_LockBase):
    """``rwlock_t``: readers share, a writer excludes readers and writers.

    The writers' hold is ``claim_at``/``free_at``; the readers' (all current readers
    together) ``readers_claim_at``/``readers_free_at``.
    """

    __slots__ = ("readers_free_at", "readers_claim_at", "_read_fn", "_read_wait_fn", "_queue",
                 "_herd_ns")
    kind = "_write_lock"

    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(machine, name)
        self.readers_free_at = 0.0
        self.readers_claim_at = 0.0
        self._read_fn = "_read_lock"
        self._read_wait_fn = f"_read_lock ({name})"
        #: grant times of the writers queued (timed runs): who still spins at a time
        self._queue: deque[float] = deque()
        # x86 rwlock_t is unfair: at each release every spinning writer retries its
        # `lock subl` and, failing, its `lock addl` back -- two transfers of the lock's
        # line per spinner before the next writer is through. A transfer between two
        # CPUs picked at random costs the topology's mean (from CPU 0 to any other).
        self._herd_ns = 2.0 * machine.topology.mean_from_0

    def write_lock(self, cpu: CPU) -> None:
        t = cpu.clock
        until = self._until(t)
        if t >= self.readers_claim_at and self.readers_free_at > until:
            until = self.readers_free_at
        if until > t and self.machine.timed:
            q = self._queue
            while q and q[0] <= t:
                q.popleft()
            # Deviation: the spinners at this writer's grant are those queued behind
            # it, not yet known (their calls run later); the ones still queued ahead
            # of it now stand in for them (a stationary queue).
            until += len(q) * self._herd_ns
            q.append(until)
        self._take(cpu, until, self._fn, self._wait_fn)

    def write_unlock(self, cpu: CPU) -> None:
        if cpu.clock > self.free_at:
            self.free_at = cpu.clock

    def read_lock(self, cpu: CPU) -> None:
        t = cpu.clock
        until = self.free_at if t >= self.claim_at else 0.0
        if self.readers_free_at <= t:
            self.readers_claim_at = t  # a new group of readers
        elif t < self.readers_claim_at:
            self.readers_claim_at = t
        self._take(cpu, until, self._read_fn, self._read_wait_fn)

    def read_unlock(self, cpu: CPU) -> None:
        if cpu.clock > self.readers_free_at:
            self.readers_free_at = cpu.clock
