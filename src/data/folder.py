"""Your own images (`data=folder data.root=<dir>`): the layout of `src.data.folder_layout`, the splits of
`src.data.folder_splits`, masks and boxes for some or all images, and the seed protocol chosen by `background`.

Masks `masks/<id>.png` are 8-bit grayscale or palette PNGs of class indices: 0 = background, 1..C = the classes
in classes.txt order, 255 = ignore, at the size of their image. An image without a mask is evaluated (cls_mAP,
the CAM figure, exported seeds) but not scored: its mask is all "ignore", so no metric counts a pixel of it
(`masked` of each split says how many are scored). Boxes (boxes.csv) are only used where an image has them.

`background=true`: VOC's protocol (a background plane swept over thresholds; PxAP with masks);
`background=false`: BCSS's (argmax over the image's classes; masks' 0 is left out of scoring, like 255).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from PIL import Image

from src.data.folder_layout import SPLIT_NAMES, layout_digest, read_boxes, read_folder_images
from src.data.folder_splits import default_eval_split, folder_splits
from src.data.image_io import (CorruptFilePolicy, DatasetError, FileSplitDataModule, ImageFileDataset, SplitFiles,
                               read_index_png)
from src.data.palettes import voc_palette

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


class FolderAnnotation(NamedTuple):
    """What an evaluation sample of a folder image needs: its mask file (None: not scored), boxes [N, 4], and the
    lookup [256] uint8 from the file's values to the protocol's (`FolderDataModule.mask_lookup`)."""

    mask: object
    boxes: np.ndarray
    lookup: np.ndarray


def header_hw(path) -> tuple[int, int]:
    """(H, W) of an image or mask from its header; DatasetError for a file that cannot be opened."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: unreadable file ({error})") from None


def read_folder_mask(path) -> np.ndarray:
    """A mask of class indices → uint8 [H, W]: palette or grayscale PNGs as `read_index_png`; also what other
    tools write for the same content: 16-bit grayscale holding values ≤ 255, and RGB(A) whose R, G, B are equal."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image) if mode in ("I;16", "I;16B", "I;16L", "I", "RGB", "RGBA") else None
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: unreadable mask ({error}); expected a PNG of class indices") from None
    if array is None:
        return read_index_png(path)
    if array.ndim == 3:
        if not ((array[..., 0] == array[..., 1]) & (array[..., 1] == array[..., 2])).all():
            raise DatasetError(f"{path}: mask is a colour image (mode {mode!r}); expected class indices: a grayscale "
                               "('L') or palette ('P') PNG, 0 = background, 1..C, 255 = ignore")
        array = array[..., 0]
    if array.max(initial=0) > 255 or array.min(initial=0) < 0:
        raise DatasetError(f"{path}: mask (mode {mode!r}) holds values up to {int(array.max())}; expected class "
                           "indices 0..255 (0 = background, 1..C, 255 = ignore)")
    return array.astype(np.uint8)


def mask_size_problem(mask_path, image_path) -> str | None:
    """Why the mask cannot be its image's (sizes from the headers), or None."""
    mask_hw, image_hw = header_hw(mask_path), header_hw(image_path)
    if mask_hw == image_hw:
        return None
    return (f"{mask_path}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its image {image_path} is "
            f"{image_hw[0]}x{image_hw[1]}; expected the same size")


def mask_value_problem(mask_path, num_classes: int, classes_from: str) -> str | None:
    """Which values of the mask are no class id (0, 1..C, 255), or None."""
    values = np.flatnonzero(np.bincount(read_folder_mask(mask_path).ravel(), minlength=256))
    bad = [int(v) for v in values if v != IGNORE_INDEX and v > num_classes]
    if not bad:
        return None
    return (f"{mask_path}: mask holds class id(s) {bad} out of range; expected 0 (background), 1..{num_classes} "
            f"(the classes of {classes_from}) or 255 (ignore)")


class FolderDataset(ImageFileDataset):
    """Evaluation samples carry a mask for every image: the file's, translated, or all ignore where there is none."""

    def read_annotation(self, index: int, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        mask_path, boxes, lookup = self.files.annotations[index]
        if mask_path is None:
            return np.full(image_hw, IGNORE_INDEX, dtype=np.uint8), boxes
        mask = read_folder_mask(mask_path)
        if mask.shape != tuple(image_hw):  # checked at listing; a file replaced since then still says so
            raise DatasetError(f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is "
                               f"{image_hw[0]}x{image_hw[1]}; expected the same size")
        return lookup[mask], boxes


class FolderDataModule(FileSplitDataModule):
    """A dataset in the folder layout; class names, splits and metrics come from what the folder holds."""

    splits = SPLIT_NAMES
    root_expected = "a folder holding images/ and labels.csv (or one subfolder of images/ per class)"
    dataset_class = FolderDataset
    ignore_index = IGNORE_INDEX
    mask_dirs = ("masks",)

    def __init__(self, root: str, background: bool = True, image_size: int = 224, eval_size: int | None = None,
                 train_scale: tuple[float, float] = (0.5, 1.0), split_fractions: Mapping | None = None,
                 split_seed: int = 0, name: str = "folder", on_corrupt: str = "error", train_split: str = "train",
                 eval_split: str | None = None, **kwargs):
        super().__init__(root, image_size, train_scale, on_corrupt, eval_split=eval_split or "val", **kwargs)
        if not NAME_PATTERN.match(str(name)):
            raise DatasetError(f"data.name={name!r}; expected letters, digits, '_', '.' or '-' (it names report files)")
        for key, split in (("data.train_split", train_split), ("data.eval_split", eval_split or "val")):
            if split not in SPLIT_NAMES:
                raise DatasetError(f"{key}={split!r}; expected one of {list(SPLIT_NAMES)} "
                                   "(or null for data.eval_split)")
        self.name = str(name)
        self.seed_background = bool(background)
        self.eval_size = None if eval_size is None else int(eval_size)
        self.train_split = train_split
        self.layout = read_folder_images(self.root)
        self.class_names = self.layout.class_names
        self.folder_splits = folder_splits(self.layout, split_fractions, int(split_seed))
        self.eval_split = default_eval_split(self.folder_splits, eval_split)
        self.boxes = read_boxes(self.root, self.layout, _LazySizes(self.layout))
        self._check_training_classes()

    @staticmethod
    def content_digest(data_config: Mapping) -> str:
        """What the folder holds beyond the config (labels, classes, splits, image files), for the classifier
        cache key: `src.data.folder_layout.layout_digest` of `data_config["root"]`."""
        return layout_digest(data_config["root"])

    # ------------------------------------------------------------------ the protocol, from what the folder holds
    @property
    def mask_lookup(self) -> np.ndarray:
        """uint8 [256]: a mask file's value → the protocol's. With a background plane the values stay (0, 1..C,
        255); without, class k becomes k - 1 and background 0 joins ignore (never scored, as BCSS's)."""
        lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        classes = np.arange(1, self.num_classes + 1)
        if self.seed_background:
            lookup[0] = 0
            lookup[classes] = classes
        else:
            lookup[classes] = classes - 1
        return lookup

    @property
    def metrics(self) -> tuple[str, ...]:
        """seed_mIoU (and PxAP with a background plane) when some evaluation image has a mask, MaxBoxAccV2 when
        some has boxes; none: cls_mAP, the figure and the seeds only."""
        files = self.split_files(self.eval_split)
        masked = any(a.mask is not None for a in files.annotations)
        boxed = any(len(a.boxes) for a in files.annotations)
        return ((("seed_mIoU",) + (("PxAP",) if self.seed_background else ())) if masked else ()) + \
            (("MaxBoxAccV2",) if boxed else ())

    @property
    def eval_sizes_vary(self) -> bool:
        """Evaluated one image per batch when images are kept at their stored sizes and these differ."""
        if self.eval_size is not None:
            return False
        return len({header_hw(path) for path in self.split_files(self.eval_split).images}) > 1

    def palette(self) -> list[int]:
        """VOC's colours for 0 = background, 1..C; without a background plane class k (value k - 1) keeps the
        colour of its mask value k."""
        palette = voc_palette()
        return palette if self.seed_background else palette[3:3 * 255] + [0, 0, 0] + palette[3 * 255:]

    def masked(self, split: str) -> int:
        """Images of `split` that have a mask (the others are not scored)."""
        return sum(a.mask is not None for a in self.split_files(split).annotations)

    # ------------------------------------------------------------------ listing
    def _check_training_classes(self) -> None:
        members = self.folder_splits.members[self.train_split]
        where = self.folder_splits.sources[self.train_split]
        if not members:
            raise DatasetError(f"{where}: training split {self.train_split!r} is empty; expected images in it")
        counts = self.layout.labels[members].sum(0)
        absent = [name for name, count in zip(self.class_names, counts) if count == 0]
        if absent:
            raise DatasetError(f"{where}: class(es) {absent} have no positive image in the training split "
                               f"{self.train_split!r}; expected at least one each (classes from "
                               f"{self.layout.classes_from})")

    def mask_path(self, image_id: str):
        path = self.root / "masks" / f"{image_id}.png"
        return path if path.is_file() else None

    def check_mask(self, mask_path, image_path) -> None:
        """A mask must be its image's size and hold only 0, 1..C and 255 (DatasetError naming the file)."""
        problem = (mask_size_problem(mask_path, image_path)
                   or mask_value_problem(mask_path, self.num_classes, self.layout.classes_from))
        if problem:
            raise DatasetError(problem)

    def list_split(self, split: str, policy: CorruptFilePolicy) -> SplitFiles:
        if split not in SPLIT_NAMES:
            raise DatasetError(f"{split!r} is not a folder split; expected one of {list(SPLIT_NAMES)}")
        members = self.folder_splits.members[split]
        if not members:
            raise DatasetError(f"{self.folder_splits.sources[split]}: split {split!r} is empty; expected images in it")
        layout, lookup = self.layout, self.mask_lookup
        kept, annotations, missing = [], [], []
        for i in members:
            image_id, image = layout.ids[i], layout.images[i]
            mask = self.mask_path(image_id)
            if not policy.keep([image] + ([mask] if mask is not None else [])):
                continue
            if mask is not None:
                self.check_mask(mask, image)
            else:
                missing.append(self.root / "masks" / f"{image_id}.png")
            kept.append(i)
            annotations.append(FolderAnnotation(mask, self.boxes.get(image_id, np.zeros((0, 4), np.float32)), lookup))
        if missing and len(missing) < len(kept):
            log.info("data=folder: %d of %d images of split %r have no mask under %s and are not scored", len(missing),
                     len(kept), split, self.root / "masks")
        return SplitFiles([layout.ids[i] for i in kept], [layout.images[i] for i in kept], layout.labels[kept],
                          annotations, "" if len(missing) < len(kept) else f"no masks under {self.root / 'masks'}",
                          missing)


class _LazySizes(Mapping):
    """id → (H, W) from the image's header, read on first use (only boxes.csv's images are looked up)."""

    def __init__(self, layout):
        self.paths = dict(zip(layout.ids, layout.images))
        self.cache: dict[str, tuple[int, int]] = {}

    def __getitem__(self, image_id: str) -> tuple[int, int]:
        if image_id not in self.cache:
            self.cache[image_id] = header_hw(self.paths[image_id])
        return self.cache[image_id]

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)
