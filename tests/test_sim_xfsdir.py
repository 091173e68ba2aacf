"""The xfsdir workload (the seed's XFS large-directory case) on the timing engine."""

from __future__ import annotations

import pytest

from vmapsim.cli import main
from vmapsim.hw.cost import get_preset
from vmapsim.hw.locks import is_lock_wait
from vmapsim.sim import run
from vmapsim.workloads import xfsdir

IPI_FNS = {"smp_call_function", "smp_call_function_interrupt", "flush_tlb_kernel_range"}


def lock_ipi_share(profile: dict[str, float]) -> float:
    total = sum(profile.values())
    return sum(ns for fn, ns in profile.items() if is_lock_wait(fn) or fn in IPI_FNS) / total


def test_buffers_are_cached_then_unmapped_in_fifo_order() -> None:
    r = run("rewrite", 2, pages=16, ops=40, workload="xfsdir", other_ns=1000.0, check=True)
    assert r.ops == 80
    # 40 maps per CPU, the last LIVE_BUFFERS stay mapped: 16-page vm_map_ram each
    assert r.profile["vmap_page_range"] == pytest.approx(80 * 16 * get_preset("opteron-2008").pte_write)
    assert r.profile[xfsdir.OTHER_FN] > 0


def test_other_work_is_seeded_and_bounded() -> None:
    a = run("legacy", 2, pages=16, ops=20, workload="xfsdir", other_ns=100_000.0, seed=4)
    b = run("legacy", 2, pages=16, ops=20, workload="xfsdir", other_ns=100_000.0, seed=4)
    assert a.profile == b.profile
    other = a.profile[xfsdir.OTHER_FN] / a.ops
    assert 50_000 <= other <= 150_000


def test_64_cpu_profiles_tell_the_story() -> None:
    old = run("legacy", 64, pages=16, ops=40, workload="xfsdir")
    new = run("rewrite", 64, pages=16, ops=40, workload="xfsdir")
    assert lock_ipi_share(new.profile) < 0.05
    first = sorted(old.profile.items(), key=lambda kv: -kv[1])[:2]
    assert "_write_lock (vmlist_lock)" in [fn for fn, _ in first]
    assert lock_ipi_share(old.profile) > 10 * lock_ipi_share(new.profile)
    assert old.ns_per_op > new.ns_per_op


def test_profile_command_prints_the_seed_beside(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--workload", "xfsdir", "--threads", "8", "--ops", "20", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "xfsdir" in out and "seed's before profile" in out and "59.1%" in out


@pytest.mark.slow
def test_default_other_work_is_the_fit_of_the_after_profile() -> None:
    assert xfsdir.fit_other_ns() == xfsdir.DEFAULT_OTHER_NS
