"""VGG-16 with BatchNorm, CIFAR variant (13 conv layers + 2 FC, as in HRank/CHIP).

Max-pools use ``ceil_mode=True`` so that 28×28 inputs (Fashion-MNIST) survive five pools
(28→14→7→4→2→1); on 32×32 inputs this is identical to the usual floor mode.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models._registry import register_model
from edgeprune.models.resnet import init_weights

_CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [
                    nn.Conv2d(c, v, 3, padding=1, bias=False),
                    nn.BatchNorm2d(v),
                    nn.ReLU(inplace=True),
                ]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(c, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model("vgg16_bn", input_size=32, family="vgg")
def vgg16_bn(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-16-BN, CIFAR variant (13 conv + BN, 512→512→classes head)."""
    return VGG(_CFG16, num_classes=num_classes, in_channels=in_channels)
