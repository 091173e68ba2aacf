"""The input formats the model reads, one module per format, over one shared error
path (:mod:`.lines`: numbered lines of bounded length, bad lines kept bounded, the
machine's limits):

- :mod:`.ftrace`: ftrace text, the line prefix and the reader of a whole trace, with
  :mod:`.kprobe` (the kprobe events of the real captures) and :mod:`.tracepoint`
  (Linux 6.4+'s vmalloc tracepoints), which may be mixed in one file;
- :mod:`.vmallocinfo`: /proc/vmallocinfo snapshots, with :mod:`.vmallocinfo_26` (the
  2.6.x format) and :mod:`.vmallocinfo_modern` (4.x-6.x).

Every size, count, CPU, node and address a file gives is checked here against the
model's machine; what cannot fit is a bad line naming the file, the line and the
value. Submodules are imported on demand.
"""

from __future__ import annotations

from .lines import BadLines, InputFormatError

__all__ = ["BadLines", "InputFormatError"]
