"""MobileNetV2 (Sandler et al. 2018) with CIFAR-stride and ImageNet-stride configurations.

``config="cifar"`` (default) uses stride 1 in the stem and the first 24-channel stage, the usual
choice for 32×32 inputs; ``config="imagenet"`` is the paper's layout for 224×224.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models._registry import register_model
from edgeprune.models.resnet import init_weights

# t (expansion), c (channels), n (repeats), s (stride of the first block)
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn(
    cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        config: str = "cifar",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if config not in ("cifar", "imagenet"):
            raise ValueError(f"config must be 'cifar' or 'imagenet', got {config!r}")
        cifar = config == "cifar"
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(in_channels, cin, 3, 1 if cifar else 2)]
        for i, (t, c, n, s) in enumerate(_SETTINGS):
            cout = _make_divisible(c * width_mult)
            stride = 1 if (cifar and i == 1) else s
            for j in range(n):
                layers.append(InvertedResidual(cin, cout, stride if j == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model(
    "mobilenet_v2",
    input_size=lambda kw: 224 if kw.get("config") == "imagenet" else 32,
    family="mobilenet",
)
def mobilenet_v2(
    num_classes: int = 10,
    in_channels: int = 3,
    width_mult: float = 1.0,
    config: str = "cifar",
) -> MobileNetV2:
    """MobileNetV2; `config` is 'cifar' (32×32 strides, default) or 'imagenet' (224×224)."""
    return MobileNetV2(
        num_classes=num_classes, in_channels=in_channels, width_mult=width_mult, config=config
    )
