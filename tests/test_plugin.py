"""Designs as plug-ins (issue 8): a design registered from the test suite runs through
every command without touching the package, and nothing outside ``mm/`` asks a
kernel which design it is."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmapsim import cli
from vmapsim.errors import ConfigError
from vmapsim.mm import designs
from vmapsim.mm.designs import DesignInfo
from vmapsim.mm.rewrite import Rewrite
from vmapsim.mm.vmalloc import Kernel
from vmapsim.workloads import trace as tr
from vmapsim.workloads import vmallocinfo as vi

HERE = Path(__file__).parent
REAL = HERE / "fixtures" / "real-linux-6.1"
SRC = HERE.parent / "src" / "vmapsim"

#: the toy purges once 512 pages are lazily freed (2.6.28: 32 MiB per fls(CPUs))
TOY_LAZY_MAX = 512


@pytest.fixture(scope="module")
def toy() -> Iterator[type[Kernel]]:
    """A toy 9.9: the 2.6.28 design purging its lazily freed areas at 512 pages."""
    info = DesignInfo(name="toy-9.9", aliases=("toy",), kernel="Toy 9.9 (the test suite's)",
                      changed=f"lazy_max_pages() {TOY_LAZY_MAX}",
                      commit="(none: tests/test_plugin.py)", leaves_out="everything a toy leaves out")

    class Toy(Rewrite, design=info):
        def lazy_max_pages(self) -> int:
            return TOY_LAZY_MAX

    try:
        yield Toy
    finally:
        designs.unregister("toy-9.9")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out


def test_registered_under_its_name_and_alias(toy: type[Kernel]) -> None:
    assert designs.resolve("toy") == "toy-9.9"
    assert designs.design_names()[-1] == "toy-9.9"  # after 6.x: its version sorts last
    k = Kernel(cpus=2, design="toy")
    assert type(k) is toy and k.design == "toy-9.9"
    assert k.lazy_max_pages() == TOY_LAZY_MAX < Kernel(cpus=2, design="2.6.28").lazy_max_pages()


def test_designs_command_lists_it(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_cli(capsys, "designs")
    assert rc == 0 and "toy-9.9 (also: toy): Toy 9.9 (the test suite's)" in out
    rc, out = run_cli(capsys, "designs", "--json")
    got = {d["name"]: d for d in json.loads(out)["results"]}
    assert rc == 0 and got["toy-9.9"]["aliases"] == ["toy"]


def test_bench_computes_its_cells(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_cli(capsys, "bench", "--design", "2.6.28,toy", "--threads", "1,2", "--ops", "300", "--json")
    assert rc == 0
    cells = {(r["design"], r["threads"]): r for r in json.loads(out)["results"]}
    assert set(cells) == {(d, t) for d in ("2.6.28", "toy-9.9") for t in (1, 2)}
    for t in (1, 2):
        toy_cell = cells[("toy-9.9", t)]
        assert toy_cell["ops"] == 300 * t and toy_cell["ns_per_op"] > 0
        assert toy_cell["published_ns_per_op"] is None  # the seed never measured a toy
        # 300 ops of 4 pages stay under 2.6.28's lazy limit, not under the toy's
        assert cells[("2.6.28", t)]["purges"] == 0 < toy_cell["purges"]
    rc, out = run_cli(capsys, "bench", "--design", "toy", "--threads", "1", "--ops", "100")
    assert rc == 0 and "toy-9.9 (vmapsim)" in out


def test_profile_of_the_toy(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_cli(capsys, "profile", "--design", "toy", "--threads", "2", "--ops", "300", "--json")
    assert rc == 0
    (prof,) = json.loads(out)["results"]
    assert prof["design"] == "toy-9.9" and prof["ops"] == 600 and prof["total_ns"] > 0
    functions = {e["function"] for e in prof["entries"]}
    assert {"vmap_page_range", "bitmap_find_free_region", "touch"} <= functions
    assert "__purge_vmap_area_lazy" in functions  # the toy's early purges show


def test_stress_on_the_toy(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_cli(capsys, "stress", "--design", "toy", "--nr-threads", "2", "--cpus", "2",
                      "--test-loop-count", "40", "--run-test-mask", "0x7")
    assert rc == 0
    assert out.startswith("# vmapsim stress: toy-9.9, 2 worker(s) on 2 CPUs")
    summaries = re.findall(r"Summary: (\w+) passed: (\d+) failed: (\d+)", out)
    assert len(summaries) == 6 and all(p == "1" and f == "0" for _, p, f in summaries)


def test_replay_trace_on_the_toy(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    path = str(REAL / "forkstorm" / "trace.txt")
    rc, out = run_cli(capsys, "replay", "--trace", path, "--design", "2.6.28,toy", "--json",
                      "--no-vmallocinfo")
    assert rc == 0
    runs = {r["design"]: r for r in json.loads(out)["results"]}
    assert set(runs) == {"2.6.28", "toy-9.9"}
    toy_run, base = runs["toy-9.9"], runs["2.6.28"]
    assert toy_run["alloc_compared"] == base["alloc_compared"] > 1000
    assert base["match_rate"] == 1.0 and base["model_purges"] == base["kernel_purges"] == 1
    # purging at 512 pages, the toy frees the stacks' ranges early and reuses them: its
    # addresses part from the traced kernel's, which purged once
    assert toy_run["match_rate"] < 0.5 and toy_run["model_purges"] > 10 and toy_run["check_ok"]


def test_replay_vmallocinfo_on_the_toy(toy: type[Kernel], capsys: pytest.CaptureFixture[str]) -> None:
    path = str(REAL / "xfsdir" / "vmallocinfo-after.txt")
    rc, out = run_cli(capsys, "replay", "--vmallocinfo", path, "--design", "toy", "--json")
    assert rc == 0
    (doc,) = json.loads(out)["results"]
    snap = vi.read_vmallocinfo(path)
    assert doc["design"] == "toy-9.9"
    assert doc["rebuilt"] == len(snap.areas) - sum(c["count"] for c in doc["not_modelled"]) > 100
    assert doc["model"]["by_kind"]["vm_map_ram"] == doc["captured"]["by_kind"]["vm_map_ram"] > 0
    assert doc["compare"]["by_kind"]["vm_map_ram"] == {"kernel": 3, "model": 3}
    rc, out = run_cli(capsys, "replay", "--vmallocinfo", path, "--design", "toy")
    assert rc == 0 and "rebuilt on design toy-9.9" in out


def test_trace_then_replay_on_the_toy(toy: type[Kernel], capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    out_file = tmp_path / "toy.txt"
    rc, _ = run_cli(capsys, "trace", "--design", "toy", "--workload", "mixed", "--ops", "1500",
                    "--cpus", "2", "--out", str(out_file))
    assert rc == 0
    t = tr.read_trace(str(out_file))
    assert {"alloc", "free", "map_ram", "purge"} <= {op.kind for op in t.ops}
    rc, out = run_cli(capsys, "replay", "--trace", str(out_file), "--design", "toy", "--json",
                      "--no-vmallocinfo")
    (doc,) = json.loads(out)["results"]
    assert rc == 0 and doc["design"] == "toy-9.9"
    assert doc["alloc_compared"] + doc["map_compared"] > 500
    assert doc["match_rate"] == 1.0 and doc["model_purges"] == doc["kernel_purges"] > 0  # its own trace, exactly


def test_recorder_refuses_a_design_without_tracepoints(toy: type[Kernel]) -> None:
    class Silent(toy):  # type: ignore[misc, valid-type]  # a kernel, not a registered design
        tracepoints = frozenset()

    with pytest.raises(ConfigError, match="fires none of the captures' tracepoints"):
        tr.TraceRecorder(Silent(cpus=1))
    k = Kernel(cpus=1, design="2.6.27")  # fires what 2.6.27 has: vfree and the flushes
    with tr.TraceRecorder(k) as rec:
        k.vfree(k.vmalloc(8192))
    assert [line.split(": ")[1] for line in rec.lines] == ["vfree", "flush"]
    assert k.tracer is None


# -- nothing outside mm/ asks which design it has ----------------------------------------
#: (what is forbidden, pattern); ``design`` names and classes belong to mm/ alone
FORBIDDEN = [
    ("a design compared with a name", re.compile(r"""\bdesign\s*(==|!=)\s*["']|["']\s*(==|!=)\s*[\w.]*\bdesign\b""")),
    ("a design looked up in a list of names", re.compile(r"""\bdesign\s+(not\s+)?in\s+[(\[{]\s*["']""")),
    ("isinstance on a design's types", re.compile(
        r"isinstance\([^)]*\b(Rewrite|Legacy|Linux\d+|VmlistKernel|vmap_block|vmap_area|vm_area_view)\b")),
    ("a class name compared", re.compile(r"(type\([^)]*\)|__class__)\.__name__\s*(==|!=|in\b)")),
    ("hasattr probing", re.compile(r"\bhasattr\(")),
    ("getattr probing of a kernel", re.compile(r"\bgetattr\(\s*(k|kernel|self\.k|self\.kernel)\b")),
    ("patching an object's methods", re.compile(r"\bsetattr\(")),
    ("moving the vmalloc space of a kernel", re.compile(r"\.VMALLOC_(START|END)\s*=[^=]")),
    ("importing a design module", re.compile(
        r"from\s+\.\.?mm\.(rewrite|legacy|linux\d+|vmlist|kva|holes)\b|from\s+\.\.?mm\s+import\s+.*\b(rewrite|legacy|linux\d+)\b")),
]
#: another object's private attribute (``k._cpu``, ``self.k._alloc_page``); ``self._x`` is fine
PRIVATE = re.compile(r"(?<![\w.])(?!self\b)[A-Za-z_]\w*(\.\w+)*\._[a-z]\w*|\bself\.\w+\._[a-z]")
PRIVATE_DIRS = ("sim", "workloads", "commands")


def scan(text: str, private: bool) -> list[tuple[int, str, str]]:
    """(line, what, text) for each forbidden construct in ``text`` (comments ignored)."""
    hits = []
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for what, pat in FORBIDDEN:
            if pat.search(code):
                hits.append((n, what, line.strip()))
        if private and PRIVATE.search(code.replace("from ._", "from _")):
            hits.append((n, "another object's private attribute", line.strip()))
    return hits


def test_the_scan_catches_each_forbidden_construct() -> None:
    planted = [
        'if k.design == "2.6.28":',
        "if design in ('legacy', 'rewrite'):",
        "if isinstance(k, Rewrite):",
        'if type(priv).__name__ == "vmap_block":',
        'if hasattr(k, "alloc_vmap_area"):',
        'block = getattr(k, "VMAP_BLOCK_SIZE", 0)',
        'setattr(self.k, name, wrapper)',
        "k.VMALLOC_START = addr",
        "from ..mm.rewrite import vmap_block",
        "p = k._alloc_page(node, GFP_KERNEL)",
        "self.k._ram_maps.get(a)",
    ]
    for line in planted:
        assert scan(line, private=True), line
    clean = ["for i, design in enumerate(names):", "from ._args import add_design",
             "self._in_map = True", "rs = [r for r in results if r.design == d]",
             "k.VMALLOC_START + 4096", "if k.has_vm_map_ram:"]
    for line in clean:
        assert not scan(line, private=True), line


def test_nothing_outside_mm_branches_on_the_design() -> None:
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "mm":
            continue
        private = rel.parts[0] in PRIVATE_DIRS or len(rel.parts) == 1
        for n, what, line in scan(path.read_text(encoding="utf-8"), private):
            hits.append(f"src/vmapsim/{rel}:{n}: {what}: {line}")
    assert not hits, "\n".join(hits)
    assert os.path.isdir(SRC / "workloads")  # the scan looked where the code is
