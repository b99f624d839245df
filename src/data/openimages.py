"""OpenImages30k in the wsolevaluation layout (`data=openimages30k`): 100 classes, one per image; PxAP masks.

Under `root` (wsolevaluation's defaults): metadata `metadata/OpenImages/{train,val,test}/` with
`image_ids.txt` (`<split>/<class folder>/<id>.jpg`, 29,819 / 2,500 / 5,000 lines), `class_labels.txt`
(`path,label`) and, for val and test, `localization.txt` (`path,mask_path,ignore_path`, one line per
instance, the ignore path given once per image); images under `dataset/OpenImages/<path>` and masks under
the mask root (by default the same folder: wsolevaluation unzips both there). Ids are the image paths.

Masks are read exactly as wsolevaluation does (`load_wsol_mask`): each file as OpenCV grayscale, resized to
the evaluation size with nearest neighbour, > 0.5; foreground = union of the instances, ignore = the ignore
mask minus the foreground.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from src.data.image_io import (CorruptFilePolicy, DatasetError, FileSplitDataModule, ImageFileDataset, SplitFiles,
                               read_gray, require_dir, require_files)

WSOL_SIZE = 224
IGNORE_INDEX = 255


def read_wsol_binary(path: Path, size: int = WSOL_SIZE) -> np.ndarray:
    """bool [size, size]: grayscale read, nearest-neighbour resize, > 0.5 (i.e. any non-zero value)."""
    gray = read_gray(path)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def combine_wsol_mask(instances: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """instances bool [N, S, S], ignore bool [S, S] or None → uint8 [S, S]: 1 = foreground (any instance),
    255 = ignore region outside the foreground, 0 = background."""
    foreground = instances.any(axis=0)
    mask = foreground.astype(np.uint8)
    if ignore is not None:
        mask[ignore & ~foreground] = IGNORE_INDEX
    return mask


def load_wsol_mask(mask_root: str | Path, mask_paths: list[str], ignore_path: str | None,
                   size: int = WSOL_SIZE) -> np.ndarray:
    """wsolevaluation's ground truth of one image → uint8 [size, size] (0 background, 1 foreground,
    255 ignore). `mask_paths` (instances) and `ignore_path` are relative to `mask_root`; an empty or None
    ignore path means no ignore region."""
    if not mask_paths:
        raise DatasetError(f"{mask_root}: no instance mask given; expected at least one mask path")
    instances = np.stack([read_wsol_binary(Path(mask_root) / p, size) for p in mask_paths])
    ignore = read_wsol_binary(Path(mask_root) / ignore_path, size) if ignore_path else None
    return combine_wsol_mask(instances, ignore)


def instance_boxes(instances: np.ndarray) -> np.ndarray:
    """bool [N, S, S] → float32 [M, 4] (x0, y0, x1, y1, inclusive pixels) of the non-empty instances."""
    boxes = []
    for instance in instances:
        ys, xs = np.nonzero(instance)
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def read_rows(path: Path, fields: int, expected: str) -> list[tuple[int, list[str]]]:
    """(line number, comma-separated fields) of each non-empty line; DatasetError naming the line otherwise."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != fields:
            raise DatasetError(f"{path}:{number}: expected '{expected}', got {line!r}")
        rows.append((number, [p.strip() for p in parts]))
    return rows


def read_class_labels(path: Path, num_classes: int) -> dict[str, tuple[int, int]]:
    """`class_labels.txt` → {image path: (label, line number)}; labels must lie in 0..num_classes-1."""
    labels = {}
    for number, (image, label) in read_rows(path, 2, "path,label"):
        if not label.lstrip("-").isdigit() or not 0 <= int(label) < num_classes:
            raise DatasetError(f"{path}:{number}: class label {label!r} of {image} is not a class id; expected "
                               f"an integer in 0..{num_classes - 1} (data.num_classes={num_classes})")
        labels[image] = (int(label), number)
    return labels


def read_localization(path: Path) -> dict[str, tuple[list[str], str]]:
    """`localization.txt` → {image path: (instance mask paths, ignore path or "")}."""
    masks: dict[str, tuple[list[str], str]] = {}
    for _, (image, mask, ignore) in read_rows(path, 3, "path,mask_path,ignore_path"):
        instances, known_ignore = masks.get(image, ([], ""))
        masks[image] = (instances + [mask], known_ignore or ignore)
    return masks


def class_folder(image: str) -> str:
    """The class folder of an image path `<split>/<folder>/<id>.jpg`."""
    return Path(image).parent.name


class OpenImagesDataset(ImageFileDataset):
    """Annotations are (instance mask paths, ignore path or None), read at the evaluation size."""

    def read_annotation(self, index: int, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        mask_paths, ignore_path = self.files.annotations[index]
        size = self.transform.size or WSOL_SIZE
        instances = np.stack([read_wsol_binary(p, size) for p in mask_paths])
        ignore = read_wsol_binary(ignore_path, size) if ignore_path is not None else None
        return combine_wsol_mask(instances, ignore), instance_boxes(instances)


class OpenImagesDataModule(FileSplitDataModule):
    """OpenImages30k: single-label images (multi-hot with one 1); masks 0 / 1 foreground / 255 ignore.

    Class names are the class folders (mids such as `01226z`) in label order, taken from the training
    split, or their names from `class_names_file` (lines `mid,name`, e.g. `/m/01226z,Ball`).
    """

    name = "openimages30k"
    seed_background = True
    ignore_index = IGNORE_INDEX
    metrics = ("PxAP",)
    splits = ("train", "val", "test")
    published_sizes = {"train": 29819, "val": 2500, "test": 5000}
    root_expected = "a folder holding wsolevaluation's metadata/OpenImages/ and dataset/OpenImages/"
    dataset_class = OpenImagesDataset
    masks_match_image = False
    eval_size = WSOL_SIZE  # wsolevaluation feeds every image at 224×224, whatever image_size trains at

    def __init__(self, root: str, metadata_root: str | None = None, image_root: str | None = None,
                 mask_root: str | None = None, num_classes: int = 100, class_names_file: str | None = None,
                 image_size: int = WSOL_SIZE, train_scale: tuple[float, float] = (0.6, 1.0),
                 on_corrupt: str = "error", eval_split: str = "test", **kwargs):
        super().__init__(root, image_size, train_scale, on_corrupt, eval_split=eval_split, **kwargs)
        self.metadata_root = require_dir(metadata_root or self.root / "metadata" / "OpenImages",
                                         "data.metadata_root", "wsolevaluation's metadata/OpenImages folder")
        self.image_root = require_dir(image_root or self.root / "dataset" / "OpenImages", "data.image_root",
                                      "the folder of the OpenImages images (<split>/<class>/<id>.jpg)")
        self.mask_root = Path(mask_root) if mask_root else self.image_root
        self.expected_classes = int(num_classes)
        self.class_folders = self._class_folders()
        self.class_names = self._names(class_names_file) if class_names_file else self.class_folders

    def _split_file(self, split: str, name: str) -> Path:
        path = self.metadata_root / split / name
        require_files([path], f"metadata file of OpenImages split {split!r}")
        return path

    def _class_folders(self) -> tuple[str, ...]:
        """The class folder of each label, from the training split; every label must have one, one only."""
        path = self._split_file(self.train_split, "class_labels.txt")
        folders: dict[int, tuple[str, int]] = {}
        for image, (label, number) in read_class_labels(path, self.expected_classes).items():
            folder, first = folders.setdefault(label, (class_folder(image), number))
            if folder != class_folder(image):
                raise DatasetError(f"{path}:{number}: {image} is in class folder {class_folder(image)!r} but label "
                                   f"{label} is folder {folder!r} on line {first}; expected one folder per label")
        absent = sorted(set(range(self.expected_classes)) - set(folders))
        if absent:
            raise DatasetError(f"{path}: no image of class label(s) {absent[:10]}; expected every label in "
                               f"0..{self.expected_classes - 1} (data.num_classes={self.expected_classes})")
        return tuple(folders[k][0] for k in range(self.expected_classes))

    def _names(self, path: str) -> tuple[str, ...]:
        with open(path, newline="") as handle:
            names = {row[0].rsplit("/", 1)[-1]: row[1] for row in csv.reader(handle) if len(row) >= 2}
        absent = [mid for mid in self.class_folders if mid not in names]
        if absent:
            raise DatasetError(f"{path}: no name for class(es) {absent[:5]}; expected lines 'mid,name'")
        return tuple(names[mid] for mid in self.class_folders)

    def list_split(self, split: str, policy: CorruptFilePolicy) -> SplitFiles:
        if split not in self.splits:
            raise DatasetError(f"{split!r} is not an OpenImages split; expected one of {list(self.splits)}")
        ids_path, labels_path = self._split_file(split, "image_ids.txt"), self._split_file(split, "class_labels.txt")
        rows = [(n, line.strip()) for n, line in enumerate(ids_path.read_text().splitlines(), 1) if line.strip()]
        paths = [image for _, image in rows]
        class_labels = read_class_labels(labels_path, self.expected_classes)
        labels = np.zeros((len(paths), self.expected_classes), dtype=np.float32)
        for i, (line, image) in enumerate(rows):
            if image not in class_labels:
                raise DatasetError(f"{ids_path}:{line}: {image} has no line in {labels_path}; expected 'path,label'")
            label, number = class_labels[image]
            if class_folder(image) != self.class_folders[label]:
                raise DatasetError(f"{labels_path}:{number}: {image} is in class folder {class_folder(image)!r} but "
                                   f"label {label} is class {self.class_folders[label]!r} in the training split")
            labels[i, label] = 1
        images = [self.image_root / p for p in paths]
        require_files(images, f"image listed in {ids_path}")
        annotations, missing, absent = self._annotations(split, paths)
        kept = [i for i in range(len(paths))
                if policy.keep([images[i]] + (_annotation_files(annotations[i]) if annotations else []))]
        return SplitFiles([paths[i] for i in kept], [images[i] for i in kept], labels[kept],
                          [annotations[i] for i in kept] if annotations else None, absent, missing)

    def _annotations(self, split: str, paths: list[str]) -> tuple[list | None, list[Path], str]:
        """Per image (instance mask paths, ignore path or None) under the mask root, the mask files not
        found, and why the split has no masks ("" when it has them)."""
        path = self.metadata_root / split / "localization.txt"
        if not path.is_file():
            return None, [], f"{path} not found (wsolevaluation gives masks for val and test only)"
        localization = read_localization(path)
        unlisted = [p for p in paths if p not in localization]
        if unlisted:
            return None, [], f"{len(unlisted)} images have no line in {path}, e.g. {unlisted[0]}"
        annotations = [([self.mask_root / m for m in localization[p][0]],
                         self.mask_root / localization[p][1] if localization[p][1] else None) for p in paths]
        missing = [f for a in annotations for f in _annotation_files(a) if not f.is_file()]
        if missing:
            return None, missing, f"{len(missing)} mask files not found under {self.mask_root}, e.g. {missing[0]}"
        return annotations, [], ""


def _annotation_files(annotation: tuple[list[Path], Path | None]) -> list[Path]:
    instances, ignore = annotation
    return instances + ([ignore] if ignore is not None else [])
