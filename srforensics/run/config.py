"""What defines an audit: :class:`AuditConfig`, checked when it is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from srforensics.errors import SRForensicsError
from srforensics.images import DEFAULT_MAX_PIXELS

SaveImages = Literal["report", "all", "none"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class AuditConfig:
    """Everything that defines an audit. ``None`` means "take it from the protocol"."""

    model: str = "bicubic"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = "faces"
    dataset: str = "sample"
    dataset_root: str | None = None
    gates: str | None = None
    samples: int = 4
    metrics: tuple[str, ...] | None = None
    seed: int | None = None
    variants: int | None = None
    crop_border: int | None = None
    out: str | None = None
    save_images: SaveImages = "report"
    report_examples: int = 4
    device: Device = "cpu"
    dtype: str = "float32"
    sampler: str | None = None
    sampler_args: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    diversity: str = "auto"
    breakdown_boot: int = 1000
    identity: str = "auto"
    face_embedder: str = "auto"
    face_weights: str | None = None
    id_threshold: float | None = None
    id_fmr: float = 1e-3
    range_tolerance: float = 0.1
    max_pixels: int = DEFAULT_MAX_PIXELS
    limit: int | None = None
    allow_downloads: bool = False
    model_timeout: float | None = None
    trust_weights: bool = False
    workers: int = 0
    threads: int = 1
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    shard_size: int = 64
    loaders: int = 0
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str):  # "psnr,ssim", as on the command line
            names = tuple(m.strip() for m in self.metrics.split(",") if m.strip())
            object.__setattr__(self, "metrics", names)
        if self.samples < 1:
            raise SRForensicsError(f"--samples must be at least 1, got {self.samples}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SRForensicsError(
                f"--seed must be a whole number from 0 to 2^63 - 1 (numpy's SeedSequence), got {self.seed}"
            )
        if self.variants is not None and self.variants < 1:
            raise SRForensicsError(f"--variants must be at least 1, got {self.variants}")
        if self.save_images not in ("report", "all", "none"):
            raise SRForensicsError(
                f"--save-images must be report, all or none, got {self.save_images!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise SRForensicsError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.diversity not in ("auto", "mse16", "lpips"):
            raise SRForensicsError(
                f"--diversity must be auto, mse16 or lpips, got {self.diversity!r}"
            )
        if self.identity not in ("auto", "on", "off"):
            raise SRForensicsError(f"--identity must be auto, on or off, got {self.identity!r}")
        if not 0 < self.id_fmr < 1:
            raise SRForensicsError(f"--id-fmr must be in (0, 1), got {self.id_fmr}")
        if self.id_threshold is not None and not -1 <= self.id_threshold <= 1:
            raise SRForensicsError(
                f"--id-threshold is a cosine similarity in [-1, 1], got {self.id_threshold}"
            )
        if self.breakdown_boot != 0 and self.breakdown_boot < 50:
            raise SRForensicsError(
                f"--breakdown-boot must be 0 (off) or at least 50, got {self.breakdown_boot}"
            )
        if self.batch_size < 1:
            raise SRForensicsError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.range_tolerance <= 1:
            raise SRForensicsError(
                f"--range-tolerance must be in [0, 1], got {self.range_tolerance}"
            )
        if self.limit is not None and self.limit < 1:
            raise SRForensicsError(f"--limit must be at least 1, got {self.limit}")
        if self.metrics is not None and not self.metrics:
            raise SRForensicsError("--metrics is empty; name at least one metric")
        if self.model_timeout is not None and not self.model_timeout > 0:
            raise SRForensicsError(
                f"--model-timeout is in seconds and must be positive, got {self.model_timeout}"
            )
        if self.workers < 0:
            raise SRForensicsError(
                f"--workers must be 0 (this process) or more, got {self.workers}"
            )
        if self.threads < 1:
            raise SRForensicsError(f"--threads must be at least 1, got {self.threads}")
        if self.executor not in ("local", "ray"):
            raise SRForensicsError(f"--executor must be local or ray, got {self.executor!r}")
        if self.ray_address is not None and self.executor != "ray":
            raise SRForensicsError("--ray-address needs --executor ray")
        if self.shard_size < 1:
            raise SRForensicsError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.loaders < 0:
            raise SRForensicsError(f"--loaders must be 0 (none) or more, got {self.loaders}")
        if self.loaders and (self.workers or self.executor != "local"):
            raise SRForensicsError(
                "--loaders is for runs in this process; with --workers or --executor ray "
                "every worker loads its own records: drop --loaders"
            )
        if self.max_pixels < 1:
            raise SRForensicsError(f"--max-pixels must be at least 1, got {self.max_pixels}")
        if self.crop_border is not None and self.crop_border < 0:
            raise SRForensicsError(f"--crop-border must be >= 0, got {self.crop_border}")

    def load_model(self, device: str):
        """The model (with its sampler) this configuration names, on ``device``."""
        from srforensics.models import load_model

        return load_model(
            self.model,
            args=self.model_args,
            device=device,
            dtype=self.dtype,
            sampler=self.sampler,
            sampler_args=self.sampler_args,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_args"] = dict(self.model_args)
        d["sampler_args"] = dict(self.sampler_args)
        d["metrics"] = list(self.metrics) if self.metrics is not None else None
        d["command"] = list(self.command) if self.command is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for k in ("metrics", "command"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)
