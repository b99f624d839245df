"""Atomic writes, the one helper of every file a stage leaves (data caches, subset ids, the stores, the BLS,
seeds, results, figures, reports): a file or a folder appears complete or not at all. `store/` is the bottom of
the stack, so every package may import it."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: str | Path) -> Path:
    """A hidden temp path beside `path`, private to this process (its pid), keeping the suffix (numpy,
    matplotlib, PIL and Lightning pick the format from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` and rename it onto `path` when the block succeeds, so readers never see
    half a file; the temp file is removed when the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; when the block succeeds it replaces `path` (an older folder
    there is removed first), so `path` holds a complete set of files or none. Removed when the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        tmp.replace(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """`payload` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False))
