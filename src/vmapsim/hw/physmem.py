"""Physical memory: page frames, NUMA nodes, zones.

Page frames are created lazily, on first allocation, and their contents are stored
lazily too (a page never written costs no bytearray), so a machine with millions of
pages costs nothing until it is used.
"""

from __future__ import annotations

from ..errors import BadPageError, ConfigError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: ZONE_DMA32 ends at 4 GiB: pages below it are 32-bit addressable (vmalloc_32).
DMA32_END_PFN = (1 << 32) >> PAGE_SHIFT

ZONE_DMA32 = "DMA32"
ZONE_NORMAL = "Normal"


class Page:
    """``struct page``: one physical page frame.

    ``data`` is None until the page is first written (the model reads zeroes then).
    ``_count`` is the reference count: 0 while the page is on a free list. ``_mem`` is
    the PhysMem the frame belongs to (None for a Page built by hand): a kernel takes
    only its own machine's pages.
    """

    __slots__ = ("pfn", "node", "zone", "data", "_count", "_mem")

    def __init__(self, pfn: int, node: int, zone: str, mem: PhysMem | None = None) -> None:
        self.pfn = pfn
        self.node = node
        self.zone = zone
        self.data: bytearray | None = None
        self._count = 0
        self._mem = mem

    def __repr__(self) -> str:
        return f"Page(pfn={self.pfn:#x}, node={self.node}, zone={self.zone})"


class _Pool:
    """The free pages of one zone of one node: a never-used pfn range + a free stack."""

    __slots__ = ("next_pfn", "end_pfn", "free", "node", "zone", "size", "mem")

    def __init__(self, start: int, end: int, node: int, zone: str, mem: PhysMem | None = None) -> None:
        self.mem = mem
        self.next_pfn = start
        self.end_pfn = end
        self.size = end - start
        self.free: list[Page] = []
        self.node = node
        self.zone = zone

    def nr_free(self) -> int:
        return len(self.free) + self.end_pfn - self.next_pfn

    def take(self) -> Page | None:
        if self.free:
            return self.free.pop()
        if self.next_pfn < self.end_pfn:
            page = Page(self.next_pfn, self.node, self.zone, self.mem)
            self.next_pfn += 1
            return page
        return None


class PhysMem:
    """All page frames: ``nodes`` NUMA nodes of ``mem_pages // nodes`` pages each.

    Node n owns pfns ``[n*per_node, (n+1)*per_node)``; pfns below 4 GiB are ZONE_DMA32,
    the rest ZONE_NORMAL. Allocation follows the kernel's zonelist order: the
    requested node first (Normal, then DMA32), then the other nodes.
    """

    def __init__(self, mem_pages: int, nodes: int) -> None:
        if not isinstance(mem_pages, int) or isinstance(mem_pages, bool):
            raise TypeError(f"mem_pages must be an int, not {type(mem_pages).__name__}")
        if not isinstance(nodes, int) or isinstance(nodes, bool):
            raise TypeError(f"nodes must be an int, not {type(nodes).__name__}")
        if nodes < 1 or nodes > 1024:
            raise ConfigError(f"nodes must be 1..1024, got {nodes}")
        if mem_pages < nodes:
            raise ConfigError(f"mem_pages must be at least one page per node, got {mem_pages}")
        self.mem_pages = mem_pages
        self.nodes = nodes
        per_node = mem_pages // nodes
        self.per_node = per_node
        # pools[node] = [Normal pool, DMA32 pool] (either may be empty)
        self.pools: list[list[_Pool]] = []
        self.dma32_pools: list[_Pool] = []
        for n in range(nodes):
            start, end = n * per_node, (n + 1) * per_node
            mid = min(max(start, DMA32_END_PFN), end)
            dma32 = _Pool(start, mid, n, ZONE_DMA32, self)
            normal = _Pool(mid, end, n, ZONE_NORMAL, self)
            self.pools.append([normal, dma32])
            self.dma32_pools.append(dma32)
        self.allocated = 0

    def alloc_page(self, node: int, dma32: bool = False) -> Page | None:
        """A free page, preferring ``node``; None when no zone that fits has one."""
        order = [node] + [n for n in range(self.nodes) if n != node]
        for n in order:
            pools = [self.dma32_pools[n]] if dma32 else self.pools[n]
            for pool in pools:
                page = pool.take()
                if page is not None:
                    page._count = 1
                    self.allocated += 1
                    return page
        return None

    def free_page(self, page: Page) -> None:
        if not isinstance(page, Page):
            raise TypeError(f"free_page() takes a Page, not {type(page).__name__}")
        if page._mem is not self:
            raise BadPageError(f"Bad page state: page pfn:{page.pfn:#x} is not a page of this machine")
        if page._count <= 0:
            raise BadPageError(f"Bad page state: freeing free page pfn:{page.pfn:#x}")
        page._count -= 1
        if page._count == 0:
            pool = self.pools[page.node][0 if page.zone == ZONE_NORMAL else 1]
            pool.free.append(page)
            self.allocated -= 1

    def nr_free_pages(self) -> int:
        # mem_pages % nodes pages (the remainder) belong to no node and are never used.
        return sum(p.nr_free() for pools in self.pools for p in pools)

    def _check(self) -> None:
        free = 0
        for pools in self.pools:
            for p in pools:
                for page in p.free:
                    if page._count != 0:
                        raise AssertionError(f"page {page.pfn:#x} on free list with count {page._count}")
                free += p.nr_free()
        if free + self.allocated != self.nodes * self.per_node:
            raise AssertionError(
                f"page accounting: {free} free + {self.allocated} allocated != "
                f"{self.nodes * self.per_node}"
            )
