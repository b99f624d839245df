"""The results contract: `results.json` in each job's output dir, written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_FILE = "results.json"
REQUIRED_KEYS = ("dataset", "backbone", "cam", "proportion", "seed", "n_train", "metrics", "timings")


def write_json_atomic(path: str | Path, payload: dict) -> Path:
    """Write `payload` as JSON via a temp file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    tmp.replace(path)
    return path


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
