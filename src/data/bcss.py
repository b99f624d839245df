"""BCSS-WSSS (`data=bcss_wsss`): 224×224 breast-cancer tissue patches, 4 classes TUM, STR, LYM, NEC.

Layout under `root`: `train/` (or `training/`) flat PNG patches whose labels are in the file name,
`<patient>_<x>_<y>+<index>[abcd].png` with four 0/1 digits in class order (e.g. `…+0[1101].png`);
`val/` (or `valid/`) and `test/` with `img/` and `mask/` of matching names. Masks are palette PNGs:
0–3 the tissues, 4 background (excluded from scoring). Evaluation labels are the tissues a mask holds.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from src.data.image_io import (CorruptFilePolicy, DatasetError, FileSplitDataModule, ImageFileDataset, SplitFiles,
                               check_mask_values, first_existing, read_class_mask, read_index_png, require_files,
                               stack_labels)

BCSS_CLASSES = ("TUM", "STR", "LYM", "NEC")
BACKGROUND = 4
SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "valid"), "test": ("test",)}
LABEL_IN_NAME = re.compile(r"\[([01]{4})\]$")
# The released masks' colours: TUM red, STR green, LYM blue, NEC purple, background white
BCSS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (153, 0, 255), (255, 255, 255))
MASK_VALUES = np.zeros(256, dtype=bool)
MASK_VALUES[: BACKGROUND + 1] = True


def name_labels(path: Path) -> np.ndarray:
    """[4] float32 0/1 from a training patch's name `…[abcd].png`."""
    match = LABEL_IN_NAME.search(path.stem)
    if match is None:
        raise DatasetError(f"{path}: file name has no [abcd] label; expected four 0/1 digits in brackets before "
                           f".png (class order {', '.join(BCSS_CLASSES)}), e.g. …+0[1101].png")
    return np.array([float(digit) for digit in match.group(1)], dtype=np.float32)


def mask_labels(path: Path) -> np.ndarray:
    """[4] float32 0/1: the tissues (values 0..3) present in the mask at `path`."""
    mask = read_index_png(path)
    check_mask_values(mask, path, MASK_VALUES)
    return (np.bincount(mask.ravel(), minlength=256)[:BACKGROUND] > 0).astype(np.float32)


class BCSSDataset(ImageFileDataset):
    """Annotations are mask paths; patches have no boxes."""

    def read_annotation(self, index: int, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return read_class_mask(self.files.annotations[index], image_hw, MASK_VALUES), np.zeros((0, 4), np.float32)


class BCSSDataModule(FileSplitDataModule):
    """BCSS-WSSS: multi-label patches; seeds are the argmax over the label-masked class maps (no background)."""

    name = "bcss_wsss"
    class_names = BCSS_CLASSES
    seed_background = False
    ignore_index = BACKGROUND
    metrics = ("seed_mIoU",)
    splits = ("train", "val", "test")
    published_sizes = {"train": 23422, "val": 3418, "test": 4986}  # the BCSS-WSSS Readme
    root_expected = "the BCSS-WSSS folder holding train/ (or training/), val/ (or valid/) and test/"
    dataset_class = BCSSDataset
    mask_dirs = ("mask",)
    eval_size = None  # the native 224×224 patches, never resized

    def palette(self) -> list[int]:
        """`BCSS_COLOURS` for values 0–4 (4 = background), black after (768 ints)."""
        palette = [channel for colour in BCSS_COLOURS for channel in colour]
        return palette + [0] * (768 - len(palette))

    def __init__(self, root: str, image_size: int = 224, train_scale: tuple[float, float] = (0.8, 1.0),
                 on_corrupt: str = "error", eval_split: str = "test", **kwargs):
        super().__init__(root, image_size, train_scale, on_corrupt, eval_split=eval_split, **kwargs)

    def list_split(self, split: str, policy: CorruptFilePolicy) -> SplitFiles:
        if split not in SPLIT_DIRS:
            raise DatasetError(f"{split!r} is not a BCSS-WSSS split; expected one of {list(SPLIT_DIRS)}")
        folder = first_existing([self.root / name for name in SPLIT_DIRS[split]], f"folder of split {split!r}")
        if split == "train":
            return self._list_patches(folder, policy)
        image_dir = first_existing([folder / "img"], f"image folder of split {split!r}")
        mask_dir = first_existing([folder / "mask"], f"mask folder of split {split!r}")
        images = _pngs(image_dir)
        masks = [mask_dir / p.name for p in images]
        require_files(masks, f"mask of an image in {image_dir}")
        kept, labels = [], []
        for i, (image, mask) in enumerate(zip(images, masks)):
            label = policy.read(mask, mask_labels) if policy.keep([image, mask]) else None
            if label is not None:
                kept.append(i)
                labels.append(label)
        return SplitFiles([images[i].stem for i in kept], [images[i] for i in kept],
                          stack_labels(labels, len(BCSS_CLASSES)), [masks[i] for i in kept])

    def _list_patches(self, folder: Path, policy: CorruptFilePolicy) -> SplitFiles:
        images = _pngs(folder)
        labels = [name_labels(p) for p in images]
        kept = [i for i, image in enumerate(images) if policy.keep([image])]
        return SplitFiles([images[i].stem for i in kept], [images[i] for i in kept],
                          stack_labels([labels[i] for i in kept], len(BCSS_CLASSES)),
                          masks_absent=f"the training patches under {folder} have image labels only (no masks)")


def _pngs(folder: Path) -> list[Path]:
    images = sorted(folder.glob("*.png"))
    if not images:
        raise DatasetError(f"{folder}: no .png patches; expected BCSS-WSSS patches")
    return images
