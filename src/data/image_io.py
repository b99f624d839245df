"""Reading the files of an on-disk dataset, with one clear error per bad file, and the `on_corrupt` policy.

Every error is a `DatasetError` whose message names the path and what was expected. The split listing
(`SplitFiles`), the Dataset and the DataModule that the file-backed datasets (VOC, BCSS, OpenImages) share
live here too, because they are the place where files are read and the policy applied.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from src.data.collate import empty_boxes
from src.data.datamodule import ProportionDataModule
from src.data.pixels import rgb_array
from src.data.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

ON_CORRUPT = ("error", "skip")


class DatasetError(ValueError):
    """A dataset layout or file a split cannot be built from; the message names the path and what was expected."""


class MissingFileError(DatasetError):
    """A file the split lists is absent: always an error (a wrong root or listing), whatever `on_corrupt` says."""


def check_on_corrupt(value: str) -> str:
    if value not in ON_CORRUPT:
        raise DatasetError(f"data.on_corrupt={value!r} is unknown; expected one of {list(ON_CORRUPT)}")
    return value


def require_dir(path, key: str, expected: str) -> Path:
    """`path` as a Path, or DatasetError naming `key` when it is unset or not a directory."""
    if path is None or str(path) in ("", "???"):
        raise DatasetError(f"{key} is not set; expected {expected}")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key}={str(path)!r} does not exist or is not a directory; expected {expected}")
    return path


def first_existing(candidates: Iterable[Path], what: str) -> Path:
    """The first of `candidates` that exists, or DatasetError listing them all."""
    candidates = list(candidates)
    for path in candidates:
        if path.exists():
            return path
    raise MissingFileError(f"{candidates[0]}: missing {what}; expected one of {[str(p) for p in candidates]}")


def require_files(paths: list[Path], what: str) -> None:
    """DatasetError naming the first of `paths` that is absent (and how many are)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingFileError(f"{missing[0]}: {what} not found ({len(missing)} of {len(paths)} missing)")


def read_rgb(path: Path) -> torch.Tensor:
    """An image file → uint8 [3, H, W] RGB (grayscale, palette, alpha and 16-bit images converted by the rule of
    `src.data.pixels`)."""
    try:
        with Image.open(path) as image:
            array = rgb_array(image)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: image not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: unreadable image ({error}); expected a JPEG, PNG, TIFF or BMP file") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_index_png(path: Path) -> np.ndarray:
    """A mask of class indices → uint8 [H, W]. Palette ("P") PNGs give their indices, not colours."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DatasetError(f"{path}: mask is mode {image.mode!r}; expected a palette ('P') or grayscale "
                                   "('L') PNG of class indices")
            return np.array(image)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: mask not found") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: unreadable mask ({error}); expected a PNG of class indices") from None


def read_class_mask(path: Path, image_hw: tuple[int, int], allowed: np.ndarray) -> np.ndarray:
    """An index mask that must match its image's size (H, W) and hold only values where `allowed` [256]
    is True → uint8 [H, W]."""
    mask = read_index_png(path)
    if mask.shape != tuple(image_hw):
        raise DatasetError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is "
                           f"{image_hw[0]}x{image_hw[1]}; expected the same size")
    check_mask_values(mask, path, allowed)
    return mask


def check_mask_values(mask: np.ndarray, path: Path, allowed: np.ndarray) -> None:
    bad = np.flatnonzero(np.bincount(mask.ravel(), minlength=256).astype(bool) & ~allowed)
    if len(bad):
        raise DatasetError(f"{path}: mask holds values {bad.tolist()}; "
                           f"expected only {np.flatnonzero(allowed).tolist()}")


def read_gray(path: Path) -> np.ndarray:
    """A mask read as OpenCV's grayscale (what wsolevaluation does) → uint8 [H, W]."""
    array = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if array is None:
        if not Path(path).is_file():
            raise MissingFileError(f"{path}: mask not found")
        raise DatasetError(f"{path}: unreadable mask; expected a grayscale PNG")
    return array


def image_hw(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    with Image.open(path) as image:
        return image.height, image.width


def verify_file(path: Path) -> None:
    """Decode `path` fully (JPEGs at 1/8 scale: every byte is still read) or raise DatasetError.

    `Image.verify()` checks little beyond the header of a JPEG, so a truncated file would pass it."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: unreadable file ({error})") from None


class CorruptFilePolicy:
    """Applies `on_corrupt` while a split is listed.

    "error": nothing is decoded up front; an unreadable file raises when it is read. "skip": every file of
    every sample is decoded at listing time; a sample with an unreadable file is dropped, logged, and its
    file recorded in `skipped`, so indices stay consistent for the whole run. Absent files always raise.
    """

    def __init__(self, on_corrupt: str):
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.skipped: list[str] = []

    def keep(self, paths: Iterable[Path]) -> bool:
        """Whether the sample made of `paths` stays in the split."""
        if self.on_corrupt == "error":
            return True
        return all(self.read(path, verify_file) is not None for path in paths)

    def read(self, path: Path, reader: Callable[[Path], object]):
        """`reader(path)`, or None for an unreadable file under "skip" (then recorded and logged)."""
        try:
            value = reader(path)
        except MissingFileError:
            raise
        except DatasetError as error:
            if self.on_corrupt == "error":
                raise
            log.warning("on_corrupt=skip: dropping %s", error)
            self.skipped.append(str(path))
            return None
        return True if value is None else value


def stack_labels(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-image [C] labels → [n, C] float32 (also for n = 0)."""
    return np.stack(labels).astype(np.float32) if labels else np.zeros((0, num_classes), np.float32)


@dataclass
class SplitFiles:
    """One split as listed on disk. `annotations` holds, per image, what the dataset needs to read its mask
    (None: the split has no masks, `masks_absent` says why); `missing_masks` the mask files not found."""

    ids: list[str]
    images: list[Path]
    labels: np.ndarray  # [n, C] float32 0/1
    annotations: list | None = None
    masks_absent: str = ""
    missing_masks: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class ImageFileDataset(Dataset):
    """A listed split as sample dicts (see `src.data.datamodule`). Training samples never read masks;
    evaluation samples carry `mask` long [S, S] and `boxes` float [N, 4] when the split has masks."""

    def __init__(self, files: SplitFiles, transform: TrainTransform | EvalTransform):
        self.files = files
        self.transform = transform
        self.ids = files.ids
        self.labels = files.labels
        self.skipped = len(files.skipped)

    def read_annotation(self, index: int, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Mask uint8 [h, w] and boxes [N, 4] (x0, y0, x1, y1 in mask pixels) of sample `index`."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def original_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of image `index` as stored, from its file header."""
        return image_hw(self.files.images[index])

    def __getitem__(self, index: int) -> dict:
        image = read_rgb(self.files.images[index])
        sample = {"labels": torch.from_numpy(self.labels[index]).float(), "index": index, "id": self.ids[index]}
        if isinstance(self.transform, TrainTransform):
            sample["image"] = self.transform(image)
            return sample
        sample["image"] = self.transform.image(image)
        if self.files.annotations is not None:
            mask, boxes = self.read_annotation(index, tuple(image.shape[-2:]))
            sample["mask"] = self.transform.mask(torch.from_numpy(mask))
            boxes = torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
            sample["boxes"] = self.transform.boxes(boxes, *mask.shape) if len(boxes) else empty_boxes()
        return sample


class FileSplitDataModule(ProportionDataModule):
    """A dataset whose splits are files under `root`: each split is listed once (and cached), `on_corrupt`
    applied, training transforms (and BLS features) at `image_size` with `train_scale` jitter, evaluation at the
    protocol's `eval_size` (None: each image as stored).

    Subclasses set `name`, `splits` (the standard split names), `published_sizes`, `root_expected`,
    `dataset_class`, and implement `list_split(split, policy) -> SplitFiles`.
    """

    splits: tuple[str, ...] = ()
    published_sizes: dict[str, int] = {}
    root_expected: str = "the dataset folder"
    dataset_class: type[ImageFileDataset] = ImageFileDataset
    masks_match_image: bool = True  # False where masks are resized independently (wsolevaluation)

    def __init__(self, root: str, image_size: int, train_scale: tuple[float, float] = (0.5, 1.0),
                 on_corrupt: str = "error", **kwargs):
        super().__init__(**kwargs)
        self.root = require_dir(root, "data.root", self.root_expected)
        self.image_size = int(image_size)
        self.train_scale = tuple(train_scale)
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self._files: dict[str, SplitFiles] = {}

    def list_split(self, split: str, policy: CorruptFilePolicy) -> SplitFiles:
        raise NotImplementedError

    def split_files(self, split: str) -> SplitFiles:
        """The listing of `split`, built on first use (reading labels may take a while) and kept."""
        if split not in self._files:
            policy = CorruptFilePolicy(self.on_corrupt)
            files = self.list_split(split, policy)
            files.skipped = policy.skipped
            if not files.ids:
                raise DatasetError(f"{self.name} split {split!r} under {self.root} is empty; expected images")
            self._files[split] = files
        return self._files[split]

    @property
    def skipped(self) -> int:
        """Files dropped by on_corrupt=skip over the splits listed so far."""
        return sum(len(files.skipped) for files in self._files.values())

    def build_dataset(self, split: str, train: bool, features: bool = False) -> ImageFileDataset:
        files = self.split_files(split)
        if not train and not features and split == self.eval_split and files.annotations is None:
            raise DatasetError(f"{self.name} split {split!r} cannot be evaluated: {files.masks_absent}")
        if train:
            transform = TrainTransform(self.image_size, self.train_scale)
        else:
            transform = EvalTransform(self.image_size if features else self.eval_size)
        return self.dataset_class(files, transform)
