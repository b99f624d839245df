"""The backbone registry: stage names CAM methods hook, output stride, VGG-GAP, local-path weights, and one-line
errors for bad names and weights. Never downloads (weights=None or a local file)."""
from __future__ import annotations

import pytest
import torch

from src.models import BACKBONES, Classifier, backbone_spec, build_backbone, check_layers
from src.models.backbones import VGGGap


def stage_shapes(net: torch.nn.Module, names, size: int = 64) -> dict[str, tuple[int, ...]]:
    shapes, modules = {}, dict(net.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in names]
    with torch.no_grad():
        logits = net.eval()(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    shapes["logits"] = tuple(logits.shape)
    return shapes


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16"])
def test_every_stage_and_cam_layer_is_a_named_module_and_the_head_is_fc(name):
    spec = backbone_spec(name)
    net = build_backbone(name, 5)
    assert check_layers(net, list(spec.stages) + list(spec.cam_layers), "stages") == [*spec.stages, *spec.cam_layers]
    assert isinstance(net.fc, torch.nn.Linear) and net.fc.out_features == 5
    assert stage_shapes(net, spec.cam_layers)["logits"] == (1, 5)


@pytest.mark.parametrize(("name", "channels"), [("resnet18", 512), ("resnet50", 2048)])
def test_output_stride_16_doubles_the_last_stage(name, channels):
    at_32 = stage_shapes(build_backbone(name, 3, output_stride=32), ["layer4"])["layer4"]
    at_16 = stage_shapes(build_backbone(name, 3, output_stride=16), ["layer4"])["layer4"]
    assert at_32 == (1, channels, 2, 2) and at_16 == (1, channels, 4, 4)


def test_vgg_gap_drops_the_last_pool_for_stride_16():
    net = build_backbone("vgg16", 4)
    assert isinstance(net, VGGGap) and not isinstance(net.features[-1], torch.nn.MaxPool2d)
    assert stage_shapes(net, ["features.29"])["features.29"] == (1, 512, 4, 4)  # 64 / 16


def test_local_weights_load_the_trunk_but_never_the_head(tmp_path):
    torch.manual_seed(0)
    source = Classifier("resnet18", 7)  # a Lightning checkpoint's keys carry the `net.` prefix
    path = tmp_path / "trunk.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    net = build_backbone("resnet18", 3, str(path))
    assert torch.equal(net.layer1[0].conv1.weight, source.net.layer1[0].conv1.weight)
    assert net.fc.out_features == 3  # a head of another size is left as built


def test_bad_names_and_weights_are_one_line_errors(tmp_path):
    with pytest.raises(KeyError, match=r"backbone.name='resnet999'.*expected one of"):
        backbone_spec("resnet999")
    with pytest.raises(ValueError, match="backbone.output_stride=8"):
        build_backbone("resnet18", 2, output_stride=8)
    with pytest.raises(FileNotFoundError, match="backbone.weights"):
        build_backbone("resnet18", 2, str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="not a weights name of resnet18"):
        build_backbone("resnet18", 2, "NOPE")
    torch.save({"unrelated": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor matches"):
        build_backbone("resnet18", 2, str(tmp_path / "other.pt"))
    with pytest.raises(KeyError, match=r"cam.target_layers: no module named 'layer9'.*close matches"):
        check_layers(build_backbone("resnet18", 2), ["layer9"], "cam.target_layers")
    assert set(BACKBONES) >= {"resnet18", "resnet50", "vgg16", "resnest101e"}
