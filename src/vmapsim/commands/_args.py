"""Argument types and options shared by the subcommands (argparse exits 2 on a bad value)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..mm import designs


def integer(text: str) -> int:
    """An integer in decimal (leading zeros allowed) or with a 0x/0o/0b prefix."""
    for base in (10, 0):
        try:
            return int(text, base)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer")


def positive_int(text: str) -> int:
    n = integer(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be positive")
    return n


def nonneg_int(text: str) -> int:
    n = integer(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} must not be negative")
    return n


def cpu_count(text: str) -> int:
    n = positive_int(text)
    if n > 1024:
        raise argparse.ArgumentTypeError(f"{n} CPUs: the model has 1..1024")
    return n


def design_list(text: str) -> list[str]:
    """``--design 2.6.27,rewrite`` -> canonical names (argparse type; names from the registry)."""
    try:
        return designs.parse_design_list(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_design(p: argparse.ArgumentParser, default: str = "2.6.28", what: str = "") -> None:
    """``--design NAMES``: a comma-separated list of registered designs (``vmapsim designs``)."""
    p.add_argument("--design", type=design_list, default=designs.parse_design_list(default),
                   metavar="NAMES",
                   help=(what or "comma-separated designs") + f" (default {default}); "
                        f"names: {', '.join(designs.accepted_names())}")


def add_cpus(p: argparse.ArgumentParser, default: int | None, what: str = "") -> None:
    p.add_argument("--cpus", type=cpu_count, default=default,
                   help=what or f"CPUs of the simulated machine (default {default})")


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"random seed (default {default})")
