"""``vmapsim demo``: allocate, map and free on several CPUs; print vmallocinfo and counters."""

from __future__ import annotations

import argparse

from ..hw.physmem import PAGE_SIZE
from ..mm.constants import VM_IOREMAP
from ..mm.vmalloc import Kernel
from ._args import add_cpus, add_design

NAME = "demo"
HELP = "a short tour: vmalloc, vmap, vm_map_ram and frees on several CPUs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_design(p)
    add_cpus(p)


def run(args: argparse.Namespace) -> int:
    for i, name in enumerate(args.design):
        if i:
            print()
        tour(Kernel(cpus=args.cpus, design=name))
    return 0


def tour(k: Kernel) -> None:
    lazy = f", lazy_max_pages={k.lazy_max_pages()}" if k.has_lazy_free else ""
    print(f"vmapsim demo: design={k.design}, {k.cpus} CPUs{lazy}")
    kept = []
    for cpu in range(k.cpus):
        with k.on_cpu(cpu):
            a = k.vmalloc(3 * PAGE_SIZE)
            assert a is not None
            k.write(a, f"hello from CPU {cpu}".encode())
            kept.append(a)
            pages = [k.alloc_page() for _ in range(4)]
            v = k.vmap(pages, 4)  # type: ignore[arg-type]
            assert v is not None
            k.touch(v, 4)
            k.vunmap(v)
            if k.has_vm_map_ram:
                m = k.vm_map_ram(pages, 4)  # type: ignore[arg-type]
                assert m is not None
                k.touch(m, 4)
                k.vm_unmap_ram(m, 4)
            for p in pages:
                k.free_page(p)  # type: ignore[arg-type]
    k.get_vm_area(8 * PAGE_SIZE, VM_IOREMAP)
    for i, a in enumerate(kept):
        with k.on_cpu(i):
            print(f"CPU {i} reads back: {k.read(a, 16).decode()!r}")
    for cpu in range(k.cpus):  # the translations each CPU caches, in hex as the kernel prints them
        ents = sorted(k.tlb_entries(cpu))
        shown = ", ".join(f"{a:#x}" for a in ents[:6]) + (f", ... ({len(ents) - 6} more)" if len(ents) > 6 else "")
        print(f"TLB of CPU {cpu}: {len(ents)} entries" + (f": {shown}" if ents else ""))
    k.vfree(kept.pop())
    print("\n/proc/vmallocinfo:")
    print(k.vmallocinfo(), end="")
    k.check()
    print("\ncounters:", ", ".join(f"{key}={val}" for key, val in k.stats.items()))
    if k.has_lazy_free:
        print(f"vmap_lazy_nr={k.vmap_lazy_nr} (freed, not yet purged)")
        k.vm_unmap_aliases()
        k.check_no_aliases()
        print("after vm_unmap_aliases():", ", ".join(f"{key}={val}" for key, val in k.stats.items()))
    print("check(): all invariants hold")
