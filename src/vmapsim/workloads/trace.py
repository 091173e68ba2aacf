"""Traces of the vmalloc layer: generate them from the model (``TraceRecorder``, in
the real captures' kprobe format), and the built-in workloads that drive it.

The reader of ftrace text lives in :mod:`vmapsim.inputs.ftrace` (with its two forms,
:mod:`vmapsim.inputs.kprobe` and :mod:`vmapsim.inputs.tracepoint`); its names are
kept here too (``parse_trace``, ``read_trace``, ``Trace``, ``Op``, the operation
kinds), so ``from vmapsim.workloads import trace`` still reads traces.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ..errors import ConfigError
from ..inputs.ftrace import (
    ALLOC,
    FLUSH,
    FREE,
    MAP_RAM,
    PURGE,
    UNMAP_ALIASES,
    UNMAP_RAM,
    VFREE,
    Op,
    Trace,
    parse_trace,
    read_trace,
)
from ..inputs.kprobe import EVENTS as KPROBE_EVENTS
from ..inputs.kprobe import FORMS as KPROBE_FORMS
from ..inputs.tracepoint import FORMS as TP_FORMS
from ..mm.constants import GFP_KERNEL, PAGE_KERNEL, PAGE_SIZE, VM_ALLOC, VM_IOREMAP
from ..mm.vmalloc import Kernel

__all__ = [
    "ALLOC", "FLUSH", "FREE", "KPROBE_EVENTS", "KPROBE_FORMS", "MAP_RAM", "PURGE", "TP_FORMS",
    "UNMAP_ALIASES", "UNMAP_RAM", "VFREE", "WORKLOADS", "Op", "Trace", "TraceRecorder",
    "generate_trace", "parse_trace", "read_trace", "run_workload",
]


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
