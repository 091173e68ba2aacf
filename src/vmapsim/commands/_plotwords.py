"""Plots in words a reader knows: the benchmark, the machine and the kernel versions
instead of vmapsim's internal names (``maptouch``, ``opteron-2008``), and log axes
with enough labelled ticks."""

from __future__ import annotations

import math
from typing import Any

#: cost preset -> the machine it stands for
MACHINES = {
    "opteron-2008": "a 2-socket x 4-core Opteron (2008)",
    "modern-x86": "a 2-socket x 16-core x86 server (2020s)",
    "altix-2008": "a 64-CPU SGI Altix (ia64, 2008)",
    "threadripper-3970x": "a Threadripper 3970X (32 cores, 64 threads)",
}


def machine_words(cost: str) -> str:
    return MACHINES.get(cost, f"the {cost} machine")


def workload_words(workload: str, pages: int | None = None) -> str:
    """``maptouch``, 4 -> ``map+touch+unmap of 4 pages``."""
    n = "" if pages is None else f" of {pages} page{'s' if pages != 1 else ''}"
    if workload == "maptouch":
        return f"map+touch+unmap{n}"
    if workload == "xfsdir":
        return f"XFS directory buffers{n}" if n else "XFS directory buffers"
    if workload == "fix-size":
        return f"vmalloc+vfree{n} (test_vmalloc's fix_size_alloc_test)"
    return f"{workload}{n}"


def kernel_words(design: str) -> str:
    """``2.6.27`` (or ``legacy``) -> ``Linux 2.6.27``; a design of no kernel keeps its name."""
    from ..errors import ConfigError
    from ..mm import designs

    try:
        info = designs.design_class(design).info
    except (ConfigError, KeyError, AttributeError):
        return design
    words = info.kernel.split()
    return " ".join(words[:2]) if len(words) >= 2 and words[0] == "Linux" else design


def kernels_words(names: list[str]) -> str:
    """``Linux 2.6.27 vs 2.6.28`` (``Linux`` said once), or each design's words."""
    ks = [kernel_words(d) for d in names]
    if ks and all(k.startswith("Linux ") for k in ks):
        return "Linux " + " vs ".join(k[len("Linux "):] for k in ks)
    return " vs ".join(ks)


def label_log_axis(axis: Any, lo: float, hi: float) -> None:
    """Label a log axis at 1, 2, 3, 5 x 10^k (fewer over many decades), as plain numbers,
    so that even a range under one decade has several labelled ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(max(hi, 1e-12) / max(lo, 1e-12))
    subs = ((1.0, 2.0, 3.0, 5.0) if decades <= 2 else (1.0, 2.0, 5.0) if decades <= 3
            else (1.0, 3.0) if decades <= 5 else (1.0,))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
