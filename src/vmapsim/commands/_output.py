"""What the commands write: output files checked when the options are parsed (before a run
starts), and the standard output, which may be a pipe that closes early.

An option added with :func:`add_output` names a file the command writes: its type
(:func:`output_file`, :func:`image_file`) refuses (argparse: exit 2) a name whose
directory is missing or not writable, or that names a directory; its action records it
in ``args.output_files``, and ``cli.main`` refuses two options naming the same file
(:func:`same_outputs`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

#: the image formats the plots are written in (matplotlib's Agg and SVG backends)
IMAGE_SUFFIXES = (".png", ".svg")


def output_file(text: str) -> str:
    """A file the command will write (argparse type): its directory must exist and be
    writable, and it must not be a directory or a read-only file."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("an empty file name")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text!r}: no such directory {parent!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: the directory {parent!r} is not writable")
    if os.path.exists(text) and not os.access(text, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not writable")
    return text


def image_file(text: str) -> str:
    """An output file for a plot: FILE.png or FILE.svg (argparse type)."""
    if not text.lower().endswith(IMAGE_SUFFIXES):
        raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in .png or .svg")
    return output_file(text)


OUTPUT_TYPES = (output_file, image_file)


class OutputAction(argparse.Action):
    """Store the file name and record it in ``namespace.output_files`` (dest -> (option,
    file)), so that the command line's outputs can be compared before the run."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        vars(namespace)[self.dest] = values
        seen = getattr(namespace, "output_files", None)
        if seen is None:
            seen = {}
            namespace.output_files = seen
        seen[self.dest] = (option_string or self.dest, values)


def add_output(p: Any, *flags: str, image: bool = False, **kw: Any) -> argparse.Action:
    """``p.add_argument(*flags, ...)`` for a file the command writes (an image: .png/.svg)."""
    action: argparse.Action = p.add_argument(*flags, type=image_file if image else output_file,
                                             action=OutputAction, **kw)
    return action


def same_outputs(args: argparse.Namespace) -> str | None:
    """A message if two output options in ``args`` name the same file, else None."""
    seen: dict[str, str] = {}
    for opt, value in getattr(args, "output_files", {}).values():
        key = os.path.realpath(value)
        if key in seen:
            return f"{seen[key]} and {opt} name the same file {value!r}"
        seen[key] = opt
    return None


def quiet_stdout() -> None:
    """After a broken pipe: point the standard output at /dev/null, so that nothing the
    command or the interpreter's exit still writes fails again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (captured output)
        pass


def stdout_console(**kw: Any) -> Any:
    """A rich Console on the standard output that raises BrokenPipeError when the reader
    goes away (rich's own exits with status 1), for ``cli.main`` to end quietly with 0."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError("standard output closed")

    return _Console(**kw)
