"""Paired differences of seed mIoU between a reference method (BroadCAM) and every other method of a table, with
bootstrap confidence intervals over images and seeds.

Each job keeps its evaluation images' seed intersection and union per class at every background threshold of
its sweep (`per_image_seed_iou.npz`). At a proportion, the reference and another method share their seeds (the
same classifier for both: checked, jobs that used different ones are refused) and their evaluation images, so
their difference is paired: one bootstrap replicate draws the seeds with replacement and the images with
replacement, the same draw for both methods, and averages the per-seed differences of mIoU recomputed from the
summed counts of the drawn images. The interval is the
percentile interval of those replicates; the point estimate is the mean over seeds of the difference on all
images (the difference of the table's means).

Which threshold a replicate scores (`rule`): each job's seed mIoU is the best of its sweep, chosen on the very
images the bootstrap resamples, so by default (`rechosen`) every replicate re-chooses each job's threshold on
its drawn images, as the job would have on them: the selection's own variability is part of the interval.
`fixed` keeps each job's threshold chosen on all images (the narrower, anti-conservative rule of earlier
reports; kept for comparison).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from src.reporting.results import PER_IMAGE_FILE, read_per_image

REFERENCE = "broadcam"
RULES = ("rechosen", "fixed")  # which threshold a bootstrap replicate scores (module docstring)
RULE_TEXT = {"rechosen": "each replicate re-chooses every job's background threshold on its drawn images",
             "fixed": "each job's background threshold stays the one chosen on all images (selection not resampled)"}


@dataclass(frozen=True)
class PairedDifference:
    """reference − `method` in seed mIoU points at `proportion`: `diff` and its `level` interval [`low`, `high`]
    over `seeds` seeds and `images` images, each job's threshold taken by `rule` (`RULES`)."""

    proportion: float
    method: str
    diff: float
    low: float
    high: float
    seeds: int
    images: int
    rule: str = "rechosen"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def miou_of_sums(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """mIoU (%) over the last axis: the mean IoU of the classes whose union is not empty."""
    defined = union > 0
    iou_sum = np.where(defined, intersection / np.maximum(union, 1), 0.0).sum(-1)
    count = defined.sum(-1)
    return np.where(count > 0, iou_sum / np.maximum(count, 1), np.nan) * 100


def bootstrap_weights(seeds: int, images: int, resamples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The draws of a paired bootstrap: (image_weights [B, N], seed_weights [B, S]) int64, how many times each
    image / seed is drawn in each of the B replicates (rows sum to N and S)."""
    rng = np.random.default_rng(seed)
    image_weights = rng.multinomial(images, np.full(images, 1 / images), size=resamples)
    seed_weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
    return image_weights, seed_weights


def best_miou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """[..., T, K] counts summed over images → [...] the best mIoU (%) over the T thresholds (a job's seed mIoU)."""
    return np.nanmax(miou_of_sums(intersection, union), axis=-1)


def chosen_threshold(intersection: np.ndarray, union: np.ndarray) -> int:
    """[N, T, K] one job's counts → the index of the threshold its mIoU on all N images peaks at (the first on
    ties, as `SeedMIoU` chooses)."""
    return int(np.nanargmax(miou_of_sums(intersection.sum(0), union.sum(0))))


def at_chosen_threshold(intersection: np.ndarray, union: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[S, N, T, K] → [S, N, 1, K]: each seed's counts at the threshold it chose on all its images."""
    chosen = [chosen_threshold(intersection[s], union[s]) for s in range(len(intersection))]
    return tuple(np.stack([c[s, :, t:t + 1] for s, t in enumerate(chosen)]) for c in (intersection, union))


def bootstrap_difference(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
                         resamples: int = 2000, level: float = 0.95, seed: int = 0, rule: str = "rechosen",
                         chunk: int = 250) -> tuple[float, float, float]:
    """(difference, low, high) of mIoU(reference) − mIoU(other), each given as (intersection, union) [S, N, T, K]
    counts of S seeds × N images × T thresholds (the same seeds and images, in the same order, for both; T may
    differ). `rule` (module docstring): `rechosen` takes each job's best threshold in every replicate, `fixed`
    the one chosen on all images. Replicates are computed `chunk` at a time to bound memory."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}: expected one of {list(RULES)}")
    (ref_i, ref_u), (oth_i, oth_u) = reference, other
    if ref_i.ndim != 4 or oth_i.ndim != 4 or ref_i.shape[:2] != oth_i.shape[:2] or ref_i.shape[3] != oth_i.shape[3]:
        raise ValueError(f"paired counts of shapes {ref_i.shape} and {oth_i.shape}: expected the same [S, N, ·, K]")
    seeds, images = ref_i.shape[:2]
    if rule == "fixed":
        (ref_i, ref_u), (oth_i, oth_u) = at_chosen_threshold(ref_i, ref_u), at_chosen_threshold(oth_i, oth_u)
    point = float(np.mean(best_miou(ref_i.sum(1), ref_u.sum(1)) - best_miou(oth_i.sum(1), oth_u.sum(1))))
    image_weights, seed_weights = bootstrap_weights(seeds, images, resamples, seed)

    # The sums of a replicate are integers below images × the largest count: float32 adds them exactly while they
    # stay below 2**24 (the demo's 300 images of 64² px), at half float64's cost; float64 otherwise (VOC).
    exact32 = images * max(int(ref_u.max(initial=0)), int(oth_u.max(initial=0))) < 2 ** 24
    dtype = np.float32 if exact32 else np.float64
    flat = {name: np.moveaxis(c, 1, 0).reshape(images, -1).astype(dtype)
            for name, c in (("ref_i", ref_i), ("ref_u", ref_u), ("oth_i", oth_i), ("oth_u", oth_u))}

    def per_replicate(method: str, weights: np.ndarray) -> np.ndarray:
        """each drawn replicate's best mIoU per seed, [b, S] (one matrix product per count array)."""
        summed = [(weights @ flat[f"{method}_{c}"]).astype(np.float64).reshape(len(weights), seeds, -1, ref_i.shape[3])
                  for c in ("i", "u")]
        return best_miou(*summed)

    replicates = np.empty(resamples)
    for start in range(0, resamples, chunk):
        weights = image_weights[start:start + chunk].astype(dtype)
        diffs = per_replicate("ref", weights) - per_replicate("oth", weights)
        replicates[start:start + chunk] = np.sum(seed_weights[start:start + chunk] / seeds * diffs, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return point, float(low), float(high)


def paired_differences(rows: list[dict], reference: str = REFERENCE, resamples: int = 2000,
                       level: float = 0.95, rule: str = "rechosen") -> list[PairedDifference]:
    """reference − each other method, per proportion, over the seeds both have, for the rows of one table (one
    setting) whose jobs kept per-image counts, with the threshold `rule` of `bootstrap_difference`. Empty when
    the reference is absent or no job kept them. Raises ValueError when two paired jobs scored different images."""
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
        def counts_of(jobs: dict) -> tuple[np.ndarray, np.ndarray]:  # [S, N, T, K] intersection and union
            return tuple(np.stack([jobs[s][key] for s in seeds]) for key in ("intersection", "union"))

        diff, low, high = bootstrap_difference(counts_of(ref), counts_of(by_seed), resamples, level, rule=rule)
        out.append(PairedDifference(proportion, method, diff, low, high, len(seeds), len(ref[seeds[0]]["index"]),
                                    rule))
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
    rules = sorted({d.rule for d in differences})
    lines = [f"### seed_mIoU: {reference} − method, paired {level:.0%} interval — {title}", "",
             f"Points of seed mIoU; bootstrap over images and seeds (the same draw for both methods; "
             f"seeds × images: {', '.join(f'{s} × {n}' for s, n in sizes)}); "
             f"{'; '.join(RULE_TEXT[r] for r in rules)}. **bold**: the interval excludes 0.", "",
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
