"""What the scale-out benchmarks share: a tiny real job's parts (datamodule, classifier, CAM) from the real config."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

import src.config.resolvers  # noqa: F401  (the configs' resolvers)
from src.jobs.build import Job, build_job, check_config, job_settings

REPO = Path(__file__).resolve().parents[2]


def job_parts(overrides: list[str]) -> Job:
    """The built job of `python -m src.run <overrides>` without running it; files go to a new temp job dir, the
    synthetic data to `outputs/bench/cache` (rendered once)."""
    out = tempfile.mkdtemp(prefix="bench-job-")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"paths.output_dir={out}", "logger=none",
                                           f"paths.cache_dir={REPO / 'outputs' / 'bench' / 'cache'}"])
    check_config(cfg)
    return build_job(cfg, job_settings(cfg))
