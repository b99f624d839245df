"""BroadCAM maps on a tiny random resnet18_small against a hand computation from hooked activations."""

import pytest
import torch
import torch.nn.functional as F

from src.bls import BroadLearningSystem, fit_bls
from src.cams import create_cam, normalize_maps
from tests.helpers import small_resnet, stem

NUM_CLASSES = 4
STAGES = ["layer3", "layer4"]


@pytest.fixture(scope="module")
def net_and_bls():
    net = small_resnet(NUM_CLASSES)
    images = torch.rand(14, 3, 64, 64)
    labels = (torch.rand(14, NUM_CLASSES) < 0.4).float()
    labels[:NUM_CLASSES] = torch.eye(NUM_CLASSES)
    batches = [{"image": images[i : i + 5], "labels": labels[i : i + 5], "index": torch.arange(i, min(i + 5, 14))}
               for i in range(0, 14, 5)]
    bls, _ = fit_bls(net, batches, STAGES, alpha=50.0, step=32, device="cpu")
    return net, bls


def hand_broadcam(net, weights: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k^c ReLU(M_k) over layer3 ⊕ layer4 (layer4 resized to layer3's size), upsampled, ReLU → [B, K, H, W]."""
    with torch.no_grad():
        layer3 = net.layer3(net.layer2(net.layer1(stem(net, images))))
        layer4 = net.layer4(layer3)
    layer4 = F.interpolate(layer4.relu(), size=layer3.shape[-2:], mode="bilinear", align_corners=False)
    features = torch.cat([layer3.relu(), layer4], dim=1)
    maps = torch.einsum("dbk,bdhw->bkhw", weights.float()[:, targets], features)
    return F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False).relu()


def test_broadcam_equals_hand_computation(net_and_bls):
    net, bls = net_and_bls
    assert bls.cam_weights.shape == (64 + 128, NUM_CLASSES) and bls.num_enhancement_nodes > 0
    images, targets = torch.rand(3, 3, 64, 64), torch.tensor([[0, 2], [1, 3], [3, 0]])
    with create_cam("broadcam", net, target_layers=STAGES, bls=bls) as cam:
        maps = cam(images, targets)
    expected = normalize_maps(hand_broadcam(net, bls.cam_weights, images, targets))
    assert maps.shape == (3, 2, 64, 64)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)

    with create_cam("broadcam", net, target_layers=None, bls=bls, flip=True, normalize=False) as cam:
        flipped = cam(images, targets[:, 0])  # target_layers from bls.stages; [B] targets give [B, H, W]
    hand = hand_broadcam(net, bls.cam_weights, images, targets[:, :1])
    hand = hand + hand_broadcam(net, bls.cam_weights, images.flip(-1), targets[:, :1]).flip(-1)
    torch.testing.assert_close(flipped, hand[:, 0], rtol=1e-4, atol=1e-5)


def test_broadcam_rejects_mismatched_layers(net_and_bls):
    net, bls = net_and_bls
    with pytest.raises(ValueError, match="fitted stages"):
        create_cam("broadcam", net, target_layers=["layer4", "layer3"], bls=bls)
    weights_only = bls.cam_weights  # no recorded stages: the channel count is the check left
    with create_cam("broadcam", net, target_layers=["layer4"], bls=weights_only) as cam:
        with pytest.raises(ValueError, match="d=192.*128"):
            cam(torch.rand(1, 3, 64, 64), torch.tensor([0]))
    with pytest.raises(ValueError, match="target_layers"):  # a BLS without recorded stages needs them named
        create_cam("broadcam", net, target_layers=None, bls=BroadLearningSystem())
