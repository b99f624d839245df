"""Backbone registry: name → a torchvision-style classifier (GAP → linear head) and its named stages.

Every built network is a plain `nn.Module` whose `forward(images [B,3,H,W]) -> logits [B,C]`, whose head is
the last `nn.Linear` (named `fc`), and whose stages are modules addressable by `named_modules()` names, so
CAM methods and the BLS hook them by name.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from src.models.small_resnet import SmallResNet


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone family member and where its stages are."""

    build: Callable[..., nn.Module]  # (num_classes, weights, output_stride) -> nn.Module
    stages: tuple[str, ...]          # module names, shallow to deep
    cam_layers: tuple[str, ...]      # default target layers of CAM methods
    output_strides: tuple[int, ...] = (16, 32)


def _resnet(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, weights: str | None, output_stride: int) -> nn.Module:
        bottleneck = name not in ("resnet18", "resnet34")
        dilate = output_stride == 16 and bottleneck
        net = getattr(torchvision.models, name)(weights=_torchvision_weights(name, weights),
                                                replace_stride_with_dilation=[False, False, dilate])
        if output_stride == 16 and not bottleneck:
            # BasicBlock cannot dilate: keep layer4 at stride 1 (larger maps, same weights).
            net.layer4[0].conv1.stride = (1, 1)
            net.layer4[0].downsample[0].stride = (1, 1)
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        return net
    return build


class VGGGap(nn.Module):
    """VGG convolutional trunk (last max-pool dropped, stride 16) → GAP → linear head, for CAM."""

    def __init__(self, features: nn.Sequential, num_classes: int):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(images)), 1))


def _vgg16(num_classes: int, weights: str | None, output_stride: int) -> nn.Module:
    trunk = torchvision.models.vgg16(weights=_torchvision_weights("vgg16", weights)).features
    return VGGGap(trunk[:-1], num_classes)


def _small_resnet18(num_classes: int, weights: str | None, output_stride: int) -> nn.Module:
    if weights not in (None, "none", "null"):
        raise ValueError(f"backbone.weights={weights!r}: resnet18_small has no published weights; use null, "
                         "a pretrained name (see conf/pretrain.yaml) or a local .pt path")
    return SmallResNet(num_classes, width=16, output_stride=output_stride)


def _timm_resnest(num_classes: int, weights: str | None, output_stride: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ImportError("backbone=resnest101e needs timm: pip install -e '.[timm]'") from None
    return timm.create_model("resnest101e", pretrained=weights not in (None, "none"), num_classes=num_classes,
                             output_stride=output_stride)


BACKBONES: dict[str, BackboneSpec] = {
    **{name: BackboneSpec(_resnet(name), ("layer1", "layer2", "layer3", "layer4"), ("layer4",))
       for name in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "vgg16": BackboneSpec(_vgg16, ("features.8", "features.15", "features.22", "features.29"), ("features.29",)),
    "resnest101e": BackboneSpec(_timm_resnest, ("layer1", "layer2", "layer3", "layer4"), ("layer4",)),
    # 16…128 channels, stride-2 stem: the CPU default of the synthetic world (64 px images)
    "resnet18_small": BackboneSpec(_small_resnet18, ("layer1", "layer2", "layer3", "layer4"), ("layer4",),
                                   output_strides=(8, 16)),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise KeyError(f"backbone.name={name!r} is unknown; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str, num_classes: int, weights: str | None = None, output_stride: int = 32) -> nn.Module:
    """A classifier network of the registry. `weights`: None, a torchvision weights name (e.g.
    "IMAGENET1K_V1", "DEFAULT") or a local checkpoint path (its head is ignored)."""
    spec = backbone_spec(name)
    if output_stride not in spec.output_strides:
        raise ValueError(f"backbone.output_stride={output_stride!r}; {name} supports {list(spec.output_strides)}")
    is_path = weights is not None and Path(str(weights)).suffix in (".pt", ".pth", ".ckpt", ".bin")
    net = spec.build(num_classes, None if is_path else weights, output_stride)
    if is_path:
        _load_local_weights(net, Path(str(weights)))
    return net


def check_layers(net: nn.Module, names, key: str) -> list[str]:
    """Return `names` as a list, or raise KeyError naming `key` and close matches among the modules."""
    modules = dict(net.named_modules())
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(str(name), [m for m in modules if m], n=5)
            raise KeyError(f"{key}: no module named {name!r} in the backbone; close matches: {close}")
    return list(names)


def _torchvision_weights(name: str, weights: str | None):
    if weights in (None, "none", "null"):
        return None
    try:
        return torchvision.models.get_model_weights(name)[str(weights)]
    except KeyError:
        allowed = [w.name for w in torchvision.models.get_model_weights(name)] + ["DEFAULT", "a local .pt/.pth path"]
        raise ValueError(f"backbone.weights={weights!r} is not a weights name of {name}; expected one of {allowed}") from None


def _load_local_weights(net: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"backbone.weights={str(path)!r}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("net."): v for k, v in state.items()}
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("fc.")}
    if not usable:
        raise ValueError(f"backbone.weights={str(path)!r}: no tensor matches the backbone's parameters")
    net.load_state_dict(usable, strict=False)
