"""The 6.x designs on the timing engine: the contention 6.9 later fixed shows on 6.1."""

from __future__ import annotations

from vmapsim.hw.locks import is_lock_wait
from vmapsim.sim.run import run


def test_61_at_64_cpus_waits_on_both_global_locks() -> None:
    r = run("6.1", 64, workload="fix-size", ops=150, cost="threadripper-3970x")
    busy = sum(ns for fn, ns in r.profile.items() if fn != "default_idle")
    waits = {fn: ns for fn, ns in r.profile.items() if is_lock_wait(fn)}
    assert waits.get("native_queued_spin_lock_slowpath (vmap_area_lock)", 0) > 0
    assert waits.get("native_queued_spin_lock_slowpath (free_vmap_area_lock)", 0) > 0
    assert sum(waits.values()) / busy > 0.5  # most of the non-idle time is spinning


def test_69_spreads_the_busy_lock_over_nodes() -> None:
    r61 = run("6.1", 32, workload="fix-size", ops=150, cost="threadripper-3970x")
    r69 = run("6.9", 32, workload="fix-size", ops=150, cost="threadripper-3970x")
    assert not any("(vmap_area_lock)" in fn for fn in r69.profile)  # no global busy tree
    assert r69.lock_wait_per_op < r61.lock_wait_per_op / 2
    assert r69.ns_per_op < r61.ns_per_op
