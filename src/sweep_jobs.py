"""Finished jobs of a sweep, found by their `results.json` and brought back to life: the job's cached
classifier, its CAM method (with BroadCAM's fitted BLS) and its datamodule, so that reports and the demo
can make the CAMs of any image again without retraining (see `src.run` for what a job writes).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from torch import nn

from src.bls import BroadLearningSystem
from src.cams import create_cam
from src.data import ProportionDataModule
from src.evaluation import gt_targets, seed_maps
from src.models import backbone_spec, build_backbone
from src.reporting.results import RESULTS_FILE, read_results

BLS_FILE = "bls.pt"  # written into the job dir by src.bls.BLSFitting


@dataclass
class JobArtifacts:
    """What one finished job needs to make its CAMs again.

    `net` is the trained classifier in eval mode on the requested device; `cam_kwargs` are the CAM options of
    the job's config plus `bls=` for methods that fitted one; `datamodule` is set up (its `eval_set` is the
    evaluation split the job was scored on), or None when not asked for.
    """

    net: nn.Module
    cam_name: str
    target_layers: list[str]
    cam_kwargs: dict
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
        options = {**self.cam_kwargs, "normalize": False}  # raw maps: seed_maps divides each by its max
        with create_cam(self.cam_name, self.net, self.target_layers, **options) as cam, torch.enable_grad():
            maps = cam(images, targets).detach()
        return seed_maps(maps, targets, valid, labels.shape[1])


def find_jobs(dirs: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """Every `results.json` below `dirs` (a dir, or a results.json itself), as (path, results) sorted by path.

    The same file reached through two of the given dirs is listed once. Raises FileNotFoundError for a dir
    that does not exist, ValueError for a results.json that breaks the contract (`read_results`).
    """
    paths: set[Path] = set()
    for entry in dirs:
        entry = Path(entry)
        if entry.is_file() and entry.name == RESULTS_FILE:
            paths.add(entry.resolve())
        elif entry.is_dir():
            paths.update(p.resolve() for p in entry.rglob(RESULTS_FILE))
        else:
            raise FileNotFoundError(f"{entry}: no such sweep dir or {RESULTS_FILE}")
    return [(path, read_results(path)) for path in sorted(paths)]


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
    cam_kwargs = dict(cam_config.get("options") or {})
    bls_path = path.parent / BLS_FILE
    if bls_path.is_file():
        cam_kwargs["bls"] = BroadLearningSystem.load(bls_path, map_location=device)
    elif cam_config.get("callback") or cam_config.get("stages"):
        raise FileNotFoundError(f"{bls_path}: cam={results['cam']!r} fits a BLS at job time, but the job dir "
                                f"has no {BLS_FILE}")
    target_layers = list(results.get("target_layers") or job_target_layers(cam_config, config["backbone"]["name"]))
    datamodule = build_datamodule(config["data"], data_overrides) if with_data else None
    return JobArtifacts(net, results["cam"], target_layers, cam_kwargs, datamodule, results, path)


def job_target_layers(cam_config: dict, backbone: str) -> list[str]:
    """The layers a job's CAM hooked, for results.json files that do not record them: the cam config's
    `target_layers`, else its BLS `stages` (BroadCAM: the CAM's maps are the BLS's features), else the
    backbone's default CAM layers."""
    return list(cam_config.get("target_layers") or cam_config.get("stages") or backbone_spec(backbone).cam_layers)


def build_datamodule(data_config: dict, overrides: dict | None = None) -> ProportionDataModule:
    """The job's datamodule from its resolved `data` config (plus `overrides`), prepared and set up."""
    datamodule = hydra.utils.instantiate({**data_config, **(overrides or {})})
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
    net.load_state_dict(torch.load(cache / "net.pt", map_location="cpu", weights_only=True))
    return net
