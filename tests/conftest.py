"""Shared fixtures: a tiny synthetic dataset cached once per test session, tiny job overrides, one finished tiny
sweep and the small ResNet the unit tests run on."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from src.runtime.logs import log_to_console

os.environ.setdefault("WANDB_MODE", "disabled")
# One intra-op thread for the tests and the jobs they start (which inherit the variable): their tensors are tiny,
# and on a shared 2-core machine a second thread makes every op wait for a descheduled peer (measured under load:
# a 64 px ResNet-18 forward took 0.8 s with 2 threads, 17 ms with 1). DDP ranks already get 1 thread each there.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
log_to_console()  # in-process jobs' log lines reach the (captured) stdout, as a Hydra job's console shows them
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# A job small enough for a test: 120 training images of 64 px, 16 evaluation images, 3 steps.
TINY_JOB = ["debug=fast", "data.num_train=120", "data.num_val=16", "data.num_test=16", "data.image_size=64",
            "logger=csv"]

# The shared sweep: two methods × two proportions (two classifiers: the method is not part of a classifier's key),
# 8 evaluation images, a light evaluation (2 figure images, box thresholds every 0.1).
SWEEP_CAMS, SWEEP_PROPORTIONS, SWEEP_NUM_VAL = ("cam", "gradcam"), (5, 10), 8
TINY_SWEEP = TINY_JOB + [f"data.num_val={SWEEP_NUM_VAL}", "eval.figure_images=2", "eval.box_thresholds.step=0.1",
                         f"cam={','.join(SWEEP_CAMS)}", f"proportion={','.join(map(str, SWEEP_PROPORTIONS))}"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache dir for the session, so the synthetic splits are rendered once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_overrides(cache_dir, tmp_path) -> list[str]:
    """Overrides for an in-process or subprocess job writing into tmp_path/job."""
    return job_overrides(cache_dir, tmp_path / "job")


def job_overrides(cache_dir: Path, job: Path) -> list[str]:
    """TINY_JOB writing into the folder `job` (for fixtures wider than one test, which cannot use tmp_path)."""
    return TINY_JOB + [f"paths.cache_dir={cache_dir}", f"paths.output_dir={job}", f"hydra.run.dir={job}"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """(sweep folder, its cache): one `python -m src.run -m` of TINY_SWEEP, run once for the session and only read
    by the tests of the multirun, the report and the demo (they write their own outputs under their tmp_path)."""
    from tests.helpers import run_cli  # helpers imports this module

    base = tmp_path_factory.mktemp("tiny_sweep")
    sweep, cache = base / "sweep", base / "cache"
    result = run_cli(["-m", *TINY_SWEEP, f"hydra.sweep.dir={sweep}", f"paths.cache_dir={cache}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep, cache


@pytest.fixture(scope="session")
def resnet18_small():
    """`resnet18_small` (the synthetic jobs' backbone) with random weights and torchvision's 1,000-class head, in
    eval mode, shared by the session: only for tests that leave it as they found it (a test that changes its mode,
    flags or hooks builds its own with `tests.helpers.small_resnet`)."""
    from tests.helpers import small_resnet

    return small_resnet(1000)

