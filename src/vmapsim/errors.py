"""Exceptions raised by vmapsim.

Every error the model raises derives from :class:`VmapError`, so a caller can catch
the lot; each subclass names one kind of misuse or one kind of bug the model saw.
A refused call changes nothing: the kernel state is as it was before the call.
"""

from __future__ import annotations


class VmapError(Exception):
    """Base class of every vmapsim error."""


class BadAddressError(VmapError):
    """vfree()/vunmap()/vm_unmap_ram() of an address the layer never handed out.

    The message is the kernel's WARN/BUG text, e.g.
    ``Trying to vfree() nonexistent vm area (ffffc20000001000)``.
    """


class DoubleFreeError(BadAddressError):
    """The address was handed out once but has been freed already."""


class BadPageError(VmapError):
    """A physical page passed to the layer is not in the state the call needs."""


class PageFault(VmapError):  # noqa: N818 - the name the public API promises
    """An access to a kernel virtual address with no PTE and no TLB entry (an oops)."""


class UseAfterFreeError(VmapError):
    """An access to a freed area that lazy freeing still leaves mapped.

    The kernel cannot see this: the PTE (or the TLB entry) is still there, so the
    access succeeds on real hardware. The model knows the area was freed.
    """


class StaleTranslationError(VmapError):
    """A CPU's TLB translated an address differently from the page table.

    On real hardware the access silently reads or writes another page.
    """


class InvariantError(VmapError):
    """``check()`` found a broken invariant of a data structure or of the design."""


class InvalidArgumentError(VmapError, ValueError):
    """An argument of the right type but out of its range (a negative size, an
    unaligned or out-of-range address, an area that is not live)."""


class ConfigError(VmapError, ValueError):
    """A constructor or command-line argument out of its range."""


class UnsupportedError(VmapError, NotImplementedError):
    """The interface does not exist in the chosen design (e.g. vm_map_ram() before 2.6.28)."""
