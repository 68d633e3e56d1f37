"""CPU training stays off the oneDNN kernel that corrupts memory (uxlfoundation/oneDNN#6035)."""

import subprocess
import sys
import textwrap

import pytest
from torch import nn

from edgeprune.train._loop import channels_last_is_safe


def _net(shortcut_in: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, shortcut_in, 3, padding=1),
        nn.Conv2d(shortcut_in, 2 * shortcut_in, 1, stride=2),
        nn.Flatten(),
        nn.LazyLinear(10),
    )


def test_a_narrow_strided_1x1_conv_turns_channels_last_off() -> None:
    assert not channels_last_is_safe(_net(5))  # a pruned ResNet shortcut: 5 → 10, stride 2
    assert channels_last_is_safe(_net(16))
    assert channels_last_is_safe(nn.Sequential(nn.Conv2d(3, 7, 1)))  # stride 1: another kernel


@pytest.mark.timeout(300)
def test_training_a_pruned_shortcut_of_three_channels_finishes() -> None:
    # Channels-last 3 → 7 strided 1x1 at batch 128 hung in its second backward pass, or aborted
    # with "free(): invalid next size", before training kept such models in NCHW. A subprocess,
    # so a hang or an abort fails this test instead of the suite.
    code = textwrap.dedent(
        """
        import torch
        from torch import nn
        from edgeprune.data import load_dataset
        from edgeprune.train import TrainConfig, train
        torch.set_num_threads(2)
        data = load_dataset("fashion-mnist")
        net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                            nn.Conv2d(3, 7, 1, stride=2, bias=False), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(),
                            nn.Linear(7, 10))
        state = train(net, data, TrainConfig(epochs=2, lr=0.01, max_train_samples=1024))
        print("epochs", len(state.history))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epochs 2" in proc.stdout
