"""THE overlay renderers: an image blended with a map in the jet colour map, as every heat-map figure draws it
(`cams.png`, the demo's tiles, the report's seed grid with `--grid-style heatmaps`), and an image blended with a
label map in a dataset's mask palette (the report's seed grid: seeds and ground truth alike)."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps

from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD

OVERLAY_ALPHA = 0.5  # half image, half heat map


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised [3, H, W] → [H, W, 3] in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (image.float() * std + mean).clamp(0, 1).permute(1, 2, 0)


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """image [3, H, W] ImageNet-normalised, cam [H, W] in [0, 1] → uint8 [H, W, 3]: (1 - alpha)·image +
    alpha·jet(cam)."""
    heat = colormaps["jet"](cam.detach().cpu().float().clamp(0, 1).numpy())[..., :3]
    pixels = (1 - alpha) * denormalize(image.detach().cpu()).numpy() + alpha * heat
    return (pixels * 255).round().astype(np.uint8)


LABEL_ALPHA = 0.6  # the palette colours dominate, the image stays readable beneath


def label_overlay(image: torch.Tensor, labels: torch.Tensor, palette: list[int], alpha: float = LABEL_ALPHA) -> np.ndarray:
    """image [3, H, W] ImageNet-normalised, labels [H, W] integer in 0..255 (class indices as in the masks) →
    uint8 [H, W, 3]: (1 - alpha)·image + alpha·palette[labels], so seeds and masks share one palette."""
    colours = np.zeros((256, 3))
    entries = np.asarray(palette[:768], dtype=np.float64).reshape(-1, 3) / 255
    colours[:len(entries)] = entries
    pixels = (1 - alpha) * denormalize(image.detach().cpu()).numpy() + alpha * colours[labels.cpu().long().numpy()]
    return (pixels * 255).round().astype(np.uint8)
