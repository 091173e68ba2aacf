"""The simulated machine: page table, TLBs, flushes and IPIs, cost charging."""

from __future__ import annotations

import pytest

from vmapsim import PAGE_SHIFT, PAGE_SIZE, ConfigError, CostModel, Kernel, PageFault
from vmapsim.hw.machine import Machine

BASE = 0xFFFFC20000000000


def machine(cpus: int = 4, tlb_size: int | None = None) -> Machine:
    return Machine(cpus, 1, 1024, CostModel(), tlb_size)


def pages(m: Machine, n: int) -> list:
    return [m.mem.alloc_page(0) for _ in range(n)]


def test_set_ptes_maps_and_charges() -> None:
    m = machine()
    cpu = m.cpus[0]
    ps = pages(m, 3)
    assert m.set_ptes(cpu, "vmap_page_range", BASE, ps, 1, 1) == 0
    assert [m.pte_at(BASE + i * PAGE_SIZE) for i in range(3)] == ps
    assert set(m.pte) == {(BASE >> PAGE_SHIFT) + i for i in range(3)}  # keyed by page number
    assert m.pte_writes == 3
    assert cpu.clock == pytest.approx(3 * m.cost.pte_write)
    assert cpu.prof["vmap_page_range"] == pytest.approx(3 * m.cost.pte_write)
    assert not m.pte_prot  # default protection is not stored


def test_set_ptes_records_non_default_prot() -> None:
    m = machine()
    ps = pages(m, 2)
    m.set_ptes(m.cpus[0], "f", BASE, ps, 7, 1)
    assert m.pte_prot == {BASE >> PAGE_SHIFT: 7, (BASE >> PAGE_SHIFT) + 1: 7}
    m.clear_ptes(m.cpus[0], "g", BASE, BASE + 2 * PAGE_SIZE)
    assert not m.pte_prot


def test_set_ptes_warns_on_present_pte() -> None:
    m = machine()
    cpu = m.cpus[0]
    ps = pages(m, 4)
    m.set_ptes(cpu, "f", BASE + 2 * PAGE_SIZE, ps[:1], 1, 1)
    err = m.set_ptes(cpu, "f", BASE, ps[1:4], 1, 1)
    assert err == -16  # -EBUSY
    assert any("pte already present" in w and f"{BASE + 2 * PAGE_SIZE:#x}" in w for w in m.warnings)
    # the two pages before the present PTE were mapped, the present one left alone
    assert m.pte_at(BASE) is ps[1] and m.pte_at(BASE + PAGE_SIZE) is ps[2]
    assert m.pte_at(BASE + 2 * PAGE_SIZE) is ps[0]
    assert m.pte_writes == 3


def test_clear_ptes_counts_only_present() -> None:
    m = machine()
    cpu = m.cpus[1]
    m.set_ptes(cpu, "f", BASE, pages(m, 2), 1, 1)
    before = cpu.clock
    n = m.clear_ptes(cpu, "vunmap_page_range", BASE, BASE + 5 * PAGE_SIZE)
    assert n == 2 and m.pte_clears == 2 and not m.pte
    assert cpu.clock - before == pytest.approx(5 * m.cost.pte_clear)


def test_translate_fills_tlb_and_counts_misses() -> None:
    m = machine()
    cpu = m.cpus[0]
    ps = pages(m, 1)
    m.set_ptes(cpu, "f", BASE, ps, 1, 1)
    page, hit = m.translate(cpu, BASE)
    assert page is ps[0] and not hit
    assert m.tlb_misses == 1 and cpu.tlb_misses == 1
    page, hit = m.translate(cpu, BASE)
    assert page is ps[0] and hit and m.tlb_misses == 1
    # a PTE cleared without a flush is still reached through the TLB (the lazy-unmap hazard)
    m.clear_ptes(cpu, "f", BASE, BASE + PAGE_SIZE)
    assert m.translate(cpu, BASE) == (ps[0], True)
    # another CPU misses and faults
    with pytest.raises(PageFault, match=f"paging request at {BASE:016x}$"):  # %p
        m.translate(m.cpus[1], BASE)
    assert m.tlb_misses == 2


def test_access_pages_fill_miss_and_fault() -> None:
    m = machine()
    cpu = m.cpus[2]
    ps = pages(m, 3)
    m.set_ptes(cpu, "f", BASE, ps, 1, 1)
    assert m.access_pages(cpu, BASE, 3) == ps
    assert m.tlb_misses == 3 and set(cpu.tlb) == {(BASE >> PAGE_SHIFT) + i for i in range(3)}
    assert m.access_pages(cpu, BASE, 3) == ps
    assert m.tlb_misses == 3
    with pytest.raises(PageFault, match=f"paging request at {BASE + 3 * PAGE_SIZE:016x}$"):
        m.access_pages(cpu, BASE, 4)


def test_global_flush_sends_ipis_and_drops_other_tlbs() -> None:
    k = Kernel(cpus=4, mem_pages=1024)
    a = k.vmalloc(PAGE_SIZE)
    assert a is not None
    for c in range(4):
        with k.on_cpu(c):
            k.touch(a, 1)
    assert all(k.tlb_entries(c) == {a} for c in range(4))
    m = k.machine
    m.flush_tlb_all(m.cpus[1])
    assert m.ipis == 3 and m.tlb_flushes == 1
    assert all(k.tlb_entries(c) == set() for c in range(4))
    assert [cpu.ipis_received for cpu in m.cpus] == [1, 0, 1, 1]
    m.flush_tlb_all(m.cpus[0])
    assert m.ipis == 6 and m.tlb_flushes == 2
    assert k.stats["ipis"] == 6 and k.stats["tlb_flushes"] == 2


def test_acknowledgements_serialise_per_target_and_cost_more_across_sockets() -> None:
    c = machine(cpus=1).cost
    small, big = machine(cpus=4), machine(cpus=8)  # one socket; two sockets of 4
    assert small._ack_serial(small.cpus[0]) == pytest.approx(3 * c.line_transfer)
    assert big._ack_serial(big.cpus[0]) == pytest.approx(3 * c.line_transfer + 4 * c.line_transfer_remote)
    assert big._ack_serial(big.cpus[5]) == big._ack_serial(big.cpus[0])


def test_one_cpu_flush_sends_no_ipi() -> None:
    m = machine(cpus=1)
    m.flush_tlb_all(m.cpus[0])
    assert m.ipis == 0 and m.tlb_flushes == 1


def test_flush_costs_the_sender_and_busy_receivers() -> None:
    m = machine(cpus=3)
    c = m.cost
    sender, busy, idle = m.cpus
    m.set_idle(busy, False)
    m.set_idle(sender, False)
    m.flush_tlb_all(sender)
    # sender: local flush + call setup + 2 ICR writes + wait (an idle target wakes up);
    # the 2 acknowledgements queue on the call data's lock line: both targets share
    # the sender's socket here (4 cores per socket), one line transfer each
    expect = c.flush_all_local + c.ipi_call_setup + 2 * c.ipi_send + c.ipi_handle + c.flush_all_local
    expect += c.ipi_idle_wakeup + 2 * c.line_transfer
    assert sender.clock == pytest.approx(expect)
    m.sync(busy)
    m.sync(idle)
    assert busy.clock == pytest.approx(c.ipi_handle + c.flush_all_local)
    assert idle.clock == 0  # an idle CPU's handler time is not charged
    assert busy.ipis_received == idle.ipis_received == 1


def test_flush_tlb_one_is_local() -> None:
    m = machine(cpus=2)
    ps = pages(m, 2)
    m.set_ptes(m.cpus[0], "f", BASE, ps, 1, 1)
    for cpu in m.cpus:
        m.access_pages(cpu, BASE, 2)
    m.flush_tlb_one(m.cpus[0], "f", BASE)
    assert set(m.cpus[0].tlb) == {(BASE >> PAGE_SHIFT) + 1}
    assert len(m.cpus[1].tlb) == 2
    assert m.ipis == 0 and m.local_flushes == 1


@pytest.mark.parametrize("via", ["translate", "access_pages"])
def test_tlb_size_fifo_eviction(via: str) -> None:
    m = machine(cpus=1, tlb_size=2)
    cpu = m.cpus[0]
    ps = pages(m, 3)
    m.set_ptes(cpu, "f", BASE, ps, 1, 1)
    addrs = [BASE + i * PAGE_SIZE for i in range(3)]
    for a in addrs:
        if via == "translate":
            m.translate(cpu, a)
        else:
            m.access_pages(cpu, a, 1)
    vpns = [a >> PAGE_SHIFT for a in addrs]
    assert list(cpu.tlb) == vpns[1:]  # the oldest fill went first
    m.translate(cpu, addrs[1])  # a hit does not refresh FIFO order
    m.translate(cpu, addrs[0])
    assert list(cpu.tlb) == [vpns[2], vpns[0]]
    assert m.tlb_misses == 4


def test_kernel_tlb_size_bounds_tlb_entries() -> None:
    k = Kernel(cpus=1, mem_pages=1024, tlb_size=4)
    a = k.vmalloc(10 * PAGE_SIZE)
    assert a is not None
    k.touch(a, 10)
    assert k.tlb_entries(0) == {a + i * PAGE_SIZE for i in range(6, 10)}
    k.check()


@pytest.mark.parametrize(
    ("kw", "exc"),
    [({"cpus": 0}, ConfigError), ({"cpus": 1025}, ConfigError), ({"cpus": "2"}, TypeError),
     ({"tlb_size": 0}, ConfigError)],
)
def test_bad_machine_config(kw: dict, exc: type[Exception]) -> None:
    args = {"cpus": 2, "nodes": 1, "mem_pages": 64, "cost": CostModel(), "tlb_size": None} | kw
    with pytest.raises(exc):
        Machine(**args)


def test_cpus_are_spread_over_nodes_and_sockets() -> None:
    m = Machine(8, 2, 1024, CostModel(), None)
    assert [c.node for c in m.cpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [c.socket for c in m.cpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert Machine(1024, 1, 1024, CostModel(), None).ncpus == 1024


def test_warn_goes_to_warnings() -> None:
    m = machine()
    m.warn("hello")
    assert m.warnings == ["hello"]
