"""The kernel code under study, named as in mm/vmalloc.c; one module per design."""

from . import designs, legacy, linux61, linux69, rewrite  # noqa: F401  (importing a design registers it)
from .vmalloc import Kernel, vm_area_struct, vm_struct

__all__ = ["Kernel", "designs", "vm_area_struct", "vm_struct"]
