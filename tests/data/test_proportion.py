"""Proportion subsets: deterministic, nested, class-covering; bad values rejected."""
from __future__ import annotations

import numpy as np
import pytest

from src.data.proportion import check_proportion, proportion_subset


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    labels = (rng.random((1000, 10)) < 0.15).astype(np.uint8)
    labels[:, 9] = 0
    labels[[17, 523], 9] = 1  # a rare class: two positives in the whole split
    return labels


def test_deterministic_for_a_seed_and_different_across_seeds(labels):
    assert np.array_equal(proportion_subset(labels, 5, seed=1), proportion_subset(labels, 5, seed=1))
    assert not np.array_equal(proportion_subset(labels, 5, seed=1), proportion_subset(labels, 5, seed=2))


def test_nested_sizes_and_every_class_kept(labels):
    previous = set()
    for p in (1, 2, 5, 8, 10, 20, 50, 80, 100):
        subset = proportion_subset(labels, p, seed=0)
        assert len(subset) == max(10, round(len(labels) * p / 100)) or p == 1
        assert previous <= set(subset.tolist())
        assert (labels[subset].sum(0) >= 1).all(), p
        previous = set(subset.tolist())
    assert len(previous) == len(labels)


def test_smallest_subset_still_covers_classes(labels):
    subset = proportion_subset(labels, 0.1, seed=0)  # one image asked for, ten classes to cover
    assert (labels[subset].sum(0) >= 1).all()
    assert len(subset) <= 10


@pytest.mark.parametrize("value", [0, -1, 150, "abc", None, float("nan")])
def test_bad_proportion_is_rejected_with_the_key(value):
    with pytest.raises(ValueError, match=r"proportion=.*\(0, 100\]"):
        check_proportion(value)
