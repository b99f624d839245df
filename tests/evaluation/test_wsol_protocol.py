"""wsolevaluation's score-map rule (feature-resolution CAM → cv2 INTER_CUBIC to 224 → normalize_scoremap) and
its box resizing, against a direct OpenCV computation, and the evaluation loop feeding them the right maps.

Against a float32 OpenCV pipeline the tolerance is 1e-5 (OpenCV's float32 kernel rounds differently, measured
≤ 2e-6 after normalisation); against wsolevaluation's own precision (`t2n` widens the CAM to float64, then
resize and normalisation in float64) the maps differ only by the float32 rounding of the result (< 3e-7)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from src.cams import CamSpec
from src.evaluation import module as evaluation_module
from src.evaluation.module import CamEvaluation
from src.evaluation.protocol import wsol_scoremaps


def opencv_scoremap(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """What wsolevaluation's inference.py does with one float32 CAM: cv2 bicubic resize, then NaN or constant
    → zeros, else subtract the min and divide by the new max."""
    resized = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(resized).any() or resized.min() == resized.max():
        return np.zeros_like(resized)
    resized = resized - resized.min()
    return resized / resized.max()


def test_scoremaps_are_wsolevaluations_float64_maps_rounded_to_float32():
    """The precision the docstring of `wsol_scoremaps` states: float64 resize and normalisation as wsolevaluation
    (its t2n casts the CAM to float64 before cv2.resize), our result within float32 rounding of it."""
    generator = torch.Generator().manual_seed(0)
    cams = torch.rand(20, 1, 7, 7, generator=generator) ** 3
    ours = wsol_scoremaps(cams, 224).double().numpy()
    worst = 0.0
    for cam, score in zip(cams[:, 0].numpy().astype(np.float64), ours):
        reference = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
        reference = (reference - reference.min()) / (reference - reference.min()).max()
        worst = max(worst, float(np.abs(score - reference).max()))
    assert 0 < worst < 3e-7  # not equal (float32 rounding), within a float32 ulp of values ≤ 1


@pytest.mark.parametrize("shape", [(7, 7), (14, 14), (28, 28), (7, 9), (13, 5), (2, 2), (1, 3), (300, 256)])
def test_scoremaps_equal_opencv_bicubic_and_normalize_scoremap(shape):
    torch.manual_seed(sum(shape))
    cams = torch.randn(3, 1, *shape).relu() * torch.tensor([1.0, 1e-3, 50.0])[:, None, None, None]
    ours = wsol_scoremaps(cams, 224)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    for cam, score in zip(cams[:, 0], ours):
        np.testing.assert_allclose(score.numpy(), opencv_scoremap(cam.numpy()), rtol=0, atol=1e-5)
        assert float(score.min()) == 0 and float(score.max()) == 1


def test_border_pixels_follow_opencv():
    """OpenCV replicates the border for the taps outside the map; a map that peaks on its edge shows it."""
    cam = torch.zeros(1, 1, 7, 7)
    cam[0, 0, 0, :] = 1.0
    cam[0, 0, :, 6] = 2.0
    ours = wsol_scoremaps(cam, 224)[0].numpy()
    expected = opencv_scoremap(cam[0, 0].numpy())
    np.testing.assert_allclose(ours[:8], expected[:8], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours[:, -8:], expected[:, -8:], rtol=0, atol=1e-5)


def test_class_max_is_taken_before_the_resize():
    torch.manual_seed(1)
    cams = torch.rand(2, 4, 7, 7)
    ours = wsol_scoremaps(cams, 224)
    for cam, score in zip(cams.amax(1), ours):
        np.testing.assert_allclose(score.numpy(), opencv_scoremap(cam.numpy()), rtol=0, atol=1e-5)


def test_constant_and_nan_maps_give_zeros():
    cams = torch.stack([torch.zeros(1, 7, 7), torch.full((1, 7, 7), 0.3), torch.rand(1, 7, 7)])
    cams[2, 0, 3, 3] = float("nan")
    assert torch.equal(wsol_scoremaps(cams, 224), torch.zeros(3, 224, 224))
    # the one departure: OpenCV's float32 kernel leaves ulp noise on a constant map, which normalize_scoremap
    # would stretch to [0, 1]; the map is constant, so it scores zeros, as that function says it should
    assert opencv_scoremap(cams[1, 0].numpy()).max() == 1


def test_evaluation_scores_the_feature_resolution_maps_and_resizes_boxes_like_wsolevaluation(monkeypatch):
    torch.manual_seed(2)
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    seen = {}
    real = evaluation_module.wsol_scoremaps

    def spy(cams, size):
        seen["cams"] = cams.clone()
        return real(cams, size)

    monkeypatch.setattr(evaluation_module, "wsol_scoremaps", spy)
    evaluation = CamEvaluation(net, CamSpec("cam", ["layer4"]), num_classes=4, seed_background=True,
                               ignore_index=255, metric_names=["PxAP", "MaxBoxAccV2"], seed_thresholds=[0.5],
                               wsol_size=224)
    boxes_seen = []
    update = evaluation.metrics["boxacc"].update
    monkeypatch.setattr(evaluation.metrics["boxacc"], "update", lambda s, b: boxes_seen.append(b) or update(s, b))
    images = torch.rand(2, 3, 96, 64)
    labels = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float32)
    masks = torch.zeros(2, 96, 64, dtype=torch.long)
    masks[:, 10:50, 5:40] = 1
    boxes = [torch.tensor([[5.0, 10.0, 39.0, 49.0]]), torch.tensor([[0.0, 0.0, 63.0, 95.0]])]
    evaluation.on_test_start()
    evaluation.test_step({"image": images, "labels": labels, "mask": masks, "boxes": boxes}, 0)
    evaluation.on_test_end()

    # the CAM at layer4's resolution (stride 32): ReLU(Σ_c w_c A_c), each map over its max
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
        features = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    raw = torch.einsum("bc,bchw->bhw", net.fc.weight[torch.tensor([1, 3])], features).relu()
    expected = raw / (raw.flatten(1).amax(1)[:, None, None] + 1e-5)
    assert seen["cams"].shape == (2, 4, 3, 2)
    torch.testing.assert_close(seen["cams"].amax(1), expected, rtol=1e-4, atol=1e-6)
    # wsolevaluation's resize_bbox from 64×96 to 224×224: int(x · 224 / 64), int(y · 224 / 96)
    assert [b.tolist() for b in boxes_seen[0]] == [[[17, 23, 136, 114]], [[0, 0, 220, 221]]]
