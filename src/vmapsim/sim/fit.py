"""Fit a cost preset's two free constants to its two published ONE-job cells.

    python -m vmapsim.sim.fit [--preset opteron-2008 | threadripper-3970x]

A preset is fittable if ``FITTABLE`` declares its cells -- two published one-job
figures, each a (design, workload, pages) run on the preset's machine -- and the two
constants solved for. With one job nothing contends, so a cell's simulated ns/op is a
linear function of the constants: the fit evaluates each cell at three points (the
preset, and each free constant moved by its step), solves the 2x2 system, and checks
the solution by running the cells once more. The two constants must weigh differently
in the two cells (the determinant printed); which two each preset frees, and why, is
said in ``FITTABLE`` and in docs/timing-model.md.

Every other constant keeps its sourced value (``vmapsim.hw.cost``). Cells with more
than one job are never used here: they are the model's predictions. A preset's
values are this script's output, rounded (a test checks they agree).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from ..hw.cost import CostModel, get_preset
from .run import SEED_TABLE, default_ops, machine_cpus, run


@dataclass(frozen=True)
class Cell:
    """One published one-job figure: ``ns`` per operation of ``workload`` on ``design``."""

    design: str
    workload: str
    pages: int
    ns: float
    source: str
    #: operations per job; None: the workload's default (what ``vmapsim bench`` runs)
    ops: int | None = None
    threads: int = 1


@dataclass(frozen=True)
class Fittable:
    """A preset's fit: its two cells, its two free constants (with the step each is
    moved by to measure its weight, and the rounding of the stored value)."""

    cells: tuple[Cell, Cell]
    free: tuple[str, str]
    steps: tuple[float, float]
    digits: tuple[int, int]
    why: str


FITTABLE: dict[str, Fittable] = {
    "opteron-2008": Fittable(
        cells=(
            Cell("2.6.28", "maptouch", 4, SEED_TABLE["2.6.28"][1], "the seed: rewrite, 1 thread"),
            Cell("2.6.27", "maptouch", 4, SEED_TABLE["2.6.27"][1], "the seed: old design, 1 thread"),
        ),
        free=("pte_write", "ipi_idle_wakeup"),
        steps=(100.0, 1000.0),
        digits=(1, 0),
        why="pte_write: the per-page mapping cost, most of the rewrite's cell (its "
            "flushes are rare); ipi_idle_wakeup: the old design's cell is mostly one "
            "global flush per op, IPIs to 7 idle CPUs",
    ),
    "threadripper-3970x": Fittable(
        cells=(
            Cell("6.1", "fix-size", 1, 576.131,
                 "Rezki, '[PATCH 0/9] Mitigate a vmap lock contention' (22 May 2023): "
                 "vmalloc()/vfree() pair of one page, 1 job, 0.576131 us, before the series"),
            Cell("6.9", "fix-size", 1, 555.889,
                 "the same post: 1 job, 0.555889 us, with the series"),
        ),
        free=("mem_access", "lock_acquire"),
        steps=(10.0, 10.0),
        digits=(1, 1),
        why="mem_access: a tree-node visit, the one cost whose count differs most "
            "(6.9's lazy tree is not merged, so it grows and its inserts walk deeper); "
            "lock_acquire: an uncontended lock pair, which 6.9 takes fewer times per "
            "pair. Every other constant weighs the same in both cells (one page mapped, "
            "touched, cleared; the same allocations), so pairing one of them with "
            "mem_access leaves 6.9's extra walk to be paid by a negative node cost",
    ),
}

#: The opteron-2008 fit's free constants (kept for callers of the single-preset API).
FREE = FITTABLE["opteron-2008"].free


def cell_ns(model: CostModel, cell: Cell, ops: int | None = None) -> float:
    """Simulated ns/op of ``cell`` on ``model``'s machine (``ops`` overrides the cell's)."""
    n = ops if ops is not None else cell.ops
    if n is None:
        n = default_ops(cell.design, cell.workload)
    return run(cell.design, cell.threads, cpus=machine_cpus(model), pages=cell.pages, cost=model,
               ops=n, workload=cell.workload).ns_per_op


def one_thread_ns(model: CostModel, design: str, pages: int = 4, ops: int | None = None) -> float:
    """Simulated ns/op of the seed's benchmark, one thread, on the preset's machine."""
    return cell_ns(model, Cell(design, "maptouch", pages, 0.0, ""),
                   ops=default_ops(design) if ops is None else ops)


@dataclass
class FitResult:
    values: dict[str, float]
    #: weights[i][j]: d(ns/op of cell i) / d(free constant j)
    weights: tuple[tuple[float, float], tuple[float, float]]
    det: float
    #: simulated ns/op of each cell with the rounded values
    got: tuple[float, float]


def solve(preset: str, ops: dict[str, int] | None = None) -> FitResult:
    """Solve for the preset's free constants; ``ops`` (by design) overrides the cells' ops."""
    try:
        spec = FITTABLE[preset]
    except KeyError:
        raise ValueError(f"no one-job cells are declared for preset {preset!r}") from None
    ops = ops or {}
    base = get_preset(preset)
    cells = spec.cells
    (p_name, q_name), (dp, dq) = spec.free, spec.steps
    p0, q0 = getattr(base, p_name), getattr(base, q_name)

    def at(model: CostModel) -> list[float]:
        return [cell_ns(model, c, ops.get(c.design)) for c in cells]

    f0 = at(base)
    fp = at(base.replace(**{p_name: p0 + dp}))
    fq = at(base.replace(**{q_name: q0 + dq}))
    # ns_i(p, q) = f0_i + a_i (p - p0) + b_i (q - q0)
    a = [(fp[i] - f0[i]) / dp for i in (0, 1)]
    b = [(fq[i] - f0[i]) / dq for i in (0, 1)]
    r = [cells[i].ns - f0[i] for i in (0, 1)]
    det = a[0] * b[1] - a[1] * b[0]
    if abs(det) < 1e-12:
        raise ArithmeticError(f"the one-job cells do not determine {p_name} and {q_name}")
    x = (r[0] * b[1] - r[1] * b[0]) / det
    y = (a[0] * r[1] - a[1] * r[0]) / det
    values = {p_name: round(p0 + x, spec.digits[0]), q_name: round(q0 + y, spec.digits[1])}
    got = at(base.replace(**values))
    return FitResult(values, ((a[0], b[0]), (a[1], b[1])), det, (got[0], got[1]))


def fit(preset: str = "opteron-2008", ops: dict[str, int] | None = None) -> dict[str, float]:
    """Solve for the preset's free constants so its one-job cells equal the published
    figures; returns the rounded values."""
    return solve(preset, ops).values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmapsim.sim.fit", description=__doc__.split("\n\n")[0])
    # only presets with published one-job cells of their own (altix-2008 and modern-x86
    # are derived, with no cell to fit to)
    ap.add_argument("--preset", default="opteron-2008", choices=sorted(FITTABLE))
    args = ap.parse_args(argv)
    spec = FITTABLE[args.preset]
    res = solve(args.preset)
    model = get_preset(args.preset)
    print(f"preset {args.preset}: fitted to its one-job cells")
    for name in spec.free:
        print(f"  {name:16s} = {res.values[name]:g}   (preset has {getattr(model, name):g})")
    p_name, q_name = spec.free
    print(f"  weights (ns/op per ns):       {p_name:>14s} {q_name:>14s}")
    for cell, (wa, wb) in zip(spec.cells, res.weights, strict=True):
        print(f"    {cell.design:8s} {cell.workload:10s} {wa:14.4f} {wb:14.4f}")
    cond = "" if abs(res.det) > 1e-3 else "  (ill-conditioned)"
    print(f"  determinant {res.det:.4f}{cond}")
    for cell, got in zip(spec.cells, res.got, strict=True):
        print(f"  {cell.design:8s} 1 job: {got:10.3f} ns/op   published {cell.ns:g}   ({cell.source})")
    same = all(abs(getattr(model, n) - res.values[n]) < 1e-9 for n in spec.free)
    print("preset matches the fit" if same else "preset DIFFERS from the fit: update vmapsim/hw/cost.py")
    return 0 if same else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
