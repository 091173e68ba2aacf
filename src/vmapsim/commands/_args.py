"""Argument types and options shared by the subcommands (argparse exits 2 on a bad value)."""

from __future__ import annotations

import argparse
import math

from ..errors import ConfigError
from ..hw.cost import get_preset
from ..mm import designs

#: The defaults every command shares. CPUs: the simulated machine's own, which is the
#: seed's 2-socket x 4-core Opteron (cost preset opteron-2008, 8 CPUs; ``Kernel()``'s
#: default too) unless a command runs another preset (bench/profile/stress/sweep: the
#: preset's machine, and at least one CPU per thread) or a trace brings its own count.
#: Seed: 0.
DEFAULT_COST = "opteron-2008"
_DEFAULT_MACHINE = get_preset(DEFAULT_COST)
DEFAULT_CPUS = max(1, _DEFAULT_MACHINE.sockets * _DEFAULT_MACHINE.cores_per_socket)
DEFAULT_SEED = 0
#: what each --help says of the defaults
CPUS_HELP = (f"CPUs of the simulated machine (default {DEFAULT_CPUS}: the {DEFAULT_COST} machine's, "
             f"as in every command)")
PRESET_CPUS_HELP = (f"CPUs of the machine (default: the cost preset's, {DEFAULT_CPUS} on {DEFAULT_COST} "
                    f"as in every command, or the thread count if larger)")
SEED_HELP = f"random seed (default {DEFAULT_SEED}, as in every command)"


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


def positive_float(text: str) -> float:
    """A finite number above 0 (``nan``, ``inf``, ``0`` and ``-1`` refused)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return x


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


def add_cpus(p: argparse.ArgumentParser, default: int | None = DEFAULT_CPUS, what: str = "") -> None:
    p.add_argument("--cpus", type=cpu_count, default=default, help=what or CPUS_HELP)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=SEED_HELP)
