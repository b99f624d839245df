"""A second synthetic world, disjoint from `data=synthetic`, to pretrain backbones on (the stand-in for ImageNet).

Other classes (12 shapes, none of the 8 of `synthetic_shapes`), other statistics: 1–4 objects of radius
0.12–0.26 of the image, textures made of ramps, speckle and concentric bands, a background of soft blobs
with outlined distractor circles instead of strokes, and its own generator seed. What it shares with the
target world is only what ImageNet shares with VOC: edges, corners, figure and ground.
"""
from __future__ import annotations

import numpy as np

from src.data.synthetic import SyntheticDataModule
from src.data.synthetic_shapes import World, random_colour

PRETRAIN_SHAPE_NAMES = ("ellipse", "bar", "hexagon", "tee", "arrow", "heart", "bowtie", "semicircle", "frame",
                        "chevron", "trefoil", "pentagon")


def _polygon(u: np.ndarray, v: np.ndarray, r: float, sides: int) -> np.ndarray:
    angles = np.pi / 2 + 2 * np.pi * np.arange(sides) / sides
    return np.all([u * np.cos(a) + v * np.sin(a) < r * np.cos(np.pi / sides) for a in angles], axis=0)


def pretrain_shape_mask(name: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of pretraining shape `name` in rotated, centred coordinates (u, v) of radius r (pixels)."""
    au, av = abs(u), abs(v)
    if name == "ellipse":
        return (u / r) ** 2 + (v / (0.5 * r)) ** 2 < 1
    if name == "bar":
        return (au < r) & (av < 0.3 * r)
    if name == "hexagon":
        return _polygon(u, v, r, 6)
    if name == "pentagon":
        return _polygon(u, v, r, 5)
    if name == "tee":
        return ((au < r) & (v > -r) & (v < -0.5 * r)) | ((au < 0.25 * r) & (v >= -0.5 * r) & (v < r))
    if name == "arrow":
        head = (v > 0.1 * r) & (v < r) & (au < (r - v) * 0.9)
        return head | ((au < 0.25 * r) & (v > -r) & (v <= 0.1 * r))
    if name == "heart":
        lobes = (np.hypot(u - 0.4 * r, v - 0.35 * r) < 0.5 * r) | (np.hypot(u + 0.4 * r, v - 0.35 * r) < 0.5 * r)
        return lobes | ((v < 0.4 * r) & (v > -r) & (au < 0.85 * (v + r)))
    if name == "bowtie":
        return (au < r) & (av < 0.15 * r + 0.75 * au)
    if name == "semicircle":
        return (np.hypot(u, v) < r) & (v > -0.2 * r)
    if name == "frame":
        return (np.maximum(au, av) < 0.85 * r) & (np.maximum(au, 2 * av) > 0.55 * r)
    if name == "chevron":
        return (au < r) & (v - 0.8 * au < 0.35 * r) & (v - 0.8 * au > -0.35 * r) & (v > -r)
    if name == "trefoil":
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return np.any([np.hypot(u - 0.45 * r * np.cos(a), v - 0.45 * r * np.sin(a)) < 0.5 * r for a in angles], axis=0)
    raise KeyError(f"unknown pretraining shape {name!r}; expected one of {PRETRAIN_SHAPE_NAMES}")


def banded_texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Brightness modulation in [0.5, 1]: a ramp, speckle, concentric bands or none."""
    kind = rng.integers(4)
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == 0:
        return np.ones_like(xx)
    if kind == 1:
        return 0.5 + 0.5 * (t - t.min()) / (np.ptp(t) + 1e-9)
    if kind == 2:
        return 0.75 + 0.25 * np.sign(rng.normal(size=xx.shape))
    y0, x0 = rng.uniform(0, xx.shape[0], 2)
    return 0.75 + 0.25 * np.sign(np.sin(np.hypot(xx - x0, yy - y0) / rng.uniform(0.8, 1.6)))


def blob_background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Background [size, size, 3] in [0, 1]: soft colour blobs, light noise and outlined distractor circles."""
    image = np.full((size, size, 3), rng.uniform(0.2, 0.6))
    for _ in range(rng.integers(2, 5)):
        y0, x0 = rng.uniform(0, size, 2)
        weight = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * (rng.uniform(0.15, 0.4) * size) ** 2))
        image = image + weight[..., None] * (random_colour(rng) - 0.5) * 0.6
    image = image + rng.normal(0, 0.03, size=image.shape)
    for _ in range(rng.integers(2, 5)):
        y0, x0 = rng.uniform(0, size, 2)
        ring = abs(np.hypot(xx - x0, yy - y0) - rng.uniform(0.04, 0.15) * size) < 0.7
        image[ring] = random_colour(rng) * rng.uniform(0.5, 1.0)
    return image


PRETRAIN_WORLD = World("pretrain", PRETRAIN_SHAPE_NAMES, pretrain_shape_mask, banded_texture, blob_background,
                       radius=(0.12, 0.26), objects=(1, 4))


class SyntheticPretrainDataModule(SyntheticDataModule):
    """The pretraining world's splits, with the same sample dicts and caching as `SyntheticDataModule`."""

    name = "synthetic_pretrain"
    class_names = PRETRAIN_SHAPE_NAMES
    world = PRETRAIN_WORLD
