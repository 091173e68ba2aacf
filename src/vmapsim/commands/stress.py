"""``vmapsim stress``: the kernel's lib/test_vmalloc.c (and test_vmalloc.sh's modes) on
the model, one worker per simulated CPU, in simulated time.

The module's parameters keep their names (``--nr-threads``, ``--test-loop-count``,
``--test-repeat-count``, ``--run-test-mask``, ``--sequential-test-order``,
``--nr-pages``), and test_vmalloc.sh's ``KEY=VALUE`` form takes them by the module's
own names (``vmapsim stress run_test_mask=7 nr_threads=2``); ``--mode`` applies
test_vmalloc.sh's presets, and a parameter given explicitly overrides its preset.
A mask that selects no existing case (0, or only bits past the last case) is an error.
The output is the module's: one ``Summary:`` line per selected case per worker (avg =
simulated microseconds of one repetition) and one
``All test took worker<i>=<cycles> cycles`` line per worker (simulated cycles at the
cost model's clock). Cases the model cannot run are listed as ``Skipped:``; every
failure is listed with its reason. Exit status 1 when a case failed for a reason the
kernel's test does not expect (align_shift_alloc_test's failures on the large
alignments are expected), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import ConfigError
from ..hw.cost import PRESETS, get_preset
from ..workloads import test_vmalloc as tv
from ._args import PRESET_CPUS_HELP, add_design, add_seed, integer, nonneg_int, positive_int
from ._result import add_formats, parameters, print_json, progress, write_csv

NAME = "stress"
HELP = "the kernel's test_vmalloc suite (lib/test_vmalloc.c) on simulated CPUs"

_PARAMS = ("nr_threads", "test_loop_count", "test_repeat_count", "run_test_mask",
           "sequential_test_order", "nr_pages")


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = "\n".join(f"  bit {i} ({1 << i}): {t.name}" for i, t in enumerate(tv.TEST_CASES))
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "test cases (--run-test-mask bits):\n" + names + "\n\n"
        "Defaults that differ from the kernel module's, so that a run finishes in\n"
        f"seconds in Python: --test-loop-count {tv.DEFAULT_TEST_LOOP_COUNT} (the module's is "
        f"{tv.KERNEL_TEST_LOOP_COUNT:,}) and\n"
        f"--setup-div {tv.DEFAULT_SETUP_DIV} (the set-up sizes of full_fit_alloc_test and\n"
        "long_busy_list_alloc_test divided by 16; --setup-div 1 gives the kernel's sizes,\n"
        "about 8 s on the rewrite for one worker, minutes on the legacy design).\n"
        "One worker costs roughly 1 s (rewrite) / 6 s (legacy) of wall-clock time per\n"
        "1000 loops of every case; --mode stress multiplies that by 20 repeats and the CPUs.")
    p.add_argument("module_params", nargs="*", metavar="KEY=VALUE",
                   help="the module's parameters as test_vmalloc.sh passes them ("
                        + ", ".join(_PARAMS) + "), e.g. run_test_mask=7 nr_threads=2; "
                        "the same as the -- options, given together before or after them")
    p.add_argument("--mode", choices=tuple(tv.MODES),
                   help="test_vmalloc.sh presets: performance (sequential_test_order=1 "
                        "test_repeat_count=3), stress (nr_threads=CPUs test_repeat_count=20), "
                        "smoke (test_loop_count=10000 test_repeat_count=10)")
    p.add_argument("--nr-threads", type=nonneg_int, default=None,
                   help="workers, one per simulated CPU (0 = 1; default 0)")
    p.add_argument("--test-loop-count", type=integer, default=None,
                   help=f"loops of each case (<= 0 means 1; default {tv.DEFAULT_TEST_LOOP_COUNT}, "
                        f"the module's is {tv.KERNEL_TEST_LOOP_COUNT}: see below)")
    p.add_argument("--test-repeat-count", type=integer, default=None,
                   help="repetitions of each case (<= 0 means 1; default 1)")
    p.add_argument("--run-test-mask", type=integer, default=None,
                   help=f"bit i selects case i (default INT_MAX = {tv.INT_MAX:#x}: all)")
    p.add_argument("--sequential-test-order", type=integer, default=None, choices=(0, 1),
                   help="1: cases in bit order; 0: shuffled per worker with the seed (default 0)")
    p.add_argument("--nr-pages", type=nonneg_int, default=None,
                   help="pages for fix_size_alloc_test and vm_map_ram_test (0 = 1; default 0)")
    add_design(p, "2.6.28", "comma-separated designs, one run each")
    p.add_argument("--cpus", type=positive_int, default=None, help=PRESET_CPUS_HELP)
    p.add_argument("--cost", default="opteron-2008", choices=sorted(PRESETS),
                   help="cost-model preset (default opteron-2008: 2 sockets x 4 cores, 2.3 GHz)")
    add_seed(p)
    p.add_argument("--check", default="case", choices=("case", "end", "none"),
                   help="model option: run check() after every case (default), once at the end, "
                        "or never (check() walks all the state: the kernel-size 64-worker runs "
                        "spend most of their time in it)")
    p.add_argument("--profile", type=positive_int, default=None, metavar="N",
                   help="also print the run's profile (readprofile columns, N lines)")
    add_formats(p, "the Summary lines (design, worker, test, passed, failed, ..., avg_usec)")
    p.add_argument("--setup-div", type=positive_int, default=tv.DEFAULT_SETUP_DIV,
                   help="model option: divide the set-up sizes of full_fit_alloc_test "
                        "(fls(cpus)*8192 pairs) and long_busy_list_alloc_test (15000 areas) "
                        f"by this (default {tv.DEFAULT_SETUP_DIV}; 1 = the kernel's)")
    p.add_argument("--vmalloc-size", type=positive_int, default=None,
                   help="model option: bytes of vmalloc space (default x86_64's 32 TiB)")
    p.add_argument("--mem-pages", type=positive_int, default=None,
                   help="model option: pages of simulated RAM (default: enough for every worker)")


def params_from_args(args: argparse.Namespace) -> tv.StressParams:
    """Explicit options, else the mode's preset, else the defaults."""
    values: dict[str, int] = {}
    preset = tv.MODES.get(args.mode or "", {})
    cpus = args.cpus
    if cpus is None:
        cpus = max(1, get_preset(args.cost).sockets * get_preset(args.cost).cores_per_socket)
    for name in _PARAMS:
        v = getattr(args, name)
        if v is None and name in preset:
            v = preset[name]
            if v is None:  # $NUM_CPUS
                v = cpus
        if v is not None:
            values[name] = v
    return tv.StressParams(setup_div=args.setup_div, **values)


#: kstrtobool()'s words for the module's bool parameter (sequential_test_order)
_BOOL_WORDS = {"y": 1, "yes": 1, "on": 1, "true": 1, "n": 0, "no": 0, "off": 0, "false": 0}


def take_module_params(args: argparse.Namespace) -> None:
    """Fold ``KEY=VALUE`` words into the options they name (ConfigError if a word is
    malformed, names no parameter, has a bad value or repeats an option given too); as
    with modprobe, the last of repeated words wins."""
    opts = vars(args)
    from_words: set[str] = set()
    for word in args.module_params:
        key, eq, text = word.partition("=")
        if not eq or key not in _PARAMS:
            raise ConfigError(f"{word!r}: expected KEY=VALUE with KEY one of {', '.join(_PARAMS)}")
        if opts[key] is not None and key not in from_words:
            raise ConfigError(f"{key} given both as {key}= and as --{key.replace('_', '-')}")
        try:
            if key == "sequential_test_order" and text.lower() in _BOOL_WORDS:
                value = _BOOL_WORDS[text.lower()]
            else:
                value = (nonneg_int if key == "nr_pages" else integer)(text)
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"{key}={text}: {e}") from None
        if key == "sequential_test_order" and value not in (0, 1):
            raise ConfigError(f"{key}={text}: must be 0 or 1 (or y/n)")
        opts[key] = value
        from_words.add(key)


def run(args: argparse.Namespace) -> int:
    try:
        take_module_params(args)
        params_from_args(args).normalised()  # a bad parameter is reported once, not per design
    except ConfigError as e:
        print(f"vmapsim stress: {e}", file=sys.stderr)
        return 2
    status = 0
    docs: list[dict] = []
    t0 = time.perf_counter()
    params = parameters(args, **{k: v for k, v in vars(params_from_args(args).normalised()).items()})
    for name in args.design:
        status = max(status, run_one(args, name, docs))
    if args.json and docs:
        print_json(NAME, params, docs, time.perf_counter() - t0)
    elif args.csv and docs:
        write_csv(CSV_FIELDS, ({"design": d["design"], "worker": w["worker"], **c}
                               for d in docs for w in d["workers"] for c in w["cases"]))
    return status


#: --csv's columns: one row per Summary line
CSV_FIELDS = ("design", "worker", "test", "passed", "failed", "expected_failures", "repeat", "loops",
              "avg_usec")


def result_json(result: tv.StressResult) -> dict[str, Any]:
    """One design's run: the module's figures per worker and case, the model's notes."""
    p = result.params
    workers = []
    for w in result.workers:
        cases = [{"test": tv.TEST_CASES[i].name, "passed": w.data[i].passed, "failed": w.data[i].failed,
                  "expected_failures": w.data[i].expected_failures, "repeat": p.test_repeat_count,
                  "loops": p.test_loop_count, "avg_usec": w.data[i].time_us,
                  "reasons": list(w.data[i].reasons), "expected_reasons": list(w.data[i].expected_reasons)}
                 for i in result.selected() if i not in result.skipped]
        workers.append({"worker": w.index, "cpu": w.cpu_id, "cycles": result.cycles(w),
                        "oops": w.oops or None, "cases": cases})
    return {"design": result.design, "cpus": result.cpus, "cost": result.cost, "ghz": result.ghz,
            "seed": result.seed, "module_params": dict(vars(p)),
            "skipped": [{"test": tv.TEST_CASES[i].name, "reason": why} for i, why in sorted(result.skipped.items())],
            "workers": workers, "failed": result.failed, "makespan_ns": result.makespan_ns,
            "wall_seconds": result.wall_seconds}


def run_one(args: argparse.Namespace, design: str, docs: list[dict[str, Any]] | None = None) -> int:
    text = not (args.json or args.csv)
    try:
        params = params_from_args(args)
        p = params.normalised()
        model = get_preset(args.cost)
        cpus = args.cpus if args.cpus is not None else max(p.nr_threads, model.sockets * model.cores_per_socket)
        if text:
            print(f"# vmapsim stress: {design}, {p.nr_threads} worker(s) on {cpus} CPUs, "
                  f"cost {model.name} ({model.ghz} GHz), seed {args.seed}, "
                  f"run_test_mask={p.run_test_mask:#x} sequential_test_order={p.sequential_test_order} "
                  f"test_repeat_count={p.test_repeat_count} test_loop_count={p.test_loop_count} "
                  f"nr_pages={p.nr_pages} setup_div={p.setup_div}", flush=True)
        total = p.nr_threads * sum(1 for i in range(len(tv.TEST_CASES)) if p.run_test_mask >> i & 1)
        with progress(args, f"stress {design}", total) as bar:
            def on_line(line: str) -> None:  # each Summary line as its case finishes
                if line.startswith("Summary:"):
                    bar.advance()
                if text:
                    bar.print(line)

            result = tv.run(params, design=design, cpus=args.cpus, cost=args.cost,
                            seed=args.seed, mem_pages=args.mem_pages,
                            vmalloc_size=args.vmalloc_size, check=args.check, on_line=on_line)
    except ConfigError as e:
        print(f"vmapsim stress: {e}", file=sys.stderr)
        return 2
    if not text:
        if docs is not None:
            docs.append(result_json(result))
        return 1 if result.failed else 0
    for line in result.skip_lines():
        print(line)
    for line in result.failure_lines():
        print(line)
    print(f"# simulated time of the whole run: {result.makespan_ns / 1e6:,.3f} ms "
          f"(first worker's start to the last one's end)")
    if args.profile:
        from .profile import print_listing

        print(f"# profile of the run: {result.design}, {p.nr_threads} workers, cost {result.cost}")
        print_listing(result.profile, 1000.0, args.profile)
    print(f"# simulated in {result.wall_seconds:.1f} s wall-clock")
    if result.failed:
        print("vmapsim stress: some test cases failed (reasons above)", file=sys.stderr)
        return 1
    return 0
