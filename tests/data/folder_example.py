"""The example folder dataset of `scripts/make_folder_example.py`, written once per test module, and copies a test
may damage."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.helpers import load_script

EXAMPLE_IMAGES, EXAMPLE_SIZE = 20, 32


def write_example(root: Path, images: int = EXAMPLE_IMAGES, size: int = EXAMPLE_SIZE) -> dict:
    """The example layout at `root`; returns the script's counts."""
    return load_script("make_folder_example").make_folder_example(root, images=images, size=size)


def copy_of(root: Path, target: Path) -> Path:
    shutil.copytree(root, target)
    return target


def rewrite_rows(path: Path, edit) -> None:
    """Apply `edit(lines) -> lines` to a text file's lines (header included)."""
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def voc_as_folder(voc_root: Path, target: Path, train_list: str, eval_list: str) -> Path:
    """A VOC2012 tree (`tests.data.layouts.make_voc`) rewritten in the folder layout: images/<id>.jpg and
    masks/<id>.png copied byte for byte (SegmentationClassAug: the masks of every train_aug id), labels.csv with
    each image's mask classes, classes.txt = VOC's 20, splits/train.txt = VOC's `train_list` and splits/val.txt =
    its `eval_list` (overlapping, as VOC's seed protocol scores train images)."""
    from src.data.voc import VOC_CLASSES, mask_labels, read_split_ids

    lists = voc_root / "ImageSets" / "Segmentation"
    splits = {"train": read_split_ids(lists / train_list), "val": read_split_ids(lists / eval_list)}
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir()
    (target / "splits").mkdir()
    rows = ["image,labels"]
    for image_id in dict.fromkeys(splits["train"] + splits["val"]):
        shutil.copyfile(voc_root / "JPEGImages" / f"{image_id}.jpg", target / "images" / f"{image_id}.jpg")
        mask = voc_root / "SegmentationClassAug" / f"{image_id}.png"
        shutil.copyfile(mask, target / "masks" / f"{image_id}.png")
        names = [VOC_CLASSES[c] for c in np.flatnonzero(mask_labels(mask))]
        rows.append(f"{image_id}.jpg,{';'.join(names)}")
    (target / "labels.csv").write_text("\n".join(rows) + "\n")
    (target / "classes.txt").write_text("\n".join(VOC_CLASSES) + "\n")
    for split, ids in splits.items():
        (target / "splits" / f"{split}.txt").write_text("\n".join(f"{i}.jpg" for i in ids) + "\n")
    return target
