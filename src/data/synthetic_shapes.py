"""Procedural "shapes on clutter" images with image labels, pixel masks and boxes.

Eight shape classes, each object in a random colour and texture (solid, stripes, checker, dots), so that
colour alone never gives the class; 1–3 objects per image over a cluttered background (colour gradient,
noise, distractor strokes). Masks: 0 = background, 1..C = class, 255 = a one-pixel ignore band along
object outlines (as VOC's boundaries). Everything is a pure function of (split seed, index).

The classes differ by shape under any rotation and size the renderer draws (no class is another turned or
scaled; `tests/data/test_synthetic.py` checks the overlaps). A `World` bundles what a generator draws
(shape set, sizes, object count, textures, background); `SHAPES` is the world of `data=synthetic`, and
`src.data.synthetic_pretrain` defines a disjoint one for pretraining.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SHAPE_NAMES = ("disk", "square", "triangle", "cross", "ring", "crescent", "star", "ell")
IGNORE_INDEX = 255
MIN_VISIBLE_PIXELS = 12


def shape_mask(name: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of shape `name` in rotated, centred coordinates (u, v) of radius r (pixels)."""
    d = np.hypot(u, v)
    if name == "disk":
        return d < r
    if name == "square":
        return np.maximum(abs(u), abs(v)) < 0.8 * r
    if name == "triangle":
        edges = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)]
        return np.all([u * ex + v * ey < 0.5 * r for ex, ey in edges], axis=0)
    if name == "cross":
        arm = r / 3
        return ((abs(u) < arm) & (abs(v) < r)) | ((abs(v) < arm) & (abs(u) < r))
    if name == "ring":
        return (d < r) & (d > 0.55 * r)
    if name == "crescent":  # a disk with an off-centre bite: open on one side, unlike the ring
        return (d < r) & (np.hypot(u - 0.45 * r, v) > 0.75 * r)
    if name == "star":
        return d < r * (0.55 + 0.45 * np.cos(5 * np.arctan2(v, u)))
    if name == "ell":
        return (np.maximum(abs(u), abs(v)) < 0.85 * r) & ~((u > -0.25 * r) & (v > -0.25 * r))
    raise KeyError(f"unknown shape {name!r}; expected one of {SHAPE_NAMES}")


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Brightness modulation in [0.45, 1] of one random texture kind."""
    kind = rng.integers(4)
    period = rng.uniform(3, 7)
    angle = rng.uniform(0, np.pi)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == 0:
        return np.ones_like(xx)
    if kind == 1:
        return 0.725 + 0.275 * np.sign(np.sin(2 * np.pi * t / period))
    if kind == 2:
        s = xx * np.sin(angle) - yy * np.cos(angle)
        return np.where((np.floor(t / period) + np.floor(s / period)) % 2 == 0, 1.0, 0.45)
    return np.where(np.hypot((xx % period) - period / 2, (yy % period) - period / 2) < period / 4, 0.45, 1.0)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated RGB colour in [0, 1] of a uniformly random hue."""
    hue = rng.uniform(0, 6)
    x = 1 - abs(hue % 2 - 1)
    rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(hue) % 6]
    return 0.25 + 0.75 * np.asarray(rgb) * rng.uniform(0.7, 1.0)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Cluttered background [size, size, 3] in [0, 1]: gradient, noise and distractor strokes."""
    corners = rng.uniform(0.1, 0.7, size=(2, 2, 3))
    fy, fx = (yy / size)[..., None], (xx / size)[..., None]
    image = (corners[0, 0] * (1 - fy) * (1 - fx) + corners[0, 1] * (1 - fy) * fx
             + corners[1, 0] * fy * (1 - fx) + corners[1, 1] * fy * fx)
    image = image + rng.normal(0, 0.06, size=image.shape)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        distance = abs((xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle))
        along = abs((xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle))
        stroke = (distance < rng.uniform(0.6, 1.6)) & (along < rng.uniform(size / 8, size / 2))
        image[stroke] = random_colour(rng) * rng.uniform(0.5, 1.0)
    return image


@dataclass(frozen=True)
class World:
    """What a generator draws. `mask(name, u, v, r)` gives a shape's pixels in rotated coordinates;
    `texture(rng, yy, xx)` a brightness modulation; `background(rng, size, yy, xx)` an [S, S, 3] image;
    `radius` the object radius range (fraction of the image side); `objects` the range of objects per image."""

    name: str
    shapes: tuple[str, ...]
    mask: Callable[..., np.ndarray]
    texture: Callable[..., np.ndarray]
    background: Callable[..., np.ndarray]
    radius: tuple[float, float] = (0.14, 0.24)
    objects: tuple[int, int] = (1, 3)


SHAPES = World("shapes", SHAPE_NAMES, shape_mask, _texture, _background)


def render_image(seed: int, size: int, world: World = SHAPES):
    """One image: (uint8 [size, size, 3], uint8 mask [size, size], labels [C], boxes [N, 4] x0y0x1y1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = world.background(rng, size, yy, xx)
    instance = np.zeros((size, size), dtype=np.int64)  # 0 = background, i = object i (later ones on top)
    num_classes = len(world.shapes)
    classes = rng.choice(num_classes, size=rng.integers(world.objects[0], world.objects[1] + 1), replace=False)
    for i, c in enumerate(classes, start=1):
        r = rng.uniform(*world.radius) * size
        cy, cx = rng.uniform(r, size - r, 2)
        angle = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        inside = world.mask(world.shapes[c], u, v, r)
        image[inside] = (random_colour(rng)[None] * world.texture(rng, yy, xx)[..., None])[inside]
        instance[inside] = i
    mask = np.zeros((size, size), dtype=np.uint8)
    labels = np.zeros(num_classes, dtype=np.uint8)
    boxes = []
    for i, c in enumerate(classes, start=1):
        ys, xs = np.nonzero(instance == i)
        if len(ys) < MIN_VISIBLE_PIXELS:
            instance[instance == i] = 0  # an almost hidden object counts as background
            continue
        mask[ys, xs] = c + 1
        labels[c] = 1
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    mask[_outline(instance)] = IGNORE_INDEX
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask, labels, np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def _outline(instance: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbour belongs to another region: the ignore band along object outlines."""
    edge = np.zeros(instance.shape, dtype=bool)
    vertical = instance[1:] != instance[:-1]
    horizontal = instance[:, 1:] != instance[:, :-1]
    edge[1:] |= vertical
    edge[:, 1:] |= horizontal
    return edge & (instance > 0)
