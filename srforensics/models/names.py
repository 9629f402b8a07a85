"""The names of the models, architectures and samplers srforensics ships, and the systems
users know by name (``srforensics models list``): registries only, so that the modules that
implement them can look names up without importing :mod:`srforensics.models`."""

from __future__ import annotations

from typing import Any

from srforensics.models.base import SRModel
from srforensics.registry import Registry

MODELS: Registry[type[SRModel]] = Registry("model", entry_point_group="srforensics.models")
for _name, _target, _desc in [
    ("nearest", "interpolation:Nearest", "nearest-neighbour interpolation (deterministic)"),
    ("bilinear", "interpolation:Bilinear", "bilinear interpolation (deterministic)"),
    ("bicubic", "interpolation:Bicubic", "MATLAB bicubic interpolation (deterministic)"),
    (
        "nullspace",
        "nullspace:NullSpace",
        "bicubic + random null-space content: every output fits the LR",
    ),
    (
        "realesrgan-x4plus",
        "network:RealESRGANx4plus",
        "Real-ESRGAN x4plus, RRDBNet GAN (needs weights)",
    ),
    (
        "realesrgan-x2plus",
        "network:RealESRGANx2plus",
        "Real-ESRGAN x2plus, RRDBNet GAN (needs weights)",
    ),
    ("imdn-x2", "network:IMDNx2", "IMDN x2, lightweight, bicubic-trained (needs weights)"),
    ("imdn-x3", "network:IMDNx3", "IMDN x3, lightweight, bicubic-trained (needs weights)"),
    ("imdn-x4", "network:IMDNx4", "IMDN x4, lightweight, bicubic-trained (needs weights)"),
]:
    MODELS.register(_name, f"srforensics.models.{_target}", description=_desc)
MODELS.register(
    "lanczos",
    "srforensics.models.interpolation:Lanczos",
    aliases=("lanczos3",),
    description="Lanczos-3 interpolation (deterministic)",
)

ARCHITECTURES: Registry[Any] = Registry("architecture")
for _name, _target in [
    ("rrdbnet", "RRDBNet"),
    ("msrresnet", "MSRResNet"),
    ("edsr", "EDSR"),
    ("imdn", "IMDN"),
    ("srcnn", "SRCNN"),
]:
    ARCHITECTURES.register(_name, f"srforensics.models.archs:{_target}")

#: The systems users know by name, and how each runs here (``srforensics models list``).
KNOWN_SYSTEMS = (
    ("SRCNN", "architecture srcnn (9-5-5 on the bicubic-upscaled LR)", "your file, in a model spec YAML with its SHA-256"),
    ("SRGAN", "architecture msrresnet (its SRResNet generator, without BN)", "your file, in a model spec YAML with its SHA-256"),
    ("ESRGAN", "architecture rrdbnet, or spandrel's ESRGAN from a checkpoint", "realesrgan-x4plus / -x2plus (registered), or --model FILE.pth"),
    ("any checkpoint", "spandrel detects the architecture (SwinIR, HAT, DAT, SPAN, ...)", "--model FILE.pth|.safetensors"),
)  # fmt: skip

SAMPLERS: Registry[Any] = Registry("sampler")
SAMPLERS.register("tta", "srforensics.models.samplers:TTA", description="8 dihedral transforms")
SAMPLERS.register(
    "mc-dropout", "srforensics.models.samplers:MCDropout", description="dropout kept on (p)"
)
SAMPLERS.register(
    "input-noise",
    "srforensics.models.samplers:InputNoise",
    description="LR + Gaussian noise (sigma)",
)
