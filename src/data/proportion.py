"""Deterministic, nested, class-covering training subsets ("proportions" of a training split)."""
from __future__ import annotations

import math

import numpy as np


def check_proportion(proportion) -> float:
    """Return `proportion` as a float percent in (0, 100], or raise ValueError naming the key."""
    try:
        value = float(proportion)
    except (TypeError, ValueError):
        raise ValueError(f"proportion={proportion!r} is not a number; expected a percent in (0, 100]") from None
    if not (0.0 < value <= 100.0) or math.isnan(value):
        raise ValueError(f"proportion={proportion!r} is out of range; expected a percent in (0, 100]")
    return value


def subset_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of all training images whose head covers every class.

    labels: [n, C] 0/1 image labels. The head holds, for each class (rarest first), the first image of a
    seeded permutation that is positive for it and not yet chosen; the rest of the permutation follows.
    Every prefix of this order is a subset, so subsets of growing proportions are nested.
    """
    labels = np.asarray(labels) > 0
    n, num_classes = labels.shape
    permutation = np.random.default_rng(seed).permutation(n)
    head: list[int] = []
    chosen = np.zeros(n, dtype=bool)
    for c in np.argsort(labels.sum(0), kind="stable"):
        if labels[head, c].any() if head else False:
            continue
        positives = permutation[labels[permutation, c] & ~chosen[permutation]]
        if len(positives):
            head.append(int(positives[0]))
            chosen[positives[0]] = True
    rest = permutation[~chosen[permutation]]
    return np.concatenate([np.asarray(head, dtype=np.int64), rest])


def proportion_subset(labels: np.ndarray, proportion: float, seed: int) -> np.ndarray:
    """Sorted indices of `proportion` percent of the images (at least one positive per class).

    The size is round(n · p / 100), raised to the number of images needed to cover every class that has
    a positive image at all.
    """
    proportion = check_proportion(proportion)
    labels = np.asarray(labels)
    order = subset_order(labels, seed)
    covering = _covering_length(labels, order)
    size = max(1, covering, int(round(len(order) * proportion / 100.0)))
    return np.sort(order[:size])


def _covering_length(labels: np.ndarray, order: np.ndarray) -> int:
    """Length of the shortest prefix of `order` with a positive for every class that has one."""
    present = (labels > 0).any(0)
    seen = np.zeros_like(present)
    for length, index in enumerate(order, start=1):
        seen |= labels[index] > 0
        if (seen >= present).all():
            return length
    return len(order)
