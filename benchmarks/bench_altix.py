"""How much the XFS prediction on ``altix-2008`` depends on its one assumed number.

    python benchmarks/bench_altix.py            # ~15 s

The preset assumes 2 NUMAlink routers per one-way leg (``ALTIX_MEAN_ROUTERS``). For 1, 2
and 3 routers this refits the xfsdir workload's other work to the seed's AFTER profile
(as ``fit_other_ns`` does for the stored value) and prints the 64-CPU predictions: the
old design's share of time in lock waits and IPI/flush work, its ``_write_lock
(vmlist_lock)`` share, the rewrite's share, and the speedup in ns/op.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vmapsim.commands.profile import lock_ipi_share  # noqa: E402
from vmapsim.hw.cost import _altix  # noqa: E402
from vmapsim.sim.run import run  # noqa: E402
from vmapsim.workloads import xfsdir  # noqa: E402


def main() -> int:
    print("routers/leg  remote line  other work   old: lock+IPI  old: _write_lock  rewrite: lock+IPI  speedup")
    for routers in (1.0, 2.0, 3.0):
        model = _altix(routers)
        other = xfsdir.fit_other_ns(cost=model)
        old = run("legacy", 64, pages=16, ops=300, workload="xfsdir", cost=model, other_ns=other)
        new = run("rewrite", 64, pages=16, ops=300, workload="xfsdir", cost=model, other_ns=other)
        t_old, t_new = sum(old.profile.values()), sum(new.profile.values())
        wl = old.profile.get("_write_lock (vmlist_lock)", 0.0) / t_old
        print(f"{routers:11.0f}  {model.line_transfer_remote:8.0f} ns  {other / 1e6:7.1f} ms   "
              f"{lock_ipi_share(old, t_old):13.1%}  {wl:16.1%}  {lock_ipi_share(new, t_new):17.2%}  "
              f"{old.ns_per_op / new.ns_per_op:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
