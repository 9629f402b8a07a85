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
    description="isotropic Gaussian blur (sigma px)",
)
DEGRADATIONS.register(
    "aniso_gaussian_blur",
    "srforensics.degradations.ops:AnisoGaussianBlur",
    description="anisotropic Gaussian blur (sigma_x, sigma_y, theta)",
)
DEGRADATIONS.register(
    "generalized_gaussian_blur",
    "srforensics.degradations.ops:GeneralizedGaussianBlur",
    description="generalised Gaussian blur (Real-ESRGAN)",
)
DEGRADATIONS.register(
    "plateau_blur",
    "srforensics.degradations.ops:PlateauBlur",
    description="plateau-shaped blur (Real-ESRGAN)",
)
DEGRADATIONS.register(
    "motion_blur",
    "srforensics.degradations.ops:MotionBlur",
    description="linear motion blur (length px, angle degrees)",
)
DEGRADATIONS.register(
    "defocus_blur",
    "srforensics.degradations.ops:DefocusBlur",
    description="defocus blur: uniform disk (radius px)",
)
DEGRADATIONS.register(
    "sinc_filter",
    "srforensics.degradations.ops:SincFilter",
    description="circular lowpass (sinc) filter: ringing",
)
DEGRADATIONS.register(
    "downscale",
    "srforensics.degradations.ops:Downscale",
    description="MATLAB-compatible downscale by an integer factor (counts toward the scale)",
)
DEGRADATIONS.register(
    "resize", "srforensics.degradations.ops:Resize", description="intermediate resize by a factor"
)
DEGRADATIONS.register(
    "gaussian_noise",
    "srforensics.degradations.ops:GaussianNoise",
    description="additive Gaussian noise, sigma in 8-bit units",
)
DEGRADATIONS.register(
    "poisson_noise",
    "srforensics.degradations.ops:PoissonNoise",
    description="signal-dependent (shot) noise",
)
DEGRADATIONS.register(
    "speckle_noise", "srforensics.degradations.ops:SpeckleNoise", description="multiplicative noise"
)
DEGRADATIONS.register(
    "salt_pepper_noise", "srforensics.degradations.ops:SaltPepperNoise", description="impulse noise"
)
DEGRADATIONS.register(
    "jpeg", "srforensics.degradations.ops:JPEG", description="JPEG compression at a quality"
)
DEGRADATIONS.register(
    "webp", "srforensics.degradations.ops:WebP", description="WebP compression at a quality"
)
DEGRADATIONS.register(
    "grayscale",
    "srforensics.degradations.ops:Grayscale",
    description="BT.601 grey, three equal channels",
)
DEGRADATIONS.register(
    "gamma", "srforensics.degradations.ops:Gamma", description="exposure and gamma"
)
DEGRADATIONS.register(
    "quantize", "srforensics.degradations.ops:Quantize", description="round to 8-bit levels"
)
DEGRADATIONS.register(
    "second_order",
    "srforensics.degradations.second_order:SecondOrder",
    description="Real-ESRGAN second-order degradation (counts toward the scale)",
)
DEGRADATIONS.register(
    "mod_crop",
    "srforensics.degradations.ops:ModCrop",
    description="HR step: crop to a multiple of the scale (top-left)",
)
DEGRADATIONS.register(
    "center_crop",
    "srforensics.degradations.ops:CenterCrop",
    description="HR step: centre crop to a size and a multiple of the scale",
)
DEGRADATIONS.register(
    "face_align",
    "srforensics.faces.align:FaceAlign",
    description="HR step: detect (MTCNN) and align the face, square crop",
)

__all__ = ["DEGRADATIONS", "Degradation", "Field", "HRStep", "ProtocolError"]
