"""The kernel code under study, named as in mm/vmalloc.c; one module per design."""

from . import legacy, rewrite  # noqa: F401  (registers the designs)
from .vmalloc import Kernel, vm_area_struct, vm_struct

__all__ = ["Kernel", "vm_area_struct", "vm_struct"]
