"""Training that survives preemption and time limits: the trainer's full state (weights, optimizer, scheduler,
loop counters) is saved every `train_checkpoint_every` steps and when the requeue signal arrives
(`src.jobs.preemption`), and the next job that trains the same classifier (the requeued job, or a plain re-run)
resumes from it, saying from which step.

The file is `<cache_dir>/train_checkpoints/<key>.ckpt`: keyed like the classifier (any job of the key may finish
it: the key's lock says who trains), outside `classifiers/` so that a half-trained network is never a cache
entry. It is written atomically, and removed once the trained classifier is cached (`remove_training_checkpoint`).
Under `force_retrain` a checkpoint of another sweep launch is discarded (that retrain starts from step 0); a
requeued task of the same launch resumes.

A resume inside an epoch restarts that epoch's data loader: the rest of the budget sees freshly shuffled
batches, not the ones an uninterrupted run would have seen, so a resumed classifier is a valid training run of
the same config but not bit-identical to an uninterrupted one; its cache entry records `resumed_from_steps`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer

from src.jobs.preemption import PREEMPTION

CHECKPOINT_DIR = "train_checkpoints"
_STATE = "broadcam_training"  # our entry in Lightning's checkpoint dict


def save_checkpoint_atomic(trainer: Trainer, path: Path) -> None:
    """The trainer's full state to `path` through a temporary file and a rename (readers never see half a file).
    Under DDP every rank must call it (`save_checkpoint` holds a barrier); rank 0 writes and renames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        tmp.replace(path)


def training_checkpoint_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / CHECKPOINT_DIR / f"{key}.ckpt"


def remove_training_checkpoint(cache_dir: str | Path, key: str) -> None:
    """The classifier is cached: its training checkpoint is nothing to resume any more."""
    training_checkpoint_path(cache_dir, key).unlink(missing_ok=True)


class TrainingCheckpoint(Callback):
    """Saves the trainer's state to `path` every `every` optimizer steps (0: never) and, when the requeue signal
    was received, at the end of the current step, before handing over to the requeue."""

    def __init__(self, path: Path, every: int, key: str, launch: str | None, resumed_from: list[int]):
        if int(every) < 0:
            raise ValueError(f"train_checkpoint_every={every}: expected >= 0 (0 = only on the requeue signal)")
        self.path, self.every, self.key, self.launch = Path(path), int(every), key, launch
        self.resumed_from = list(resumed_from)
        self._saved_step = -1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        PREEMPTION.defer(True)  # a signal now waits for the end of the step (a consistent state to save)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        PREEMPTION.defer(False)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        PREEMPTION.defer(False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        # Under DDP every rank must call save_checkpoint together; a signal reaches ranks at different steps, so
        # there the periodic checkpoint is the resume point.
        on_signal = PREEMPTION.requested and trainer.world_size == 1
        if (self.every and step % self.every == 0 or on_signal) and step != self._saved_step:
            self.save(trainer)
        if PREEMPTION.requested:
            print(f"[train] requeue signal: classifier {self.key} checkpointed at step {self._saved_step}")
            PREEMPTION.requeue_now()

    def save(self, trainer: Trainer) -> None:
        save_checkpoint_atomic(trainer, self.path)
        self._saved_step = trainer.global_step

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        checkpoint[_STATE] = {"key": self.key, "launch_id": self.launch, "step": trainer.global_step,
                              "resumed_from_steps": self.resumed_from}


def read_training_checkpoint(path: Path) -> dict | None:
    """Our entry of a training checkpoint (`key`, `launch_id`, `step`, `resumed_from_steps`), None when absent."""
    if not path.is_file():
        return None
    # Our own file (written by `TrainingCheckpoint.save`): Lightning's dict holds non-tensor objects.
    return torch.load(path, map_location="cpu", weights_only=False).get(_STATE)


def fit_resumable(cfg: DictConfig, key: str, model: LightningModule, datamodule: LightningDataModule,
                  trainer: Trainer, launch: str | None) -> list[int]:
    """`trainer.fit`, resumed from the key's training checkpoint when there is one it may use; returns the steps
    this classifier's training was resumed from (empty: trained in one go)."""
    path = training_checkpoint_path(cfg.paths.cache_dir, key)
    saved = read_training_checkpoint(path)
    if saved is not None and bool(cfg.get("force_retrain", False)) and (launch is None or saved["launch_id"] != launch):
        print(f"[train] {path} is of an earlier launch and force_retrain=true: discarded, training starts at step 0")
        path.unlink(missing_ok=True)
        saved = None
    resumed_from = [*saved["resumed_from_steps"], int(saved["step"])] if saved else []
    if saved:
        print(f"[train] classifier {key}: resuming from step {saved['step']} ({path})")
    callback = TrainingCheckpoint(path, int(cfg.get("train_checkpoint_every", 0)), key, launch, resumed_from)
    trainer.callbacks.append(callback)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(path) if saved else None)
    finally:
        trainer.callbacks.remove(callback)
        PREEMPTION.defer(False)
    if saved:
        print(f"[train] classifier {key}: trained to step {trainer.global_step} (resumed from {resumed_from})")
    return resumed_from
