"""DDP on the CPU (gloo, 2 ranks): a job and a 2-job multirun run once each with 2 ranks, write one results.json,
and score exactly like one process evaluating the same cached classifier; the BLS is the same.

Equality is exact up to float summation order: eval batches of 1 image make every forward identical in both runs
(batch composition changes oneDNN's conv results by ~1e-7), the metrics sum integer counts, and the only float
reduction that sees the rank split (cls_mAP over gathered scores) is order-independent; hence `abs=1e-6`.
7 evaluation images: an odd count, so a padding sampler would score one image twice and the sums would differ.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.bls import BroadLearningSystem
from src.reporting.results import read_per_image
from src.run import run_job
from tests.conftest import TINY_JOB
from tests.helpers import compose_config, flat, run_cli

pytestmark = pytest.mark.slow

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
ONE_PROCESS = ["trainer=cpu", "+trainer.precision=32-true"]  # same classifier key as DDP's (max_steps, precision)
SMALL_EVAL = ["data.num_val=7", "data.eval_batch_size=1"]
TIMEOUT_S = 1200  # ~1 min on two idle cores; 6-10 min measured on a machine shared at load 20


def _one_process(cache_dir, out, extra):
    overrides = TINY_JOB + SMALL_EVAL + ONE_PROCESS + extra
    overrides += [f"paths.cache_dir={cache_dir}", f"paths.output_dir={out}"]
    return run_job(compose_config(overrides))


def test_ddp_job_scores_like_one_process(cache_dir, tmp_path):
    job = tmp_path / "ddp"
    result = run_cli(TINY_JOB + SMALL_EVAL + DDP + [f"paths.cache_dir={cache_dir}", f"hydra.run.dir={job}"],
                     timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads((job / "results.json").read_text())
    assert ddp["ranks"] == 2 and ddp["n_eval"] == 7
    assert sorted(p.name for p in job.glob("*.json")) == ["results.json"] and (job / "cams.png").is_file()
    assert not list(job.glob("eval_checkpoint*"))

    single = _one_process(cache_dir, tmp_path / "single", [])
    assert single["ranks"] == 1 and single["classifier"]["cache_hit"]
    # One recipe on any device count: data.batch_size (8) is the global batch, 4 per rank here, so the two jobs
    # share a key because they train the same thing (not because the key ignores a difference).
    assert (ddp["rank_batch_size"], single["rank_batch_size"]) == (4, 8)
    assert single["classifier"]["key"] == ddp["classifier"]["key"]
    assert ddp["metrics"] == pytest.approx(single["metrics"], abs=1e-6)
    assert flat(ddp["details"]["seed_curve"]) == pytest.approx(flat(single["details"]["seed_curve"]), abs=1e-6)
    weights = [BroadLearningSystem.load(d / "bls.pt").cam_weights for d in (job, tmp_path / "single")]
    assert ddp["bls"]["n"] == single["bls"]["n"] == 120  # fitted once, on the whole subset
    assert torch.allclose(weights[0], weights[1], rtol=0, atol=1e-10)
    # per-image counts gathered from both ranks' uneven shares (4 + 3 images) equal the one-process ones
    per_image = [read_per_image(d) for d in (job, tmp_path / "single")]
    assert per_image[0]["index"].tolist() == list(range(7))
    for key in ("index", "intersection", "union"):
        np.testing.assert_array_equal(per_image[0][key], per_image[1][key])


def test_ddp_multirun_runs_each_job_once_with_two_ranks(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "cam=cam,gradcam"] + TINY_JOB + SMALL_EVAL + DDP
                     + [f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}"], timeout=2 * TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    found = sorted(sweep.glob("*/results.json"))
    assert len(found) == 2 and len([d for d in sweep.iterdir() if d.is_dir()]) == 2  # no sweep re-run by a rank
    jobs = {r["cam"]: r for r in (json.loads(p.read_text()) for p in found)}
    assert set(jobs) == {"cam", "gradcam"} and {r["ranks"] for r in jobs.values()} == {2}
    assert result.stdout.count("[cam | resnet18") == 1 and result.stdout.count("[gradcam | resnet18") == 1
    single = _one_process(cache_dir, tmp_path / "single", ["cam=gradcam"])
    assert jobs["gradcam"]["metrics"] == pytest.approx(single["metrics"], abs=1e-6)
