"""/proc/vmallocinfo: parsing real snapshots, rebuilding them on the model, rendering."""

from __future__ import annotations

import json
import os

import pytest

from vmapsim import PAGE_SIZE, VM_IOREMAP, ConfigError, Kernel
from vmapsim.cli import main
from vmapsim.mm import designs
from vmapsim.workloads import InputFormatError
from vmapsim.workloads import vmallocinfo as vi

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
REAL = os.path.join(FIX, "real-linux-6.1")
FORK_BEFORE = os.path.join(REAL, "forkstorm", "vmallocinfo-before.txt")
FORK_AFTER = os.path.join(REAL, "forkstorm", "vmallocinfo-after.txt")
XFS_AFTER = os.path.join(REAL, "xfsdir", "vmallocinfo-after.txt")
HASHED = os.path.join(FIX, "vmallocinfo-hashed-6.18.txt")


def _raw(path: str) -> list[str]:
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


@pytest.mark.parametrize("path", [FORK_BEFORE, FORK_AFTER, XFS_AFTER, HASHED])
def test_real_snapshot_counts_match_the_file(path: str) -> None:
    lines = _raw(path)
    snap = vi.read_vmallocinfo(path)
    assert not snap.bad and len(snap.areas) == len(lines)
    s = vi.summarize(snap)
    assert s["by_kind"].get("unpurged", 0) == sum(line.endswith(" unpurged vm_area") for line in lines)
    assert s["by_kind"].get("vm_map_ram", 0) == sum(line.endswith(" vm_map_ram") for line in lines)
    assert s["by_kind"].get("ioremap", 0) == sum(" ioremap" in line for line in lines)
    assert s["pages"] == sum(int(w[6:]) for line in lines for w in line.split() if w.startswith("pages="))
    assert snap.fmt == "modern"


def test_real_addresses_and_hashed_addresses_are_told_apart() -> None:
    assert not vi.read_vmallocinfo(FORK_AFTER).hashed
    snap = vi.read_vmallocinfo(HASHED)
    assert snap.hashed
    assert "largest_gap" not in vi.summarize(snap)  # meaningless with hashed addresses


def test_model_output_parses_as_the_26_format() -> None:
    k = Kernel(cpus=2, nodes=2, mem_pages=8192)
    k.vmalloc(5 * PAGE_SIZE)
    area = k.get_vm_area(8 * PAGE_SIZE, VM_IOREMAP)
    assert area is not None
    area.phys_addr = 0xFED00000
    k.vmalloc_user(2 * PAGE_SIZE)
    text = k.vmallocinfo()  # 2.6.28's own format: phys=%lx without 0x
    snap = vi.parse_vmallocinfo(text, "model")
    assert snap.fmt == "2.6" and not snap.hashed
    assert [(a.start, a.size) for a in snap.areas] == [(v.addr, v.size) for v in k._vmlist]
    io = [a for a in snap.areas if "ioremap" in a.words][0]
    assert io.phys == 0xFED00000
    assert [a for a in snap.areas if "user" in a.words][0].pages == 2


@pytest.mark.parametrize("path", [FORK_BEFORE, FORK_AFTER, XFS_AFTER])
def test_rebuild_puts_every_area_at_its_rebased_address(path: str) -> None:
    snap = vi.read_vmallocinfo(path)
    k = vi.kernel_for(snap)
    rep = vi.rebuild(k, snap)
    k.check()
    base = min(a.start for a in snap.areas) & ~(vi.GIB - 1)
    delta = k.VMALLOC_START - base
    model = {(a.start, a.size, a.label) for a in vi.parse_vmallocinfo(vi.render_modern(k)).areas}
    inside = [a for a in snap.areas if a.end + delta <= k.VMALLOC_END + 1]
    assert len(inside) == len(rep.placed) > 0
    for a in inside:
        assert (a.start + delta, a.size, a.label) in model, a
    outside = len(snap.areas) - len(inside)
    assert rep.skipped.get("area outside the model's vmalloc space (e.g. module space)", 0) == outside
    # pages and NUMA counts as captured
    lazy = sum(a.size for a in snap.areas if a.kind == "unpurged") // PAGE_SIZE
    assert k.vmap_lazy_nr == lazy


@pytest.mark.parametrize("design", ["2.6.28", "6.1"])
def test_rebuilt_model_renders_what_it_was_built_from(design: str) -> None:
    """model A -> modern vmallocinfo -> rebuild on model B -> the same text."""
    from vmapsim.workloads.trace import run_workload

    a = Kernel(cpus=2, nodes=2, mem_pages=1 << 16, design=design)
    for _ in run_workload(a, "mixed", 1500, seed=3, cleanup=False):
        pass
    text = vi.render_modern(a)
    snap = vi.parse_vmallocinfo(text, "a")
    assert {x.kind for x in snap.areas} >= {"vm", "vm_map_ram"}
    b = vi.kernel_for(snap, design, cpus=2, nodes=2)
    rep = vi.rebuild(b, snap, kernel_base=a.VMALLOC_START)
    b.check()
    assert not rep.skipped
    assert vi.render_modern(b) == text


def test_hashed_layout_keeps_order_and_adjacency() -> None:
    text = ("0x00000000aaaa0001-0x00000000bbbb0002   20480 f+0x1/0x2 pages=4 vmalloc N0=4\n"
            "0x00000000bbbb0002-0x00000000cccc0003    8192 g+0x1/0x2 phys=0x00000000fed00000 ioremap\n"
            "0x00000000dddd0004-0x00000000eeee0005    8192 h+0x1/0x2 pages=1 vmalloc N0=1\n"
            "0x0000000011110006-0x0000000022220007   20480 unpurged vm_area\n")
    snap = vi.parse_vmallocinfo(text, "h")
    assert snap.hashed
    k = Kernel(cpus=2, mem_pages=4096)
    rep = vi.rebuild(k, snap)
    k.check()
    got = [(a.start - k.VMALLOC_START, a.size) for a in vi.parse_vmallocinfo(vi.render_modern(k)).areas]
    # line 2 starts where line 1 ends (same hash); line 3 after a one-page gap (new hash)
    assert got[:3] == [(0, 20480), (0x5000, 8192), (0x8000, 8192)]
    assert rep.laid_out == 4 and k.vmap_lazy_nr == 5


BAD_LINES = [
    ("garbage here", "'0x<start>-0x<end> <size>'"),
    ("0xffffc20000000000-0xffffc20000001800 6144 f+0x1/0x2 vmalloc", "positive multiple of 4096"),
    ("0xffffc20000000000-0xffffc20000002000 8192 f+0x1/0x2 pages=1 vmalloc wibble", "not 'wibble'"),
    ("0xffffc20000000000-0xffffc20000002000 8192 f+0x1/0x2 pages=1 pages=1 vmalloc", "pages= at most once"),
    ("0xffffc20000000000-0xffffc20000003000 12288 f+0x1/0x2 pages=2 vmalloc N0=1", "summing to pages=2"),
    ("0xffffc20000000000-0xffffc20000003000 12288 f+0x1/0x2 vmalloc N0=2", "pages=<n> before"),
    ("0xffffc20000000000-0xffffc20000002000 8192 f+0x1/0x2 pages=9 vmalloc N0=9", "at most the area's 2 pages"),
    ("0xffffc20000000000-0xffffc20000002000 8192 f+0x1/0x2 phys=0x1 phys=0x2 ioremap", "phys= at most once"),
    ("0xffffc20000000000-0xffffc20000002000 8192 f+0x1/0x2 vmalloc vmalloc", "'vmalloc' at most once"),
    ("0xffffc20000100000-0xffffc20000105000 8192 f+0x1/0x2 vmalloc", "end - start equal to the size"),
    ("0xffffc20000010000-0xffffc20000012000 8192 f+0x1/0x2 vmalloc", "not overlapping the one on line 1"),
    ("0xffffc20000100800-0xffffc20000102800 8192 f+0x1/0x2 vmalloc", "page-aligned"),
]
GOOD = ["0xffffc20000010000-0xffffc20000015000   20480 f+0x1/0x2 pages=4 vmalloc N0=4",
        "0xffffc20000020000-0xffffc20000022000    8192 g+0x1/0x2 ioremap"]


@pytest.mark.parametrize("bad,expected", BAD_LINES)
def test_every_malformed_line_is_named(bad: str, expected: str) -> None:
    text = "\n".join([GOOD[0], bad, GOOD[1]]) + "\n"
    with pytest.raises(InputFormatError) as ei:
        vi.parse_vmallocinfo(text, "snap.txt")
    e = ei.value
    assert e.path == "snap.txt" and e.lineno == 2
    assert str(e).startswith("snap.txt:2: expected ") and expected in str(e)
    snap = vi.parse_vmallocinfo(text, "snap.txt", skip_bad=True)
    assert len(snap.bad) == 1 and snap.bad[0].lineno == 2
    assert [a.lineno for a in snap.areas] == [1, 3]


def test_command_rebuilds_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--vmallocinfo", XFS_AFTER]) == 0
    out = capsys.readouterr().out
    assert "rebuilt 141 areas" in out
    assert out.count(" vm_map_ram\n") == 3  # the model's vmallocinfo shows the 3 blocks
    assert "unpurged vm_area" in out and "largest free gap" in out


def test_command_json_and_bad_file(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--vmallocinfo", HASHED, "--json", "--no-vmallocinfo"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["results"]
    assert d["hashed"] and d["rebuilt"] == len(_raw(HASHED))
    bad = os.path.join(str(tmp_path), "bad.txt")
    with open(bad, "w") as f:
        f.write(GOOD[0] + "\nnot a line\n" + GOOD[1] + "\n")
    assert main(["replay", "--vmallocinfo", bad]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: expected" in err and "--skip-bad" in err
    assert main(["replay", "--vmallocinfo", bad, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 malformed line" in out and "rebuilt 2 areas" in out


def test_nothing_half_applied_when_memory_is_short() -> None:
    snap = vi.read_vmallocinfo(FORK_AFTER)
    k = Kernel(cpus=2, mem_pages=512)
    k.vmalloc(PAGE_SIZE)
    before = vi.render_modern(k)
    with pytest.raises(ConfigError, match="pages"):
        vi.rebuild(k, snap)
    assert vi.render_modern(k) == before
    k.check()


def test_busy_model_ranges_are_refused_not_overwritten() -> None:
    snap = vi.parse_vmallocinfo("\n".join(GOOD) + "\n", "g")
    k = Kernel(cpus=2, mem_pages=4096)
    rep1 = vi.rebuild(k, snap, kernel_base=0xFFFFC20000000000)
    rep2 = vi.rebuild(k, snap, kernel_base=0xFFFFC20000000000)
    k.check()
    assert len(rep1.placed) == 2 and not rep2.placed
    assert rep2.skipped["range already busy in the model"] == 2


def test_legacy_design_reports_what_it_cannot_model() -> None:
    if "legacy" not in designs.accepted_names():
        pytest.skip("legacy design not built yet")
    snap = vi.read_vmallocinfo(XFS_AFTER)
    k = vi.kernel_for(snap, design="legacy")
    rep = vi.rebuild(k, snap)
    k.check()
    assert rep.skipped["unpurged area (design '2.6.27' has no lazy freeing)"] == 47
    assert rep.skipped["vm_map_ram block (design '2.6.27' has no vmap blocks)"] == 3


def test_32bit_26_snapshot() -> None:
    text = ("0xf8800000-0xf8802000    8192 acpi_os_map_memory+0x2a/0x40 phys=fed00000 ioremap\n"
            "0xf8803000-0xf8806000   12288 module_alloc+0x1b/0x30 pages=2 vmalloc\n"
            "0xf8807000-0xf8809000    8192 snd_malloc_sgbuf_pages+0x1f0/0x2a0 vmap\n")
    snap = vi.parse_vmallocinfo(text, "x86_32")
    assert snap.fmt == "2.6" and not snap.hashed and snap.areas[0].phys == 0xFED00000
    k = Kernel(cpus=1, mem_pages=1024)
    rep = vi.rebuild(k, snap)
    k.check()
    assert rep.exact == 3
    got = vi.parse_vmallocinfo(vi.render_modern(k), "m").areas
    assert [(a.start - k.VMALLOC_START, a.label, a.pages) for a in got] == [
        (0x38800000, "ioremap", None), (0x38803000, "vmalloc", 2), (0x38807000, "vmap", None)]


XFS_BEFORE = os.path.join(REAL, "xfsdir", "vmallocinfo-before.txt")
REAL_SNAPSHOTS = [FORK_BEFORE, FORK_AFTER, XFS_BEFORE, XFS_AFTER]


def _lines(snap: vi.Snapshot, lo: int, hi: int, delta: int = 0) -> list[tuple[int, int, str]]:
    return [(a.start + delta, a.size, a.label) for a in snap.areas if lo <= a.start + delta and a.end + delta <= hi]


@pytest.mark.parametrize("path", REAL_SNAPSHOTS)
def test_61_rebuilds_a_61_snapshot_at_the_kernels_addresses_line_for_line(path: str) -> None:
    snap = vi.read_vmallocinfo(path)
    k = vi.kernel_for(snap, "6.1")
    assert k.design == "6.1"
    assert k.VMALLOC_START == vi.snapshot_base(snap) == min(a.start for a in snap.areas) & ~(vi.GIB - 1)
    rep = vi.rebuild(k, snap)
    k.check()
    assert rep.kernel_base == rep.model_base == k.VMALLOC_START and rep.exact == len(rep.placed)
    model = vi.parse_vmallocinfo(vi.render_modern(k), "<model>")
    inside = _lines(snap, k.VMALLOC_START, k.VMALLOC_END + 1)
    assert [(a.start, a.size, a.label) for a in model.areas] == inside
    assert len(inside) == len(snap.areas) - rep.skipped["area outside the model's vmalloc space (e.g. module space)"]
    # the free tree is what is left: the gaps between the captured areas
    free = k.free_areas_near(inside[1][0], 1)
    assert free[0][1] <= inside[1][0] and free[-1][0] >= inside[1][0] + inside[1][1]


def test_command_rebuilds_on_61_by_default_line_for_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--vmallocinfo", FORK_AFTER, "--no-vmallocinfo"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("vmapsim replay on design 6.1 (Linux 6.1")
    assert "VMALLOC_START 0xffffd57440000000 as the capture's; 483 at their captured address" in out
    assert "rendered back line for line in (address, size, kind): all 483 lines" in out
    assert main(["replay", "--vmallocinfo", FORK_AFTER, "--json", "--vmalloc-start", "0xffffc90000000000"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"]["vmalloc_start"] == "0xffffc90000000000"
    (d,) = doc["results"]
    assert d["design"] == "6.1" and d["vmalloc_start"] == "0xffffc90000000000" and d["compare"]["lines_equal"]
    snap = vi.read_vmallocinfo(FORK_AFTER)
    delta = 0xFFFFC90000000000 - 0xFFFFD57440000000
    got = [(a.start, a.size, a.label) for a in vi.parse_vmallocinfo(d["vmallocinfo"]).areas]
    assert got == _lines(snap, 0xFFFFC90000000000, 0xFFFFC90000000000 + (32 << 40), delta)


def test_hashed_ioremap_areas_are_laid_out_aligned() -> None:
    snap = vi.read_vmallocinfo(HASHED)
    for design in ("6.1", "2.6.28"):
        k = vi.kernel_for(snap, design)
        rep = vi.rebuild(k, snap)
        k.check()
        assert len(rep.placed) == len(snap.areas)
        for a in vi.parse_vmallocinfo(vi.render_modern(k)).areas:
            if a.label == "ioremap":
                align = 1 << max((a.size - PAGE_SIZE - 1).bit_length(), 12)
                assert a.start % align == 0, (design, a)
