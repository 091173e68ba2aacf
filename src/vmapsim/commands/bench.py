"""``vmapsim bench``: the seed's table (map+touch+unmap of 4 pages, N threads), simulated.

By default: both designs at 1, 2, 4 and 8 threads on the 8-CPU ``opteron-2008``
preset, printed beside the seed's figures with each cell's deviation and the speedup
row. The one-thread cells are what the cost model was fitted to; every other cell is
a prediction.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from typing import Any

from ..errors import ConfigError
from ..hw.cost import PRESETS, get_preset
from ..sim.run import SEED_TABLE, RunResult, default_cost, machine_cpus
from ..sim.run import run as simulate
from ..sim.workload import WORKLOADS
from . import _plotwords
from ._args import PRESET_CPUS_HELP, add_design, add_seed
from ._args import positive_int as positive
from ._output import add_output, stdout_console
from ._result import add_formats, parameters, print_json, print_table, show_progress, write_csv

NAME = "bench"
HELP = "the seed's benchmark table: ns per map+touch+unmap on N simulated CPUs, both designs"

def parse_threads(text: str) -> list[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; each 1..1024, none empty or given twice (argparse type)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; give counts "
                                             f"separated by single commas, e.g. 1,2,4,8")
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not an integer") from None
        if not 1 <= n <= 1024:
            raise argparse.ArgumentTypeError(f"{n} is out of range 1..1024")
        if n in out:
            raise argparse.ArgumentTypeError(f"{n} is given twice in {text!r}")
        out.append(n)
    return sorted(out)


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by bench and profile."""
    p.add_argument("--workload", default="maptouch", choices=WORKLOADS,
                   help="maptouch: the seed's benchmark (default); xfsdir: XFS directory buffers")
    p.add_argument("--cpus", type=positive, default=None, help=PRESET_CPUS_HELP)
    p.add_argument("--pages", type=positive, default=None,
                   help="pages per mapping (default: 4 for maptouch, 16 for xfsdir)")
    p.add_argument("--ops", type=positive, default=None,
                   help="operations per thread (default: 12288 on the rewrite, 2048 on legacy)")
    p.add_argument("--cost", default=None, choices=sorted(PRESETS),
                   help="cost-model preset (default: the workload's machine: opteron-2008, "
                        "2 sockets x 4 cores, for maptouch; altix-2008, 64 CPUs, for xfsdir)")
    add_seed(p)


def cost_preset(args: argparse.Namespace) -> str:
    """--cost, or the workload's own machine."""
    return args.cost or default_cost(args.workload)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_design(p, "both", "comma-separated designs to run; both = 2.6.27,2.6.28")
    p.add_argument("--threads", type=parse_threads, default=[1, 2, 4, 8],
                   help="comma-separated thread counts, 1..1024 (default 1,2,4,8)")
    add_common(p)
    add_formats(p, "the per-cell results")
    add_output(p, "--plot", image=True, metavar="FILE", default=None,
                   help="draw ns/op against threads to FILE.png or FILE.svg (checked before the run)")


def default_pages(workload: str) -> int:
    """The workload's own pages per operation (``DEFAULT_PAGES``; 4, the seed's, if none)."""
    from ..sim.workload import load

    return int(getattr(load(workload), "DEFAULT_PAGES", 4))


def seed_figure(r: RunResult, seed_cpus: int) -> float | None:
    """The published ns/op for this cell, if there is one: the seed's table, or a
    preset's one-job cells (``vmapsim.sim.fit.FITTABLE``: e.g. Rezki's Threadripper
    figures for fix-size, whose other cells are held out)."""
    from ..sim.fit import FITTABLE

    if r.cpus != seed_cpus:
        return None
    if r.workload == "maptouch" and r.pages == 4 and r.cost == "opteron-2008":
        return SEED_TABLE.get(r.design, {}).get(r.threads)
    spec = FITTABLE.get(r.cost)
    if spec is not None and r.threads == 1:
        for c in spec.cells:
            if (c.design, c.workload, c.pages) == (r.design, r.workload, r.pages):
                return c.ns
    return None


def run_cells(designs: list[str], threads: list[int], args: argparse.Namespace,
              quiet: bool = False) -> list[RunResult]:
    """Run every (design, threads) cell with a rich progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    model = get_preset(cost_preset(args))
    cells = [(d, t) for d in designs for t in threads]
    for _, t in cells:
        if args.cpus is not None and args.cpus < t:
            raise ConfigError(f"--cpus {args.cpus} is fewer than --threads {t}")
    results = []
    console = Console(stderr=True)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet or not show_progress(args)) as progress:
        task = progress.add_task("simulating", total=len(cells))
        for d, t in cells:
            progress.update(task, description=f"{d}, {t} thread{'s' if t > 1 else ''}")
            results.append(simulate(d, t, cpus=args.cpus, pages=args.pages or default_pages(args.workload),
                               ops=args.ops, cost=model, seed=args.seed, workload=args.workload))
            progress.advance(task)
    return results


def result_json(r: RunResult, seed_cpus: int) -> dict[str, Any]:
    d = r.as_json()
    s = seed_figure(r, seed_cpus)
    d["published_ns_per_op"] = s  # the seed's table (or a preset's published cell), not --seed
    d["deviation"] = None if s is None else r.ns_per_op / s - 1.0
    return d


def _fmt_ns(x: float) -> str:
    return f"{x:,.0f}"


def _console() -> Any:
    import os

    con = stdout_console()
    if not con.is_terminal and not os.environ.get("COLUMNS"):
        con = stdout_console(width=150)  # piped / captured: do not squeeze the tables to 80 columns
    return con


class _Rows:
    """A table's columns and rows, printed by :func:`._result.print_table` (split to fit
    the terminal rather than cut a number)."""

    def __init__(self) -> None:
        self.columns: list[tuple[str, str]] = []
        self.rows: list[tuple[list[str], bool]] = []

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append((header, justify))

    def add_row(self, *cells: str, end_section: bool = False) -> None:
        self.rows.append((list(cells), end_section))

    def print(self, con: Any, keep: int = 1) -> None:
        print_table(con, self.columns, self.rows, keep=keep)


def print_tables(results: list[RunResult], designs: list[str], threads: list[int],
                 seed_cpus: int, wall: float) -> None:
    from ._result import ascii_only

    con = _console()
    by = {(r.design, r.threads): r for r in results}
    r0 = results[0]
    from ..sim.workload import load

    per_us = getattr(load(r0.workload), "UNIT", "ns") == "us"  # the unit its published figures use
    fmt_op = (lambda x: f"{x / 1000:.3f}") if per_us else _fmt_ns
    con.print(f"simulated {('us' if ascii_only(con) else 'µs') if per_us else 'ns'} per operation: {r0.workload}, {r0.pages} pages, "
              f"cost preset {r0.cost}")
    t = _Rows()
    t.add_column("")
    for n in threads:
        t.add_column(f"{n} thr" + (f" / {by[(designs[0], n)].cpus} cpu" if by[(designs[0], n)].cpus != seed_cpus else ""),
                     justify="right")
    for d in designs:
        seeds = [seed_figure(by[(d, n)], seed_cpus) for n in threads]
        has_seed = any(s is not None for s in seeds)
        t.add_row(f"{d} (vmapsim)", *[fmt_op(by[(d, n)].ns_per_op) for n in threads],
                  end_section=not has_seed)
        if has_seed:
            label = "seed" if r0.workload == "maptouch" else "published"
            t.add_row(f"{d} ({label})", *["-" if s is None else fmt_op(s) for s in seeds])
            devs = []
            for n, s in zip(threads, seeds, strict=True):
                if s is None:
                    devs.append("-")
                else:
                    dev = by[(d, n)].ns_per_op / s - 1.0
                    tag = " (fit)" if n == 1 else ""
                    devs.append(f"{dev:+.1%}{tag}")
            t.add_row(f"{d} deviation", *devs, end_section=True)
    base = designs[0]
    for d in designs[1:]:
        # the speedup of each later design over the first one listed
        t.add_row(f"{d} speedup over {base}",
                  *[f"{by[(base, n)].ns_per_op / by[(d, n)].ns_per_op:.1f}x" for n in threads])
        seed_sp = []
        for n in threads:
            a = seed_figure(by[(base, n)], seed_cpus)
            b = seed_figure(by[(d, n)], seed_cpus)
            seed_sp.append("-" if a is None or b is None else f"{a / b:.1f}x")
        if any(x != "-" for x in seed_sp):
            t.add_row(f"{d} speedup ({'seed' if r0.workload == 'maptouch' else 'published'})", *seed_sp)
    t.print(con)
    if any(seed_figure(r, seed_cpus) is not None for r in results):
        con.print("The one-thread cells are fitted (vmapsim.sim.fit); every other cell is a prediction.")
    elif r0.workload == "xfsdir" and len(designs) > 1:
        from ..workloads import xfsdir

        for d in designs[1:]:
            for n in threads:
                sp = by[(designs[0], n)].ns_per_op / by[(d, n)].ns_per_op
                con.print(f"xfsdir at {n} thread{'s' if n > 1 else ''}: {d} over {designs[0]} {sp:.1f}x "
                          f"(prediction); the seed reported {xfsdir.SEED_SPEEDUP:.0f}x for 2.6.28 over "
                          f"2.6.27 on a 64-CPU machine")
    con.print("per cell:")
    dt = _Rows()
    for col in ("design", "thr", "cpus", "ops/thr", "ns/op", "p99 ns", "IPI sent/op", "IPI recv/op",
                "flushes", "purges", "lock wait/op", "wall s", "sim ops/s"):
        dt.add_column(col, justify="left" if col == "design" else "right")
    for r in results:
        dt.add_row(r.design, str(r.threads), str(r.cpus), str(r.ops_per_thread), _fmt_ns(r.ns_per_op),
                   _fmt_ns(r.p99_ns), f"{r.ipis_per_op:.3g}", f"{r.ipis_received_per_op:.3g}",
                   str(r.flushes), str(r.purges), _fmt_ns(r.lock_wait_per_op), f"{r.wall_seconds:.2f}",
                   f"{r.sim_ops_per_sec:,.0f}")
    dt.print(con, keep=2)
    total_ops = sum(r.ops for r in results)
    con.print(f"simulator: {total_ops:,} operations in {wall:.1f} s wall-clock "
              f"({total_ops / wall if wall else 0:,.0f} simulated ops/s)")


def plot(results: list[RunResult], designs: list[str], seed_cpus: int, path: str) -> None:
    """ns/op against threads per design (and the seed's points), PNG or SVG."""
    if not path.endswith((".png", ".svg")):
        raise ConfigError(f"--plot {path!r}: the file name must end in .png or .svg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    palette = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
    colours = {d: palette[i % len(palette)] for i, d in enumerate(designs)}
    xs_all: list[int] = []
    ys_all: list[float] = []
    by_name: dict[str, list[RunResult]] = {}
    for r in results:
        by_name.setdefault(r.design, []).append(r)
    for d in designs:
        rs = sorted(by_name.get(d, []), key=lambda r: r.threads)
        xs = [r.threads for r in rs]
        ys = [r.ns_per_op for r in rs]
        xs_all += xs
        ys_all += ys
        ax.plot(xs, ys, "o-", color=colours.get(d), label=f"{d} (vmapsim)")
        seed: list[tuple[int, float]] = []
        for r in rs:
            y = seed_figure(r, seed_cpus)
            if y is not None:
                seed.append((r.threads, y))
        if seed:
            ax.plot([x for x, _ in seed], [y for _, y in seed], "s--", color=colours.get(d),
                    alpha=0.5, label=f"{d} (seed)")
            ys_all += [y for _, y in seed]
    if xs_all and max(xs_all) / min(xs_all) >= 8:
        ax.set_xscale("log", base=2)
    if ys_all and max(ys_all) / max(min(ys_all), 1e-9) >= 10:
        ax.set_yscale("log")
        _plotwords.label_log_axis(ax.yaxis, min(ys_all), max(ys_all))
    ax.set_xticks(sorted(set(xs_all)))
    ax.set_xticklabels([str(x) for x in sorted(set(xs_all))])
    ax.set_xlabel("threads (one per CPU)")
    ax.set_ylabel("ns per operation (simulated)")
    r0 = results[0]
    title = (f"{_plotwords.workload_words(r0.workload, r0.pages)} on {_plotwords.machine_words(r0.cost)}: "
             f"{_plotwords.kernels_words(designs)}")
    if xs_all and max(xs_all) > seed_cpus:
        ax.axvline(seed_cpus, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"past {seed_cpus} threads the machine grows\n(more CPUs of the same kind)",
                    xy=(seed_cpus, 0.5), xycoords=("data", "axes fraction"), xytext=(-4, 0),
                    textcoords="offset points", fontsize=7, color="dimgrey", va="center", ha="right")
    ax.set_title("\n".join(textwrap.wrap(title, 62)), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    designs: list[str] = args.design
    try:
        seed_cpus = machine_cpus(get_preset(cost_preset(args)))
        t0 = time.perf_counter()
        results = run_cells(designs, args.threads, args)
        wall = time.perf_counter() - t0
        if args.plot:
            plot(results, designs, seed_cpus, args.plot)
    except ConfigError as e:
        print(f"vmapsim bench: {e}", file=sys.stderr)
        return 2
    if args.json or args.csv:
        cells = [result_json(r, seed_cpus) for r in results]
        if args.json:
            print_json(NAME, parameters(args, cost=cost_preset(args), plot=args.plot), cells, wall)
        else:
            write_csv(list(cells[0]) if cells else [], cells)
    else:
        print_tables(results, designs, args.threads, seed_cpus, wall)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
