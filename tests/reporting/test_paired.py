"""Paired bootstrap intervals of BroadCAM − method (src/reporting/paired.py): against scipy.stats.bootstrap
(paired, percentile) for one seed, hand-checkable cases, and the report's table from job dirs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from src.reporting.paired import bootstrap_difference, miou_of_sums, paired_differences, paired_table
from src.reporting.report import build_report
from src.reporting.results import PER_IMAGE_FILE, write_json_atomic, write_per_image


def random_counts(rng: np.random.Generator, seeds: int, images: int, classes: int, quality: float):
    """(intersection, union) [S, N, K]: union 50–150 px where a class is present, intersection a `quality`
    fraction of it with noise."""
    present = rng.random((seeds, images, classes)) < 0.4
    union = np.where(present, rng.integers(50, 150, (seeds, images, classes)), 0)
    fraction = np.clip(quality + rng.normal(0, 0.15, union.shape), 0, 1)
    return np.floor(union * fraction).astype(np.int64), union


def test_one_seed_equals_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(0)
    ref = random_counts(rng, 1, 120, 5, 0.6)
    worse = np.clip(0.45 + rng.normal(0, 0.15, ref[1].shape), 0, 1)
    other = (np.floor(ref[1] * worse).astype(np.int64), ref[1])  # the same images (same unions), a worse prediction

    def statistic(indices):
        i = indices.astype(int)
        return (miou_of_sums(ref[0][0, i].sum(0), ref[1][0, i].sum(0))
                - miou_of_sums(other[0][0, i].sum(0), other[1][0, i].sum(0)))

    oracle = stats.bootstrap((np.arange(120.0),), statistic, vectorized=False, n_resamples=4000,
                             method="percentile", random_state=1).confidence_interval
    diff, low, high = bootstrap_difference(ref, other, resamples=4000)
    assert diff == pytest.approx(statistic(np.arange(120.0)))
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.1 * width) and high == pytest.approx(oracle.high, abs=0.1 * width)
    assert 0 < low < diff < high


def test_identical_methods_give_zero_and_a_one_image_one_seed_interval_is_the_point():
    rng = np.random.default_rng(1)
    counts = random_counts(rng, 3, 40, 4, 0.5)
    assert bootstrap_difference(counts, counts) == (0.0, 0.0, 0.0)
    better = (counts[1] * 3 // 4, counts[1])
    worse = (counts[1] // 4, counts[1])
    single = bootstrap_difference((better[0][:1, :1], better[1][:1, :1]), (worse[0][:1, :1], worse[1][:1, :1]))
    assert single[0] == pytest.approx(single[1]) and single[1] == pytest.approx(single[2]) and single[0] > 0


def test_the_point_is_the_mean_over_seeds_of_the_full_data_difference():
    rng = np.random.default_rng(2)
    ref, other = random_counts(rng, 3, 60, 4, 0.6), random_counts(rng, 3, 60, 4, 0.4)
    diff, low, high = bootstrap_difference(ref, other)
    per_seed = [miou_of_sums(ref[0][s].sum(0), ref[1][s].sum(0)) - miou_of_sums(other[0][s].sum(0), other[1][s].sum(0))
                for s in range(3)]
    assert diff == pytest.approx(np.mean(per_seed)) and low < diff < high
    with pytest.raises(ValueError, match="same"):
        bootstrap_difference(ref, (other[0][:, :10], other[1][:, :10]))


def write_job(root, cam, proportion, seed, counts, index, classifier: str = "net"):
    """A finished job's results.json and per-image counts; jobs of one seed share the classifier `classifier`
    (its weights hash) unless told otherwise."""
    job = root / f"cam={cam},proportion={proportion:g},seed={seed}"
    job_id = f"{cam}-{proportion}-{seed}"
    identity = {"key": f"key-seed{seed}", "weights_sha1": f"{classifier}-seed{seed}", "trained_at": "t0"}
    write_per_image(job / PER_IMAGE_FILE, {"index": index, "intersection": counts[0], "union": counts[1]},
                    {"job_id": job_id, "classifier": identity})
    miou = float(miou_of_sums(counts[0].sum(0), counts[1].sum(0)))
    write_json_atomic(job / "results.json", {
        "dataset": "synthetic", "backbone": "resnet18_small", "cam": cam, "proportion": proportion, "seed": seed,
        "n_train": 10, "n_eval": len(index), "metrics": {"seed_mIoU": miou}, "timings": {"total_s": 1.0},
        "per_image_scores": PER_IMAGE_FILE, "job_id": job_id, "classifier": {"identity": identity},
        "config": {"cam": {"name": cam}, "proportion": proportion, "seed": seed}})
    return job


def test_report_refuses_to_pair_jobs_of_different_classifiers(tmp_path):
    rng = np.random.default_rng(4)
    counts = random_counts(rng, 1, 30, 4, 0.5)
    reference = write_job(tmp_path / "sweep", "broadcam", 1.0, 0, (counts[0][0], counts[1][0]), np.arange(30))
    other = write_job(tmp_path / "sweep", "cam", 1.0, 0, (counts[0][0], counts[1][0]), np.arange(30),
                      classifier="retrained")  # its classifier was retrained after the reference job ran
    with pytest.raises(ValueError, match="different classifiers") as refused:
        build_report([tmp_path / "sweep"], tmp_path / "report")
    message = str(refused.value)
    assert "\n" not in message and str(reference) in message and str(other) in message


def test_report_writes_the_paired_table_and_rejects_different_images(tmp_path):
    rng = np.random.default_rng(3)
    index = np.arange(30)
    for seed in (0, 1, 2):
        ref = random_counts(rng, 1, 30, 4, 0.7)
        write_job(tmp_path / "sweep", "broadcam", 1.0, seed, (ref[0][0], ref[1][0]), index)
        write_job(tmp_path / "sweep", "gradcam", 1.0, seed, (ref[1][0] // 5, ref[1][0]), index)  # much worse
        write_job(tmp_path / "sweep", "cam", 1.0, seed, (ref[0][0], ref[1][0]), index)  # the same maps
    build_report([tmp_path / "sweep"], tmp_path / "report")
    text = (tmp_path / "report" / "tables" / "synthetic_resnet18_small_seed_mIoU_paired.md").read_text()
    assert "3 × 30" in text and text in (tmp_path / "report" / "report.md").read_text()
    rows = {d.method: d for d in paired_differences(
        [{"cam": c, "method": c, "proportion": 1.0, "seed": s, "job_dir": str(j.parent)}
         for j in (tmp_path / "sweep").glob("*/results.json")
         for c, s in [(j.parent.name.split(",")[0][4:], int(j.parent.name[-1]))]])}
    assert rows["cam"].diff == rows["cam"].low == rows["cam"].high == 0.0 and not rows["cam"].excludes_zero
    assert rows["gradcam"].low > 30 and rows["gradcam"].excludes_zero
    assert f"**{rows['gradcam'].diff:+.2f} [" in paired_table(list(rows.values()), "t")

    counts = random_counts(rng, 1, 30, 4, 0.5)
    write_job(tmp_path / "bad", "broadcam", 1.0, 0, (counts[0][0], counts[1][0]), index)
    write_job(tmp_path / "bad", "cam", 1.0, 0, (counts[0][0], counts[1][0]), index[::-1].copy())
    with pytest.raises(ValueError, match=f"{PER_IMAGE_FILE}.*different evaluation images"):
        build_report([tmp_path / "bad"], tmp_path / "bad_report")
