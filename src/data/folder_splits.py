"""Which images of a folder layout are in `train`, `val` and `test`, from the first of:

1. the `split` column of labels.csv;
2. `splits/{train,val,test}.txt` (one image a line, as in labels.csv; a file may be absent, lists may overlap, as
   VOC's train_aug holds its train);
3. a seeded stratified split by `fractions`: each class gets a positive image in every split where it has
   enough images (train first, then val, then test; rarest class first), the rest is dealt by the fractions.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.data.folder_layout import SPLIT_NAMES, FolderImages, ImageNames
from src.data.image_io import DatasetError


DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}  # conf/data/folder.yaml's split_fractions


@dataclass
class FolderSplits:
    """Per split, indices into `FolderImages.ids` (sorted); `sources[split]` names where it came from."""

    members: dict[str, list[int]]
    sources: dict[str, str]


def default_eval_split(splits: FolderSplits, eval_split: str | None) -> str:
    """`data.eval_split`, or when it is null: `val`, or `test` where `val` is empty and `test` is not."""
    if eval_split is not None:
        return eval_split
    return "test" if not splits.members["val"] and splits.members["test"] else "val"


def check_fractions(fractions: Mapping) -> dict[str, float]:
    """`data.split_fractions` as {train, val, test} ≥ 0 summing to 1, train > 0."""
    try:
        values = {name: float(fractions[name]) for name in SPLIT_NAMES}
    except (KeyError, TypeError, ValueError):
        shown = dict(fractions) if isinstance(fractions, Mapping) else fractions
        raise DatasetError(f"data.split_fractions={shown!r}; "
                           "expected {train: …, val: …, test: …}, numbers summing to 1") from None
    if min(values.values()) < 0 or values["train"] <= 0 or not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6):
        raise DatasetError(f"data.split_fractions={values}; expected fractions ≥ 0 summing to 1, train > 0")
    return values


def folder_splits(images: FolderImages, fractions: Mapping | None, seed: int) -> FolderSplits:
    """The splits of `images` from the first source the layout has (the module docstring's order)."""
    if images.splits is not None:
        where = f"the split column of {images.root / 'labels.csv'}"
        members = {name: [i for i, s in enumerate(images.splits) if s == name] for name in SPLIT_NAMES}
        return FolderSplits(members, {name: where for name in SPLIT_NAMES})
    split_dir = images.root / "splits"
    if split_dir.is_dir():
        return _listed_splits(images, split_dir)
    fractions = check_fractions(fractions or DEFAULT_FRACTIONS)
    where = (f"a stratified split by data.split_fractions={fractions}, data.split_seed={seed} "
             "(no split column, no splits/)")
    return FolderSplits(stratified_split(images.labels, fractions, seed), {name: where for name in SPLIT_NAMES})


def _listed_splits(images: FolderImages, split_dir: Path) -> FolderSplits:
    index = images.index()
    resolve = ImageNames({i: p for i, p in zip(images.ids, images.images)}, images.root / "images")
    members, sources = {}, {}
    for name in SPLIT_NAMES:
        path = split_dir / f"{name}.txt"
        sources[name] = str(path)
        members[name] = []
        if not path.is_file():
            continue
        lines: dict[int, int] = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            row = index[resolve(line.strip(), f"{path}:{number}")]
            if row in lines:
                raise DatasetError(f"{path}:{number}: duplicate image {line.strip()!r}, already on line {lines[row]}; "
                                   "expected each image once per split")
            lines[row] = number
        members[name] = sorted(lines)
    return FolderSplits(members, sources)


def stratified_split(labels: np.ndarray, fractions: Mapping[str, float], seed: int) -> dict[str, list[int]]:
    """Indices per split of n images with `labels` [n, C]: sizes round(n · fraction) (train takes the rounding
    rest); first, for each class (rarest first), one not yet placed positive image goes to each split that lacks
    the class and still has room (train always has room), so a class with k ≥ 3 images is in all three splits;
    then the seeded order fills the splits in turn, each taking images while it is below its size."""
    positive = np.asarray(labels) > 0
    n = len(positive)
    order = np.random.default_rng(seed).permutation(n)
    sizes = {name: int(round(n * fractions[name])) for name in SPLIT_NAMES if name != "train"}
    sizes["train"] = n - sum(sizes.values())
    placed = np.full(n, "", dtype=object)
    for c in np.argsort(positive.sum(0), kind="stable"):
        for name in SPLIT_NAMES:
            count = int((placed == name).sum())
            if positive[placed == name, c].any() or (name != "train" and count >= sizes[name]):
                continue
            free = [i for i in order if positive[i, c] and not placed[i]]
            if free:
                placed[free[0]] = name
    for name in SPLIT_NAMES:
        for i in order:
            if (placed == name).sum() >= sizes[name]:
                break
            if not placed[i]:
                placed[i] = name
    placed[placed == ""] = "train"
    return {name: sorted(int(i) for i in np.flatnonzero(placed == name)) for name in SPLIT_NAMES}
