"""Registry, the extension point BroadCAM uses, and the Hydra configs of conf/cam."""

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from src.cams import CAM_METHODS, CamEngine, CamView, create_cam, normalize_maps, register_cam
from tests.helpers import compose_config, stem

OUR_CONFIGS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam"]


@pytest.fixture(scope="module")
def resnet(resnet18_small):
    return resnet18_small


class ConcatenatedLayers(CamEngine):
    """A BroadCAM-shaped method: fixed weights over the layers' ReLU'd activations concatenated at the
    largest size, no gradients, an extra constructor argument."""

    needs_gradients = False
    relu_before_upsample = False

    def __init__(self, model, target_layers, *, weights: torch.Tensor, **options):
        self.weights = weights  # [d, N]
        self.seen_gradients = []
        super().__init__(model, target_layers, **options)

    def class_maps(self, view: CamView) -> list[torch.Tensor]:
        self.seen_gradients.append(view.gradients)
        size = view.activations[0].shape[-2:]
        features = torch.cat([F.interpolate(a.relu(), size=size, mode="bilinear") for a in view.activations], 1)
        return [torch.einsum("bkd,bdhw->bkhw", self.weights.T[view.targets], features)]


def test_a_registered_method_overrides_how_layers_become_class_maps(resnet):
    register_cam("test-concatenated")(ConcatenatedLayers)
    try:
        torch.manual_seed(1)
        weights, images, targets = torch.randn(32 + 64, 1000), torch.randn(2, 3, 64, 64), torch.tensor([[1, 2], [3, 4]])
        with create_cam("test-concatenated", resnet, ["layer2", "layer3"], weights=weights, normalize=False) as cam:
            maps = cam(images, targets)
        assert cam.seen_gradients == [None]
        with torch.no_grad():
            layer2 = resnet.layer2(resnet.layer1(stem(resnet, images)))
            layer3 = resnet.layer3(layer2)
        features = torch.cat([layer2, F.interpolate(layer3, size=layer2.shape[-2:], mode="bilinear")], 1).relu()
        raw = torch.einsum("bkd,bdhw->bkhw", weights.T[targets], features)
        expected = F.interpolate(raw, size=(64, 64), mode="bilinear").relu()  # upsample, then ReLU: no fusion
        assert torch.allclose(maps, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
        with pytest.raises(KeyError, match="already registered"):
            register_cam("test-concatenated")(type("Other", (CamEngine,), {}))
    finally:
        CAM_METHODS.pop("test-concatenated")


@pytest.mark.parametrize("name", OUR_CONFIGS)
def test_configs_have_the_pipeline_schema_and_build(name, resnet):
    cfg = compose_config([f"cam={name}"]).cam  # the method's file over conf/cam/_base.yaml
    assert set(cfg) == {"name", "target_layers", "options"}
    assert set(cfg.options) >= {"scales", "flip", "fusion", "batch_size"}
    assert cfg.name == name and name in CAM_METHODS and cfg.target_layers is None
    options = OmegaConf.to_container(cfg.options)
    with create_cam(cfg.name, resnet, ["layer4"], **options) as cam:
        maps = cam(torch.randn(1, 3, 32, 32), torch.tensor([7]))
    assert maps.shape == (1, 32, 32) and torch.allclose(maps, normalize_maps(maps), atol=1e-6)
