"""Jobs of a sweep: the config fingerprint that says whether a finished job was made with this config, and
the resume rule built on it (`src.run` skips such a job, so a killed sweep resumes where it stopped) and on the
classifier's identity (a finished job whose classifier was retrained or replaced since is redone)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.jobs.cache import cached_identity
from src.jobs.identity import identity_text, same_classifier
from src.reporting.results import RESULTS_FILE

# Keys that say where a job writes or how it resumes, not what it computes.
_NOT_IN_FINGERPRINT = ("paths", "overwrite", "force_retrain", "sweep_name", "stage", "train_checkpoint_every")


def config_fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that defines a job's results (not where it writes, nor resume flags)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in _NOT_IN_FINGERPRINT:
        container.pop(key, None)
    return hashlib.sha1(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def previous_results(cfg: DictConfig) -> dict | None:
    """The job's existing results when they were made with the same config and the classifier the cache holds
    now (`src.jobs.identity`), and `overwrite` is off."""
    path = Path(cfg.paths.output_dir) / RESULTS_FILE
    if cfg.get("overwrite") or not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if results.get("config_fingerprint") != config_fingerprint(cfg):
        return None
    made_with, current = (results.get("classifier") or {}).get("identity"), cached_identity(cfg)
    if not same_classifier(made_with, current):
        now = identity_text(current) if current else "a classifier this job will train"
        print(f"[redo] {path} was made with classifier {identity_text(made_with)}; the job now uses {now}")
        return None
    return results
