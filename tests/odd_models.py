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


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SplitShuffleNet(nn.Module):
    """ShuffleNetV2-style: channel split (a slice and `torch.chunk`), a branch, concatenation and
    a channel shuffle (view + transpose + reshape), then a two-branch down-sampling block."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5, width: int = 16) -> None:
        super().__init__()
        half = width // 2
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(half, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(),
                nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
                nn.BatchNorm2d(half),
                nn.Conv2d(half, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(),
            )
            for _ in range(2)
        )
        self.down_left = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width, bias=False),
            nn.BatchNorm2d(width),
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.down_right = nn.Sequential(
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width, bias=False),
            nn.BatchNorm2d(width),
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.last = nn.Sequential(
            nn.Conv2d(2 * width, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        x = _channel_shuffle(torch.cat([x1, self.branches[0](x2)], 1), 2)
        x1, x2 = torch.chunk(x, 2, dim=1)
        x = _channel_shuffle(torch.cat([x1, self.branches[1](x2)], 1), 2)
        x = _channel_shuffle(torch.cat([self.down_left(x), self.down_right(x)], 1), 2)
        return self.head(self.last(x).mean((2, 3)))


class PreActDenseNet(nn.Module):
    """DenseNet-style concatenation growth with pre-activation: each layer's BatchNorm + ReLU
    runs on the whole concatenation (so one BatchNorm holds several groups' channels)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5, growth: int = 6) -> None:
        super().__init__()
        width = 2 * growth
        self.conv0 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bns = nn.ModuleList()
        self.convs = nn.ModuleList()
        for i in range(3):
            self.bns.append(nn.BatchNorm2d(width + i * growth))
            self.convs.append(nn.Conv2d(width + i * growth, growth, 3, padding=1, bias=False))
        total = width + 3 * growth
        self.trans_bn = nn.BatchNorm2d(total)
        self.trans = nn.Conv2d(total, 16, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        for bn, conv in zip(self.bns, self.convs, strict=True):
            x = torch.cat([conv(torch.relu(bn(x))), x], 1)
        x = self.trans(torch.relu(self.trans_bn(x)))
        x = torch.nn.functional.avg_pool2d(x, 2)
        return self.head(torch.relu(self.bn(x)).mean((2, 3)))


class SlicedResidualNet(nn.Module):
    """DPN-style dual path: each block's output is split by slicing; the first ``d`` channels are
    added to the shortcut's (a residual path), the rest are concatenated (a dense path)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        d: int = 16,
        dense: int = 4,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        self.d = d
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        last = 16
        self.blocks = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        for i in range(blocks):
            self.blocks.append(
                nn.Sequential(
                    nn.Conv2d(last, 16, 1, bias=False),
                    nn.BatchNorm2d(16),
                    nn.ReLU(),
                    nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False),
                    nn.BatchNorm2d(16),
                    nn.ReLU(),
                    nn.Conv2d(16, d + dense, 1, bias=False),
                    nn.BatchNorm2d(d + dense),
                )
            )
            first = i == 0
            self.shortcuts.append(
                nn.Sequential(nn.Conv2d(last, d + dense, 1, bias=False), nn.BatchNorm2d(d + dense))
                if first
                else nn.Identity()
            )
            last = d + (i + 2) * dense
        self.head = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        d = self.d
        for block, shortcut in zip(self.blocks, self.shortcuts, strict=True):
            out = block(x)
            x = shortcut(x)
            x = torch.relu(torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]], 1))
        return self.head(x.mean((2, 3)))


class GhostModule(nn.Module):
    """GhostNet's module: a primary conv makes half the maps, a cheap depthwise conv makes the
    other half from them; the concatenation is cut back to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        super().__init__()
        self.out_channels = out_channels
        init = -(-out_channels // 2)
        act: nn.Module = nn.ReLU() if relu else nn.Identity()
        self.primary = nn.Sequential(
            nn.Conv2d(in_channels, init, 1, bias=False), nn.BatchNorm2d(init), act
        )
        self.cheap = nn.Sequential(
            nn.Conv2d(init, init, 3, padding=1, groups=init, bias=False), nn.BatchNorm2d(init), act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary(x)
        return torch.cat([x1, self.cheap(x1)], 1)[:, : self.out_channels]


class GhostNet(nn.Module):
    """Ghost bottlenecks (ghost module → ghost module, plus the input) around a stem and a head;
    odd widths, so the cut after the concatenation drops a channel."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 15, 3, padding=1, bias=False), nn.BatchNorm2d(15), nn.ReLU()
        )
        self.g1 = GhostModule(15, 24)
        self.g2 = GhostModule(24, 15, relu=False)
        self.g3 = GhostModule(15, 40)
        self.head = nn.Linear(40, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.g2(self.g1(x))
        return self.head(self.g3(x).mean((2, 3)))
