"""Preemption on a real SLURM cluster (issue 20): a job signalled with `scancel --signal=USR1` (what SLURM sends
before a time limit or a preemption) is requeued by submitit, resumes from its checkpoint and completes, and its
scores belong to the network the cache holds.

- mid-training: the job resumes training from the step the signal checkpointed (not step 0), trains to the
  budget, caches the network; its metrics equal those of a second job that loads that cached classifier;
- mid-CAM-pass: the job resumes its evaluation after the batches it checkpointed; its metrics equal those of an
  uninterrupted evaluation of the same classifier.

The jobs are tiny but long enough to be signalled in the middle (300 steps; 80 evaluation batches): the test
waits for the first checkpoint file to appear, then signals. Same skip/fail rule as tests/cluster/test_slurm.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.test_slurm import LIGHT_EVAL, sacct_states, slurm, slurm_cluster  # noqa: F401 (a fixture)
from tests.conftest import REPO, TINY_JOB
from tests.helpers import run_cli

pytestmark = pytest.mark.slow

STEPS = 60  # training budget of the signalled job: long enough on one core to be signalled mid-way


@pytest.fixture
def launch():
    """`launch(args, sweep)`: `python -m src.run <args>` in the background (the Hydra launcher process waits for
    the SLURM job). A test that fails leaves nothing behind: its launcher is killed and its jobs cancelled."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(args: list[str], sweep: Path) -> subprocess.Popen:
        env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        launcher = subprocess.Popen([sys.executable, "-m", "src.run", *args, f"hydra.sweep.dir={sweep}"], cwd=REPO,
                                    env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append((launcher, sweep))
        return launcher

    yield start
    for launcher, sweep in started:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        jobs = [p.name for p in (sweep / ".submitit").glob("*") if p.is_dir()]
        if jobs:
            slurm("scancel", *jobs)


def wait_for(root: Path, pattern: str, launcher: subprocess.Popen, limit_s: float = 300) -> Path:
    """The first file under `root` matching `pattern` (a glob), polled until it appears; fails if the launcher
    ends first."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        if launcher.poll() is not None:
            pytest.fail(f"the sweep ended before {root / pattern} appeared:\n{launcher.stdout.read()[-3000:]}")
        time.sleep(0.1)
    launcher.kill()
    pytest.fail(f"{root / pattern} did not appear within {limit_s} s")


def signal_and_finish(sweep: Path, launcher: subprocess.Popen) -> tuple[str, str, dict]:
    """USR1 to the sweep's one SLURM job, then wait for it: (job id, its log, its results)."""
    (job_id,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]  # one job: no array
    sent = slurm("scancel", "--signal=USR1", job_id)
    assert sent.returncode == 0, sent.stderr
    out, _ = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, out[-3000:]
    assert sacct_states([job_id]) == {job_id: "COMPLETED"}
    history = slurm("sacct", "-D", "-n", "-X", "-P", "-o", "State", "-j", job_id).stdout.split()
    assert "REQUEUED" in history, history  # the first run requeued itself
    log = "".join(p.read_text() for p in sorted((sweep / ".submitit" / job_id).glob("*_log.*")))
    (results_file,) = sweep.glob("*/results.json")
    return job_id, log, json.loads(results_file.read_text())


def test_a_job_signalled_mid_training_resumes_from_its_checkpoint_and_scores_the_cached_network(
        slurm_cluster, launch, tmp_path):  # noqa: F811
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    job = ["cam=cam", *TINY_JOB, *LIGHT_EVAL, f"trainer.max_steps={STEPS}", "train_checkpoint_every=5",
           f"data.root={tmp_path / 'synthetic'}", f"paths.cache_dir={cache}"]
    launcher = launch(["-m", "hydra/launcher=slurm_cpu", *job], sweep)
    wait_for(cache, "train_checkpoints/*.ckpt", launcher)  # training has passed step 5
    _, log, results = signal_and_finish(sweep, launcher)

    resumed = [int(step) for step in re.findall(r"resuming from step (\d+)", log)]
    assert len(resumed) == 1 and 0 < resumed[0] < STEPS, log[-3000:]
    assert f"trained to step {STEPS} (resumed from [{resumed[0]}])" in log
    assert results["classifier"]["resumed_from_steps"] == resumed and not results["classifier"]["cache_hit"]
    assert not list((cache / "train_checkpoints").glob("*.ckpt"))  # cached: the training checkpoint is gone
    assert not list(sweep.glob("*/hpc_ckpt_*.ckpt"))  # Lightning's auto-requeue stayed off

    second = run_cli([*job, f"paths.output_dir={tmp_path / 'second'}", f"hydra.run.dir={tmp_path / 'second'}"])
    assert second.returncode == 0, second.stderr[-3000:]
    reloaded = json.loads((tmp_path / "second" / "results.json").read_text())
    assert reloaded["classifier"]["cache_hit"]
    assert reloaded["classifier"]["identity"] == results["classifier"]["identity"]
    assert reloaded["metrics"] == pytest.approx(results["metrics"], abs=1e-9)


def test_a_job_signalled_mid_cam_pass_resumes_its_evaluation_and_equals_an_uninterrupted_one(
        slurm_cluster, launch, tmp_path):  # noqa: F811
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    job = ["cam=cam", *TINY_JOB, *LIGHT_EVAL, "data.num_val=160", "data.eval_batch_size=2",
           "eval.checkpoint_every=1", f"data.root={tmp_path / 'synthetic'}", f"paths.cache_dir={cache}"]
    launcher = launch(["-m", "hydra/launcher=slurm_cpu", *job], sweep)
    wait_for(sweep, "*/eval_checkpoint.pt", launcher)  # the CAM pass has scored a batch
    _, log, results = signal_and_finish(sweep, launcher)

    done = [int(n) for n in re.findall(r"\[eval\] resumed after (\d+) batches", log)]
    assert len(done) == 1 and 0 < done[0] < 80, log[-3000:]
    assert results["classifier"]["cache_hit"]  # the requeued job loaded the classifier its first run cached

    whole = run_cli([*job, f"paths.output_dir={tmp_path / 'whole'}", f"hydra.run.dir={tmp_path / 'whole'}"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    uninterrupted = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert uninterrupted["classifier"]["identity"] == results["classifier"]["identity"]
    assert results["metrics"] == pytest.approx(uninterrupted["metrics"], abs=1e-9)
