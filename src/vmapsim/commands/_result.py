"""What every command's results look like: one JSON object (``--json``), CSV rows
(``--csv``), progress on a terminal's stderr (``--quiet`` silences it), and tables that
fit the terminal.

The JSON object has the same top-level keys for every command (``docs/json.md``, schema
``docs/schema/result.schema.json``): ``vmapsim_version``, ``command``, ``parameters``,
``results`` (a list: one entry per design, cell or run) and ``wall_seconds``. Addresses
are ``"0x..."`` strings (:func:`hexaddr`), every captured/model pair is labelled
(:func:`pair`), and keys are snake_case words.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

#: argparse fields that are not parameters of the run
_NOT_PARAMS = frozenset({"command", "json", "csv", "quiet", "output_files", "module_params"})


def add_formats(p: argparse.ArgumentParser, csv_what: str | None = None, quiet: bool = True) -> None:
    """``--json`` (and ``--csv`` if the command has a table: ``csv_what`` says which) as
    alternatives, and ``--quiet``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print the results as one JSON object (docs/json.md)")
    if csv_what:
        g.add_argument("--csv", action="store_true", help=f"print {csv_what} as CSV (one header row)")
    if quiet:
        add_quiet(p)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display on stderr")


def hexaddr(x: int | None) -> str | None:
    """An address as the kernel prints it: ``"0xffffc20000000000"`` (None stays None)."""
    return None if x is None else f"{int(x):#x}"


def pair(kernel: Any, model: Any) -> dict[str, Any]:
    """A captured (kernel) value beside the model's."""
    return {"kernel": kernel, "model": model}


def pairs(d: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """``{"vmalloc": (80, 78)}`` -> ``{"vmalloc": {"kernel": 80, "model": 78}}``."""
    return {snake(k): pair(v[0], v[1]) for k, v in d.items()}


def counts(d: Mapping[str, int], what: str = "reason") -> list[dict[str, Any]]:
    """A counter keyed by sentences as a list of ``{what: text, "count": n}``."""
    return [{what: k, "count": n} for k, n in sorted(d.items())]


def snake(key: str) -> str:
    """``"free-run"`` -> ``"free_run"``, ``"block live"`` -> ``"block_live"``."""
    return "".join(c if c.isalnum() else "_" for c in key.strip().lower())


def parameters(args: argparse.Namespace, **resolved: Any) -> dict[str, Any]:
    """The command's options (JSON values), with ``resolved`` defaults filled in."""
    out: dict[str, Any] = {}
    for k, v in sorted(vars(args).items()):
        if k in _NOT_PARAMS or callable(v):
            continue
        out[k] = v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v)
    out.update(resolved)
    return out


def envelope(command: str, params: Mapping[str, Any], results: list[Any], wall: float) -> dict[str, Any]:
    """The one shape of every command's ``--json``."""
    from .. import __version__

    return {"vmapsim_version": __version__, "command": command, "parameters": dict(params),
            "results": results, "wall_seconds": wall}


def print_json(command: str, params: Mapping[str, Any], results: list[Any], wall: float) -> None:
    print(json.dumps(envelope(command, params, results, wall), indent=2))


def write_csv(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]], out: Any = None) -> None:
    """One header row, then one row per mapping (plain numbers; None as an empty cell)."""
    w = csv.DictWriter(out or sys.stdout, fieldnames=list(fieldnames), extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)


# --- progress -----------------------------------------------------------------------------

def show_progress(args: argparse.Namespace) -> bool:
    """Progress goes to stderr only when it is a terminal and not --quiet (nor JSON/CSV on
    a terminal's stdout: they still show it, on stderr)."""
    if getattr(args, "quiet", False):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def print(self, text: str) -> None:
        print(text, flush=True)


class _Progress:
    def __init__(self, p: Any, task: Any) -> None:
        self._p, self._task = p, task

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._task, n)

    def describe(self, text: str) -> None:
        self._p.update(self._task, description=text)

    def print(self, text: str) -> None:
        """A line of the standard output, above the live display when both are the terminal."""
        if sys.stdout.isatty():
            self._p.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)


@contextlib.contextmanager
def progress(args: argparse.Namespace, description: str, total: int | None = None) -> Iterator[Any]:
    """A rich progress display on stderr (a bar if ``total``, else a spinner), with the
    elapsed time; nothing when stderr is not a terminal or with --quiet."""
    if not show_progress(args):
        yield _NoProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    cols: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total:
        cols += [BarColumn(), MofNCompleteColumn()]
    cols.append(TimeElapsedColumn())
    with Progress(*cols, console=Console(stderr=True), transient=True, redirect_stdout=False) as p:
        yield _Progress(p, p.add_task(description, total=total))


# --- terminals ----------------------------------------------------------------------------

def ascii_only(con: Any = None) -> bool:
    """Whether to draw with ASCII: LANG/LC_* say C/POSIX or a non-UTF-8 charset, or the
    output's encoding is not UTF-8."""
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        v = os.environ.get(var)
        if v:
            low = v.lower().replace("-", "")
            if v in ("C", "POSIX") or "utf8" not in low:
                return True
            break
    enc = getattr(con, "encoding", None) or getattr(sys.stdout, "encoding", None) or "utf-8"
    return not enc.lower().replace("-", "").startswith("utf")


def table_box(con: Any = None) -> Any:
    from rich import box

    return box.ASCII if ascii_only(con) else box.HEAVY_HEAD


def print_table(con: Any, columns: Sequence[tuple[str, str]], rows: Sequence[tuple[Sequence[str], bool]],
                keep: int = 1) -> None:
    """Print a table that never cuts a cell: when it is wider than the console, split it
    into parts that fit, each repeating the first ``keep`` columns, with a note saying so.
    ``columns``: (header, justify); ``rows``: (cells, ends a section)."""
    from rich.table import Table

    widths = [max([len(h)] + [len(r[0][i]) for r in rows]) for i, (h, _) in enumerate(columns)]

    def table_width(idx: list[int]) -> int:
        return sum(widths[i] + 3 for i in idx) + 1

    key = list(range(min(keep, len(columns))))
    rest = list(range(len(key), len(columns)))
    parts: list[list[int]] = []
    cur: list[int] = []
    for i in rest:
        if cur and table_width(key + cur + [i]) > con.width:
            parts.append(cur)
            cur = []
        cur.append(i)
    if cur or not parts:
        parts.append(cur)
    for n, part in enumerate(parts):
        idx = key + part
        if len(parts) > 1:
            shown = ", ".join(columns[i][0] for i in part)
            con.print(f"(part {n + 1} of {len(parts)}, split to fit {con.width} columns: {shown})")
        t = Table(box=table_box(con))
        for i in idx:
            t.add_column(columns[i][0], justify=columns[i][1], min_width=widths[i], no_wrap=True)  # type: ignore[arg-type]
        for cells, end in rows:
            t.add_row(*[cells[i] for i in idx], end_section=end)
        con.print(t)
