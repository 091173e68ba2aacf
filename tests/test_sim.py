"""The timing engine: determinism, lock waits, IPIs (busy vs idle receivers), the profiles' story."""

from __future__ import annotations

import pytest

from vmapsim import Kernel
from vmapsim.errors import ConfigError
from vmapsim.hw.cost import CostModel, get_preset
from vmapsim.hw.locks import RWLock, SpinLock, is_lock_wait
from vmapsim.hw.machine import Machine
from vmapsim.sim import Engine, run
from vmapsim.sim.fit import FREE, fit

IPI_FNS = {"smp_call_function", "smp_call_function_interrupt", "flush_tlb_kernel_range", "flush_tlb_all"}


def timed_machine(cpus: int = 8) -> Machine:
    m = Machine(cpus, 1, 64, CostModel(), None)
    m.timed = True
    for c in m.cpus:
        m.set_idle(c, False)
    return m


# -- the engine -----------------------------------------------------------------------------
def test_engine_always_steps_the_cpu_furthest_behind() -> None:
    k = Kernel(cpus=3, mem_pages=1024)
    m = k.machine
    order: list[tuple[int, float]] = []
    durations = {0: 300.0, 1: 1000.0, 2: 50.0}

    def proc(cpu_id: int):  # type: ignore[no-untyped-def]
        cpu = m.cpus[cpu_id]
        for _ in range(5):
            order.append((cpu_id, cpu.clock))
            assert k.this_cpu is cpu  # the engine switched smp_processor_id()
            cpu.clock += durations[cpu_id]
            yield

    eng = Engine(k)
    for c in range(3):
        eng.process(c, proc(c))
    eng.run()
    assert len(order) == 15
    clocks = [t for _, t in order]
    assert clocks == sorted(clocks)  # every step starts no earlier than the one before
    assert [c for c, _ in order[:3]] == [0, 1, 2]  # ties broken by the order of creation
    assert eng.steps == 15


def test_engine_callbacks_and_until() -> None:
    k = Kernel(cpus=1, mem_pages=1024)
    seen: list[float] = []
    eng = Engine(k)
    eng.call_at(500.0, lambda: seen.append(500.0))
    eng.call_at(100.0, lambda: seen.append(100.0))
    eng.call_at(900.0, lambda: seen.append(900.0))
    eng.run(until=600.0)
    assert seen == [100.0, 500.0]
    eng.run()
    assert seen == [100.0, 500.0, 900.0]


def test_run_is_deterministic_for_a_seed() -> None:
    a = run("legacy", 4, ops=60, seed=11)
    b = run("legacy", 4, ops=60, seed=11)
    assert a.ns_per_op == b.ns_per_op and a.p99_ns == b.p99_ns
    assert a.profile == b.profile and a.steps == b.steps
    c = run("rewrite", 3, ops=80, seed=5)
    d = run("rewrite", 3, ops=80, seed=5)
    assert c.profile == d.profile and c.makespan_ns == d.makespan_ns


def test_run_restores_the_machine_and_checks() -> None:
    r = run("rewrite", 2, ops=300, check=True)
    assert r.ops == 600 and r.ops_per_thread == 300 and r.cpus == 8
    r = run("legacy", 2, cpus=2, ops=30, check=True)
    assert r.cpus == 2 and r.ipis_per_op == pytest.approx(1.0)


def test_run_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="threads"):
        run("legacy", 0)
    with pytest.raises(ConfigError, match="cpus"):
        run("legacy", 4, cpus=2)
    with pytest.raises(ConfigError, match="workload"):
        run("legacy", 1, workload="nope")
    with pytest.raises(ConfigError, match="design"):
        run("nope", 1, ops=1)
    with pytest.raises(ConfigError, match="cost preset"):
        run("legacy", 1, cost="pdp-11")
    with pytest.raises(TypeError):
        run("legacy", "2")  # type: ignore[arg-type]


# -- locks in simulated time -------------------------------------------------------------------
def test_a_cpu_waits_for_the_holder_and_the_wait_is_named_after_the_lock() -> None:
    m = timed_machine()
    lock = SpinLock(m, "vmap_area_lock")
    a, b, c = m.cpus[0], m.cpus[1], m.cpus[2]
    a.clock, b.clock, c.clock = 1000.0, 1500.0, 500.0
    lock.lock(a)
    a.clock += 1000.0
    lock.unlock(a)  # held [1000, ~2000]
    lock.lock(b)  # asks at 1500: waits for the release
    assert b.prof["_spin_lock (vmap_area_lock)"] == pytest.approx(a.clock - 1500.0)
    lock.unlock(b)
    # c asked at 500, before a did: its request came first in simulated time
    lock.lock(c)
    assert "_spin_lock (vmap_area_lock)" not in c.prof
    assert m.lock_wait_ns == pytest.approx(lock.wait_ns) and lock.contended == 1


def test_queued_writers_wait_in_order_and_pay_the_herd() -> None:
    m = timed_machine()
    rw = RWLock(m, "vmlist_lock")
    cpus = m.cpus[:4]
    for i, c in enumerate(cpus):
        c.clock = 100.0 * i
    grants = []
    for c in cpus:
        rw.write_lock(c)
        grants.append(c.clock)
        c.clock += 1000.0
        rw.write_unlock(c)
    assert grants == sorted(grants)
    # each writer's hold starts after the previous release, later by more transfers
    # the more writers are still queued ahead
    gaps = [grants[i + 1] - (grants[i] + 1000.0) for i in range(3)]
    assert gaps[0] < gaps[1] < gaps[2]
    assert all(c.prof["_write_lock (vmlist_lock)"] > 0 for c in cpus[1:])


def test_legacy_contention_shows_as_vmlist_lock_wait() -> None:
    one = run("legacy", 1, ops=100)
    four = run("legacy", 4, ops=100)
    assert one.lock_wait_per_op == 0.0 and "_write_lock (vmlist_lock)" not in one.profile
    assert four.lock_wait_per_op > 10_000
    assert four.profile["_write_lock (vmlist_lock)"] == pytest.approx(four.lock_wait_per_op * four.ops)
    assert four.ns_per_op > 2 * one.ns_per_op


# -- IPIs ---------------------------------------------------------------------------------------
def test_legacy_ipi_accounting_per_op() -> None:
    r = run("legacy", 2, cpus=8, ops=50)
    assert r.flushes == r.ops
    assert r.ipis_per_op == pytest.approx(7.0)
    assert r.ipis_received_per_op == pytest.approx(7.0)
    assert r.purges == 0


def test_idle_targets_cost_the_sender_the_wake_up() -> None:
    c = get_preset("opteron-2008")
    m = timed_machine(4)
    sender = m.cpus[0]
    m.flush_tlb_all(sender)
    busy_cost = sender.prof["smp_call_function"]
    # 3 targets on the sender's socket: their acknowledgements queue, a line transfer each
    assert busy_cost == pytest.approx(c.ipi_call_setup + 3 * c.ipi_send + c.ipi_handle + c.flush_all_local
                                      + 3 * c.line_transfer)
    m.set_idle(m.cpus[3], True)
    m.flush_tlb_all(sender)
    assert sender.prof["smp_call_function"] - busy_cost == pytest.approx(busy_cost + c.ipi_idle_wakeup)


def test_busy_receiver_pays_its_handler_once_its_clock_reaches_the_send_time() -> None:
    c = get_preset("opteron-2008")
    m = timed_machine(3)
    sender, busy, idle = m.cpus
    m.set_idle(idle, True)
    sender.clock = 10_000.0
    m.flush_tlb_all(sender)
    busy.clock = 5_000.0  # still before the IPI was sent
    m.sync(busy)
    assert busy.ipis_received == 0 and busy.clock == 5_000.0
    busy.clock = 20_000.0
    m.sync(busy)
    assert busy.ipis_received == 1
    assert busy.prof["smp_call_function_interrupt"] == pytest.approx(c.ipi_handle + c.flush_all_local)
    m.sync(idle)
    assert idle.ipis_received == 1 and idle.clock == 0.0  # idle: out of idle time, uncharged


def test_an_ipi_taken_while_spinning_comes_out_of_the_wait() -> None:
    c = get_preset("opteron-2008")
    m = timed_machine(3)
    holder, spinner, _ = m.cpus
    lock = SpinLock(m, "x")
    lock.lock(holder)
    m.flush_tlb_all(holder)  # IPIs out at ~holder's clock, while it holds the lock
    holder.clock += 5000.0
    lock.unlock(holder)
    spinner.clock = 1.0
    lock.lock(spinner)
    handler = c.ipi_handle + c.flush_all_local
    assert spinner.prof["smp_call_function_interrupt"] == pytest.approx(handler)
    assert spinner.prof["_spin_lock (x)"] == pytest.approx(holder.clock - 1.0 - handler)
    # the spinner is through at the release: the handler did not delay it
    assert spinner.clock == pytest.approx(holder.clock + c.lock_acquire + c.line_transfer)


def test_a_global_flush_touches_no_other_cpu() -> None:
    m = timed_machine(1024)
    m.flush_tlb_all(m.cpus[0])
    assert m.ipis == 1023
    assert all(cpu.tlb_gen == cpu.ipi_gen == 0 for cpu in m.cpus[1:])  # delivered lazily, in sync()


# -- the profiles' story and the fit --------------------------------------------------------------
def top(profile: dict[str, float], n: int) -> list[str]:
    return [fn for fn, _ in sorted(profile.items(), key=lambda kv: -kv[1])[:n]]


def test_legacy_profile_is_topped_by_the_rwlock_and_ipis() -> None:
    r = run("legacy", 8, ops=120)
    first = top(r.profile, 3)
    assert first[0] == "_write_lock (vmlist_lock)"
    assert set(first[1:]) & IPI_FNS
    total = sum(r.profile.values())
    wait_ipi = sum(ns for fn, ns in r.profile.items() if is_lock_wait(fn) or fn in IPI_FNS)
    assert wait_ipi / total > 0.5


def test_rewrite_profile_has_no_lock_wait_or_ipi_near_the_top() -> None:
    r = run("rewrite", 8, ops=1500)  # enough for a lazy purge (and its IPIs) to happen
    assert r.purges >= 1 and r.ipis_per_op > 0
    first = top(r.profile, 5)
    assert not [fn for fn in first if is_lock_wait(fn) or fn in IPI_FNS]
    total = sum(r.profile.values())
    wait_ipi = sum(ns for fn, ns in r.profile.items() if is_lock_wait(fn) or fn in IPI_FNS)
    assert wait_ipi / total < 0.05


def test_rewrite_scales_and_legacy_does_not() -> None:
    r1, r8 = run("rewrite", 1, ops=400), run("rewrite", 8, ops=400)
    l1, l8 = run("legacy", 1, ops=60), run("legacy", 8, ops=60)
    assert r8.ns_per_op < 1.25 * r1.ns_per_op
    assert l8.ns_per_op > 2.5 * l1.ns_per_op


@pytest.mark.slow
def test_the_preset_is_the_fit_of_the_one_thread_cells() -> None:
    values = fit("opteron-2008")
    model = get_preset("opteron-2008")
    for name in FREE:
        assert getattr(model, name) == pytest.approx(values[name], abs=1e-9), name
    # and with it the one-thread cells land on the seed's figures
    assert run("rewrite", 1).ns_per_op == pytest.approx(2900, rel=1e-3)
    assert run("legacy", 1).ns_per_op == pytest.approx(14700, rel=1e-3)
