"""/proc/vmallocinfo as Linux 4.x-6.x prints it: the 2.6.x words plus
``dma-coherent`` (and ``sparse``), ``phys=0x<16 hex>`` (``%pa``), ``... <size>
vm_map_ram`` lines for vmap blocks and large vm_map_ram areas (5.x+), and
``... <size> unpurged vm_area`` lines for lazily freed areas (printed after the
busy ones). Addresses may be hashed (``%p`` with kptr_restrict): see
:mod:`.vmallocinfo`. This module holds what is particular to the format.
"""

from __future__ import annotations

import re

NAME = "modern"
#: flag words only modern kernels print; 0: not modelled by vmapsim (reported as
#: such when rebuilding)
WORDS: dict[str, int] = {
    "dma-coherent": 0,
    "sparse": 0,
}
#: ``phys=%pa``
PHYS_RE = re.compile(r"phys=0x([0-9a-fA-F]{1,16})$")
#: whole descriptions of areas that are not vm_structs: the text -> the area's kind
SPECIAL: dict[str, str] = {
    "unpurged vm_area": "unpurged",
    "vm_map_ram": "vm_map_ram",
}
