import pytest
import torch
from torch import nn

from edgeprune.errors import NotFoundError, UnknownNameError, UsageError
from edgeprune.models import (
    MODELS,
    ArchSpec,
    build_model,
    default_input_size,
    list_models,
    spec_from_ref,
)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 7)])
def test_zoo_builds_and_runs(name: str, in_channels: int, num_classes: int) -> None:
    model = build_model(
        ArchSpec(name=name, kwargs={"in_channels": in_channels, "num_classes": num_classes})
    ).eval()
    size = default_input_size(ArchSpec(name=name))
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("depth,params", [(20, 272_474), (56, 855_770)])
def test_resnet_sizes_match_cifar_resnets_with_projection_shortcuts(
    depth: int, params: int
) -> None:
    model = build_model(ArchSpec(name=f"resnet{depth}"))
    assert sum(p.numel() for p in model.parameters()) == params
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {c.out_channels for c in convs} == {16, 32, 64}
    # 6n+1 3x3 convs + 2 projection shortcuts
    assert sum(c.kernel_size == (3, 3) for c in convs) == depth - 1
    assert sum(c.kernel_size == (1, 1) for c in convs) == 2


def test_mobilenet_v2_configs_differ_in_strides() -> None:
    cifar = build_model(ArchSpec(name="mobilenet_v2", kwargs={"config": "cifar"})).eval()
    imnet_spec = ArchSpec(name="mobilenet_v2", kwargs={"config": "imagenet"})
    imnet = build_model(imnet_spec).eval()
    assert default_input_size(imnet_spec) == 224
    x = torch.randn(1, 3, 32, 32)
    feats_c = cifar.features(x)
    feats_i = imnet.features(x)
    assert feats_c.shape[-1] == 4 and feats_i.shape[-1] == 1
    with pytest.raises(UsageError, match="config must be 'cifar' or 'imagenet'"):
        build_model(ArchSpec(name="mobilenet_v2", kwargs={"config": "other"}))


def test_vgg_survives_28px_inputs() -> None:
    model = build_model(ArchSpec(name="vgg16_bn", kwargs={"in_channels": 1})).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(UnknownNameError) as e:
        spec_from_ref("resnet57")
    assert "resnet56" in str(e.value) and "vgg16_bn" in str(e.value)


def test_user_factory_file(tmp_path) -> None:
    f = tmp_path / "mynet.py"
    f.write_text(
        "import torch.nn as nn\n"
        "def make(width=8, num_classes=10, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))\n"
    )
    spec = spec_from_ref(f"{f}:make", {"width": 4})
    assert spec.factory and spec.factory_sha256
    model = build_model(spec)
    assert model[0].out_channels == 4
    with pytest.raises(UsageError, match="does not accept"):
        build_model(spec.with_kwargs(depth=3))
    with pytest.raises(NotFoundError):
        spec_from_ref(f"{tmp_path}/missing.py:make")
    with pytest.raises(NotFoundError):
        spec_from_ref(f"{f}:nothere")


def test_registry_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        MODELS.add("resnet20", lambda: None)
