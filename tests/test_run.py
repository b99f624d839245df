"""The pipeline end to end (tiny): the results contract, a multirun, and bad input rejected up front. Tests that
read the same kind of job share one finished job (module fixtures); the multirun is the session's shared sweep."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.config.checks import ConfigError
from src.reporting.paired import miou_of_sums
from src.reporting.results import PER_IMAGE_FILE, REQUIRED_KEYS, read_per_image, read_results
from src.run import run_job
from tests.conftest import SWEEP_CAMS, SWEEP_PROPORTIONS, job_overrides
from tests.helpers import assert_timings_add_up, compose_config, run_cli


@pytest.fixture(scope="module")
def broadcam_job(cache_dir, tmp_path_factory) -> tuple[dict, Path]:
    """(returned results, job folder) of one finished BroadCAM job with its seeds exported, read by the tests of
    the results contract and of the export."""
    job = tmp_path_factory.mktemp("broadcam") / "job"
    overrides = job_overrides(cache_dir, job) + ["proportion=50", "seed=1", "export.seeds=true"]
    return run_job(compose_config(overrides)), job


@pytest.fixture(scope="module")
def limited_eval_wandb_job(cache_dir, tmp_path_factory) -> tuple[dict, Path]:
    """(returned results, job folder) of one CAM job that scores 2 batches of 4 of its 16 evaluation images and
    logs to an offline W&B run, read by the tests of `n_eval` and of the W&B logger."""
    job = tmp_path_factory.mktemp("wandb") / "job"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_DIR", str(job.parent))
        results = run_job(compose_config(job_overrides(cache_dir, job) + [
            "logger=wandb", "cam=cam", "data.eval_batch_size=4", "+trainer.limit_test_batches=2"]))
    return results, job


def test_one_job_writes_the_results_contract(broadcam_job):
    results, job = broadcam_job
    on_disk = read_results(job)
    assert set(REQUIRED_KEYS) <= set(on_disk)
    assert on_disk["metrics"] == pytest.approx(results["metrics"])
    assert (on_disk["dataset"], on_disk["backbone"], on_disk["cam"]) == ("synthetic", "resnet18_small", "broadcam")
    assert on_disk["proportion"] == 50.0 and on_disk["seed"] == 1 and on_disk["n_train"] == 60
    for key in ("seed_mIoU", "cls_mAP", "PxAP", "MaxBoxAccV2"):
        assert 0.0 <= on_disk["metrics"][key] <= 100.0, key
    assert_timings_add_up(on_disk)
    assert {"bls_extract_s", "bls_fit_s"} <= set(on_disk["timings"])  # BroadCAM: features, then the fit
    assert on_disk["n_eval"] == 16 and on_disk["details"]["eval_split_size"] == 16
    assert len((job / "subset_ids.txt").read_text().split()) == 60
    assert on_disk["bls"]["n"] == 60 and (job / "bls.pt").exists()  # BroadCAM fits on the job's own subset
    assert (job / "cams.png").stat().st_size > 1000
    assert (job / "csv" / "metrics.csv").exists()
    assert not list(job.glob("*.tmp*"))
    # Each scored image's seed counts at every threshold, summed, give back the job's curve and its seed mIoU.
    per_image = read_per_image(job)
    assert on_disk["per_image_scores"] == PER_IMAGE_FILE and list(per_image["index"]) == list(range(16))
    curve = miou_of_sums(per_image["intersection"].sum(0), per_image["union"].sum(0))
    assert list(per_image["thresholds"]) == [t for t, _ in on_disk["details"]["seed_curve"]]
    assert list(curve) == pytest.approx([m for _, m in on_disk["details"]["seed_curve"]], abs=1e-9)
    assert max(curve) == pytest.approx(on_disk["metrics"]["seed_mIoU"], abs=1e-9)


@pytest.mark.parametrize(("override", "key"), [
    ("proportion=0", "proportion"), ("proportion=150", "proportion"), ("proportion=abc", "proportion"),
    ("cam.target_layers=[layer9]", "cam.target_layers"), ("backbone.name=resnet999", "backbone.name"),
])
def test_bad_values_fail_before_any_result(tiny_overrides, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        run_job(compose_config(tiny_overrides + [override]))
    assert not (tmp_path / "job" / "results.json").exists()


def test_unknown_stage_error_lists_close_matches(tiny_overrides):
    with pytest.raises(ConfigError, match=r"close matches: \['layer4'"):
        run_job(compose_config(tiny_overrides + ["cam.target_layers=[layer44]"]))


@pytest.mark.slow
@pytest.mark.parametrize(("args", "key"), [(["proportion=abc"], "proportion"), (["cam=nope"], "cam")])
def test_cli_bad_input_is_one_line(tiny_overrides, tmp_path, args, key):
    result = run_cli(tiny_overrides + args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}") and "expected" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "job" / "results.json").exists()


@pytest.mark.slow
def test_multirun_writes_one_results_per_job(tiny_sweep):
    sweep, _ = tiny_sweep  # the session's `python -m src.run -m` of TINY_SWEEP
    found = sorted(sweep.glob("*/results.json"))
    assert len(found) == len(SWEEP_CAMS) * len(SWEEP_PROPORTIONS)
    jobs = sorted((r["cam"], r["proportion"]) for r in (json.loads(p.read_text()) for p in found))
    assert jobs == [(cam, float(p)) for cam in sorted(SWEEP_CAMS) for p in sorted(SWEEP_PROPORTIONS)]


def test_export_writes_seeds_of_the_evaluation_split(broadcam_job):
    results, job = broadcam_job
    assert results["export"]["written"] == 16
    assert_timings_add_up(results)
    assert "export_s" in results["timings"]
    assert len(list((job / "seeds" / "png").glob("*.png"))) == 16
    assert len(list((job / "seeds" / "npy").glob("*.npy"))) == 16


@pytest.mark.slow
def test_wandb_logger_writes_an_offline_run_with_images(limited_eval_wandb_job):
    _, job = limited_eval_wandb_job
    runs = list((job / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list((runs[0] / "files" / "media" / "images").rglob("*.png"))


def test_same_seed_same_metrics_and_another_seed_differs(tiny_overrides, tmp_path):
    def metrics(seed: int, name: str) -> dict:
        overrides = [o for o in tiny_overrides if not o.startswith(("paths.output_dir", "hydra.run.dir"))]
        return run_job(compose_config(overrides + [f"seed={seed}", "cam=cam", "force_retrain=true",
                                                   f"paths.output_dir={tmp_path / name}"]))["metrics"]

    first = metrics(0, "a")
    assert_timings_add_up(read_results(tmp_path / "a"))
    assert metrics(0, "b") == first  # exact: on the CPU a seeded job repeats bit for bit
    assert metrics(1, "c") != first


def test_n_eval_counts_the_images_actually_scored(limited_eval_wandb_job):
    results, _ = limited_eval_wandb_job
    assert results["n_eval"] == 8 and results["details"]["eval_split_size"] == 16
    assert_timings_add_up(results)


@pytest.mark.slow
def test_cli_multiscale_flip_job_and_its_last_log_line_gives_the_timings(tiny_overrides, tmp_path):
    result = run_cli(tiny_overrides + ["cam.options.scales=[1.0,0.5]", "cam.options.flip=true", "data.num_val=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path / "job")
    assert results["config"]["cam"]["options"]["scales"] == [1.0, 0.5] and results["config"]["cam"]["options"]["flip"]
    assert_timings_add_up(results)
    last = result.stdout.strip().splitlines()[-1]
    assert all(f"{name}=" in last for name in results["timings"]), last
