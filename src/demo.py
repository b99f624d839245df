"""The seed-grid demo: `python -m src.demo sweep=<sweep dir> cams=[broadcam,gradcam] proportions=[1,2,5]
images=<file or folder>` (config `conf/demo.yaml`).

Loads each (CAM method, proportion) job of a finished sweep (its cached classifier and BLS, `src.jobs.artifacts`)
and writes one PNG per image and class: rows = CAM methods, columns = proportions, each tile the class's seed
map (divided by its max, as scored) over the image; the image (and its mask when one is found) come first.
Without `images=` it takes the first `num_images` images of the evaluation split and their ground-truth
classes; user images (any size) are resized to the data's evaluation size and get the classes the classifier
of the largest proportion scores above 0.5 (at least its top class). A sweep lacking a requested method or
proportion fails with a one-line message (exit 2).

The grid's size is exact: `grid_size(rows, columns, tile)` = label band + columns × tile wide, title and
header bands + rows × tile high.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFont

from src.data.image_io import DatasetError, read_index_png, read_rgb
from src.data.transforms import EvalTransform
from src.evaluation.export import IMAGE_EXTENSIONS, seed_file_stem
from src.jobs.artifacts import JobArtifacts, load_job
from src.reporting.overlay import denormalize, overlay
from src.reporting.results import find_jobs
from src.store.atomic import atomic_path
from src.store.keyed import safe_dirname

log = logging.getLogger(__name__)

LABEL_WIDTH = 96  # px: the band of method names left of the tiles
TITLE_HEIGHT = 24  # px: the class name above everything
HEADER_HEIGHT = 20  # px: the column labels ("image", "mask", "5 %")
FONT_SIZE = 12


class DemoError(ValueError):
    """Bad demo input: the message names the key and what was expected."""


@dataclass
class DemoImage:
    name: str  # file-name stem of its grids
    image: torch.Tensor  # [3, S, S] ImageNet-normalised
    classes: list[int]  # the classes to draw, one grid each
    mask: torch.Tensor | None = None  # [S, S] class indices


def grid_size(rows: int, columns: int, tile: int) -> tuple[int, int]:
    """(width, height) in px of a grid of rows × columns tiles of tile × tile px with its label bands."""
    return LABEL_WIDTH + columns * tile, TITLE_HEIGHT + HEADER_HEIGHT + rows * tile


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def select_jobs(sweep: Path, cams: Sequence[str], proportions: Sequence[float], seed: int | None) -> dict:
    """{(cam, proportion): results.json path} of the sweep, or DemoError naming what is missing or ambiguous."""
    if not sweep.is_dir():
        raise DemoError(f"sweep={str(sweep)!r} is not a directory; expected a finished sweep dir "
                        "(e.g. outputs/broadcam/multiruns/synthetic_demo from `make sweep-demo`)")
    try:
        finished = find_jobs([sweep])
    except ValueError as error:  # a results.json that breaks the contract
        raise DemoError(str(error)) from None
    found: dict[tuple[str, float], list[tuple[Path, int]]] = {}
    for path, results in finished:
        if seed is None or int(results["seed"]) == int(seed):
            found.setdefault((results["cam"], float(results["proportion"])), []).append((path, int(results["seed"])))
    if not found:
        raise DemoError(f"sweep={str(sweep)!r} has no finished job (results.json)"
                        + ("" if seed is None else f" of seed={seed}") + "; expected a finished sweep dir")
    missing = [f"cam={cam} proportion={p:g}" for cam in cams for p in proportions if (cam, p) not in found]
    if missing:
        have_cams = sorted({cam for cam, _ in found})
        have_proportions = [f"{p:g}" for p in sorted({p for _, p in found})]
        raise DemoError(f"sweep {sweep} has no job for {', '.join(missing)}; it has cams {have_cams} and "
                        f"proportions [{', '.join(have_proportions)}]")
    jobs = {}
    for cam in cams:
        for p in proportions:
            matches = found[(cam, p)]
            if len(matches) > 1:
                raise DemoError(f"sweep {sweep} has {len(matches)} jobs for cam={cam} proportion={p:g} (seeds "
                                f"{sorted(s for _, s in matches)}); expected one: pick it with seed=<n>")
            jobs[(cam, p)] = matches[0][0]
    return jobs


def evaluation_images(job: JobArtifacts, count: int) -> list[DemoImage]:
    """The first `count` images of the job's evaluation split, with their classes and masks."""
    dataset = job.datamodule.eval_set
    images = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        classes = torch.nonzero(sample["labels"] > 0).flatten().tolist()
        images.append(DemoImage(seed_file_stem(sample["id"]), sample["image"], classes, sample.get("mask")))
    return images


def image_files(path: Path) -> list[Path]:
    """An image file, or the image files of a folder (sorted), else DemoError naming `images`."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            return files
        raise DemoError(f"images={str(path)!r} holds no image; expected files ending in {list(IMAGE_EXTENSIONS)}")
    raise DemoError(f"images={str(path)!r} does not exist; expected an image file or a folder of images")


def find_mask(image_path: Path, mask_dirs: Sequence[str]) -> Path | None:
    """A mask beside a dataset's image: `<dir>/../<mask dir>/<stem>.png` for the dataset's `mask_dirs`."""
    for folder in mask_dirs:
        candidate = image_path.parent.parent / folder / f"{image_path.stem}.png"
        if candidate.is_file() and candidate != image_path:
            return candidate
    return None


def user_images(path: Path, job: JobArtifacts) -> list[DemoImage]:
    """User images resized to the data's evaluation size; classes: the job's classifier's probabilities
    above 0.5, at least its top class; masks where a dataset layout puts them."""
    transform = EvalTransform(job.datamodule.image_size)
    device = next(job.net.parameters()).device
    images = []
    for file in image_files(path):
        image = transform.image(read_rgb(file))
        with torch.no_grad():
            probabilities = torch.sigmoid(job.net(image[None].to(device)))[0].cpu()
        classes = torch.nonzero(probabilities > 0.5).flatten().tolist() or [int(probabilities.argmax())]
        mask_path, mask = find_mask(file, job.datamodule.mask_dirs), None
        if mask_path is not None:
            try:
                mask = transform.mask(torch.from_numpy(read_index_png(mask_path)))
            except DatasetError as error:
                log.info(f"note: mask not shown: {error}")
        images.append(DemoImage(file.stem, image, classes, mask))
    return images


def seed_tiles(job: JobArtifacts, images: list[DemoImage], num_classes: int, tile: int,
               batch_size: int) -> list[list[Image.Image]]:
    """Per image, one overlay tile per class of `DemoImage.classes`: the seed map (jet) over the image."""
    tiles = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        labels = torch.zeros(len(chunk), num_classes)
        for row, item in enumerate(chunk):
            labels[row, item.classes] = 1
        maps = job.seed_maps(torch.stack([item.image for item in chunk]), labels).cpu()  # [b, C, S, S]
        for item, image_maps in zip(chunk, maps):
            tiles.append([overlay_tile(item.image, image_maps[c], tile) for c in item.classes])
    return tiles


def image_tile(image: torch.Tensor, tile: int) -> Image.Image:
    pixels = (denormalize(image).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(pixels).resize((tile, tile), Image.BILINEAR)


def overlay_tile(image: torch.Tensor, seed_map: torch.Tensor, tile: int) -> Image.Image:
    """image [3, S, S] normalised, seed_map [S, S] in [0, 1] → tile × tile RGB overlay."""
    return Image.fromarray(overlay(image, seed_map)).resize((tile, tile), Image.BILINEAR)


def mask_tile(mask: torch.Tensor, palette: Sequence[int], tile: int) -> Image.Image:
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return Image.fromarray(colours[mask.clamp(0, 255).numpy()]).resize((tile, tile), Image.NEAREST)


def compose_grid(lead: list[Image.Image], rows: list[list[Image.Image]], row_labels: Sequence[str],
                 column_labels: Sequence[str], title: str, tile: int) -> Image.Image:
    """`lead` tiles (image, mask) first on the first row, then `rows` (one per method, one tile per column);
    labels drawn in fixed bands, so the size is exactly `grid_size(len(rows), len(lead) + columns, tile)`."""
    columns = len(lead) + len(rows[0])
    canvas = Image.new("RGB", grid_size(len(rows), columns, tile), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=FONT_SIZE)
    top = TITLE_HEIGHT + HEADER_HEIGHT
    _centred_text(draw, title, font, (0, 0, canvas.width, TITLE_HEIGHT))
    for column, label in enumerate(column_labels):
        left = LABEL_WIDTH + column * tile
        _centred_text(draw, label, font, (left, TITLE_HEIGHT, left + tile, top))
    for column, image in enumerate(lead):
        canvas.paste(_framed(image, tile), (LABEL_WIDTH + column * tile, top))
    for row, (label, tiles) in enumerate(zip(row_labels, rows)):
        _centred_text(draw, label, font, (0, top + row * tile, LABEL_WIDTH, top + (row + 1) * tile))
        for column, image in enumerate(tiles, start=len(lead)):
            canvas.paste(_framed(image, tile), (LABEL_WIDTH + column * tile, top + row * tile))
    return canvas


def _framed(image: Image.Image, tile: int) -> Image.Image:
    """The tile shrunk by a 1-px white frame, so neighbouring tiles stay apart."""
    framed = Image.new("RGB", (tile, tile), "white")
    framed.paste(image.resize((tile - 2, tile - 2), Image.BILINEAR), (1, 1))
    return framed


def _centred_text(draw: ImageDraw.ImageDraw, text: str, font, box: tuple[int, int, int, int]) -> None:
    """`text` centred in `box` (left, top, right, bottom), cut with "…" where it is wider."""
    width = box[2] - box[0] - 4
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, fill="black", font=font, anchor="mm")


def demo_device(name: str) -> torch.device:
    """`auto` (cuda when available), `cpu`, `cuda` or `cuda:<n>`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    usable = device is not None and (device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available()))
    if not usable:
        raise DemoError(f"device={name!r}; expected auto, cpu or cuda (with a GPU available)")
    return device


def run_demo(cfg: DictConfig) -> list[Path]:
    """Write the grids of `cfg` (see conf/demo.yaml); returns the files written."""
    if OmegaConf.is_missing(cfg, "sweep") or not cfg.sweep:
        raise DemoError("sweep is not set; expected sweep=<a finished sweep dir>, e.g. "
                        "sweep=outputs/broadcam/multiruns/synthetic_demo")
    cams = [str(c) for c in as_list(cfg.cams)]
    try:
        proportions = [float(p) for p in as_list(cfg.proportions)]
    except (TypeError, ValueError):
        raise DemoError(f"proportions={cfg.proportions!r}; expected a list of numbers, e.g. [1,2,5]") from None
    if not cams or not proportions:
        raise DemoError(f"cams={cams} proportions={proportions}; expected at least one of each")
    tile = int(cfg.tile)
    if tile < 16:
        raise DemoError(f"tile={tile}; expected at least 16 px")
    device = demo_device(str(cfg.device))
    sweep = Path(cfg.sweep)
    jobs = select_jobs(sweep, cams, proportions, cfg.seed)
    reference_key = (cams[0], max(proportions))  # the best-trained classifier picks user images' classes
    reference = _load(jobs[reference_key], device, with_data=True)
    datamodule = reference.datamodule
    images = (user_images(Path(cfg.images), reference) if cfg.images else
              evaluation_images(reference, int(cfg.num_images)))
    tiles = {}  # (cam, proportion) → per image, per class
    for key, path in jobs.items():
        job = reference if key == reference_key else _load(path, device, with_data=False)  # one net at a time
        tiles[key] = seed_tiles(job, images, datamodule.num_classes, tile, datamodule.eval_batch_size)
    out = Path(cfg.out) if cfg.out else sweep / "demo"
    out.mkdir(parents=True, exist_ok=True)
    palette = datamodule.palette()
    written = []
    for index, item in enumerate(images):
        lead = [image_tile(item.image, tile)] + ([mask_tile(item.mask, palette, tile)] if item.mask is not None else [])
        labels = ["image", "mask"][:len(lead)] + [f"{p:g} %" for p in proportions]
        for position, c in enumerate(item.classes):
            rows = [[tiles[(cam, p)][index][position] for p in proportions] for cam in cams]
            name = datamodule.class_names[c]
            grid = compose_grid(lead, rows, cams, labels, f"{name} ({item.name})", tile)
            path = out / f"{item.name}__{safe_dirname(name)}.png"
            with atomic_path(path) as tmp:
                grid.save(tmp)
            written.append(path)
    return written


def _load(path: Path, device: torch.device, with_data: bool) -> JobArtifacts:
    try:
        return load_job(path, device=device, with_data=with_data)
    except (KeyError, FileNotFoundError) as error:
        raise DemoError(error.args[0] if error.args else repr(error)) from None


@hydra.main(version_base="1.3", config_path="../conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    try:
        written = run_demo(cfg)
    except (DemoError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(path)
    print(f"{len(written)} grid(s) written to {written[0].parent if written else cfg.out}")


if __name__ == "__main__":
    main()
