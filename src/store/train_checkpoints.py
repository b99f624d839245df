"""Training checkpoints, the resume point of a preempted or killed training: the trainer's full state (weights,
optimizer, scheduler, loop counters) at `<cache_dir>/train_checkpoints/<key>.ckpt`. Keyed like the classifier (any
job of the key may finish it: the key's lock says who trains), outside `classifiers/` so that a half-trained
network is never a cache entry; written atomically, removed once the trained classifier is cached. What writes
them and resumes from them: `src.jobs.training`."""
from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning import Trainer

from src.store.atomic import temp_name

CHECKPOINT_DIR = "train_checkpoints"
OUR_ENTRY = "broadcam_training"  # our entry in Lightning's checkpoint dict


def save_checkpoint_atomic(trainer: Trainer, path: Path) -> None:
    """The trainer's full state to `path` through a temp file and a rename (readers never see half a file).
    Under DDP every rank must call it (`save_checkpoint` holds a barrier); rank 0 writes and renames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        tmp.replace(path)


class TrainCheckpoints:
    """`<cache_dir>/train_checkpoints/<key>.ckpt` per classifier key."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / CHECKPOINT_DIR

    def path(self, key: str) -> Path:
        return self.root / f"{key}.ckpt"

    def read(self, key: str) -> dict | None:
        """Our entry of the key's checkpoint (`key`, `launch_id`, `step`, `resumed_from_steps`), None when absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        # Our own file (written by `save_checkpoint_atomic`): Lightning's dict holds non-tensor objects.
        return torch.load(path, map_location="cpu", weights_only=False).get(OUR_ENTRY)

    def remove(self, key: str) -> None:
        """The classifier is cached (or this checkpoint is of another launch): nothing to resume any more."""
        self.path(key).unlink(missing_ok=True)
