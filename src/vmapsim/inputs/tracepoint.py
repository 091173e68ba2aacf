"""The vmalloc tracepoints of Linux 6.4+ (``include/trace/events/vmalloc.h``), as
their ``TP_printk`` formats print them:

- ``alloc_vmap_area: va_start: %lu size=%lu align=%lu vstart=0x%lx vend=0x%lx failed=%d``
- ``free_vmap_area_noflush: va_start=0x%lx nr_lazy=%lu nr_lazy_max=%lu``
- ``purge_vmap_area_lazy: start=0x%lx end=0x%lx num_purged=%u``

The numbers are checked as the kprobe form's are (C longs, kernel addresses).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .ftrace import ALLOC, FREE, PURGE, Op
from .lines import U64, kernel_address

if TYPE_CHECKING:
    from .ftrace import Parser

_ALLOC_RE = re.compile(
    r"va_start: (\d{1,20}) size=(\d{1,20}) align=(\d{1,20}) vstart=0x([0-9a-f]{1,16}) vend=0x([0-9a-f]{1,16}) "
    r"failed=(-?\d{1,11})$")
_FREE_RE = re.compile(r"va_start=0x([0-9a-f]{1,16}) nr_lazy=(\d{1,20}) nr_lazy_max=(\d{1,20})$")
_PURGE_RE = re.compile(r"start=0x([0-9a-f]{1,16}) end=0x([0-9a-f]{1,16}) num_purged=(\d{1,10})$")

#: tracepoint -> (its format as the error shows it, the pattern)
FORMS = {
    "alloc_vmap_area": ("'va_start: <dec> size=<dec> align=<dec> vstart=0x<hex> vend=0x<hex> failed=<int>'",
                        _ALLOC_RE),
    "free_vmap_area_noflush": ("'va_start=0x<hex> nr_lazy=<dec> nr_lazy_max=<dec>'", _FREE_RE),
    "purge_vmap_area_lazy": ("'start=0x<hex> end=0x<hex> num_purged=<dec>'", _PURGE_RE),
}

KERNEL = "a kernel address (0x8000000000000000 and above)"


def handle(p: Parser, n: int, pid: int, cpu: int, name: str, body: str, line: str,
           form: tuple[str, re.Pattern[str]]) -> bool:
    """One tracepoint event into ``p``: True if it was a valid event."""
    m = form[1].match(body.rstrip())
    if m is None:
        p.error(n, f"the {name} tracepoint as {form[0]}", line)
        return False
    g = m.groups()
    if name == "alloc_vmap_area":
        va_start, size, align = int(g[0]), int(g[1]), int(g[2])
        vstart, vend, failed = int(g[3], 16), int(g[4], 16), int(g[5])
        bad = None
        if not kernel_address(vstart):
            bad = (f"vstart= {KERNEL}", f"vstart={vstart:#x}")
        elif vend <= vstart:
            bad = (f"vend= above vstart={vstart:#x}", f"vend={vend:#x}")
        elif not 0 < size <= U64:
            bad = ("size= of 1..2**64-1", f"size={size}")
        elif not 0 < align <= U64 or align & (align - 1):
            bad = ("align= a power of two", f"align={align}")
        elif failed == 0 and not (kernel_address(va_start) and va_start + size <= U64 + 1):
            bad = (f"va_start: {KERNEL} (failed=0)", f"va_start: {va_start}")
        if bad is not None:
            p.error(n, f"the alloc_vmap_area tracepoint with {bad[0]}", line, bad[1])
            return False
        op = Op(ALLOC, n, cpu, pid)
        op.a, op.b, op.c, op.d = size, align, vstart, vend
        if failed == 0:
            op.start = va_start
            op.end = va_start + size
        op.caller = "alloc_vmap_area"
    elif name == "free_vmap_area_noflush":
        op = Op(FREE, n, cpu, pid)
        op.start = int(g[0], 16)
        if not kernel_address(op.start):
            p.error(n, f"the free_vmap_area_noflush tracepoint with va_start= {KERNEL}", line,
                    f"va_start={op.start:#x}")
            return False
        op.a, op.b = int(g[1]), int(g[2])
    else:
        op = Op(PURGE, n, cpu, pid)
        op.start, op.end, op.a = int(g[0], 16), int(g[1], 16), int(g[2])
    p.ops.append(op)
    p.forms.add("tracepoint")
    return True
