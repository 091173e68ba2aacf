"""``vmapsim sweep``: a grid of benchmark cells on every core, or on a Dask cluster.

The grid is the product of the option lists (``--design 2.6.27,2.6.28 --threads 1-8
--seeds 0-4 ...``), or the blocks of a ``--grid FILE.toml``. Each cell is one
``vmapsim bench`` cell with the same figures bit for bit; rows stream to ``--out`` (CSV,
or JSON lines with ``--json``) as cells finish, and a rerun with the same ``--out``
skips the cells already there. With ``--json`` stdout gets, at the end, the one object
every command prints (``docs/json.md``), the grid's cells as its results. Grid file::

    seeds = "0-4"            # top-level axes apply to every [[grid]] block
    ops = 2000

    [[grid]]                 # each block is a product; the grid is their union
    design = ["2.6.27", "2.6.28"]
    threads = [1, 2, 4, 8]

    [[grid]]
    design = "2.6.28"
    threads = "16,64,1024"
    cost = "modern-x86"

An axis given on the command line replaces the file's values in every block.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any, NoReturn

from ..errors import ConfigError
from ..hw.cost import PRESETS
from ..sim import sweep as sw
from ..sim.workload import WORKLOADS
from . import _plotwords
from ._args import design_list
from ._output import add_output

#: what --dask takes besides "local": a scheduler address as dask.distributed.Client does
DASK_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+(:\d+)?/?$|^[A-Za-z0-9.\-\[\]:]+:\d+$")

NAME = "sweep"
HELP = "run a grid of bench cells (designs x threads x machines x workloads x seeds) in parallel"


# --- option values ------------------------------------------------------------------------

def int_list(what: str, lo: int, hi: int | None) -> Any:
    """An argparse type: ``"1,2,4"``, ``"0-4"`` or a mix -> sorted distinct ints in lo..hi."""

    def parse(text: str) -> list[int]:
        out: set[int] = set()
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                raise argparse.ArgumentTypeError(f"{what}: {text!r} has an empty entry")
            a, sep, b = part.partition("-")
            try:
                first, last = (int(a), int(b)) if sep else (int(part), int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{what}: {part!r} is not an integer or a range A-B") from None
            if first > last:
                raise argparse.ArgumentTypeError(f"{what}: the range {part!r} is empty")
            for n in (first, last):
                if n < lo or (hi is not None and n > hi):
                    bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                    raise argparse.ArgumentTypeError(f"{what}: {n} is out of range {bound}")
            if last - first > 100_000:
                raise argparse.ArgumentTypeError(f"{what}: the range {part!r} is too long")
            out.update(range(first, last + 1))
        if not out:
            raise argparse.ArgumentTypeError(f"{what}: give at least one value")
        return sorted(out)

    return parse


def choice_list(what: str, known: tuple[str, ...] | list[str]) -> Any:
    def parse(text: str) -> list[str]:
        out: list[str] = []
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                raise argparse.ArgumentTypeError(f"{what}: {text!r} has an empty entry")
            if part not in known:
                raise argparse.ArgumentTypeError(f"{what}: unknown {part!r}; known: {', '.join(known)}")
            if part not in out:
                out.append(part)
        if not out:
            raise argparse.ArgumentTypeError(f"{what}: give at least one name")
        return out

    return parse


def float_list(text: str) -> list[float]:
    out: list[float] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise argparse.ArgumentTypeError(f"other-ns: {text!r} has an empty entry")
        try:
            x = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"other-ns: {part!r} is not a number") from None
        if not (x >= 0 and math.isfinite(x)):
            raise argparse.ArgumentTypeError(f"other-ns: {part!r} must be a finite number >= 0")
        if x not in out:
            out.append(x)
    if not out:
        raise argparse.ArgumentTypeError("other-ns: give at least one number")
    return out


def _designs(text: str) -> list[str]:
    return design_list(text)


#: axis -> (parser of a string, as on the command line)
PARSERS: dict[str, Any] = {
    "design": _designs,
    "workload": choice_list("workload", WORKLOADS),
    "cost": choice_list("cost", sorted(PRESETS)),
    "threads": int_list("threads", 1, 1024),
    "cpus": int_list("cpus", 1, 1024),
    "pages": int_list("pages", 1, 1024),
    "ops": int_list("ops", 1, None),
    "seeds": int_list("seeds", 0, None),
    "other_ns": float_list,
}
#: names a grid file may use for an axis
FILE_NAMES = {**{a: a for a in sw.AXES}, "seed": "seeds", "other-ns": "other_ns", "designs": "design",
              "workloads": "workload"}


def axis_value(axis: str, value: Any, where: str) -> list:
    """A grid file's value (a scalar, a list, or a string as on the command line) -> a list."""
    items = value if isinstance(value, list) else [value]
    out: list = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ConfigError(f"{where}: {axis} = {v!r}: give a string, a number or a list of them")
        if axis in ("design", "workload", "cost") and not isinstance(v, str):
            raise ConfigError(f"{where}: {axis} = {v!r}: give a name")
        if isinstance(v, float) and axis != "other_ns":
            raise ConfigError(f"{where}: {axis} = {v!r}: give an integer")
        try:
            parsed = PARSERS[axis](str(v))
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"{where}: {e}") from None
        out.extend(x for x in parsed if x not in out)
    if not out:
        raise ConfigError(f"{where}: {axis} is an empty list")
    return out


def load_grid(path: str) -> list[dict[str, list]]:
    """The blocks of a grid file: top-level axes, then one product per ``[[grid]]`` block."""
    import tomllib

    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--grid {path}: {e}") from None

    def axes(table: dict, where: str) -> dict[str, list]:
        out: dict[str, list] = {}
        for k, v in table.items():
            if k not in FILE_NAMES:
                raise ConfigError(f"{where}: unknown key {k!r}; axes: {', '.join(sw.AXES)} (and [[grid]] blocks)")
            out[FILE_NAMES[k]] = axis_value(FILE_NAMES[k], v, where)
        return out

    blocks = data.pop("grid", None)
    top = axes(data, f"--grid {path}")
    if blocks is None:
        return [top]
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ConfigError(f"--grid {path}: 'grid' must be [[grid]] tables")
    return [{**top, **axes(b, f"--grid {path}, [[grid]] block {i + 1}")} for i, b in enumerate(blocks)]


def build_cells(args: argparse.Namespace) -> list[sw.Cell]:
    given = {a: getattr(args, a) for a in sw.AXES if getattr(args, a) is not None}
    blocks = load_grid(args.grid) if args.grid else [{}]
    cells: dict[tuple, sw.Cell] = {}
    for b in blocks:
        for c in sw.expand({**b, **given}):
            cells.setdefault(c.key(), c)
    return list(cells.values())


# --- the command --------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    def error(message: str) -> NoReturn:  # one line, no usage block
        p.exit(2, f"{p.prog}: {message}\n")

    p.error = error  # type: ignore[method-assign]
    g = p.add_argument_group("the grid (each a comma-separated list; integers also as ranges A-B)")
    g.add_argument("--design", type=PARSERS["design"], default=None, metavar="NAMES",
                   help="designs (default 2.6.27,2.6.28; `vmapsim designs` lists them)")
    g.add_argument("--threads", type=PARSERS["threads"], default=None, metavar="LIST",
                   help="thread counts, 1..1024 (default 1,2,4,8)")
    g.add_argument("--workload", type=PARSERS["workload"], default=None, metavar="NAMES",
                   help=f"workloads: {', '.join(WORKLOADS)} (default maptouch)")
    g.add_argument("--cost", type=PARSERS["cost"], default=None, metavar="PRESETS",
                   help=f"cost-model presets (machines): {', '.join(sorted(PRESETS))} "
                        "(default: each workload's own machine)")
    g.add_argument("--seeds", "--seed", dest="seeds", type=PARSERS["seeds"], default=None, metavar="LIST",
                   help="random seeds, e.g. 0-4 (default 0)")
    g.add_argument("--pages", type=PARSERS["pages"], default=None, metavar="LIST",
                   help="pages per mapping (default: the workload's)")
    g.add_argument("--ops", type=PARSERS["ops"], default=None, metavar="LIST",
                   help="operations per thread (default: as vmapsim bench)")
    g.add_argument("--cpus", type=PARSERS["cpus"], default=None, metavar="LIST",
                   help="CPUs of the machine (default: the preset's, or the thread count if larger)")
    g.add_argument("--other-ns", dest="other_ns", type=PARSERS["other_ns"], default=None, metavar="LIST",
                   help="simulated ns of other work per operation (xfsdir; default: the fitted amount)")
    g.add_argument("--grid", metavar="FILE.toml", default=None,
                   help="read the grid from a TOML file (see `pydoc vmapsim.commands.sweep`); "
                        "axis options given as well replace the file's")
    add_output(p, "--out", metavar="FILE", default=None,
                   help="write the rows to FILE as cells finish (default: stdout); rerunning with "
                        "the same FILE skips the cells already in it")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object at the end, the cells as its results (docs/json.md); "
                        "--out then gets JSON lines instead of CSV")
    p.add_argument("-j", "--jobs", type=int_list_one, default=None, metavar="N",
                   help="local worker processes (default: one per core; 1: in this process)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the cells on the Dask scheduler at ADDRESS (tcp://HOST:8786), or "
                        "'local' for a LocalCluster of -j workers on this machine")
    add_output(p, "--plot", image=True, metavar="FILE", default=None,
                   help="ns/op against threads to FILE.png or FILE.svg: a line per design, a panel "
                        "per machine/workload, the spread over seeds as a band")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")


def int_list_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be positive")
    return n


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Progress:
    """Cells done, running and failed, with the time left, on stderr (a terminal only)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled and total > 0
        self.running = 0
        self.failed = 0
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[running]} running, {task.fields[failed]} failed"),
                           TextColumn("left"), TimeRemainingColumn(),
                           console=Console(stderr=True), transient=True)
        self._task = self._p.add_task("sweep", total=total, running=0, failed=0)
        self._p.start()

    def event(self, ev: sw.Event) -> None:
        if ev.kind == "start":
            self.running += 1
        else:
            self.running -= 1
            if ev.row is not None and ev.row["status"] != "ok":
                self.failed += 1
        if self.enabled:
            self._p.update(self._task, advance=int(ev.kind == "done"), running=self.running,
                           failed=self.failed)

    def note(self, text: str) -> None:
        if self.enabled:
            self._p.console.print(text)

    def stop(self) -> None:
        if self.enabled:
            self._p.stop()


def run(args: argparse.Namespace) -> int:
    prog = "vmapsim sweep"
    try:
        if args.plot and not args.plot.endswith((".png", ".svg")):
            raise ConfigError(f"--plot {args.plot!r}: the file name must end in .png or .svg")
        if args.dask is not None and not (args.dask == "local" or DASK_ADDRESS.match(args.dask)):
            raise ConfigError(f"--dask: give a scheduler address (tcp://HOST:8786) or 'local', "
                              f"got {args.dask!r}")
        cells = build_cells(args)
        if not cells:
            raise ConfigError("the grid has no cells")
        fmt = "json" if args.json else "csv"
        # --json: the rows stream to --out as JSON lines (resume reads them back), and stdout
        # gets the one object of every command at the end (no --out: that object alone)
        sink = io.StringIO() if args.json else sys.stdout
        out = sw.ResultFile(args.out, fmt) if args.out else sw.ResultFile(None, fmt, stream=sink)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    todo = sorted((c for c in cells if c.key() not in out.done), key=sw.estimate, reverse=True)
    skipped = len(cells) - len(todo)
    jobs = args.jobs or cores()
    quiet = args.quiet
    if not quiet and skipped:
        print(f"{prog}: {skipped} of {len(cells)} cells already in {args.out}, running {len(todo)}",
              file=sys.stderr)
    progress = _Progress(len(todo), enabled=not quiet and sys.stderr.isatty())
    new_rows: list[dict[str, Any]] = []
    failed = 0
    t0 = time.perf_counter()
    try:
        if not todo:
            events: Any = sw.run_sequential([])
        elif args.dask is not None:
            events = sw.run_dask(todo, args.dask, jobs, on_ready=progress.note)
        elif min(jobs, len(todo)) == 1:
            events = sw.run_sequential(todo)
        else:
            events = sw.run_local(todo, min(jobs, len(todo)))
        with closing(events):
            for ev in events:
                progress.event(ev)
                if ev.kind != "done" or ev.row is None:
                    continue
                out.write(ev.row)
                new_rows.append(ev.row)
                if ev.row["status"] != "ok":
                    failed += 1
                    msg = f"{prog}: cell failed: {ev.cell.label()}: {ev.row['error']}"
                    if progress.enabled:
                        progress.note(msg)
                    else:
                        print(msg, file=sys.stderr)
    except KeyboardInterrupt:
        progress.stop()
        out.close()
        where = f"; {args.out} holds them, rerun the same command to resume" if args.out else ""
        print(f"{prog}: interrupted after {len(new_rows)} of {len(todo)} cells{where}", file=sys.stderr)
        return 130
    except ConfigError as e:
        progress.stop()
        out.close()
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except sw.SweepError as e:
        progress.stop()
        out.close()
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    progress.stop()
    out.close()
    wall = time.perf_counter() - t0
    if not quiet:
        where = f" to {args.out}" if args.out else ""
        print(f"{prog}: {len(todo) - failed} cells run, {failed} failed, {skipped} already done, "
              f"{wall:.1f} s wall{where}", file=sys.stderr)
    if args.json:
        from ._result import parameters, print_json

        print_json(NAME, parameters(args, jobs=jobs, cells=len(cells), already_done=skipped), grid_rows(cells, out.rows, new_rows), wall)
    if args.plot:
        keys = {c.key() for c in cells}
        rows = [r for k, r in out.rows.items() if k in keys]
        if rows:
            plot(rows, args.plot)
            if not quiet:
                print(f"{prog}: plot written to {args.plot}", file=sys.stderr)
        else:
            print(f"{prog}: no finished cell to plot", file=sys.stderr)
    return 1 if failed else 0


def grid_rows(cells: list[sw.Cell], done: dict[tuple, dict[str, Any]],
              new_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell of the grid, in the grid's order: this run's (failed ones too)
    and those an earlier run left in --out."""
    mine = {sw.Cell(**{k: r[k] for k in sw.PARAM_COLUMNS}).key(): r for r in new_rows}
    out = []
    for c in cells:
        row = mine.get(c.key()) or done.get(c.key())
        if row is not None:
            out.append({col: row[col] for col in sw.COLUMNS})
    return out


# --- the plot -----------------------------------------------------------------------------

FACET_KEYS = ("workload", "cost", "pages", "ops_per_thread", "cpus", "other_ns")


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """ns/op against threads: a panel per (workload, machine, and any other parameter that
    varies), a line per design (the mean over seeds), the seeds' min..max as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varying = [k for k in FACET_KEYS if len({r[k] for r in rows}) > 1]
    panel_keys = [k for k in FACET_KEYS if k in ("workload", "cost") or k in varying]
    panels = sorted({tuple(r[k] for k in panel_keys) for r in rows}, key=lambda t: [str(x) for x in t])
    designs = sorted({r["design"] for r in rows}, key=lambda d: [(0, int(p)) if p.isdigit() else (1, p)
                                                                  for p in d.split(".")])
    palette = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink")
    colours = {d: palette[i % len(palette)] for i, d in enumerate(designs)}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    names = {"ops_per_thread": "ops", "other_ns": "other ns"}
    for i, pk in enumerate(panels):
        ax = axs[i // ncols][i % ncols]
        sel = [r for r in rows if tuple(r[k] for k in panel_keys) == pk]
        xs_all: set[int] = set()
        ys_all: list[float] = []
        for d in designs:
            by: dict[int, list[float]] = {}
            for r in sel:
                if r["design"] == d:
                    by.setdefault(r["threads"], []).append(float(r["ns_per_op"]))
            if not by:
                continue
            xs = sorted(by)
            mean = [sum(by[x]) / len(by[x]) for x in xs]
            lo = [min(by[x]) for x in xs]
            hi = [max(by[x]) for x in xs]
            nseeds = max(len(v) for v in by.values())
            label = d + (f" ({nseeds} seeds)" if nseeds > 1 else "")
            ax.plot(xs, mean, "o-", color=colours[d], label=label, markersize=4)
            if nseeds > 1:
                ax.fill_between(xs, lo, hi, color=colours[d], alpha=0.2, linewidth=0)
            xs_all.update(xs)
            ys_all += lo + hi
        if xs_all and max(xs_all) / min(xs_all) >= 8:
            ax.set_xscale("log", base=2)
        if ys_all and max(ys_all) / max(min(ys_all), 1e-9) >= 10:
            ax.set_yscale("log")
            _plotwords.label_log_axis(ax.yaxis, min(ys_all), max(ys_all))
        ticks = sorted(xs_all)
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(x) for x in ticks], fontsize=7)
        words: dict[str, Callable[[str], str]] = {"workload": _plotwords.workload_words,
                                                  "cost": _plotwords.machine_words}
        ax.set_title("\n".join(textwrap.wrap(", ".join(
            f"{names.get(k, k)} {v:g}" if isinstance(v, float) else
            (words[k](str(v)) if k in words else f"{names.get(k, k)} {v}")
            for k, v in zip(panel_keys, pk, strict=True) if v is not None), 48)), fontsize=9)
        ax.set_xlabel("threads", fontsize=8)
        ax.set_ylabel("ns per op (simulated)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for j in range(len(panels), nrows * ncols):
        axs[j // ncols][j % ncols].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
