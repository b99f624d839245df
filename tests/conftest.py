"""Shared fixtures: a tiny synthetic dataset cached once per test session, tiny job overrides."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.runtime.logs import log_to_console

os.environ.setdefault("WANDB_MODE", "disabled")
log_to_console()  # in-process jobs' log lines reach the (captured) stdout, as a Hydra job's console shows them
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# A job small enough for a test: 120 training images of 64 px, 16 evaluation images, 3 steps.
TINY_JOB = ["debug=fast", "data.num_train=120", "data.num_val=16", "data.num_test=16", "data.image_size=64",
            "logger=csv"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache dir for the session, so the synthetic splits are rendered once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_overrides(cache_dir, tmp_path) -> list[str]:
    """Overrides for an in-process or subprocess job writing into tmp_path/job."""
    return TINY_JOB + [f"paths.cache_dir={cache_dir}", f"paths.output_dir={tmp_path / 'job'}",
                       f"hydra.run.dir={tmp_path / 'job'}"]
