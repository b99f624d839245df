"""The results contract: `results.json` in each job's output dir (written by `src.run`, read by the report, the
demo and `src.jobs.artifacts`), beside it `per_image_seed_iou.npz` (each evaluation image's seed intersection
and union per class at every threshold of the sweep, for paired statistics) and how finished jobs are found."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from src.store.atomic import atomic_path, write_json_atomic
from src.store.finished_jobs import RESULTS_FILE

__all__ = ["PER_IMAGE_FILE", "REQUIRED_KEYS", "RESULTS_FILE", "find_jobs", "read_per_image",
           "read_results", "write_json_atomic", "write_per_image"]

PER_IMAGE_FILE = "per_image_seed_iou.npz"
PER_IMAGE_COUNTS = ("intersection", "union")
REQUIRED_KEYS = ("dataset", "backbone", "cam", "proportion", "seed", "n_train", "metrics", "timings")


def read_results(path: str | Path) -> dict:
    """Load a `results.json` (a file or a job dir) and check the contract's keys."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    results = json.loads(path.read_text())
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(REQUIRED_KEYS)}")
    return results


def write_per_image(path: str | Path, per_image: Mapping, job: Mapping) -> Path:
    """`per_image_seed_iou.npz` (atomic, compressed): `index` int64 [N] (dataset indices of the evaluation split),
    `thresholds` float64 [T] (the seed sweep, ascending; empty without a background plane, then T = 1 below),
    `intersection` and `union` [N, T, K] pixel counts per class at every threshold (`SeedMIoU(per_image=True)`),
    stored in the smallest unsigned integer type that holds them (counts are never negative), and `job`, the JSON
    of the run that made them (`job_id`, the same as in its results.json; `config_fingerprint`; `classifier`, the
    classifier's identity), which `read_per_image` checks against the results beside it."""
    path = Path(path)
    arrays = {"index": np.asarray(per_image["index"], dtype=np.int64),
              "thresholds": np.asarray(per_image["thresholds"], dtype=np.float64)}
    for key in PER_IMAGE_COUNTS:
        counts = np.asarray(per_image[key], dtype=np.int64)
        if counts.ndim != 3 or counts.shape[:2] != (len(arrays["index"]), max(len(arrays["thresholds"]), 1)):
            raise ValueError(f"{path}: {key} of shape {counts.shape}; expected [N images, T thresholds, K classes] "
                             f"with N={len(arrays['index'])}, T={max(len(arrays['thresholds']), 1)}")
        arrays[key] = counts.astype(np.min_scalar_type(int(counts.max(initial=0))))
    arrays["job"] = np.asarray(json.dumps(dict(job), sort_keys=True))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def read_per_image(job_dir: str | Path) -> dict | None:
    """A job's per-image seed counts (`write_per_image`: the arrays, counts as int64, and `job` as a dict), or
    None when the job has none. Raises ValueError when they are not those of the job's results.json (a job killed
    between the two writes, or re-run without per-image scores: stale counts are never paired with other
    results), or for a file of an older job that kept the counts at its chosen threshold only."""
    job_dir = Path(job_dir)
    path = job_dir / PER_IMAGE_FILE
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        if "thresholds" not in arrays.files:
            raise ValueError(f"{path}: seed counts at the job's chosen threshold only (an older job); expected "
                             "them at every threshold of the sweep: rerun the job with overwrite=true")
        out = {key: arrays[key] for key in ("index", "thresholds")}
        out.update({key: arrays[key].astype(np.int64) for key in PER_IMAGE_COUNTS})
        job = json.loads(str(arrays["job"])) if "job" in arrays.files else {}
    try:
        results = json.loads((job_dir / RESULTS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        results = {}
    expected = results.get("job_id") if results.get("per_image_scores") else None
    if not job.get("job_id") or job.get("job_id") != expected:
        raise ValueError(f"{path}: stale per-image counts (of job {job.get('job_id') or 'unrecorded'}, while "
                         f"{RESULTS_FILE} is of job {expected or 'without per-image counts'}); expected the same "
                         "job: rerun it with overwrite=true")
    return {**out, "job": job}


def find_jobs(dirs: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """Every `results.json` below `dirs` (a dir, or a results.json itself), as (path, results) sorted by path.

    The same file reached through two of the given dirs is listed once. Raises FileNotFoundError for a dir
    that does not exist, ValueError for a results.json that breaks the contract (`read_results`).
    """
    paths: set[Path] = set()
    for entry in dirs:
        entry = Path(entry)
        if entry.is_file() and entry.name == RESULTS_FILE:
            paths.add(entry.resolve())
        elif entry.is_dir():
            paths.update(p.resolve() for p in entry.rglob(RESULTS_FILE))
        else:
            raise FileNotFoundError(f"{entry}: no such sweep dir or {RESULTS_FILE}")
    return [(path, read_results(path)) for path in sorted(paths)]
