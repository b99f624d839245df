"""Which classifier made an artifact. A cached classifier's identity is `{key, weights_sha1, trained_at}`: its cache
key, a hash of its weights (`weights_sha1`, over the state dict's names, dtypes, shapes and bytes, so it does not
depend on how `torch.save` lays out the file) and when its cache entry was written. It goes into the entry's
`meta.json`, the job's `results.json`, evaluation checkpoints, per-image files and the export manifest; a resume,
a `[skip]` and the report's pairing compare it.

`trained_at` is there because a retrain is a new classifier even when it is bit-identical (CPU training repeats
exactly): a finished job is redone after any retrain, on every device, instead of only where GPU kernels happened
to change the weights.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import torch

IDENTITY_FIELDS = ("key", "weights_sha1", "trained_at")


def weights_sha1(state_dict: dict[str, torch.Tensor]) -> str:
    """sha1 (hex) of a state dict: every entry's name, dtype, shape and raw bytes, in name order."""
    digest = hashlib.sha1()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def now_stamp() -> str:
    """When a cache entry is written: UTC, microseconds (two entries of one key never share it)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def identity(key: str, sha1: str, trained_at: str | None) -> dict:
    return {"key": str(key), "weights_sha1": str(sha1), "trained_at": trained_at}


def identity_text(value: dict | None) -> str:
    """A short human form, `key/sha1[:12]@trained_at`, for log lines and errors."""
    if not value:
        return "an unrecorded classifier"
    return f"{value.get('key')}/{str(value.get('weights_sha1'))[:12]}@{value.get('trained_at')}"


def same_classifier(a: dict | None, b: dict | None) -> bool:
    """Whether two recorded identities name the same cache entry (False when either is unrecorded)."""
    return bool(a) and bool(b) and all(a.get(f) == b.get(f) for f in IDENTITY_FIELDS)


def entry_identity(entry: str | Path) -> dict | None:
    """The identity of the classifier cached in `entry` (`<cache>/classifiers/<key>/`), None when there is none.

    Cheap when `net.pt` is the file the entry's `meta.json` describes (same size and mtime): the recorded hash.
    Otherwise (a replaced `net.pt`, an entry of an older version) the weights are loaded and hashed."""
    entry = Path(entry)
    net = entry / "net.pt"
    if not net.is_file():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    stat = net.stat()
    sha1 = meta.get("weights_sha1")
    if sha1 is None or meta.get("net_file") != [stat.st_size, stat.st_mtime_ns]:
        sha1 = weights_sha1(torch.load(net, map_location="cpu", weights_only=True))
    return identity(meta.get("key", entry.name), sha1, meta.get("trained_at"))
