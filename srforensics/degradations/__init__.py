"""Degradation operators and protocols.

Operators are registered by name in :data:`DEGRADATIONS` (lazily imported);
third-party operators join through the ``srforensics.degradations`` entry-point
group.
"""

from __future__ import annotations

from srforensics.degradations.base import Degradation, Field, HRStep, ProtocolError
from srforensics.registry import Registry

DEGRADATIONS: Registry[type[Degradation]] = Registry(
    "degradation operator", entry_point_group="srforensics.degradations"
)
DEGRADATIONS.register(
    "gaussian_blur",
    "srforensics.degradations.ops:GaussianBlur",
    description="isotropic Gaussian blur",
)
DEGRADATIONS.register(
    "downscale",
    "srforensics.degradations.ops:Downscale",
    description="MATLAB-compatible downscale by an integer factor",
)
DEGRADATIONS.register(
    "gaussian_noise",
    "srforensics.degradations.ops:GaussianNoise",
    description="additive Gaussian noise, sigma in 8-bit units",
)
DEGRADATIONS.register(
    "jpeg", "srforensics.degradations.ops:JPEG", description="JPEG compression at a quality"
)
DEGRADATIONS.register(
    "mod_crop",
    "srforensics.degradations.ops:ModCrop",
    description="HR step: crop to a multiple of the scale",
)
DEGRADATIONS.register(
    "face_align",
    "srforensics.faces.align:FaceAlign",
    description="HR step: detect (MTCNN) and align the face, square crop",
)

__all__ = ["DEGRADATIONS", "Degradation", "Field", "HRStep", "ProtocolError"]
