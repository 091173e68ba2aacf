"""``test_vmalloc``: the kernel's lib/test_vmalloc.c on the model, in simulated time.

The module's test cases, in its bit order (``run_test_mask`` bit i selects case i):

==  ==============================  ==================================================
 0  fix_size_alloc_test             vmalloc(nr_pages pages), store a byte, vfree
 1  full_fit_alloc_test             fls(cpus) * 8192 pairs of one-page areas, every
                                    second one freed (holes); then loop a one-page
                                    vmalloc + store + vfree
 2  long_busy_list_alloc_test       15000 one-page areas kept; loop vmalloc(100 pages)
                                    + vmalloc(1 page), store to both, free both
 3  random_size_alloc_test          vmalloc(1..100 pages), store, vfree
 4  fix_align_alloc_test            5 pages aligned to THREAD_ALIGN << 1, vfree
 5  random_size_align_alloc_test    1..10 pages aligned to 1 << (rnd % 23), vfree
 6  align_shift_alloc_test          one page aligned to 1 << i, i < BITS_PER_LONG;
                                    "supposed to be failed": the large alignments
                                    cannot be met
 7  pcpu_alloc_test                 skipped: no per-CPU allocator is modelled
 8  kvfree_rcu_1_arg_vmalloc_test   skipped: no RCU is modelled
 9  kvfree_rcu_2_arg_vmalloc_test   skipped: no RCU is modelled
10  vm_map_ram_test                 vm_map_ram(nr_pages), store, vm_unmap_ram
                                    (skipped on the legacy design: no vm_map_ram)
==  ==============================  ==================================================

The driver follows the module's: ``nr_threads`` workers (0 = 1), each running every
selected case ``test_repeat_count`` times in the bit order (``sequential_test_order``)
or in an order shuffled per worker (the module's shuffle_array, drawn from the run's
seed); per worker and case it counts passes and failures and keeps the average time
of one repetition in microseconds; per worker the cycles from its first case to its
last. Here every worker is a process of the timing engine (``vmapsim.sim.engine``) on
its own simulated CPU, yielding after every kernel call, so concurrent workers contend
for the locks and take each other's flush IPIs in simulated time; the times printed
are simulated.

A case fails only where the kernel's would: an allocation returned NULL where the
kernel's test counts a failure (the reason names the call), or the model's oracle
caught what the real machine would not report (UseAfterFreeError, a stale
translation, a fault) or ``k.check()`` -- run after every case -- found a broken
invariant. An oracle error ends its worker (on the kernel, an oops kills the kthread).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from ..errors import ConfigError, VmapError
from ..hw.cost import CostModel, get_preset
from ..mm.constants import (
    GFP_KERNEL,
    GFP_ZERO__,
    PAGE_KERNEL,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_ALLOC,
    fls,
)
from ..mm.vmalloc import Kernel

NAME = "test_vmalloc"
DESCRIPTION = "the kernel's lib/test_vmalloc.c cases, one worker per simulated CPU"

#: The module's parameter defaults (lib/test_vmalloc.c).
KERNEL_TEST_LOOP_COUNT = 1_000_000
INT_MAX = 0x7FFFFFFF
USHRT_MAX = 0xFFFF
BITS_PER_LONG = 64
#: x86_64 THREAD_SIZE (16 KiB since 3.15; 8 KiB in 2.6.28): fix_align uses THREAD_ALIGN << 1.
THREAD_ALIGN = 16384
#: Fixed sizes of the module's set-up phases.
BUSY_LIST_LEN = 15000
FULL_FIT_MIB = 32

#: Default loop count of the model (see ``DEFAULT_TEST_LOOP_COUNT`` in docs/stress.md):
#: the kernel's 1,000,000 loops of every case take hours of wall-clock time in Python.
DEFAULT_TEST_LOOP_COUNT = 1000
#: Default divisor of the set-up sizes (15000 busy areas, fls(cpus) * 8192 pairs):
#: 1 keeps the kernel's sizes. See ``StressParams.setup_div``.
DEFAULT_SETUP_DIV = 16

TestGen = Generator[None, None, int]


# --- per-worker state ---------------------------------------------------------------------
@dataclass
class CaseResult:
    """One case on one worker: the module's test_case_data plus the model's reasons."""

    passed: int = 0
    failed: int = 0
    #: Average simulated microseconds of one repetition (the module's ``time``).
    time_us: int = 0
    #: Failures the kernel's test expects (align_shift_alloc_test's large alignments).
    expected_failures: int = 0
    #: Why each unexpected failure happened (the first few), and why expected ones did.
    reasons: list[str] = field(default_factory=list)
    expected_reasons: list[str] = field(default_factory=list)


class Worker:
    """One ``vmalloc_test/<i>`` kthread: its CPU, its RNG and its results."""

    __slots__ = ("index", "k", "cpu_id", "params", "rng", "data", "start", "stop", "reason",
                 "expected", "oops", "order", "check_each", "on_line", "ghz")

    MAX_REASONS = 5

    def __init__(self, index: int, k: Kernel, cpu_id: int, params: StressParams,
                 rng: random.Random) -> None:
        self.index = index
        self.k = k
        self.cpu_id = cpu_id
        self.params = params
        self.rng = rng
        self.data = [CaseResult() for _ in TEST_CASES]
        self.start = 0.0
        self.stop = 0.0
        #: Why the running case failed (set by ``fail``), and whether the kernel expects it.
        self.reason = ""
        self.expected = False
        #: The oracle error that ended this worker, if any.
        self.oops = ""
        self.order: list[int] = []
        #: run ``k.check()`` after every case (else only at the end of the run)
        self.check_each = True
        #: called with each line the module prints, the moment it is due (``run(on_line=)``)
        self.on_line: Callable[[str], None] | None = None
        self.ghz = 1.0

    def fail(self, reason: str, expected: bool = False) -> int:
        """Record why the running case fails; the case's return value (-1)."""
        self.reason = reason
        self.expected = expected
        return -1

    @property
    def nr_pages(self) -> int:
        return self.params.nr_pages if self.params.nr_pages > 0 else 1


# --- __vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO, ...) ---------------------------------
def vmalloc_node_align(k: Kernel, size: int, align: int, caller: str) -> int | None:
    """__vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO, NUMA_NO_NODE, caller).

    2.6.28's __vmalloc_node() has no align argument (it came in 2.6.37 with
    __vmalloc_node_range), so the model goes through the design hook
    ``get_vm_area_node__(align=)`` and ``vmalloc_area_node__``, which is what the
    later function does.
    """
    gfp = GFP_KERNEL | GFP_ZERO__
    size = (size + PAGE_SIZE - 1) & PAGE_MASK
    if not size or (size >> PAGE_SHIFT) > k.num_physpages:
        return None
    area = k.get_vm_area_node__(size, VM_ALLOC, k.VMALLOC_START, k.VMALLOC_END, -1, gfp,
                                caller, align=align)
    if area is None:
        return None
    return k.vmalloc_area_node__(area, gfp, PAGE_KERNEL, -1, caller)


def aligned_slots(k: Kernel, size: int, align: int) -> int:
    """How many places at ``align`` an empty vmalloc space has for ``size`` bytes + guard."""
    mask = max(align, 1) - 1
    addr = (k.VMALLOC_START + mask) & ~mask
    last = k.VMALLOC_END + 1 - size - PAGE_SIZE  # the highest start that still fits
    if addr > last:
        return 0
    return (last - addr) // max(align, 1) + 1


def has_vm_map_ram(k: Kernel) -> bool:
    """Whether the design has the per-CPU vm_map_ram interface (2.6.28 on)."""
    return k.has_vm_map_ram


# --- the test cases (generators: yield after every kernel call; 0 = passed) -------------------
def vfree_each(k: Kernel, addrs: list[int | None]) -> Iterator[None]:
    """vfree() each address in order, one engine step each."""
    for a in addrs:
        k.vfree(a)
        yield


def fix_size_alloc_test(w: Worker) -> TestGen:
    k = w.k
    size = w.nr_pages * PAGE_SIZE
    for _ in range(w.params.test_loop_count):
        ptr = k.vmalloc(size)
        yield
        if ptr is None:
            return w.fail(f"vmalloc({size}) returned NULL")
        k.touch(ptr, 1)  # *((__u8 *)ptr) = 0
        yield
        k.vfree(ptr)
        yield
    return 0


def full_fit_alloc_test(w: Worker) -> TestGen:
    k = w.k
    junk_length = fls(k.cpus) * (FULL_FIT_MIB * 1024 * 1024 // PAGE_SIZE) // w.params.setup_div
    junk_length = max(junk_length, 1)
    ptr = k.vmalloc(8 * junk_length)
    yield
    if ptr is None:
        return w.fail(f"vmalloc({8 * junk_length}) of the pointer array returned NULL")
    junk_ptr = k.vmalloc(8 * junk_length)
    yield
    if junk_ptr is None:
        k.vfree(ptr)
        yield
        return w.fail(f"vmalloc({8 * junk_length}) of the junk pointer array returned NULL")
    keep: list[int | None] = []
    junk: list[int | None] = []
    for _ in range(junk_length):
        keep.append(k.vmalloc(PAGE_SIZE))  # not checked by the kernel's test either
        yield
        junk.append(k.vmalloc(PAGE_SIZE))
        yield
    yield from vfree_each(k, junk)  # vfree(NULL) is a no-op
    rv = 0
    for _ in range(w.params.test_loop_count):
        tmp = k.vmalloc(PAGE_SIZE)
        yield
        if tmp is None:
            rv = w.fail(f"vmalloc({PAGE_SIZE}) returned NULL with {junk_length} one-page holes")
            break
        k.touch(tmp, 1)
        yield
        k.vfree(tmp)
        yield
    yield from vfree_each(k, [*keep, ptr, junk_ptr])
    return rv


def long_busy_list_alloc_test(w: Worker) -> TestGen:
    k = w.k
    n_busy = max(BUSY_LIST_LEN // w.params.setup_div, 1)
    ptr = k.vmalloc(8 * n_busy)
    yield
    if ptr is None:
        return w.fail(f"vmalloc({8 * n_busy}) of the pointer array returned NULL")
    busy: list[int | None] = []
    for _ in range(n_busy):
        busy.append(k.vmalloc(PAGE_SIZE))  # unchecked, as in the kernel's test
        yield
    rv = 0
    for _ in range(w.params.test_loop_count):
        ptr_1 = k.vmalloc(100 * PAGE_SIZE)
        yield
        if ptr_1 is None:
            rv = w.fail(f"vmalloc({100 * PAGE_SIZE}) returned NULL with {n_busy} busy areas")
            break
        ptr_2 = k.vmalloc(PAGE_SIZE)
        yield
        if ptr_2 is None:
            k.vfree(ptr_1)
            yield
            rv = w.fail(f"vmalloc({PAGE_SIZE}) returned NULL with {n_busy} busy areas")
            break
        k.touch(ptr_1, 1)
        k.touch(ptr_2, 1)
        yield
        k.vfree(ptr_1)
        yield
        k.vfree(ptr_2)
        yield
    yield from vfree_each(k, [*busy, ptr])
    return rv


def random_size_alloc_test(w: Worker) -> TestGen:
    k = w.k
    rng = w.rng
    for _ in range(w.params.test_loop_count):
        n = rng.randint(1, 100)  # get_random_u32_inclusive(1, 100)
        p = k.vmalloc(n * PAGE_SIZE)
        yield
        if p is None:
            return w.fail(f"vmalloc({n * PAGE_SIZE}) returned NULL")
        k.touch(p, 1)
        yield
        k.vfree(p)
        yield
    return 0


def fix_align_alloc_test(w: Worker) -> TestGen:
    k = w.k
    align = THREAD_ALIGN << 1
    for _ in range(w.params.test_loop_count):
        ptr = vmalloc_node_align(k, 5 * PAGE_SIZE, align, "fix_align_alloc_test")
        yield
        if ptr is None:
            return w.fail(f"__vmalloc_node({5 * PAGE_SIZE}, align {align:#x}) returned NULL")
        if ptr & (align - 1):  # the model's check: the kernel trusts the allocator
            k.vfree(ptr)
            yield
            return w.fail(f"__vmalloc_node() returned {ptr:#x}, not aligned to {align:#x}")
        k.vfree(ptr)
        yield
    return 0


def random_size_align_alloc_test(w: Worker) -> TestGen:
    k = w.k
    rng = w.rng
    for _ in range(w.params.test_loop_count):
        rnd = rng.getrandbits(8)  # get_random_u8()
        align = 1 << (rnd % 23)
        size = (rnd % 10 + 1) * PAGE_SIZE
        ptr = vmalloc_node_align(k, size, align, "random_size_align_alloc_test")
        yield
        if ptr is None:
            return w.fail(f"__vmalloc_node({size}, align {align:#x}) returned NULL")
        if ptr & (align - 1):
            k.vfree(ptr)
            yield
            return w.fail(f"__vmalloc_node() returned {ptr:#x}, not aligned to {align:#x}")
        k.vfree(ptr)
        yield
    return 0


def align_shift_alloc_test(w: Worker) -> TestGen:
    """"This test case is supposed to be failed": the kernel counts it failed. A NULL
    for an alignment with no more places in the whole vmalloc space than there are
    workers (none at all from 1 << 46 on x86_64; concurrent workers may hold the one
    place at 1 << 45) is the expected failure; a NULL for a smaller alignment is not."""
    k = w.k
    for i in range(BITS_PER_LONG):
        align = 1 << i
        ptr = vmalloc_node_align(k, PAGE_SIZE, align, "align_shift_alloc_test")
        yield
        if ptr is None:
            slots = aligned_slots(k, PAGE_SIZE, align)
            expected = slots <= w.params.nr_threads
            return w.fail(f"__vmalloc_node({PAGE_SIZE}, align 1 << {i}) returned NULL: the "
                          f"vmalloc space has {slots} place(s) at this alignment"
                          + (" (expected)" if expected else ""), expected=expected)
        k.vfree(ptr)
        yield
    return 0


def vm_map_ram_test(w: Worker) -> TestGen:
    k = w.k
    n = w.nr_pages
    pages = []
    for _ in range(n):  # alloc_pages_bulk_array(GFP_KERNEL, map_nr_pages, pages)
        pg = k.alloc_page()
        if pg is None:
            break
        pages.append(pg)
    yield
    rv = 0
    if len(pages) != n:
        rv = w.fail(f"alloc_pages_bulk_array got {len(pages)} of {n} pages")
    else:
        for _ in range(w.params.test_loop_count):
            v = k.vm_map_ram(pages, n)
            yield
            if v is None:
                # the kernel's test does not check: *v_ptr = 'a' would oops
                rv = w.fail(f"vm_map_ram({n} pages) returned NULL (the kernel's test would "
                            f"oops storing through it)")
                break
            k.touch(v, 1)
            yield
            k.vm_unmap_ram(v, n)
            yield
    for pg in pages:
        k.free_page(pg)
    yield
    return rv


@dataclass(frozen=True)
class TestCase:
    """One entry of the module's test_case_array."""

    name: str
    func: Callable[[Worker], TestGen] | None
    #: Why the model cannot run it (None: it can); a callable decides per kernel.
    skip: str | Callable[[Kernel], str | None] | None = None

    def skip_reason(self, k: Kernel) -> str | None:
        if callable(self.skip):
            return self.skip(k)
        return self.skip


def _vm_map_ram_skip(k: Kernel) -> str | None:
    if has_vm_map_ram(k):
        return None
    return (f"vm_map_ram() does not exist in the {k.design} design "
            f"(it came with the 2.6.28 rewrite)")


TEST_CASES: tuple[TestCase, ...] = (
    TestCase("fix_size_alloc_test", fix_size_alloc_test),
    TestCase("full_fit_alloc_test", full_fit_alloc_test),
    TestCase("long_busy_list_alloc_test", long_busy_list_alloc_test),
    TestCase("random_size_alloc_test", random_size_alloc_test),
    TestCase("fix_align_alloc_test", fix_align_alloc_test),
    TestCase("random_size_align_alloc_test", random_size_align_alloc_test),
    TestCase("align_shift_alloc_test", align_shift_alloc_test),
    TestCase("pcpu_alloc_test", None, "no per-CPU allocator (__alloc_percpu) is modelled"),
    TestCase("kvfree_rcu_1_arg_vmalloc_test", None, "no RCU (kvfree_rcu) is modelled"),
    TestCase("kvfree_rcu_2_arg_vmalloc_test", None, "no RCU (kvfree_rcu) is modelled"),
    TestCase("vm_map_ram_test", vm_map_ram_test, _vm_map_ram_skip),
)
TEST_NAMES = tuple(t.name for t in TEST_CASES)


# --- parameters -------------------------------------------------------------------------------
@dataclass
class StressParams:
    """The module's parameters (same names), normalised as the module does, plus the
    model's ``setup_div``: the set-up sizes of full_fit_alloc_test (fls(cpus) * 8192
    pairs) and long_busy_list_alloc_test (15000 areas) are divided by it (1 = the
    kernel's sizes)."""

    nr_threads: int = 0
    test_loop_count: int = DEFAULT_TEST_LOOP_COUNT
    test_repeat_count: int = 1
    run_test_mask: int = INT_MAX
    sequential_test_order: int = 0
    nr_pages: int = 0
    setup_div: int = DEFAULT_SETUP_DIV

    def normalised(self) -> StressParams:
        """Type-checked copy with the module's fix-ups (init_test_configurtion)."""
        for name in ("nr_threads", "test_loop_count", "test_repeat_count", "run_test_mask",
                     "sequential_test_order", "nr_pages", "setup_div"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) and name != "sequential_test_order":
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if self.run_test_mask < 0:
            raise ConfigError(f"run_test_mask must not be negative, got {self.run_test_mask}")
        # the module clamps nr_threads to 1..USHRT_MAX; a negative count is refused, not guessed
        for name in ("nr_threads", "nr_pages"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not self.run_test_mask & ((1 << len(TEST_CASES)) - 1):
            raise ConfigError(f"run_test_mask={self.run_test_mask:#x} selects no test case: bits "
                              f"0..{len(TEST_CASES) - 1} select the {len(TEST_CASES)} cases")
        if self.setup_div < 1:
            raise ConfigError(f"setup_div must be at least 1, got {self.setup_div}")
        return StressParams(
            nr_threads=min(max(self.nr_threads, 1), USHRT_MAX),
            test_loop_count=self.test_loop_count if self.test_loop_count > 0 else 1,
            test_repeat_count=self.test_repeat_count if self.test_repeat_count > 0 else 1,
            run_test_mask=self.run_test_mask,
            sequential_test_order=int(bool(self.sequential_test_order)),
            nr_pages=self.nr_pages,
            setup_div=self.setup_div,
        )


#: test_vmalloc.sh's presets (PERF_PARAM, STRESS_PARAM, SMOKE_PARAM); ``nr_threads``
#: None stands for $NUM_CPUS (the simulated machine's CPUs).
MODES: dict[str, dict[str, int | None]] = {
    "performance": {"sequential_test_order": 1, "test_repeat_count": 3},
    "stress": {"nr_threads": None, "test_repeat_count": 20},
    "smoke": {"test_loop_count": 10000, "test_repeat_count": 10},
}


def shuffle_array(arr: list[int], rng: random.Random) -> None:
    """The module's shuffle_array: j drawn below i (not up to it), for i from n-1 to 1."""
    for i in range(len(arr) - 1, 0, -1):
        j = rng.randrange(i)  # get_random_u32_below(i)
        arr[i], arr[j] = arr[j], arr[i]


# --- the run ----------------------------------------------------------------------------------
@dataclass
class StressResult:
    """What the module prints, per worker, plus the model's notes."""

    params: StressParams
    design: str
    cpus: int
    cost: str
    ghz: float
    seed: int
    workers: list[Worker]
    #: Selected cases the model cannot run: index -> reason.
    skipped: dict[int, str]
    wall_seconds: float = 0.0
    #: simulated ns per kernel function summed over every CPU, idle time as default_idle
    profile: dict[str, float] = field(default_factory=dict)
    #: simulated time of the whole run: the first worker's start to the last one's end
    makespan_ns: float = 0.0

    def selected(self) -> list[int]:
        mask = self.params.run_test_mask
        return [i for i in range(len(TEST_CASES)) if mask >> i & 1]

    def cycles(self, w: Worker) -> int:
        """get_cycles() from the worker's first case to its last (the TSC runs at ghz)."""
        return int((w.stop - w.start) * self.ghz)

    @property
    def failed(self) -> bool:
        """Whether any case failed for a reason the kernel's test does not expect."""
        return any(w.oops for w in self.workers) or any(
            d.failed > d.expected_failures for w in self.workers for d in w.data)

    def lines(self) -> list[str]:
        """The module's output: Summary lines per worker, then its cycles line."""
        out = []
        p = self.params
        for w in self.workers:
            for i in self.selected():
                if i in self.skipped:
                    continue
                out.append(summary_line(i, w.data[i], p))
            out.append(cycles_line(w.index, self.cycles(w)))
        return out

    def skip_lines(self) -> list[str]:
        return [f"Skipped: {TEST_CASES[i].name}: {why}" for i, why in sorted(self.skipped.items())]

    def failure_lines(self) -> list[str]:
        """Every failure with its reason; expected ones are marked as such."""
        out = []
        for w in self.workers:
            for i, d in enumerate(w.data):
                name = TEST_CASES[i].name
                unexpected = d.failed - d.expected_failures
                if unexpected:
                    for r in d.reasons:
                        out.append(f"FAILED: worker{w.index} {name}: {r}")
                    if unexpected > len(d.reasons):
                        out.append(f"FAILED: worker{w.index} {name}: "
                                   f"... {unexpected - len(d.reasons)} more failures")
                if d.expected_failures:
                    r = d.expected_reasons[0] if d.expected_reasons else ""
                    out.append(f"expected failure: worker{w.index} {name} "
                               f"({d.expected_failures}x): {r}")
            if w.oops:
                out.append(f"FAILED: worker{w.index} stopped: {w.oops}")
        return out


def summary_line(index: int, d: CaseResult, p: StressParams) -> str:
    """The module's ``Summary:`` line of one case of one worker."""
    return (f"Summary: {TEST_CASES[index].name} passed: {d.passed} failed: {d.failed} "
            f"repeat: {p.test_repeat_count} loops: {p.test_loop_count} avg: {d.time_us} usec")


def cycles_line(worker: int, cycles: int) -> str:
    return f"All test took worker{worker}={cycles} cycles"


def _run_case(w: Worker, index: int) -> Iterator[None]:
    """The worker's repetitions of one case, timed; records passes, failures, reasons."""
    case = TEST_CASES[index]
    assert case.func is not None
    k = w.k
    cpu = k.machine.cpus[w.cpu_id]
    d = w.data[index]
    repeat = w.params.test_repeat_count
    kt = cpu.clock
    try:
        for _ in range(repeat):
            w.reason = ""
            w.expected = False
            rv = yield from case.func(w)
            if rv == 0:
                d.passed += 1
            else:
                d.failed += 1
                reason = w.reason or f"returned {rv}"
                if w.expected:
                    d.expected_failures += 1
                    if len(d.expected_reasons) < Worker.MAX_REASONS:
                        d.expected_reasons.append(reason)
                elif len(d.reasons) < Worker.MAX_REASONS:
                    d.reasons.append(reason)
            if w.check_each:
                k.check()  # the model's: every invariant after every case
    except VmapError as e:
        # the oracle (or check()) caught what the kernel would not report: count a
        # failure of this case and end the worker, as an oops ends the kthread
        d.failed += 1
        reason = f"{type(e).__name__}: {e}"
        if len(d.reasons) < Worker.MAX_REASONS:
            d.reasons.append(reason)
        w.oops = f"{case.name}: {reason}"
    # ktime_us_delta() / test_repeat_count, both integer
    d.time_us = int((cpu.clock - kt) // 1000) // repeat
    if w.on_line is not None:  # as the case finishes, in simulated-time order across workers
        w.on_line(summary_line(index, d, w.params))


def _worker(w: Worker, skipped: dict[int, str]) -> Iterator[None]:
    """test_func(): the worker's cases in its order, skipping the unselected ones."""
    k = w.k
    cpu = k.machine.cpus[w.cpu_id]
    mask = w.params.run_test_mask
    w.start = cpu.clock
    ran: set[int] = set()
    for index in w.order:
        if not mask >> index & 1 or index in skipped:
            continue
        ran.add(index)
        yield from _run_case(w, index)
        if w.oops:
            break
    w.stop = cpu.clock
    if w.on_line is not None:
        for index in range(len(TEST_CASES)):  # the cases an oops kept from running: zeros
            if mask >> index & 1 and index not in skipped and index not in ran:
                w.on_line(summary_line(index, w.data[index], w.params))
        w.on_line(cycles_line(w.index, int((w.stop - w.start) * w.ghz)))


def default_mem_pages(params: StressParams, cpus: int) -> int:
    """Enough simulated RAM for every worker's set-up at once (pages are created lazily)."""
    junk = fls(cpus) * (FULL_FIT_MIB * 1024 * 1024 // PAGE_SIZE) // params.setup_div
    per_worker = 2 * junk + BUSY_LIST_LEN // params.setup_div + 1000 + max(params.nr_pages, 1) * 2
    return max(262144, params.nr_threads * per_worker)


def run(
    params: StressParams | None = None,
    design: str = "2.6.28",
    cpus: int | None = None,
    cost: str | CostModel = "opteron-2008",
    seed: int = 0,
    mem_pages: int | None = None,
    vmalloc_size: int | None = None,
    check: str = "case",
    on_line: Callable[[str], None] | None = None,
) -> StressResult:
    """Run the module on a fresh kernel: worker i on CPU i of a ``cpus``-CPU machine
    (default: the preset's machine, or ``nr_threads`` CPUs if more). ``check``: "case"
    runs ``k.check()`` after every case (an O(state) walk each), "end" once after the
    run, "none" never. ``on_line`` is called with each Summary and cycles line as its case
    or worker finishes (the same lines :meth:`StressResult.lines` gives in its order)."""
    if check not in ("case", "end", "none"):
        raise ConfigError(f"check must be case, end or none, got {check!r}")
    import time

    from ..sim.engine import Engine

    p = (params or StressParams()).normalised()
    model = get_preset(cost) if isinstance(cost, str) else cost
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    if cpus is None:
        cpus = max(p.nr_threads, max(1, model.sockets * model.cores_per_socket))
    if not isinstance(cpus, int) or isinstance(cpus, bool):
        raise TypeError(f"cpus must be an int, not {type(cpus).__name__}")
    if not 1 <= cpus <= 1024:
        raise ConfigError(f"cpus must be 1..1024, got {cpus}")
    if p.nr_threads > cpus:
        # Deviation: the module's kthreads float over the CPUs; here each worker owns one.
        raise ConfigError(f"nr_threads {p.nr_threads} is more than the {cpus} simulated CPUs "
                          f"(one worker per CPU)")
    k = Kernel(cpus=cpus, design=design, cost=model,
               mem_pages=mem_pages if mem_pages is not None else default_mem_pages(p, cpus),
               vmalloc_size=vmalloc_size)
    m = k.machine
    eng = Engine(k, seed)
    rng = eng.rng
    skipped = {i: why for i, t in enumerate(TEST_CASES)
               if p.run_test_mask >> i & 1 and (why := t.skip_reason(k)) is not None}
    workers = []
    for i in range(p.nr_threads):
        w = Worker(i, k, i, p, random.Random(rng.random()))
        w.check_each = check == "case"
        w.on_line = on_line
        w.ghz = model.ghz
        w.order = list(range(len(TEST_CASES)))
        if not p.sequential_test_order:
            shuffle_array(w.order, w.rng)
        workers.append(w)
    # the clock starts when the module's rwsem lets the workers go
    t0 = max(c.clock for c in m.cpus)
    for c in m.cpus:
        m.sync(c)
        c.clock = t0
        c.clear_profile()
    wall0 = time.perf_counter()
    m.timed = True
    try:
        for w in workers:
            m.set_idle(m.cpus[w.cpu_id], False)
            eng.process(w.cpu_id, _worker(w, skipped), start=t0 + rng.random() * 100.0,
                        name=f"vmalloc_test/{w.index}")
        eng.run()
    finally:
        m.timed = False
        for w in workers:
            m.set_idle(m.cpus[w.cpu_id], True)
    wall = time.perf_counter() - wall0
    t_end = max(c.clock for c in m.cpus)
    for c in m.cpus:
        m.sync(c)
    prof: dict[str, float] = {}
    for c in m.cpus:
        for fn, ns in c.prof.items():
            prof[fn] = prof.get(fn, 0.0) + ns
        if t_end > c.clock:
            prof["default_idle"] = prof.get("default_idle", 0.0) + t_end - c.clock
    if check == "end":
        k.check()
    return StressResult(params=p, design=k.design, cpus=cpus, cost=model.name, ghz=model.ghz,
                        seed=seed, workers=workers, skipped=skipped, wall_seconds=wall,
                        profile=prof, makespan_ns=t_end - t0)
