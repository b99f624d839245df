"""Write a small dataset in the `data=folder` layout, drawn from the synthetic shapes world: what the tests and
the README walkthrough ("Your own data") run on.

    python scripts/make_folder_example.py /tmp/shapes_folder [--images 120] [--size 64] [--seed 0]

It writes images/ in mixed formats (RGB PNG, JPEG, 8-bit grayscale PNG, 16-bit grayscale TIFF, BMP, in turn),
labels.csv (`image,labels,split`: 60 % train, 20 % val, 20 % test, every class in each split where it can be:
the seeded split `data=folder` makes without a split column), classes.txt, masks/<id>.png (palette PNGs,
0 background, 1..8 the shapes, 255 the objects' outlines) for every other image only, and boxes.csv for the
evaluation images whose index is not a multiple of 3 (so some have masks, some boxes, some both, some neither).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `src` when run as a script

from src.data.folder_splits import stratified_split  # noqa: E402
from src.data.palettes import voc_palette  # noqa: E402
from src.data.synthetic_shapes import SHAPE_NAMES, render_image  # noqa: E402

FORMATS = ("png", "jpg", "gray.png", "gray16.tif", "bmp")
SEED_OFFSET = 5_000_000  # images unlike the synthetic dataset's own splits
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def save_image(pixels: np.ndarray, base: Path, kind: str) -> Path:
    """uint8 [S, S, 3] → `base` + the format's suffix, in that format."""
    gray = np.round(pixels.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    if kind == "gray.png":
        image, path = Image.fromarray(gray, mode="L"), base.with_suffix(".png")
    elif kind == "gray16.tif":  # the full 16-bit range: the reader's v // 256 gives `gray` back
        image, path = Image.fromarray(gray.astype(np.uint16) * 257), base.with_suffix(".tif")
    else:
        image, path = Image.fromarray(pixels), base.with_suffix(f".{kind}")
    image.save(path, **({"quality": 95} if kind == "jpg" else {}))
    return path


def class_boxes(mask: np.ndarray, classes: list[int]) -> list[tuple[int, int, int, int, int]]:
    """(class, x0, y0, x1, y1) inclusive for each class's pixels in the mask (values c + 1)."""
    boxes = []
    for c in classes:
        ys, xs = np.nonzero(mask == c + 1)
        if len(xs):
            boxes.append((c, int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    return boxes


def make_folder_example(root: str | Path, images: int = 120, size: int = 64, seed: int = 0) -> dict:
    """Write the layout under `root`; returns counts: images per split, masks, boxed images, boxes."""
    root = Path(root)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SHAPE_NAMES) + "\n")
    palette = voc_palette()
    label_rows, box_rows = ["image,labels,split"], ["image,class,x0,y0,x1,y1"]
    counts = {"train": 0, "val": 0, "test": 0, "masks": 0, "boxed_images": 0, "boxes": 0}
    drawn = [render_image(seed * 7919 + SEED_OFFSET + index, size) for index in range(images)]
    members = stratified_split(np.stack([labels for _, _, labels, _ in drawn]), FRACTIONS, seed)
    split_of = {i: name for name, indices in members.items() for i in indices}
    for index, (pixels, mask, labels, _) in enumerate(drawn):
        stem = f"img_{index:04d}"
        path = save_image(pixels, root / "images" / stem, FORMATS[index % len(FORMATS)])
        classes = [int(c) for c in np.flatnonzero(labels)]
        split = split_of[index]
        counts[split] += 1
        label_rows.append(f"{path.name},{';'.join(SHAPE_NAMES[c] for c in classes)},{split}")
        if index % 2 == 0:
            image = Image.fromarray(mask, mode="P")
            image.putpalette(palette)
            image.save(root / "masks" / f"{stem}.png")
            counts["masks"] += 1
        if split != "train" and index % 3 != 0:
            boxes = class_boxes(mask, classes)
            box_rows += [f"{path.name},{SHAPE_NAMES[c]},{x0},{y0},{x1},{y1}" for c, x0, y0, x1, y1 in boxes]
            counts["boxed_images"] += 1
            counts["boxes"] += len(boxes)
    (root / "labels.csv").write_text("\n".join(label_rows) + "\n")
    (root / "boxes.csv").write_text("\n".join(box_rows) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the folder to write (created)")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_folder_example(args.root, args.images, args.size, args.seed)
    print(f"wrote {args.images} images to {args.root}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
