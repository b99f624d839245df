"""The pretrained regime on tiny images: cached atomically, resumable, keyed by its config, loadable by name."""
from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from src.config.checks import ConfigError
from src.config.compose import pretrain_config, resolved_parts
from src.jobs import build as build_module
from src.jobs.build import build_job, build_pretraining, check_config, job_settings, pretrained_weights
from src.jobs.pretraining import pretrain
from src.models import build_backbone
from src.store.pretrained import PretrainedWeights, pretrained_key
from tests.helpers import compose_config

TINY = ["data.image_size=24", "data.num_train=24", "data.num_val=8", "data.batch_size=8", "data.eval_batch_size=8",
        "trainer.max_steps=3", "checkpoint_every=1", "progress_bar=false", "trainer.accelerator=cpu"]


@pytest.fixture
def tiny_cfg(tmp_path):
    cfg = pretrain_config(TINY)
    cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


def key_of(cfg) -> str:
    return pretrained_key(resolved_parts(cfg))


def entry_of(cfg):
    return PretrainedWeights(cfg.paths.cache_dir).path(key_of(cfg))


class StopAt(pl.Callback):
    """Fails the run after `step` optimisation steps, as a kill would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("interrupted")


def test_interrupted_pretraining_caches_nothing_then_resumes(tiny_cfg):
    entry = entry_of(tiny_cfg)
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrain(build_pretraining(tiny_cfg), callbacks=[StopAt(2)])
    assert not entry.exists()
    assert (entry.parent / f".{entry.name}.partial" / "last.ckpt").is_file()
    assert pretrain(build_pretraining(tiny_cfg)) == entry
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["resumed_from"] == 2 and meta["steps"] == 3 and meta["key"] == entry.name
    assert meta["classes"][0] == "ellipse" and 0 <= meta["pretext_val_mAP"] <= 100
    assert not list(entry.parent.glob(".*"))  # no partial state or temporary entry left behind
    mtime = (entry / "backbone.pt").stat().st_mtime
    assert pretrain(build_pretraining(tiny_cfg)) == entry and (entry / "backbone.pt").stat().st_mtime == mtime  # a hit: no work


def test_key_follows_the_pretraining_config_not_only_the_name(tiny_cfg):
    other = pretrain_config(TINY + ["trainer.max_steps=4"])
    moved = pretrain_config(TINY + ["data.num_workers=2"])
    assert key_of(tiny_cfg).startswith("synthetic_pretrained-")
    assert key_of(other) != key_of(tiny_cfg)
    assert key_of(moved) == key_of(tiny_cfg)  # loading speed does not change the weights


def test_weights_name_loads_the_cached_weights(tiny_cfg, tiny_overrides, monkeypatch):
    entry = pretrain(build_pretraining(tiny_cfg))
    monkeypatch.setattr(build_module, "pretrain_config", lambda: tiny_cfg.copy())
    path = pretrained_weights("synthetic_pretrained", tiny_cfg.paths.cache_dir)
    assert path == str(entry / "backbone.pt")
    saved = torch.load(path, weights_only=True)
    net = build_backbone("resnet18_small", 8, path, output_stride=16)
    for name, tensor in net.state_dict().items():
        if name.startswith("fc."):
            assert tensor.shape[0] == 8  # the head is the job's own, not the pretext's 12 classes
        else:
            assert torch.equal(tensor, saved[name]), name
    assert pretrained_weights(None, tiny_cfg.paths.cache_dir) is None
    with pytest.raises(ConfigError, match="backbone.name='resnet18'"):
        check_config(compose_config(tiny_overrides + ["backbone=resnet18", "backbone.weights=synthetic_pretrained"]))


def test_a_job_with_the_pretrained_name_starts_from_the_cached_weights(tiny_cfg, tiny_overrides, monkeypatch):
    entry = pretrain(build_pretraining(tiny_cfg))
    monkeypatch.setattr(build_module, "pretrain_config", lambda: tiny_cfg.copy())
    overrides = tiny_overrides + ["backbone=resnet18_small", f"paths.cache_dir={tiny_cfg.paths.cache_dir}"]
    cfg = compose_config(overrides + ["backbone.weights=synthetic_pretrained"])
    job = build_job(cfg, job_settings(cfg))
    saved = torch.load(entry / "backbone.pt", weights_only=True)
    assert torch.equal(job.model.net.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert job.settings.classifier_fields["pretrained"] == entry.name  # the pretraining config keys the classifier
    assert "pretrained" not in job_settings(compose_config(overrides)).classifier_fields
