"""What Hydra knows of the launch a job belongs to: the multirun launch's id (`force_retrain` retrains once per
launch) and the names a sweep's jobs are grouped and called by (W&B runs)."""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from src.store.keyed import text_digest


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_launch_id() -> str | None:
    """The id of the multirun launch this job belongs to: a digest of `<sweep dir>/multirun.yaml`'s path, mtime and
    size. Hydra's sweeper rewrites that file at each launch, before any job starts, and every job of the launch
    reads the same file whatever the launcher (local jobs, submitit processes and SLURM array tasks on a shared
    file system), so no two clocks are compared, a requeued SLURM task still belongs to its launch (no second
    retrain), and re-running the sweep is a new launch. None outside a multirun."""
    if not in_multirun():
        return None
    path = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
    try:
        stat = path.stat()
    except OSError:
        return None
    return text_digest(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}")


def sweep_names() -> tuple[str | None, str | None]:
    """(the multirun's sweep folder name, this job's overrides `key=value,...`), each None outside Hydra's
    multirun or run."""
    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    group = str(hydra_cfg.sweep.dir).rstrip("/").rsplit("/", 1)[-1] if hydra_cfg.mode == RunMode.MULTIRUN else None
    return group, hydra_cfg.job.get("override_dirname") or None
