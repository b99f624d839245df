"""The one file lock of every store: an exclusive `flock` on `<path>`, across the processes of one file system
(the jobs of a sweep, local or on SLURM nodes sharing it)."""
from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created with its folder). Yields True once held; with `wait=False`
    yields False at once when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
