"""Jobs of a sweep: the config fingerprint that says whether a finished job was made with this config, and
the resume rule built on it (`src.run` skips such a job, so a killed sweep resumes where it stopped)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.reporting.results import RESULTS_FILE

# Keys that say where a job writes or how it resumes, not what it computes.
_NOT_IN_FINGERPRINT = ("paths", "overwrite", "force_retrain", "sweep_name", "stage")


def config_fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that defines a job's results (not where it writes, nor resume flags)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in _NOT_IN_FINGERPRINT:
        container.pop(key, None)
    return hashlib.sha1(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def previous_results(cfg: DictConfig) -> dict | None:
    """The job's existing results when they were made with the same config and `overwrite` is off."""
    path = Path(cfg.paths.output_dir) / RESULTS_FILE
    if cfg.get("overwrite") or not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return results if results.get("config_fingerprint") == config_fingerprint(cfg) else None
