"""The pretrained regime: a one-time pretraining on a disjoint synthetic world, cached like a download."""
from src.pretraining.cache import is_pretrained_name, pretrain_config, pretrained_dir, pretrained_key
from src.pretraining.loop import pretrain
from src.pretraining.weights import resolve_weights

__all__ = ["is_pretrained_name", "pretrain", "pretrain_config", "pretrained_dir", "pretrained_key", "resolve_weights"]
