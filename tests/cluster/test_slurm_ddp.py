"""DDP jobs whose ranks SLURM starts (tasks per node = trainer.devices, CPU ranks on gloo), on the real one-node
cluster (`scripts/slurm_local.sh up`): a 2-job sweep scores like one process, the classifiers pass trains each
classifier once without hanging, and a failing rank ends its job in seconds with its one-line error last in every
task's log (issue 19). Skips where no cluster answers, unless BROADCAM_SLURM_REQUIRED=1 (`.ci/run`)."""
from __future__ import annotations

import json
import re

import pytest

from src.run import run_job
from tests.cluster.test_slurm import sacct_states, slurm, slurm_cluster  # noqa: F401  (the fixture)
from tests.conftest import TINY_JOB
from tests.helpers import compose_config, run_cli
from tests.jobs.test_ddp_ranks import CPU_DDP, broken_voc, voc_ddp  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

SLURM_DDP = ["hydra/launcher=slurm_cpu", *CPU_DDP, "trainer.devices=2"]
SMALL_EVAL = ["data.num_val=7", "data.eval_batch_size=1", "eval.figure_images=2"]  # odd: no padding hides
TIMEOUT_S = 1800  # the jobs queue behind each other on the cluster's 2 CPUs


def array_tasks(sweep) -> list[str]:
    """The SLURM jobs of a sweep: submitit's folders with task logs, `<array job>_<index>` (or `<job>` for a single
    job; an array's own folder holds only its submission script)."""
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and any(p.glob("*_log.out")))


def test_ddp_sweep_on_slurm_scores_like_one_process(slurm_cluster, tmp_path):
    sweep, data = tmp_path / "sweep", [*TINY_JOB, *SMALL_EVAL, f"data.root={tmp_path / 'synthetic'}",
                                       f"paths.cache_dir={tmp_path / 'cache'}"]
    launched = run_cli(["-m", *SLURM_DDP, "cam=cam,gradcam", *data, f"hydra.sweep.dir={sweep}"], timeout=TIMEOUT_S)
    assert launched.returncode == 0, launched.stderr[-3000:]
    jobs = array_tasks(sweep)
    assert len(jobs) == 2 and sacct_states(jobs) == {job: "COMPLETED" for job in jobs}
    results = {r["cam"]: r for r in (json.loads(p.read_text()) for p in sweep.glob("*/results.json"))}
    assert sorted(results) == ["cam", "gradcam"]
    assert {(r["ranks"], r["n_eval"], r["rank_batch_size"]) for r in results.values()} == {(2, 7, 4)}
    single = run_job(compose_config(data + ["cam=gradcam", "trainer=cpu", "+trainer.precision=32-true",
                                            f"paths.output_dir={tmp_path / 'single'}"]))
    assert single["classifier"]["cache_hit"] and single["classifier"]["key"] == results["gradcam"]["classifier"]["key"]
    assert results["gradcam"]["metrics"] == pytest.approx(single["metrics"], abs=1e-6)


def test_classifiers_pass_on_slurm_trains_each_classifier_once(slurm_cluster, tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    launched = run_cli(["-m", *SLURM_DDP, "job=classifiers", "cam=cam", "proportion=5,10", *TINY_JOB,
                        f"data.root={tmp_path / 'synthetic'}", f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep}"],
                       timeout=TIMEOUT_S)
    assert launched.returncode == 0, launched.stderr[-3000:]
    jobs = array_tasks(sweep)
    assert len(jobs) == 2 and sacct_states(jobs) == {job: "COMPLETED" for job in jobs}
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/classifier.json"))]
    assert [(s["trained"], s["ranks"]) for s in summaries] == [(True, 2), (True, 2)]
    entries = sorted(p.name for p in (cache / "classifiers").iterdir() if (p / "net.pt").is_file())
    assert entries == sorted(s["key"] for s in summaries) and len(entries) == 2


def test_a_failing_rank_on_slurm_ends_its_job_with_its_error_last_in_every_task_log(slurm_cluster, broken_voc,
                                                                                     tmp_path):
    root, bad = broken_voc
    sweep = tmp_path / "sweep"
    launched = run_cli(["-m", *SLURM_DDP, *voc_ddp(root, tmp_path), "data.eval_split=val", f"hydra.sweep.dir={sweep}"],
                       timeout=TIMEOUT_S)
    assert launched.returncode != 0  # the sweep reports its failed job
    [job] = array_tasks(sweep)
    assert sacct_states([job]) == {job: "FAILED"}
    logs = sorted((sweep / ".submitit" / job).glob("*_log.err"))
    assert len(logs) == 2, logs  # one per task (rank)
    expected = (f"error: DDP rank 1 of 2: {bad}: unreadable image (Truncated File Read); expected a JPEG, PNG, TIFF "
                "or BMP file")
    for log in logs:
        assert log.read_text().strip().splitlines()[-1] == expected, (log, log.read_text()[-2000:])
    # srun's own messages went to the batch step's file (launcher `additional_parameters.error`), not task 0's log
    assert "task 1: Exited with exit code 1" in (sweep / ".submitit" / f"{job}_srun.err").read_text()
    elapsed = slurm("sacct", "-n", "-X", "-P", "-o", "Elapsed", "-j", job).stdout.split()
    print(f"failing-rank job {job}: elapsed {elapsed}")  # the figure for the record; no timed assertion
    assert re.fullmatch(r"\d\d:\d\d:\d\d", elapsed[0])
