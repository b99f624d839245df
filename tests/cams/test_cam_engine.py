"""The engine's contract: targets, K classes, model state, hooks, TTA, fusion, in-place layers, errors."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from src.cams import create_cam, normalize_maps
from tests.helpers import small_resnet

GRADIENT_METHODS = ["gradcam", "gradcampp", "xgradcam", "layercam"]
OUR_METHODS = ["cam", *GRADIENT_METHODS, "scorecam"]  # BroadCAM is tested with its own file


class FullResolutionNet(nn.Module):
    """Two conv stages at the input resolution, then GAP → linear: its maps need no upsampling."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage2(self.stage1(x)).mean(dim=(-2, -1)))


@pytest.fixture(scope="module")
def resnet():
    """resnet18_small with torchvision's 1,000-class head (the targets below go up to 999); its own, as tests here
    change its mode and flags."""
    return small_resnet(1000)


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("method", ["cam", *GRADIENT_METHODS])
def test_k_classes_equal_separate_calls_and_batch_equals_single_images(method, resnet, images):
    targets = torch.tensor([[1, 7, 3], [4, 4, 999]])
    with create_cam(method, resnet, ["layer3", "layer4"] if method != "cam" else ["layer4"]) as cam:
        together = cam(images, targets)
        assert together.shape == (2, 3, 64, 64)
        for k in range(3):
            assert torch.allclose(together[:, k], cam(images, targets[:, k]), atol=1e-5)
        for b in range(2):
            assert torch.allclose(together[b], cam(images[b : b + 1], targets[b : b + 1])[0], atol=1e-5)
    assert together.dtype == torch.float32 and float(together.min()) >= 0 and float(together.max()) == 1


def test_gradcam_matches_a_hand_computed_oracle_through_an_in_place_relu():
    """VGG's conv `features.18` is followed by ReLU(inplace=True): the map must use its pre-ReLU output."""
    torch.manual_seed(2)
    model = torchvision.models.vgg11(weights=None).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([3, 8])
    with create_cam("gradcam", model, ["features.18"], normalize=False) as cam:
        ours = cam(images, targets)
    with torch.no_grad():
        activations = model.features[:19](images)
    activations.requires_grad_()
    logits = model.classifier(torch.flatten(model.avgpool(model.features[19:](activations.clone())), 1))
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    raw = (grads.mean(dim=(-2, -1), keepdim=True) * activations).sum(dim=1, keepdim=True).relu()
    expected = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False).relu()[:, 0]
    assert (activations < 0).any()
    assert torch.allclose(ours, expected.detach(), rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize("method", OUR_METHODS)
def test_model_state_is_untouched(method, resnet, images):
    model = resnet
    model.train()
    model.layer1.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    running_mean = model.bn1.running_mean.clone()
    options = {"batch_size": 256} if method == "scorecam" else {}
    layer = "layer4.1.conv2" if method == "scorecam" else "layer4"
    try:
        with create_cam(method, model, [layer], **options) as cam:
            cam(images[:1], torch.tensor([5]))
        assert model.training and all(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert torch.equal(model.bn1.running_mean, running_mean)  # ran in eval mode
        assert all(not m._forward_hooks for m in model.modules())
    finally:
        model.requires_grad_(True).eval()


def test_eval_flags_of_submodules_are_restored_one_by_one(resnet, images):
    resnet.train()
    resnet.layer2.eval()
    try:
        with create_cam("gradcam", resnet, "layer4") as cam:
            cam(images, torch.tensor([1, 2]))
        assert resnet.training and not resnet.layer2.training and resnet.layer3.training
    finally:
        resnet.eval()


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_gradients_work_under_no_grad_and_inference_mode(context, resnet, images):
    targets = torch.tensor([10, 20])
    with create_cam("gradcam", resnet, ["layer4"]) as cam:
        expected = cam(images, targets)
        with context():
            inside = cam(images.clone(), targets.clone())
    assert torch.allclose(inside, expected, atol=1e-6)


def test_hooks_are_removed_by_the_context_and_by_remove(resnet, images):
    with create_cam("gradcam", resnet, ["layer3", "layer4"]) as cam:
        assert resnet.layer3._forward_hooks and resnet.layer4._forward_hooks
    assert all(not m._forward_hooks for m in resnet.modules())
    other = create_cam("cam", resnet, ["layer4"])
    other.close()
    assert not resnet.layer4._forward_hooks
    with pytest.raises(RuntimeError, match="removed"):
        other(images, torch.tensor([1, 2]))


def test_tta_shapes_and_flip_symmetry(images):
    # torchvision's ResNet-18, not resnet18_small: resizing a mirror-symmetric image by 1.5 is symmetric only up to
    # float error, which its stride-32 maps keep within the 1e-5 below (2e-6) and the small net's stride 16 does not
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    symmetric = (images + images.flip(-1)) / 2
    targets = torch.tensor([[1, 2], [3, 4]])
    with create_cam("gradcam", resnet, ["layer4"], scales=[0.5, 1.0, 1.5], flip=True) as cam:
        maps = cam(symmetric, targets)
    assert maps.shape == (2, 2, 64, 64) and float(maps.min()) >= 0 and float(maps.max()) == 1
    assert torch.allclose(maps, maps.flip(-1), atol=1e-5)
    with create_cam("gradcam", resnet, ["layer4"]) as cam:
        plain = cam(symmetric, targets)
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-2)  # the symmetry comes from the flip


def test_tta_sums_the_views_of_single_scale_calls(resnet, images):
    targets = torch.tensor([5, 6])

    def raw(scales, flip, x):
        with create_cam("layercam", resnet, ["layer4"], scales=scales, flip=flip, normalize=False) as cam:
            return cam(x, targets)

    summed = raw([0.75, 1.25], True, images)
    views = [raw([s], False, images) + raw([s], False, images.flip(-1)).flip(-1) for s in (0.75, 1.25)]
    assert torch.allclose(summed, sum(views), rtol=1e-4, atol=1e-6 * float(summed.max()))
    with create_cam("layercam", resnet, ["layer4"], scales=[0.75, 1.25], flip=True) as cam:
        assert torch.allclose(cam(images, targets), normalize_maps(summed), atol=1e-5)


@pytest.mark.parametrize("fusion", ["mean", "max", "tanh-max"])
def test_fusion_rules_on_full_resolution_layers(fusion):
    """Without upsampling, a fused map is the rule applied to the single-layer normalised maps."""
    torch.manual_seed(3)
    model = FullResolutionNet().eval()
    images, targets = torch.randn(3, 3, 16, 16), torch.tensor([0, 2, 4])
    singles = []
    for layer in ("stage1", "stage2"):
        with create_cam("gradcam", model, [layer]) as cam:
            singles.append(cam(images, targets))
    stacked = torch.stack(singles)
    expected = {"mean": stacked.mean(0), "max": stacked.amax(0), "tanh-max": torch.tanh(2 * stacked).amax(0)}[fusion]
    with create_cam("gradcam", model, ["stage1", "stage2"], fusion=fusion) as cam:
        assert torch.allclose(cam(images, targets), normalize_maps(expected), atol=1e-5)


def test_normalize_false_returns_raw_relu_maps_and_constant_maps_become_zeros(resnet, images):
    targets = torch.tensor([1, 2])
    with create_cam("cam", resnet, ["layer4"], normalize=False) as cam:
        raw = cam(images, targets)
    assert float(raw.min()) >= 0 and float(raw.max()) > 1  # random-weight logits are not in [0, 1]
    assert torch.allclose(normalize_maps(raw), create_cam("cam", resnet, ["layer4"])(images, targets), atol=1e-6)
    assert torch.equal(normalize_maps(torch.full((2, 4, 4), 3.0)), torch.zeros(2, 4, 4))
    resnet.layer4._forward_hooks.clear()


def test_batch_size_splits_the_images_without_changing_the_maps(resnet):
    torch.manual_seed(4)
    images, targets = torch.randn(5, 3, 64, 64), torch.randint(0, 1000, (5, 2))
    with create_cam("xgradcam", resnet, ["layer4"]) as whole, create_cam("xgradcam", resnet, ["layer4"], batch_size=2) as split:
        assert torch.allclose(whole(images, targets), split(images, targets), atol=1e-5)


def test_cam_errors(resnet, images):
    with pytest.raises(KeyError, match=r"unknown CAM method 'gradcamm'; available: \[.*'gradcam'"):
        create_cam("gradcamm", resnet, ["layer4"])
    with pytest.raises(ValueError, match=r"unknown target layer 'layer5'.*'layer4'"):
        create_cam("gradcam", resnet, ["layer5"])
    with pytest.raises(ValueError, match="target_layers"):
        create_cam("gradcam", resnet, None)
    with pytest.raises(ValueError, match="no nn.Linear"):
        create_cam("cam", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), ["1"])
    with pytest.raises(ValueError, match="fusion"):
        create_cam("gradcam", resnet, ["layer4"], fusion="sum")
    with pytest.raises(TypeError, match="unexpected keyword"):
        create_cam("gradcam", resnet, ["layer4"], fc="fc")
    with create_cam("gradcam", resnet, ["layer4"]) as cam:
        with pytest.raises(ValueError, match=r"\[B\] or \[B, K\] with B = 2"):
            cam(images, torch.tensor([1, 2, 3]))
        with pytest.raises(ValueError, match=r"\[B\] or \[B, K\] with B = 2"):
            cam(images, torch.tensor([[[1]], [[2]]]))
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 1000\).*max 1000"):
            cam(images, torch.tensor([1, 1000]))
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 1000\).*min -1"):
            cam(images, torch.tensor([-1, 3]))
        with pytest.raises(TypeError, match="integer class indices"):
            cam(images, torch.tensor([1.0, 2.0]))
        with pytest.raises(ValueError, match=r"images must be a tensor \[B, 3, H, W\]"):
            cam(images[0], torch.tensor([1]))
    with create_cam("cam", resnet, ["layer3"]) as cam, pytest.raises(ValueError, match="64 channels but the head takes 128"):
        cam(images, torch.tensor([1, 2]))
