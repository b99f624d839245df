"""CAM seeds of a whole split on disk, in the files downstream WSSS pipelines (IRN, PuzzleCAM, AMN…) read as they
are; run by the job after its evaluation when `export.seeds=true` (`SeedExport`, built from `conf/export/`).

For every image of the split, under `out_dir`:
- `npy/<stem>.npy`: `np.save` of a dict (load with `np.load(path, allow_pickle=True).item()`) in the layout of
  `export.format` (`SEED_FORMATS`):
  - `irn` (default; IRN's `step/make_cam.py`, read by its `eval_cam.py`, `cam_to_ir_label.py` and
    `make_sem_seg_labels.py`): `keys` int64 [K] the image's classes (0-based foreground indices, ascending),
    `cam` a float32 torch tensor [K, ⌈H/4⌉, ⌈W/4⌉] (CPU) at IRN's stride-4 size, `high_res` float32 numpy
    [K, H, W] at the image's original size H×W; each map is the raw class map resized to that size, then
    divided by its max (+1e-5), as make_cam.py normalises both;
  - `puzzlecam` (PuzzleCAM's `inference_classification.py`, read by its `evaluate.py` and AffinityNet-style
    steps after it): `keys` int64 [K + 1] with the background first and the classes shifted by one
    (`[0, c1 + 1, …]`), `cam` as above, `hr_cam` the high-resolution maps (as `high_res`). Its `keys` differ
    from IRN's, so one file cannot serve both; it needs a background plane (not BCSS);
- `png/<stem>.png`: the seed mask at H×W in the dataset's palette, by the seed rule (`src.metrics.seed_rule`):
  with a background plane (VOC, synthetic, OpenImages) `argmax([threshold, high_res…])`, 0 = background,
  class c → c + 1; without one (BCSS) the argmax over the image's classes, class c → c.

`<stem>` is the image id with `/` replaced by `__` and an image extension dropped (OpenImages ids are paths).
Maps are made at the evaluation protocol's resolution (the datamodule's `eval_size`, with the CAM config's
scales and flip): where it is the stored size (VOC's original H×W, BCSS patches, synthetic) `high_res` is
exactly the float32 map the evaluation scored, never resized; OpenImages' 224×224 maps are resized bilinearly
to the original size. Images are streamed one batch at a time (the datamodule's `cam_batch_size`) and each
file is written atomically, so a killed export resumes: an image whose two files both exist is skipped, as long
as the export's `manifest.json` (`export_manifest.py`: config, classifier, threshold, protocol) is the job's own;
another manifest or `overwrite=true` rewrites the export.
"""
from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import Dataset, Subset

from src.cams import CamSpec
from src.data import ProportionDataModule
from src.evaluation.portable_npy import save_dict_npy
from src.evaluation.protocol import class_maps_at, gt_targets, seed_labels
from src.store.atomic import atomic_path
from src.store.export_manifest import prepare_export_dir

log = logging.getLogger(__name__)

EXPORT_SPLITS = ("train", "val", "test", "eval", "all")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STRIDE = 4  # IRN's `cam` is at the backbone's stride-4 size
SEED_FORMATS = ("irn", "puzzlecam")


def seed_file_stem(image_id: str) -> str:
    """An image id as a flat file stem: `val/0bt_c3/1cd9.jpg` → `val__0bt_c3__1cd9`. Only image extensions
    are dropped, since ids may hold other dots (BCSS: `…MPP-0.2500+0[1101]`)."""
    root, extension = os.path.splitext(image_id)
    stem = root if extension.lower() in IMAGE_EXTENSIONS else image_id
    return stem.replace("/", "__")


def split_names(datamodule: ProportionDataModule, split: str) -> list[str]:
    """`export.split` → the dataset's split names: `train` is its training split (VOC: train_aug), `eval` the
    job's evaluation split (VOC: train, the 1,464 images the seed mIoU scores), `all` both."""
    if split not in EXPORT_SPLITS:
        raise ValueError(f"export.split={split!r} is unknown; expected one of {list(EXPORT_SPLITS)}")
    if split == "all":
        return list(dict.fromkeys([datamodule.train_split, datamodule.eval_split]))
    named = {"train": datamodule.train_split, "eval": datamodule.eval_split}
    return [named.get(split, split)]


class WithOriginalSize(Dataset):
    """An evaluation dataset whose samples also carry `original_hw` long [2]: the dataset's `original_hw(i)`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        size = tuple(self.dataset.original_hw(index))
        return {**sample, "original_hw": torch.tensor(size, dtype=torch.long)}


def seed_record(keys: torch.Tensor, strided: torch.Tensor, high_res: torch.Tensor, seed_format: str) -> dict:
    """One image's `.npy` dict in `seed_format`'s layout (module docstring) from its classes `keys` [K] and its
    maps [K, ⌈H/4⌉, ⌈W/4⌉] and [K, H, W] in [0, 1]."""
    cam = strided.detach().to("cpu", torch.float32).contiguous()  # a tensor: IRN's next steps call .cuda() on it
    maps = high_res.detach().cpu().numpy().astype(np.float32)
    keys = keys.cpu().numpy().astype(np.int64)
    if seed_format == "irn":
        return {"keys": keys, "cam": cam, "high_res": maps}
    if seed_format == "puzzlecam":
        return {"keys": np.pad(keys + 1, (1, 0)), "cam": cam, "hr_cam": maps}
    raise ValueError(f"export.format={seed_format!r} is unknown; expected one of {list(SEED_FORMATS)}")


def write_seed_files(npy_path: Path, png_path: Path, record: dict, mask: np.ndarray, palette: Sequence[int]) -> None:
    """One image's `.npy` dict (`seed_record`; readable by numpy 1.x too, as IRN's and PuzzleCAM's environments
    have: `portable_npy`) and palette `.png`, each written atomically (a killed export never leaves a half file
    that resuming would skip)."""
    save_dict_npy(npy_path, record)
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    image.putpalette(list(palette))
    with atomic_path(png_path) as tmp:
        image.save(tmp, format="PNG")


def seed_mask(maps: torch.Tensor, keys: torch.Tensor, threshold: float | None, empty_value: int) -> torch.Tensor:
    """One image's seed mask uint8 [H, W] from the maps [K, H, W] in [0, 1] of its classes `keys` [K], by the
    seed rule: with a plane (`threshold` a number) 0 = background, class c → c + 1; without, class c → c, and
    `empty_value` for an image without classes."""
    if len(keys) == 0:
        return torch.full(maps.shape[-2:], 0 if threshold is not None else empty_value, dtype=torch.uint8,
                          device=maps.device)
    best = seed_labels(maps, torch.ones_like(keys, dtype=torch.bool), threshold)  # index into keys (+1: plane)
    lookup = torch.cat([keys.new_zeros(1), keys + 1]) if threshold is not None else keys
    return lookup[best].to(torch.uint8)


@dataclass
class ExportCounts:
    written: int = 0
    skipped: int = 0


@dataclass
class SeedExport:
    """The `export` config group: `seeds` switches the export on, `split` and `dir` say what and where,
    `threshold` the seed rule's background score (None: the evaluation's best), `format` the `.npy` layout
    (`SEED_FORMATS`). `scoremaps` and `scoremap_dir` are wsolevaluation's score maps, written by the evaluation
    itself (`src.evaluation.scoremaps`), not here."""

    seeds: bool = False
    split: str = "val"
    dir: str = "seeds"
    threshold: float | None = None
    format: str = "irn"
    scoremaps: bool = False
    scoremap_dir: str = "scoremaps"

    def __post_init__(self) -> None:
        if self.format not in SEED_FORMATS:
            raise ValueError(f"export.format={self.format!r} is unknown; expected one of {list(SEED_FORMATS)}")

    def __call__(self, net: nn.Module, cam: CamSpec, datamodule: ProportionDataModule, best_threshold: float | None,
                 device: torch.device | str | None = None, job: dict | None = None, overwrite: bool = False) -> dict:
        """Export (see `export_seeds`); returns `{"dir", "format", "written", "skipped", "threshold"}` for
        results.json. `job` (`config_fingerprint`, `classifier` identity) goes into the export's manifest with the
        threshold, the format and the protocol; a different manifest on disk, or `overwrite`, rewrites the export."""
        threshold = best_threshold if self.threshold is None else self.threshold
        manifest = {**(job or {}), "threshold": threshold,
                    "protocol": {"dataset": datamodule.name, "split": self.split, "cam": cam.name,
                                 "seed_background": bool(datamodule.seed_background),
                                 "layout": f"{self.format} npy + png"}}
        counts = export_seeds(net, cam, datamodule, self.split, self.dir, threshold=threshold, device=device,
                              seed_format=self.format, manifest=manifest, overwrite=overwrite)
        return {"dir": str(self.dir), "format": self.format, "written": counts.written, "skipped": counts.skipped,
                "threshold": threshold}


def export_seeds(net: nn.Module, cam: CamSpec, datamodule: ProportionDataModule, split: str, out_dir: str | Path, *,
                 threshold: float | None = None, device: torch.device | str | None = None,
                 batch_size: int | None = None, progress: bool = True, seed_format: str = "irn",
                 manifest: dict | None = None, overwrite: bool = False) -> ExportCounts:
    """Write the seeds of every image of `split` (train | val | test | eval | all) under `out_dir` (see the module
    docstring); returns and prints how many images were written and skipped (already exported).

    `cam` carries the CAM options (`scales`, `flip`, …) and extras such as `bls=`; `threshold` is the background
    score of the seed rule (the evaluation's best), required when the dataset seeds with a background plane;
    `seed_format` the `.npy` layout (`irn` | `puzzlecam`; PuzzleCAM's needs a background plane).
    The plane, the mask value of an image without classes (`ignore_index`) and the palette are the
    datamodule's. Runs on `device` (default: the net's), one batch of `batch_size` (default the datamodule's
    `cam_batch_size`) at a time; the net is moved back afterwards. With a `manifest` the export resumes only
    under the same one (`export_manifest.prepare_export_dir`); without, any exported image is skipped.
    """
    if datamodule.seed_background and (threshold is None or not 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"export.threshold={threshold!r}: {datamodule.name} seeds need a background threshold in "
                         "[0, 1] (the evaluation gives one only with the seed_mIoU metric); set export.threshold")
    if seed_format not in SEED_FORMATS:
        raise ValueError(f"export.format={seed_format!r} is unknown; expected one of {list(SEED_FORMATS)}")
    if seed_format == "puzzlecam" and not datamodule.seed_background:
        raise ValueError(f"export.format=puzzlecam: {datamodule.name} seeds have no background plane, which "
                         "PuzzleCAM's keys (background first) assume; expected export.format=irn")
    rule = SeedRule(float(threshold) if datamodule.seed_background else None, datamodule.ignore_index,
                    datamodule.palette(), seed_format)
    out_dir = Path(out_dir)
    if manifest is not None:
        prepare_export_dir(out_dir, manifest, overwrite)
    (out_dir / "npy").mkdir(parents=True, exist_ok=True)
    (out_dir / "png").mkdir(parents=True, exist_ok=True)
    home = next(net.parameters()).device
    device = torch.device(device) if device is not None else home
    counts = ExportCounts()
    net.to(device)
    engine = cam.create(net, normalize=False)
    try:
        for name in split_names(datamodule, split):
            dataset = datamodule.build_dataset(name, train=False)
            todo = [i for i, image_id in enumerate(dataset.ids) if not _exported(out_dir, seed_file_stem(image_id))]
            counts.skipped += len(dataset) - len(todo)
            loader = datamodule.loader(Subset(WithOriginalSize(dataset), todo),  # the job's loader settings
                                       batch_size or datamodule.cam_batch_size)
            with _progress_bar(progress) as bar:
                task = bar.add_task(f"seeds of {datamodule.name} {name}", total=len(todo))
                for batch in loader:
                    _export_batch(engine, batch, device, out_dir, rule)
                    gc.collect()  # pickling the `cam` tensors leaves reference cycles: free them batch by batch
                    counts.written += len(batch["id"])
                    bar.advance(task, len(batch["id"]))
    finally:
        engine.remove()
        net.to(home)
    log.info(f"seeds: {counts.written} written, {counts.skipped} skipped (already exported) -> {out_dir}")
    return counts


@dataclass
class SeedRule:
    threshold: float | None  # None: no background plane
    empty_value: int
    palette: list[int]
    format: str = "irn"  # SEED_FORMATS


def _exported(out_dir: Path, stem: str) -> bool:
    return (out_dir / "npy" / f"{stem}.npy").is_file() and (out_dir / "png" / f"{stem}.png").is_file()


def _progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled)


def _export_batch(engine, batch: dict, device: torch.device, out_dir: Path, rule: SeedRule) -> None:
    """CAMs of one batch's image classes, then each image's files."""
    images, labels = batch["image"].to(device), batch["labels"].to(device)
    targets, valid = gt_targets(labels)
    with torch.enable_grad():  # gradient CAMs need autograd, whatever the caller's mode
        maps = engine(images, targets).detach()  # [B, K, h, w] raw, ≥ 0
    for i, image_id in enumerate(batch["id"]):
        keys = targets[i][valid[i]]
        height, width = (int(v) for v in batch["original_hw"][i])
        high_res = class_maps_at(maps[i][valid[i]], (height, width))
        strided = class_maps_at(maps[i][valid[i]], (math.ceil(height / STRIDE), math.ceil(width / STRIDE)))
        mask = seed_mask(high_res, keys, rule.threshold, rule.empty_value)
        stem = seed_file_stem(image_id)
        write_seed_files(out_dir / "npy" / f"{stem}.npy", out_dir / "png" / f"{stem}.png",
                         seed_record(keys, strided, high_res, rule.format), mask.cpu().numpy(), rule.palette)
