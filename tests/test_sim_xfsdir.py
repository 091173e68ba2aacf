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
    # the workload's default machine is the seed's 64-CPU Altix
    assert r.cost == xfsdir.DEFAULT_COST == "altix-2008"
    assert r.profile["vmap_page_range"] == pytest.approx(80 * 16 * get_preset("altix-2008").pte_write)
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


def test_64_cpu_altix_old_design_spends_over_half_its_time_on_vmlist_lock_and_ipis() -> None:
    # the figure, a prediction of the derived altix-2008 constants (nothing fitted
    # to the seed's before profile): over half on the old design, under 5% on the rewrite
    old = run("legacy", 64, pages=16, ops=60, workload="xfsdir")
    new = run("rewrite", 64, pages=16, ops=60, workload="xfsdir")
    assert old.cost == new.cost == "altix-2008" and old.cpus == 64
    assert lock_ipi_share(old.profile) > 0.5
    assert lock_ipi_share(new.profile) < 0.05
    assert old.ns_per_op > 2 * new.ns_per_op


def test_other_work_follows_the_preset() -> None:
    alt = run("rewrite", 2, pages=16, ops=10, workload="xfsdir", seed=1)
    opt = run("rewrite", 2, pages=16, ops=10, workload="xfsdir", seed=1, cost="opteron-2008")
    per = {r.cost: r.profile[xfsdir.OTHER_FN] / r.ops for r in (alt, opt)}
    for name, ns in per.items():
        assert 0.5 * xfsdir.DEFAULT_OTHER_NS[name] <= ns <= 1.5 * xfsdir.DEFAULT_OTHER_NS[name]


def test_constants_without_a_stored_value_are_fitted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def fake_fit(cost: object) -> float:
        calls.append(getattr(cost, "pte_write", 0.0))
        return 123_000.0 + len(calls)

    monkeypatch.setattr(xfsdir, "fit_other_ns", lambda **kw: fake_fit(kw["cost"]))
    monkeypatch.setattr(xfsdir, "_fitted", {})
    model = get_preset("modern-x86")
    assert xfsdir.default_other_ns(model) == 123_001.0
    assert xfsdir.default_other_ns(get_preset("modern-x86")) == 123_001.0  # cached
    # a changed preset keeps its name but not its stored fit
    changed = get_preset("altix-2008").replace(pte_write=100.0)
    assert xfsdir.default_other_ns(changed) == 123_002.0
    assert xfsdir.default_other_ns(get_preset("altix-2008")) == xfsdir.DEFAULT_OTHER_NS["altix-2008"]
    assert calls == [model.pte_write, 100.0]


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(xfsdir.DEFAULT_OTHER_NS))
def test_default_other_work_is_the_fit_of_the_after_profile(preset: str) -> None:
    assert xfsdir.fit_other_ns(cost=preset) == xfsdir.DEFAULT_OTHER_NS[preset]


def test_profile_defaults_to_the_workloads_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--workload", "xfsdir", "--threads", "2", "--ops", "5", "--top", "1"]) == 0
    assert "cost altix-2008" in capsys.readouterr().out
    assert main(["profile", "--threads", "2", "--ops", "5", "--top", "1"]) == 0
    assert "cost opteron-2008" in capsys.readouterr().out
    assert main(["profile", "--workload", "xfsdir", "--threads", "2", "--ops", "5", "--top", "1",
                 "--cost", "opteron-2008"]) == 0
    assert "cost opteron-2008" in capsys.readouterr().out


def test_the_one_thread_fit_refuses_presets_it_has_no_cells_for() -> None:
    from vmapsim.sim.fit import main as fit_main

    with pytest.raises(SystemExit) as e:
        fit_main(["--preset", "altix-2008"])
    assert e.value.code == 2


def test_altix_constants_follow_their_derivation() -> None:
    from vmapsim.hw import cost

    a, o = get_preset("altix-2008"), get_preset("opteron-2008")
    assert a.sockets * a.cores_per_socket == 64
    leg = cost.ALTIX_MEAN_ROUTERS * cost.ALTIX_ROUTER_NS
    assert a.line_transfer_remote == cost.ALTIX_LOCAL_MEM_NS + 3 * leg
    assert a.ipi_send == cost.ALTIX_LOCAL_MEM_NS + 2 * leg
    # CPU-bound work: the same cycles at the slower clock
    assert a.pte_write == pytest.approx(o.pte_write * o.ghz / a.ghz, abs=0.05)
    assert a.ipi_handle == pytest.approx(o.ipi_handle * o.ghz / a.ghz, abs=0.05)
