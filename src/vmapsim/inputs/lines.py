"""The readers' shared error path: numbered lines of bounded length, the bad lines
kept (the first ``MAX_BAD`` and a count), and the limits of the model's machine
every number read from a file is checked against before anything is built.

A reader takes each line from :func:`numbered_lines`, reports a malformed one with
``BadLines.add(InputFormatError(...))`` (which raises at once unless the reader
skips bad lines) and keeps going. So a file of any size is read in memory bounded by
``MAX_LINE`` and ``MAX_BAD``, and every refusal reads ``FILE:LINE: expected ...;
got ...``, naming the value the file gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TextIO

from ..errors import ConfigError, VmapError

#: The longest line a reader takes (ftrace and vmallocinfo lines are under 300
#: characters; a longer one is reported as bad without being matched or kept).
MAX_LINE = 2048
#: Bad lines kept for the report under ``--skip-bad``; the rest are only counted.
MAX_BAD = 20

#: The model's machine (``hw/machine.py``, ``hw/physmem.py``): CPUs 0..MAX_CPUS-1,
#: NUMA nodes 0..MAX_NODES-1.
MAX_CPUS = 1024
MAX_NODES = 1024
#: The largest memory the readers give the machine they build for an input (a
#: snapshot's rebuild, a trace's replay): 1 GiB of page frames, ``Kernel()``'s
#: default. A frame the model allocates and maps costs 300-800 bytes of the host's
#: memory, so even a machine filled to the last page stays under 300 MB.
INPUT_MEM_PAGES = 1 << 18
#: Values the kernel prints are C longs: 0..2**64-1.
U64 = (1 << 64) - 1
#: Where kernel addresses start: the upper half of the address space, on every
#: kernel the model reads (x86_64 from 0xffff800000000000; 32-bit snapshots from
#: 0x80000000).
KERNEL_HALF_64 = 1 << 63
KERNEL_HALF_32 = 1 << 31


class InputFormatError(VmapError, ValueError):
    """A line of an input file (vmallocinfo snapshot, ftrace text) is malformed or
    holds a value the model cannot take.

    ``path``, ``lineno`` (1-based; 0 for the file as a whole), ``expected`` and
    ``value`` (what the file gave, if one value is at fault) say where and what was
    wanted; the message reads ``FILE:LINE: expected ...; got VALUE in '...'`` (or
    ``got '...'`` when the whole line is at fault).
    """

    def __init__(self, path: str, lineno: int, expected: str, line: str, value: str | None = None) -> None:
        self.path = path
        self.lineno = lineno
        self.expected = expected
        self.line = line
        self.value = value
        shown = line.rstrip("\n")
        if len(shown) > 120:
            shown = shown[:117] + "..."
        where = f"{path}:{lineno}" if lineno else path
        got = f"{value} in {shown!r}" if value is not None and shown else value if value is not None \
            else repr(shown)
        super().__init__(f"{where}: expected {expected}; got {got}")


class BadLines:
    """The bad lines of one input: raised at once, or (``skip``) counted, the first
    ``MAX_BAD`` in line order kept."""

    __slots__ = ("skip", "count", "_kept")

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.count = 0
        self._kept: list[InputFormatError] = []

    def add(self, e: InputFormatError) -> None:
        if not self.skip:
            raise e
        self.count += 1
        kept = self._kept
        kept.append(e)
        if len(kept) > 4 * MAX_BAD:
            kept.sort(key=lambda x: x.lineno)
            del kept[MAX_BAD:]

    def first(self) -> list[InputFormatError]:
        """The first ``MAX_BAD`` bad lines, in line order."""
        self._kept.sort(key=lambda x: x.lineno)
        del self._kept[MAX_BAD:]
        return list(self._kept)

    def lines(self) -> set[int]:
        return {e.lineno for e in self._kept}


def numbered_lines(source: TextIO | Iterable[str], path: str, bad: BadLines) -> Iterator[tuple[int, str]]:
    """``(lineno, line)`` of ``source`` (a file, or lines), the line without its
    newline; a line longer than ``MAX_LINE`` goes to ``bad`` (raised, or counted and
    skipped) and is never held whole."""
    limit = MAX_LINE
    readline = getattr(source, "readline", None)
    if readline is None:
        for n, line in enumerate(source, 1):  # type: ignore[arg-type]
            if len(line) > limit + 1:
                bad.add(_too_long(path, n, line[:limit], len(line)))
                continue
            yield n, line.rstrip("\r\n")
        return
    n = 0
    while True:
        chunk = readline(limit + 1)
        if not chunk:
            return
        n += 1
        if len(chunk) > limit and not chunk.endswith("\n"):
            size = len(chunk)
            head = chunk[:120]
            while chunk and not chunk.endswith("\n"):  # the rest of the line, piece by piece
                chunk = readline(1 << 16)
                size += len(chunk)
            bad.add(_too_long(path, n, head, size))
            continue
        yield n, chunk.rstrip("\r\n")


def _too_long(path: str, n: int, head: str, size: int) -> InputFormatError:
    return InputFormatError(path, n, f"a line of at most {MAX_LINE} characters", head,
                            f"a line of {size:,} characters")


def open_input(path: str) -> TextIO:
    """An input file opened for the readers (undecodable bytes replaced); ConfigError
    naming the file if it cannot be read."""
    try:
        return open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def kernel_address(value: int, wide: bool = True) -> bool:
    """True if ``value`` lies in the kernel's half of a 64-bit (``wide``) or 32-bit
    address space."""
    return (KERNEL_HALF_64 if wide else KERNEL_HALF_32) <= value <= (U64 if wide else (1 << 32) - 1)


def no_input(path: str, lines: int, bad: BadLines, what: str) -> InputFormatError:
    """The error for an input with nothing in it to use: empty, header-only, or every
    line bad."""
    if bad.count:
        got = f"none among {lines:,} lines ({bad.count:,} malformed, skipped)"
    elif lines:
        got = f"none in {lines:,} lines (header or blank lines only)"
    else:
        got = "an empty file"
    return InputFormatError(path, 0, what, "", got)
