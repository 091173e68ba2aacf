"""vmapsim: Linux's vmap/vmalloc layer (the 2008 rewrite and the design before it) as an
executable model on a simulated multi-CPU machine."""

from .errors import (
    BadAddressError,
    BadPageError,
    ConfigError,
    DoubleFreeError,
    InvalidArgumentError,
    InvariantError,
    PageFault,
    StaleTranslationError,
    UnsupportedError,
    UseAfterFreeError,
    VmapError,
)
from .hw import PAGE_SHIFT, PAGE_SIZE, CostModel, Page
from .mm import Kernel, vm_area_struct, vm_struct
from .mm.constants import (
    GFP_DMA32,
    GFP_HIGHMEM__,
    GFP_KERNEL,
    GFP_ZERO__,
    IOREMAP_MAX_ORDER,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    VM_ALLOC,
    VM_IOREMAP,
    VM_LAZY_FREE,
    VM_LAZY_FREEING,
    VM_MAP,
    VM_USERMAP,
    VM_VM_AREA,
    VM_VPAGES,
    VMALLOC_END,
    VMALLOC_START,
    VMAP_MAX_ALLOC,
)

__version__ = "0.1.0"

__all__ = [
    "GFP_DMA32", "GFP_KERNEL", "IOREMAP_MAX_ORDER", "PAGE_KERNEL", "PAGE_KERNEL_EXEC",
    "PAGE_SHIFT", "PAGE_SIZE", "VMALLOC_END", "VMALLOC_START", "VMAP_MAX_ALLOC", "VM_ALLOC",
    "VM_IOREMAP", "VM_LAZY_FREE", "VM_LAZY_FREEING", "VM_MAP", "VM_USERMAP", "VM_VM_AREA",
    "VM_VPAGES", "GFP_HIGHMEM__", "GFP_ZERO__", "BadAddressError", "BadPageError",
    "ConfigError", "CostModel", "DoubleFreeError", "InvalidArgumentError", "InvariantError", "Kernel", "Page",
    "PageFault", "StaleTranslationError", "UnsupportedError", "UseAfterFreeError", "VmapError", "vm_area_struct",
    "vm_struct",
]
