"""Models the zoo does not have, for "works on a model it has never seen" tests."""

from __future__ import annotations

import torch
from torch import nn


class DepthwiseGroupedSE(nn.Module):
    """Depthwise and grouped convolutions, squeeze-excitation, concatenation, a module used twice."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.grouped = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.se_fc1 = nn.Linear(32, 8)
        self.se_fc2 = nn.Linear(8, 32)
        self.branch = nn.Sequential(nn.Conv2d(32, 8, 1), nn.ReLU())
        self.shared = nn.Conv2d(8, 8, 3, padding=1)  # applied twice
        self.head = nn.Linear(32 + 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.dw(self.stem(x)))
        s = torch.sigmoid(self.se_fc2(torch.relu(self.se_fc1(x.mean((2, 3))))))
        x = x * s[:, :, None, None]
        b = self.shared(torch.relu(self.shared(self.branch(x))))
        x = torch.cat([x, b], 1)
        return self.head(x.mean((2, 3)))


class DenseBlockNet(nn.Module):
    """DenseNet-style concatenation, a reused ReLU module, and a head whose output is post-processed."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5, growth: int = 6) -> None:
        super().__init__()
        self.relu = nn.ReLU()  # one module, called after several layers
        self.conv0 = nn.Conv2d(in_channels, 12, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(12)
        self.l1 = nn.Conv2d(12, growth, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(growth)
        self.l2 = nn.Conv2d(12 + growth, growth, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(growth)
        self.trans = nn.Conv2d(12 + 2 * growth, 16, 1, bias=False)
        self.bt = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, num_classes, 1)  # a 1×1-conv classifier: must keep its width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0(self.conv0(x)))
        y1 = self.relu(self.b1(self.l1(x)))
        x = torch.cat([x, y1], 1)
        y2 = self.relu(self.b2(self.l2(x)))
        x = torch.cat([x, y2], 1)
        x = self.relu(self.bt(self.trans(x)))
        return self.head(x).mean((2, 3)).log_softmax(1)


def make_depthwise_grouped_se(in_channels: int = 1, num_classes: int = 5) -> nn.Module:
    return DepthwiseGroupedSE(in_channels, num_classes)


def make_dense_block_net(in_channels: int = 1, num_classes: int = 5) -> nn.Module:
    return DenseBlockNet(in_channels, num_classes)


class TinyNet(nn.Module):
    """Three conv layers and a head: small enough for latency-search tests."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.c2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.c3 = nn.Sequential(
            nn.Conv2d(32, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48), nn.ReLU()
        )
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c3(self.c2(self.c1(x))).mean((2, 3)))


def make_tiny(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    return TinyNet(in_channels, num_classes)
