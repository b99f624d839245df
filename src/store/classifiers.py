"""Trained classifiers cached by everything that determines them (`classifier_key`), shared by every CAM method
of a sweep; `load_cached_net` is the one reader of a cached network.

Layout: `<cache_dir>/classifiers/<key>/` holds `net.pt` (the network's state dict), `subset_ids.txt` and
`meta.json` (what the key was made of, the sweep launch that trained it, the classifier's identity: weights hash
and `trained_at`, see `src.store.identity`, and `resumed_from_steps` when its training was resumed). An entry
appears complete or not at all, and jobs wanting the same key take its lock (`src.store.keyed`), so of two
racing jobs one trains and the other loads (the protocol: `src.jobs.classifier`).

`force_retrain=true` retrains a classifier once per sweep launch, not once per CAM job: an entry trained by
the current launch (`src.config.launch.sweep_launch_id`) counts as fresh.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from src.store.identity import entry_identity, now_stamp, weights_sha1
from src.store.keyed import KeyedDirs, json_digest
from src.store.result_neutral import classifier_fields


def classifier_key(resolved: dict, content_digest: str | None = None,
                   pretrained_key: str | None = None) -> tuple[str, dict]:
    """The classifier's key and what it is made of, from the job's resolved config: dataset (and its root),
    backbone and weights (for pretrained weights, the key of their pretraining config, not only their name),
    proportion, seed and training (`src.store.result_neutral.classifier_fields`); for a dataset edited in place
    (data=folder), the digest of what its folder holds."""
    fields = {**({"pretrained": pretrained_key} if pretrained_key else {}),
              **({"data_content": content_digest} if content_digest else {}),
              **classifier_fields(resolved)}
    return json_digest(fields), fields


class ClassifierCache(KeyedDirs):
    """Trained networks under `<cache_dir>/classifiers/<key>/`."""

    def __init__(self, cache_dir: str | Path):
        super().__init__(Path(cache_dir) / "classifiers")

    def has(self, key: str) -> bool:
        return (self.path(key) / "net.pt").is_file()

    def save(self, key: str, net: nn.Module, subset_ids: list[str], meta: dict) -> Path:
        """Store a trained network; the key's directory appears complete or not at all (a forced retrain replaces
        the old entry)."""
        with self.writing(key) as tmp:
            state = net.state_dict()
            torch.save(state, tmp / "net.pt")
            stat = (tmp / "net.pt").stat()  # a rename keeps it: `entry_identity` trusts the hash while it matches
            meta = {**meta, "key": key, "weights_sha1": weights_sha1(state), "trained_at": now_stamp(),
                    "net_file": [stat.st_size, stat.st_mtime_ns]}
            (tmp / "subset_ids.txt").write_text("\n".join(subset_ids) + "\n")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        return self.path(key)

    def load_into(self, key: str, net: nn.Module, subset_ids: list[str]) -> dict:
        """Load a cached network into `net`; its subset must be the job's own subset. Returns its meta."""
        return load_cached_net(self.path(key), net, subset_ids)

    def must_train(self, key: str, force_retrain: bool, launch: str | None) -> bool:
        """Whether a job trains the classifier `key`: not cached yet, or `force_retrain` and the entry was not
        trained by this sweep launch (`launch`; None = not a multirun, so a forced job always retrains)."""
        if not self.has(key):
            return True
        return bool(force_retrain) and (launch is None or self.meta(key).get("launch_id") != launch)

    def current_identity(self, key: str, force_retrain: bool, launch: str | None) -> dict | None:
        """The identity of the classifier a job of `key` would use now without training, or None when it will
        train one (not cached, or `force_retrain` still to do in this launch)."""
        return None if self.must_train(key, force_retrain, launch) else entry_identity(self.path(key))


def load_cached_net(path: str | Path, net: nn.Module, subset_ids: list[str] | None = None) -> dict:
    """Load the network cached in `path` (`net.pt`) into `net` and return its `meta.json`; with `subset_ids`,
    the cached subset must be exactly those ids (a job never loads a classifier trained on other images)."""
    path = Path(path)
    if not (path / "net.pt").is_file():
        raise FileNotFoundError(f"{path / 'net.pt'}: no cached classifier there (run from the directory the "
                                "sweep ran in, or rerun the job)")
    if subset_ids is not None and (path / "subset_ids.txt").read_text().split() != list(subset_ids):
        raise RuntimeError(f"{path}: cached subset differs from this job's subset; rerun with force_retrain=true")
    state = torch.load(path / "net.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    meta = KeyedDirs(path.parent).meta(path.name)
    return {**meta, "weights_sha1": weights_sha1(state)}  # of the weights loaded, whatever meta.json says
