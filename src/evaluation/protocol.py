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
    """Raw maps [K, h, w] (≥ 0) → [K, *size]: resized bilinearly (not at all when already that size, so the
    values are exactly `seed_maps`'), then each divided by its max (IRN's order)."""
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *size)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return peak_normalise(maps)


def wsol_scoremaps(cams: torch.Tensor, size: int) -> torch.Tensor:
    """wsolevaluation's score maps: feature-resolution class maps `[B, C, h, w]` (≥ 0; `seed_maps` of the CAM
    before its upsampling) → float32 `[B, size, size]` in [0, 1].

    Max over classes (OpenImages images have one class: its map), then `normalize_scoremap(cv2.resize(cam,
    (size, size), interpolation=cv2.INTER_CUBIC))` of wsolevaluation's `inference.py`: a map holding a NaN
    becomes zeros, a constant one zeros, any other `(s − min) / max(s − min)`. torch's bicubic with
    align_corners=False is OpenCV's INTER_CUBIC: the same kernel (a = −0.75), half-pixel centres, and taps
    outside the map clamped to its border pixel (OpenCV resizes with BORDER_REPLICATE).

    Precision, against the reference: wsolevaluation widens the CAM to float64 (`t2n`) and resizes and
    normalises in float64. Here the resize runs in float64 too, but its result is rounded to float32 and the
    min-max normalisation runs in float32 (subtract the min, divide by the new max, the reference's order), so
    the maps equal wsolevaluation's float64 maps up to float32 rounding: at most 2.0e-7 on random CAMs
    (tests/evaluation/test_wsol_protocol.py), which moves PxAP by a few 1e-6 points. The metrics and the
    exported score maps (`export.scoremaps`, widened to float64 exactly) hold the same float32 numbers. One
    departure: a constant map gives zeros here, as `normalize_scoremap` intends, even where a float32 OpenCV
    resize would leave ulp noise on it for that function to stretch to [0, 1].
    """
    maps = cams.amax(1, keepdim=True)
    resized = F.interpolate(maps.double(), size=(size, size), mode="bicubic", align_corners=False)[:, 0].float()
    shifted = resized - resized.amin(dim=(-2, -1), keepdim=True)
    high = shifted.amax(dim=(-2, -1), keepdim=True)
    flat = maps.flatten(1)
    blank = flat.isnan().any(1) | (flat.amin(1) == flat.amax(1)) | (high.flatten() == 0)
    return torch.where(blank[:, None, None], torch.zeros_like(shifted), shifted / torch.where(high > 0, high, 1))


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
