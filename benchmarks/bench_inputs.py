"""Hostile inputs (issue 10 section 1): generated adversarial traces and snapshots,
each replayed by ``vmapsim replay`` in a child process, with the child's peak RSS and
wall time printed beside the command.

    python benchmarks/bench_inputs.py            # 1 MB inputs, and 100 MB of junk with --skip-bad
    python benchmarks/bench_inputs.py --quick    # the junk files at 10 MB

Goal: any input file up to 1 MB is replayed or refused within 30 s and 300 MB of RSS;
up to 100 MB of junk with --skip-bad within 300 MB. A run is refused when it exits 1
with one ``vmapsim replay: ...`` line; a traceback anywhere, or any other exit status,
fails the goal. The last line says whether every input met it (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
V = 0xFFFFC90000000000
END = 0xFFFFE8FFFFFFFFFF
HEADER = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 1/1   #P:4\n#\n"
RET = "(__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area)"


def _head(pid: int = 42, cpu: int = 1) -> str:
    return f"          task-{pid:<6d} [{cpu:03d}] .....    10.000000: "


def _alloc(start: int, size: int, pid: int = 42, cpu: int = 1, vstart: int = V, vend: int = END) -> str:
    h = _head(pid, cpu)
    return (f"{h}alloc: (alloc_vmap_area+0x0/0x880) size={size:#x} align=0x1000 vstart={vstart:#x} vend={vend:#x}\n"
            f"{h}alloc_ret: {RET} va_start={start:#x} va_end={start + size:#x}\n")


def _vfree_free(start: int, size: int, pid: int = 42, cpu: int = 1) -> str:
    h = _head(pid, cpu)
    return (f"{h}vfree: (vfree+0x0/0xa0) addr={start:#x}\n"
            f"{h}free_noflush: (free_vmap_area_noflush+0x0/0x340) va_start={start:#x} va_end={start + size:#x}\n")


def _map_ram(count: int, addr: int, pid: int = 42, cpu: int = 1, unmap: bool = True) -> str:
    h = _head(pid, cpu)
    out = (f"{h}map_ram: (vm_map_ram+0x0/0x980) count={count} node=-1\n"
           f"{h}map_ram_ret: (xfs_buf_map+0x54/0xe0 <- vm_map_ram) addr={addr:#x}\n")
    if unmap:
        out += f"{h}unmap_ram: (vm_unmap_ram+0x0/0x1c0) addr={addr:#x} count={count}\n"
    return out


def _fill(unit: Callable[[int], str], size: int, head: str = HEADER) -> Iterator[str]:
    """``head``, then ``unit(i)`` for i = 0, 1, ... while the file stays within ``size``."""
    yield head
    total, i = len(head), 0
    while True:
        chunk = unit(i)
        total += len(chunk)
        if total > size:
            return
        yield chunk
        i += 1


# -- the inputs: (name, kind, size, chunks) -------------------------------------------------------
def traces(size: int) -> list[tuple[str, Iterator[str]]]:
    tib = (1 << 40) + 4096
    gib = (1 << 30) + 4096
    half = (1 << 29) + 4096
    return [
        ("one 1 TiB allocation, vfree()d", iter([HEADER, _alloc(V, tib), _vfree_free(V, tib)])),
        ("512 MiB allocations (fit), vfree()d, repeated",
         _fill(lambda i: _alloc(V, half) + _vfree_free(V, half), size)),
        ("4 GiB allocations (more than the machine), repeated",
         _fill(lambda i: _alloc(V, 4 * gib) + _vfree_free(V, 4 * gib), size)),
        ("1 TiB allocations kept, at rising addresses",
         _fill(lambda i: _alloc(V + i % 31 * tib, tib, pid=100 + i), size)),
        ("map_ram count=1000000000, repeated", _fill(lambda i: _map_ram(1000000000, V), size)),
        ("map_ram count=200000 (fits), repeated", _fill(lambda i: _map_ram(200000, V), size)),
        ("events on CPU [2000]", _fill(lambda i: _head(cpu=2000) + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n", size)),
        ("#P:100000 header", iter(["# entries-in-buffer/entries-written: 1/1   #P:100000\n",
                                  _head() + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n"])),
        ("allocations on 1024 CPUs", _fill(lambda i: _alloc(V + i * 0x5000, 0x5000, pid=1000 + i, cpu=i % 1024)
                                           + _vfree_free(V + i * 0x5000, 0x5000, pid=1000 + i, cpu=i % 1024),
                                           size)),
        ("first alloc at vstart=0x1000", iter([HEADER, _alloc(V, 0x5000, vstart=0x1000)])),
        ("open calls: allocs never returned", _fill(
            lambda i: _head(pid=1 + i) + f"alloc: (alloc_vmap_area+0x0/0x880) size=0x5000 align=0x1000 "
                                         f"vstart={V:#x} vend={END:#x}\n", size)),
        ("one 1 MB line", iter([HEADER, "x" * (size - 200) + "\n"])),
        ("prefix-like lines of dashes and digits", _fill(lambda i: "-1 " * 680 + "\n", size)),
        ("empty file", iter([])),
        ("header only", iter([HEADER])),
    ]


def snapshots(size: int) -> list[tuple[str, Iterator[str]]]:
    tib = (1 << 40) + 4096

    def area(i: int, what: str = "f+0x1/0x2 pages=4 vmalloc N0=4", sz: int = 0x5000) -> str:
        return f"{V + i * 0x10000:#x}-{V + i * 0x10000 + sz:#x} {sz:>8d} {what}\n"

    return [
        ("one 1 TiB vmap area", iter([f"{V:#x}-{V + tib:#x} {tib} f+0x1/0x2 vmap\n"])),
        ("one 1 TiB unpurged area", iter([f"{V:#x}-{V + tib:#x} {tib} unpurged vm_area\n"])),
        ("1 TiB ioremap areas (the 32 TiB space, then past 2**64)",
         _fill(lambda i: f"{V + i * tib:#x}-{V + (i + 1) * tib - 4096:#x} {tib - 4096} f+0x1/0x2 ioremap\n",
               size, "")),
        ("areas with pages, up to 1 MB", _fill(area, size, "")),
        ("areas with pages on node 99999", _fill(lambda i: area(i, "f+0x1/0x2 pages=4 vmalloc N99999=4"), size, "")),
        ("one area at 0x1000 among real ones", iter(["0x1000-0x3000 8192 f+0x1/0x2 ioremap\n"]
                                                    + [area(i) for i in range(1, 200)])),
        ("hashed addresses, up to 1 MB", _fill(
            lambda i: f"0x{random.getrandbits(64):016x}-0x{random.getrandbits(64):016x} 20480 "
                      f"f+0x1/0x2 pages=4 vmalloc N0=4\n", size, "")),
    ]


def junk(size: int) -> list[tuple[str, str, Iterator[str]]]:
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 -[]:=().x"

    def line(i: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 140))) + "\n"

    near = _head() + "alloc: (alloc_vmap_area+0x0/0x880) size=zz align=0x1000\n"
    valid = _head() + f"vfree: (vfree+0x0/0xa0) addr={V:#x}\n"
    area = f"{V:#x}-{V + 0x5000:#x} 20480 f+0x1/0x2 pages=4 vmalloc N0=4\n"
    block = "".join(line(i) for i in range(2000))
    return [
        ("random junk lines", "trace", _fill(lambda i: block, size, valid)),
        ("near-valid event lines", "trace", _fill(lambda i: near * 1000, size, valid)),
        ("no newline at all", "trace", _fill(lambda i: "y" * MB, size, valid)),
        ("random junk lines", "vmallocinfo", _fill(lambda i: block, size, area)),
    ]


# -- running one -----------------------------------------------------------------------------------
def run(cmd: list[str]) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS in MB, stderr) of ``cmd`` as a child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="junk files of 10 MB instead of 100 MB")
    ap.add_argument("--design", default="6.1")
    ap.add_argument("--only", metavar="TEXT", default="", help="run only the inputs whose name contains TEXT")
    args = ap.parse_args()
    junk_size = (10 if args.quick else 100) * MB
    tmp = tempfile.mkdtemp(prefix="vmapsim-bench-inputs-")
    cases: list[tuple[str, str, Iterator[str], bool, float, float]] = []
    cases += [(n, "trace", g, False, 30.0, 300.0) for n, g in traces(MB)]
    cases += [(n, "vmallocinfo", g, False, 30.0, 300.0) for n, g in snapshots(MB)]
    cases += [(n, kind, g, True, float("inf"), 300.0) for n, kind, g in junk(junk_size)]
    print(f"design {args.design}; inputs in {tmp}")
    print(f"{'input':52s} {'size':>9s} {'status':>7s} {'s':>6s} {'MB RSS':>7s}  goal")
    ok_all = True
    for i, (name, kind, chunks, skip, max_s, max_mb) in enumerate(cases):
        if args.only not in name:
            continue
        path = os.path.join(tmp, f"{i:02d}-{kind}.txt")
        with open(path, "w") as f:
            for c in chunks:
                f.write(c)
        cmd = [sys.executable, "-m", "vmapsim", "replay", f"--{kind}", path, "--design", args.design,
               "--no-vmallocinfo", "--no-snapshots"] if kind == "trace" else \
              [sys.executable, "-m", "vmapsim", "replay", f"--{kind}", path, "--design", args.design,
               "--no-vmallocinfo"]
        if skip:
            cmd.append("--skip-bad")
        rc, secs, mb, err = run(cmd)
        ok = rc in (0, 1) and "Traceback" not in err and secs <= max_s and mb <= max_mb
        ok_all &= ok
        what = "replayed" if rc == 0 else "refused" if rc == 1 else f"exit {rc}"
        print(f"{name[:52]:52s} {os.path.getsize(path) / MB:7.1f}MB {what:>8s} {secs:6.1f} {mb:7.0f}  "
              f"{'ok' if ok else 'MISSED'}")
        print(f"    $ {' '.join(cmd[1:])}")
        if rc == 1:
            print(f"    {err.strip().splitlines()[0][:150]}")
        os.unlink(path)
    os.rmdir(tmp)
    print("goal (1 MB inputs: 30 s, 300 MB; junk with --skip-bad: 300 MB): "
          + ("met by every input" if ok_all else "MISSED"))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
