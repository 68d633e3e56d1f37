"""Model zoo (in-house: ResNet-20/32/56/110, VGG-16-BN, MobileNetV2) and user model factories."""

from edgeprune.models import mobilenetv2, resnet, vgg  # noqa: F401  (register the zoo)
from edgeprune.models._registry import (
    MODELS,
    ArchSpec,
    build_model,
    default_input_size,
    factory_file,
    file_sha256,
    is_factory_ref,
    list_models,
    load_factory,
    parse_kwargs,
    register_model,
    spec_from_ref,
)

__all__ = [
    "MODELS",
    "ArchSpec",
    "build_model",
    "default_input_size",
    "factory_file",
    "file_sha256",
    "is_factory_ref",
    "list_models",
    "load_factory",
    "parse_kwargs",
    "register_model",
    "spec_from_ref",
]
