"""Shared fixtures for the vmapsim test suite.

``design`` runs a test once per registered design (``vmapsim.mm.designs``); tests of
features only the 2008 rewrite has (vm_map_ram, vmap_lazy_nr, lazy purges, the
vm_unmap_aliases flaw) build ``Kernel(design="rewrite")`` themselves.
"""

from __future__ import annotations

import pytest

import vmapsim  # noqa: F401
from vmapsim import PAGE_SIZE, Kernel, Page
from vmapsim.mm import designs

DESIGNS = designs.design_names()


@pytest.fixture(params=DESIGNS)
def design(request: pytest.FixtureRequest) -> str:
    """Every registered design name (``rewrite``, and ``legacy`` once it exists)."""
    return str(request.param)


@pytest.fixture
def kernel(design: str) -> Kernel:
    """A small 4-CPU kernel of the parametrized design."""
    return Kernel(cpus=4, mem_pages=16384, design=design)


@pytest.fixture
def rk() -> Kernel:
    """A 4-CPU kernel of the 2008 rewrite."""
    return Kernel(cpus=4, mem_pages=16384, design="2.6.28")


def has_vm_map_ram(k: Kernel) -> bool:
    """Whether the kernel's design has the per-CPU vm_map_ram interface."""
    return k.has_vm_map_ram


def take_pages(k: Kernel, n: int) -> list[Page]:
    pages = [k.alloc_page() for _ in range(n)]
    assert all(p is not None for p in pages)
    return pages  # type: ignore[return-value]


def pattern(i: int, n: int = PAGE_SIZE) -> bytes:
    """A recognisable n-byte pattern for allocation number i."""
    seed = f"<{i}>".encode()
    return (seed * (n // len(seed) + 1))[:n]


def vm_info(k: Kernel) -> str:
    """/proc/vmallocinfo without its ``unpurged vm_area`` lines (6.9 prints them even
    when no area is busy; 6.1 only after a busy one; 2.6 never)."""
    return "".join(line for line in k.vmallocinfo().splitlines(True)
                   if not line.endswith(" unpurged vm_area\n"))
