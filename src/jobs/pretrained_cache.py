"""Pretrained backbone weights (made by src/jobs/pretraining.py) cached like a download:
`<cache_dir>/pretrained/<name>-<config hash>/`.

The directory holds `backbone.pt` (the network's state dict) and `meta.json` (the pretraining config and
its pretext score); it appears complete or not at all (written under a temporary name, then renamed).
The hash covers everything that changes the weights, so a changed pretraining config is a new entry, and
a classifier fine-tuned from them keys its own cache on `pretrained_key` (not on the name alone).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
WEIGHTS_FILE = "backbone.pt"
# Keys of the data config that change where or how fast the data loads, not the weights.
_DATA_KEYS_NOT_IN_KEY = {"root", "num_workers", "eval_batch_size", "eval_split", "num_val", "num_test"}


def pretrain_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """`conf/pretrain.yaml` composed with `overrides` (inside a running Hydra app or not)."""
    if GlobalHydra.instance().is_initialized():
        return compose("pretrain", overrides=list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("pretrain", overrides=list(overrides))


def pretrained_key(cfg: DictConfig) -> str:
    """`<name>-<hash>` of a pretraining config: the hash of what determines the weights."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    fields = {
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "data": {k: v for k, v in data.items() if k not in _DATA_KEYS_NOT_IN_KEY},
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "max_steps": int(cfg.trainer.max_steps),
        "seed": int(cfg.seed),
    }
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{cfg.name}-{digest}"


def pretrained_dir(cfg: DictConfig) -> Path:
    """Where the weights of pretraining config `cfg` live (complete or absent)."""
    return Path(cfg.paths.cache_dir) / "pretrained" / pretrained_key(cfg)


@contextmanager
def pretraining_lock(cfg: DictConfig):
    """Exclusive lock of one pretraining key across processes: of racing jobs one pretrains, the others wait."""
    root = Path(cfg.paths.cache_dir) / "pretrained"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{pretrained_key(cfg)}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_pretrained_name(weights) -> bool:
    """True when `backbone.weights` names the weights of `conf/pretrain.yaml` (not a file, not torchvision's)."""
    return isinstance(weights, str) and weights == str(OmegaConf.load(CONF_DIR / "pretrain.yaml").name)
