"""Finished jobs brought back to life from their `results.json`: the job's cached classifier, its CAM (with
BroadCAM's fitted BLS) and its datamodule, so that the report's seed grid (`scripts/report.py`) and the demo
(`src.demo`) can make the CAMs of any image again without retraining. `load_job` is the one loader.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from src.bls import BLS_FILE, BroadLearningSystem
from src.cams import CamSpec
from src.data import ProportionDataModule
from src.data.collate import collate_samples
from src.evaluation.protocol import gt_targets, seed_labels, seed_maps
from src.jobs.build import cam_target_layers, instantiate_datamodule
from src.models import build_backbone
from src.reporting.report import GridInputs
from src.reporting.results import RESULTS_FILE, read_results
from src.store.classifiers import load_cached_net

log = logging.getLogger(__name__)


@dataclass
class JobArtifacts:
    """What one finished job needs to make its CAMs again.

    `net` is the trained classifier in eval mode on the requested device; `cam` the job's CAM method, layers
    and options (plus `bls=` for methods that fitted one); `datamodule` is set up (its `eval_set` is the
    evaluation split the job was scored on), or None when not asked for.
    """

    net: nn.Module
    cam: CamSpec
    datamodule: ProportionDataModule | None
    results: dict
    path: Path  # the job's results.json

    def seed_maps(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Seed maps of the images' ground-truth classes, exactly as the job scored them.

        images [B, 3, H, W] (normalised as by the datamodule), labels [B, C] 0/1 → [B, C, H, W] in [0, 1]
        (each GT-class map divided by its max, other classes 0), on the net's device.
        """
        device = next(self.net.parameters()).device
        images, labels = images.to(device), labels.to(device)
        targets, valid = gt_targets(labels)
        with self.cam.create(self.net, normalize=False) as cam, torch.enable_grad():  # raw: seed_maps divides
            maps = cam(images, targets).detach()
        return seed_maps(maps, targets, valid, labels.shape[1])


def load_job(results_path: str | Path, device: torch.device | str = "cpu", with_data: bool = True,
             data_overrides: dict | None = None) -> JobArtifacts:
    """Load a finished job from its `results.json` (or its job dir).

    The classifier comes from the cache dir recorded in `results["classifier"]["dir"]` (`net.pt`, and
    `meta.json` for its number of classes), the BLS (if the job fitted one) from `bls.pt` in the job dir, the
    datamodule from the job's resolved `data` config with `data_overrides` applied (e.g. `{"root": ...}`
    when the data moved). Never downloads weights: the network is built empty and the cached state loaded.
    """
    path = Path(results_path)
    if path.is_dir():
        path = path / RESULTS_FILE
    results = read_results(path)
    config = results.get("config")
    if not isinstance(config, dict) or "backbone" not in config or "data" not in config:
        raise KeyError(f"{path}: results['config'] must hold the job's resolved config (backbone, data, cam)")
    net = _load_classifier(path, results, config["backbone"]).to(device).eval()
    cam_config = config.get("cam") or {}
    options = dict(cam_config.get("options") or {})
    bls_path = path.parent / BLS_FILE
    if bls_path.is_file():
        options["bls"] = BroadLearningSystem.load(bls_path, map_location=device)
    elif cam_config.get("stages"):
        raise FileNotFoundError(f"{bls_path}: cam={results['cam']!r} fits a BLS at job time, but the job dir "
                                f"has no {BLS_FILE}")
    layers = results.get("target_layers") or cam_target_layers(cam_config, config["backbone"]["name"])
    datamodule = build_datamodule(config["data"], data_overrides) if with_data else None
    return JobArtifacts(net, CamSpec(results["cam"], list(layers), options), datamodule, results, path)


def build_datamodule(data_config: dict, overrides: dict | None = None) -> ProportionDataModule:
    """The job's datamodule from its resolved `data` config (plus `overrides`), prepared and set up."""
    datamodule = instantiate_datamodule({**data_config, **(overrides or {})})
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def _load_classifier(path: Path, results: dict, backbone: dict) -> nn.Module:
    classifier = results.get("classifier") or {}
    if "dir" not in classifier:
        raise KeyError(f"{path}: results['classifier']['dir'] is missing; expected the classifier cache dir")
    cache = Path(classifier["dir"])
    if not (cache / "net.pt").is_file():
        raise FileNotFoundError(f"{cache / 'net.pt'}: the cached classifier of {path} is gone (run from the "
                                f"directory the sweep ran in, or rerun the job)")
    num_classes = int(json.loads((cache / "meta.json").read_text())["num_classes"])
    net = build_backbone(backbone["name"], num_classes, None, int(backbone.get("output_stride", 32)))
    load_cached_net(cache, net)
    return net


def grid_inputs(rows: list[dict], images: int, device: str = "cpu", data_overrides: dict | None = None,
                style: str = "seeds") -> GridInputs:
    """What the report's seed grid of one dataset/backbone shows (`src.reporting.report.seed_grid`): the first
    `images` evaluation images with a class and, per (cam, proportion) job of the lowest seed, its seeds by the
    export's rule (`seed_labels`) at the job's own threshold, made by its own cached classifier (and BLS); with
    `style="heatmaps"`, the max over their GT-class seed maps instead. A dataset with a background plane whose
    jobs chose no threshold (no seed_mIoU: WSOL datasets) gets heat maps, and a note says so."""
    seed = min(row["seed"] for row in rows)
    chosen = [row for row in rows if row["seed"] == seed]
    jobs = {(row["cam"], row["proportion"]): Path(row["job_dir"]) for row in chosen}
    thresholds = {(row["cam"], row["proportion"]): row.get("seed_threshold") for row in chosen}
    first = load_job(next(iter(jobs.values())), device, with_data=True, data_overrides=data_overrides)
    datamodule = first.datamodule
    if style == "seeds" and datamodule.seed_background and any(t is None for t in thresholds.values()):
        log.info(f"[report] {first.path.parent}: no seed threshold (no seed_mIoU) to draw seeds with; the grid shows "
              "heat maps")
        style = "heatmaps"
    labels = datamodule.eval_set.labels
    indices = [i for i in range(len(labels)) if labels[i].sum() > 0][:images]
    if not indices:
        raise ValueError(f"{first.path}: the evaluation split has no image with a class to show")
    batch = collate_samples([datamodule.eval_set[i] for i in indices])
    maps = {}
    for key, job_dir in jobs.items():
        job = first if job_dir == first.path.parent else load_job(job_dir, device, with_data=False)
        class_maps = job.seed_maps(batch["image"], batch["labels"]).cpu()  # [N, C, H, W] in [0, 1]
        if style == "heatmaps":
            maps[key] = class_maps.amax(1)
        else:
            threshold = thresholds[key] if datamodule.seed_background else None
            maps[key] = seed_labels(class_maps, batch["labels"] > 0, threshold, datamodule.ignore_index)
    return GridInputs(batch["image"], batch["mask"], batch["labels"], maps, list(datamodule.class_names),
                      datamodule.ignore_index, datamodule.palette(), style)
