"""THE CAM overlay renderer: an image blended with a map in the jet colour map, as every figure draws it
(`cams.png`, the report's seed grid, the demo's tiles, the W&B images)."""
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
