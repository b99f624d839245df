"""BroadCAM for your own Lightning pipeline: a `pytorch_lightning.Callback` that fits the BLS when `Trainer.fit`
ends and hands you a ready BroadCAM on your module's network.

    from src.cams import BroadCAMCallback
    broadcam = BroadCAMCallback(stages=["layer3", "layer4"])       # module names of your network
    trainer = pl.Trainer(max_epochs=10, callbacks=[broadcam])
    trainer.fit(model, datamodule)                                  # fits the BLS at the end, saves bls.pt
    maps = broadcam.cam(images, targets)                            # [B, H, W] in [0, 1] for class indices [B]

It is a thin wrapper over the job's own fitting step (`src.bls.BLSFitting.fit_loader`: GAP features of `stages`,
then the closed-form BLS), so its BLS and maps are the job's on the same network and data. Which data it fits on,
first found: the `dataloader` you pass; the datamodule's `train_subset_eval_dataloader()` (this framework's
datamodules: the training subset with evaluation transforms, as the job); else the training dataloader's dataset,
in order, unsharded, with its own transforms (pass `dataloader=` for one without augmentation). Batches may be
dicts with "image" and "labels" (multi-hot [B, C]) or (images, labels) pairs, where labels may also be class
indices [B] (then give `num_classes`).

Rank-aware: under DDP, rank 0 fits once on the whole data and saves `bls.pt`; every rank gets the BLS by broadcast.
The extraction runs on the trainer's root device; the network goes back to where it was.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from src.bls import BLS_FILE, BLSFitting, BroadLearningSystem

from .engine import CamEngine
from .registry import create_cam


def as_fitting_batches(batches: Iterable, num_classes: int | None) -> Iterator[dict]:
    """Batches as the fitting step reads them: `{"image" [B, 3, H, W], "labels" [B, C] float, "index" [B] long}`,
    from dicts or (images, labels) pairs; labels that are class indices [B] become one-hot with `num_classes`."""
    seen = 0
    for batch in batches:
        if isinstance(batch, dict):
            images, labels = batch["image"], batch["labels"]
        else:
            images, labels = batch[0], batch[1]
        labels = torch.as_tensor(labels)
        if labels.ndim == 1:
            if num_classes is None:
                raise ValueError("BroadCAMCallback: the batches' labels are class indices [B]; give num_classes= "
                                 "(or multi-hot labels [B, C])")
            labels = torch.nn.functional.one_hot(labels.long(), num_classes)
        index = batch.get("index") if isinstance(batch, dict) else None
        if index is None:
            index = torch.arange(seen, seen + len(images))
        seen += len(images)
        yield {"image": images, "labels": labels.float(), "index": torch.as_tensor(index)}


class BroadCAMCallback(pl.Callback):
    """Fits BroadCAM's BLS on `stages` of the module's network when `fit` ends (see the module docstring).

    Args:
        stages: module names of the network (`named_modules()`), concatenated in this order.
        alpha, step: the BLS's ridge strength and channels per enhancement node (conf/cam/broadcam.yaml's).
        network: the attribute of the LightningModule holding the network (default "net"; the module itself
            when it has no such attribute), or a callable `module -> nn.Module`.
        dataloader: what to fit on: an iterable of batches, or a callable `trainer -> iterable`.
        num_classes: for batches whose labels are class indices.
        dirpath: where `bls.pt` goes (default the trainer's log_dir, else its default_root_dir); False: not saved.
        cam_options: options of the BroadCAM engine (e.g. `normalize=False`, `scales=[1.0, 0.5]`, `flip=True`).

    After `fit`: `bls` (the BroadLearningSystem, on the trainer's device), `info` (n, d, C, stages, seconds),
    `path` (the saved file or None) and `cam` (a BroadCAM on the network; `cam.remove()` takes its hooks off).
    """

    def __init__(self, stages: Sequence[str] = ("layer3", "layer4"), alpha: float = 50.0, step: int = 256,
                 network: str | Callable[[pl.LightningModule], nn.Module] = "net",
                 dataloader: Iterable | Callable[[pl.Trainer], Iterable] | None = None,
                 num_classes: int | None = None, dirpath: str | Path | bool | None = None,
                 cam_options: dict | None = None):
        self.fitting = BLSFitting(stages, alpha, step)
        self.network, self.dataloader, self.num_classes = network, dataloader, num_classes
        self.dirpath, self.cam_options = dirpath, dict(cam_options or {})
        self.bls: BroadLearningSystem | None = None
        self.info: dict | None = None
        self.path: Path | None = None
        self.cam: CamEngine | None = None

    def net_of(self, module: pl.LightningModule) -> nn.Module:
        if callable(self.network):
            return self.network(module)
        return getattr(module, self.network, module)

    def fitting_batches(self, trainer: pl.Trainer) -> Iterable:
        """What the BLS is fitted on (the module docstring's order)."""
        if self.dataloader is not None:
            return self.dataloader(trainer) if callable(self.dataloader) else self.dataloader
        datamodule = getattr(trainer, "datamodule", None)
        if hasattr(datamodule, "train_subset_eval_dataloader"):
            return datamodule.train_subset_eval_dataloader()
        loader = trainer.train_dataloader
        if loader is None:
            raise ValueError("BroadCAMCallback: the trainer has no training dataloader; pass dataloader=")
        return DataLoader(loader.dataset, batch_size=loader.batch_size or 1, shuffle=False,
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers)

    def output_dir(self, trainer: pl.Trainer) -> Path | None:
        if self.dirpath is False:
            return None
        return Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = self.net_of(pl_module)
        device = trainer.strategy.root_device
        out = self.output_dir(trainer)  # on every rank: `trainer.log_dir` is itself a collective under DDP
        fitted = None
        if trainer.is_global_zero:
            home = next(net.parameters()).device  # after `fit` Lightning moved the module back (to the CPU)
            try:
                bls, info = self.fitting.fit_loader(net.to(device), as_fitting_batches(
                    self.fitting_batches(trainer), self.num_classes), device, out)
            finally:
                net.to(home)
            info.pop("indices")
            fitted = (bls.to("cpu"), info, None if out is None else out / BLS_FILE)
        self.bls, self.info, self.path = trainer.strategy.broadcast(fitted, src=0)
        self.bls.to(device)
        self.cam = self.create_cam(net)

    def create_cam(self, net: nn.Module, **options) -> CamEngine:
        """A BroadCAM with the fitted BLS on `net` (hooks stay until `remove()`); `options` override `cam_options`."""
        if self.bls is None:
            raise RuntimeError("BroadCAMCallback: no BLS yet; it is fitted when Trainer.fit ends")
        return create_cam("broadcam", net, list(self.fitting.stages), bls=self.bls, **{**self.cam_options, **options})

