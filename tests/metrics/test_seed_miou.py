"""SeedMIoU against a plain per-threshold numpy reference (IRN: pad with t, argmax, one confusion matrix)."""
import math

import numpy as np
import pytest
import torch

from src.metrics import SeedMIoU

THRESHOLDS = [i / 100 for i in range(60)]


def reference_miou(cams, labels, masks, num_classes, thresholds, ignore_index, background):
    """Per-threshold loop exactly as IRN's eval_cam: keep the GT-class maps, pad a plane t, argmax,
    bincount confusion, IoU = TP / (TP + FP + FN), mean over classes whose denominator is > 0."""
    curve = []
    for t in thresholds if background else [None]:
        conf = np.zeros((num_classes, num_classes), dtype=np.int64)
        for cam, label, mask in zip(cams, labels, masks):
            keys = np.nonzero(label)[0]
            kept = cam[keys]
            if background:
                kept = np.pad(kept, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=t)
                keys = np.concatenate([[0], keys + 1])
            pred = keys[np.argmax(kept, axis=0)]
            valid = mask != ignore_index
            conf += np.bincount(
                mask[valid] * num_classes + pred[valid], minlength=num_classes**2
            ).reshape(num_classes, num_classes)
        tp = np.diag(conf).astype(np.float64)
        denom = conf.sum(0) + conf.sum(1) - tp
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
        curve.append((t, np.nanmean(iou) * 100, iou * 100))
    return curve


def random_batch(gen, n, num_fg, size, ignore_index, num_classes, quantised=True):
    cams = torch.rand(n, num_fg, size, size, generator=gen)
    if quantised:  # multiples of 0.01 create ties with the thresholds and between classes
        cams = torch.floor(cams * 100) / 100
    labels = (torch.rand(n, num_fg, generator=gen) < 0.4).long()
    labels[torch.arange(n), torch.randint(0, num_fg, (n,), generator=gen)] = 1
    masks = torch.randint(0, num_classes, (n, size, size), generator=gen)
    masks[torch.rand(n, size, size, generator=gen) < 0.1] = ignore_index
    return cams, labels, masks


@pytest.mark.parametrize("quantised", [True, False])
def test_background_sweep_equals_reference(quantised):
    gen = torch.Generator().manual_seed(0)
    cams, labels, masks = random_batch(gen, 6, 5, 24, 255, 6, quantised)
    metric = SeedMIoU(num_classes=6, background=True, thresholds=THRESHOLDS, ignore_index=255)
    metric.update(cams, labels, masks)
    out = metric.compute()
    ref = reference_miou(cams.numpy(), labels.numpy(), masks.numpy(), 6, THRESHOLDS, 255, True)
    assert [t for t, _ in out["curve"]] == THRESHOLDS
    np.testing.assert_allclose([m for _, m in out["curve"]], [m for _, m, _ in ref], rtol=0, atol=1e-9)
    best = int(np.argmax([m for _, m, _ in ref]))
    assert out["threshold"] == THRESHOLDS[best]
    assert out["mIoU"] == pytest.approx(ref[best][1], abs=1e-9)
    np.testing.assert_allclose(out["per_class_IoU"], ref[best][2], atol=1e-9)


def test_ties_with_threshold_go_to_background():
    cams = torch.tensor([[[[0.3, 0.2]]]])  # one class, two pixels
    metric = SeedMIoU(num_classes=2, thresholds=[0.2, 0.3])
    metric.update(cams, torch.ones(1, 1, dtype=torch.long), torch.tensor([[[1, 1]]]))
    conf = metric.confusion_matrices()
    assert conf[0].tolist() == [[0, 0], [1, 1]]  # t = 0.2: 0.3 > t is class 1, 0.2 == t is background
    assert conf[1].tolist() == [[0, 0], [2, 0]]  # t = 0.3: both ties or below


def test_unsorted_thresholds_give_sorted_curve():
    gen = torch.Generator().manual_seed(1)
    batch = random_batch(gen, 3, 4, 16, 255, 5)
    a = SeedMIoU(num_classes=5, thresholds=[0.5, 0.1, 0.3])
    b = SeedMIoU(num_classes=5, thresholds=[0.1, 0.3, 0.5])
    a.update(*batch)
    b.update(*batch)
    assert a.compute() == b.compute()


def test_no_background_equals_reference():
    gen = torch.Generator().manual_seed(2)
    cams, labels, masks = random_batch(gen, 5, 4, 20, 4, 5)  # BCSS: tissues 0..3, 4 = background ignored
    metric = SeedMIoU(num_classes=4, background=False, ignore_index=4)
    metric.update(cams, labels, masks)
    out = metric.compute()
    (_, ref_miou, ref_iou), = reference_miou(cams.numpy(), labels.numpy(), masks.numpy(), 4, None, 4, False)
    assert out["threshold"] is None and out["curve"] == []
    assert out["mIoU"] == pytest.approx(ref_miou, abs=1e-9)
    np.testing.assert_allclose(out["per_class_IoU"], ref_iou, atol=1e-9)


def test_absent_class_is_nan_and_excluded():
    cams = torch.ones(1, 2, 2, 2)
    labels = torch.tensor([[1, 0]])
    masks = torch.tensor([[[1, 1], [0, 255]]])
    metric = SeedMIoU(num_classes=3, thresholds=[0.5])
    metric.update(cams, labels, masks)
    out = metric.compute()
    assert out["per_class_IoU"][:2] == [0.0, pytest.approx(200 / 3)]
    assert math.isnan(out["per_class_IoU"][2])
    assert out["mIoU"] == pytest.approx(100 / 3)


def test_batches_and_merged_states_equal_one_pass():
    gen = torch.Generator().manual_seed(3)
    cams, labels, masks = random_batch(gen, 8, 5, 16, 255, 6)
    whole = SeedMIoU(num_classes=6, thresholds=THRESHOLDS)
    whole.update(cams, labels, masks)
    chunked = SeedMIoU(num_classes=6, thresholds=THRESHOLDS)
    for i in range(0, 8, 3):
        chunked.update(cams[i:i + 3], labels[i:i + 3], masks[i:i + 3])
    first, second = SeedMIoU(num_classes=6, thresholds=THRESHOLDS), SeedMIoU(num_classes=6, thresholds=THRESHOLDS)
    first.update(cams[:4], labels[:4], masks[:4])
    second.update(cams[4:], labels[4:], masks[4:])
    summed = SeedMIoU(num_classes=6, thresholds=THRESHOLDS)
    summed.hist = first.hist + second.hist
    first.merge_state(second)
    assert torch.equal(chunked.hist, whole.hist)
    assert torch.equal(first.hist, whole.hist)
    assert chunked.compute() == whole.compute() == first.compute() == summed.compute()


@pytest.mark.parametrize(
    "kwargs, args, match",
    [
        ({}, (torch.rand(1, 3, 4, 4), torch.ones(1, 3), torch.zeros(1, 4, 4)), "cams shape"),
        ({}, (torch.full((1, 20, 2, 2), float("nan")), torch.ones(1, 20), torch.zeros(1, 2, 2)), "NaN"),
        ({}, (torch.rand(1, 20, 2, 2), torch.ones(1, 20), torch.full((1, 2, 2), 30)), "masks values"),
        ({"background": False, "num_classes": 4, "ignore_index": 4},
         (torch.rand(1, 4, 2, 2), torch.zeros(1, 4), torch.zeros(1, 2, 2)), "at least one positive"),
    ],
)
def test_bad_input_raises(kwargs, args, match):
    metric = SeedMIoU(**{"num_classes": 21, **kwargs})
    with pytest.raises(ValueError, match=match):
        metric.update(*args)


def test_duplicate_thresholds_raise():
    with pytest.raises(ValueError, match="distinct"):
        SeedMIoU(num_classes=21, thresholds=[0.1, 0.1])


@pytest.mark.parametrize("background", [True, False])
def test_per_image_counts_equal_each_image_scored_alone(background):
    """Per-image intersection/union at every threshold of the sweep equal the reference on that one image;
    images come back in dataset order whatever order the batches came in; their sums give the metric's own
    curve, whose best point is its mIoU."""
    gen = torch.Generator().manual_seed(5)
    num_fg, ignore = 3, 255
    num_classes = num_fg + int(background)
    thresholds = [0.3, 0.1, 0.2] if background else None
    metric = SeedMIoU(num_classes, background=background, ignore_index=ignore, per_image=True, thresholds=thresholds)
    batches = []
    for start in (4, 0, 8):  # out of order
        cams, labels, masks = random_batch(gen, 4, num_fg, 12, ignore, num_classes)
        if not background:
            masks[masks == ignore] = 0
        metric.update(cams, labels, masks, torch.arange(start, start + 4))
        batches.append((start, cams, labels, masks))
    result = metric.compute()
    per_image = result["per_image"]
    assert per_image["index"].tolist() == list(range(12))
    assert per_image["thresholds"].tolist() == ([0.1, 0.2, 0.3] if background else [])
    assert per_image["intersection"].shape == (12, 3 if background else 1, num_classes)
    for start, cams, labels, masks in batches:
        for i in range(4):
            one = SeedMIoU(num_classes, background=background, ignore_index=ignore, thresholds=thresholds)
            one.update(cams[i:i + 1], labels[i:i + 1], masks[i:i + 1])
            conf = one.confusion_matrices()  # [T, K, K]
            tp = conf.diagonal(dim1=1, dim2=2)
            assert torch.equal(per_image["intersection"][start + i], tp)
            assert torch.equal(per_image["union"][start + i], conf.sum(1) + conf.sum(2) - tp)
    inter, union = per_image["intersection"].sum(0).double(), per_image["union"].sum(0).double()
    curve = (torch.where(union > 0, inter / union.clamp(min=1), torch.nan) * 100).nanmean(-1)
    if background:
        assert curve.tolist() == pytest.approx([m for _, m in result["curve"]], abs=1e-9)
    assert float(curve.max()) == pytest.approx(result["mIoU"], abs=1e-9)


def test_per_image_needs_the_indices():
    metric = SeedMIoU(3, per_image=True)
    cams, labels, masks = random_batch(torch.Generator().manual_seed(0), 2, 2, 8, 255, 3)
    with pytest.raises(ValueError, match="indices"):
        metric.update(cams, labels, masks)
