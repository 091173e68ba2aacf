"""The simulated machine (knows nothing of vmalloc)."""

from .cost import PRESETS, CostModel, get_preset
from .locks import Mutex, RWLock, SpinLock
from .machine import CPU, Machine
from .physmem import PAGE_SHIFT, PAGE_SIZE, Page, PhysMem

__all__ = [
    "CPU", "PAGE_SHIFT", "PAGE_SIZE", "PRESETS", "CostModel", "Machine", "Mutex",
    "Page", "PhysMem", "RWLock", "SpinLock", "get_preset",
]
