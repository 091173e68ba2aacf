"""The kprobe events of the real captures (``../shared/data/real-linux-6.1``): entry
probes ``(func+0x0/0xN) arg=val ...`` and return probes ``(caller+0xA/0xB <- func)
arg=val``, on alloc_vmap_area, free_vmap_area_noflush, __purge_vmap_area_lazy, vfree,
flush_tlb_kernel_range, vm_map_ram, vm_unmap_ram and vm_unmap_aliases. The probed
function, not the probe's name, says what an event is.

Each argument is checked as the kernel would hold it (a C long or int, an address in
the kernel's half) before it becomes an operation.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .ftrace import ALLOC, FLUSH, FREE, MAP_RAM, PURGE, UNMAP_ALIASES, UNMAP_RAM, VFREE, Op
from .lines import MAX_NODES, U64, kernel_address

if TYPE_CHECKING:
    from .ftrace import Parser

_KPROBE_RE = re.compile(r"\((\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[(\w+)\])?(?: <- (\w+))?\)\s*(.*)$")

#: probed function -> (event, the arguments it must carry); return probes end in "_ret".
FORMS: dict[str, tuple[str, tuple[str, ...]]] = {
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
EVENTS = """\
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

_ENTRY_FUNCS = ", ".join(f for f in FORMS if not f.endswith("_ret"))
U32 = (1 << 32) - 1
KERNEL = "a kernel address (0x8000000000000000 and above)"


def _value(p: Parser, n: int, line: str, event: str, name: str, v: int, ok: bool, expected: str) -> bool:
    if not ok:
        shown = f"{v:#x}" if v >= 0 and name not in ("count", "node") else str(v)  # as the probe prints it
        p.error(n, f"{event} with {name}= {expected}", line, f"{name}={shown}")
    return ok


def handle(p: Parser, n: int, pid: int, cpu: int, body: str, line: str) -> bool:
    """One kprobe event into ``p``: True if it was a valid event."""
    m = _KPROBE_RE.match(body)
    if m is None:
        p.error(n, "a kprobe event '(func+0x0/0xN) arg=value ...' or '(caller+0xA/0xB <- func) arg=value'", line)
        return False
    sym, _mod, retfunc, rest = m.groups()
    func = retfunc + "_ret" if retfunc else sym
    form = FORMS.get(func)
    if form is None:
        p.error(n, "a probe on one of " + _ENTRY_FUNCS, line, f"a probe on {func}")
        return False
    event, need = form
    args: dict[str, int] = {}
    for tok in rest.split():
        key, eq, val = tok.partition("=")
        try:
            if not eq or not key.isidentifier() or "_" in val or len(val) > 24:
                raise ValueError
            args[key] = int(val, 0)
        except ValueError:
            p.error(n, f"arguments 'name=<number>' for {event} ({', '.join(need) or 'none'})", line, repr(tok))
            return False
    missing = [a for a in need if a not in args]
    if missing:
        p.error(n, f"{event} with {', '.join(f'{a}=' for a in need)} (missing {', '.join(missing)})", line)
        return False
    for a in need:
        if not 0 <= args[a] <= U64 and a != "node":
            return _value(p, n, line, event, a, args[a], False, "a 64-bit value")
    key = (pid, cpu)
    if event == "alloc":
        size, align, vstart, vend = args["size"], args["align"], args["vstart"], args["vend"]
        if not (_value(p, n, line, event, "vstart", vstart, kernel_address(vstart), KERNEL)
                and _value(p, n, line, event, "vend", vend, kernel_address(vend) and vend > vstart,
                           f"{KERNEL} above vstart={vstart:#x}")
                and _value(p, n, line, event, "size", size, size > 0, "at least 1")
                and _value(p, n, line, event, "align", align, align > 0 and not align & (align - 1),
                           "a power of two")):
            return False
        if key in p.open_alloc:
            prev, prev_line = p.open_alloc[key]
            p.error(prev.lineno, f"an alloc_ret for this alloc (PID {pid}, CPU {cpu}) before the "
                    f"next alloc on line {n}", prev_line)
        op = Op(ALLOC, n, cpu, pid)
        op.a, op.b, op.c, op.d = size, align, vstart, vend
        p.open_alloc[key] = (op, line)
    elif event == "alloc_ret":
        got = p.open_alloc.pop(key, None)
        if got is None:
            got = _cross_cpu(p.open_alloc, pid)
        if got is None:
            p.error(n, f"an alloc on PID {pid} CPU {cpu} before this alloc_ret", line)
            return False
        op = got[0]
        start, end = args["va_start"], args["va_end"]
        if start == 0 or start > end or (start >= (1 << 64) - 4095):
            op.start = None  # ERR_PTR: the allocation failed
        elif not _value(p, n, line, event, "va_start", start, kernel_address(start), KERNEL):
            return False
        elif end - start != op.a:
            p.error(n, f"va_end - va_start equal to the size {op.a:#x} of the alloc on line {op.lineno}", line)
            return False
        else:
            op.start, op.end = start, end
        op.caller = sym
        mapping = p.open_map.get(key)
        if mapping is not None and retfunc and sym.startswith("vm_map_ram"):
            mop = mapping[0]
            mop.c, mop.d = op.c, op.d  # the range the block was searched in
            if op.start is not None and op.end is not None:
                mop.block = (op.start, op.end, op.lineno)
        else:
            p.ops.append(op)
    elif event == "free_noflush":
        start, end = args["va_start"], args["va_end"]
        if end <= start:
            p.error(n, "va_end above va_start", line)
            return False
        if not _value(p, n, line, event, "va_start", start, kernel_address(start), KERNEL):
            return False
        op = Op(FREE, n, cpu, pid)
        op.start, op.end = start, end
        p.ops.append(op)
    elif event == "vfree":
        op = Op(VFREE, n, cpu, pid)
        op.start = args["addr"]
        p.ops.append(op)
    elif event == "map_ram":
        count, node = args["count"], args["node"]
        if count <= 0:
            p.error(n, "map_ram with count >= 1", line, f"count={count}")
            return False
        if not (_value(p, n, line, event, "count", count, count <= U32, "an unsigned int (at most 2**32-1)")
                and _value(p, n, line, event, "node", node, -1 <= node < MAX_NODES,
                           f"a NUMA node -1..{MAX_NODES - 1} (the model's machine has at most {MAX_NODES})")):
            return False
        if key in p.open_map:
            prev, prev_line = p.open_map[key]
            p.error(prev.lineno, f"a map_ram_ret for this map_ram (PID {pid}, CPU {cpu}) before "
                    f"the next map_ram on line {n}", prev_line)
        op = Op(MAP_RAM, n, cpu, pid)
        op.a, op.b = count, node
        p.open_map[key] = (op, line)
    elif event == "map_ram_ret":
        got = p.open_map.pop(key, None)
        if got is None:
            got = _cross_cpu(p.open_map, pid)
        if got is None:
            p.error(n, f"a map_ram on PID {pid} CPU {cpu} before this map_ram_ret", line)
            return False
        addr = args["addr"]
        if addr and not _value(p, n, line, event, "addr", addr, kernel_address(addr), KERNEL + " or 0"):
            return False
        op = got[0]
        op.start = addr
        op.caller = sym
        op.lineno = n
        p.ops.append(op)
    elif event == "unmap_ram":
        addr, count = args["addr"], args["count"]
        if not (_value(p, n, line, event, "addr", addr, kernel_address(addr), KERNEL)
                and _value(p, n, line, event, "count", count, 1 <= count <= U32, "1..2**32-1")):
            return False
        op = Op(UNMAP_RAM, n, cpu, pid)
        op.start, op.a = addr, count
        p.ops.append(op)
    elif event in ("purge", "flush"):
        op = Op(PURGE if event == "purge" else FLUSH, n, cpu, pid)
        op.start, op.end = args["start"], args["end"]
        p.ops.append(op)
    elif event == "unmap_aliases":
        p.ops.append(Op(UNMAP_ALIASES, n, cpu, pid))
    # purge_ret: nothing to do
    p.forms.add("kprobe")
    return True


def _cross_cpu(table: dict[tuple[int, int], tuple[Op, str]], pid: int) -> tuple[Op, str] | None:
    """A task that migrated between the call and its return: pair by PID alone
    (never for PID 0, the per-CPU idle tasks)."""
    if pid == 0:
        return None
    keys = [k for k in table if k[0] == pid]
    if len(keys) == 1:
        return table.pop(keys[0])
    return None
