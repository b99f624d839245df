"""Benchmark: our closed-form BroadLearningSystem fit vs a port of the original procedure.

Synthetic VOC-like problems (features like post-ReLU GAP: |correlated gaussians|; sparse multi-hot labels,
every class positive) at n = 100 %, 10 % and 1 % of VOC train_aug, d = 3072 (layer3 ⊕ layer4), C = 20.
Both fits run in this process (all of ours first, then the references); ours is the best of `--repeats`
runs. The JSON records the load average, since a shared machine's other jobs inflate every timing.

Then (`--part features`, also in the default `all`): feature extraction images/s on the trainer's device vs a
bare forward over the same loader (`benchmarks/bls_features.py`; issue 12 expects a ratio ≥ 0.9).

    python scripts/bench.py bls [--quick] [--repeats N] [--part all|fit|features] [--device cuda]
                                [--out outputs/bench/bls.json]

`--quick` drops the n = 10,582 row (its reference fit takes about a minute) and extracts from fewer images.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from benchmarks import bls_features
from benchmarks.timing import print_table, timed
from src.bls import BroadLearningSystem
from tests.bls.original_port import OriginalBLS

QUICK = "skip the n = 10,582 row"
SIZES = [(10582, 3072, 20), (1058, 3072, 20), (106, 3072, 20)]


def synthetic_problem(n: int, d: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """features [n, d] float32 ≥ 0 with a rank-64 shared component; labels [n, C] 0/1, ~1.5 per image."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(64, d, generator=gen) * 0.3
    features = (torch.randn(n, d, generator=gen) + torch.randn(n, 64, generator=gen) @ mixing).abs()
    labels = (torch.rand(n, num_classes, generator=gen) < 1.5 / num_classes).float()
    labels[torch.arange(num_classes), torch.arange(num_classes)] = 1.0  # every class has a positive
    return features, labels


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def time_ours(problem: tuple, alpha: float, step: int, repeats: int) -> tuple[BroadLearningSystem, float]:
    """The fitted BLS and the best wall time of `repeats` fits."""
    fits = [timed(lambda: BroadLearningSystem(alpha=alpha, step=step).fit(*problem)) for _ in range(repeats)]
    return fits[-1][0], min(seconds for _, seconds in fits)


def time_reference(problem: tuple, alpha: float, step: int) -> tuple[OriginalBLS, float]:
    return timed(lambda: OriginalBLS(alpha=alpha, step=step).fit(problem[0].numpy(), problem[1].numpy()))


def result_row(size: tuple, ours: tuple, reference: tuple) -> dict:
    (bls, seconds), (original, reference_seconds) = ours, reference
    weights = bls.cam_weights.cpu().numpy()
    return {
        "n": size[0], "d": size[1], "C": size[2],
        "seconds": seconds,
        "reference_seconds": reference_seconds,
        "speedup": reference_seconds / seconds,
        "max_rel_err": relative_error(weights, original.coef_.T),
        "max_rel_err_literal_collapse": relative_error(weights, original.coef_literal_.T),
        "enhancement_nodes": bls.num_enhancement_nodes,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, default=50.0)
    parser.add_argument("--step", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--part", choices=["all", "fit", "features"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="the trainer's device for the feature part")
    parser.add_argument("--image-size", type=int, default=224, help="feature part: image side, pixels")


def run(args: argparse.Namespace) -> dict:
    payload = run_fit(args) if args.part in ("all", "fit") else {}
    if args.part in ("all", "features"):
        images = 64 if args.quick else 512
        row = bls_features.measure(torch.device(args.device), images, args.image_size, 32, args.repeats)
        print_table([row], [("device", "device", "s"), ("images", "images", "d"), ("image_size", "px", "d"),
                            ("bare_images_per_s", "bare img/s", ".1f"),
                            ("extract_images_per_s", "extract img/s", ".1f"), ("ratio", "ratio", ".3f")])
        payload["features"] = row
    return payload


def run_fit(args: argparse.Namespace) -> dict:
    sizes = SIZES[1:] if args.quick else SIZES
    load_before = os.getloadavg()[0]
    problems = [synthetic_problem(*size) for size in sizes]
    # all of ours first: the reference's BLAS threads keep spinning after it returns and would slow ours
    ours = [time_ours(problem, args.alpha, args.step, args.repeats) for problem in problems]
    references = [time_reference(problem, args.alpha, args.step) for problem in problems]
    rows = [result_row(*parts) for parts in zip(sizes, ours, references)]
    print(f"load average before: {load_before:.1f}")
    print_table(rows, [("n", "n", "d"), ("d", "d", "d"), ("C", "C", "d"), ("seconds", "ours s", ".3f"),
                       ("reference_seconds", "original s", ".2f"), ("speedup", "speedup", ".1f"),
                       ("max_rel_err", "max rel err", ".2e"), ("enhancement_nodes", "H nodes", "d")])
    return {"load_average_before": load_before, "rows": rows}
