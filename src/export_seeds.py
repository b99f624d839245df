"""CAM seeds of a whole split on disk, in the files downstream WSSS pipelines (IRN, PuzzleCAM, AMN…) read.

For every image of the split, under `out_dir`:
- `npy/<stem>.npy`: `np.save` of a dict (load with `np.load(path, allow_pickle=True).item()`), IRN's layout:
  `keys` int64 [K] the image's classes (0-based foreground indices, ascending), `high_res` float16 [K, H, W]
  the raw class maps at the image's original size H×W, each divided by its max, and `cam` float16
  [K, ⌈H/4⌉, ⌈W/4⌉] the same at IRN's stride-4 size;
- `png/<stem>.png`: the seed mask at H×W as a palette PNG, by the dataset's seed rule: with a background plane
  (VOC, synthetic, OpenImages) `argmax([threshold, high_res…])`, 0 = background, class c → c + 1; without
  one (BCSS) the argmax over the image's classes, class c → c.

`<stem>` is the image id with `/` replaced by `__` and an image extension dropped (OpenImages ids are paths).
Maps are made at the evaluation size (with the CAM config's scales and flip) and resized bilinearly to the
original size, read from the image file's header; in-memory datasets (synthetic) are evaluated at their
own size. Images are streamed one batch at a time and each file is written atomically, so a killed export
resumes: an image whose two files both exist is skipped.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from src.cams import create_cam
from src.data import ProportionDataModule
from src.data.collate import collate_samples
from src.data.image_io import image_hw
from src.evaluation import gt_targets

EXPORT_SPLITS = ("train", "val", "test", "all")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STRIDE = 4  # IRN's `cam` is at the backbone's stride-4 size
# BCSS-WSSS's mask colours (as its released masks): TUM red, STR green, LYM blue, NEC purple, background white
BCSS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (153, 0, 255), (255, 255, 255))


def seed_file_stem(image_id: str) -> str:
    """An image id as a flat file stem: `val/0bt_c3/1cd9.jpg` → `val__0bt_c3__1cd9`. Only image extensions
    are dropped, since ids may hold other dots (BCSS: `…MPP-0.2500+0[1101]`)."""
    root, extension = os.path.splitext(image_id)
    stem = root if extension.lower() in IMAGE_EXTENSIONS else image_id
    return stem.replace("/", "__")


def voc_palette() -> list[int]:
    """PASCAL VOC's 256-colour palette (768 ints): the bits of the index spread over R, G, B from the top
    bit down; 0 black, 1 (128, 0, 0), …, 255 (224, 224, 192)."""
    palette = []
    for index in range(256):
        rgb, value = [0, 0, 0], index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
        palette.extend(rgb)
    return palette


def bcss_palette() -> list[int]:
    """BCSS-WSSS's palette (768 ints): `BCSS_COLOURS` for values 0–4 (4 = background), black after."""
    palette = [channel for colour in BCSS_COLOURS for channel in colour]
    return palette + [0] * (768 - len(palette))


def dataset_palette(dataset_name: str) -> list[int]:
    """The seed-mask palette of a dataset (`ProportionDataModule.name`): BCSS's own, VOC's for the others."""
    return bcss_palette() if dataset_name == "bcss_wsss" else voc_palette()


def split_names(datamodule: ProportionDataModule, split: str) -> list[str]:
    """`export.split` → the dataset's split names: `train` is its training split (VOC: train_aug), `all` the
    training and evaluation splits."""
    if split not in EXPORT_SPLITS:
        raise ValueError(f"export.split={split!r} is unknown; expected one of {list(EXPORT_SPLITS)}")
    if split == "all":
        return list(dict.fromkeys([datamodule.train_split, datamodule.eval_split]))
    return [datamodule.train_split if split == "train" else split]


class WithOriginalSize(Dataset):
    """An evaluation dataset whose samples also carry `original_hw` long [2]: the image file's (H, W) from
    its header, or the sample's own size for in-memory datasets (evaluated without resizing)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        files = getattr(dataset, "files", None)
        self.paths = getattr(files, "images", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        size = image_hw(self.paths[index]) if self.paths is not None else sample["image"].shape[-2:]
        return {**sample, "original_hw": torch.tensor(tuple(size), dtype=torch.long)}


def class_maps_at(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps [K, h, w] (≥ 0) → [K, *size] resized bilinearly, each divided by its max (+1e-5, as IRN)."""
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *size)
    resized = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return resized / (resized.flatten(1).amax(1)[:, None, None] + 1e-5)


def seed_mask(maps: torch.Tensor, keys: torch.Tensor, seed_background: bool, threshold: float | None,
              empty_value: int) -> torch.Tensor:
    """maps [K, H, W] in [0, 1] of classes `keys` [K] → uint8 [H, W] seed mask.

    With a background plane: `argmax([threshold, maps])` (a tie goes to background, as IRN), 0 = background,
    class c → c + 1. Without: class `keys[argmax(maps)]`. An image without classes is all background (0 with
    a plane, `empty_value` without)."""
    height, width = maps.shape[-2:]
    if seed_background:
        plane = torch.full((1, height, width), float(threshold), dtype=maps.dtype, device=maps.device)
        labels = torch.cat([keys.new_zeros(1), keys + 1])
        return labels[torch.cat([plane, maps]).argmax(0)].to(torch.uint8)
    if len(keys) == 0:
        return torch.full((height, width), empty_value, dtype=torch.uint8, device=maps.device)
    return keys[maps.argmax(0)].to(torch.uint8)


def _replace_atomically(path: Path, write) -> None:
    """`write(tmp_path)`, then rename: a killed export never leaves a half file that resuming would skip."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)


def write_seed_files(npy_path: Path, png_path: Path, keys: np.ndarray, cam: np.ndarray, high_res: np.ndarray,
                     mask: np.ndarray, palette: Sequence[int]) -> None:
    """One image's `.npy` dict (IRN layout) and palette `.png`, each written atomically."""
    def save_npy(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file handle: np.save would append ".npy" to a path
            np.save(handle, {"keys": keys, "cam": cam, "high_res": high_res})

    def save_png(tmp: Path) -> None:
        image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
        image.putpalette(list(palette))
        image.save(tmp, format="PNG")

    _replace_atomically(npy_path, save_npy)
    _replace_atomically(png_path, save_png)


@dataclass
class ExportCounts:
    written: int = 0
    skipped: int = 0


def export_seeds(net: nn.Module, cam_name: str, target_layers: Sequence[str], cam_kwargs: dict,
                 datamodule: ProportionDataModule, split: str, out_dir: str | Path, *, threshold: float | None = None,
                 seed_background: bool | None = None, ignore_index: int | None = None,
                 palette: Sequence[int] | None = None, device: torch.device | str | None = None,
                 batch_size: int | None = None, progress: bool = True) -> ExportCounts:
    """Write the seeds of every image of `split` (train | val | test | all) under `out_dir` (see the module
    docstring); returns and prints how many images were written and skipped (already exported).

    `cam_kwargs` are the CAM options (`scales`, `flip`, …) plus extras such as `bls=`; `threshold` is the
    background score of the seed rule (the evaluation's best), required when the dataset seeds with a
    background plane. `seed_background`, `ignore_index` (the mask value of an image without classes when
    there is no plane) and `palette` default to the datamodule's protocol. Runs on `device` (default: the
    net's), one batch of `batch_size` (default the datamodule's `eval_batch_size`) at a time; the net is
    moved back afterwards.
    """
    seed_background = datamodule.seed_background if seed_background is None else seed_background
    ignore_index = datamodule.ignore_index if ignore_index is None else ignore_index
    palette = dataset_palette(datamodule.name) if palette is None else palette
    if seed_background and (threshold is None or not 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"export.threshold={threshold!r}: {datamodule.name} seeds need a background threshold in "
                         "[0, 1] (the evaluation gives one only with the seed_mIoU metric); set export.threshold")
    out_dir = Path(out_dir)
    (out_dir / "npy").mkdir(parents=True, exist_ok=True)
    (out_dir / "png").mkdir(parents=True, exist_ok=True)
    home = next(net.parameters()).device
    device = torch.device(device) if device is not None else home
    counts = ExportCounts()
    net.to(device)
    cam = create_cam(cam_name, net, target_layers=list(target_layers), **{**cam_kwargs, "normalize": False})
    try:
        for name in split_names(datamodule, split):
            dataset = datamodule.build_dataset(name, train=False)
            todo = [i for i, image_id in enumerate(dataset.ids) if not _exported(out_dir, seed_file_stem(image_id))]
            counts.skipped += len(dataset) - len(todo)
            loader = DataLoader(Subset(WithOriginalSize(dataset), todo), collate_fn=collate_samples,
                                batch_size=batch_size or datamodule.eval_batch_size,
                                num_workers=datamodule.num_workers)
            with _progress_bar(progress) as bar:
                task = bar.add_task(f"seeds of {datamodule.name} {name}", total=len(todo))
                for batch in loader:
                    _export_batch(cam, batch, device, out_dir, seed_background, threshold, ignore_index, palette)
                    counts.written += len(batch["id"])
                    bar.advance(task, len(batch["id"]))
    finally:
        cam.remove()
        net.to(home)
    print(f"seeds: {counts.written} written, {counts.skipped} skipped (already exported) -> {out_dir}")
    return counts


def _exported(out_dir: Path, stem: str) -> bool:
    return (out_dir / "npy" / f"{stem}.npy").is_file() and (out_dir / "png" / f"{stem}.png").is_file()


def _progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled)


def _export_batch(cam, batch: dict, device: torch.device, out_dir: Path, seed_background: bool,
                  threshold: float | None, ignore_index: int, palette: Sequence[int]) -> None:
    """CAMs of one batch's image classes, then each image's files."""
    images, labels = batch["image"].to(device), batch["labels"].to(device)
    targets, valid = gt_targets(labels)
    with torch.enable_grad():  # gradient CAMs need autograd, whatever the caller's mode
        maps = cam(images, targets).detach()  # [B, K, h, w] raw, ≥ 0
    for i, image_id in enumerate(batch["id"]):
        keys = targets[i][valid[i]]
        height, width = (int(v) for v in batch["original_hw"][i])
        high_res = class_maps_at(maps[i][valid[i]], (height, width))
        strided = class_maps_at(maps[i][valid[i]], (math.ceil(height / STRIDE), math.ceil(width / STRIDE)))
        mask = seed_mask(high_res, keys, seed_background, threshold, ignore_index)
        stem = seed_file_stem(image_id)
        write_seed_files(out_dir / "npy" / f"{stem}.npy", out_dir / "png" / f"{stem}.png",
                         keys.cpu().numpy().astype(np.int64), strided.cpu().numpy().astype(np.float16),
                         high_res.cpu().numpy().astype(np.float16), mask.cpu().numpy(), palette)
