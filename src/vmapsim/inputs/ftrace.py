"""ftrace text output of the vmalloc layer (``/sys/kernel/tracing/trace``): the line
prefix, the operations a trace holds, and the reader of a whole trace.

Two forms of event are read, and may be mixed in one file: Linux 6.4+'s tracepoints
(:mod:`.tracepoint`) and the kprobe events of the real captures (:mod:`.kprobe`).
A call is paired with its return by task PID and CPU (a task that migrated in between
by PID alone); an allocation made inside vm_map_ram (a new vmap block, or a large
mapping) is attached to that vm_map_ram call.

Every line is checked before anything is built: a CPU beyond the model's machine, a
``#P:`` header with more CPUs than it has, an address outside the kernel's half, a
size or count that is no C value, are bad lines naming the file, the line and the
value. An empty or header-only trace is an error too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from .lines import MAX_CPUS, BadLines, InputFormatError, no_input, numbered_lines, open_input

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
_LOST_RE = re.compile(r"CPU:\s*\d+ \[LOST (\d+) EVENTS\]")
_NCPU_RE = re.compile(r"#P:(\d+)")


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
    """A parsed trace: the operations, the CPUs, what was skipped (``bad``: the first
    ``MAX_BAD`` bad lines, ``bad_count``: all of them)."""

    path: str
    ops: list[Op]
    nr_cpus: int
    lines: int
    events: int
    bad: list[InputFormatError] = field(default_factory=list)
    forms: set[str] = field(default_factory=set)
    lost_events: int = 0
    unfinished: int = 0  # calls still open at the end of the trace
    bad_count: int = 0

    @property
    def vstart(self) -> int | None:
        """The traced kernel's VMALLOC_START: the ``vstart`` most of its allocations
        searched from (the earliest of equals), so one request for another range (or
        one odd line) does not move every address."""
        seen: Counter[int] = Counter()
        for op in self.ops:
            if op.kind == ALLOC or (op.kind == MAP_RAM and op.c):
                seen[op.c] += 1
        return seen.most_common(1)[0][0] if seen else None

    def block_size(self) -> int | None:
        """The size of the vmap blocks vm_map_ram allocated in this trace, if any."""
        op = self.block_op()
        return None if op is None or op.block is None else op.block[1] - op.block[0]

    def block_op(self) -> Op | None:
        """The first vm_map_ram that allocated a vmap block (not a large mapping)."""
        for op in self.ops:
            if op.kind == MAP_RAM and op.block is not None and op.a <= 64:
                return op
        return None


def _split_line(line: str) -> tuple[int, int, str, str] | None:
    """(pid, cpu, event, body) of one ftrace line, or None if it is not one."""
    m = _PREFIX_RE.match(line)
    if m is None:
        return None
    return int(m.group(2)), int(m.group(3)), m.group(5), m.group(6).rstrip("\r\n")


class Parser:
    """The reader's state: the operations so far, the calls still open (keyed by
    (pid, cpu)), the bad lines."""

    def __init__(self, path: str, skip_bad: bool) -> None:
        self.path = path
        self.bad = BadLines(skip_bad)
        self.ops: list[Op] = []
        self.forms: set[str] = set()
        self.nr_cpus = 0
        self.max_cpu = -1
        self.events = 0
        self.lost = 0
        self.open_alloc: dict[tuple[int, int], tuple[Op, str]] = {}
        self.open_map: dict[tuple[int, int], tuple[Op, str]] = {}

    def error(self, lineno: int, expected: str, line: str, value: str | None = None) -> None:
        self.bad.add(InputFormatError(self.path, lineno, expected, line, value))

    def feed(self, lines: Iterable[str] | TextIO) -> int:
        from . import kprobe, tracepoint  # they build on this module's Op

        n = 0
        split = _split_line
        tps = tracepoint.FORMS
        for n, line in numbered_lines(lines, self.path, self.bad):
            if line[:1] == "#":
                m = _NCPU_RE.search(line)
                if m:
                    self.header_cpus(n, line, m.group(1))
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
            if cpu >= MAX_CPUS:
                self.error(n, f"a CPU number 0..{MAX_CPUS - 1} (the model's machine has 1..{MAX_CPUS} CPUs)",
                           line, f"CPU [{cpu}]")
                continue
            form = tps.get(name)
            if form is not None:
                if not tracepoint.handle(self, n, pid, cpu, name, body, line, form):
                    continue
            elif not kprobe.handle(self, n, pid, cpu, body, line):
                continue
            self.events += 1
            if cpu > self.max_cpu:
                self.max_cpu = cpu
        return n

    def header_cpus(self, n: int, line: str, text: str) -> None:
        cpus = int(text) if len(text) < 12 else MAX_CPUS + 1
        if not 1 <= cpus <= MAX_CPUS:
            self.error(n, f"#P:<CPUs> with 1..{MAX_CPUS} CPUs (the model's machine has at most {MAX_CPUS})",
                       line, f"#P:{text}")
        elif self.nr_cpus == 0:
            self.nr_cpus = cpus


def parse_trace(lines: Iterable[str] | str | TextIO, path: str = "<trace>", skip_bad: bool = False) -> Trace:
    """Parse a whole trace (both forms). A bad line raises InputFormatError naming the
    file, the line, the expected form and the value at fault, unless ``skip_bad``
    (then counted in ``bad_count``, the first of them kept in ``bad``). A trace with
    no event at all (empty, header only, or every line bad) is an InputFormatError."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    p = Parser(path, skip_bad)
    n = p.feed(lines)
    if not p.events:
        raise no_input(path, n, p.bad, "at least one vmalloc event (the probes of kprobe_events, or "
                       "the alloc_vmap_area, free_vmap_area_noflush and purge_vmap_area_lazy tracepoints)")
    unfinished = len(p.open_alloc) + len(p.open_map)
    return Trace(path, p.ops, max(p.nr_cpus, p.max_cpu + 1, 1), n, p.events, p.bad.first(), p.forms,
                 p.lost, unfinished, p.bad.count)


def read_trace(path: str, skip_bad: bool = False) -> Trace:
    """Read and parse a trace file (``cat /sys/kernel/tracing/trace > FILE``)."""
    with open_input(path) as f:
        return parse_trace(f, path, skip_bad)
