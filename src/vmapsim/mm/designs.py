"""The registry of designs: one kernel version of the vmap layer each.

A design is a subclass of :class:`vmapsim.mm.vmalloc.Kernel` declared with
``class X(Kernel, design=DesignInfo(...))``; the declaration registers it under its
kernel version (``"2.6.28"``) and its aliases (``"rewrite"``). Everything outside
``mm/`` finds designs here (``design_names()``, ``resolve()``, ``parse_design_list()``)
and asks a kernel what it can do through the kernel's public interface, never by
its class or name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .vmalloc import Kernel


@dataclass(frozen=True)
class DesignInfo:
    """What ``vmapsim designs`` prints about a design."""

    #: canonical name: the kernel version it models ("2.6.28")
    name: str
    #: other names accepted everywhere ("rewrite")
    aliases: tuple[str, ...]
    #: the kernel release(s) it stands for ("Linux 2.6.28 (Dec 2008)")
    kernel: str
    #: one line: what this design changed over the one before it
    changed: str
    #: the commit (or series) that introduced it
    commit: str
    #: one line: what the model leaves out
    leaves_out: str = ""


_classes: dict[str, type[Kernel]] = {}
_aliases: dict[str, str] = {}
#: shorthand names for lists of designs (``--design both``)
SHORTHANDS: dict[str, tuple[str, ...]] = {"both": ("2.6.27", "2.6.28")}


def register(cls: type[Kernel], info: DesignInfo) -> None:
    """Register ``cls`` under ``info.name`` and its aliases (called by Kernel subclasses)."""
    for name in (info.name, *info.aliases):
        owner = _aliases.get(name)
        if owner is not None and owner != info.name:
            raise ConfigError(f"design name {name!r} is taken by design {owner!r}")
        if name in SHORTHANDS:
            raise ConfigError(f"design name {name!r} is a shorthand for {','.join(SHORTHANDS[name])}")
    _classes[info.name] = cls
    for name in (info.name, *info.aliases):
        _aliases[name] = info.name


def unregister(name: str) -> None:
    """Remove a design (a test's toy design) and its aliases."""
    canon = resolve(name)
    del _classes[canon]
    for alias in [a for a, c in _aliases.items() if c == canon]:
        del _aliases[alias]


def resolve(name: str) -> str:
    """The canonical name of design ``name`` (an alias is accepted); ConfigError if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"design must be a str, not {type(name).__name__}")
    try:
        return _aliases[name]
    except KeyError:
        raise ConfigError(f"unknown design {name!r}; known: {', '.join(accepted_names())}") from None


def design_class(name: str) -> type[Kernel]:
    return _classes[resolve(name)]


def design_names() -> list[str]:
    """Canonical names, oldest kernel first."""
    return sorted(_classes, key=_version_key)


def accepted_names() -> list[str]:
    """Every name ``--design`` accepts: canonical names, aliases and shorthands."""
    return design_names() + sorted(a for a, c in _aliases.items() if a != c) + sorted(SHORTHANDS)


def infos() -> list[DesignInfo]:
    return [_classes[n].info for n in design_names()]


def parse_design_list(text: str) -> list[str]:
    """``"2.6.27,rewrite"`` -> ``["2.6.27", "2.6.28"]`` (canonical, in the order given,
    without repeats); ``both`` expands to the two 2008 designs. ConfigError names a bad one."""
    out: list[str] = []
    parts = text.split(",")
    if not text or any(not p.strip() for p in parts):
        raise ConfigError(f"design list {text!r} has an empty name")
    for part in parts:
        part = part.strip()
        for name in SHORTHANDS.get(part, (part,)):
            canon = resolve(name)
            if canon not in out:
                out.append(canon)
    return out


def _version_key(name: str) -> tuple:
    parts: list[tuple[int, object]] = []
    for p in name.split("."):
        parts.append((0, int(p)) if p.isdigit() else (1, p))
    return tuple(parts)
