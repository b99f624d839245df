"""Score-CAM's masked forwards: batched, bounded by batch_size, shared by the K classes, constant channels once."""

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import pytest
import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from src.cams import create_cam


class ConstantChannelNet(nn.Module):
    """conv(3→8) → ReLU → GAP → linear, where channels 0–1 are always 0 and 2–3 always 0.5 (constant maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Linear(8, 5)
        with torch.no_grad():
            self.conv.weight[:4] = 0
            self.conv.bias[:4] = torch.tensor([-1.0, -1.0, 0.5, 0.5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(-2, -1)))


@pytest.fixture
def model_and_batches():
    """The model, and the batch size of each of its forwards, recorded by a pre-hook."""
    torch.manual_seed(0)
    model = ConstantChannelNet().eval()
    batches = []
    handle = model.register_forward_pre_hook(lambda module, inputs: batches.append(inputs[0].shape[0]))
    yield model, batches
    handle.remove()


def test_masked_forwards_are_batched_deduplicated_and_shared_by_classes(model_and_batches):
    model, batches = model_and_batches
    images = torch.randn(2, 3, 12, 12)
    with create_cam("scorecam", model, ["relu"], batch_size=3) as cam:
        one = cam(images, torch.tensor([1, 2]))
        # 1 forward of the batch, 1 of the blank image for the 2×4 constant channels, 2×4 masked images by 3.
        assert batches == [2, 1, 3, 3, 2]
        batches.clear()
        two = cam(images, torch.tensor([[1, 4], [2, 0]]))
        assert batches == [2, 1, 3, 3, 2]
    assert torch.allclose(two[:, 0], one, atol=1e-6)
    assert two.shape == (2, 2, 12, 12)


def test_tiny_model_matches_pytorch_grad_cam_constant_channels_included(model_and_batches):
    model, _ = model_and_batches
    images, targets = torch.randn(3, 3, 12, 12), torch.tensor([0, 3, 4])
    with create_cam("scorecam", model, ["relu"], batch_size=5) as cam:
        ours = cam(images, targets)
    with ScoreCAM(model=model, target_layers=[model.relu]) as peer:
        theirs = torch.from_numpy(peer(images, [ClassifierOutputTarget(int(t)) for t in targets]))
    assert float((ours - theirs).abs().max()) <= 1e-4


def test_batch_size_does_not_change_the_maps(model_and_batches):
    model, _ = model_and_batches
    images, targets = torch.randn(2, 3, 12, 12), torch.tensor([[1, 2], [3, 4]])
    maps = [create_cam("scorecam", model, ["relu"], batch_size=size)(images, targets) for size in (1, 4, 100)]
    assert torch.allclose(maps[0], maps[1], atol=1e-6) and torch.allclose(maps[0], maps[2], atol=1e-6)
    with pytest.raises(ValueError, match="integer batch_size"):
        create_cam("scorecam", model, ["relu"], batch_size=None)
