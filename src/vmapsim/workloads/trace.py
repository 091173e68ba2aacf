"""ftrace text output of the vmalloc layer: parse it into operations, and generate it
from the model.

Two forms are read (both may be mixed in one file):

- the tracepoints of Linux 6.4+ (``include/trace/events/vmalloc.h``), printed as
  ``alloc_vmap_area: va_start: %lu size=%lu align=%lu vstart=0x%lx vend=0x%lx failed=%d``,
  ``free_vmap_area_noflush: va_start=0x%lx nr_lazy=%lu nr_lazy_max=%lu`` and
  ``purge_vmap_area_lazy: start=0x%lx end=0x%lx num_purged=%u``;
- kprobe events as in the real captures (``../shared/data/real-linux-6.1``): entry
  probes ``(func+0x0/0xN) arg=val ...`` and return probes ``(caller+0xA/0xB <- func)
  arg=val``, on alloc_vmap_area, free_vmap_area_noflush, __purge_vmap_area_lazy, vfree,
  flush_tlb_kernel_range, vm_map_ram, vm_unmap_ram and vm_unmap_aliases. The probed
  function, not the probe's name, says what an event is.

An ``alloc`` is paired with its ``alloc_ret`` (and ``map_ram`` with ``map_ram_ret``) by
task PID and CPU; an allocation made inside vm_map_ram (a new vmap block, or a large
mapping) is attached to that vm_map_ram call.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import ConfigError
from ..mm.constants import GFP_KERNEL, PAGE_KERNEL, PAGE_SIZE, VM_ALLOC, VM_IOREMAP
from ..mm.vmalloc import Kernel
from . import InputFormatError

# operation kinds
ALLOC = "alloc"            # an area from alloc_vmap_area outside vm_map_ram
FREE = "free"              # free_vmap_area_noflush (kprobe) / the tracepoint
VFREE = "vfree"
MAP_RAM = "map_ram"        # vm_map_ram(count, node) -> addr (block allocation attached)
UNMAP_RAM = "unmap_ram"
PURGE = "purge"            # __purge_vmap_area_lazy entry / purge_vmap_area_lazy tracepoint
FLUSH = "flush"            # flush_tlb_kernel_range
UNMAP_ALIASES = "unmap_aliases"

_PREFIX_RE = re.compile(
    r"\s*(.*?)-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(\d+)\]\s+(?:[^\s\[]{4,5}\s+)?(\d+(?:\.\d+)?):\s+(\w+):\s?(.*)$"
)
_KPROBE_RE = re.compile(r"\((\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[(\w+)\])?(?: <- (\w+))?\)\s*(.*)$")
_TP_ALLOC_RE = re.compile(
    r"va_start: (\d+) size=(\d+) align=(\d+) vstart=0x([0-9a-f]+) vend=0x([0-9a-f]+) failed=(-?\d+)$")
_TP_FREE_RE = re.compile(r"va_start=0x([0-9a-f]+) nr_lazy=(\d+) nr_lazy_max=(\d+)$")
_TP_PURGE_RE = re.compile(r"start=0x([0-9a-f]+) end=0x([0-9a-f]+) num_purged=(\d+)$")
_LOST_RE = re.compile(r"CPU:\s*\d+ \[LOST (\d+) EVENTS\]")
_NCPU_RE = re.compile(r"#P:(\d+)")

TP_FORMS = {
    "alloc_vmap_area": ("'va_start: <dec> size=<dec> align=<dec> vstart=0x<hex> vend=0x<hex> failed=<int>'",
                        _TP_ALLOC_RE),
    "free_vmap_area_noflush": ("'va_start=0x<hex> nr_lazy=<dec> nr_lazy_max=<dec>'", _TP_FREE_RE),
    "purge_vmap_area_lazy": ("'start=0x<hex> end=0x<hex> num_purged=<dec>'", _TP_PURGE_RE),
}

#: probed function -> (event, the arguments it must carry); return probes end in "_ret".
KPROBE_FORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "alloc_vmap_area": ("alloc", ("size", "align", "vstart", "vend")),
    "alloc_vmap_area_ret": ("alloc_ret", ("va_start", "va_end")),
    "free_vmap_area_noflush": ("free_noflush", ("va_start", "va_end")),
    "__purge_vmap_area_lazy": ("purge", ("start", "end")),
    "__purge_vmap_area_lazy_ret": ("purge_ret", ()),
    "vfree": ("vfree", ("addr",)),
    "flush_tlb_kernel_range": ("flush", ("start", "end")),
    "vm_map_ram": ("map_ram", ("count", "node")),
    "vm_map_ram_ret": ("map_ram_ret", ("addr",)),
    "vm_unmap_ram": ("unmap_ram", ("addr", "count")),
    "vm_unmap_aliases": ("unmap_aliases", ()),
}

#: the probe definitions of the real captures (kprobe_events), for generated traces.
KPROBE_EVENTS = """\
p:alloc alloc_vmap_area size=%di align=%si vstart=%dx vend=%cx
r:alloc_ret alloc_vmap_area va_start=+0($retval):x64 va_end=+8($retval):x64
p:free_noflush free_vmap_area_noflush va_start=+0(%di):x64 va_end=+8(%di):x64
p:purge __purge_vmap_area_lazy start=%di end=%si
r:purge_ret __purge_vmap_area_lazy ret=$retval:u8
p:vfree vfree addr=%di
p:flush flush_tlb_kernel_range start=%di end=%si
p:map_ram vm_map_ram count=%si:u32 node=%dx:s32
r:map_ram_ret vm_map_ram addr=$retval:x64
p:unmap_ram vm_unmap_ram addr=%di:x64 count=%si:u32
p:unmap_aliases vm_unmap_aliases
"""


class Op:
    """One operation of the traced kernel, in trace order (allocations at their return).

    ``a``..``d`` hold the operation's numbers: ALLOC size, align, vstart, vend with the
    result in ``start``/``end`` (start None: failed); FREE start/end (end None when the
    tracepoint gave only va_start; ``a`` = nr_lazy then); VFREE ``start``; MAP_RAM
    ``a`` = count, ``b`` = node, ``start`` = address (0: failed), ``block`` = the block
    (or large area) allocated inside it; UNMAP_RAM ``start``, ``a`` = count;
    PURGE/FLUSH ``start``/``end`` (``a`` = num_purged from the tracepoint).
    """

    __slots__ = ("kind", "lineno", "cpu", "pid", "a", "b", "c", "d", "start", "end", "caller", "block")

    def __init__(self, kind: str, lineno: int, cpu: int, pid: int) -> None:
        self.kind = kind
        self.lineno = lineno
        self.cpu = cpu
        self.pid = pid
        self.a = self.b = self.c = self.d = 0
        self.start: int | None = None
        self.end: int | None = None
        self.caller = ""
        self.block: tuple[int, int, int] | None = None  # (va_start, va_end, lineno)

    def __repr__(self) -> str:
        return f"Op({self.kind}, line {self.lineno}, cpu {self.cpu}, start={self.start}, a={self.a})"


@dataclass
class Trace:
    """A parsed trace: the operations, the CPUs, what was skipped."""

    path: str
    ops: list[Op]
    nr_cpus: int
    lines: int
    events: int
    bad: list[InputFormatError] = field(default_factory=list)
    forms: set[str] = field(default_factory=set)
    lost_events: int = 0
    unfinished: int = 0  # calls still open at the end of the trace

    @property
    def vstart(self) -> int | None:
        """The traced kernel's VMALLOC_START: the ``vstart`` of the first allocation."""
        for op in self.ops:
            if op.kind == ALLOC or (op.kind == MAP_RAM and op.c):
                return op.c
        return None

    def block_size(self) -> int | None:
        """The size of the vmap blocks vm_map_ram allocated in this trace, if any."""
        for op in self.ops:
            if op.kind == MAP_RAM and op.block is not None and op.a <= 64:
                return op.block[1] - op.block[0]
        return None


def _split_line(line: str) -> tuple[int, int, str, str] | None:
    """(pid, cpu, event, body) of one ftrace line, or None if it is not one."""
    m = _PREFIX_RE.match(line)
    if m is None:
        return None
    return int(m.group(2)), int(m.group(3)), m.group(5), m.group(6).rstrip("\r\n")


class _Parser:
    def __init__(self, path: str, skip_bad: bool) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.ops: list[Op] = []
        self.bad: list[InputFormatError] = []
        self.forms: set[str] = set()
        self.nr_cpus = 0
        self.max_cpu = -1
        self.events = 0
        self.lost = 0
        # open calls, keyed by (pid, cpu): alloc, map_ram, purge
        self.open_alloc: dict[tuple[int, int], tuple[Op, str]] = {}
        self.open_map: dict[tuple[int, int], tuple[Op, str]] = {}

    def error(self, lineno: int, expected: str, line: str) -> None:
        e = InputFormatError(self.path, lineno, expected, line)
        if not self.skip_bad:
            raise e
        self.bad.append(e)

    def feed(self, lines: Iterable[str]) -> int:
        n = 0
        split = _split_line
        for n, line in enumerate(lines, 1):
            if line[:1] == "#":
                if self.nr_cpus == 0:
                    m = _NCPU_RE.search(line)
                    if m:
                        self.nr_cpus = int(m.group(1))
                continue
            parts = split(line)
            if parts is None:
                if not line.strip():
                    continue
                lm = _LOST_RE.search(line)
                if lm:
                    self.lost += int(lm.group(1))
                    continue
                self.error(n, "an ftrace line 'TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: ...'", line)
                continue
            pid, cpu, name, body = parts
            if cpu > self.max_cpu:
                self.max_cpu = cpu
            self.events += 1
            tp = TP_FORMS.get(name)
            if tp is not None:
                self.tracepoint(n, pid, cpu, name, body, line, tp)
            else:
                self.kprobe(n, pid, cpu, body, line)
        return n

    def tracepoint(self, n: int, pid: int, cpu: int, name: str, body: str, line: str,
                   form: tuple[str, re.Pattern[str]]) -> None:
        m = form[1].match(body.rstrip())
        if m is None:
            self.error(n, f"the {name} tracepoint as {form[0]}", line)
            return
        self.forms.add("tracepoint")
        g = m.groups()
        if name == "alloc_vmap_area":
            op = Op(ALLOC, n, cpu, pid)
            op.a, op.b, op.c, op.d = int(g[1]), int(g[2]), int(g[3], 16), int(g[4], 16)
            if int(g[5]) == 0:
                op.start = int(g[0])
                op.end = op.start + op.a
            op.caller = "alloc_vmap_area"
        elif name == "free_vmap_area_noflush":
            op = Op(FREE, n, cpu, pid)
            op.start = int(g[0], 16)
            op.a, op.b = int(g[1]), int(g[2])
        else:
            op = Op(PURGE, n, cpu, pid)
            op.start, op.end, op.a = int(g[0], 16), int(g[1], 16), int(g[2])
        self.ops.append(op)

    def kprobe(self, n: int, pid: int, cpu: int, body: str, line: str) -> None:
        m = _KPROBE_RE.match(body)
        if m is None:
            self.error(n, "a kprobe event '(func+0x0/0xN) arg=value ...' or "
                       "'(caller+0xA/0xB <- func) arg=value'", line)
            return
        sym, _mod, retfunc, rest = m.groups()
        func = retfunc + "_ret" if retfunc else sym
        form = KPROBE_FORMS.get(func)
        if form is None:
            self.error(n, "a probe on one of " + ", ".join(
                f for f in KPROBE_FORMS if not f.endswith("_ret")), line)
            return
        event, need = form
        args: dict[str, int] = {}
        for tok in rest.split():
            key, eq, val = tok.partition("=")
            try:
                if not eq or not key.isidentifier() or "_" in val:
                    raise ValueError
                args[key] = int(val, 0)
            except ValueError:
                self.error(n, f"arguments 'name=<number>' for {event} ({', '.join(need) or 'none'})", line)
                return
        missing = [a for a in need if a not in args]
        if missing:
            self.error(n, f"{event} with {', '.join(f'{a}=' for a in need)} (missing {', '.join(missing)})", line)
            return
        self.forms.add("kprobe")
        key = (pid, cpu)
        if event == "alloc":
            if key in self.open_alloc:
                prev = self.open_alloc[key][0]
                self.error(prev.lineno, f"an alloc_ret for this alloc (PID {pid}, CPU {cpu}) before the "
                           f"next alloc on line {n}", self.open_alloc[key][1])
            op = Op(ALLOC, n, cpu, pid)
            op.a, op.b, op.c, op.d = args["size"], args["align"], args["vstart"], args["vend"]
            self.open_alloc[key] = (op, line)
        elif event == "alloc_ret":
            got = self.open_alloc.pop(key, None)
            if got is None:
                got = self._cross_cpu(self.open_alloc, pid)
            if got is None:
                self.error(n, f"an alloc on PID {pid} CPU {cpu} before this alloc_ret", line)
                return
            op = got[0]
            start, end = args["va_start"], args["va_end"]
            if start == 0 or start > end or (start >= (1 << 64) - 4095):
                op.start = None  # ERR_PTR: the allocation failed
            elif end - start != op.a:
                self.error(n, f"va_end - va_start equal to the size {op.a:#x} of the alloc on line {op.lineno}", line)
                return
            else:
                op.start, op.end = start, end
            op.caller = sym
            mapping = self.open_map.get(key)
            if mapping is not None and retfunc and sym.startswith("vm_map_ram"):
                mop = mapping[0]
                mop.c, mop.d = op.c, op.d  # the range the block was searched in
                if op.start is not None:
                    mop.block = (op.start, op.end, op.lineno)  # type: ignore[assignment]
            else:
                self.ops.append(op)
        elif event == "free_noflush":
            op = Op(FREE, n, cpu, pid)
            op.start, op.end = args["va_start"], args["va_end"]
            if op.end <= op.start:
                self.error(n, "va_end above va_start", line)
                return
            self.ops.append(op)
        elif event == "vfree":
            op = Op(VFREE, n, cpu, pid)
            op.start = args["addr"]
            self.ops.append(op)
        elif event == "map_ram":
            if key in self.open_map:
                prev = self.open_map[key][0]
                self.error(prev.lineno, f"a map_ram_ret for this map_ram (PID {pid}, CPU {cpu}) before "
                           f"the next map_ram on line {n}", self.open_map[key][1])
            op = Op(MAP_RAM, n, cpu, pid)
            op.a, op.b = args["count"], args["node"]
            if op.a <= 0:
                self.error(n, "map_ram with count >= 1", line)
                return
            self.open_map[key] = (op, line)
        elif event == "map_ram_ret":
            got = self.open_map.pop(key, None)
            if got is None:
                got = self._cross_cpu(self.open_map, pid)
            if got is None:
                self.error(n, f"a map_ram on PID {pid} CPU {cpu} before this map_ram_ret", line)
                return
            op = got[0]
            op.start = args["addr"]
            op.caller = sym
            op.lineno = n
            self.ops.append(op)
        elif event == "unmap_ram":
            op = Op(UNMAP_RAM, n, cpu, pid)
            op.start, op.a = args["addr"], args["count"]
            self.ops.append(op)
        elif event in ("purge", "flush"):
            op = Op(PURGE if event == "purge" else FLUSH, n, cpu, pid)
            op.start, op.end = args["start"], args["end"]
            self.ops.append(op)
        elif event == "unmap_aliases":
            self.ops.append(Op(UNMAP_ALIASES, n, cpu, pid))
        # purge_ret: nothing to do

    @staticmethod
    def _cross_cpu(table: dict[tuple[int, int], tuple[Op, str]], pid: int) -> tuple[Op, str] | None:
        """A task that migrated between the call and its return: pair by PID alone
        (never for PID 0, the per-CPU idle tasks)."""
        if pid == 0:
            return None
        keys = [k for k in table if k[0] == pid]
        if len(keys) == 1:
            return table.pop(keys[0])
        return None


def parse_trace(lines: Iterable[str] | str, path: str = "<trace>", skip_bad: bool = False) -> Trace:
    """Parse a whole trace (both forms). A bad line raises InputFormatError naming the
    file, the line and the expected form, unless ``skip_bad`` (then counted in ``bad``)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    p = _Parser(path, skip_bad)
    n = p.feed(lines)
    unfinished = len(p.open_alloc) + len(p.open_map)
    p.bad.sort(key=lambda e: e.lineno)
    return Trace(path, p.ops, max(p.nr_cpus, p.max_cpu + 1, 1), n, p.events, p.bad, p.forms,
                 p.lost, unfinished)


def read_trace(path: str, skip_bad: bool = False) -> Trace:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_trace(f, path, skip_bad)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


# -- generating traces from the model ----------------------------------------------------
class TraceRecorder:
    """Record the model's vmalloc-layer events as kprobe events in the real captures' format.

    Sets ``k.tracer``: the kernel fires its tracepoints (``Kernel.trace()``) where the
    real captures' kprobes sit, internal calls included, as a kprobe sees every call.
    Works on any design that fires them (``k.tracepoints``); a design without vm_map_ram
    or lazy freeing simply has fewer kinds of lines. ``close()`` (or a ``with`` block)
    stops recording. Timestamps are a global clock of simulated time (ns -> s).
    """

    def __init__(self, k: Kernel, out: TextIO | None = None, comm: str = "vmapsim") -> None:
        known = {event for event, _ in KPROBE_FORMS.values()}
        if not known & k.tracepoints:
            raise ConfigError(f"design {k.design!r} fires none of the captures' tracepoints "
                              f"({', '.join(sorted(known))}): nothing to record")
        if k.tracer is not None:
            raise ConfigError("this kernel already has a tracer")
        self.k = k
        self.lines: list[str] = []
        self.out = out
        self.comm = comm
        self.ts = 0.0
        self.events = 0
        self._in_map = False
        self._format: dict[str, Callable[[dict[str, int]], str]] = {
            "alloc": self._alloc,
            "alloc_ret": self._alloc_ret,
            "free_noflush": self._free,
            "purge": self._purge,
            "flush": self._flush,
            "purge_ret": self._purge_ret,
            "vfree": self._vfree,
            "map_ram": self._map_ram,
            "map_ram_ret": self._map_ram_ret,
            "unmap_ram": self._unmap_ram,
            "unmap_aliases": self._unmap_aliases,
        }
        k.tracer = self._event

    def close(self) -> None:
        """Stop recording (the kernel's tracer is removed)."""
        if self.k.tracer == self._event:
            self.k.tracer = None

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, event: str, fields: dict[str, int]) -> None:
        fmt = self._format.get(event)
        if fmt is not None:
            self.emit(event, fmt(fields))

    def emit(self, event: str, body: str) -> None:
        cpu = self.k.this_cpu
        self.ts = max(self.ts + 1e-6, cpu.clock * 1e-9)
        line = (f"{self.comm:>16}-{1000 + cpu.id:<7d} [{cpu.id:03d}] ..... "
                f"{self.ts:12.6f}: {event}: {body}")
        self.events += 1
        if self.out is not None:
            self.out.write(line + "\n")
        else:
            self.lines.append(line)

    def header(self) -> str:
        n = self.events
        return (f"# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{n}   #P:{self.k.cpus}\n"
                "#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
                "#              | |         |   |||||     |         |\n")

    def text(self) -> str:
        return self.header() + "".join(line + "\n" for line in self.lines)

    # one formatter per event: the probe's own line as the captures print it
    @staticmethod
    def _alloc(f: dict[str, int]) -> str:
        return (f"(alloc_vmap_area+0x0/0x880) size={f['size']:#x} align={f['align']:#x} "
                f"vstart={f['vstart']:#x} vend={f['vend']:#x}")

    def _alloc_ret(self, f: dict[str, int]) -> str:
        caller = "vm_map_ram+0x2bb/0x980" if self._in_map else "__get_vm_area_node+0xb1/0x150"
        # a failed call returns ERR_PTR(-EBUSY); the probe reads +8 of it as 0
        s, e = (f["va_start"], f["va_end"]) if f["va_start"] else ((1 << 64) - 16, 0)
        return f"({caller} <- alloc_vmap_area) va_start={s:#x} va_end={e:#x}"

    @staticmethod
    def _free(f: dict[str, int]) -> str:
        return f"(free_vmap_area_noflush+0x0/0x340) va_start={f['va_start']:#x} va_end={f['va_end']:#x}"

    @staticmethod
    def _purge(f: dict[str, int]) -> str:
        return f"(__purge_vmap_area_lazy+0x0/0x730) start={min(f['start'], (1 << 64) - 1):#x} end={f['end']:#x}"

    @staticmethod
    def _flush(f: dict[str, int]) -> str:
        return f"(flush_tlb_kernel_range+0x0/0xc0) start={f['start']:#x} end={f['end']:#x}"

    @staticmethod
    def _purge_ret(f: dict[str, int]) -> str:
        return f"(drain_vmap_area_work+0x25/0x60 <- __purge_vmap_area_lazy) ret={f['ret']}"

    @staticmethod
    def _vfree(f: dict[str, int]) -> str:
        return f"(vfree+0x0/0xa0) addr={f['addr']:#x}"

    def _map_ram(self, f: dict[str, int]) -> str:
        self._in_map = True  # vm_map_ram() does not nest: its allocations are its own
        return f"(vm_map_ram+0x0/0x980) count={f['count']} node={f['node']}"

    def _map_ram_ret(self, f: dict[str, int]) -> str:
        self._in_map = False
        return f"(vmapsim_workload+0x54/0xe0 <- vm_map_ram) addr={f['addr']:#x}"

    @staticmethod
    def _unmap_ram(f: dict[str, int]) -> str:
        return f"(vm_unmap_ram+0x0/0x1c0) addr={f['addr']:#x} count={f['count']}"

    @staticmethod
    def _unmap_aliases(f: dict[str, int]) -> str:
        return "(vm_unmap_aliases+0x0/0x90)"


# -- workloads for generated traces --------------------------------------------------------
WORKLOADS = ("forkstorm", "xfsdir", "mixed")

THREAD_SIZE = 16384  # x86_64 kernel stacks: 16 KiB, THREAD_ALIGN-ed, plus the guard page


def run_workload(k: Kernel, name: str, ops: int, seed: int = 1, cleanup: bool = True) -> Iterator[int]:
    """Drive ``k`` with a built-in workload of about ``ops`` calls; yields the number of
    calls done so far from time to time. Deterministic for a given seed. Without
    ``cleanup`` the areas still alive at the end are left in place (for pictures)."""
    rng = random.Random(seed)
    map_ram: Callable[[Any, int], int | None] = k.vm_map_ram
    unmap_ram: Callable[[int, int], None] = k.vm_unmap_ram
    if not k.has_vm_map_ram:  # before 2.6.28 there was no vm_map_ram: XFS mapped its buffers with vmap()
        map_ram = k.vmap
        unmap_ram = lambda addr, n: k.vunmap(addr)  # noqa: E731
    ncpu = k.cpus
    done = 0
    if name == "forkstorm":
        # rounds of concurrent forks: each takes a vmalloc'd stack, then all exit
        live: list[int] = []
        while done < ops:
            for _ in range(rng.randint(20, 200)):
                k.set_cpu(rng.randrange(ncpu))
                area = k.get_vm_area_node__(THREAD_SIZE, VM_ALLOC, k.VMALLOC_START, k.VMALLOC_END, -1,
                                            GFP_KERNEL, "kernel_clone+0xbf/0x430", align=THREAD_SIZE)
                if area is not None and k.vmalloc_area_node__(area, GFP_KERNEL, PAGE_KERNEL, -1,
                                                              area.caller) is not None:
                    live.append(area.addr)
                done += 1
            rng.shuffle(live)
            while len(live) > rng.randint(0, 8):
                k.set_cpu(rng.randrange(ncpu))
                k.vfree(live.pop())
                done += 1
            yield done
    elif name == "xfsdir":
        # 64 KiB directory buffers: vm_map_ram(16 pages) on many CPUs, LRU reclaim
        pool = [p for p in (k.alloc_page() for _ in range(16 * 64)) if p is not None]
        bufs: list[tuple[int, int]] = []
        cap = 48
        while done < ops:
            cpu = rng.randrange(ncpu)
            k.set_cpu(cpu)
            if len(bufs) >= cap or (bufs and rng.random() < 0.4):
                addr, c = bufs.pop(rng.randrange(min(len(bufs), 8)))
                unmap_ram(addr, c)
            else:
                i = rng.randrange(len(pool) - 16)
                got = map_ram(pool[i:i + 16], 16)
                if got is not None:
                    bufs.append((got, 16))
            done += 1
            if done % 5000 == 0:
                if rng.random() < 0.2:
                    k.vm_unmap_aliases()
                    done += 1
                yield done
        if cleanup:
            for addr, c in bufs:
                unmap_ram(addr, c)
            for p in pool:
                k.free_page(p)
        yield done
    elif name == "mixed":
        pool = [p for p in (k.alloc_page() for _ in range(256)) if p is not None]
        vm: list[int] = []
        vmaps: list[int] = []
        ram: list[tuple[int, int]] = []
        io: list[Any] = []
        while done < ops:
            k.set_cpu(rng.randrange(ncpu))
            r = rng.random()
            if r < 0.3:
                a = k.vmalloc(rng.randint(1, 40) * PAGE_SIZE)
                if a is not None:
                    vm.append(a)
            elif r < 0.5 and vm:
                k.vfree(vm.pop(rng.randrange(len(vm))))
            elif r < 0.6:
                n = rng.randint(1, 8)
                a = k.vmap(pool[:n], n)
                if a is not None:
                    vmaps.append(a)
            elif r < 0.65 and vmaps:
                k.vunmap(vmaps.pop(rng.randrange(len(vmaps))))
            elif r < 0.8:
                n = rng.choice((1, 2, 4, 8, 16, 100))
                a = map_ram(pool[:n], n)
                if a is not None:
                    ram.append((a, n))
            elif r < 0.95 and ram:
                unmap_ram(*ram.pop(rng.randrange(len(ram))))
            elif r < 0.98:
                area = k.get_vm_area(rng.randint(1, 64) * PAGE_SIZE, VM_IOREMAP)
                if area is not None:
                    io.append(area)
            elif io:
                k.free_vm_area(io.pop(rng.randrange(len(io))))
            elif r > 0.999:
                k.vm_unmap_aliases()
            done += 1
            if done % 2000 == 0:
                yield done
        if cleanup:
            for a in vm:
                k.vfree(a)
            for a in vmaps:
                k.vunmap(a)
            for a, n in ram:
                unmap_ram(a, n)
            for area in io:
                k.free_vm_area(area)
            for p in pool:
                k.free_page(p)
        yield done
    else:
        raise ConfigError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def generate_trace(workload: str = "mixed", ops: int = 10000, cpus: int = 4, seed: int = 1,
                   out: TextIO | None = None, design: str = "2.6.28",
                   **kernel_kw: Any) -> tuple[Kernel, TraceRecorder]:
    """Run a workload on a fresh Kernel of ``design`` while recording its trace."""
    k = Kernel(cpus=cpus, design=design, **kernel_kw)
    with TraceRecorder(k, out) as rec:
        for _ in run_workload(k, workload, ops, seed):
            pass
    return k, rec
