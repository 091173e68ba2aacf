"""``vmapsim`` command line: one subcommand per module of :mod:`vmapsim.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; this file only parses and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__, commands
from .commands._output import quiet_stdout, same_outputs
from .errors import ConfigError, VmapError


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported on one line, ``vmapsim CMD: message``
    (no usage block), and exit status 2; ``subparsers`` maps each command to its parser."""

    subparsers: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _command_modules() -> list:
    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return mods


def build_parser() -> tuple[_Parser, dict]:
    parser = _Parser(
        prog="vmapsim",
        description="Linux's vmap/vmalloc layer on a simulated multi-CPU machine.",
    )
    parser.add_argument("--version", action="version", version=f"vmapsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    table = {}
    parser.subparsers = {}
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        table[mod.NAME] = mod
        parser.subparsers[mod.NAME] = p
    return parser, table


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: its exit status (0 done, 1 a failed run, 2 bad usage). No
    traceback reaches the user: an error is one ``vmapsim CMD: ...`` line on stderr
    (``VMAPSIM_DEBUG=1`` re-raises an unexpected one)."""
    parser, table = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not args.command:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 2
    cmd = args.command
    sub = parser.subparsers[cmd]
    if extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    clash = same_outputs(args)
    if clash:
        sub.error(clash)
    try:
        return int(table[cmd].run(args) or 0)
    except BrokenPipeError:  # e.g. `vmapsim ... | head`
        quiet_stdout()
        return 0
    except OSError as e:  # a file named on the command line cannot be read or written
        print(f"vmapsim {cmd}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as e:  # an option's value the run found out of range
        print(f"vmapsim {cmd}: {e}", file=sys.stderr)
        return 2
    except VmapError as e:  # the model refused what the run asked of it
        print(f"vmapsim {cmd}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("VMAPSIM_DEBUG"):
            raise
        print(f"vmapsim {cmd}: internal error: {type(e).__name__}: {e} "
              f"(VMAPSIM_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
