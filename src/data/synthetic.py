"""The built-in synthetic dataset (`data=synthetic`): shapes on clutter, generated once and cached.

Splits `train` / `val` / `test` are rendered from disjoint seeds derived from `generator_seed`, stored as
one compressed `.npz` per split under `root` (written atomically, so parallel jobs never read half a file).
Rendering runs in up to two processes (the CPU default job renders 2,600 images before it trains).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data.collate import empty_boxes
from src.data.datamodule import ProportionDataModule
from src.data.synthetic_shapes import IGNORE_INDEX, SHAPE_NAMES, SHAPES, World, render_image
from src.data.transforms import EvalTransform, TrainTransform
from src.store.atomic import atomic_path
from src.store.keyed import json_digest

SPLIT_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def synthetic_split(root: str | Path, split: str, count: int, image_size: int, generator_seed: int,
                    world: World = SHAPES) -> dict:
    """Arrays of one split (`images` [n,S,S,3] uint8, `masks` [n,S,S] uint8, `labels` [n,C], `boxes`
    [total,4] with `box_counts` [n]), rendered on first use and cached under `root`."""
    if split not in SPLIT_OFFSETS:
        raise KeyError(f"data.eval_split={split!r} is not a synthetic split; expected one of {sorted(SPLIT_OFFSETS)}")
    params = {"split": split, "count": int(count), "size": int(image_size), "seed": int(generator_seed), "v": 2,
              "world": world.name}
    key = json_digest(params, 12)
    path = Path(root) / f"{world.name}_{split}_{count}x{image_size}_{key}.npz"
    if not path.exists():
        seeds = [generator_seed * 7919 + SPLIT_OFFSETS[split] + i for i in range(count)]
        images, masks, labels, boxes = zip(*_render_all(seeds, image_size, world))
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, images=np.stack(images), masks=np.stack(masks), labels=np.stack(labels),
                                boxes=np.concatenate(boxes), box_counts=np.asarray([len(b) for b in boxes]))
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _render_all(seeds: list[int], image_size: int, world: World) -> list[tuple]:
    """render_image over `seeds`, in order; two worker processes when there is enough to render."""
    render = partial(render_image, size=image_size, world=world)
    workers = min(2, os.cpu_count() or 1)
    if workers < 2 or len(seeds) < 200:
        return [render(seed) for seed in seeds]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(render, seeds, chunksize=64))


class SyntheticShapesDataset(Dataset):
    """One split of the synthetic data as sample dicts (see `src.data.datamodule`)."""

    def __init__(self, arrays: dict, split: str, transform: TrainTransform | EvalTransform):
        self.images = arrays["images"]
        self.masks = arrays["masks"]
        self.labels = arrays["labels"]
        offsets = np.concatenate([[0], np.cumsum(arrays["box_counts"])])
        self.boxes = [arrays["boxes"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        self.ids = [f"{split}_{i:06d}" for i in range(len(self.labels))]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def original_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of image `index`: the rendered size (evaluation does not resize it)."""
        return tuple(self.images.shape[1:3])

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        sample = {"labels": torch.from_numpy(self.labels[index]).float(), "index": index, "id": self.ids[index]}
        if isinstance(self.transform, TrainTransform):
            sample["image"] = self.transform(image)
            return sample
        height, width = image.shape[-2:]
        sample["image"] = self.transform.image(image)
        sample["mask"] = self.transform.mask(torch.from_numpy(self.masks[index]))
        boxes = torch.from_numpy(self.boxes[index])
        sample["boxes"] = self.transform.boxes(boxes, height, width) if len(boxes) else empty_boxes()
        return sample


class SyntheticDataModule(ProportionDataModule):
    """Shapes on clutter: 8 classes, multi-label images, masks and boxes for evaluation."""

    name = "synthetic"
    class_names = SHAPE_NAMES
    world = SHAPES
    seed_background = True
    ignore_index = IGNORE_INDEX
    metrics = ("seed_mIoU", "PxAP", "MaxBoxAccV2")

    def __init__(self, root: str, image_size: int = 96, num_train: int = 2000, num_val: int = 300,
                 num_test: int = 300, generator_seed: int = 0, train_scale: tuple[float, float] = (0.6, 1.0),
                 dihedral: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.image_size = int(image_size)
        self.counts = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.generator_seed = int(generator_seed)
        self.train_scale = tuple(train_scale)
        self.dihedral = bool(dihedral)
        self._arrays: dict[str, dict] = {}

    def prepare_data(self) -> None:
        for split in {self.train_split, self.eval_split}:
            synthetic_split(self.root, split, self.counts[split], self.image_size, self.generator_seed, self.world)

    def build_dataset(self, split: str, train: bool, features: bool = False) -> SyntheticShapesDataset:
        """The split's in-memory images: one fixed size, so BLS features and evaluation share it."""
        if split not in self._arrays:
            self._arrays[split] = synthetic_split(self.root, split, self.counts.get(split, 0), self.image_size,
                                                  self.generator_seed, self.world)
        arrays = self._arrays[split]
        transform = (TrainTransform(self.image_size, self.train_scale, dihedral=self.dihedral) if train
                     else EvalTransform(None))
        return SyntheticShapesDataset(arrays, split, transform)
