"""Finished jobs on disk: the config fingerprint that says whether a job's `results.json` was made with this
config, and the resume rule built on it (a job whose results exist is skipped, so a killed sweep resumes where it
stopped) and on the classifier's identity (a finished job whose classifier was retrained or replaced since is
redone)."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from src.store.identity import identity_text, same_classifier
from src.store.keyed import json_digest
from src.store.result_neutral import fingerprint_fields

RESULTS_FILE = "results.json"
log = logging.getLogger(__name__)


def config_fingerprint(config: dict) -> str:
    """A digest of everything in a job's config (unresolved, as a plain dict) that defines its results."""
    return json_digest(fingerprint_fields(config))


def previous_results(job_dir: str | Path, fingerprint: str,
                     current_classifier: Callable[[], dict | None]) -> dict | None:
    """The job's existing results when they were made with the config of `fingerprint` and by the classifier the
    job would use now (`current_classifier()`: its identity, None when it will train one, see
    `src.store.identity`)."""
    path = Path(job_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if results.get("config_fingerprint") != fingerprint:
        return None
    made_with, current = (results.get("classifier") or {}).get("identity"), current_classifier()
    if not same_classifier(made_with, current):
        now = identity_text(current) if current else "a classifier this job will train"
        log.info(f"[redo] {path} was made with classifier {identity_text(made_with)}; the job now uses {now}")
        return None
    return results
