"""Loader settings from the machine: how many worker processes a job's DataLoaders use, and whether batches go
to pinned memory. `ProportionDataModule` applies them to every loader it makes (training, BLS features, the
evaluation and the seed export), so no step picks its own.
"""
from __future__ import annotations

import os

MAX_WORKERS = 8  # past ~8 workers decoding JPEGs for one GPU, loading is rarely the bottleneck, memory is
SERIAL_BELOW = 3  # with 1-2 usable cores a worker competes with the main process for the same core(s)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (cgroups/cpusets/taskset), further bounded by
    `SLURM_CPUS_PER_TASK` when SLURM set it (a job step may see the node's cores but own fewer)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(cpus, 1)


def default_num_workers(cpus: int | None = None) -> int:
    """Loader workers for `cpus` usable cores (default `usable_cpus()`): one core stays with the main process
    (the model's forward/backward), capped at `MAX_WORKERS`; 0 (load in the main process) below 3 cores, where
    a worker only time-slices the same cores and costs a forked copy of the process."""
    cpus = usable_cpus() if cpus is None else int(cpus)
    return 0 if cpus < SERIAL_BELOW else min(cpus - 1, MAX_WORKERS)


def resolve_num_workers(value) -> int:
    """The configured `num_workers`: null/None/"auto" → `default_num_workers()`, else a count ≥ 0."""
    if value is None or value == "auto":
        return default_num_workers()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.num_workers={value!r}: expected null (from the machine's CPUs) or an integer ≥ 0")
    return value
