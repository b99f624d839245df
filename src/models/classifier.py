"""The multi-label image classifier (LightningModule): backbone → GAP → linear, BCE loss, mAP / F1."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from src.models.backbones import build_backbone


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("onecycle", "none")


class Classifier(pl.LightningModule):
    """Trains `net` (a registry backbone) on image labels. `net` stays a plain torchvision-style module,
    so CAM methods hook its stages by name (`layer3`, `layer4`, …)."""

    def __init__(self, backbone: str, num_classes: int, weights: str | None = None, output_stride: int = 32,
                 optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 1e-4, momentum: float = 0.9,
                 scheduler: str = "onecycle"):
        super().__init__()
        self.save_hyperparameters()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer={optimizer!r}; expected one of {list(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"train.scheduler={scheduler!r}; expected one of {list(SCHEDULERS)}")
        self.net = build_backbone(backbone, num_classes, weights, output_stride)
        self.loss = nn.BCEWithLogitsLoss()
        self.train_map = MultilabelAveragePrecision(num_labels=num_classes, average="macro")
        self.train_f1 = MultilabelF1Score(num_labels=num_classes, average="macro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] → logits [B, C]."""
        return self.net(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["labels"])
        targets = batch["labels"].long()
        self.train_map.update(logits, targets)
        self.train_f1.update(logits, targets)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/mAP", self.train_map.compute() * 100, prog_bar=True)
        self.log("train/F1", self.train_f1.compute() * 100)
        self.train_map.reset()
        self.train_f1.reset()

    def configure_optimizers(self):
        h = self.hparams
        if h.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        else:
            optimizer = torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        if h.scheduler == "none":
            return optimizer
        # Warm-up then cosine decay over the whole step budget: short CPU budgets converge far better.
        steps = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=h.lr, total_steps=max(int(steps), 1),
                                                       pct_start=0.15)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
