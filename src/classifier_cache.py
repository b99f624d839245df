"""Trained classifiers cached by everything that determines them, shared by every CAM method of a sweep.

Layout: `<cache_dir>/classifiers/<key>/` holds `net.pt` (the network's state dict), `subset_ids.txt` and
`meta.json` (what the key was made of). A directory appears only complete (written under a temp name,
then renamed), and jobs wanting the same key take an exclusive file lock, so of two racing jobs one trains
and the other loads.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

# Keys of the data config that change how a job evaluates or loads, not which classifier it trains.
_DATA_KEYS_NOT_IN_KEY = {"eval_split", "eval_batch_size", "num_workers", "num_val", "num_test", "on_corrupt"}
# Keys of the trainer config that change where or how fast it runs, not what it learns.
_TRAINER_KEYS_IN_KEY = {"max_steps", "max_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val"}


def classifier_key_fields(cfg: DictConfig) -> dict:
    """What determines a trained classifier: dataset (and its root), backbone and weights, proportion,
    seed and training config."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {
        "data": {k: v for k, v in data.items() if k not in _DATA_KEYS_NOT_IN_KEY},
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "proportion": float(cfg.proportion),
        "seed": int(cfg.seed),
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "trainer": {k: cfg.trainer[k] for k in sorted(_TRAINER_KEYS_IN_KEY) if k in cfg.trainer},
    }


def classifier_key(cfg: DictConfig) -> str:
    fields = json.dumps(classifier_key_fields(cfg), sort_keys=True, default=str)
    return hashlib.sha1(fields.encode()).hexdigest()[:16]


class ClassifierCache:
    """Trained networks under `<cache_dir>/classifiers/<key>/`."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / "classifiers"

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "net.pt").is_file()

    @contextmanager
    def lock(self, key: str):
        """Exclusive lock of one key across processes (parallel sweep jobs on one file system)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self, key: str, net: nn.Module, subset_ids: list[str], meta: dict) -> Path:
        """Store a trained network; the key's directory appears complete or not at all."""
        final = self.path(key)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(net.state_dict(), tmp / "net.pt")
        (tmp / "subset_ids.txt").write_text("\n".join(subset_ids) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        shutil.rmtree(final, ignore_errors=True)  # a forced retrain replaces the old entry
        tmp.replace(final)
        return final

    def load_into(self, key: str, net: nn.Module, subset_ids: list[str]) -> dict:
        """Load a cached network into `net`; its subset must be the job's own subset."""
        path = self.path(key)
        cached_ids = (path / "subset_ids.txt").read_text().split()
        if cached_ids != list(subset_ids):
            raise RuntimeError(f"{path}: cached subset differs from this job's subset; rerun with force_retrain=true")
        net.load_state_dict(torch.load(path / "net.pt", map_location="cpu", weights_only=True))
        return json.loads((path / "meta.json").read_text())
