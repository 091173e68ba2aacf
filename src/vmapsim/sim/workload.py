"""What the timing engine needs from a workload module (``vmapsim.workloads.<name>``).

A workload module defines ``NAME``, ``DESCRIPTION``, optionally ``DEFAULT_PAGES``,
``DEFAULT_OPS`` (per thread), ``DEFAULT_COST`` (a cost preset) and ``UNIT`` ("us": bench
prints its table in µs per operation), and
``start(k, cpu_id, params, rng, lat) -> Iterator[None]``: it prepares the CPU's
state at once (untimed: pages allocated before the clock starts) and returns a
generator that yields after every kernel call and appends each finished operation's
latency (simulated ns, from the end of the previous operation, so interrupts taken
between calls count) to ``lat``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigError

#: Workloads the commands accept -> their modules in vmapsim.workloads.
MODULES = {"maptouch": "maptouch", "xfsdir": "xfsdir", "fix-size": "fixsize"}
WORKLOADS = tuple(MODULES)


@dataclass(slots=True)
class WorkloadParams:
    """Operations per CPU, pages per mapping, and simulated ns of other work per op."""

    ops: int = 1000
    pages: int = 4
    other_ns: float | None = None


def load(name: str) -> ModuleType:
    """The workload module called ``name`` (ConfigError names the known ones)."""
    if name not in WORKLOADS:
        raise ConfigError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(f"vmapsim.workloads.{MODULES[name]}")
