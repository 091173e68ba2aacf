"""The machine's topology (CostModel.levels) and the threadripper-3970x preset's fit."""

from __future__ import annotations

import pytest

from vmapsim.errors import ConfigError
from vmapsim.hw import cost
from vmapsim.hw.cost import CostModel, get_preset, topology_tables
from vmapsim.hw.locks import RWLock, SpinLock
from vmapsim.hw.machine import Machine
from vmapsim.sim import fit


def tr_machine(cpus: int = 64) -> Machine:
    return Machine(cpus, 1, 64, get_preset("threadripper-3970x"), None)


def test_threadripper_levels_are_smt_ccx_ccd_package() -> None:
    tr = get_preset("threadripper-3970x")
    assert [n for n, _ in tr.levels()] == [2, 8, 16, 64]
    assert tr.sockets * tr.cores_per_socket == 64 and tr.smt == 2
    smt, ccx, ccd, iod = (ns for _, ns in tr.levels())
    assert smt < ccx < ccd < iod
    # each level is the published one-way figure less the locked op it includes
    assert smt + cost.TR_LOCK_NS == pytest.approx(cost.TR_C2C_SMT_NS, abs=0.06)
    assert iod + cost.TR_LOCK_NS == pytest.approx(cost.TR_C2C_IOD_NS, abs=0.06)


def test_threadripper_transfer_by_where_the_cpus_sit() -> None:
    tr = get_preset("threadripper-3970x")
    smt, ccx, ccd, iod = (ns for _, ns in tr.levels())
    m = tr_machine()
    t = tr.transfer_ns
    # Linux numbering: CPU c and c + 32 are the two threads of core c
    assert t(0, 32, 64) == smt and t(5, 37, 64) == smt
    # cores 0-3 share CCX 0 (with their siblings 32-35), cores 4-7 are CCX 1 of CCD 0
    assert t(0, 3, 64) == ccx and t(0, 35, 64) == ccx and t(1, 2, 64) == ccx
    assert t(0, 4, 64) == ccd and t(3, 39, 64) == ccd and t(8, 15, 64) == ccd
    assert t(0, 8, 64) == iod and t(7, 8, 64) == iod and t(0, 63, 64) == iod
    assert t(4, 4, 64) == 0.0
    # the machine's tables say the same for every pair
    for a in m.cpus:
        for b in m.cpus:
            if a is not b:
                assert a.xfer[b.tgroup] == t(a.id, b.id, 64), (a.id, b.id)


def test_lock_handoff_pays_the_transfer_of_the_cpus_levels() -> None:
    m = tr_machine()
    c = m.cost
    _, ccx, _, iod = (ns for _, ns in c.levels())
    lock = SpinLock(m, "l")
    cpus = m.cpus

    def take(cpu_id: int) -> float:
        cpu = cpus[cpu_id]
        before = cpu.clock
        lock.lock(cpu)
        lock.unlock(cpu)
        return cpu.clock - before

    take(0)
    assert take(3) == pytest.approx(c.lock_acquire + ccx)  # same CCX
    assert take(40) == pytest.approx(c.lock_acquire + iod)  # CPU 40: core 8's sibling, CCD 1
    assert take(40) == pytest.approx(c.lock_acquire)  # the line is already here


def test_ack_queue_sums_each_targets_transfer() -> None:
    m = tr_machine()
    tr = m.cost
    for cpu in (m.cpus[0], m.cpus[13], m.cpus[63]):
        expect = sum(tr.transfer_ns(o.id, cpu.id, 64) for o in m.cpus if o is not cpu)
        assert m._ack_serial(cpu) == pytest.approx(expect)
    smt, ccx, ccd, iod = (ns for _, ns in tr.levels())
    # from CPU 0: 1 sibling, 6 more CPUs of its CCX, 8 of the other CCX, 48 elsewhere
    assert m._ack_serial(m.cpus[0]) == pytest.approx(smt + 6 * ccx + 8 * ccd + 48 * iod)


@pytest.mark.parametrize("preset", ["opteron-2008", "altix-2008", "modern-x86"])
@pytest.mark.parametrize("cpus", [1, 3, 8, 12, 64, 130])
def test_old_presets_keep_the_socket_rule(preset: str, cpus: int) -> None:
    c = get_preset(preset)
    assert c.topology is None
    per = c.cores_per_socket
    assert c.levels() == ((per, c.line_transfer), (per * c.sockets, c.line_transfer_remote))
    m = Machine(cpus, 1, 64, c, None)
    for a in m.cpus:
        for b in m.cpus:
            if a is not b:
                old = c.line_transfer if a.socket == b.socket else c.line_transfer_remote
                assert a.xfer[b.tgroup] == old
        # the acknowledgement sum as the old expression wrote it, exactly
        local = min(per, cpus - a.socket * per) - 1
        remote = cpus - 1 - local
        assert m._ack_serial(a) == local * c.line_transfer + remote * c.line_transfer_remote
    # the unfair rwlock's herd term: the old mix from CPU 0, exactly
    p = max(1, min(per, cpus))
    avg = ((p - 1) * c.line_transfer + (cpus - p) * c.line_transfer_remote) / (cpus - 1) if cpus > 1 else 0.0
    assert RWLock(m, "rw")._herd_ns == 2.0 * avg


def test_topology_is_checked_and_replace_keeps_it() -> None:
    with pytest.raises(ConfigError):
        CostModel(topology=((4, 10.0), (6, 20.0)))  # 6 is no multiple of 4
    with pytest.raises(ConfigError):
        CostModel(topology=())
    with pytest.raises(ConfigError):
        CostModel(smt=0)
    tr = get_preset("threadripper-3970x")
    assert tr.replace(call=1.0).levels() == tr.levels()
    # a changed socket constant moves the derived topology of an old preset
    o = get_preset("opteron-2008").replace(line_transfer_remote=200.0)
    assert o.levels()[1] == (8, 200.0)


def test_tables_for_a_machine_beyond_the_preset() -> None:
    # 130 CPUs on the 64-CPU preset: 65 cores; pairs with no common group pay the outer level
    tr = get_preset("threadripper-3970x")
    tabs = topology_tables(tr, 130)
    iod = tr.levels()[-1][1]
    assert tr.transfer_ns(0, 65, 130) == tr.levels()[0][1]  # siblings: 0 and 0 + 65
    assert tr.transfer_ns(0, 64, 130) == iod  # core 64 sits past the first package
    assert sum(tabs.ack) == pytest.approx(
        sum(tr.transfer_ns(a, b, 130) for a in range(130) for b in range(130)))


def test_fit_declares_two_free_constants_and_one_job_cells() -> None:
    for name, spec in fit.FITTABLE.items():
        model = get_preset(name)
        assert len(spec.free) == 2 and len(spec.cells) == 2
        for c in spec.cells:
            assert c.threads == 1
        for const in spec.free:
            assert isinstance(getattr(model, const), float)
    assert fit.FITTABLE["threadripper-3970x"].free == ("mem_access", "lock_acquire")
    assert [c.ns for c in fit.FITTABLE["threadripper-3970x"].cells] == [576.131, 555.889]


def test_fit_reproduces_both_one_job_cells() -> None:
    # few operations per cell (the weights then differ a little from the default run's)
    res = fit.solve("threadripper-3970x", ops={"6.1": 300, "6.9": 300})
    for cell, got in zip(fit.FITTABLE["threadripper-3970x"].cells, res.got, strict=True):
        assert got == pytest.approx(cell.ns, rel=1e-3), cell.design
    assert abs(res.det) > 1.0


def test_fit_is_general_and_recovers_known_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two cells of the 6.1 design alone (1 and 4 pages), their "published" figures made
    # by the model itself at chosen constants: the fit must find those constants again.
    truth = get_preset("threadripper-3970x").replace(pte_write=55.0, mem_access=9.0)
    cells = tuple(fit.Cell("6.1", "fix-size", pages, 0.0, "synthetic", ops=200) for pages in (1, 4))
    cells = tuple(fit.Cell(c.design, c.workload, c.pages, fit.cell_ns(truth, c), c.source, c.ops)
                  for c in cells)
    spec = fit.Fittable(cells=(cells[0], cells[1]), free=("pte_write", "mem_access"),
                        steps=(10.0, 10.0), digits=(3, 3), why="test")
    monkeypatch.setitem(fit.FITTABLE, "threadripper-3970x", spec)
    res = fit.solve("threadripper-3970x")
    assert res.values == {"pte_write": pytest.approx(55.0, abs=1e-3),
                          "mem_access": pytest.approx(9.0, abs=1e-3)}
    (a0, _), (a1, _) = res.weights
    assert a1 == pytest.approx(4 * a0)  # pte_write weighs per page mapped


def test_fit_refuses_a_preset_without_cells() -> None:
    with pytest.raises(ValueError):
        fit.solve("modern-x86")
    with pytest.raises(SystemExit):
        fit.main(["--preset", "modern-x86"])


def test_the_threadripper_preset_is_its_fit() -> None:
    values = fit.fit("threadripper-3970x")
    model = get_preset("threadripper-3970x")
    for name in fit.FITTABLE["threadripper-3970x"].free:
        assert getattr(model, name) == values[name], name
