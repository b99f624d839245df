"""The one-time pretraining: a classifier on the pretraining world, its backbone saved to the cache; and
`backbone.weights=<pretrained name>` resolved to that file (pretraining first on a miss).

Resumable: every `checkpoint_every` steps the full training state (weights, optimiser, schedule, step) is
written atomically to `.<key>.partial/last.ckpt`; a rerun of the same config continues from there.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import RichProgressBar
from torchmetrics.classification import MultilabelAveragePrecision

from src.jobs.distributed import job_ranks
from src.jobs.pretrained_cache import (WEIGHTS_FILE, is_pretrained_name, pretrain_config, pretrained_dir,
                                      pretrained_key, pretraining_lock)
from src.jobs.train_checkpoint import save_checkpoint_atomic
from src.models import Classifier


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


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def pretrain(cfg: DictConfig, callbacks: list | None = None) -> Path:
    """Pretrain the backbone of `cfg` (conf/pretrain.yaml) unless its cache entry exists; returns the
    entry's directory. `callbacks` are extra Lightning callbacks (tests interrupt a run with one).

    The rank protocol of every stage (`src.jobs.distributed`): under DDP (`trainer.strategy=ddp
    trainer.devices=N`) rank 0 takes the pretraining lock and holds it to the end, decides hit or miss and tells
    the others; on a miss every rank trains (`data.batch_size` is the global batch), rank 0 scores and saves."""
    final = pretrained_dir(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    work = final.with_name(f".{final.name}.partial")
    work.mkdir(parents=True, exist_ok=True)
    resume = work / "last.ckpt"
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = Classifier(cfg.backbone.name, len(datamodule.class_names), None, cfg.backbone.output_stride, **cfg.train)
    extra = [RichProgressBar()] if cfg.progress_bar else []
    trainer = hydra.utils.instantiate(cfg.trainer, enable_progress_bar=bool(cfg.progress_bar),
                                      callbacks=[AtomicCheckpoint(resume, cfg.checkpoint_every), *extra,
                                                 *(callbacks or [])])
    with job_ranks(cfg, trainer, folder=work / ".ddp", task="pretrain") as ranks, ExitStack() as held:
        done = None
        if ranks.is_zero:
            held.enter_context(pretraining_lock(cfg))
            done = (final / WEIGHTS_FILE).is_file()  # decided here only: every rank must reach the group
        if ranks.broadcast(done):
            return final
        resumed_from = int(torch.load(resume, map_location="cpu", weights_only=False)["global_step"]) \
            if resume.is_file() else 0
        datamodule.batch_size = ranks.batch_share(int(cfg.data.batch_size))
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume if resume.is_file() else None)
        if trainer.global_step < int(cfg.trainer.max_steps):  # stopped early: never cache half-trained weights
            raise RuntimeError(f"pretraining {final.name} stopped at step {trainer.global_step} of "
                               f"{cfg.trainer.max_steps}; rerun to resume from {resume}")
        if ranks.is_zero:
            meta = _save(cfg, final, work, model, datamodule, trainer, resumed_from, started, cpu_started)
            print(f"[pretrained] {meta['key']}: pretext mAP {meta['pretext_val_mAP']:.1f} after {meta['steps']} "
                  f"steps ({meta['wall_s']:.0f} s wall, {meta['cpu_s']:.0f} s CPU) -> {final}")
        ranks.barrier()  # the entry exists before any rank returns it
    return final


def _save(cfg: DictConfig, final: Path, work: Path, model: Classifier, datamodule, trainer: pl.Trainer,
          resumed_from: int, started: float, cpu_started: float) -> dict:
    """Score the pretext classifier and write the entry (complete or not at all); returns its meta."""
    score = pretext_map(model.net, datamodule.test_dataloader(), model.device)
    meta = {"key": pretrained_key(cfg), "backbone": cfg.backbone.name, "classes": list(datamodule.class_names),
            "pretext_val_mAP": round(score, 2), "steps": int(trainer.global_step), "resumed_from": resumed_from,
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu_started, 1),
            "config": {key: _plain(cfg[key]) for key in cfg if key != "paths"}}  # output_dir needs Hydra
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({k: v.cpu() for k, v in model.net.state_dict().items()}, tmp / WEIGHTS_FILE)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(final)
    shutil.rmtree(work, ignore_errors=True)
    return meta


def resolve_weights(weights, backbone_name: str, cache_dir: str | Path) -> tuple[str | None, str | None]:
    """`backbone.weights` as `build_backbone` takes it, and the pretrained key (None for other weights).

    A pretrained name resolves to `<cache_dir>/pretrained/<name>-<hash>/backbone.pt`. On a miss it pretrains
    now, as a torchvision name downloads on first use: the job cannot run without them, a sweep's jobs share
    the one pretraining (file lock), and the bar shows its progress. The pretraining must target the job's
    backbone."""
    if not is_pretrained_name(weights):
        return weights, None
    cfg = pretrain_config()
    cfg.paths.cache_dir = str(cache_dir)
    if cfg.backbone.name != backbone_name:
        raise ValueError(f"backbone.weights={weights!r} holds {cfg.backbone.name} weights (conf/pretrain.yaml), "
                         f"but backbone.name={backbone_name!r}; expected backbone={cfg.backbone.name}")
    entry = pretrained_dir(cfg)
    if not (entry / WEIGHTS_FILE).is_file():
        print(f"[pretrained] {weights!r} is not in {entry.parent}: pretraining it once now "
              f"(the same as `python -m src.pretrain`; ~{int(cfg.trainer.max_steps)} steps)")
        pretrain(cfg)
    return str(entry / WEIGHTS_FILE), pretrained_key(cfg)
