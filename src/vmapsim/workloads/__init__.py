"""Workloads and real inputs for the model: /proc/vmallocinfo snapshots, ftrace traces,
their replay. Submodules are imported on demand (``from vmapsim.workloads import trace``)
so importing this package costs nothing."""

from __future__ import annotations

from ..inputs.lines import InputFormatError  # the readers' error, where it always was

__all__ = ["InputFormatError"]
