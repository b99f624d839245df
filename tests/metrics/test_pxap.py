"""PxAP reproduces wsolevaluation's own expectations on its real OpenImages masks, and its histogram
arithmetic (np.histogram over the same edges) on random maps."""
import functools

import cv2
import numpy as np
import pytest
import torch

from src.metrics import PxAP
from tests.fixtures import WSOL_MASK_ROOT as MASK_ROOT
from tests.fixtures import WSOL_VAL_METADATA

LOCALIZATION = WSOL_VAL_METADATA / "localization.txt"
SIZE = 224
IMAGES = {
    "1cd9ac0169ec7df0": "val/0bt_c3/1cd9ac0169ec7df0.jpg",
    "3a29f0b33894d4a6": "val/0bt_c3/3a29f0b33894d4a6.jpg",
    "3b3b9931325d65c9": "val/0bt_c3/3b3b9931325d65c9.jpg",
    # The fixtures README's table crosses these two images' files, but the files say otherwise (the
    # b4d953..._m0by6g_9f8621ff.png mask is all 255); the real localization.txt pairs each with its own
    "all_zero_gt": "val/0by6g/490365f63135f3e0.jpg",
    "all_one_gt": "val/0by6g/b4d953e7105da1d8.jpg",
}
# (foreground, background) pixel counts: a constant map's PxAP is the foreground fraction
# (our loader counts 49343 and 13910 background pixels for the last two: within the reference's ± 0.1)
CONSTANT_COUNTS = {
    "1cd9ac0169ec7df0": (43031, 7145),
    "3a29f0b33894d4a6": (833, 49342),
    "3b3b9931325d65c9": (347, 13909),
}


def mask_paths(image_id):
    """(instance mask paths, ignore path) of an image from the real localization.txt (one line per instance,
    the ignore path given on one of them)."""
    instances, ignores = [], set()
    for line in LOCALIZATION.read_text().splitlines():
        image, instance, ignore = line.split(",")
        if image == image_id:
            instances.append(instance)
            ignores |= {ignore} - {""}
    assert instances and len(ignores) == 1, image_id
    return instances, ignores.pop()


def read_binary(relative):
    """Grayscale read, nearest resize to 224 x 224, > 0.5 (wsolevaluation's load_mask_image + threshold)."""
    image = cv2.imread(str(MASK_ROOT / relative), cv2.IMREAD_GRAYSCALE)
    assert image is not None, relative
    return cv2.resize(image.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0.5


@functools.lru_cache(maxsize=None)
def load_mask(name):
    """[224, 224] uint8: 1 = union of the instances, 255 = ignore minus foreground, 0 = background."""
    instances, ignore = mask_paths(IMAGES[name])
    foreground = np.stack([read_binary(p) for p in instances]).any(axis=0)
    ignored = read_binary(ignore) & ~foreground
    return torch.from_numpy(foreground.astype(np.uint8) + 255 * ignored.astype(np.uint8))


def pxap_of(scoremap, mask, num_thresholds=100):
    metric = PxAP(num_thresholds=num_thresholds)  # the reference tests use thresholds every 0.01
    metric.update(scoremap[None], mask[None])
    return metric.compute()


@pytest.mark.parametrize("name", list(CONSTANT_COUNTS))
@pytest.mark.parametrize("ignore_score", [0.0, 1.0])
def test_perfect_map_is_100(name, ignore_score):
    mask = load_mask(name)
    scoremap = (mask == 1).float()
    scoremap[mask == 255] = ignore_score
    assert pxap_of(scoremap, mask) == 100.0


@pytest.mark.parametrize("name", list(CONSTANT_COUNTS))
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_map_is_foreground_fraction(name, value):
    mask = load_mask(name)
    positives, negatives = CONSTANT_COUNTS[name]
    expected = 100 * positives / (positives + negatives)
    assert pxap_of(torch.full((SIZE, SIZE), value), mask) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_zero_gt_raises(value):
    with pytest.raises(ValueError, match="no positive ground truth"):
        pxap_of(torch.full((SIZE, SIZE), value), load_mask("all_zero_gt"))


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_one_gt_is_100(value):
    assert pxap_of(torch.full((SIZE, SIZE), value), load_mask("all_one_gt")) == pytest.approx(100, abs=0.1)


def test_nan_map_raises():
    with pytest.raises(ValueError, match="NaN"):
        pxap_of(torch.full((8, 8), float("nan")), torch.ones(8, 8, dtype=torch.uint8))


def reference_pxap(scoremaps, masks, num_thresholds):
    """MaskEvaluator's arithmetic: np.histogram over np.arange(0, 1, 1/n) + [1, 2, 3], cumulative sums from the top."""
    edges = np.append(np.arange(0, 1, 1 / num_thresholds), [1.0, 2.0, 3.0])
    fg = sum(np.histogram(s[m == 1], bins=edges)[0] for s, m in zip(scoremaps, masks)).astype(float)
    bg = sum(np.histogram(s[m == 0], bins=edges)[0] for s, m in zip(scoremaps, masks)).astype(float)
    tp, fp = fg[::-1].cumsum(), bg[::-1].cumsum()
    with np.errstate(invalid="ignore"):
        precision = tp / (tp + fp)
    recall = tp / fg.sum()
    return (precision[1:] * np.diff(recall))[~np.isnan(precision[1:])].sum() * 100


@pytest.mark.parametrize("num_thresholds", [100, 1000])
def test_random_maps_match_histogram_reference_in_any_batching(num_thresholds):
    gen = torch.Generator().manual_seed(0)
    scoremaps = torch.floor(torch.rand(6, 32, 32, generator=gen) * 1000) / 1000  # values on the bin edges
    scoremaps[0, :4] = 1.0
    masks = (torch.rand(6, 32, 32, generator=gen) < 0.3).to(torch.uint8)
    masks[torch.rand(6, 32, 32, generator=gen) < 0.1] = 255
    expected = reference_pxap(scoremaps.numpy(), masks.numpy(), num_thresholds)
    whole, first, second = (PxAP(num_thresholds) for _ in range(3))
    whole.update(scoremaps, masks)
    first.update(scoremaps[:2], masks[:2])
    second.update(scoremaps[2:], masks[2:])
    first.merge_state(second)
    assert whole.compute() == pytest.approx(expected, abs=1e-9)
    assert torch.equal(first.fg_hist, whole.fg_hist) and torch.equal(first.bg_hist, whole.bg_hist)
    assert first.compute() == whole.compute()


def test_bad_mask_values_raise():
    with pytest.raises(ValueError, match="masks"):
        pxap_of(torch.rand(4, 4), torch.full((4, 4), 2, dtype=torch.uint8))


@pytest.mark.parametrize("num_thresholds", [1, 7, 1000])
def test_bin_index_matches_search_on_and_beside_every_edge(num_thresholds):
    metric = PxAP(num_thresholds)
    edges = metric.edges.numpy()
    inner = edges[: num_thresholds + 1]
    scores = np.concatenate(
        [inner, np.nextafter(inner, -1), np.nextafter(inner, 2), np.random.default_rng(0).random(10000)]
    ).clip(0, 1)
    expected = np.searchsorted(edges, scores, side="right") - 1  # np.histogram's bin, [e_i, e_{i+1})
    assert np.array_equal(metric.bin_index(torch.from_numpy(scores)).numpy(), expected)
