"""``fix-size``: test_vmalloc's fix_size_alloc_test as a benchmark loop (Rezki's
microbenchmark for the vmap lock-contention series): each job allocates ``pages``
pages with ``vmalloc()``, stores one byte to the first, and frees it with ``vfree()``.
One operation = one vmalloc()/vfree() pair.

Nothing here goes through a per-CPU cache: every pair takes the global allocator's
locks (2.6.28: vmap_area_lock; 6.1: free_vmap_area_lock and vmap_area_lock; 2.6.27:
vmlist_lock), and every freed area (with its guard page) counts towards the lazy
purge, which the default operation count makes fire several times at 32 jobs (on the
64-CPU Threadripper lazy_max_pages is fls(64) x 8192 = 57344 pages; 32 jobs x 4000
pairs x 2 pages is 4.5 times that).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator
from typing import Any

from ..hw.physmem import PAGE_SIZE
from ..mm.vmalloc import Kernel

NAME = "fix-size"
DESCRIPTION = "vmalloc(pages) + one store + vfree() in a loop (test_vmalloc's fix_size_alloc_test)"
#: test_vmalloc's nr_pages default (0 means 1)
DEFAULT_PAGES = 1
DEFAULT_OPS = 4000
#: bench prints this workload's table in µs per pair, as its published figures are given
UNIT = "us"


def start(k: Kernel, cpu_id: int, params: Any, rng: random.Random, lat: array) -> Iterator[None]:
    size = params.pages * PAGE_SIZE
    ops = params.ops
    cpu = k.machine.cpus[cpu_id]
    vmalloc = k.vmalloc
    vfree = k.vfree
    touch = k.touch

    def loop() -> Iterator[None]:
        append = lat.append
        t = cpu.clock
        for _ in range(ops):
            addr = vmalloc(size)
            if addr is None:
                raise MemoryError(f"fix-size: vmalloc({size}) failed on CPU {cpu_id}")
            yield
            touch(addr, 1)  # *((__u8 *)ptr) = 0;
            vfree(addr)
            now = cpu.clock
            append(now - t)
            t = now
            yield

    return loop()
