"""Sweeps end to end (tiny jobs in subprocesses): the submitit local launcher (hydra/launcher=local), resuming a sweep that lost a
job, and two jobs racing for one classifier."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_JOB
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


# Lighter evaluation than TINY_JOB (these tests check orchestration, not scores): one batch of 8 images.
LIGHT_EVAL = ["data.num_val=8", "eval.figure_images=2", "eval.box_thresholds.step=0.1"]


def tiny(cache_dir: Path) -> list[str]:
    return TINY_JOB + LIGHT_EVAL + [f"paths.cache_dir={cache_dir}"]


def test_submitit_local_sweep_then_resume_redoes_only_the_missing_job(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "proportion=50,100", "cam=cam", *tiny(cache_dir), f"hydra.sweep.dir={sweep}"]
    launched = run_cli(args + ["hydra/launcher=local"])
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert (sweep / ".submitit").is_dir()  # the jobs really went through submitit
    found = sorted(sweep.glob("*/results.json"))
    assert [json.loads(p.read_text())["proportion"] for p in found] == [50.0, 100.0]

    # A sweep "killed" after its first job: the second job's results are gone.
    lost, kept = found[1], found[0]
    lost.unlink()
    kept_mtime = kept.stat().st_mtime_ns
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("[skip]") == 1 and str(kept) in resumed.stdout
    assert kept.stat().st_mtime_ns == kept_mtime  # the finished job was not redone
    assert json.loads(lost.read_text())["classifier"]["cache_hit"]  # redone, its classifier loaded from cache


def test_two_jobs_racing_for_one_classifier_train_it_once(cache_dir, tmp_path):
    classifiers = tmp_path / "cache"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    # Same data, backbone, proportion, seed and training = the same classifier key; only the CAM differs.
    common = [*TINY_JOB, *LIGHT_EVAL, f"paths.cache_dir={classifiers}", f"data.root={cache_dir / 'synthetic'}", "proportion=50"]
    jobs = {name: subprocess.Popen(
        [sys.executable, "-m", "src.run", *common, f"cam={name}", f"paths.output_dir={tmp_path / name}",
         f"hydra.run.dir={tmp_path / name}"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for name in ("cam", "gradcam")}
    outputs = {name: job.communicate(timeout=600) for name, job in jobs.items()}
    for name, job in jobs.items():
        assert job.returncode == 0, outputs[name][1][-3000:]
    assert sum(out.count("[cache hit]") for out, _ in outputs.values()) == 1
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in jobs]
    assert len({r["classifier"]["key"] for r in results}) == 1
    assert sorted(r["classifier"]["cache_hit"] for r in results) == [False, True]
    entries = [p for p in (classifiers / "classifiers").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "net.pt").is_file()  # one complete entry, no leftover temp dir
