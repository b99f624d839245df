"""The keyed directory of every store: `<root>/<key>/`, where `key` is a digest of what determines the entry
(`json_digest`), written whole (`atomic_dir`) under the key's lock (`file_lock`); and the one rule that makes a
text a folder name (`safe_name`)."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.store.atomic import atomic_dir
from src.store.lock import file_lock

UNSAFE = re.compile(r"[^A-Za-z0-9=,.+_-]+")  # characters a folder name keeps; the rest become '_'


def text_digest(text: str, length: int = 16) -> str:
    """The first `length` hex digits of the text's sha1."""
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def json_digest(value, length: int = 16) -> str:
    """A key for `value` (JSON-able; other leaves by `str`): the same for equal values, whatever the key order."""
    return text_digest(json.dumps(value, sort_keys=True, default=str), length)


def safe_name(text: str, limit: int, shown: str | None = None) -> str:
    """`text` as one file or folder name: characters other than `A-Za-z0-9=,.+_-` become '_' (a path separator
    among them); a name that this changed or that is longer than `limit` is cut and gets a digest of the exact
    text, so two texts never share a name ('default' for an empty one). `shown`: what to show of `text`, when
    not all of it (a job's overrides show a path by its last part)."""
    text = str(text)
    name = UNSAFE.sub("_", text if shown is None else shown).strip("_") or "default"
    if name != text or len(name) > limit:
        name = f"{name[:limit]}_{text_digest(text, 8)}"
    return name


class KeyedDirs:
    """Entries `<root>/<key>/` of one store: complete or absent, one lock file per key (`<root>/<key>.lock`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str, wait: bool = True):
        """The key's exclusive lock across processes (`file_lock`): yields True once held, False at once with
        `wait=False` when another process holds it."""
        return file_lock(self.root / f"{key}.lock", wait)

    def meta(self, key: str, name: str = "meta.json") -> dict:
        """The entry's JSON file `name` ({} when absent or unreadable)."""
        try:
            return json.loads((self.path(key) / name).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """A temp folder to fill; it becomes the entry (replacing an older one) when the block succeeds."""
        with atomic_dir(self.path(key)) as tmp:
            yield tmp


MAX_DIRNAME = 120


def safe_dirname(text: str) -> str:
    """A sweep or report name as one folder or file name (`safe_name`, at most MAX_DIRNAME characters before its
    digest)."""
    return safe_name(text, MAX_DIRNAME)
