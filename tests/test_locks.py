"""Lock objects: acquisition cost, cache-line transfers, timed waits; the mm code takes them."""

from __future__ import annotations

import pytest

from vmapsim import PAGE_SIZE, CostModel, Kernel
from vmapsim.hw.locks import Mutex, RWLock, SpinLock
from vmapsim.hw.machine import Machine


def machine(cpus: int = 8) -> Machine:
    return Machine(cpus, 1, 64, CostModel(cores_per_socket=4), None)


def test_spinlock_cost_depends_on_the_last_owner() -> None:
    m = machine()
    c = m.cost
    lock = SpinLock(m, "test_lock")
    c0, c1, c5 = m.cpus[0], m.cpus[1], m.cpus[5]
    lock.lock(c0)
    lock.unlock(c0)
    assert c0.clock == pytest.approx(c.lock_acquire)  # first touch: no transfer
    lock.lock(c0)
    lock.unlock(c0)
    assert c0.clock == pytest.approx(2 * c.lock_acquire)  # fast path
    lock.lock(c1)
    lock.unlock(c1)
    assert c1.clock == pytest.approx(c.lock_acquire + c.line_transfer)  # same socket
    lock.lock(c5)
    lock.unlock(c5)
    assert c5.clock == pytest.approx(c.lock_acquire + c.line_transfer_remote)  # other socket
    assert lock.acquisitions == 4 and lock.contended == 0
    assert c5.prof["_spin_lock"] == pytest.approx(c5.clock)


def test_timed_spinlock_waits_for_the_holder() -> None:
    m = machine()
    m.timed = True
    lock = SpinLock(m, "vmap_area_lock")
    a, b = m.cpus[0], m.cpus[1]
    lock.lock(a)
    a.clock += 1000  # hold it for 1 us
    lock.unlock(a)
    assert not lock.trylock(b)  # b's clock is before the release
    lock.lock(b)
    assert lock.contended == 1
    assert lock.wait_ns == pytest.approx(a.clock)  # b started at 0 and spun until the release
    assert "_spin_lock (vmap_area_lock)" in b.prof
    assert b.clock == pytest.approx(a.clock + m.cost.lock_acquire + m.cost.line_transfer)


def test_untimed_locks_never_wait() -> None:
    m = machine()
    lock = SpinLock(m, "x")
    a, b = m.cpus[0], m.cpus[1]
    lock.lock(a)
    a.clock += 10_000
    lock.unlock(a)
    assert lock.trylock(b)
    assert b.clock < 1000 and lock.contended == 0


def test_rwlock_writer_waits_for_readers_and_readers_for_writer() -> None:
    m = machine()
    m.timed = True
    rw = RWLock(m, "vmlist_lock")
    r, w, r2 = m.cpus[0], m.cpus[1], m.cpus[2]
    rw.read_lock(r)
    r.clock += 500
    rw.read_unlock(r)
    rw.write_lock(w)
    assert w.clock >= r.clock
    assert "_write_lock (vmlist_lock)" in w.prof
    w.clock += 500
    rw.write_unlock(w)
    rw.read_lock(r2)
    assert r2.clock >= w.clock
    assert "_read_lock (vmlist_lock)" in r2.prof
    assert rw.contended == 2


def test_mutex_is_named_mutex_lock() -> None:
    m = machine()
    mu = Mutex(m, "purge")
    mu.lock(m.cpus[0])
    assert "mutex_lock" in m.cpus[0].prof


def test_mm_code_takes_the_kernel_locks() -> None:
    k = Kernel(cpus=2, mem_pages=4096, design="rewrite")
    before = k.vmap_area_lock.acquisitions
    a = k.vmalloc(PAGE_SIZE)
    assert a is not None
    assert k.vmap_area_lock.acquisitions > before
    assert k.vmlist_lock.acquisitions >= 1
    k.vfree(a)
    p0 = k.purge_lock.acquisitions
    k.vm_unmap_aliases()
    assert k.purge_lock.acquisitions == p0 + 1
    pages = [k.alloc_page() for _ in range(2)]
    with k.on_cpu(1):
        q0 = k.vmap_block_queue[1].lock.acquisitions
        b = k.vm_map_ram(pages, 2)  # type: ignore[arg-type]
        assert b is not None
        assert k.vmap_block_queue[1].lock.acquisitions > q0
        assert k.vmap_block_queue[0].lock.acquisitions == 0
        k.vm_unmap_ram(b, 2)
    vb = k.vmap_block_tree[k.addr_to_vb_idx(b)]
    assert vb.lock.acquisitions >= 2  # vb_alloc and vb_free
    v = k.vmlist_lock.acquisitions
    k.vmallocinfo()
    assert k.vmlist_lock.acquisitions == v + 1
