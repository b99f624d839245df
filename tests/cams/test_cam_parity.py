"""Our maps against the peers': pytorch-grad-cam (Grad-CAM family, Score-CAM) and TorchCAM (CAM)."""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM progress bars

import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam.methods import CAM as TorchCAM

from src.cams import create_cam, normalize_maps

GRAD_PEERS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM}


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def assert_same_maps(ours: torch.Tensor, theirs: torch.Tensor, min_r: float) -> None:
    """Maps `[B, H, W]` in [0, 1] agree within 0.02 and correlate per image ≥ min_r."""
    assert ours.shape == theirs.shape
    assert float((ours - theirs).abs().max()) <= 0.02
    for mine, peer in zip(ours, theirs):
        assert pearson(mine, peer) >= min_r


def peer_maps(peer_class, model, layers, images, targets) -> torch.Tensor:
    modules = dict(model.named_modules())
    with peer_class(model=model, target_layers=[modules[name] for name in layers]) as peer:
        return torch.from_numpy(peer(images, [ClassifierOutputTarget(int(t)) for t in targets]))


@pytest.fixture(scope="module")
def resnet(resnet18_small):
    """The peers hook modules, not names: the small ResNet serves (the parity tests leave it as they found it)."""
    return resnet18_small


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return torchvision.models.vgg11(weights=None).eval()


@pytest.mark.parametrize("method", sorted(GRAD_PEERS))
@pytest.mark.parametrize(
    "arch, layers",
    [("resnet", ["layer4"]), ("resnet", ["layer3", "layer4"]), ("vgg", ["features.19"]),
     ("vgg", ["features.14", "features.19"])],
)
def test_gradient_methods_match_pytorch_grad_cam(method, arch, layers, request):
    model = request.getfixturevalue(arch)
    torch.manual_seed(1)
    images, targets = torch.randn(3, 3, 64, 64), torch.tensor([1, 5, 7])
    with create_cam(method, model, layers) as cam:
        ours = cam(images, targets)
    assert_same_maps(ours, peer_maps(GRAD_PEERS[method], model, layers, images, targets), min_r=0.999)


@pytest.mark.parametrize("arch, layer, size", [("resnet", "layer1", 32), ("vgg", "features.2", 32)])
def test_scorecam_matches_pytorch_grad_cam(arch, layer, size, request):
    model = request.getfixturevalue(arch)
    torch.manual_seed(2)
    images, targets = torch.randn(2, 3, size, size), torch.tensor([3, 9])
    with create_cam("scorecam", model, [layer], batch_size=64) as cam:
        ours = cam(images, targets)
    assert_same_maps(ours, peer_maps(ScoreCAM, model, [layer], images, targets), min_r=0.99)


def test_cam_matches_torchcam():
    # torchvision's ResNet-18, not resnet18_small: on the small net class 999's CAM is negative everywhere on the
    # third image, a zero map after the ReLU, which leaves no correlation to compare
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    torch.manual_seed(3)
    images, targets = torch.randn(3, 3, 64, 64), torch.tensor([0, 42, 999])
    with create_cam("cam", resnet, ["layer4"]) as cam:
        ours = cam(images, targets)
    with TorchCAM(resnet, "layer4", "fc") as peer, torch.no_grad():
        resnet(images)
        raw = peer(class_idx=targets.tolist(), normalized=False)[0]  # [B, h, w] at feature resolution
    # Bring TorchCAM's raw map through our documented post-processing: ReLU, bilinear to H×W, ReLU, min-max.
    theirs = normalize_maps(F.interpolate(raw.relu()[:, None], size=(64, 64), mode="bilinear").relu()[:, 0])
    assert_same_maps(ours, theirs, min_r=0.999)
    assert torch.allclose(ours, theirs, atol=1e-5)
