"""The folder layout of `data=folder` read from disk: images, classes, image labels and boxes, each bad row a
one-line `DatasetError` naming the file and line (`labels.csv:7: …`).

    <root>/images/…            jpg, jpeg, png, tif, tiff, bmp (subfolders allowed); id = path under images/
                               without its extension (`images/cat/01.jpg` → `cat/01`)
    <root>/labels.csv          `image,labels[,split]`: class names separated by ';', an empty field = no class;
                               without it, single-label data: `images/<class>/<file>`, the folder is the class
    <root>/classes.txt         optional, one name a line, the order is the class index (masks' 1..C); without
                               it, the sorted names found
    <root>/masks/<id>.png      optional, for some or all images (`src.data.folder`)
    <root>/boxes.csv           optional, `image,class,x0,y0,x1,y1` in pixels of the image as stored, 0-based,
                               x1 and y1 inclusive (the last column and row inside the box; x1 = W or y1 = H
                               are read as an exclusive end and clipped)

Splits come from `src.data.folder_splits`. This module knows files and names only: no tensors, no transforms.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.data.image_io import DatasetError
from src.data.pixels import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
LABELS_FILE, CLASSES_FILE, BOXES_FILE = "labels.csv", "classes.txt", "boxes.csv"


@dataclass
class FolderImages:
    """The images of a layout with their labels. `labels` [n, C] float32 0/1 in `ids` order; `sources` says where
    each image's labels were read (`labels.csv:7`, or its class folder); `splits` the `split` column's value
    per image (None without that column); `unlabelled` the images labels.csv has no row for (not used)."""

    root: Path
    class_names: tuple[str, ...]
    classes_from: str
    ids: list[str]
    images: list[Path]
    labels: np.ndarray
    sources: list[str]
    splits: list[str] | None = None
    unlabelled: list[Path] = field(default_factory=list)

    def index(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.ids)}


def scan_images(image_dir: Path) -> dict[str, Path]:
    """id → file of every image under `image_dir` (sorted by id); two files of one id are an error."""
    found: dict[str, Path] = {}
    for path in sorted(image_dir.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() or path.name.startswith("."):
            continue
        image_id = path.relative_to(image_dir).with_suffix("").as_posix()
        if image_id in found:
            raise DatasetError(f"{path}: duplicate image: {found[image_id]} has the same name without its extension; "
                               f"expected one image per name (masks/{image_id}.png must say which it belongs to)")
        found[image_id] = path
    if not found:
        raise DatasetError(f"{image_dir}: no images; expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return dict(sorted(found.items()))


def read_classes(path: Path) -> tuple[str, ...]:
    """classes.txt → class names in index order (blank lines skipped); a repeated or empty list is an error."""
    names, lines = [], {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in lines:
            raise DatasetError(f"{path}:{number}: class {name!r} is already on line {lines[name]}; expected each "
                               "class once")
        if ";" in name or "," in name:
            raise DatasetError(f"{path}:{number}: class {name!r} holds ';' or ','; expected names without them")
        names.append(name)
        lines[name] = number
    if not names:
        raise DatasetError(f"{path}: no class names; expected one name a line")
    return tuple(names)


def csv_rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """(line number, row) of each non-empty row of a headed CSV; the header must hold `required` columns (other
    columns, e.g. notes, are read and ignored)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        expected = ",".join(required) + "".join(f"[,{name}]" for name in optional)
        if not set(required) <= set(header) or len(set(header)) != len(header):
            raise DatasetError(f"{path}:1: header {','.join(header)!r}; expected {expected!r}")
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DatasetError(f"{path}:{reader.line_num}: {len(row)} fields for the {len(header)} columns "
                                   f"{expected!r} (separate class names with ';', not ',')")
            rows.append((reader.line_num, {name: cell.strip() for name, cell in zip(header, row)}))
    return rows


class ImageNames:
    """Resolves the `image` field of a CSV row: a path under images/ with its extension, or the id alone."""

    def __init__(self, found: dict[str, Path], image_dir: Path):
        self.found = found
        self.by_name = {path.relative_to(image_dir).as_posix(): image_id for image_id, path in found.items()}
        self.image_dir = image_dir

    def __call__(self, name: str, where: str) -> str:
        name = name.replace("\\", "/")
        name = name[len("images/"):] if name.startswith("images/") else name  # a path from the root also names it
        image_id = self.by_name.get(name) or (name if name in self.found else None)
        if image_id is None:
            raise DatasetError(f"{where}: image {name!r} not found under {self.image_dir}; expected a file name "
                               "as under images/ (e.g. 'cat/01.jpg', or '01.jpg' without subfolders)")
        return image_id


def class_index(name: str, classes: dict[str, int], where: str, classes_from: str) -> int:
    if name not in classes:
        raise DatasetError(f"{where}: unknown class {name!r}; expected one of {list(classes)} ({classes_from})")
    return classes[name]


def read_folder_images(root: Path) -> FolderImages:
    """Images and image labels of the layout at `root` (labels.csv, else class subfolders)."""
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: not found; expected the folder of the images (data=folder layout)")
    found = scan_images(image_dir)
    classes_path = root / CLASSES_FILE
    given = read_classes(classes_path) if classes_path.is_file() else None
    if (root / LABELS_FILE).is_file():
        return _from_labels_csv(root, found, given)
    return _from_class_folders(root, found, given)


def _class_list(given: tuple[str, ...] | None, found_names, root: Path, what: str) -> tuple[tuple[str, ...], str]:
    if given is not None:
        return given, str(root / CLASSES_FILE)
    names = tuple(sorted(set(found_names)))
    if not names:
        raise DatasetError(f"{root / LABELS_FILE}: no class name in any row; expected at least one class")
    log.info("data=folder: no %s; classes are the sorted names found in %s: %s", CLASSES_FILE, what, list(names))
    return names, f"the sorted names found in {what} (no {CLASSES_FILE})"


def _from_labels_csv(root: Path, found: dict[str, Path], given: tuple[str, ...] | None) -> FolderImages:
    path = root / LABELS_FILE
    rows = csv_rows(path, ("image", "labels"), ("split",))
    if not rows:
        raise DatasetError(f"{path}: no rows after the header; expected one row 'image,labels' per image")
    resolve = ImageNames(found, root / "images")
    seen: dict[str, int] = {}
    parsed = []
    for number, row in rows:
        where = f"{path}:{number}"
        image_id = resolve(row["image"], where)
        if image_id in seen:
            raise DatasetError(f"{where}: duplicate image {row['image']!r}, already on line {seen[image_id]}; "
                               "expected one row per image")
        seen[image_id] = number
        names = [name.strip() for name in row["labels"].split(";") if name.strip()]
        split = row.get("split")
        if split is not None and split not in SPLIT_NAMES:
            raise DatasetError(f"{where}: split {split!r}; expected one of {list(SPLIT_NAMES)}")
        parsed.append((image_id, names, split, where))
    class_names, classes_from = _class_list(given, [n for _, names, _, _ in parsed for n in names], root, path.name)
    classes = {name: c for c, name in enumerate(class_names)}
    labels = np.zeros((len(parsed), len(class_names)), dtype=np.float32)
    for row, (_, names, _, where) in enumerate(parsed):
        for name in names:
            labels[row, class_index(name, classes, where, classes_from)] = 1
    unlabelled = [p for image_id, p in found.items() if image_id not in seen]
    if unlabelled:
        log.warning("data=folder: %d images under %s have no row in %s and are not used, e.g. %s", len(unlabelled),
                    root / "images", path, unlabelled[0])
    ids = [image_id for image_id, *_ in parsed]
    has_split = "split" in rows[0][1]
    return FolderImages(root, class_names, classes_from, ids, [found[i] for i in ids], labels,
                        [where for *_, where in parsed], [s for _, _, s, _ in parsed] if has_split else None,
                        unlabelled)


def _from_class_folders(root: Path, found: dict[str, Path], given: tuple[str, ...] | None) -> FolderImages:
    image_dir = root / "images"
    loose = [path for image_id, path in found.items() if "/" not in image_id]
    if loose:
        raise DatasetError(f"{loose[0]}: an image directly under images/ and no {root / LABELS_FILE}; expected "
                           f"labels.csv ('image,labels'), or one subfolder of images/ per class")
    folder_of = {image_id: image_id.split("/", 1)[0] for image_id in found}
    class_names, classes_from = _class_list(given, folder_of.values(), root, "the class folders of images/")
    classes = {name: c for c, name in enumerate(class_names)}
    labels = np.zeros((len(found), len(class_names)), dtype=np.float32)
    sources = []
    for row, (image_id, folder) in enumerate(folder_of.items()):
        where = str(image_dir / folder)
        labels[row, class_index(folder, classes, where, classes_from)] = 1
        sources.append(where)
    return FolderImages(root, class_names, classes_from, list(found), list(found.values()), labels, sources)


def read_boxes(root: Path, images: FolderImages, sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """boxes.csv → id → float32 [N, 4] (x0, y0, x1, y1; inclusive pixels); {} without the file. `sizes` gives
    each id's (H, W): a box must lie inside its image and be of one of the image's classes."""
    path = root / BOXES_FILE
    if not path.is_file():
        return {}
    resolve = ImageNames({i: p for i, p in zip(images.ids, images.images)}, root / "images")
    classes = {name: c for c, name in enumerate(images.class_names)}
    index = images.index()
    boxes: dict[str, list[list[float]]] = {}
    for number, row in csv_rows(path, ("image", "class", "x0", "y0", "x1", "y1")):
        where = f"{path}:{number}"
        image_id = resolve(row["image"], where)
        c = class_index(row["class"], classes, where, images.classes_from)
        if not images.labels[index[image_id], c]:
            raise DatasetError(f"{where}: a box of class {row['class']!r} on {row['image']!r}, whose labels "
                               f"({images.sources[index[image_id]]}) do not hold that class; expected one of its "
                               "classes")
        try:
            x0, y0, x1, y1 = (float(row[key]) for key in ("x0", "y0", "x1", "y1"))
        except ValueError:
            raise DatasetError(f"{where}: box {[row[k] for k in ('x0', 'y0', 'x1', 'y1')]}; expected numbers") from None
        height, width = sizes[image_id]
        if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
            raise DatasetError(f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not inside the {height}x{width} "
                               "(HxW) image; expected 0 <= x0 <= x1 < W and 0 <= y0 <= y1 < H (inclusive pixels)")
        # x1 = W (or y1 = H) can only be an exclusive end: the box reaches the border
        boxes.setdefault(image_id, []).append([x0, y0, min(x1, width - 1), min(y1, height - 1)])
    return {image_id: np.asarray(b, dtype=np.float32) for image_id, b in boxes.items()}


def layout_digest(root: str | Path) -> str:
    """sha1 over what decides a classifier trained on the folder, beyond the config: the bytes of labels.csv,
    classes.txt and splits/*.txt, and every image's path and size. The classifier cache key holds it, so editing
    the labels or the splits in place (same `data.root`) trains a new classifier instead of reusing the old one.
    Masks and boxes are left out: they change scores, not the classifier. An image rewritten in place with the
    same byte size is not seen (hashing every image's bytes would read the whole dataset at each job start)."""
    root = Path(root)
    digest = hashlib.sha1()
    for name in (LABELS_FILE, CLASSES_FILE, *sorted(p.relative_to(root).as_posix() for p in root.glob("splits/*.txt"))):
        path = root / name
        digest.update(f"{name}\0".encode() + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    for image_id, path in scan_images(root / "images").items():
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]
