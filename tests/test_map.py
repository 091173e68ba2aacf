"""``vmapsim map``: the layout (compressed free space, blocks) and the files it writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmapsim import PAGE_SIZE, VM_IOREMAP, Kernel
from vmapsim.cli import main
from vmapsim.commands import map as vmap_map

REAL = os.path.join(os.path.dirname(__file__), "fixtures", "real-linux-6.1")


def _kernel() -> Kernel:
    k = Kernel(cpus=2, mem_pages=8192)
    a = k.vmalloc(3 * PAGE_SIZE)
    b = k.vmalloc(2 * PAGE_SIZE)
    assert a and b
    k.vfree(a)  # lazy
    k.get_vm_area(4 * PAGE_SIZE, VM_IOREMAP)
    # an area at the very top of the 32 TiB space: a huge empty stretch in between
    top = k.VMALLOC_END + 1 - 8 * PAGE_SIZE
    assert k.get_vm_area_node__(3 * PAGE_SIZE, 0, top, k.VMALLOC_END, -1, 0, "top") is not None
    pages = [k.alloc_page() for _ in range(4)]
    m = k.vm_map_ram(pages, 4)  # type: ignore[arg-type]
    assert m is not None
    k.vm_unmap_ram(m, 4)
    assert k.vm_map_ram(pages, 2) is not None  # type: ignore[arg-type]
    return k


def test_layout_compresses_empty_space_and_keeps_areas() -> None:
    k = _kernel()
    lay = vmap_map.layout(k)
    assert lay.breaks and lay.hidden > (1 << 44)  # most of 32 TiB drawn as a break
    assert lay.width < 20000  # a few thousand units, not 2**33 pages
    cats = {c for _, _, c in lay.pieces}
    assert {"vmalloc", "lazy", "ioremap", "other", "block live", "block dirty", "block free"} <= cats
    units = {c: sum(w for _, w, cc in lay.pieces if cc == c) for c in cats}
    assert units["block dirty"] == 4 and units["block live"] == 2
    assert units["block live"] + units["block dirty"] + units["block free"] == k.VMAP_BBMAP_BITS  # type: ignore[attr-defined]
    assert units["lazy"] == 4 and units["vmalloc"] == 3
    # every row label maps back to a real address
    assert vmap_map.address_at(lay, 0) == k.VMALLOC_START
    last_x, last_addr, _ = lay.xaddr[-1]
    assert vmap_map.address_at(lay, last_x) == last_addr


def test_empty_kernel_layout() -> None:
    lay = vmap_map.layout(Kernel(cpus=1, mem_pages=64))
    assert lay.width == 0 and not lay.pieces


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_draw_writes_a_picture(tmp_path: pytest.TempPathFactory, ext: str) -> None:
    out = os.path.join(str(tmp_path), f"m.{ext}")
    lay = vmap_map.draw(_kernel(), out, "test")
    assert lay.pieces
    with open(out, "rb") as f:
        head = f.read(200)
    assert head.startswith(b"\x89PNG") if ext == "png" else b"<svg" in head or b"<?xml" in head


def test_command(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    out = os.path.join(str(tmp_path), "x.png")
    assert main(["map", "--out", out, "--workload", "xfsdir", "--ops", "600", "--cpus", "2"]) == 0
    assert os.path.getsize(out) > 1000
    assert main(["map", "--out", out, "--trace", os.path.join(REAL, "xfsdir", "trace.txt")]) == 0
    assert "32.0 TiB hidden" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ei:  # refused before the run, by argparse
        main(["map", "--out", os.path.join(str(tmp_path), "x.jpg")])
    assert ei.value.code == 2
    bad = os.path.join(str(tmp_path), "bad.txt")
    with open(bad, "w") as f:
        f.write("nonsense\n")
    assert main(["map", "--out", out, "--vmallocinfo", bad]) == 1
    assert f"{bad}:1: expected" in capsys.readouterr().err


def test_map_words_and_a_quiet_stderr(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    assert vmap_map._stretches(1) == "1 free stretch"
    assert vmap_map._stretches(0) == "0 free stretches" and vmap_map._stretches(5) == "5 free stretches"
    # a one-row strip on 2.6.27 once lost its title to tight_layout, with a UserWarning
    for argv in (["--design", "2.6.27", "--ops", "3", "--cpus", "1"],
                 ["--design", "2.6.27", "--ops", "3000", "--cpus", "2"],
                 ["--workload", "xfsdir", "--ops", "600", "--cpus", "2"]):
        out = os.path.join(str(tmp_path), "m.png")
        assert main(["map", "--out", out, *argv]) == 0
        cap = capsys.readouterr()
        assert cap.err == ""
        assert "free stretches compressed" in cap.out or "free stretch compressed" in cap.out
    assert "(3000 calls, 2 CPUs)" in cap.out or "(600 calls, 2 CPUs)" in cap.out
    # in a process of its own: pytest would keep a matplotlib warning off capsys's stderr
    proc = subprocess.run([sys.executable, "-m", "vmapsim", "map", "--out", out, "--design", "2.6.27",
                           "--ops", "3", "--cpus", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "(3 calls, 1 CPU) on 2.6.27; 1 piece," in proc.stdout and proc.stderr == ""
