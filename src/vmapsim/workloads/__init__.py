"""Workloads and real inputs for the model: /proc/vmallocinfo snapshots, ftrace traces,
their replay. Submodules are imported on demand (``from vmapsim.workloads import trace``)
so importing this package costs nothing."""

from __future__ import annotations

from ..errors import VmapError


class InputFormatError(VmapError, ValueError):
    """A line of an input file (vmallocinfo snapshot, ftrace text) is malformed.

    ``path``, ``lineno`` (1-based) and ``expected`` say where and what was wanted;
    the message reads ``FILE:LINE: expected ...; got '...'``.
    """

    def __init__(self, path: str, lineno: int, expected: str, line: str) -> None:
        self.path = path
        self.lineno = lineno
        self.expected = expected
        self.line = line
        shown = line.rstrip("\n")
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{path}:{lineno}: expected {expected}; got {shown!r}")


__all__ = ["InputFormatError"]
