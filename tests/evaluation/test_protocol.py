"""The protocol's pure functions (src/evaluation/protocol.py) and the seed rule (src/metrics/seed_rule.py) on
hand-made tensors: targets, peak normalisation, seed maps, WSOL score maps, foreground masks, thresholds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.evaluation.protocol import (PEAK_EPS, class_maps_at, foreground_masks, gt_targets, peak_normalise, seed_maps,
                                     threshold_range, wsol_scoremaps)
from src.metrics import SeedMIoU
from src.metrics.seed_rule import best_class, seed_labels


def test_gt_targets_list_each_images_classes_in_order_padded_by_the_first():
    labels = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    targets, valid = gt_targets(labels)
    assert targets.tolist() == [[1, 3], [2, 2], [0, 0]]
    assert valid.tolist() == [[True, True], [True, False], [False, False]]


def test_seed_maps_scatter_peak_normalised_maps_to_their_classes():
    maps = torch.tensor([[[[2.0, 4.0]], [[1.0, 0.5]]]])  # [B=1, K=2, 1, 2]
    targets, valid = torch.tensor([[2, 0]]), torch.tensor([[True, False]])
    cams = seed_maps(maps, targets, valid, num_classes=3)
    assert cams.shape == (1, 3, 1, 2)
    torch.testing.assert_close(cams[0, 2, 0], torch.tensor([2.0, 4.0]) / (4.0 + PEAK_EPS))
    assert cams[0, 0].abs().sum() == 0 and cams[0, 1].abs().sum() == 0  # padding targets never count


def test_class_maps_at_resize_then_divide_like_irn():
    maps = torch.rand(2, 4, 5)
    out = class_maps_at(maps, (8, 10))
    resized = torch.nn.functional.interpolate(maps[None], size=(8, 10), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, resized / (resized.amax(dim=(1, 2), keepdim=True) + 1e-5))
    assert class_maps_at(maps[:0], (8, 10)).shape == (0, 8, 10)
    torch.testing.assert_close(peak_normalise(maps), maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-5))


def test_wsol_scoremaps_take_the_class_max_and_min_max_normalise():
    cams = torch.zeros(2, 3, 4, 4)
    cams[0, 1, 0, 0] = 0.5
    out = wsol_scoremaps(cams, 8)
    assert out.shape == (2, 8, 8) and out[0].max() == 1 and out[0].min() == 0
    assert out[1].abs().sum() == 0  # a constant map is all zeros, not NaN


def test_foreground_masks_keep_ignore_and_mark_any_object():
    masks = torch.tensor([[[0, 3], [255, 1]]])
    assert foreground_masks(masks, 2, background=0, ignore_index=255).tolist() == [[[0, 1], [255, 1]]]
    assert foreground_masks(masks, 4, background=0, ignore_index=255).shape == (1, 4, 4)


def test_threshold_ranges_follow_numpy_arange():
    assert threshold_range({"start": 0.0, "stop": 0.6, "step": 0.01}) == pytest.approx(np.arange(0, 0.6, 0.01))
    assert len(threshold_range({"start": 0.0, "stop": 1.0, "step": 0.1})) == 10
    assert threshold_range([0.2, 0.1]) == [0.2, 0.1]


def test_seed_rule_is_irns_argmax_with_the_plane_first():
    cams = torch.tensor([[[0.3, 0.8, 0.1]], [[0.2, 0.9, 0.05]], [[1.0, 1.0, 1.0]]])  # [C=3, 1, 3]
    present = torch.tensor([True, True, False])  # class 2 is absent: its map never wins
    irn = np.pad(cams[:2].numpy(), ((1, 0), (0, 0), (0, 0)), constant_values=0.3).argmax(0)  # IRN's eval_cam
    assert seed_labels(cams, present, 0.3).tolist() == irn.tolist() == [[0, 2, 0]]  # tie 0.3 == 0.3 → background
    assert seed_labels(cams, present, None).tolist() == [[0, 1, 0]]
    assert seed_labels(cams, torch.zeros(3, dtype=torch.bool), None, empty_value=7).tolist() == [[7, 7, 7]]
    assert best_class(cams, present)[1].tolist() == [[0, 1, 0]]


def test_seed_miou_scores_exactly_the_seed_rule_at_its_threshold():
    """SeedMIoU sweeps the plane over thresholds in one histogram: at each threshold its confusion matrix is
    the one of the seed rule's labels."""
    gen = torch.Generator().manual_seed(0)
    cams = torch.rand(3, 4, 6, 6, generator=gen)
    labels = (torch.rand(3, 4, generator=gen) < 0.5).float()
    masks = torch.randint(0, 5, (3, 6, 6), generator=gen)
    thresholds = [0.1, 0.4, 0.7]
    metric = SeedMIoU(5, thresholds=thresholds)
    metric.update(cams, labels, masks)
    for t, conf in zip(thresholds, metric.confusion_matrices()):
        pred = seed_labels(cams, labels > 0, t)
        expected = torch.zeros(5, 5, dtype=torch.long)
        expected.index_put_((masks.flatten(), pred.flatten()), torch.ones(masks.numel(), dtype=torch.long),
                            accumulate=True)
        assert torch.equal(conf, expected), t
