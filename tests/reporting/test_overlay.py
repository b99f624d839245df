"""The one overlay renderer: half the (denormalised) image, half the jet colour of the map, as uint8."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps

from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from src.reporting.overlay import denormalize, overlay


def test_denormalize_inverts_the_imagenet_normalisation():
    pixels = torch.rand(3, 4, 5)
    normalised = (pixels - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(denormalize(normalised), pixels.permute(1, 2, 0))


def test_overlay_blends_image_and_jet_half_and_half():
    image, cam = torch.randn(3, 6, 7), torch.rand(6, 7)
    out = overlay(image, cam)
    expected = 0.5 * denormalize(image).numpy() + 0.5 * colormaps["jet"](cam.numpy())[..., :3]
    assert out.dtype == np.uint8 and out.shape == (6, 7, 3)
    assert np.abs(out.astype(float) - expected * 255).max() <= 0.5 + 1e-6
    assert np.array_equal(overlay(image, cam * 3), overlay(image, cam.clamp(min=0) * 3))  # clamped to [0, 1]
