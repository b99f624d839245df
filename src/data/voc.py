"""PASCAL VOC 2012 (`data=voc2012`): train on `train_aug` (10,582 images), score seeds on `train` (1,464).

Layout under `root` (= …/VOCdevkit/VOC2012): `JPEGImages/<id>.jpg`, `ImageSets/Segmentation/<split>.txt`
(`train_aug.txt` or `trainaug.txt`; lines may also be DeepLab's `/JPEGImages/<id>.jpg /Seg…/<id>.png`),
masks `SegmentationClassAug/` for train_aug and `SegmentationClass/` otherwise (palette PNGs 0–20, 255 =
ignore), `Annotations/<id>.xml`. Image labels are the mask's classes, or the XML's objects where a mask is
absent. Reading the 10,582 train_aug masks for labels takes ~20 s (≈1.5 ms each) per job: give
`cache_dir` to keep them (the root may be read-only, so they are never written next to the data).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from src.data.image_io import (CorruptFilePolicy, DatasetError, FileSplitDataModule, ImageFileDataset,
                               MissingFileError, SplitFiles, check_mask_values, first_existing, read_class_mask,
                               read_index_png, require_files, stack_labels)
from src.store.atomic import atomic_path
from src.store.keyed import text_digest

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
IGNORE_INDEX = 255
SPLIT_LISTS = {"train_aug": ("train_aug.txt", "trainaug.txt")}
MASK_DIRS = {"train_aug": "SegmentationClassAug"}
MASK_VALUES = np.zeros(256, dtype=bool)
MASK_VALUES[: len(VOC_CLASSES) + 1] = True
MASK_VALUES[IGNORE_INDEX] = True


def read_split_ids(path: Path) -> list[str]:
    """Image ids of a split file: the stem of each line's first token."""
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def mask_labels(path: Path) -> np.ndarray:
    """[20] float32 0/1: the classes (mask values 1..20) present in the mask at `path`."""
    mask = read_index_png(path)
    check_mask_values(mask, path, MASK_VALUES)
    present = np.bincount(mask.ravel(), minlength=256)[1: len(VOC_CLASSES) + 1] > 0
    return present.astype(np.float32)


def read_voc_xml(path: Path) -> tuple[list[int], np.ndarray]:
    """Class indices (0..19) of the objects of an annotation XML, and their boxes [N, 4] float
    (x0, y0, x1, y1, 0-based inclusive pixels; VOC's are 1-based)."""
    try:
        objects = ElementTree.parse(path).getroot().findall("object")
    except (ElementTree.ParseError, OSError) as error:
        raise DatasetError(f"{path}: unreadable annotation XML ({error})") from None
    classes, boxes = [], []
    for obj in objects:
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetError(f"{path}: object name {name!r} is not a VOC class; expected one of {list(VOC_CLASSES)}")
        classes.append(VOC_CLASSES.index(name))
        box = obj.find("bndbox")
        if box is not None:
            try:
                boxes.append([float(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: object {name!r} has a bndbox without numeric "
                                   "xmin/ymin/xmax/ymax") from None
    return classes, np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def xml_labels(path: Path) -> np.ndarray:
    """[20] float32 0/1: the classes of the objects of an annotation XML."""
    labels = np.zeros(len(VOC_CLASSES), dtype=np.float32)
    labels[read_voc_xml(path)[0]] = 1
    return labels


class VOCDataset(ImageFileDataset):
    """Annotations are (mask path, XML path or None): the mask as class indices, boxes from the XML."""

    def read_annotation(self, index: int, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        mask_path, xml_path = self.files.annotations[index]
        boxes = read_voc_xml(xml_path)[1] if xml_path is not None else np.zeros((0, 4), np.float32)
        return read_class_mask(mask_path, image_hw, MASK_VALUES), boxes


class VOCSegmentationDataModule(FileSplitDataModule):
    """VOC 2012: 20 classes, multi-label images; masks 0 = background, 1..20, 255 = ignore."""

    name = "voc2012"
    class_names = VOC_CLASSES
    seed_background = True
    ignore_index = IGNORE_INDEX
    metrics = ("seed_mIoU",)
    splits = ("train_aug", "train", "val")
    published_sizes = {"train_aug": 10582, "train": 1464, "val": 1449}
    root_expected = ("the VOC2012 folder (…/VOCdevkit/VOC2012) holding JPEGImages/, ImageSets/Segmentation/, "
                     "SegmentationClass/ (and SegmentationClassAug/)")
    dataset_class = VOCDataset
    mask_dirs = ("SegmentationClass", "SegmentationClassAug")
    eval_size = None  # IRN / PuzzleCAM: CAMs of each image at its original H×W, masks untouched
    eval_sizes_vary = True

    def __init__(self, root: str, image_size: int = 448, train_scale: tuple[float, float] = (0.5, 1.0),
                 on_corrupt: str = "error", cache_dir: str | None = None, train_split: str = "train_aug",
                 eval_split: str = "train", **kwargs):
        super().__init__(root, image_size, train_scale, on_corrupt, eval_split=eval_split, **kwargs)
        self.train_split = train_split
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def list_split(self, split: str, policy: CorruptFilePolicy) -> SplitFiles:
        lists = self.root / "ImageSets" / "Segmentation"
        listing = first_existing([lists / name for name in SPLIT_LISTS.get(split, (f"{split}.txt",))],
                                 f"list of VOC split {split!r}")
        ids = read_split_ids(listing)
        images = [self.root / "JPEGImages" / f"{i}.jpg" for i in ids]
        require_files(images, f"image listed in {listing}")
        mask_dir = self.root / MASK_DIRS.get(split, "SegmentationClass")
        masks = [mask_dir / f"{i}.png" for i in ids]
        xmls = [self.root / "Annotations" / f"{i}.xml" for i in ids]
        has_mask = [m.is_file() for m in masks]
        cache = self._label_cache_path(split, ids, has_mask)
        cached = np.load(cache) if cache is not None and cache.exists() else None
        kept, labels = [], []
        for i in range(len(ids)):
            if not policy.keep([images[i], masks[i]] if has_mask[i] else [images[i]]):
                continue
            if cached is not None:
                label = cached[i]
            elif has_mask[i]:
                label = policy.read(masks[i], mask_labels)
            elif xmls[i].is_file():
                label = policy.read(xmls[i], xml_labels)
            else:
                raise MissingFileError(f"{masks[i]}: mask not found, and no {xmls[i]} to take image labels from")
            if label is not None:
                kept.append(i)
                labels.append(label)
        labels = stack_labels(labels, len(VOC_CLASSES))
        if cache is not None and cached is None and not policy.skipped:
            with atomic_path(cache) as tmp:  # parallel jobs never read half a cache file
                np.save(tmp, labels)
        missing = [masks[i] for i in kept if not has_mask[i]]
        annotations = None if missing else [(masks[i], xmls[i] if xmls[i].is_file() else None) for i in kept]
        absent = f"{len(missing)} of {len(kept)} masks not found under {mask_dir}, e.g. {missing[0]}" if missing else ""
        return SplitFiles([ids[i] for i in kept], [images[i] for i in kept], labels, annotations, absent, missing)

    def _label_cache_path(self, split: str, ids: list[str], has_mask: list[bool]) -> Path | None:
        """Where the labels of this exact listing are cached (None without `cache_dir`)."""
        if self.cache_dir is None:
            return None
        key = json.dumps({"root": str(self.root.resolve()), "split": split, "ids": ids, "masks": has_mask, "v": 1})
        return self.cache_dir / f"voc_labels_{split}_{text_digest(key, 12)}.npy"

