"""The evaluation protocol's pure functions (METHOD.md §6), shared by the test loop (`module.py`), the seed
export (`export.py`), the W&B images and the finished-job artifacts: which maps a batch needs (GT targets),
how they become seed maps, WSOL score maps and foreground masks, and the threshold sweeps of the config.
The seed rule itself (argmax against a background plane) is `src.metrics.seed_rule`, used by the metric too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from src.metrics.seed_rule import seed_labels

PEAK_EPS = 1e-5  # IRN divides each map by (max + 1e-5)

__all__ = ["PEAK_EPS", "class_maps_at", "foreground_masks", "gt_targets", "peak_normalise", "seed_labels",
           "seed_maps", "threshold_range", "wsol_scoremaps"]


def gt_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """labels [B, C] 0/1 → targets [B, K] long (each image's classes in ascending order, padded by repeating
    its first one), valid [B, K] bool. K = the largest number of classes of an image in the batch (≥ 1)."""
    present = labels > 0
    k = max(int(present.sum(1).max()), 1)
    order = torch.argsort(present.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
    valid = present.gather(1, order)
    targets = torch.where(valid, order, order[:, :1])
    return targets, valid


def peak_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Raw maps [..., H, W] (≥ 0) → each divided by its max (+ PEAK_EPS, as IRN), so in [0, 1)."""
    return maps / (maps.flatten(-2).amax(-1)[..., None, None] + PEAK_EPS)


def seed_maps(maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """maps [B, K, H, W] (raw, ≥ 0) of `targets` → [B, C, H, W] in [0, 1]: each GT-class map divided by its
    max, the other classes 0 (padding targets do not count)."""
    maps = torch.where(valid[..., None, None], peak_normalise(maps), torch.zeros_like(maps))
    cams = maps.new_zeros(maps.shape[0], num_classes, *maps.shape[2:])
    return cams.scatter_reduce(1, targets[..., None, None].expand_as(maps), maps, reduce="amax")


def class_maps_at(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps [K, h, w] (≥ 0) → [K, *size]: resized bilinearly, then each divided by its max (IRN's order)."""
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *size)
    return peak_normalise(F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0])


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


def threshold_range(spec: Mapping | Sequence[float]) -> list[float]:
    """A config's `{start, stop, step}` → [start, start + step, …] below stop (as numpy.arange, rounded);
    a list of thresholds is returned as floats."""
    if not isinstance(spec, Mapping):
        return [float(value) for value in spec]
    start, stop, step = (float(spec[key]) for key in ("start", "stop", "step"))
    count = int(round((stop - start) / step))
    return [round(start + i * step, 10) for i in range(count)]
