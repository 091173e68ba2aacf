"""Design-space sweeps: many independent benchmark cells on local processes or a Dask cluster.

A *cell* is one call of :func:`vmapsim.sim.run.run` with every parameter resolved (no
defaults left to the run), so the cell alone decides its figures: the same cell gives
the same simulated fields bit for bit in this process, in a worker process, on a Dask
worker, or in ``vmapsim bench`` with the same options. :func:`run_cell` is what every
runner executes; it never raises (a failing cell comes back as a row with its error).

Runners (:func:`run_sequential`, :func:`run_local`, :func:`run_dask`) are generators of
:class:`Event` (a cell started, a cell done with its row) so the caller can stream rows
to a file and draw progress. Dask is imported only by :func:`run_dask`.

:class:`ResultFile` is the output: CSV (or JSON lines), one row per cell, appended and
flushed as each cell finishes; opening an existing file reads the cells already done
(resume) and drops failed rows and a torn last line.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from typing import IO, Any

from ..errors import ConfigError
from ..hw.cost import PRESETS, get_preset
from .run import RunResult, default_cost, default_ops, machine_cpus
from .workload import WORKLOADS


class SweepError(Exception):
    """The sweep cannot go on (a scheduler unreachable, a worker at another version)."""


# --- cells -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cell:
    """One fully resolved benchmark cell (``other_ns`` None: the workload's own default)."""

    design: str
    workload: str
    cost: str
    threads: int
    cpus: int
    pages: int
    ops_per_thread: int
    seed: int
    other_ns: float | None = None

    def key(self) -> tuple:
        return astuple(self)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def label(self) -> str:
        extra = "" if self.other_ns is None else f", other {self.other_ns:g} ns"
        return (f"{self.design} {self.workload} {self.cost} {self.threads} thr/{self.cpus} cpu, "
                f"{self.pages} pages x {self.ops_per_thread} ops, seed {self.seed}{extra}")


PARAM_COLUMNS = tuple(f.name for f in fields(Cell))
#: RunResult fields that repeat a parameter (``ops_per_thread`` included) are not repeated.
_RESULT_FIELDS = tuple(f.name for f in fields(RunResult)
                       if f.name not in ("profile", "cpu_stacks") and f.name not in PARAM_COLUMNS)
#: Per-cell fields as ``vmapsim bench --json`` gives them, less the parameters.
RESULT_COLUMNS = _RESULT_FIELDS + ("published_ns_per_op", "deviation")
RUN_COLUMNS = ("status", "error", "cell_seconds", "worker")
COLUMNS = PARAM_COLUMNS + RESULT_COLUMNS + RUN_COLUMNS
#: Fields that depend on the host's speed rather than on the simulation.
WALL_FIELDS = frozenset({"wall_seconds", "sim_ops_per_sec", "cell_seconds", "worker"})
#: Every field the simulation decides: equal bit for bit wherever a cell runs.
SIMULATED_FIELDS = tuple(c for c in PARAM_COLUMNS + RESULT_COLUMNS if c not in WALL_FIELDS)

_INT = {"threads", "cpus", "pages", "ops_per_thread", "seed"} | {
    f.name for f in fields(RunResult) if f.type in ("int", int) and f.name in _RESULT_FIELDS}
_STR = {"design", "workload", "cost", "status", "error", "worker"}

#: Axes of a grid, as named on the command line and in a grid file.
AXES = ("design", "workload", "cost", "threads", "cpus", "pages", "ops", "seeds", "other_ns")


def default_pages(workload: str) -> int:
    from .workload import load

    return int(getattr(load(workload), "DEFAULT_PAGES", 4))


def resolve_cell(design: str, workload: str, cost: str | None, threads: int, cpus: int | None,
                 pages: int | None, ops: int | None, seed: int, other_ns: float | None) -> Cell:
    """A cell with every default decided as ``vmapsim bench`` decides it."""
    from ..mm import designs

    design = designs.resolve(design)
    if workload not in WORKLOADS:
        raise ConfigError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    cost = cost or default_cost(workload)
    if cost not in PRESETS:
        raise ConfigError(f"unknown cost preset {cost!r}; known: {', '.join(sorted(PRESETS))}")
    if cpus is None:
        cpus = max(threads, machine_cpus(get_preset(cost)))
    if cpus < threads:
        raise ConfigError(f"cpus {cpus} is fewer than threads {threads}: a thread needs a CPU "
                          "(use grid blocks in a --grid file for cells that are not a product)")
    return Cell(design, workload, cost, threads, cpus, pages or default_pages(workload),
                ops or default_ops(design, workload), seed, None if other_ns is None else float(other_ns))


def expand(axes: dict[str, Sequence[Any]]) -> list[Cell]:
    """The product of the axes (a missing axis or None: the default), without repeats.

    ``axes`` maps names of :data:`AXES` to lists; as in ``vmapsim bench``, ``design``
    defaults to 2.6.27 and 2.6.28, ``threads`` to 1, 2, 4, 8, ``workload`` to maptouch,
    ``seeds`` to [0], the others to each cell's own default.
    """
    unknown = set(axes) - set(AXES)
    if unknown:
        raise ConfigError(f"unknown axis {sorted(unknown)[0]!r}; axes: {', '.join(AXES)}")

    def axis(name: str, default: Sequence[Any]) -> Sequence[Any]:
        v = axes.get(name)
        if v is None:
            return default
        if not v:
            raise ConfigError(f"{name}: the list is empty")
        return v

    out: dict[tuple, Cell] = {}
    for wl, cost, pages, ops, cpus, other, d, t, s in itertools.product(
            axis("workload", ["maptouch"]), axis("cost", [None]), axis("pages", [None]), axis("ops", [None]),
            axis("cpus", [None]), axis("other_ns", [None]), axis("design", ["2.6.27", "2.6.28"]),
            axis("threads", [1, 2, 4, 8]), axis("seeds", [0])):
        c = resolve_cell(d, wl, cost, t, cpus, pages, ops, s, other)
        out.setdefault(c.key(), c)
    return list(out.values())


def estimate(cell: Cell) -> float:
    """A rough relative cost, to start the longest cells first (less idle time at the end)."""
    return cell.threads * cell.ops_per_thread * (cell.pages + 8)


# --- one cell ----------------------------------------------------------------------------

def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def failed_row(cell: Cell, error: str, seconds: float = 0.0, worker: str = "") -> dict[str, Any]:
    row: dict[str, Any] = cell.params()
    row.update(dict.fromkeys(RESULT_COLUMNS))
    row.update(status="error", error=error, cell_seconds=seconds, worker=worker)
    return row


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell; its row (every column of :data:`COLUMNS`). Never raises an Exception."""
    from ..commands.bench import result_json
    from .run import run

    t0 = time.perf_counter()
    try:
        r = run(cell.design, cell.threads, cpus=cell.cpus, pages=cell.pages, ops=cell.ops_per_thread,
                cost=get_preset(cell.cost), seed=cell.seed, workload=cell.workload, other_ns=cell.other_ns)
        res = result_json(r, machine_cpus(get_preset(cell.cost)))
    except Exception as e:  # recorded, and the sweep goes on
        return failed_row(cell, f"{type(e).__name__}: {e}", time.perf_counter() - t0, worker_name())
    row: dict[str, Any] = cell.params()
    row.update((k, res[k]) for k in RESULT_COLUMNS)
    row.update(status="ok", error="", cell_seconds=time.perf_counter() - t0, worker=worker_name())
    return row


# --- runners -----------------------------------------------------------------------------

@dataclass(slots=True)
class Event:
    """``kind`` "start" (row None) or "done"; ``roundtrip``: seconds from submission to result."""

    kind: str
    cell: Cell
    row: dict[str, Any] | None = None
    roundtrip: float = 0.0


def run_sequential(cells: Iterable[Cell]) -> Iterator[Event]:
    """Every cell in this process, one after the other."""
    for c in cells:
        yield Event("start", c)
        t0 = time.perf_counter()
        row = run_cell(c)
        yield Event("done", c, row, time.perf_counter() - t0)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(ex: Any, kill: bool) -> None:
    procs = list((getattr(ex, "_processes", None) or {}).values()) if kill else []
    ex.shutdown(wait=not kill, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)


def run_local(cells: Iterable[Cell], jobs: int,
              fn: Callable[[Cell], dict[str, Any]] = run_cell) -> Iterator[Event]:
    """The cells on ``jobs`` worker processes (spawned: nothing of this process is shared).

    At most ``jobs`` cells are in flight, so a worker that dies takes only its own cell
    (and the others then in flight) with it: those are recorded as failed, a new pool
    is started and the sweep goes on. ``fn`` is what a worker runs (a test's stand-in).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")

    def pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_ignore_sigint)

    pending = deque(cells)
    inflight: dict[Any, tuple[Cell, float]] = {}
    ex = pool()
    finished = False
    try:
        while pending or inflight:
            while pending and len(inflight) < jobs:
                c = pending.popleft()
                # submit() may start a worker: with SIGINT blocked the worker inherits it
                # blocked, so Ctrl-C never reaches it even before its initializer runs
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    f = ex.submit(fn, c)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                inflight[f] = (c, time.perf_counter())
                yield Event("start", c)
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for f in done:
                c, t0 = inflight.pop(f)
                try:
                    row = f.result()
                except BrokenProcessPool:
                    broken = True
                    row = failed_row(c, "worker process lost (killed or crashed) while this cell ran")
                except Exception as e:  # e.g. a result that cannot be unpickled
                    row = failed_row(c, f"{type(e).__name__}: {e}")
                yield Event("done", c, row, time.perf_counter() - t0)
            if broken:
                for f, (c, t0) in list(inflight.items()):
                    del inflight[f]
                    yield Event("done", c, failed_row(c, "worker process lost (killed or crashed) "
                                                         "while this cell ran"), time.perf_counter() - t0)
                _stop_pool(ex, kill=True)
                ex = pool()
        finished = True
    finally:
        _stop_pool(ex, kill=not finished)


def _dask_cell(cell: Cell) -> dict[str, Any]:
    row = run_cell(cell)
    try:
        from distributed import get_worker

        row["worker"] = get_worker().address
    except (ImportError, ValueError):
        pass
    return row


def check_worker_versions(versions: dict[str, str | None]) -> None:
    """SweepError naming the first worker whose vmapsim is missing or at another version."""
    import vmapsim

    for addr, v in sorted(versions.items()):
        if v is None:
            raise SweepError(f"Dask worker {addr} cannot import vmapsim; install vmapsim "
                             f"{vmapsim.__version__} on every worker")
        if v != vmapsim.__version__:
            raise SweepError(f"Dask worker {addr} has vmapsim {v}, this is {vmapsim.__version__}; "
                             "install the same version on every worker")


def run_dask(cells: Iterable[Cell], address: str, jobs: int | None = None,
             on_ready: Callable[[str], None] | None = None, wait_workers: float = 60.0) -> Iterator[Event]:
    """The cells on a Dask cluster: ``address`` of a scheduler, or ``"local"`` for a
    ``LocalCluster`` of ``jobs`` single-threaded worker processes on 127.0.0.1.

    Every worker's vmapsim version is checked (as workers join, too) before it gets a
    cell. At most as many cells as the cluster has worker threads are in flight.
    """
    try:
        import logging

        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--dask needs Dask's distributed scheduler: pip install 'vmapsim[dask]'") from None
    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            client = Client(address, timeout="20s")
    except (OSError, TimeoutError, RuntimeError) as e:
        if cluster is not None:
            cluster.close()
        what = "start a LocalCluster" if address == "local" else f"reach the Dask scheduler at {address}"
        raise SweepError(f"cannot {what}: {e}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=wait_workers)
        except TimeoutError:
            raise SweepError(f"the Dask scheduler at {address} has no workers "
                             f"(waited {wait_workers:.0f} s)") from None
        def probe() -> str | None:
            # nested, so cloudpickle sends it by value: it runs on a worker without vmapsim
            try:
                import vmapsim
            except ImportError:
                return None
            return str(vmapsim.__version__)

        checked: set[str] = set()

        def slots() -> int:
            nt = client.nthreads()
            new = [a for a in nt if a not in checked]
            if new:
                check_worker_versions(client.run(probe, workers=new))
                checked.update(new)
            return max(1, sum(nt.values()))

        n = slots()
        if on_ready is not None:
            on_ready(f"{len(checked)} Dask workers, {n} threads at {client.scheduler.address}")
        pending = deque(cells)
        inflight: dict[Any, tuple[Cell, float]] = {}
        ac = as_completed()
        while pending or inflight:
            while pending and len(inflight) < n:
                c = pending.popleft()
                f = client.submit(_dask_cell, c, pure=False)
                inflight[f] = (c, time.perf_counter())
                ac.add(f)
                yield Event("start", c)
            f = next(ac)
            c, t0 = inflight.pop(f)
            try:
                row = f.result()
            except Exception as e:  # KilledWorker (its workers died), a cancelled task, ...
                row = failed_row(c, f"{type(e).__name__}: {e}")
            yield Event("done", c, row, time.perf_counter() - t0)
            n = slots()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- the result file ---------------------------------------------------------------------

def parse_value(column: str, text: str) -> Any:
    """A CSV field back to its value (``""``: None, except in the error column)."""
    if column == "error":
        return text
    if text == "":
        return None
    if column in _STR:
        return text
    if column in _INT:
        return int(text)
    return float(text)


class ResultFile:
    """Rows of a sweep, one per cell, appended and flushed as each cell finishes.

    ``fmt`` "csv" (a header, then one row per line) or "json" (one JSON object per
    line). Opening an existing file keeps its finished cells (``done``), drops its
    failed ones (they run again) and a torn last line (the file is rewritten atomically
    then), and refuses a file with other columns.
    """

    def __init__(self, path: str | None, fmt: str = "csv", stream: IO[str] | None = None) -> None:
        self.path = path
        self.fmt = fmt
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.dropped_failed = 0
        if path is None:
            if stream is None:
                raise ValueError("a path or a stream")
            self._f = stream
            self._own = False
            if fmt == "csv":
                self._write_line(self._csv_line(COLUMNS))
            return
        keep: list[str] = []
        rewrite = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            keep, rewrite = self._load(path)
        if rewrite or not keep:
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                if fmt == "csv":
                    f.write(self._csv_line(COLUMNS))
                f.writelines(keep)
            os.replace(tmp, path)
        self._f = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
        self._own = True

    @property
    def done(self) -> set[tuple]:
        return set(self.rows)

    def _load(self, path: str) -> tuple[list[str], bool]:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        rewrite = False
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # torn by a kill in mid-write
            rewrite = True
        body = lines
        if self.fmt == "csv":
            if not lines:
                return [], True
            header = next(csv.reader([lines[0]]))
            if tuple(header) != COLUMNS:
                raise ConfigError(f"{path} is not a result file of this sweep version (its columns differ); "
                                  "choose another --out")
            body = lines[1:]
        keep = []
        for n, line in enumerate(body, start=2 if self.fmt == "csv" else 1):
            try:
                row = self._parse(line)
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{path}:{n}: not a sweep result row ({e}); choose another --out") from None
            if row["status"] != "ok":
                self.dropped_failed += 1
                rewrite = True
                continue
            key = Cell(**{k: row[k] for k in PARAM_COLUMNS}).key()
            if key in self.rows:
                rewrite = True
                continue
            self.rows[key] = row
            keep.append(line)
        return keep, rewrite

    def _parse(self, line: str) -> dict[str, Any]:
        if self.fmt == "csv":
            values = next(csv.reader([line]))
            if len(values) != len(COLUMNS):
                raise ValueError(f"{len(values)} fields, {len(COLUMNS)} expected")
            return {c: parse_value(c, v) for c, v in zip(COLUMNS, values, strict=True)}
        row = json.loads(line)
        if not isinstance(row, dict) or set(row) != set(COLUMNS):
            raise ValueError("other keys")
        return row

    @staticmethod
    def _csv_line(values: Sequence[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
        return buf.getvalue()

    def _write_line(self, line: str) -> None:
        self._f.write(line)  # one call per row: a row is written whole or not at all
        self._f.flush()

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "csv":
            line = self._csv_line([row[c] for c in COLUMNS])
        else:
            line = json.dumps({c: row[c] for c in COLUMNS}) + "\n"
        self._write_line(line)
        if row["status"] == "ok":
            self.rows[Cell(**{k: row[k] for k in PARAM_COLUMNS}).key()] = row

    def close(self) -> None:
        if self._own:
            self._f.close()
