"""Call-chain views of a profile (``vmapsim profile --folded/--flamegraph/--callers``).

A chain is a tuple of kernel function names from the outermost call (``vfree``,
``vm_map_ram``, ...) down to the leaf that was charged (``_write_lock (vmlist_lock)``,
``vmap_page_range``); time charged outside any kernel call (the workload's ``touch``,
``default_idle``) is a chain of one.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..sim.run import RunResult

Stacks = Mapping[tuple[str, ...], float]

#: What the lock rows mean, for --help and the docs.
LOCK_ROWS_HELP = (
    "Lock rows: '_write_lock (vmlist_lock)' is the time spent waiting for vmlist_lock "
    "(spinning while another CPU holds it); '_write_lock' alone is the uncontended cost "
    "of taking it (the locked instruction and the cache-line transfer), summed over all "
    "rwlocks. Likewise '_spin_lock (vmap_area_lock)' / '_spin_lock' and '_read_lock'. "
    "The 6.x designs use the qspinlock symbols perf shows: "
    "'native_queued_spin_lock_slowpath (vmap_area_lock)' is the wait for that lock, "
    "'_raw_spin_lock' the acquire."
)


def run_stacks(r: RunResult, per_cpu: bool) -> dict[tuple[str, ...], float]:
    """The run's chains summed over CPUs, or (``per_cpu``) each under a ``cpuN`` frame."""
    if not per_cpu:
        return r.stacks()
    out: dict[tuple[str, ...], float] = {}
    for cpu in sorted(r.cpu_stacks):
        for chain, ns in r.cpu_stacks[cpu].items():
            out[(f"cpu{cpu}",) + chain] = ns
    return out


def folded_lines(stacks: Stacks, tick: float) -> list[str]:
    """``a;b;c ticks`` lines (flamegraph.pl, inferno and speedscope read them), sorted
    by chain; chains under one tick are left out."""
    out = []
    for chain in sorted(stacks):
        n = round(stacks[chain] / tick)
        if n > 0:
            out.append(f"{';'.join(name.replace(';', ',') for name in chain)} {n}")
    return out


def callers(stacks: Stacks, fn: str) -> tuple[float, list[tuple[str, float]], list[tuple[tuple[str, ...], float]]]:
    """Time in ``fn`` (inclusive: its callees too), by its direct caller and by the whole
    chain into it, largest first. A chain that calls ``fn`` twice (``__vunmap`` freeing
    a vmalloc()ed page array) counts at its outermost call."""
    by_caller: dict[str, float] = {}
    by_chain: dict[tuple[str, ...], float] = {}
    total = 0.0
    for chain, ns in stacks.items():
        if fn not in chain:
            continue
        i = chain.index(fn)
        caller = chain[i - 1] if i else "(called from outside the kernel)"
        by_caller[caller] = by_caller.get(caller, 0.0) + ns
        by_chain[chain[:i + 1]] = by_chain.get(chain[:i + 1], 0.0) + ns
        total += ns
    return (total, sorted(by_caller.items(), key=lambda kv: (-kv[1], kv[0])),
            sorted(by_chain.items(), key=lambda kv: (-kv[1], kv[0])))


def known_functions(stacks: Stacks) -> set[str]:
    return {name for chain in stacks for name in chain}


def print_callers(stacks: Stacks, fn: str, tick: float, top: int) -> bool:
    """The --callers listing; False if ``fn`` never ran."""
    total, rows, chains = callers(stacks, fn)
    if not rows:
        return False
    grand = sum(stacks.values())
    print(f"# callers of {fn}: simulated time in {fn} and what it called, by caller; "
          f"1 tick = {tick:g} ns; share = of {fn}'s time")
    width = max([40] + [len(c) for c, _ in rows[:top]])
    print(f"{total / tick:>12.0f} {fn + ' (all callers)':<{width}} {1.0:.4f}")
    for caller, ns in rows[:top]:
        print(f"{ns / tick:>12.0f} {caller:<{width}} {ns / total:.4f}")
    print(f"# {fn}: {total / grand:.1%} of all simulated time" if grand else f"# {fn}")
    print("# call chains into it:")
    for chain, ns in chains[:top]:
        print(f"{ns / tick:>12.0f} {' -> '.join(chain)}")
    return True


def draw_flamegraph(stacks: Stacks, path: str, title: str) -> None:
    """A flame graph (outermost call at the bottom, width = simulated time) with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tree: dict = {}
    for chain, ns in stacks.items():
        node = tree
        for name in chain:
            entry = node.setdefault(name, [0.0, {}])
            entry[0] += ns
            node = entry[1]
    total = sum(e[0] for e in tree.values()) or 1.0

    def depth(node: dict) -> int:
        return 1 + max((depth(e[1]) for e in node.values()), default=0) if node else 0

    levels = max(1, depth(tree))
    fig, ax = plt.subplots(figsize=(12, 0.9 + 0.28 * levels))
    palette = ["#e8603c", "#f08a3c", "#f4ab4a", "#e9c46a", "#d9734e", "#f3a261"]

    def draw(node: dict, x0: float, level: int) -> None:
        x = x0
        for i, (name, (ns, kids)) in enumerate(sorted(node.items())):
            w = ns / total
            ax.add_patch(Rectangle((x, level), w, 0.95, facecolor=palette[(level + i) % len(palette)],
                                   edgecolor="white", linewidth=0.4))
            if w > 0.012:
                chars = int(w * 170)
                label = name if len(name) <= chars else name[:max(1, chars - 2)] + ".."
                ax.text(x + 0.002, level + 0.47, label, va="center", ha="left", fontsize=7, clip_on=True)
            draw(kids, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, levels)
    ax.set_yticks([])
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
    ax.set_xlabel("share of simulated time (all CPUs)")
    ax.set_title(title, fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
