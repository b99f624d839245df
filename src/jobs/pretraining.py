"""The one-time pretraining as a task: a classifier on the pretraining world, its backbone saved to the pretrained
weights' store (`src.store.pretrained`); built from `conf/pretrain.yaml` by `src.jobs.build.build_pretraining`.

Resumable: every `checkpoint_every` steps the full training state (weights, optimiser, schedule, step) is
written atomically to `<store>/.<key>.partial/last.ckpt`; a rerun of the same config continues from there.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics.classification import MultilabelAveragePrecision

from src.jobs.build import Pretraining
from src.runtime.progress import StepProgressBar
from src.runtime.ranks import job_ranks
from src.store.pretrained import WEIGHTS_FILE
from src.store.train_checkpoints import save_checkpoint_atomic

log = logging.getLogger(__name__)


class AtomicCheckpoint(pl.Callback):
    """Saves the training state to `path` every `every` steps (`save_checkpoint_atomic`: a temporary file and a
    rename; under DDP every rank calls it, rank 0 writes)."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), max(int(every), 1)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step % self.every == 0:
            save_checkpoint_atomic(trainer, self.path)


def pretext_map(net: torch.nn.Module, loader, device: torch.device) -> float:
    """Macro mAP (percent) of `net` on the pretraining world's validation split."""
    # One process scores (rank 0 under DDP): no sync with ranks that are not scoring.
    metric = MultilabelAveragePrecision(num_labels=net.fc.out_features, average="macro", sync_on_compute=False)
    metric = metric.to(device)
    net.eval()
    with torch.no_grad():
        for batch in loader:
            metric.update(net(batch["image"].to(device)), batch["labels"].long().to(device))
    return float(metric.compute()) * 100


def pretrain(task: Pretraining, callbacks: list | None = None) -> Path:
    """Pretrain the backbone of `task` unless its store entry exists; returns the entry's directory. `callbacks`
    are extra Lightning callbacks (tests interrupt a run with one).

    The rank protocol of every task (`src.runtime.ranks`): under DDP (`trainer.strategy=ddp
    trainer.devices=N`) rank 0 takes the entry's lock and holds it to the end, decides hit or miss and tells
    the others; on a miss every rank trains (`data.batch_size` is the global batch), rank 0 scores and saves."""
    store, key = task.store, task.key
    started, cpu_started = time.perf_counter(), time.process_time()
    work = store.partial(key)
    work.mkdir(parents=True, exist_ok=True)
    resume = work / "last.ckpt"
    extra = [StepProgressBar()] if task.progress_bar else []
    trainer = task.trainer_factory(callbacks=[AtomicCheckpoint(resume, task.checkpoint_every), *extra,
                                              *(callbacks or [])])
    ranks_config = {**task.resolved, "paths": {"cache_dir": str(store.root.parent)}}
    with job_ranks(trainer, work / ".ddp", ranks_config, task.global_batch, task="pretrain") as rank, \
            ExitStack() as held:
        done = None
        if rank.is_zero:
            held.enter_context(store.lock(key))
            done = store.has(key)  # decided here only: every rank must reach the group
        if rank.broadcast(done):
            return store.path(key)
        resumed_from = int(torch.load(resume, map_location="cpu", weights_only=False)["global_step"]) \
            if resume.is_file() else 0
        task.datamodule.batch_size = rank.batch_share(task.global_batch)
        trainer.fit(task.model, datamodule=task.datamodule, ckpt_path=resume if resume.is_file() else None)
        if trainer.global_step < task.max_steps:  # stopped early: never cache half-trained weights
            raise RuntimeError(f"pretraining {key} stopped at step {trainer.global_step} of {task.max_steps}; "
                               f"rerun to resume from {resume}")
        if rank.is_zero:
            meta = _save(task, trainer, resumed_from, started, cpu_started)
            log.info(f"[pretrained] {key}: pretext mAP {meta['pretext_val_mAP']:.1f} after {meta['steps']} steps "
                     f"({meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} s CPU) -> {store.path(key)}")
        rank.barrier()  # the entry exists before any rank returns it
    return store.path(key)


def _save(task: Pretraining, trainer: pl.Trainer, resumed_from: int, started: float, cpu_started: float) -> dict:
    """Score the pretext classifier and write the entry (complete or not at all); returns its meta."""
    score = pretext_map(task.model.net, task.datamodule.test_dataloader(), task.model.device)
    meta = {"key": task.key, "backbone": task.resolved["backbone"]["name"],
            "classes": list(task.datamodule.class_names), "pretext_val_mAP": round(score, 2),
            "steps": int(trainer.global_step), "resumed_from": resumed_from,
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu_started, 1), "config": task.resolved}
    with task.store.writing(task.key) as tmp:
        torch.save({k: v.cpu() for k, v in task.model.net.state_dict().items()}, tmp / WEIGHTS_FILE)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    work = task.store.partial(task.key)
    shutil.rmtree(work, ignore_errors=True)
    return meta
