"""CAM generation and scoring over the evaluation split, as a Lightning test loop (DDP-ready).

For each image, the CAMs of its ground-truth classes are made by the configured method and fed to the
dataset's metrics following the protocols of METHOD.md §6:
- seeds (`seed_mIoU`): each GT-class map (ReLU'd, upsampled, raw) divided by its max; other classes 0;
- localisation (`PxAP`, `MaxBoxAccV2`): the max over the GT-class seed maps, resized to `wsol_size` and
  min-max normalised per image (wsolevaluation); mask foreground = any object, ignore kept.
The classifier's mAP on the same split comes from one plain forward.
"""
from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAveragePrecision

from src.cams import create_cam
from src.metrics import MaxBoxAccV2, PxAP, SeedMIoU


def gt_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """labels [B, C] 0/1 → targets [B, K] long (each image's classes, padded by repeating its first one),
    valid [B, K] bool. K = the largest number of classes of an image in the batch (at least 1)."""
    present = labels > 0
    k = max(int(present.sum(1).max()), 1)
    order = torch.argsort(present.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    valid = present.gather(1, order)
    targets = torch.where(valid, order, order[:, :1])
    return targets, valid


def seed_maps(maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """maps [B, K, H, W] (raw, ≥ 0) of `targets` → [B, C, H, W] in [0, 1]: each map divided by its max."""
    peak = maps.flatten(2).amax(2)[..., None, None]
    maps = torch.where(valid[..., None, None], maps / (peak + 1e-5), torch.zeros_like(maps))
    cams = maps.new_zeros(maps.shape[0], num_classes, *maps.shape[2:])
    return cams.scatter_reduce(1, targets[..., None, None].expand_as(maps), maps, reduce="amax")


def wsol_scoremaps(cams: torch.Tensor, size: int) -> torch.Tensor:
    """cams [B, C, H, W] → [B, size, size]: max over classes, resized, min-max normalised per image."""
    maps = F.interpolate(cams.amax(1, keepdim=True), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).amin(1)[:, None, None]
    high = maps.flatten(1).amax(1)[:, None, None]
    return torch.where(high > low, (maps - low) / (high - low).clamp(min=1e-12), torch.zeros_like(maps))


def foreground_masks(masks: torch.Tensor, size: int, background: int, ignore_index: int) -> torch.Tensor:
    """Class masks [B, H, W] → uint8 [B, size, size]: 1 = any object, 0 = background, 255 = ignore."""
    binary = torch.where(masks == ignore_index, 255, (masks != background).long())
    return F.interpolate(binary[:, None].float(), size=(size, size), mode="nearest")[:, 0].to(torch.uint8)


class CamEvaluation(pl.LightningModule):
    """Scores the CAMs of `net` on the evaluation split. `metric_names` ⊆ {seed_mIoU, PxAP, MaxBoxAccV2}.

    `cam_kwargs` go to `create_cam` (method options and extras such as `bls=`); `figure_images` samples of
    the first batches are kept in `figure_samples` for the overlay grid.
    """

    def __init__(self, net: nn.Module, cam_name: str, target_layers: list[str], cam_kwargs: dict,
                 num_classes: int, seed_background: bool, ignore_index: int, metric_names: tuple[str, ...],
                 seed_thresholds: list[float], wsol_size: int = 224, box_thresholds: list[float] | None = None,
                 iou_thresholds: tuple[int, ...] = (30, 50, 70), figure_images: int = 8):
        super().__init__()
        self.net = net
        self.cam_name, self.target_layers, self.cam_kwargs = cam_name, list(target_layers), dict(cam_kwargs)
        self.num_classes, self.seed_background, self.ignore_index = num_classes, seed_background, ignore_index
        self.wsol_size, self.figure_images = wsol_size, figure_images
        self.cls_map = MultilabelAveragePrecision(num_labels=num_classes, average="macro")
        metrics = {}
        if "seed_mIoU" in metric_names:
            metrics["seed"] = SeedMIoU(num_classes + int(seed_background), background=seed_background,
                                       thresholds=seed_thresholds, ignore_index=ignore_index)
        if "PxAP" in metric_names:
            metrics["pxap"] = PxAP()
        if "MaxBoxAccV2" in metric_names:
            metrics["boxacc"] = MaxBoxAccV2(thresholds=box_thresholds, iou_thresholds=tuple(iou_thresholds),
                                            multi_contour=True)
        self.metrics = nn.ModuleDict(metrics)
        self.figure_samples: list[dict] = []
        self.timings = {"cam_s": 0.0, "eval_s": 0.0}
        self.cam = None

    def on_test_start(self) -> None:
        self.net.eval()
        self.cam = create_cam(self.cam_name, self.net, target_layers=self.target_layers, normalize=False,
                              **self.cam_kwargs)

    def on_test_end(self) -> None:
        if self.cam is not None:
            self.cam.remove()
            self.cam = None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        images, labels = batch["image"], batch["labels"]
        with torch.no_grad():
            self.cls_map.update(self.net(images), labels.long())
        targets, valid = gt_targets(labels)
        tick = time.perf_counter()
        with torch.enable_grad():
            maps = self.cam(images, targets)
        tock = time.perf_counter()
        self.timings["cam_s"] += tock - tick
        cams = seed_maps(maps.detach(), targets, valid, self.num_classes)
        masks = batch["mask"]
        if "seed" in self.metrics:
            self.metrics["seed"].update(cams, labels, masks)
        if "pxap" in self.metrics or "boxacc" in self.metrics:
            scoremaps = wsol_scoremaps(cams, self.wsol_size)
            if "pxap" in self.metrics:
                background = 0 if self.seed_background else self.ignore_index
                self.metrics["pxap"].update(scoremaps, foreground_masks(masks, self.wsol_size, background,
                                                                        self.ignore_index))
            if "boxacc" in self.metrics:
                scale = torch.tensor([self.wsol_size / images.shape[-1], self.wsol_size / images.shape[-2]] * 2)
                self.metrics["boxacc"].update(scoremaps, [b.cpu() * scale for b in batch["boxes"]])
        self._keep_figure_samples(images, labels, masks, cams)
        self.timings["eval_s"] += time.perf_counter() - tock

    def _keep_figure_samples(self, images, labels, masks, cams) -> None:
        for i in range(min(len(images), self.figure_images - len(self.figure_samples))):
            self.figure_samples.append({"image": images[i].cpu(), "labels": labels[i].cpu(),
                                        "mask": masks[i].cpu(), "cams": cams[i].cpu()})

    def results(self) -> dict:
        """Final metrics: percent values under the names of the results contract, plus details."""
        tick = time.perf_counter()
        out = {"metrics": {"cls_mAP": float(self.cls_map.compute()) * 100}, "details": {}}
        if "seed" in self.metrics:
            seed = self.metrics["seed"].compute()
            out["metrics"].update(seed_mIoU=seed["mIoU"], seed_threshold=seed["threshold"])
            per_class = [None if math.isnan(iou) else iou for iou in seed["per_class_IoU"]]  # strict JSON
            out["details"].update(per_class_IoU=per_class, seed_curve=seed["curve"])
        if "pxap" in self.metrics:
            out["metrics"]["PxAP"] = float(self.metrics["pxap"].compute())
        if "boxacc" in self.metrics:
            out["metrics"].update({k: float(v) for k, v in self.metrics["boxacc"].compute().items()})
        self.timings["eval_s"] += time.perf_counter() - tick
        return out
