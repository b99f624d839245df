"""Configs composed outside a running `@hydra.main` (or inside one, for a second config): the pretraining config,
and the name its weights are selected by."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

import src.config.resolvers  # noqa: F401  (composing `config` resolves Hydra's node, which uses them)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """`conf/<name>.yaml` composed with `overrides` (inside a running Hydra app or not)."""
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def pretrain_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """`conf/pretrain.yaml` composed with `overrides`."""
    return compose_config("pretrain", overrides)


def is_pretrained_name(weights) -> bool:
    """True when `backbone.weights` names the weights of `conf/pretrain.yaml` (not a file, not torchvision's)."""
    return isinstance(weights, str) and weights == str(OmegaConf.load(CONF_DIR / "pretrain.yaml").name)


def resolved_parts(cfg: DictConfig) -> dict:
    """`cfg` as a plain dict, resolved, without `paths` (whose `output_dir` resolves only inside a Hydra job)."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key != "paths"}
