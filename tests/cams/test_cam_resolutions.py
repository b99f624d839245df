"""`maps_at`: the maps at the feature resolution (what WSOL protocols resize themselves) and at the input size,
from the same forwards."""

import pytest
import torch
import torch.nn.functional as F

from src.bls import fit_bls
from src.cams import create_cam
from tests.helpers import small_resnet, stem

METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "broadcam"]


@pytest.fixture(scope="module")
def net():
    return small_resnet(4)


@pytest.fixture(scope="module")
def bls(net):
    torch.manual_seed(1)
    labels = (torch.rand(8, 4) < 0.5).float()
    labels[:4] = torch.eye(4)
    batches = [{"image": torch.rand(4, 3, 48, 48), "labels": labels[i : i + 4], "index": torch.arange(i, i + 4)}
               for i in (0, 4)]
    return fit_bls(net, batches, ["layer3", "layer4"], alpha=50.0, step=32, device="cpu")[0]


# method → (target layers, the layer whose size is the feature resolution, options); Score-CAM on layer1 (16
# channels) keeps its masked forwards few; BroadCAM maps at its largest layer
SETUPS = {"broadcam": (["layer3", "layer4"], "layer3", {}), "scorecam": (["layer1"], "layer1", {"batch_size": 128})}


def make_cam(method, net, bls, **options):
    layers, size_layer, extra = SETUPS.get(method, (["layer4"], "layer4", {}))
    if method == "broadcam":
        extra = {"bls": bls}
    return create_cam(method, net, layers, **extra, **options), size_layer


@pytest.mark.parametrize("method", METHODS)
def test_both_resolutions_come_from_the_same_maps(method, net, bls):
    torch.manual_seed(2)
    images, targets = torch.rand(2, 3, 64, 48), torch.tensor([[0, 3], [2, 1]])
    cam, size_layer = make_cam(method, net, bls, normalize=False)
    with cam:
        full, feature = cam.maps_at(images, targets, ("input", "feature"))
        (feature_alone,) = cam.maps_at(images, targets, ("feature",))
        assert torch.equal(full, cam(images, targets)) and torch.equal(feature, feature_alone)
        assert torch.equal(cam.maps_at(images, targets[:, 1], ("feature",))[0], feature[:, 1])
    sizes = []
    hook = dict(net.named_modules())[size_layer].register_forward_hook(lambda m, i, o: sizes.append(o.shape[-2:]))
    with torch.no_grad():
        net(images)
    hook.remove()
    assert feature.shape == (2, 2, *sizes[0]) and sizes[0][-1] < 48
    assert feature.dtype == torch.float32 and float(feature.min()) >= 0 and float(feature.amax()) > 0
    if method != "broadcam":  # ReLU before the upsampling: the input-size maps are the feature maps upsampled
        upsampled = F.interpolate(feature, size=(64, 48), mode="bilinear", align_corners=False)
        torch.testing.assert_close(full, upsampled, rtol=1e-5, atol=1e-6 * float(full.max()))


def test_feature_maps_equal_a_hand_grad_cam():
    model = small_resnet(5, seed=3)
    images, targets = torch.rand(2, 3, 96, 64), torch.tensor([1, 4])
    with create_cam("gradcam", model, ["layer4"], normalize=False) as cam:
        (ours,) = cam.maps_at(images, targets, ("feature",))
    with torch.no_grad():
        activations = model.layer3(model.layer2(model.layer1(stem(model, images))))
        activations = model.layer4(activations)
    activations.requires_grad_()
    logits = model.fc(activations.mean(dim=(-2, -1)))
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    expected = (grads.mean(dim=(-2, -1), keepdim=True) * activations).sum(1).relu().detach()
    assert ours.shape == expected.shape == (2, 6, 4)  # stride 16
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


def test_test_time_views_are_resized_to_the_unscaled_feature_size(net, bls):
    """Scales 0.5/1/1.5 with flips: each view's feature map is resized to the scale-1 size, flipped back, summed."""
    torch.manual_seed(4)
    images, targets = torch.rand(2, 3, 64, 64), torch.tensor([1, 2])
    with create_cam("gradcam", net, ["layer4"], scales=[0.5, 1.0, 1.5], flip=True, normalize=False) as cam:
        (ours,) = cam.maps_at(images, targets, ("feature",))
    expected = 0
    for scale in (0.5, 1.0, 1.5):
        scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear")
        for flipped in (False, True):
            with create_cam("gradcam", net, ["layer4"], normalize=False) as single:
                (view,) = single.maps_at(scaled.flip(-1) if flipped else scaled, targets, ("feature",))
            view = F.interpolate(view[:, None], size=(4, 4), mode="bilinear", align_corners=False)[:, 0]
            expected = expected + (view.flip(-1) if flipped else view)
    assert ours.shape == (2, 4, 4)  # the scale-1 feature size: 64 px at stride 16
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


def test_normalize_and_errors(net, bls):
    images, targets = torch.rand(1, 3, 64, 64), torch.tensor([3])
    with create_cam("cam", net, ["layer4"]) as cam:
        (feature,) = cam.maps_at(images, targets, ["feature"])  # normalize=True by default
        assert float(feature.min()) == 0 and float(feature.max()) == 1
        with pytest.raises(ValueError, match=r"resolutions must be a non-empty list of \('input', 'feature'\)"):
            cam.maps_at(images, targets, ["pixels"])
        with pytest.raises(ValueError, match="resolutions"):
            cam.maps_at(images, targets, [])
