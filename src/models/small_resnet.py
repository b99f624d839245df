"""A narrow ResNet-18 for small images (the synthetic world on a CPU): same stage names as torchvision's.

torchvision's ResNet fixes the widths (64…512) and a stride-4 stem (7×7 conv + max-pool) made for 224 px
photographs; on 64 px images that leaves 4×4 maps after layer3 and most of the compute in wide layers.
This one keeps the BasicBlock layout [2, 2, 2, 2] with widths w, 2w, 4w, 8w and a stride-2 3×3 stem
without max-pool, so a 64 px image gives 8×8 maps at layer3 (and at layer4 with output stride 8).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
    layers = [BasicBlock(in_channels, channels, stride, downsample)]
    layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class SmallResNet(nn.Module):
    """images [B, 3, H, W] → logits [B, C]; stage strides 2 (layer1), 4, 8, 16 (layer4; 8 if output_stride=8)."""

    def __init__(self, num_classes: int, width: int = 32, blocks: tuple[int, ...] = (2, 2, 2, 2),
                 output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"backbone.output_stride={output_stride!r}; a small ResNet supports 8 or 16")
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _stage(width, width, blocks[0], 1)
        self.layer2 = _stage(width, 2 * width, blocks[1], 2)
        self.layer3 = _stage(2 * width, 4 * width, blocks[2], 2)
        self.layer4 = _stage(4 * width, 8 * width, blocks[3], 2 if output_stride == 16 else 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():  # each residual branch starts as identity: faster, steadier start
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
