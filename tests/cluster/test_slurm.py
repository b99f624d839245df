"""A 2-job sweep through the SLURM launcher on a real cluster (`scripts/slurm_local.sh up` starts a one-node
one): both jobs COMPLETED in sacct, both wrote results.json, and they shared one cached classifier.

Skips only where no cluster answers (no slurm, not started, not root to start it); `.ci/run` starts the local
cluster and sets BROADCAM_SLURM_REQUIRED=1, so in CI a missing cluster fails instead of skipping.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_JOB
from tests.helpers import run_cli

pytestmark = pytest.mark.slow

REQUIRED = os.environ.get("BROADCAM_SLURM_REQUIRED") == "1"
# One batch of 8 evaluation images (as tests/jobs/test_sweeps.py): this test checks orchestration, not scores.
LIGHT_EVAL = ["data.num_val=8", "eval.figure_images=2", "eval.box_thresholds.step=0.1"]
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


def slurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def cluster_problem() -> str | None:
    """Why no SLURM cluster can take a job from here, or None when one can."""
    missing = [tool for tool in ("sbatch", "sinfo", "sacct") if shutil.which(tool) is None]
    if missing:
        return f"no {', '.join(missing)} on PATH (SLURM not installed)"
    nodes = slurm("sinfo", "-h", "-N", "-o", "%t")
    if nodes.returncode != 0:
        return f"sinfo failed ({(nodes.stderr.strip() or nodes.stdout.strip() or 'no output').splitlines()[-1]})"
    if not any(state.rstrip("*") in ("idle", "mix", "alloc") for state in nodes.stdout.split()):
        return f"no node can run jobs (sinfo states: {nodes.stdout.split()})"
    accounting = slurm("sacct", "-n", "-X", "-S", "now")
    if accounting.returncode != 0:
        return f"sacct failed (no accounting, which submitit needs: {(accounting.stderr.strip() or 'no output').splitlines()[-1]})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = cluster_problem()
    if problem is not None:
        message = f"no SLURM cluster to submit to: {problem}; start one with `scripts/slurm_local.sh up` (root)"
        if REQUIRED:
            pytest.fail(f"{message} (BROADCAM_SLURM_REQUIRED=1: .ci/run started it, so it must answer)")
        pytest.skip(message)


def sacct_states(job_ids: list[str], wait_s: float = 60) -> dict[str, str]:
    """{job id: state} from sacct, waiting (bounded) until every job has a final state; slurmctld reports
    to slurmdbd asynchronously, so the last state can lag the job's end by a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        out = slurm("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids))
        assert out.returncode == 0, out.stderr
        states = dict(line.split("|", 1) for line in out.stdout.split())
        states = {job: state.split()[0] for job, state in states.items() if job in job_ids}
        if (len(states) == len(job_ids) and set(states.values()) <= FINAL_STATES) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def test_sweep_on_slurm_completes_both_jobs_sharing_one_classifier(slurm_cluster, tmp_path):
    # A fresh classifier cache (one job must train) and its own data root (the session's cache_dir holds
    # exactly the splits other tests count).
    sweep, classifiers = tmp_path / "sweep", tmp_path / "classifiers"
    args = ["-m", "hydra/launcher=slurm_cpu", "cam=cam,gradcam", "proportion=50", *TINY_JOB, *LIGHT_EVAL,
            f"data.root={tmp_path / 'synthetic'}", f"paths.cache_dir={classifiers}", f"hydra.sweep.dir={sweep}"]
    launched = run_cli(args)
    assert launched.returncode == 0, launched.stderr[-3000:]

    # submitit keeps one folder per array task, named <array job>_<index>: these are the SLURM jobs.
    job_ids = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert len(job_ids) == 2 and len({j.split("_")[0] for j in job_ids}) == 1, job_ids  # one array, 2 tasks
    assert sacct_states(job_ids) == {job: "COMPLETED" for job in job_ids}

    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted(r["cam"] for r in results) == ["cam", "gradcam"]
    assert len({r["classifier"]["key"] for r in results}) == 1
    assert sorted(r["classifier"]["cache_hit"] for r in results) == [False, True]  # one trained, one loaded
    entries = [p for p in (classifiers / "classifiers").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "net.pt").is_file()
