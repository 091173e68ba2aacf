"""Constants of include/linux/vmalloc.h, mm/vmalloc.c and x86_64 (Linux 2.6.28)."""

from __future__ import annotations

from ..hw.physmem import PAGE_SHIFT, PAGE_SIZE

__all__ = ["PAGE_SHIFT", "PAGE_SIZE"]

PAGE_MASK = ~(PAGE_SIZE - 1)

# bits in flags of vmalloc's vm_struct
VM_IOREMAP = 0x00000001  #: ioremap() and friends
VM_ALLOC = 0x00000002  #: vmalloc()
VM_MAP = 0x00000004  #: vmap()ed pages
VM_USERMAP = 0x00000008  #: suitable for remap_vmalloc_range
VM_VPAGES = 0x00000010  #: buffer for pages was vmalloc'ed

#: Maximum alignment for ioremap() regions: 128 pages.
IOREMAP_MAX_ORDER = 7 + PAGE_SHIFT

# vmap_area flags (mm/vmalloc.c)
VM_LAZY_FREE = 0x01
VM_LAZY_FREEING = 0x02
VM_VM_AREA = 0x04

# x86_64 2.6.28 (arch/x86/include/asm/pgtable_64.h)
VMALLOC_START = 0xFFFFC20000000000
VMALLOC_END = 0xFFFFE1FFFFFFFFFF

# page protections (x86 _PAGE_* bits: PRESENT|RW|ACCESSED|DIRTY|GLOBAL|NX)
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_GLOBAL = 0x100
_PAGE_NX = 1 << 63
PAGE_KERNEL_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL
PAGE_KERNEL = PAGE_KERNEL_EXEC | _PAGE_NX

# gfp flags (include/linux/gfp.h, 2.6.28 values)
GFP_DMA32__ = 0x04
GFP_HIGHMEM__ = 0x02
GFP_WAIT__ = 0x10
GFP_IO__ = 0x40
GFP_FS__ = 0x80
GFP_ZERO__ = 0x8000
GFP_KERNEL = GFP_WAIT__ | GFP_IO__ | GFP_FS__
GFP_DMA32 = GFP_DMA32__
#: vmalloc_32 on x86_64: pages below 4 GiB.
GFP_VMALLOC32 = GFP_DMA32 | GFP_KERNEL

# errno values returned by the int-returning calls
EINVAL = 22
EBUSY = 16

BITS_PER_LONG = 64
#: vm_map_ram: largest request served from a per-CPU vmap_block, in pages.
VMAP_MAX_ALLOC = BITS_PER_LONG
VMAP_BBMAP_BITS_MAX = 1024
VMAP_BBMAP_BITS_MIN = VMAP_MAX_ALLOC * 2


def fls(x: int) -> int:
    """Find last set bit, 1-based (fls(0) == 0), as the kernel's fls()."""
    return x.bit_length()


#: mm/vmalloc.c's guess at the vmalloc space, used only to size vmap blocks:
#: 128 GiB on 64-bit (not the real range).
VMALLOC_SPACE = 128 << 30
VMALLOC_PAGES = VMALLOC_SPACE >> PAGE_SHIFT
