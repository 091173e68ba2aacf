"""Shared fixtures for the vmapsim test suite.

``design`` runs a test once per registered design (``Kernel._designs``); tests of
features only the 2008 rewrite has (vm_map_ram, vmap_lazy_nr, lazy purges, the
vm_unmap_aliases flaw) build ``Kernel(design="rewrite")`` themselves.
"""

from __future__ import annotations

import pytest

import vmapsim
from vmapsim import PAGE_SIZE, Kernel, Page

DESIGNS = sorted(vmapsim.Kernel._designs)


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
    return Kernel(cpus=4, mem_pages=16384, design="rewrite")


def has_vm_map_ram(k: Kernel) -> bool:
    """Whether the kernel's design has the per-CPU vm_map_ram interface."""
    return type(k).vm_map_ram is not Kernel.vm_map_ram


def take_pages(k: Kernel, n: int) -> list[Page]:
    pages = [k.alloc_page() for _ in range(n)]
    assert all(p is not None for p in pages)
    return pages  # type: ignore[return-value]


def pattern(i: int, n: int = PAGE_SIZE) -> bytes:
    """A recognisable n-byte pattern for allocation number i."""
    seed = f"<{i}>".encode()
    return (seed * (n // len(seed) + 1))[:n]
