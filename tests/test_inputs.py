"""The input readers (issue 10, sections 1, 2 and 4): every number a file gives is
checked against the model's machine before anything is built, refusals name the
file, the line and the value, bad lines are kept bounded, and a replay of a hostile
input stays bounded in time and memory."""

from __future__ import annotations

import os
import time

import pytest

from vmapsim import Kernel
from vmapsim.cli import main
from vmapsim.errors import ConfigError
from vmapsim.inputs import ftrace, kprobe, lines, tracepoint
from vmapsim.inputs import vmallocinfo as ivi
from vmapsim.inputs.lines import MAX_BAD, MAX_CPUS, MAX_LINE, MAX_NODES, InputFormatError
from vmapsim.workloads import InputFormatError as OldInputFormatError
from vmapsim.workloads import replay as rp
from vmapsim.workloads import trace as tr
from vmapsim.workloads import vmallocinfo as vi

V = 0xFFFFC90000000000
END = 0xFFFFE8FFFFFFFFFF
HEAD = "          task-42      [001] .....    10.000000: "
RET = "(__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area)"


def _alloc(size: int, start: int | None = V, vstart: int = V, pid: int = 42, cpu: int = 1,
           vend: int = END) -> list[str]:
    head = HEAD.replace("task-42 ", f"task-{pid} ").replace("[001]", f"[{cpu:03d}]")
    out = [head + f"alloc: (alloc_vmap_area+0x0/0x880) size={size:#x} align=0x1000 vstart={vstart:#x} vend={vend:#x}"]
    if start is not None:
        out.append(head + f"alloc_ret: {RET} va_start={start:#x} va_end={start + size:#x}")
    return out


def _vfree_free(start: int, size: int) -> list[str]:
    return [HEAD + f"vfree: (vfree+0x0/0xa0) addr={start:#x}",
            HEAD + f"free_noflush: (free_vmap_area_noflush+0x0/0x340) va_start={start:#x} va_end={start + size:#x}"]


def _write(tmp_path: object, name: str, text: str) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text)
    return path


# -- section 4: the readers in their own place -------------------------------------------------
def test_the_old_import_paths_are_the_readers() -> None:
    assert tr.parse_trace is ftrace.parse_trace and tr.read_trace is ftrace.read_trace
    assert tr.Op is ftrace.Op and tr.Trace is ftrace.Trace and tr.ALLOC == ftrace.ALLOC
    assert tr.KPROBE_FORMS is kprobe.FORMS and tr.KPROBE_EVENTS is kprobe.EVENTS and tr.TP_FORMS is tracepoint.FORMS
    assert vi.parse_vmallocinfo is ivi.parse_vmallocinfo and vi.Area is ivi.Area
    assert OldInputFormatError is InputFormatError


def test_the_machine_limits_are_the_models() -> None:
    Kernel(cpus=MAX_CPUS, nodes=1, mem_pages=4096)
    with pytest.raises(ConfigError, match=f"got {MAX_CPUS + 1}"):
        Kernel(cpus=MAX_CPUS + 1)
    with pytest.raises(ConfigError, match=f"got {MAX_NODES + 1}"):
        Kernel(cpus=2, nodes=MAX_NODES + 1, mem_pages=1 << 20)


def test_each_vmallocinfo_format_is_told_apart() -> None:
    old = "0xf8000000-0xf8002000 8192 f+0x1/0x2 pages=1 phys=fe000000 ioremap\n"
    new = f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 phys=0x00000000fe000000 ioremap\n"
    assert ivi.parse_vmallocinfo(old, "o").fmt == "2.6"
    assert ivi.parse_vmallocinfo(new, "n").fmt == "modern"
    assert ivi.parse_vmallocinfo(f"{V:#x}-{V + 0x2000:#x} 8192 vm_map_ram\n", "m").fmt == "modern"
    assert ivi.parse_vmallocinfo(f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 vmalloc\n", "e").fmt == "either"


# -- section 2: errors name the file, the line and the value ----------------------------------
@pytest.mark.parametrize("text,line,value", [
    (HEAD.replace("[001]", "[2000]") + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n", 1, "CPU [2000]"),
    ("# entries-in-buffer/entries-written: 1/1   #P:100000\n" + HEAD + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n",
     1, "#P:100000"),
    ("# tracer: nop\n" + _alloc(0x2000, None, vstart=0x1000)[0] + "\n", 2, "vstart=0x1000"),
    (_alloc(0x2000, None)[0].replace("size=0x2000", "size=0") + "\n", 1, "size=0x0"),
    (_alloc(0x2000, None)[0].replace("align=0x1000", "align=0x3000") + "\n", 1, "align=0x3000"),
    (_alloc(0x2000, None)[0].replace("size=0x2000", "size=0x" + "f" * 17) + "\n", 1, "size=0x" + "f" * 17),
    (HEAD + "map_ram: (vm_map_ram+0x0/0x980) count=4294967296 node=-1\n", 1, "count=4294967296"),
    (HEAD + "map_ram: (vm_map_ram+0x0/0x980) count=1 node=5000\n", 1, "node=5000"),
    (HEAD + "free_vmap_area_noflush: va_start=0x1000 nr_lazy=1 nr_lazy_max=2\n", 1, "va_start=0x1000"),
    (HEAD + f"alloc_vmap_area: va_start: {V} size=8192 align=4096 vstart=0x1000 vend={END:#x} failed=0\n",
     1, "vstart=0x1000"),
])
def test_a_trace_value_the_machine_cannot_take_is_named(text: str, line: int, value: str) -> None:
    with pytest.raises(InputFormatError) as ei:
        tr.parse_trace(text, "t.txt")
    e = ei.value
    assert e.lineno == line and str(e).startswith(f"t.txt:{line}: expected ") and f"got {value}" in str(e)


@pytest.mark.parametrize("bad,value", [
    (f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 pages=1 vmalloc N99999=1", "N99999=1"),
    ("0x1000-0x3000 8192 f+0x1/0x2 pages=1 vmalloc", "0x1000"),
    (f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 pages=3 vmalloc", "pages=3"),
])
def test_a_snapshot_value_the_machine_cannot_take_is_named_and_spoils_nothing(bad: str, value: str) -> None:
    good = [f"{V + i * 0x10000:#x}-{V + i * 0x10000 + 0x3000:#x} 12288 f+0x1/0x2 pages=2 vmalloc N0=2"
            for i in range(1, 21)]
    text = "\n".join([good[0], bad] + good[1:]) + "\n"
    with pytest.raises(InputFormatError) as ei:
        vi.parse_vmallocinfo(text, "s.txt")
    assert ei.value.lineno == 2 and f"got {value}" in str(ei.value)
    snap = vi.parse_vmallocinfo(text, "s.txt", skip_bad=True)
    assert snap.bad_count == 1 and len(snap.areas) == 20
    k = vi.kernel_for(snap, "6.1", cpus=2)
    rep = vi.rebuild(k, snap, kernel_base=vi.snapshot_base(snap))
    assert len(rep.placed) == 20 and not rep.skipped  # the other lines keep their addresses
    assert k.VMALLOC_START == V & ~((1 << 30) - 1)
    k.check()


def test_a_stray_area_in_the_kernel_half_does_not_move_the_base() -> None:
    areas = [f"{V + i * 0x10000:#x}-{V + i * 0x10000 + 0x2000:#x} 8192 f+0x1/0x2 ioremap" for i in range(10)]
    snap = vi.parse_vmallocinfo("\n".join(["0x8000000000000000-0x8000000000002000 8192 f+0x1/0x2 ioremap"]
                                          + areas) + "\n", "s")
    assert vi.snapshot_base(snap) == V & ~((1 << 30) - 1)
    k = vi.kernel_for(snap, "6.1", cpus=2)
    rep = vi.rebuild(k, snap, kernel_base=vi.snapshot_base(snap))
    assert len(rep.placed) == 10 and sum(rep.skipped.values()) == 1


def test_the_traced_base_is_the_most_common_vstart() -> None:
    module = 0xFFFFFFFFC0000000
    text = "\n".join(_alloc(0x2000, module + 0x1000, vstart=module, pid=7, vend=module + (1 << 29))
                     + _alloc(0x2000, V) + _alloc(0x2000, V + 0x2000, pid=9)) + "\n"
    t = tr.parse_trace(text, "b")
    assert t.vstart == V
    _, res = rp.replay_trace(t)
    assert res.model_base == res.kernel_base == V and res.alloc_matched == 2


def test_an_odd_traced_block_size_names_its_line() -> None:
    text = "\n".join([HEAD + "map_ram: (vm_map_ram+0x0/0x980) count=1 node=-1", _alloc(0x3000, None)[0],
                      HEAD + f"alloc_ret: (vm_map_ram+0x2bb/0x980 <- alloc_vmap_area) va_start={V:#x} "
                      f"va_end={V + 0x3000:#x}",
                      HEAD + f"map_ram_ret: (f+0x1/0x2 <- vm_map_ram) addr={V:#x}"]) + "\n"
    t = tr.parse_trace(text, "blk.txt")
    with pytest.raises(ConfigError, match=r"^blk.txt:2: the vmap block allocated here has 3 pages"):
        rp.replay_trace(t)
    _, res = rp.replay_trace(t, block_pages=256)
    assert res.map_compared == 1


@pytest.mark.parametrize("args", [["--block-pages", "abc"], ["--block-pages", "100"], ["--block-pages", "0x"]])
def test_bad_block_pages_is_a_usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    trace = os.path.join(os.path.dirname(__file__), "fixtures", "real-linux-6.1", "xfsdir", "trace.txt")
    with pytest.raises(SystemExit) as ei:
        main(["replay", "--trace", trace] + args)
    err = capsys.readouterr().err
    assert ei.value.code == 2 and "--block-pages" in err and "Traceback" not in err


# -- section 1: bounded resources ---------------------------------------------------------------
def test_skip_bad_keeps_the_first_bad_lines_and_a_count() -> None:
    junk = [f"junk line {i}" for i in range(1000)]
    t = tr.parse_trace(junk + [HEAD + f"vfree: (vfree+0x0/0xa0) addr={V:#x}"], "j", skip_bad=True)
    assert t.bad_count == 1000 and [e.lineno for e in t.bad] == list(range(1, MAX_BAD + 1))
    s = vi.parse_vmallocinfo(junk[::-1] + [f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 ioremap"], "s", skip_bad=True)
    assert s.bad_count == 1000 and [e.lineno for e in s.bad] == list(range(1, MAX_BAD + 1))


def test_a_long_line_is_refused_without_being_held(tmp_path: object) -> None:
    path = _write(tmp_path, "long.txt", "x" * (3 << 20) + "\n" + HEAD + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n")
    with pytest.raises(InputFormatError, match=f"long.txt:1: expected a line of at most {MAX_LINE} characters; "
                                               f"got a line of 3,145,729 characters"):
        tr.read_trace(path)
    t = tr.read_trace(path, skip_bad=True)
    assert t.bad_count == 1 and len(t.ops) == 1 and t.ops[0].lineno == 2
    assert len(t.bad[0].line) <= 120


@pytest.mark.parametrize("text,got", [("", "an empty file"), ("# tracer: nop\n#\n\n", "none in 3 lines"),
                                      ("rubbish\nmore rubbish\n", "none among 2 lines (2 malformed, skipped)")])
def test_an_input_with_nothing_valid_is_an_error(text: str, got: str, tmp_path: object,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "t.txt", text)
    with pytest.raises(InputFormatError, match=got.replace("(", r"\(").replace(")", r"\)")):
        tr.read_trace(path, skip_bad=True)
    with pytest.raises(InputFormatError, match="expected at least one area line"):
        vi.read_vmallocinfo(path, skip_bad=True)
    for opt in ("--trace", "--vmallocinfo"):
        assert main(["replay", opt, path, "--skip-bad"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"vmapsim replay: {path}: expected ") and "Traceback" not in err


def test_a_huge_allocation_is_not_replayed_and_costs_nothing() -> None:
    size = (1 << 40) + 4096
    t = tr.parse_trace(_alloc(size) + _vfree_free(V, size) + _alloc(0x5000, V + 0x1000), "tib")
    t0 = time.perf_counter()
    k, res = rp.replay_trace(t)
    assert time.perf_counter() - t0 < 5
    gib = rp.REPLAY_VA_BUDGET * 4096 >> 30
    assert res.skipped[f"allocation past the replay's budget of {gib} GiB of address space"] == 1
    assert res.alloc_compared == 1 and res.check_ok
    assert k.nr_free_pages() >= lines.INPUT_MEM_PAGES - 1024


def test_pages_past_the_memory_or_the_budget_are_not_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    size = (1 << 32) + 4096  # 4 GiB: more than the replay machine's 2 GiB
    t = tr.parse_trace(_alloc(size) + _vfree_free(V, size), "big")
    k, res = rp.replay_trace(t)
    assert res.notes["allocation placed without its pages (more than the model's free memory)"] == 1
    assert k.nr_free_pages() >= lines.INPUT_MEM_PAGES - 1024 and res.check_ok
    monkeypatch.setattr(rp, "REPLAY_PAGE_BUDGET", 5)
    t = tr.parse_trace(_alloc(0x5000) + _vfree_free(V, 0x5000) + _alloc(0x5000, V + 0x8000, pid=9)
                       + _vfree_free(V + 0x8000, 0x5000), "budget")
    _, res = rp.replay_trace(t)
    assert res.alloc_compared == 2 and res.check_ok
    assert sum(n for note, n in res.notes.items() if "budget of 5 mapped pages" in note) == 1


def test_a_vm_map_ram_larger_than_memory_allocates_nothing() -> None:
    text = [HEAD + "map_ram: (vm_map_ram+0x0/0x980) count=1000000000 node=-1",
            HEAD + f"map_ram_ret: (f+0x1/0x2 <- vm_map_ram) addr={V:#x}"]
    k, res = rp.replay_trace(tr.parse_trace(text, "m"))
    assert res.skipped["vm_map_ram larger than the model's memory"] == 1
    assert k.nr_free_pages() >= lines.INPUT_MEM_PAGES - 1024


def test_a_snapshot_larger_than_the_machine_is_refused_at_its_line(tmp_path: object) -> None:
    size = (1 << 40) + 4096
    text = (f"{V:#x}-{V + 0x2000:#x} 8192 f+0x1/0x2 pages=1 vmalloc\n"
            f"{V + 0x10000:#x}-{V + 0x10000 + size:#x} {size} f+0x1/0x2 vmap\n")
    path = _write(tmp_path, "tib.txt", text)
    snap = vi.read_vmallocinfo(path)
    k = vi.kernel_for(snap)
    assert k.num_physpages <= lines.INPUT_MEM_PAGES
    with pytest.raises(ConfigError, match=f"^{path}:2: rebuilding needs 268,435,457 pages"):
        vi.rebuild(k, snap)
    assert not k.vmap_areas()


def test_the_real_captures_fit_the_budgets() -> None:
    for name in ("forkstorm", "xfsdir"):
        d = os.path.join(os.path.dirname(__file__), "fixtures", "real-linux-6.1", name)
        t = tr.read_trace(os.path.join(d, "trace.txt"))
        _, res = rp.replay_trace(t, before=vi.read_vmallocinfo(os.path.join(d, "vmallocinfo-before.txt")))
        assert not [r for r in res.skipped if "budget" in r or "memory" in r]
        assert not [n for n in res.notes if "without its pages" in n]
