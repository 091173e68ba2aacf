"""/proc/vmallocinfo as Linux 2.6.x prints it (``mm/vmalloc.c: s_show()``):

``0x<start>-0x<end> <size> <caller> pages=<n> phys=<hex> ioremap vmalloc vmap user vpages N<node>=<n>``

one vm_struct a line, ``phys=`` in bare hex (``%lx``). This module holds what is
particular to the format; :mod:`.vmallocinfo` reads the lines of both.
"""

from __future__ import annotations

import re

from ..mm.constants import VM_ALLOC, VM_IOREMAP, VM_MAP, VM_USERMAP, VM_VPAGES

NAME = "2.6"
#: the flag words 2.6.x prints, in its order, and the flags they stand for
WORDS: dict[str, int] = {
    "ioremap": VM_IOREMAP,
    "vmalloc": VM_ALLOC,
    "vmap": VM_MAP,
    "user": VM_USERMAP,
    "vpages": VM_VPAGES,
}
#: ``phys=%lx``
PHYS_RE = re.compile(r"phys=([0-9a-fA-F]{1,16})$")
