"""``maptouch``: the seed's benchmark -- map N pages, write each page, unmap, in a loop.

Each CPU owns N pages (allocated before the clock starts) and loops: map them
(``vm_map_ram`` where the design has it, else ``vmap``, as the seed compared
2.6.28's vm_map_ram with 2.6.27's vmap), store to each page (``Kernel.touch``),
unmap (``vm_unmap_ram`` / ``vunmap``). One operation = map + touch + unmap.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator
from typing import Any

from ..mm.vmalloc import Kernel

NAME = "maptouch"
DESCRIPTION = "map N pages, write each, unmap (the seed's benchmark)"


def start(k: Kernel, cpu_id: int, params: Any, rng: random.Random, lat: array) -> Iterator[None]:
    count = params.pages
    ops = params.ops
    with k.on_cpu(cpu_id):
        pages = [k.alloc_page() for _ in range(count)]
    if any(p is None for p in pages):
        raise MemoryError(f"maptouch: CPU {cpu_id} could not get {count} pages")
    cpu = k.machine.cpus[cpu_id]
    per_cpu = k.has_vm_map_ram
    touch = k.touch
    map_: Callable[[list, int], int | None] = k.vm_map_ram if per_cpu else k.vmap  # type: ignore[assignment]
    unmap = k.vm_unmap_ram

    def loop() -> Iterator[None]:
        append = lat.append
        t = cpu.clock
        for _ in range(ops):
            addr = map_(pages, count)  # type: ignore[arg-type]
            if addr is None:
                raise MemoryError(f"maptouch: mapping {count} pages failed on CPU {cpu_id}")
            yield
            touch(addr, count)
            yield
            if per_cpu:
                unmap(addr, count)
            else:
                k.vunmap(addr)
            now = cpu.clock
            append(now - t)
            t = now
            yield

    return loop()
