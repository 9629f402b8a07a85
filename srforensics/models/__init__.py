"""SR models: the plug-in base, built-in models, architectures, samplers, and how a model is named.

``--model`` takes an SR checkpoint (a state dict, ``.pth``/``.safetensors``, whose
architecture spandrel detects), a model spec YAML file, a TorchScript file, a registry name
(``bicubic``), an entry point in group ``srforensics.models``, or
``package.module:Class``. ``--sampler`` wraps any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.models.base import DTYPES, ModelCard, SRModel
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

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript")


def _accepts(cls: type, param: str) -> bool:
    import inspect

    params = inspect.signature(cls.__init__).parameters.values()
    return any(p.name == param or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def load_model(
    name: str,
    *,
    args: Mapping[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    sampler: str | None = None,
    sampler_args: Mapping[str, Any] | None = None,
) -> SRModel:
    """Instantiate a model from a spec YAML, a TorchScript file, a registry name, entry point or ``module:Class``."""
    args = dict(args or {})
    path = Path(name).expanduser()
    from srforensics.models.checkpoint import CHECKPOINT_SUFFIXES, is_torchscript

    if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file() and not is_torchscript(path):
        if args:
            raise SRForensicsError(
                f"--model-arg does not apply to a checkpoint ({path}): spandrel reads its "
                "architecture from the file"
            )
        from srforensics.models.checkpoint import CheckpointModel

        model: SRModel = CheckpointModel(path, device=device, dtype=dtype)
    elif path.suffix.lower() in (".yaml", ".yml") or (
        path.suffix.lower() in TORCHSCRIPT_SUFFIXES and path.is_file()
    ):
        if args:
            raise SRForensicsError(
                f"--model-arg does not apply to a model file ({path}); edit the file instead"
            )
        if not path.is_file():
            raise SRForensicsError(f"model spec {path} does not exist")
        from srforensics.models.network import SpecModel, TorchScriptModel

        kind = SpecModel if path.suffix.lower() in (".yaml", ".yml") else TorchScriptModel
        model = kind(path, device=device, dtype=dtype)
    else:
        target = MODELS.get(name)
        if not (isinstance(target, type) and issubclass(target, SRModel)):
            raise SRForensicsError(
                f"{name!r} resolves to {target!r}, which is not a subclass of srforensics.models.SRModel"
            )
        kwargs: dict[str, Any] = {"device": device, **args}
        if _accepts(target, "dtype"):
            kwargs["dtype"] = dtype
        elif dtype != "float32":
            raise SRForensicsError(
                f"model {name!r} does not take a dtype; it runs in its own precision"
            )
        try:
            model = target(**kwargs)
        except SRForensicsError:
            raise
        except TypeError as exc:
            raise SRForensicsError(
                f"cannot create model {name!r} with arguments {args}: {exc}"
            ) from None
        except Exception as exc:  # the plug-in's own failure, said in one line
            raise SRForensicsError(
                f"model {name!r} could not be created: {type(exc).__name__}: {exc}"
            ) from None
        except SystemExit as exc:
            raise SRForensicsError(
                f"model {name!r} called sys.exit({exc.code!r}) while being created"
            ) from None
    if sampler:
        from srforensics.models.samplers import wrap

        model = wrap(model, sampler, sampler_args or {})
    return model


__all__ = [
    "ARCHITECTURES",
    "DTYPES",
    "KNOWN_SYSTEMS",
    "MODELS",
    "SAMPLERS",
    "ModelCard",
    "SRModel",
    "load_model",
]
