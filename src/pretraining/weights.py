"""`backbone.weights=<pretrained name>` → the cached weights file (pretraining it first on a miss)."""
from __future__ import annotations

from pathlib import Path

from src.pretraining.cache import WEIGHTS_FILE, is_pretrained_name, pretrain_config, pretrained_dir, pretrained_key
from src.pretraining.loop import pretrain


def resolve_weights(weights, backbone_name: str, cache_dir: str | Path) -> tuple[str | None, str | None]:
    """`backbone.weights` as `build_backbone` takes it, and the pretrained key (None for other weights).

    A pretrained name resolves to `<cache_dir>/pretrained/<name>-<hash>/backbone.pt`. On a miss it pretrains
    now, as a torchvision name downloads on first use: the job cannot run without them, a sweep's jobs share
    the one pretraining (file lock), and the bar shows its progress. The pretraining must target the job's
    backbone."""
    if not is_pretrained_name(weights):
        return weights, None
    cfg = pretrain_config()
    cfg.paths.cache_dir = str(cache_dir)
    if cfg.backbone.name != backbone_name:
        raise ValueError(f"backbone.weights={weights!r} holds {cfg.backbone.name} weights (conf/pretrain.yaml), "
                         f"but backbone.name={backbone_name!r}; expected backbone={cfg.backbone.name}")
    entry = pretrained_dir(cfg)
    if not (entry / WEIGHTS_FILE).is_file():
        print(f"[pretrained] {weights!r} is not in {entry.parent}: pretraining it once now "
              f"(the same as `python -m src.pretrain`; ~{int(cfg.trainer.max_steps)} steps)")
        pretrain(cfg)
    return str(entry / WEIGHTS_FILE), pretrained_key(cfg)
