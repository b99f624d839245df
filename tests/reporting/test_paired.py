"""Paired bootstrap intervals of BroadCAM − method (src/reporting/paired.py): against scipy.stats.bootstrap
(paired, percentile) for one seed, a brute-force resampling that re-chooses each job's threshold, a method
with a noisy optimum, hand-checkable cases, and the report's table from job dirs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from src.reporting.paired import (bootstrap_difference, bootstrap_weights, miou_of_sums, paired_differences,
                                  paired_table)
from src.reporting.report import build_report
from src.reporting.results import PER_IMAGE_FILE, read_per_image, write_json_atomic, write_per_image


def random_counts(rng: np.random.Generator, seeds: int, images: int, classes: int, quality: float):
    """(intersection, union) [S, N, K]: union 50–150 px where a class is present, intersection a `quality`
    fraction of it with noise."""
    present = rng.random((seeds, images, classes)) < 0.4
    union = np.where(present, rng.integers(50, 150, (seeds, images, classes)), 0)
    fraction = np.clip(quality + rng.normal(0, 0.15, union.shape), 0, 1)
    return np.floor(union * fraction).astype(np.int64), union


def one_threshold(counts):
    """[S, N, K] counts → [S, N, 1, K]: a sweep of one threshold."""
    return tuple(c[:, :, None] for c in counts)


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
    diff, low, high = bootstrap_difference(one_threshold(ref), one_threshold(other), resamples=4000)
    assert diff == pytest.approx(statistic(np.arange(120.0)))
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.1 * width) and high == pytest.approx(oracle.high, abs=0.1 * width)
    assert 0 < low < diff < high


def test_identical_methods_give_zero_and_a_one_image_one_seed_interval_is_the_point():
    rng = np.random.default_rng(1)
    counts = random_counts(rng, 3, 40, 4, 0.5)
    counts = one_threshold(counts)
    assert bootstrap_difference(counts, counts) == (0.0, 0.0, 0.0)
    better = (counts[1] * 3 // 4, counts[1])
    worse = (counts[1] // 4, counts[1])
    single = bootstrap_difference((better[0][:1, :1], better[1][:1, :1]), (worse[0][:1, :1], worse[1][:1, :1]))
    assert single[0] == pytest.approx(single[1]) and single[1] == pytest.approx(single[2]) and single[0] > 0


def test_the_point_is_the_mean_over_seeds_of_the_full_data_difference():
    rng = np.random.default_rng(2)
    ref, other = random_counts(rng, 3, 60, 4, 0.6), random_counts(rng, 3, 60, 4, 0.4)
    diff, low, high = bootstrap_difference(one_threshold(ref), one_threshold(other))
    per_seed = [miou_of_sums(ref[0][s].sum(0), ref[1][s].sum(0)) - miou_of_sums(other[0][s].sum(0), other[1][s].sum(0))
                for s in range(3)]
    assert diff == pytest.approx(np.mean(per_seed)) and low < diff < high
    with pytest.raises(ValueError, match="same"):
        bootstrap_difference(one_threshold(ref), one_threshold((other[0][:, :10], other[1][:, :10])))


def brute_force_interval(ref, other, resamples, rechoose=True, level=0.95):
    """The paired bootstrap written out: each replicate's images and seeds as index lists (the same draws as
    `bootstrap_weights`), each job's mIoU curve on its drawn images, its best threshold (or the one chosen on
    all images), the difference averaged over the drawn seeds."""
    seeds, images = ref[0].shape[:2]
    image_weights, seed_weights = bootstrap_weights(seeds, images, resamples)

    def score(counts, s, drawn):
        curve = [miou_of_sums(counts[0][s, drawn, t].sum(0), counts[1][s, drawn, t].sum(0))
                 for t in range(counts[0].shape[2])]
        if rechoose:
            return max(curve)
        full = [miou_of_sums(counts[0][s, :, t].sum(0), counts[1][s, :, t].sum(0)) for t in range(counts[0].shape[2])]
        return curve[int(np.argmax(full))]

    replicates = []
    for b in range(resamples):
        drawn = np.repeat(np.arange(images), image_weights[b])
        drawn_seeds = np.repeat(np.arange(seeds), seed_weights[b])
        replicates.append(np.mean([score(ref, s, drawn) - score(other, s, drawn) for s in drawn_seeds]))
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(replicates, [tail, 100 - tail]))


def test_rechosen_thresholds_equal_a_brute_force_resampling():
    rng = np.random.default_rng(4)
    seeds, images, thresholds, classes = 2, 7, 4, 3
    shape = (seeds, images, thresholds, classes)
    union = rng.integers(20, 60, shape) * (rng.random(shape) < 0.7)
    ref = (np.floor(union * rng.random(shape)).astype(np.int64), union)
    other = (np.floor(union * rng.random(shape) * 0.9).astype(np.int64), union)
    diff, low, high = bootstrap_difference(ref, other, resamples=60)
    assert (low, high) == pytest.approx(brute_force_interval(ref, other, 60), abs=1e-9)
    fixed = bootstrap_difference(ref, other, resamples=60, rule="fixed")
    assert fixed[1:] == pytest.approx(brute_force_interval(ref, other, 60, rechoose=False), abs=1e-9)
    assert fixed[1:] != pytest.approx((low, high), abs=1e-3)  # the case does re-choose thresholds
    full = [max(miou_of_sums(c[0][s].sum(0), c[1][s].sum(0))) for c in (ref, other) for s in range(seeds)]
    assert diff == fixed[0] == pytest.approx(np.mean(full[:seeds]) - np.mean(full[seeds:]))
    # counts too large for float32 sums (VOC-sized images) take the float64 path; IoUs do not change with the scale
    scaled = [tuple(c * 1_000_000 for c in counts) for counts in (ref, other)]
    assert bootstrap_difference(*scaled, resamples=60) == pytest.approx((diff, low, high), abs=1e-9)


def test_a_noisy_optimum_widens_the_interval_only_when_the_threshold_is_rechosen():
    """The other method peaks at threshold a, where every image scores alike (mIoU 50 on any draw), while
    threshold b scores 49 on all images but swings by several points from draw to draw: re-chosen on each
    draw, b wins about half the time, which the fixed rule never sees."""
    rng = np.random.default_rng(5)
    images = 200
    ref = one_threshold(random_counts(rng, 1, images, 2, 0.7))
    union = np.full((1, images, 2, 2), 100)
    inter = np.empty_like(union)
    inter[:, :, 0] = 50  # threshold a
    inter[:, :, 1] = np.where(rng.permutation(images) < images // 2, 0, 98)[None, :, None]  # threshold b
    other = (inter, union)
    fixed = bootstrap_difference(ref, other, rule="fixed")
    rechosen = bootstrap_difference(ref, other)
    assert fixed[0] == rechosen[0]
    assert rechosen[2] - rechosen[1] > 1.5 * (fixed[2] - fixed[1])
    with pytest.raises(ValueError, match="rule"):
        bootstrap_difference(ref, other, rule="best")


def write_job(root, cam, proportion, seed, counts, index, classifier: str = "net"):
    """A finished job whose per-image counts are `counts` ([N, K]: one threshold, or [N, T, K]); jobs of one seed
    share the classifier `classifier` (its weights hash) unless told otherwise."""
    job = root / f"cam={cam},proportion={proportion:g},seed={seed}"
    job_id = f"{cam}-{proportion}-{seed}"
    identity = {"key": f"key-seed{seed}", "weights_sha1": f"{classifier}-seed{seed}", "trained_at": "t0"}
    counts = tuple(c[:, None] if c.ndim == 2 else c for c in counts)
    write_per_image(job / PER_IMAGE_FILE, {"index": index, "thresholds": np.arange(counts[0].shape[1]) / 100,
                                           "intersection": counts[0], "union": counts[1]},
                    {"job_id": job_id, "classifier": identity})
    miou = float(max(miou_of_sums(counts[0].sum(0), counts[1].sum(0))))
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
    assert "re-chooses every job's background threshold" in text
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


def test_per_image_counts_are_stored_compactly_and_an_older_file_is_a_one_line_error(tmp_path):
    counts = np.zeros((3, 60, 21), dtype=np.int64)
    counts[:, :, 0] = 187_500  # a VOC image's pixels: more than 16 bits
    write_per_image(tmp_path / "voc" / PER_IMAGE_FILE, {"index": np.arange(3), "thresholds": np.arange(60) / 100,
                                                        "intersection": counts // 2, "union": counts},
                    {"job_id": "voc-job"})
    write_json_atomic(tmp_path / "voc" / "results.json", {"job_id": "voc-job", "per_image_scores": PER_IMAGE_FILE})
    with np.load(tmp_path / "voc" / PER_IMAGE_FILE) as arrays:
        assert arrays["union"].dtype == np.uint32 and arrays["intersection"].shape == (3, 60, 21)
    back = read_per_image(tmp_path / "voc")
    assert back["union"].dtype == np.int64 and np.array_equal(back["union"], counts)
    with pytest.raises(ValueError, match=r"expected \[N images, T thresholds, K classes\]"):
        write_per_image(tmp_path / "bad" / PER_IMAGE_FILE, {"index": np.arange(3), "thresholds": [0.1],
                                                            "intersection": counts[:, 0], "union": counts[:, 0]},
                        {"job_id": "bad-job"})
    (tmp_path / "old").mkdir()
    np.savez_compressed(tmp_path / "old" / PER_IMAGE_FILE, index=np.arange(3), intersection=counts[:, 0],
                        union=counts[:, 0])
    with pytest.raises(ValueError, match="overwrite=true"):
        read_per_image(tmp_path / "old")
