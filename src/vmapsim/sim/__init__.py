"""The timing engine: workloads on many simulated CPUs in simulated time."""

from .engine import Engine, Process
from .run import DEFAULT_OPS, SEED_TABLE, RunResult, default_ops, run

__all__ = ["DEFAULT_OPS", "SEED_TABLE", "default_ops", "Engine", "Process", "RunResult", "run"]
