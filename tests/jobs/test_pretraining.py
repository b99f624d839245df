"""The pretrained regime on tiny images: cached atomically, resumable, keyed by its config, loadable by name."""
from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from src.models import build_backbone
from tests.helpers import compose_config
from src.jobs import cache as cache_module
from src.jobs import pretraining as pretraining_module
from src.jobs.classifier import classifier_key_fields
from src.store.pretrained import pretrain_config, pretrained_dir, pretrained_key
from src.jobs.pretraining import pretrain, resolve_weights
from src.jobs.build import prepare_job

TINY = ["data.image_size=24", "data.num_train=24", "data.num_val=8", "data.batch_size=8", "data.eval_batch_size=8",
        "trainer.max_steps=3", "checkpoint_every=1", "progress_bar=false", "trainer.accelerator=cpu"]


@pytest.fixture
def tiny_cfg(tmp_path):
    cfg = pretrain_config(TINY)
    cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


class StopAt(pl.Callback):
    """Fails the run after `step` optimisation steps, as a kill would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("interrupted")


def test_interrupted_pretraining_caches_nothing_then_resumes(tiny_cfg):
    entry = pretrained_dir(tiny_cfg)
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrain(tiny_cfg, callbacks=[StopAt(2)])
    assert not entry.exists()
    assert (entry.parent / f".{entry.name}.partial" / "last.ckpt").is_file()
    assert pretrain(tiny_cfg) == entry
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["resumed_from"] == 2 and meta["steps"] == 3 and meta["key"] == entry.name
    assert meta["classes"][0] == "ellipse" and 0 <= meta["pretext_val_mAP"] <= 100
    assert not list(entry.parent.glob(".*"))  # no partial state or temporary entry left behind
    mtime = (entry / "backbone.pt").stat().st_mtime
    assert pretrain(tiny_cfg) == entry and (entry / "backbone.pt").stat().st_mtime == mtime  # a hit: no work


def test_key_follows_the_pretraining_config_not_only_the_name(tiny_cfg):
    other = pretrain_config(TINY + ["trainer.max_steps=4"])
    moved = pretrain_config(TINY + ["data.num_workers=2"])
    assert pretrained_key(tiny_cfg).startswith("synthetic_pretrained-")
    assert pretrained_key(other) != pretrained_key(tiny_cfg)
    assert pretrained_key(moved) == pretrained_key(tiny_cfg)  # loading speed does not change the weights


def test_weights_name_loads_the_cached_weights(tiny_cfg, monkeypatch):
    entry = pretrain(tiny_cfg)
    monkeypatch.setattr(pretraining_module, "pretrain_config", lambda: tiny_cfg.copy())
    path, key = resolve_weights("synthetic_pretrained", "resnet18_small", tiny_cfg.paths.cache_dir)
    assert key == entry.name and path == str(entry / "backbone.pt")
    saved = torch.load(path, weights_only=True)
    net = build_backbone("resnet18_small", 8, path, output_stride=16)
    for name, tensor in net.state_dict().items():
        if name.startswith("fc."):
            assert tensor.shape[0] == 8  # the head is the job's own, not the pretext's 12 classes
        else:
            assert torch.equal(tensor, saved[name]), name
    assert resolve_weights(None, "resnet18_small", tiny_cfg.paths.cache_dir) == (None, None)
    with pytest.raises(ValueError, match="backbone.name='resnet18'"):
        resolve_weights("synthetic_pretrained", "resnet18", tiny_cfg.paths.cache_dir)


def test_a_job_with_the_pretrained_name_starts_from_the_cached_weights(tiny_cfg, tiny_overrides, monkeypatch):
    entry = pretrain(tiny_cfg)
    monkeypatch.setattr(pretraining_module, "pretrain_config", lambda: tiny_cfg.copy())
    monkeypatch.setattr(cache_module, "pretrain_config", lambda: tiny_cfg.copy())
    overrides = tiny_overrides + ["backbone=resnet18_small", f"paths.cache_dir={tiny_cfg.paths.cache_dir}"]
    cfg = compose_config(overrides + ["backbone.weights=synthetic_pretrained"])
    job = prepare_job(cfg)
    saved = torch.load(entry / "backbone.pt", weights_only=True)
    assert torch.equal(job.model.net.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert classifier_key_fields(cfg)["pretrained"] == entry.name  # the pretraining config keys the classifier
    assert "pretrained" not in classifier_key_fields(compose_config(overrides))
