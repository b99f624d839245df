"""The example folder dataset of `scripts/make_folder_example.py`, written once per test module, and copies a test
may damage."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import load_script

EXAMPLE_IMAGES, EXAMPLE_SIZE = 20, 32


def write_example(root: Path, images: int = EXAMPLE_IMAGES, size: int = EXAMPLE_SIZE) -> dict:
    """The example layout at `root`; returns the script's counts."""
    return load_script("make_folder_example").make_folder_example(root, images=images, size=size)


def copy_of(root: Path, target: Path) -> Path:
    shutil.copytree(root, target)
    return target


def rewrite_rows(path: Path, edit) -> None:
    """Apply `edit(lines) -> lines` to a text file's lines (header included)."""
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
