"""Pretrained backbone weights (made by `src.jobs.pretraining`) cached like a download:
`<cache_dir>/pretrained/<name>-<config digest>/`.

The entry holds `backbone.pt` (the network's state dict) and `meta.json` (the pretraining config and its pretext
score); it appears complete or not at all (`KeyedDirs.writing`). The digest covers everything that changes the
weights (`src.store.result_neutral.pretraining_fields`), so a changed pretraining config is a new entry, and a
classifier fine-tuned from them keys its own cache on this key (not on the name alone).
"""
from __future__ import annotations

from pathlib import Path

from src.store.keyed import KeyedDirs, json_digest
from src.store.result_neutral import pretraining_fields

WEIGHTS_FILE = "backbone.pt"


def pretrained_key(resolved: dict) -> str:
    """`<name>-<digest>` of a resolved pretraining config (`conf/pretrain.yaml`)."""
    return f"{resolved['name']}-{json_digest(pretraining_fields(resolved), 12)}"


class PretrainedWeights(KeyedDirs):
    """Entries `<cache_dir>/pretrained/<key>/`; `partial(key)` is where an unfinished pretraining resumes from."""

    def __init__(self, cache_dir: str | Path):
        super().__init__(Path(cache_dir) / "pretrained")

    def weights(self, key: str) -> Path:
        return self.path(key) / WEIGHTS_FILE

    def has(self, key: str) -> bool:
        return self.weights(key).is_file()

    def partial(self, key: str) -> Path:
        """The unfinished pretraining's folder (its resumable checkpoint, its ranks' meeting point)."""
        return self.root / f".{key}.partial"
