"""/proc/vmallocinfo snapshots: the reader of both formats (:mod:`.vmallocinfo_26`,
:mod:`.vmallocinfo_modern`), one area per line, ``0x<start>-0x<end> <size>`` first,
size in bytes including the guard page.

Hashed addresses (``%p`` hashing, ``kptr_restrict``) are detected when the printed
``end - start`` does not equal the size on most lines; the areas are then laid out
in file order by the rebuild. With real addresses every line is checked: page
aligned, ``end - start`` equal to the size, in the kernel's half of the address
space, not overlapping another; ``N<node>=`` names a node the model's machine can
have. Each refusal names the file, the line and the value; everything is parsed
before anything is applied to a Kernel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from ..mm.constants import PAGE_SIZE
from . import vmallocinfo_26 as v26
from . import vmallocinfo_modern as modern
from .lines import MAX_NODES, BadLines, InputFormatError, kernel_address, no_input, numbered_lines, open_input

#: The words vmallocinfo prints for vm_struct flags, both formats; 0 = printed by
#: modern kernels, not modelled by vmapsim (reported as such when rebuilding).
KIND_WORDS: dict[str, int] = {**v26.WORDS, **modern.WORDS}
WORD_ORDER = ("ioremap", "vmalloc", "vmap", "user", "dma-coherent", "vpages", "sparse")

_HEAD_RE = re.compile(r"0x([0-9a-fA-F]{1,16})-0x([0-9a-fA-F]{1,16})\s+(\d{1,20})(?:\s+(.*?))?\s*$")
_NODE_RE = re.compile(r"N(\d{1,9})=(\d{1,20})$")
_PAGES_RE = re.compile(r"pages=(\d{1,20})$")

_ATTR_EXPECTED = ("pages=<n>, phys=<addr>, one of " + "/".join(WORD_ORDER)
                  + ", or N<node>=<pages> after the caller")


@dataclass(slots=True)
class Area:
    """One line of /proc/vmallocinfo."""

    lineno: int
    start: int
    end: int
    size: int
    kind: str  # "vm" (a vm_struct), "unpurged" (lazily freed), "vm_map_ram" (a vmap block)
    caller: str = ""
    pages: int | None = None
    phys: int | None = None
    words: tuple[str, ...] = ()
    nodes: dict[int, int] = field(default_factory=dict)
    form: str = ""  # the format the line shows ("2.6", "modern"), "" if either

    @property
    def flags(self) -> int:
        f = 0
        for w in self.words:
            f |= KIND_WORDS[w]
        return f

    @property
    def label(self) -> str:
        """The area's kind for summaries: vmalloc, vmap, ioremap, ... or unpurged/vm_map_ram."""
        if self.kind != "vm":
            return self.kind
        for w in ("vmalloc", "vmap", "ioremap"):
            if w in self.words:
                return w
        return self.words[0] if self.words else "other"


@dataclass
class Snapshot:
    """A parsed /proc/vmallocinfo: the areas (file order), the bad lines skipped
    (``bad``: the first ``MAX_BAD`` of them, ``bad_count``: all)."""

    path: str
    areas: list[Area]
    bad: list[InputFormatError]
    hashed: bool
    fmt: str  # "2.6", "modern" or "either"
    lines: int = 0
    bad_count: int = 0


def _parse_line(path: str, lineno: int, line: str) -> Area:
    m = _HEAD_RE.match(line)
    if m is None:
        raise InputFormatError(path, lineno, "'0x<start>-0x<end> <size>' followed by the area's description", line)
    start, end, size = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))
    if size <= 0 or size % PAGE_SIZE:
        raise InputFormatError(path, lineno, f"a size that is a positive multiple of {PAGE_SIZE}", line,
                               str(size))
    rest = m.group(4) or ""
    special = modern.SPECIAL.get(rest)
    if special is not None:
        return Area(lineno, start, end, size, special, form=modern.NAME)
    tokens = rest.split()
    a = Area(lineno, start, end, size, "vm")
    i = 0
    if tokens and not _is_attr(tokens[0]):
        a.caller = tokens[0]
        i = 1
        if i < len(tokens) and tokens[i].startswith("[") and tokens[i].endswith("]"):
            a.caller += " " + tokens[i]  # %pS of a module symbol: "sym+0x1/0x2 [mod]"
            i += 1
    words: list[str] = []

    def bad(expected: str, value: str | None = None) -> InputFormatError:
        return InputFormatError(path, lineno, expected, line, value)

    for t in tokens[i:]:
        if t in KIND_WORDS:
            if t in words:
                raise bad(f"{t!r} at most once")
            words.append(t)
            if t in modern.WORDS:
                a.form = modern.NAME
            continue
        pm = _PAGES_RE.match(t)
        if pm:
            if a.pages is not None:
                raise bad("pages= at most once")
            a.pages = int(pm.group(1))
            continue
        ph = modern.PHYS_RE.match(t)
        form = modern.NAME
        if ph is None:
            ph = v26.PHYS_RE.match(t)
            form = v26.NAME
        if ph:
            if a.phys is not None:
                raise bad("phys= at most once")
            a.phys = int(ph.group(1), 16)
            a.form = form
            continue
        nm = _NODE_RE.match(t)
        if nm:
            node = int(nm.group(1))
            if node >= MAX_NODES:
                raise bad(f"N<node>= with a node 0..{MAX_NODES - 1} (the model's machine has at most "
                          f"{MAX_NODES} nodes)", t)
            if node in a.nodes:
                raise bad(f"N{node}= at most once")
            a.nodes[node] = int(nm.group(2))
            continue
        raise bad(_ATTR_EXPECTED + f" (not {t!r})")
    a.words = tuple(words)
    if a.nodes:
        if a.pages is None:
            raise bad("pages=<n> before the N<node>=<pages> counts")
        if sum(a.nodes.values()) != a.pages:
            raise bad(f"N<node>= counts summing to pages={a.pages}")
    if a.pages is not None and a.pages > size // PAGE_SIZE:
        raise bad(f"pages= at most the area's {size // PAGE_SIZE} pages", f"pages={a.pages}")
    return a


def _is_attr(t: str) -> bool:
    return t in KIND_WORDS or t.startswith(("pages=", "phys=")) or _NODE_RE.match(t) is not None


def parse_vmallocinfo(lines: Iterable[str] | str | TextIO, path: str = "<vmallocinfo>",
                      skip_bad: bool = False) -> Snapshot:
    """Parse a whole snapshot. A bad line raises InputFormatError (the first one, in
    line order) unless ``skip_bad``, which drops and counts it (``Snapshot.bad_count``;
    the first of them in ``Snapshot.bad``). An empty text is an empty snapshot (the
    model's own vmallocinfo may be); ``read_vmallocinfo`` refuses an empty file."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    areas: list[Area] = []
    bad = BadLines(skip_bad)
    texts: dict[int, str] = {}
    n = 0
    for n, line in numbered_lines(lines, path, bad):
        if not line.strip():
            continue
        try:
            a = _parse_line(path, n, line)
        except InputFormatError as e:
            bad.add(e)
            continue
        areas.append(a)
        texts[n] = line
    real = sum(1 for a in areas if a.end - a.start == a.size)
    hashed = bool(areas) and real * 2 < len(areas)
    errors: list[InputFormatError] = []
    if not hashed:
        wide = any(a.end > 1 << 32 for a in areas)
        for a in areas:
            if a.end - a.start != a.size:
                errors.append(InputFormatError(path, a.lineno, "end - start equal to the size (the other lines "
                                               "of this file have real addresses)", texts[a.lineno]))
            elif a.start % PAGE_SIZE:
                errors.append(InputFormatError(path, a.lineno, "page-aligned addresses", texts[a.lineno]))
            elif not kernel_address(a.start, wide):
                errors.append(InputFormatError(
                    path, a.lineno, "a kernel address (" + ("0x8000000000000000" if wide else "0x80000000")
                    + " and above, as the other lines of this file)", texts[a.lineno], f"{a.start:#x}"))
        dropped = {e.lineno for e in errors}
        last_end, last_line = -1, 0
        for a in sorted((a for a in areas if a.lineno not in dropped), key=lambda a: (a.start, a.lineno)):
            if a.start < last_end:
                ln = max(a.lineno, last_line)
                errors.append(InputFormatError(path, ln, f"an area not overlapping the one on line "
                                               f"{min(a.lineno, last_line)}", texts[ln]))
                dropped.add(ln)
                if ln == a.lineno:
                    continue
            last_end, last_line = a.end, a.lineno
    if errors:
        errors.sort(key=lambda e: e.lineno)
        if not skip_bad:
            raise errors[0]  # the reading pass raised at its first bad line already
        for err in errors:
            bad.add(err)
        gone = {err.lineno for err in errors}
        areas = [a for a in areas if a.lineno not in gone]
    forms = {a.form for a in areas if a.form}
    if hashed:
        forms.add(modern.NAME)
    fmt = forms.pop() if len(forms) == 1 else "either"
    return Snapshot(path, areas, bad.first(), hashed, fmt, n, bad.count)


def read_vmallocinfo(path: str, skip_bad: bool = False) -> Snapshot:
    """Read and parse a snapshot file (``cat /proc/vmallocinfo > FILE`` as root); an
    InputFormatError if it holds no area (empty, or every line bad)."""
    with open_input(path) as f:
        snap = parse_vmallocinfo(f, path, skip_bad)
    if not snap.areas:
        raise no_input(path, snap.lines, _counted(snap), "at least one area line '0x<start>-0x<end> <size> ...'")
    return snap


def _counted(snap: Snapshot) -> BadLines:
    b = BadLines(True)
    b.count = snap.bad_count
    return b
