"""Mixed precision: the CAM engine and the BLS features compute in float32 whatever autocast surrounds them,
and AMP training keeps its autocast around a CAM call.

Tolerance: none. Inside the engine autocast is off and the images are float32, so the maps under
`torch.autocast("cpu", dtype=torch.bfloat16)` come from the very same float32 operations, in the same order,
as the maps computed without autocast: they must be bit-identical (`torch.equal`). Each test also checks
that the autocast around it is real (a bare forward there gives bfloat16 logits that differ from fp32), so
an engine that ran under it would fail.
"""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from src.bls import fit_bls
from src.cams import create_cam
from src.models.classifier import Classifier
from tests.helpers import small_resnet

NUM_CLASSES = 4
STAGES = ["layer3", "layer4"]
# method → (target layers, options); Score-CAM on layer2 (32 channels) keeps its masked forwards few
METHODS = {
    "cam": (["layer4"], {}),
    "gradcam": (STAGES, {}),
    "gradcampp": (STAGES, {}),
    "xgradcam": (STAGES, {}),
    "layercam": (STAGES, {"fusion": "tanh-max"}),
    "scorecam": (["layer2"], {"batch_size": 64}),
    "broadcam": (STAGES, {}),
}


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def batches(images: torch.Tensor, labels: torch.Tensor, size: int = 4) -> list[dict]:
    return [{"image": images[i : i + size], "labels": labels[i : i + size], "index": torch.arange(i, i + size)}
            for i in range(0, len(images), size)]


@pytest.fixture(scope="module")
def net():
    return small_resnet(NUM_CLASSES)


@pytest.fixture(scope="module")
def fit_data():
    torch.manual_seed(1)
    labels = (torch.rand(12, NUM_CLASSES) < 0.4).float()
    labels[:NUM_CLASSES] = torch.eye(NUM_CLASSES)
    return batches(torch.rand(12, 3, 48, 48), labels)


@pytest.fixture(scope="module")
def bls(net, fit_data):
    return fit_bls(net, fit_data, STAGES, alpha=50.0, step=32, device="cpu")[0]


def assert_autocast_is_real(net, images):
    """The surrounding autocast really lowers a bare forward's precision (else the tests below prove nothing)."""
    assert torch.is_autocast_enabled("cpu")
    with torch.no_grad():
        amp = net(images)
    assert amp.dtype == torch.bfloat16
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        assert not torch.equal(amp.float(), net(images))


@pytest.mark.parametrize("method", list(METHODS))
def test_maps_under_bf16_autocast_equal_fp32_maps(method, net, bls):
    layers, options = METHODS[method]
    if method == "broadcam":
        options = {**options, "bls": bls}
    torch.manual_seed(2)
    images, targets = torch.rand(2, 3, 48, 40), torch.tensor([[0, 3], [2, 1]])
    with create_cam(method, net, layers, **options) as cam:
        fp32 = cam(images, targets)
        with bf16_autocast():
            assert_autocast_is_real(net, images)
            amp = cam(images, targets)
            assert torch.is_autocast_enabled("cpu")  # restored after the call
            half_input = cam(images.bfloat16(), targets)  # bf16 images are cast to fp32, not the other way
        reference_half_input = cam(images.bfloat16().float(), targets)
    assert fp32.dtype == amp.dtype == torch.float32 and fp32.amax() > 0
    assert torch.equal(amp, fp32)
    assert torch.equal(half_input, reference_half_input)


def test_score_cam_predict_logits_is_fp32_under_autocast(net):
    images = torch.rand(3, 3, 32, 32)
    with create_cam("scorecam", net, ["layer4"]) as cam:
        fp32 = cam.predict_logits(images)
        with bf16_autocast():
            amp = cam.predict_logits(images)
    assert amp.dtype == torch.float32 and torch.equal(amp, fp32)


def test_bls_features_and_weights_under_bf16_autocast_equal_fp32(net, fit_data, bls):
    with bf16_autocast():
        assert_autocast_is_real(net, fit_data[0]["image"])
        amp, _ = fit_bls(net, fit_data, STAGES, alpha=50.0, step=32, device="cpu")
    assert amp.cam_weights.dtype == torch.float64
    assert torch.equal(amp.cam_weights, bls.cam_weights)


class RecordingClassifier(Classifier):
    """Records the logits' dtype of each training step and, at step 1, computes a CAM inside the step (as an
    image logger would): the steps after it must still train under bf16 autocast, in train mode."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_dtypes, self.cam_maps = [], None

    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            with create_cam("gradcam", self.net, ["layer4"]) as cam:
                self.cam_maps = cam(batch["image"], batch["labels"].argmax(1))
            assert self.training and self.net.training
        logits = self(batch["image"])
        self.step_dtypes.append(logits.dtype)
        return super().training_step(batch, batch_idx)


def test_amp_training_is_unaffected_by_a_cam_inside_it(fit_data):
    torch.manual_seed(3)
    model = RecordingClassifier("resnet18_small", NUM_CLASSES, output_stride=16, scheduler="none")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=3, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
    trainer.fit(model, DataLoader(fit_data, batch_size=None))
    assert model.step_dtypes == [torch.bfloat16] * 3
    assert model.cam_maps.dtype == torch.float32 and model.cam_maps.shape == (4, 48, 48)
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(torch.isfinite(p).all() for p in model.parameters()) and all(changed)
