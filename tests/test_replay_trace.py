"""ftrace traces: parsing both forms, replaying real captures, round trips, bad lines."""

from __future__ import annotations

import json
import os

import pytest

from vmapsim.cli import main
from vmapsim.mm import designs
from vmapsim.workloads import InputFormatError
from vmapsim.workloads import replay as rp
from vmapsim.workloads import trace as tr
from vmapsim.workloads import vmallocinfo as vi

REAL = os.path.join(os.path.dirname(__file__), "fixtures", "real-linux-6.1")


def _real(name: str) -> tuple[tr.Trace, vi.Snapshot, vi.Snapshot]:
    d = os.path.join(REAL, name)
    return (tr.read_trace(os.path.join(d, "trace.txt")),
            vi.read_vmallocinfo(os.path.join(d, "vmallocinfo-before.txt")),
            vi.read_vmallocinfo(os.path.join(d, "vmallocinfo-after.txt")))


def _count(name: str, event: str) -> int:
    with open(os.path.join(REAL, name, "trace.txt")) as f:
        return sum(f" {event}: (" in line for line in f)


@pytest.fixture(scope="module")
def xfs() -> tuple[tr.Trace, vi.Snapshot, vi.Snapshot]:
    return _real("xfsdir")


@pytest.mark.parametrize("name", ["forkstorm", "xfsdir"])
def test_real_trace_parses_into_paired_operations(name: str) -> None:
    t = tr.read_trace(os.path.join(REAL, name, "trace.txt"))
    assert not t.bad and t.forms == {"kprobe"} and t.nr_cpus == 2 and not t.unfinished
    kinds = [op.kind for op in t.ops]
    nested = sum(1 for op in t.ops if op.kind == tr.MAP_RAM and op.block is not None)
    assert kinds.count(tr.ALLOC) + nested == _count(name, "alloc") == _count(name, "alloc_ret")
    assert kinds.count(tr.MAP_RAM) == _count(name, "map_ram") == _count(name, "map_ram_ret")
    assert kinds.count(tr.FREE) == _count(name, "free_noflush")
    assert kinds.count(tr.UNMAP_RAM) == _count(name, "unmap_ram")
    assert kinds.count(tr.VFREE) == _count(name, "vfree")
    with open(os.path.join(REAL, name, "trace.txt")) as f:
        first = next(line for line in f if " alloc: (" in line)
    assert t.vstart == int(first.split("vstart=")[1].split()[0], 16)


def test_xfsdir_blocks_are_1mib(xfs: tuple[tr.Trace, vi.Snapshot, vi.Snapshot]) -> None:
    assert xfs[0].block_size() == 1 << 20


def test_real_forkstorm_replays_at_the_kernels_addresses_on_2628() -> None:
    t, before, after = _real("forkstorm")
    k, res = rp.replay_trace(t, "2.6.28", before=before, after=after)
    assert res.mode == rp.FREE_RUN and not res.following_purges  # 2.6.28 purges by itself
    assert res.check_ok and not res.errors
    assert res.alloc_compared == sum(1 for op in t.ops if op.kind == tr.ALLOC)
    # The stacks (0x5000 at 16 KiB alignment) land where Linux 6.1 put them: the 2.6.28
    # allocator's one-page gap never matters for them.
    assert res.match_rate > 0.95
    assert res.kernel_purges == 1 and res.model_purges == 1
    assert res.after is not None and res.after["kind_size_common"] >= 0.95 * res.after["kind_size_captured"]


def test_real_xfsdir_replay_vb_alloc_agrees_on_2628(xfs: tuple[tr.Trace, vi.Snapshot, vi.Snapshot]) -> None:
    t, before, after = xfs
    k, res = rp.replay_trace(t, "2.6.28", before=before, after=after)
    assert res.check_ok and res.map_compared == 501
    assert res.kernel_block_pages == res.model_block_pages == 256
    # inside a block every 16-page mapping sits at the kernel's offset...
    assert res.map_offset_matched == res.map_compared
    # ...but blocks differ: 6.1 packs them back to back, 2.6.28 leaves a page after each
    # busy area, so every second block slot is skipped.
    assert res.first_mismatch is not None and res.first_mismatch[2] == res.first_mismatch[1] + (1 << 20)
    _, res1024 = rp.replay_trace(t, "2.6.28", before=before, after=after, block_pages=1024)
    assert res1024.model_block_pages == 1024 and res1024.map_offset_matched < res.map_offset_matched


@pytest.mark.parametrize("design", ["2.6.28", "6.1"])
@pytest.mark.parametrize("workload", ["mixed", "forkstorm", "xfsdir"])
def test_round_trip_generate_parse_replay(workload: str, design: str) -> None:
    k, rec = tr.generate_trace(workload, 2500, cpus=3, seed=7, design=design)
    t = tr.parse_trace(rec.text(), "gen")
    assert not t.bad and t.nr_cpus == 3
    k2, res = rp.replay_trace(t, design)
    assert res.compared > 100 and res.matched == res.compared
    assert res.model_purges == res.kernel_purges and res.model_flushes == res.kernel_flushes
    assert not res.errors and not res.skipped and res.check_ok
    strip = [line.split()[:2] for line in vi.render_modern(k).splitlines()]
    assert strip == [line.split()[:2] for line in vi.render_modern(k2).splitlines()]
    assert k2.vmap_lazy_nr == k.vmap_lazy_nr


def _as_tracepoints(t: tr.Trace, lazy_max: int) -> str:
    """Write a parsed kprobe trace in the 6.4+ tracepoints' print formats."""
    out = ["# tracer: nop", "#", f"# entries-in-buffer/entries-written: 0/0   #P:{t.nr_cpus}"]
    sizes: dict[int, int] = {}
    lazy = 0
    for op in t.ops:
        head = f"     kworker-{op.pid:<6d} [{op.cpu:03d}] ..... {op.lineno / 1e4:12.6f}: "
        if op.kind == tr.ALLOC:
            sizes[op.start] = op.a  # type: ignore[index]
            out.append(head + f"alloc_vmap_area: va_start: {op.start} size={op.a} align={op.b} "
                       f"vstart=0x{op.c:x} vend=0x{op.d:x} failed=0")
        elif op.kind == tr.FREE:
            lazy += sizes[op.start] // 4096  # type: ignore[index]
            out.append(head + f"free_vmap_area_noflush: va_start=0x{op.start:x} nr_lazy={lazy} "
                       f"nr_lazy_max={lazy_max}")
        elif op.kind == tr.FLUSH:
            out.append(head + f"purge_vmap_area_lazy: start=0x{op.start:x} end=0x{op.end:x} num_purged=3")
            lazy = 0
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("design", ["2.6.28", "6.1"])
def test_tracepoint_form_round_trip(design: str) -> None:
    k, rec = tr.generate_trace("forkstorm", 3000, cpus=1, seed=2, design=design)  # 1 CPU: lazy_max_pages 8192
    text = _as_tracepoints(tr.parse_trace(rec.text()), k.lazy_max_pages())
    t = tr.parse_trace(text, "tp")
    assert t.forms == {"tracepoint"}
    k2, res = rp.replay_trace(t, design)  # 6.1 follows the purges: at the tracepoint, fired when done
    assert res.alloc_compared > 1000 and res.match_rate == 1.0 and res.check_ok
    assert res.model_purges == res.kernel_purges >= 1
    assert res.lazy[-1][1] == res.lazy[-1][2] == k.vmap_lazy_nr


HEAD = "          task-42      [001] .....    10.000000: "
ALLOC = HEAD + "alloc: (alloc_vmap_area+0x0/0x880) size=0x5000 align=0x4000 vstart=0xffffc20000000000 vend=0xffffe1ffffffffff"
RET = HEAD + "alloc_ret: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) va_start=0xffffc20000000000 va_end=0xffffc20000005000"
BAD_TRACES = [
    ([HEAD.replace("[001]", "[x]") + "vfree: (vfree+0x0/0xa0) addr=0x1"], 1, "an ftrace line"),
    ([HEAD + "vfree: vfree addr=0x1"], 1, "a kprobe event"),
    ([HEAD + "frob: (kfree+0x0/0xa0) addr=0x1"], 1, "a probe on one of"),
    ([HEAD + "vfree: (vfree+0x0/0xa0) addr=zz"], 1, "arguments 'name=<number>'"),
    ([HEAD + "alloc: (alloc_vmap_area+0x0/0x880) size=0x5000 align=0x4000"], 1, "missing vstart, vend"),
    ([RET], 1, "an alloc on PID 42 CPU 1 before this alloc_ret"),
    ([ALLOC, ALLOC, RET], 1, "an alloc_ret for this alloc (PID 42, CPU 1) before the next alloc on line 3"),
    ([ALLOC, RET.replace("va_end=0xffffc20000005000", "va_end=0xffffc20000009000")], 2, "va_end - va_start equal"),
    ([HEAD + "map_ram_ret: (f+0x1/0x2 <- vm_map_ram) addr=0x1"], 1, "a map_ram on PID 42 CPU 1"),
    ([HEAD + "map_ram: (vm_map_ram+0x0/0x980) count=0 node=-1"], 1, "count >= 1"),
    ([HEAD + "free_noflush: (free_vmap_area_noflush+0x0/0x340) va_start=0x2000 va_end=0x1000"], 1,
     "va_end above va_start"),
    ([HEAD + "alloc_vmap_area: va_start: 1 size=2"], 1, "the alloc_vmap_area tracepoint as"),
    ([HEAD + "free_vmap_area_noflush: va_start=0x1000 nr_lazy=x nr_lazy_max=2"], 1, "nr_lazy=<dec>"),
    ([HEAD + "purge_vmap_area_lazy: start=0x1 end=0x2"], 1, "num_purged=<dec>"),
]


@pytest.mark.parametrize("lines,lineno,expected", BAD_TRACES)
def test_every_malformed_trace_line_is_named(lines: list[str], lineno: int, expected: str) -> None:
    text = "# tracer: nop\n" + "\n".join(lines) + "\n"
    with pytest.raises(InputFormatError) as ei:
        tr.parse_trace(text, "t.txt")
    assert ei.value.lineno == lineno + 1 and str(ei.value).startswith(f"t.txt:{lineno + 1}: expected ")
    assert expected in str(ei.value)
    good = HEAD + "vfree: (vfree+0x0/0xa0) addr=0xffffc20000001000"
    t = tr.parse_trace(text + good + "\n", "t.txt", skip_bad=True)
    assert len(t.bad) >= 1 and t.ops[-1].kind == tr.VFREE


def test_pairing_by_pid_and_cpu_across_interleaving() -> None:
    a0 = ALLOC.replace("task-42 ", "task-7  ").replace("[001]", "[000]")
    r0 = RET.replace("task-42 ", "task-7  ").replace("[001]", "[000]").replace(
        "va_start=0xffffc20000000000 va_end=0xffffc20000005000",
        "va_start=0xffffc20000008000 va_end=0xffffc2000000d000")
    t = tr.parse_trace("\n".join([ALLOC, a0, RET, r0]), "i")
    assert [(op.pid, op.start) for op in t.ops] == [(42, 0xFFFFC20000000000), (7, 0xFFFFC20000008000)]


def test_lost_events_and_unfinished_calls_are_counted() -> None:
    t = tr.parse_trace("CPU:1 [LOST 17 EVENTS]\n" + ALLOC + "\n", "l")
    assert t.lost_events == 17 and t.unfinished == 1 and not t.ops


def test_replay_on_legacy_reports_instead_of_crashing() -> None:
    if "legacy" not in designs.accepted_names():
        pytest.skip("legacy design not built yet")
    k, rec = tr.generate_trace("mixed", 1500, cpus=2, seed=5)
    t = tr.parse_trace(rec.text())
    _, res = rp.replay_trace(t, design="legacy")
    assert res.check_ok and res.alloc_compared > 0
    assert res.model_purges == 0  # 2.6.27 never purges: it flushes at every free


def test_legacy_replays_the_xfs_capture_with_vmap_and_a_flush_per_unmap(
        xfs: tuple[tr.Trace, vi.Snapshot, vi.Snapshot]) -> None:
    if "legacy" not in designs.accepted_names():
        pytest.skip("legacy design not built yet")
    t, before, after = xfs
    _, res = rp.replay_trace(t, design="legacy", before=before, after=after)
    assert res.check_ok and res.map_compared == 501 and res.model_failed == 0
    assert res.notes["vm_map_ram replayed as vmap() (the design has no vm_map_ram)"] == 501
    unmaps = sum(1 for op in t.ops if op.kind == tr.UNMAP_RAM)
    assert res.kernel_flushes == 0 and res.model_flushes >= unmaps  # 2.6.27: a global flush per vunmap


def test_kprobe_definitions_match_the_captures() -> None:
    for name in ("forkstorm", "xfsdir"):
        with open(os.path.join(REAL, name, "kprobe_events.txt")) as f:
            for line in f:
                assert line.strip() in tr.KPROBE_EVENTS.splitlines()


def test_commands_trace_then_replay(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    out = os.path.join(str(tmp_path), "t.txt")
    assert main(["trace", "--workload", "xfsdir", "--ops", "800", "--cpus", "2", "--out", out]) == 0
    capsys.readouterr()
    assert main(["replay", "--trace", out, "--design", "rewrite", "--json", "--no-vmallocinfo"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["results"]
    assert d["match_rate"] == 1.0 and d["map_compared"] > 300 and d["check_ok"]
    with open(out, "a") as f:
        f.write("rubbish\n")
    assert main(["replay", "--trace", out]) == 1
    assert f"{out}:" in capsys.readouterr().err
    assert main(["replay", "--trace", out, "--skip-bad", "--no-vmallocinfo"]) == 0
    assert "skipped 1 malformed line" in capsys.readouterr().out


def test_command_replays_real_capture_with_its_snapshots(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--trace", os.path.join(REAL, "xfsdir", "trace.txt"), "--no-vmallocinfo"]) == 0
    out = capsys.readouterr().out
    assert "vmallocinfo-before.txt" in out and "initial population" in out
    assert "vm_map_ram at the same offset inside its vmap block: 501/501" in out


def test_ftrace_line_variants() -> None:
    """Older ftrace (no irq-info column) and the TGID column parse like the default."""
    body = "vfree: (vfree+0x0/0xa0) addr=0xffffc20000001000"
    for line in ("          <idle>-0     [003]  1234.5: " + body,
                 "     kworker/0:1-17    (   17) [002] d..1. 5.1: " + body,
                 "  my-task-name-3-99    [001] ..s1.  7.000001: " + body):
        t = tr.parse_trace(line + "\n", "v")
        assert not t.bad and len(t.ops) == 1 and t.ops[0].start == 0xFFFFC20000001000
    assert tr.parse_trace("  my-task-name-3-99    [001] ..s1.  7.000001: " + body).ops[0].pid == 99


# -- Linux 6.1: the replay as the proof against the real kernel ------------------------------
def _events(name: str, kind: str) -> int:
    """allocations (vm_structs and vmap blocks) or vm_map_ram calls of a real capture."""
    t = tr.read_trace(os.path.join(REAL, name, "trace.txt"))
    if kind == "alloc":
        return sum(1 for op in t.ops if op.kind == tr.ALLOC or (op.kind == tr.MAP_RAM and op.block))
    return sum(1 for op in t.ops if op.kind == tr.MAP_RAM)


@pytest.mark.parametrize("free_run", [False, True])
@pytest.mark.parametrize("name", ["forkstorm", "xfsdir"])
def test_real_capture_on_61_every_address_and_the_after_snapshot(name: str, free_run: bool) -> None:
    t, before, after = _real(name)
    k, res = rp.replay_trace(t, "6.1", before, after, free_run=free_run)
    assert res.design == "6.1" and res.mode == (rp.FREE_RUN if free_run else rp.DECISION)
    assert k.VMALLOC_START == t.vstart and res.kernel_base == res.model_base  # KASLR's base, not rebased
    assert res.following_purges and res.kernel_purges == res.model_purges
    assert res.alloc_compared + res.block_compared == _events(name, "alloc")
    assert res.map_compared == _events(name, "map_ram")
    assert res.matched == res.compared and res.mismatch is None and res.first_mismatch is None
    assert not res.model_failed and not res.errors and res.check_ok
    assert res.after is not None and res.after["lines_equal"] and res.after["lines_captured"] > 100
    # line for line: the model's vmallocinfo is the captured one inside the vmalloc space
    base = k.VMALLOC_START
    captured = [(a.start, a.size, a.label) for a in after.areas if base <= a.start <= k.VMALLOC_END]
    model = [(a.start, a.size, a.label) for a in vi.parse_vmallocinfo(res.vmallocinfo).areas]
    assert captured == model


def test_real_forkstorm_follows_the_kernels_purge_at_its_flush() -> None:
    t, before, after = _real("forkstorm")
    _, res = rp.replay_trace(t, "6.1", before, after)
    assert res.kernel_purges == res.model_purges == 1 and res.kernel_flushes == res.model_flushes == 1
    # the stack allocated between the flush and purge_ret reuses a purged range (line 13136)
    line = next(op for op in t.ops if op.kind == tr.ALLOC and op.lineno > 13134)
    assert line.start == 0xFFFFD57440388000 and res.lazy[-1][1] == res.lazy[-1][2]
    _, nofollow = rp.replay_trace(t, "6.1", before, after, follow_purges=False)
    assert not nofollow.following_purges and nofollow.model_purges >= 1  # the model's drain, inline


V = 0xFFFFC90000000000  # 6.1's VMALLOC_START without KASLR
E = V + (32 << 40) - 1


def _line(pid: int, cpu: int, body: str) -> str:
    return f"        task-{pid:<6d} [{cpu:03d}] .....    10.000000: {body}"


def _alloc(pid: int, cpu: int, size: int, align: int, ret: int | None, ret_cpu: int | None = None) -> list[str]:
    out = [_line(pid, cpu, f"alloc: (alloc_vmap_area+0x0/0x880) size={size:#x} align={align:#x} "
                           f"vstart={V:#x} vend={E:#x}")]
    if ret is not None:
        out.append(_line(pid, cpu if ret_cpu is None else ret_cpu,
                         f"alloc_ret: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) "
                         f"va_start={ret:#x} va_end={ret + size:#x}"))
    return out


def _free(pid: int, cpu: int, start: int, size: int) -> list[str]:
    return [_line(pid, cpu, f"free_noflush: (free_vmap_area_noflush+0x0/0x340) va_start={start:#x} "
                            f"va_end={start + size:#x}")]


def _trace(*groups: list[str]) -> str:
    return "# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:2\n" + "".join(
        line + "\n" for g in groups for line in g)


#: the kernel puts its second area 0x10000 up where the model's lowest fit says +0x5000,
#: then its third at the model's choice again
MISS = _trace(_alloc(42, 1, 0x5000, 0x1000, V), _alloc(42, 1, 0x5000, 0x1000, V + 0x10000),
              _alloc(42, 1, 0x5000, 0x1000, V + 0x5000))


def test_decision_mode_places_a_miss_at_the_kernels_address() -> None:
    t = tr.parse_trace(MISS, "miss")
    k, res = rp.replay_trace(t, "6.1")
    assert res.mode == rp.DECISION and (res.alloc_matched, res.alloc_compared) == (2, 3)
    assert res.placed_as_kernel == 1 and res.check_ok
    assert [a.va_start - V for a in k.vmap_areas()] == [0, 0x5000, 0x10000]  # the kernel's layout
    m = res.mismatch
    assert m is not None and (m.line, m.kernel, m.model, m.what) == (6, V + 0x10000, V + 0x5000, "allocation")
    # at the decision the free tree held [1, V) and everything above the first area
    assert m.free_near_kernel == [(1, V), (V + 0x5000, (1 << 64) - 1)]
    _, free = rp.replay_trace(t, "6.1", free_run=True)
    # free-run: the model keeps V + 0x5000 for the second, so the third misses as well
    assert free.mode == rp.FREE_RUN and (free.alloc_matched, free.alloc_compared) == (1, 3)
    _, both = rp.replay_trace(t, "6.1", both_modes=True)
    assert both.rate_of(rp.DECISION) == 2 / 3 and both.rate_of(rp.FREE_RUN) == 1 / 3


def test_purge_returns_areas_at_its_flush_and_holds_later_frees() -> None:
    text = _trace(_alloc(42, 1, 0x5000, 0x1000, V), _alloc(42, 1, 0x5000, 0x1000, V + 0x5000),
                  _alloc(42, 1, 0x5000, 0x1000, V + 0xA000),
                  _free(17, 0, V, 0x5000), _free(17, 0, V + 0x5000, 0x5000),
                  [_line(17, 0, "purge: (__purge_vmap_area_lazy+0x0/0x730) start=0xffffffffffffffff end=0x0")],
                  _free(50, 1, V + 0xA000, 0x5000),  # after the purge took its list
                  _alloc(42, 1, 0x5000, 0x1000, V + 0xF000),  # before the flush: nothing is free yet
                  [_line(17, 0, f"flush: (flush_tlb_kernel_range+0x0/0xc0) start={V:#x} end={V + 0xA000:#x}")],
                  _alloc(42, 1, 0xA000, 0x1000, V))  # the two purged areas, merged
    t = tr.parse_trace(text, "purge")
    k, res = rp.replay_trace(t, "6.1", free_run=True)
    assert res.following_purges and res.matched == res.compared == 5
    assert res.kernel_purges == res.model_purges == 1
    assert k.vmap_lazy_nr == 5  # the free after the purge's entry waits for the next purge
    assert [(a.va_start - V, a.va_end - a.va_start) for a in k.vmap_areas()] == [
        (0, 0xA000), (0xA000, 0x5000), (0xF000, 0x5000)]


def test_alloc_pairs_with_its_return_by_pid_across_cpus() -> None:
    a = _alloc(42, 0, 0x5000, 0x1000, None)  # task 42 enters on CPU 0 ...
    b = _alloc(7, 1, 0x5000, 0x1000, V)  # another task allocates on CPU 1 meanwhile
    ret = [_line(42, 1, "alloc_ret: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) "
                        f"va_start={V + 0x5000:#x} va_end={V + 0xA000:#x}")]  # ... returns on CPU 1
    t = tr.parse_trace(_trace(a, b, ret), "mig")
    assert not t.bad and not t.unfinished
    assert [(op.pid, op.cpu, op.start) for op in t.ops] == [(7, 1, V), (42, 0, V + 0x5000)]
    _, res = rp.replay_trace(t, "6.1")
    assert res.matched == res.compared == 2


def test_a_before_snapshot_area_the_trace_allocates_is_replayed_not_rebuilt() -> None:
    # the stack of the task that read vmallocinfo: in the snapshot and allocated in the trace
    t = tr.parse_trace(_trace(_alloc(42, 1, 0x5000, 0x4000, V + 0x4000)), "snap")
    before = vi.parse_vmallocinfo(
        f"0x{V:016x}-0x{V + 0x3000:016x}   12288 f+0x1/0x2 pages=2 vmalloc N0=2\n"
        f"0x{V + 0x4000:016x}-0x{V + 0x9000:016x}   20480 kernel_clone+0xbf/0x430 pages=4 vmalloc N0=4\n", "b")
    init = rp.initial_population(t, before)
    assert [a.start for a in init] == [V]
    k, res = rp.replay_trace(t, "6.1", before)
    assert res.initial is not None and len(res.initial.placed) == 1
    assert res.matched == res.compared == 1 and not res.skipped and res.check_ok


def test_command_defaults_to_61_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(REAL, "xfsdir", "trace.txt")
    assert main(["replay", "--trace", path, "--no-vmallocinfo"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("vmapsim replay on design 6.1 (Linux 6.1") and path in first
    assert "address match (decisions): 589/589 = 100.0%" in out and "free-run mode: 589/589 = 100.0%" in out
    assert "all 141 lines equal" in out
    assert main(["replay", "--trace", path, "--design", "linux-6.1", "--json", "--no-vmallocinfo"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["results"]
    assert d["design"] == "6.1" and d["mode"] == "decision" and d["following_purges"]
    assert d["decision_rate"] == d["free_run_rate"] == 1.0 and d["after"]["lines_equal"]
    assert main(["replay", "--trace", path, "--free-run", "--json", "--no-vmallocinfo"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["results"]
    assert d["mode"] == "free-run" and d["rates"] == {"decision": {"matched": 589, "compared": 589}}


def test_command_names_the_first_mismatch(tmp_path: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(str(tmp_path), "miss.txt")
    with open(path, "w") as f:
        f.write(MISS)
    assert main(["replay", "--trace", path, "--no-vmallocinfo"]) == 0
    out = capsys.readouterr().out
    assert "address match (decisions): 2/3 = 66.7%" in out and "free-run mode: 1/3 = 33.3%" in out
    assert f"first difference at line 6 (allocation): kernel {V + 0x10000:#x}, model {V + 0x5000:#x}" in out
    assert f"free areas near the kernel's address: [0x1-{V:#x}) [{V + 0x5000:#x}-0xffffffffffffffff)" in out
    assert "Traceback" not in out


def test_descending_rebuild_order_misses_a_block_and_the_report_shows_why(
        xfs: tuple[tr.Trace, vi.Snapshot, vi.Snapshot]) -> None:
    """The free tree's shape matters for aligned requests: carved in descending order,
    6.1's walk prunes the 1 MiB + 36 KiB hole at +0x700000 (below the 2 MiB - 1 search
    length of a 1 MiB-aligned block) and the kernel's block goes 2 MiB higher."""
    from vmapsim.mm.designs import DesignInfo
    from vmapsim.mm.linux61 import Linux61

    info = DesignInfo(name="toy-6.1-desc", aliases=(), kernel="6.1 rebuilt top-down (the test suite's)",
                      changed="placement_order descending", commit="(none)", leaves_out="(as 6.1)")

    class Desc(Linux61, design=info):
        placement_order = "descending"

    try:
        t, before, after = xfs
        _, res = rp.replay_trace(t, "toy-6.1-desc", before, after)
        assert res.compared - res.matched == 1 and res.block_compared - res.block_matched == 1
        m = res.mismatch
        base = t.vstart
        assert m is not None and m.what == "vmap block" and m.line == 100
        assert (m.kernel - base, m.model - base) == (0x700000, 0x900000)  # type: ignore[operator]
        assert (base + 0x700000, base + 0x809000) in m.free_near_kernel
        _, free = rp.replay_trace(t, "toy-6.1-desc", before, after, free_run=True)
        assert free.match_rate < 0.5  # in free-run the one miss shifts every later block
    finally:
        designs.unregister("toy-6.1-desc")
