"""W&B logging of a job, offline: run settings (group, name, config), summary metrics, overlays, IoU table.

wandb ≥ 0.19 writes an offline run's summary and config only into its transaction log `run-<id>.wandb` (the
file `wandb sync` uploads), not into `files/wandb-summary.json`; `offline_records` reads that log (LevelDB log
framing: 7-byte file header, 32 KiB blocks of records with a 7-byte header each, protobuf `Record` payloads).
"""
from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from src.config.launch import sweep_names
from src.reporting.wandb_logging import finish_loggers, log_job, seed_prediction, wandb_run_settings
from tests.conftest import REPO
from tests.helpers import compose_config

CLASS_NAMES = ["disk", "square", "ring"]
_BLOCK, _HEADER = 32768, 7


def offline_records(path: Path):
    """The protobuf `Record`s of an offline run's transaction log, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:_HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER]) if room >= _HEADER else (0, 0, 0)
        if kind == 0:  # block padding
            pos += room
            continue
        pending += data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (1, 4):  # a full record, or the last chunk of a split one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_summary(records) -> dict:
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                if item.key:
                    summary[item.key] = json.loads(item.value_json)
    return summary


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, everything it writes under tmp_path, never the network."""
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def samples() -> list[dict]:
    torch.manual_seed(0)
    out = []
    for i in range(3):
        mask = torch.zeros(32, 32, dtype=torch.long)
        mask[4:12 + 4 * i, 4:20] = 1 + i % 2  # a different mask per image
        mask[0, :] = 255
        labels = torch.tensor([1.0, 1.0, 0.0]) if i % 2 == 0 else torch.tensor([0.0, 1.0, 0.0])
        cams = torch.rand(3, 32, 32) * labels[:, None, None]
        out.append({"image": torch.randn(3, 32, 32), "labels": labels, "mask": mask, "cams": cams})
    return out


def resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def test_run_settings_outside_a_hydra_job(tiny_overrides):
    cfg = compose_config(tiny_overrides + ["sweep_name=voc_small", "cam=gradcam", "proportion=2", "seed=3"])
    settings = wandb_run_settings(resolved(cfg), "synthetic")
    assert settings["group"] == "voc_small"
    assert settings["name"] == "cam=gradcam,proportion=2,seed=3"
    config = settings["config"]
    assert {k: config[k] for k in ("dataset", "backbone", "cam", "proportion", "seed")} == {
        "dataset": "synthetic", "backbone": "resnet18_small", "cam": "gradcam", "proportion": 2.0, "seed": 3}
    assert config["backbone_cfg"]["name"] == "resnet18_small" and config["cam_cfg"]["name"] == "gradcam"
    assert config["train"] == OmegaConf.to_container(cfg.train)  # the config, nested
    assert config["data"]["seed"] == 3 and config["data"]["image_size"] == 64  # resolved
    assert sweep_names() == (None, None)  # outside Hydra
    assert wandb_run_settings(resolved(compose_config(tiny_overrides)), "synthetic")["group"] is None  # no group


def test_run_settings_inside_a_multirun_job(tiny_overrides):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in tiny_overrides if not o.startswith("hydra.")]
                      + ["cam=gradcam", "proportion=2"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "/outputs/broadcam/multiruns/2026-01-01_10-00-00"
        cfg.hydra.job.override_dirname = "cam=gradcam,proportion=2"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a job's task config has no hydra node; HydraConfig holds it
    try:
        settings = wandb_run_settings(resolved(cfg), "synthetic", *sweep_names())
    finally:
        HydraConfig.instance().cfg = None
    assert settings["group"] == "2026-01-01_10-00-00"  # one group per sweep dir
    assert settings["name"] == "cam=gradcam,proportion=2"


def test_seed_labels_follow_each_protocol():
    cams = torch.tensor([[[0.9, 0.1]], [[0.2, 0.6]], [[1.0, 1.0]]])  # [C=3, 1, 2]
    labels = torch.tensor([1.0, 1.0, 0.0])  # class 2 is absent: its map must never win
    assert seed_prediction(cams, labels, 0.7).tolist() == [[1, 0]]  # background plane: 0, else class + 1
    assert seed_prediction(cams, labels, None).tolist() == [[0, 1]]  # no background: class indices
    assert seed_prediction(cams, labels, None, has_seeds=False).tolist() == [[1, 1]]  # WSOL: max ≥ 0.5


class UnusableWandb(types.ModuleType):
    """Stands for `wandb` where it must not be used: any attribute fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"wandb.{name} used by a job without a WandbLogger")


class RecordingCSVLogger(CSVLogger):
    """A non-W&B logger that records whatever a W&B-only function does to it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    @property
    def experiment(self):
        self.used.append("experiment")
        return super().experiment

    def log_metrics(self, metrics, step=None):
        self.used.append("log_metrics")
        super().log_metrics(metrics, step)


def test_log_job_is_a_noop_without_wandb(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", UnusableWandb("wandb"))
    logger = RecordingCSVLogger(tmp_path)
    results = {"metrics": {"cls_mAP": 1.0, "seed_mIoU": 2.0, "seed_threshold": 0.3},
               "details": {"per_class_IoU": [1.0, 2.0, 3.0, 4.0]}}
    log_job([logger], results, samples(), CLASS_NAMES, 255)
    assert logger.used == []  # neither W&B nor the other logger was touched


def test_offline_run_holds_summary_images_masks_and_table(offline_wandb, tiny_overrides):
    cfg = compose_config(tiny_overrides + ["logger=wandb", "sweep_name=demo", "proportion=5", "cam=cam"])
    # As src.jobs.build builds it: conf/logger/wandb.yaml plus the run settings (offline from WANDB_MODE).
    logger = hydra.utils.instantiate(cfg.logger.wandb, _partial_=True)(**wandb_run_settings(resolved(cfg), "synthetic"))
    assert isinstance(logger, WandbLogger)
    results = {"metrics": {"seed_mIoU": 42.5, "seed_threshold": 0.3, "cls_mAP": 77.25, "PxAP": None},
               "details": {"per_class_IoU": [80.0, 40.0, None, 30.0]}, "timings": {"train_s": 1.5},
               "n_train": 10, "n_eval": 3, "classifier": {"cache_hit": True}}
    figure = samples()
    log_job([logger], results, figure, CLASS_NAMES, ignore_index=255)
    finish_loggers([logger])

    (run_dir,) = (offline_wandb / "job" / "wandb").glob("offline-run-*")  # save_dir = paths.output_dir
    records = list(offline_records(next(run_dir.glob("run-*.wandb"))))
    summary = offline_summary(records)
    assert summary["eval/seed_mIoU"] == 42.5 and summary["eval/cls_mAP"] == 77.25
    assert summary["n_train"] == 10 and summary["classifier/cache_hit"] is True
    assert "eval/PxAP" not in summary  # None: not computed for this dataset
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_group == "demo" and run.display_name == "cam=cam,proportion=5,seed=0"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert (config["dataset"], config["cam"], config["proportion"]) == ("synthetic", "cam", 5.0)

    configs = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    internal = json.loads({item.key: item.value_json for item in configs[-1].update}["_wandb"])
    names = {entry["key"].rsplit("_", 1)[-1]: entry["value"] for entry in internal["mask/class_labels"].values()}
    expected = {"0": "background", "1": "disk", "2": "square", "3": "ring", "255": "ignore"}
    assert names == {"truth": expected, "prediction": expected}  # both masks' classes are named

    media = run_dir / "files" / "media"
    overlays = sorted((media / "images" / "eval").glob("cam_overlays_*.png"))
    assert len(overlays) == len(figure)
    assert Image.open(overlays[0]).size == (32, 32)
    masks = [np.array(Image.open(p)) for p in (media / "images" / "mask" / "eval").glob("*.png")]
    assert len(masks) == 2 * len(figure)  # ground truth + prediction per image
    for sample in figure:  # every ground-truth mask is stored as is (ignore value included)
        assert any(np.array_equal(m, sample["mask"].numpy()) for m in masks)
        seeds = seed_prediction(sample["cams"], sample["labels"], 0.3).numpy()
        assert any(np.array_equal(m, seeds) for m in masks)
    (table_file,) = (media / "table" / "eval").glob("per_class_IoU_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["class", "IoU"]
    assert table["data"] == [["background", 80.0], ["disk", 40.0], ["square", None], ["ring", 30.0]]
