"""SR models: the plug-in base, built-in models, architectures, samplers, and how a model is named.

``--model`` takes an SR checkpoint (a state dict, ``.pth``/``.safetensors``, whose
architecture spandrel detects), a model spec YAML file, a TorchScript file, a registry name
(``bicubic``), an entry point in group ``srforensics.models``, or
``package.module:Class``. ``--sampler`` wraps any of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from srforensics.errors import SRForensicsError
from srforensics.models.base import DTYPES, ModelCard, SRModel
from srforensics.models.checkpoint import CHECKPOINT_SUFFIXES, CheckpointModel, is_torchscript
from srforensics.models.names import ARCHITECTURES, KNOWN_SYSTEMS, MODELS, SAMPLERS
from srforensics.models.network import SpecModel, TorchScriptModel
from srforensics.models.samplers import wrap

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript")


def _accepts(cls: type, param: str) -> bool:
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
    if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file() and not is_torchscript(path):
        if args:
            raise SRForensicsError(
                f"--model-arg does not apply to a checkpoint ({path}): spandrel reads its "
                "architecture from the file"
            )
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
