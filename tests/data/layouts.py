"""Tiny copies of the real dataset layouts under a temporary folder, in the real file formats.

Each builder returns a `Layout`: the root to pass as `data.root`, the split ids, and the truth written
(labels per id, masks per id) for tests to compare against.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 32, 40


@dataclass
class Layout:
    root: Path
    splits: dict[str, list[str]]
    labels: dict[str, set[int]]  # id → class indices (0-based)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # id → mask as written (eval splits)


def voc_palette() -> list[int]:
    """The 256-colour VOC palette (bits of the index spread over R, G, B from the top bit down)."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        palette += rgb
    return palette


def write_jpeg(path: Path, seed: int, height: int = HEIGHT, width: int = WIDTH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_png_rgb(path: Path, seed: int, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def write_palette_png(path: Path, mask: np.ndarray, palette: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette)
    image.save(path)


def class_mask(classes: list[int], value_of, background: int, height: int = HEIGHT, width: int = WIDTH,
               ignore: int | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A mask with one vertical band per class (value `value_of(c)`), an optional ignore top row, and the
    bands' boxes (x0, y0, x1, y1 inclusive)."""
    mask = np.full((height, width), background, dtype=np.uint8)
    boxes = []
    band = width // (len(classes) + 1)
    for k, c in enumerate(classes):
        x0, x1 = k * band + 2, k * band + band
        mask[4:height - 2, x0:x1] = value_of(c)
        boxes.append((x0, 4, x1 - 1, height - 3))
    if ignore is not None:
        mask[0] = ignore
    return mask, boxes


# ----------------------------------------------------------------------------------------------- VOC 2012
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")
VOC_IMAGES = {  # id → classes; the 2007_/2008_ ones are VOC train/val, the 2009_ ones SBD-only (train_aug)
    "2007_000032": [0, 14], "2007_000039": [19], "2007_000063": [8, 11], "2007_000068": [2],
    "2007_000121": [6], "2007_000123": [18], "2007_000129": [1, 14],
    "2008_000002": [12], "2008_000003": [14, 17], "2008_000007": [4],
    "2009_000001": [3], "2009_000002": [5, 14], "2009_000004": [7], "2009_000005": [9, 10],
    "2009_000006": [13], "2009_000007": [15, 16],
}
VOC_SPLITS = {
    "train": ["2007_000032", "2007_000039", "2007_000063", "2007_000068", "2007_000121"],
    "val": ["2007_000123", "2007_000129", "2008_000002"],
}
VOC_SPLITS["train_aug"] = VOC_SPLITS["train"] + ["2008_000003", "2008_000007", "2009_000001", "2009_000002",
                                                 "2009_000004", "2009_000005", "2009_000006", "2009_000007"]


def voc_xml(image_id: str, classes: list[int], boxes, height: int = HEIGHT, width: int = WIDTH) -> str:
    objects = "".join(
        f"<object><name>{VOC_NAMES[c]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
        f"<ymin>{y0 + 1}</ymin><xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>"
        for c, (x0, y0, x1, y1) in zip(classes, boxes))
    return (f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


# Non-square images of several sizes (H, W), given in turn to the images of `make_voc(..., varied_sizes=True)`.
VOC_VARIED_SIZES = ((32, 40), (44, 30), (36, 52), (30, 30), (40, 34))


def make_voc(base: Path, train_aug_name: str = "train_aug.txt", deeplab_lines: bool = False,
             varied_sizes: bool = False) -> Layout:
    """VOCdevkit/VOC2012 with JPEGs, palette masks (SegmentationClass for VOC train/val ids,
    SegmentationClassAug for all train_aug ids), XML annotations and the split lists. Images are HEIGHT×WIDTH,
    or with `varied_sizes` of the sizes of VOC_VARIED_SIZES in turn (as real VOC images differ)."""
    root = base / "VOCdevkit" / "VOC2012"
    palette = voc_palette()
    layout = Layout(root, {k: list(v) for k, v in VOC_SPLITS.items()}, {})
    voc_ids = set(VOC_SPLITS["train"]) | set(VOC_SPLITS["val"])
    for n, (image_id, classes) in enumerate(VOC_IMAGES.items()):
        height, width = VOC_VARIED_SIZES[n % len(VOC_VARIED_SIZES)] if varied_sizes else (HEIGHT, WIDTH)
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", seed=n, height=height, width=width)
        mask, boxes = class_mask(classes, lambda c: c + 1, background=0, height=height, width=width, ignore=255)
        layout.labels[image_id] = set(classes)
        layout.masks[image_id] = mask
        write_palette_png(root / "SegmentationClassAug" / f"{image_id}.png", mask, palette)
        if image_id in voc_ids:
            write_palette_png(root / "SegmentationClass" / f"{image_id}.png", mask, palette)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, classes, boxes, height, width))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, ids in VOC_SPLITS.items():
        name = train_aug_name if split == "train_aug" else f"{split}.txt"
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" if deeplab_lines else i for i in ids]
        (lists / name).write_text("\n".join(lines) + "\n")
    return layout


# ----------------------------------------------------------------------------------------------- BCSS-WSSS
BCSS_PALETTE = [255, 0, 0, 0, 255, 0, 0, 0, 255, 153, 0, 255, 255, 255, 255] + [0] * (3 * 251)
BCSS_TRAIN = {  # label digits TUM, STR, LYM, NEC
    "TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500+0": "1101",
    "TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500+1": "0100",
    "TCGA-A2-A0CM-DX1_xmin18562_ymin56852_MPP-0.2500+0": "0010",
    "TCGA-A2-A0CM-DX1_xmin18562_ymin56852_MPP-0.2500+1": "1001",
    "TCGA-AR-A1AQ-DX1_xmin18171_ymin38296_MPP-0.2500+0": "0110",
    "TCGA-AR-A1AQ-DX1_xmin18171_ymin38296_MPP-0.2500+1": "1000",
}
BCSS_EVAL = {  # split → {stem: tissues present in the mask}
    "val": {"TCGA-EW-A1PB-DX1_xmin57214_ymin25940_MPP-0.2500+0": [0, 1],
            "TCGA-EW-A1PB-DX1_xmin57214_ymin25940_MPP-0.2500+1": [2],
            "TCGA-E2-A1B5-DX1_xmin53654_ymin23904_MPP-0.2500+0": [1, 3]},
    "test": {"TCGA-D8-A27F-DX1_xmin98787_ymin6725_MPP-0.2500+0": [0, 2, 3],
             "TCGA-D8-A27F-DX1_xmin98787_ymin6725_MPP-0.2500+1": [1]},
}
BCSS_SIZE = 32


def make_bcss(base: Path, train_dir: str = "train", val_dir: str = "val") -> Layout:
    """BCSS-WSSS with labelled training patches and val/test img + palette masks (4 = background)."""
    root = base / "BCSS-WSSS"
    layout = Layout(root, {"train": sorted(BCSS_TRAIN)}, {})
    for n, (stem, digits) in enumerate(BCSS_TRAIN.items()):
        write_png_rgb(root / train_dir / f"{stem}[{digits}].png", n, BCSS_SIZE, BCSS_SIZE)
        layout.labels[f"{stem}[{digits}]"] = {k for k, d in enumerate(digits) if d == "1"}
    layout.splits["train"] = sorted(f"{s}[{d}]" for s, d in BCSS_TRAIN.items())
    for split, images in BCSS_EVAL.items():
        folder = root / (val_dir if split == "val" else split)
        layout.splits[split] = sorted(images)
        for n, (stem, tissues) in enumerate(images.items()):
            write_png_rgb(folder / "img" / f"{stem}.png", 100 + n, BCSS_SIZE, BCSS_SIZE)
            mask, _ = class_mask(tissues, lambda c: c, background=4, height=BCSS_SIZE, width=BCSS_SIZE)
            write_palette_png(folder / "mask" / f"{stem}.png", mask, BCSS_PALETTE)
            layout.labels[stem], layout.masks[stem] = set(tissues), mask
    return layout


# ----------------------------------------------------------------------------------------------- OpenImages
OI_FOLDERS = ("01226z", "0bt_c3", "0by6g")  # label 0, 1, 2
OI_SIZE = 48
OI_IMAGES = {  # split → [(image id, label, instance count)]
    "train": [("a0000001", 0, 1), ("a0000002", 0, 1), ("a0000003", 1, 1), ("a0000004", 1, 1),
              ("a0000005", 2, 1), ("a0000006", 2, 1), ("a0000007", 0, 1)],
    "val": [("b0000001", 0, 2), ("b0000002", 1, 1), ("b0000003", 2, 1)],
    "test": [("c0000001", 0, 1), ("c0000002", 1, 2), ("c0000003", 2, 1), ("c0000004", 2, 1)],
}


def oi_instance(seed: int, k: int) -> np.ndarray:
    """bool [S, S]: one rectangle, placed by (seed, k)."""
    rng = np.random.default_rng(1000 * seed + k)
    y0, x0 = rng.integers(2, OI_SIZE // 2, 2)
    mask = np.zeros((OI_SIZE, OI_SIZE), dtype=bool)
    mask[y0: y0 + OI_SIZE // 3, x0: x0 + OI_SIZE // 4] = True
    return mask


def make_openimages(base: Path) -> Layout:
    """metadata/OpenImages/{split}/… and dataset/OpenImages/{split}/<folder>/<id>.jpg + masks (grayscale
    0/255 PNGs; the ignore mask a band on the left, half under the first instance); ids are the paths.
    `masks[id]` is the expected wsolevaluation mask (0 / 1 / 255) at OI_SIZE."""
    root = base / "openimages"
    layout = Layout(root, {}, {})
    for split, images in OI_IMAGES.items():
        meta = root / "metadata" / "OpenImages" / split
        meta.mkdir(parents=True, exist_ok=True)
        ids, labels, localization = [], [], []
        for n, (image_id, label, count) in enumerate(images):
            path = f"{split}/{OI_FOLDERS[label]}/{image_id}.jpg"
            ids.append(path)
            labels.append(f"{path},{label}")
            layout.labels[path] = {label}
            write_jpeg(root / "dataset" / "OpenImages" / path, seed=n, height=OI_SIZE, width=OI_SIZE)
            if split == "train":
                continue
            instances = [oi_instance(n, k) for k in range(count)]
            ignore = np.zeros((OI_SIZE, OI_SIZE), dtype=bool)
            ignore[:, :12] = True
            stem = path[:-4]
            for k, instance in enumerate(instances):
                mask_path = f"{stem}_m{OI_FOLDERS[label]}_{k:08x}.png"
                Image.fromarray(instance.astype(np.uint8) * 255, mode="L").save(
                    root / "dataset" / "OpenImages" / mask_path)
                localization.append(f"{path},{mask_path},{stem + '_ignore.png' if k == 0 else ''}")
            Image.fromarray(ignore.astype(np.uint8) * 255, mode="L").save(
                root / "dataset" / "OpenImages" / f"{stem}_ignore.png")
            foreground = np.any(instances, axis=0)
            layout.masks[path] = np.where(foreground, 1, np.where(ignore, 255, 0)).astype(np.uint8)
        layout.splits[split] = ids
        (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
        (meta / "class_labels.txt").write_text("\n".join(labels) + "\n")
        if localization:
            (meta / "localization.txt").write_text("\n".join(localization) + "\n")
    return layout
