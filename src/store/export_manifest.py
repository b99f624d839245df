"""The manifest of a seed export: `<export dir>/manifest.json` says what made the files beside it (the job's config
fingerprint, the classifier's identity, the seed rule's threshold and the protocol: dataset, split, CAM, layout).

An export resumes (files already there are skipped) only under the same manifest. A different one (another
config, a retrained classifier, another threshold) or `overwrite=true` removes the old files first and then
writes the new manifest, before any seed: a killed rewrite leaves either no manifest (the next run rewrites
again) or the new one with some of its own files (the next run resumes), never old seeds under a new manifest.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from src.store.atomic import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
EXPORT_SUBDIRS = ("npy", "png")  # what the export writes under its dir (and removes when rewriting)


def read_manifest(out_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def prepare_export_dir(out_dir: str | Path, manifest: Mapping, overwrite: bool = False) -> bool:
    """Make `out_dir` hold an export of `manifest`: keep it when its manifest is the same and `overwrite` is off
    (returns False: resume), else remove the old seed files and write the manifest (returns True: rewrite)."""
    out_dir = Path(out_dir)
    manifest = json.loads(json.dumps(dict(manifest), default=str))  # as it reads back from disk
    previous = read_manifest(out_dir)
    if previous == manifest and not overwrite:
        return False
    had_files = any((out_dir / sub).is_dir() and any((out_dir / sub).iterdir()) for sub in EXPORT_SUBDIRS)
    if had_files:
        why = "overwrite=true" if overwrite else ("no manifest" if previous is None else "made with " + ", ".join(
            key for key in sorted(set(previous) | set(manifest)) if previous.get(key) != manifest.get(key)) +
            " different from this job's")
        log.info(f"seeds: {out_dir} is rewritten ({why})")
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for sub in EXPORT_SUBDIRS:
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return True
