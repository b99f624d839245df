"""Paired differences of seed mIoU between a reference method (BroadCAM) and every other method of a table, with
bootstrap confidence intervals over images and seeds.

Each job keeps its evaluation images' seed intersection and union per class (`per_image_seed_iou.npz`, at the
job's own threshold). At a proportion, the reference and another method share their seeds (the same classifier
for both: checked, jobs that used different ones are refused) and their evaluation images, so their difference is paired: one bootstrap replicate draws the seeds
with replacement and the images with replacement, the same draw for both methods, recomputes each method's
mIoU per drawn seed from the summed counts of the drawn images, and averages the per-seed differences. The
interval is the percentile interval of those replicates; the point estimate is the mean over seeds of the
difference on all images (the difference of the table's means). Each job's threshold stays the one it chose on
all images, for both methods alike.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from src.reporting.results import PER_IMAGE_FILE, read_per_image

REFERENCE = "broadcam"


@dataclass(frozen=True)
class PairedDifference:
    """reference − `method` in seed mIoU points at `proportion`: `diff` and its `level` interval [`low`, `high`]
    over `seeds` seeds and `images` images."""

    proportion: float
    method: str
    diff: float
    low: float
    high: float
    seeds: int
    images: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def miou_of_sums(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """mIoU (%) over the last axis: the mean IoU of the classes whose union is not empty."""
    defined = union > 0
    iou_sum = np.where(defined, intersection / np.maximum(union, 1), 0.0).sum(-1)
    count = defined.sum(-1)
    return np.where(count > 0, iou_sum / np.maximum(count, 1), np.nan) * 100


def bootstrap_difference(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
                         resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(difference, low, high) of mIoU(reference) − mIoU(other), each given as (intersection, union) [S, N, K]
    counts of S seeds × N images (the same seeds and images, in the same order, for both)."""
    (ref_i, ref_u), (oth_i, oth_u) = reference, other
    if ref_i.shape != oth_i.shape or ref_i.ndim != 3:
        raise ValueError(f"paired counts of shapes {ref_i.shape} and {oth_i.shape}: expected the same [S, N, K]")
    seeds, images, _ = ref_i.shape
    point = float(np.mean(miou_of_sums(ref_i.sum(1), ref_u.sum(1)) - miou_of_sums(oth_i.sum(1), oth_u.sum(1))))
    rng = np.random.default_rng(seed)
    image_weights = rng.multinomial(images, np.full(images, 1 / images), size=resamples).astype(np.float64)
    seed_weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples) / seeds

    def per_seed(counts: np.ndarray) -> np.ndarray:  # [S, N, K] → [B, S, K]: each replicate's summed counts
        return np.einsum("bn,snk->bsk", image_weights, counts.astype(np.float64))

    diffs = miou_of_sums(per_seed(ref_i), per_seed(ref_u)) - miou_of_sums(per_seed(oth_i), per_seed(oth_u))
    replicates = np.sum(seed_weights * diffs, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return point, float(low), float(high)


def paired_differences(rows: list[dict], reference: str = REFERENCE, resamples: int = 2000,
                       level: float = 0.95) -> list[PairedDifference]:
    """reference − each other method, per proportion, over the seeds both have, for the rows of one table (one
    setting) whose jobs kept per-image counts. Empty when the reference is absent or no job kept them. Raises
    ValueError when two paired jobs scored different images."""
    counts: dict[tuple[str, float], dict[int, dict]] = defaultdict(dict)
    for row in rows:
        per_image = read_per_image(row["job_dir"])
        if per_image is not None:
            counts[(row.get("method", row["cam"]), row["proportion"])][row["seed"]] = {**per_image, "dir": row["job_dir"]}
    out = []
    for (method, proportion), by_seed in sorted(counts.items(), key=lambda item: (item[0][1], item[0][0])):
        ref = counts.get((reference, proportion), {})
        if method == reference or not ref:
            continue
        seeds = sorted(set(by_seed) & set(ref))
        if not seeds:
            continue
        for s in seeds:
            check_same_classifier(ref[s], by_seed[s])
            if not np.array_equal(by_seed[s]["index"], ref[s]["index"]):
                raise ValueError(f"{by_seed[s]['dir']}/{PER_IMAGE_FILE} and {ref[s]['dir']}/{PER_IMAGE_FILE}: "
                                 "different evaluation images; expected the same split for a paired difference")
        def counts_of(jobs: dict) -> tuple[np.ndarray, np.ndarray]:  # [S, N, K] intersection and union
            return tuple(np.stack([jobs[s][key] for s in seeds]) for key in ("intersection", "union"))

        diff, low, high = bootstrap_difference(counts_of(ref), counts_of(by_seed), resamples, level)
        out.append(PairedDifference(proportion, method, diff, low, high, len(seeds), len(ref[seeds[0]]["index"])))
    return out


def check_same_classifier(a: dict, b: dict) -> None:
    """Two jobs' per-image counts (`read_per_image`, with `dir`) are paired only when both jobs used the same
    classifier (the identity recorded in the files: key, weights hash, cache entry)."""
    first, second = (a["job"].get("classifier"), b["job"].get("classifier"))
    if not first or first != second:
        def short(identity):
            return f"{identity.get('key')}/{str(identity.get('weights_sha1'))[:12]}" if identity else "unrecorded"
        raise ValueError(f"{a['dir']} and {b['dir']}: different classifiers ({short(first)} vs {short(second)}); "
                         "expected the same for a paired difference: rerun the stale job")


def paired_table(differences: list[PairedDifference], title: str, reference: str = REFERENCE,
                 level: float = 0.95) -> str:
    """Markdown: rows = other methods, columns = proportions, cells `+d [low, high]`, in bold where the interval
    excludes 0."""
    proportions = sorted({d.proportion for d in differences})
    methods = sorted({d.method for d in differences})
    cell = {(d.method, d.proportion): d for d in differences}
    sizes = sorted({(d.seeds, d.images) for d in differences})
    lines = [f"### seed_mIoU: {reference} − method, paired {level:.0%} interval — {title}", "",
             f"Points of seed mIoU; bootstrap over images and seeds (the same draw for both methods; "
             f"seeds × images: {', '.join(f'{s} × {n}' for s, n in sizes)}); **bold**: the interval excludes 0.", "",
             "| method | " + " | ".join(f"{p:g}%" for p in proportions) + " |",
             "|---|" + "---:|" * len(proportions)]
    for method in methods:
        texts = []
        for p in proportions:
            d = cell.get((method, p))
            text = "–" if d is None else f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
            texts.append(f"**{text}**" if d is not None and d.excludes_zero else text)
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"
