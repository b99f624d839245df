"""Atomic file writes, the one helper of every stage (data caches, subset ids, the classifier cache, the BLS,
seeds, results, figures, reports): `data/` is the bottom of the stack, so every stage may import it."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` and rename it onto `path` when the block succeeds, so readers never see
    half a file. The temp name holds the pid (concurrent writers never share it) and keeps the suffix (numpy,
    matplotlib and PIL pick the format from it); it is removed when the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """`payload` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False))
