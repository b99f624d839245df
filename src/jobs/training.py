"""Training that survives preemption and time limits: the trainer's full state is saved every
`train_checkpoint_every` steps and when the requeue signal arrives (`src.runtime.preemption`) to the key's training
checkpoint (`src.store.train_checkpoints`), and the next job that trains the same classifier (the requeued job, or
a plain re-run) resumes from it, saying from which step. Under `force_retrain` a checkpoint of another sweep launch
is discarded (that retrain starts from step 0); a requeued task of the same launch resumes.

A resume inside an epoch restarts that epoch's data loader: the rest of the budget sees freshly shuffled
batches, not the ones an uninterrupted run would have seen, so a resumed classifier is a valid training run of
the same config but not bit-identical to an uninterrupted one; its cache entry records `resumed_from_steps`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer

from src.runtime.preemption import PREEMPTION
from src.store.train_checkpoints import OUR_ENTRY, TrainCheckpoints, save_checkpoint_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPlan:
    """How a classifier is trained: its key, the sweep launch, `force_retrain`, the checkpoint interval in steps
    (0: only on the requeue signal) and where checkpoints live."""

    key: str
    launch: str | None
    force_retrain: bool
    checkpoint_every: int
    checkpoints: TrainCheckpoints


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
            log.info(f"[train] requeue signal: classifier {self.key} checkpointed at step {self._saved_step}")
            PREEMPTION.requeue_now()

    def save(self, trainer: Trainer) -> None:
        save_checkpoint_atomic(trainer, self.path)
        self._saved_step = trainer.global_step

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        checkpoint[OUR_ENTRY] = {"key": self.key, "launch_id": self.launch, "step": trainer.global_step,
                                 "resumed_from_steps": self.resumed_from}


def fit_resumable(plan: TrainingPlan, model: LightningModule, datamodule: LightningDataModule,
                  trainer: Trainer) -> list[int]:
    """`trainer.fit`, resumed from the key's training checkpoint when there is one it may use; returns the steps
    this classifier's training was resumed from (empty: trained in one go)."""
    path = plan.checkpoints.path(plan.key)
    saved = plan.checkpoints.read(plan.key)
    if saved is not None and plan.force_retrain and (plan.launch is None or saved["launch_id"] != plan.launch):
        log.info(f"[train] {path} is of an earlier launch and force_retrain=true: discarded, training starts at step 0")
        plan.checkpoints.remove(plan.key)
        saved = None
    resumed_from = [*saved["resumed_from_steps"], int(saved["step"])] if saved else []
    if saved:
        log.info(f"[train] classifier {plan.key}: resuming from step {saved['step']} ({path})")
    callback = TrainingCheckpoint(path, plan.checkpoint_every, plan.key, plan.launch, resumed_from)
    trainer.callbacks.append(callback)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(path) if saved else None)
    finally:
        trainer.callbacks.remove(callback)
        PREEMPTION.defer(False)
    if saved:
        log.info(f"[train] classifier {plan.key}: trained to step {trainer.global_step} (resumed from {resumed_from})")
    return resumed_from
