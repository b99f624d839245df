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
    # job folders are named by their overrides (not by job number): order them by proportion
    found = sorted(sweep.glob("*/results.json"), key=lambda p: json.loads(p.read_text())["proportion"])
    assert [json.loads(p.read_text())["proportion"] for p in found] == [50.0, 100.0]
    for results in found:  # Hydra's job log holds the job's story: its lines, with time, module and level
        story = (results.parent / "run.log").read_text()
        assert "][src.run][INFO] [cam | resnet18_small |" in story, story[-2000:]

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


def test_job_folder_names_come_from_the_overrides_only_and_stay_unique():
    from src.config.resolvers import job_dirname

    assert job_dirname("cam=cam,proportion=50") == "cam=cam,proportion=50"
    assert job_dirname("") == "default"
    lossy = ["data.root=/a/b,proportion=1", "data.root=/a_b,proportion=1", "data.root=_a_b,proportion=1",
             "cam.options.scales=[1.0,0.5]", "cam.options.scales=[1.0,0.5,2.0]", "x=" + "a" * 300, "x=" + "a" * 301, "x=a/b", "x=c/b"]
    names = [job_dirname(text) for text in lossy]
    assert len(set(names)) == len(names)
    assert all(len(name) <= 209 and "/" not in name and "[" not in name for name in names)
    assert job_dirname("data.root=/data/VOC2012,proportion=5").startswith("data.root=VOC2012,proportion=5_")
    sweep_cfg = (REPO / "conf" / "hydra" / "default.yaml").read_text()
    assert "hydra.job.num" not in sweep_cfg and "${job_dirname:${hydra.job.override_dirname}}" in sweep_cfg


def named_sweep(tmp_path: Path, cache_dir: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    """A multirun of tiny jobs in `tmp_path/outputs/broadcam/multiruns/<name>`, classifiers in tmp_path/cache."""
    return run_cli(["-m", *TINY_JOB, *LIGHT_EVAL, f"data.root={cache_dir / 'synthetic'}",
                    f"paths.outputs_dir={tmp_path / 'outputs'}", f"paths.cache_dir={tmp_path / 'cache'}",
                    f"sweep_name={name}", *args])


def test_a_named_sweep_extended_by_one_proportion_recomputes_exactly_the_new_job(cache_dir, tmp_path):
    first = named_sweep(tmp_path, cache_dir, "grow", "proportion=50,100", "cam=cam")
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "outputs" / "broadcam" / "multiruns" / "grow"
    before = {p: p.stat().st_mtime_ns for p in sweep.glob("*/results.json")}
    assert sorted(json.loads(p.read_text())["proportion"] for p in before) == [50.0, 100.0]

    grown = named_sweep(tmp_path, cache_dir, "grow", "proportion=25,50,100", "cam=cam")  # the new job comes first
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert grown.stdout.count("[skip]") == 2
    after = sorted(sweep.glob("*/results.json"))
    assert len(after) == 3 and set(before) < set(after)  # the old jobs kept their folders ...
    assert {p: p.stat().st_mtime_ns for p in before} == before  # ... and were not redone
    (new,) = set(after) - set(before)
    assert json.loads(new.read_text())["proportion"] == 25.0 and "proportion=25" in new.parent.name


def test_force_retrain_retrains_each_classifier_once_per_sweep_launch(cache_dir, tmp_path):
    sweep = tmp_path / "outputs" / "broadcam" / "multiruns" / "forced"
    keys = []
    for launch in range(2):  # the second launch redoes the jobs (overwrite) and retrains once more
        done = named_sweep(tmp_path, cache_dir, "forced", "proportion=50", "cam=cam,gradcam", "force_retrain=true",
                           "overwrite=true")
        assert done.returncode == 0, done.stderr[-3000:]
        results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
        assert len(results) == 2 and len({r["classifier"]["key"] for r in results}) == 1
        assert sorted(r["classifier"]["cache_hit"] for r in results) == [False, True], launch  # trained once
        meta = json.loads((Path(results[0]["classifier"]["dir"]) / "meta.json").read_text())
        keys.append(meta["launch_id"])
    assert None not in keys and keys[0] != keys[1]


def test_classifiers_pass_trains_each_classifier_once_then_cam_jobs_only_hit_the_cache(cache_dir, tmp_path):
    grid = ["proportion=50,100", "cam=cam,gradcam"]
    first = named_sweep(tmp_path, cache_dir, "staged", *grid, "job=classifiers")
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "outputs" / "broadcam" / "multiruns" / "staged"
    assert not list(sweep.rglob("results.json"))  # no CAM results from the classifiers pass
    trained = [json.loads(p.read_text()) for p in sweep.glob("*/classifier.json")]
    assert sorted(t["trained"] for t in trained) == [True, True] and len({t["key"] for t in trained}) == 2
    assert first.stdout.count("[skip] classifier") == 2  # the CAM axis' duplicates started and left at once
    entries = [p for p in (tmp_path / "cache" / "classifiers").iterdir() if p.is_dir()]
    assert len(entries) == 2

    second = named_sweep(tmp_path, cache_dir, "staged", *grid)
    assert second.returncode == 0, second.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert len(results) == 4 and all(r["classifier"]["cache_hit"] for r in results)
