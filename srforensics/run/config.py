"""What defines an audit: :class:`AuditConfig`, checked when it is made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from difflib import get_close_matches
from typing import Any, Literal

from srforensics.errors import SRForensicsError
from srforensics.limits import DEFAULT_MAX_PIXELS
from srforensics.run.options import check_choices, name_list, option, option_names

STUDY, OUTPUTS, IDENTITY, EXECUTION, SAFETY = (
    "study",
    "outputs and report",
    "identity",
    "execution",
    "safety",
)

SaveImages = Literal["report", "all", "none"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class StudyConfig:
    """What is audited, on what, under which claim. ``None`` means "take it from the
    protocol"."""

    model: str = option(
        "bicubic",
        group=STUDY,
        help="registry name (see 'models list'), package.module:Class, a checkpoint or "
        "TorchScript file, or a model spec YAML",
    )
    model_args: Mapping[str, Any] = option(
        default_factory=dict,
        group=STUDY,
        kind="pairs",
        help="argument for the model's constructor (repeatable; VALUE parsed as YAML)",
    )
    protocol: str = option(
        "faces", group=STUDY, help="shipped protocol name (see 'protocols list') or a YAML file"
    )
    dataset: str = option(
        "sample",
        group=STUDY,
        default_text="sample, bundled with scikit-image",
        help="dataset card name, card file, or folder of images",
    )
    dataset_root: str | None = option(
        None,
        group=STUDY,
        metavar="DIR",
        help="local copy of a dataset whose card does not ship it (fairface, utkface, celeba, "
        "lfw, folder)",
    )
    gates: str | None = option(
        None,
        group=STUDY,
        metavar="FILE",
        help="gate file: judge the run at the end; exit 1 when a gate fails (gates.json, "
        "junit.xml in the run folder)",
    )
    samples: int = option(4, group=STUDY, metavar="N", parse=int, help="outputs per LR")
    metrics: tuple[str, ...] | None = option(
        None,
        group=STUDY,
        metavar="A,B,C",
        parse=name_list,
        default_text="the protocol's",
        help="metrics to compute (see 'metrics list')",
    )
    seed: int | None = option(
        None, group=STUDY, parse=int, default_text="the protocol's", help="run seed"
    )
    variants: int | None = option(
        None,
        group=STUDY,
        metavar="V",
        parse=int,
        default_text="the protocol's",
        help="LR variants per image",
    )
    crop_border: int | None = option(
        None,
        group=STUDY,
        metavar="PX",
        parse=int,
        default_text="the scale",
        help="pixels cropped from each side for PSNR/SSIM",
    )
    limit: int | None = option(
        None,
        group=STUDY,
        metavar="N",
        parse=int,
        help="audit N records: stratified over the sensitive attributes where the dataset has "
        "them, else the first N",
    )
    sampler: str | None = option(
        None,
        group=STUDY,
        help="turn the model into a sampler: tta, mc-dropout, input-noise",
    )
    sampler_args: Mapping[str, Any] = option(
        default_factory=dict,
        group=STUDY,
        kind="pairs",
        help="sampler option, e.g. p=0.1 (mc-dropout) or sigma=2 (input-noise); repeatable",
    )

    def __post_init__(self) -> None:
        check_choices(self)
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
        if self.limit is not None and self.limit < 1:
            raise SRForensicsError(f"--limit must be at least 1, got {self.limit}")
        if self.metrics is not None and not self.metrics:
            raise SRForensicsError("--metrics is empty; name at least one metric")
        if self.crop_border is not None and self.crop_border < 0:
            raise SRForensicsError(f"--crop-border must be >= 0, got {self.crop_border}")


@dataclass(frozen=True)
class OutputConfig:
    """The run folder, the images it keeps, and the report's statistics."""

    out: str | None = option(
        None,
        group=OUTPUTS,
        metavar="DIR",
        default_text="runs/<UTC time>-<model>-<protocol>/",
        help="run folder",
    )
    save_images: SaveImages = option(
        "report",
        group=OUTPUTS,
        choices=("report", "all", "none"),
        help="report: images of the report's examples; all: every HR, LR and output as PNG "
        "under images/; none",
    )
    report_examples: int = 4
    diversity: str = option(
        "auto",
        group=OUTPUTS,
        choices=("auto", "mse16", "lpips"),
        help="distance maps for the NTIRE diversity score: LPIPS when its weights are present "
        "(auto), or squared error in 16x16 boxes (mse16)",
    )
    breakdown_boot: int = option(
        1000,
        group=OUTPUTS,
        metavar="N",
        parse=int,
        help="bootstrap replicates of every interval (records resampled); 0 skips the "
        "breakdowns, e.g. for a quick smoke run",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.breakdown_boot != 0 and self.breakdown_boot < 50:
            raise SRForensicsError(
                f"--breakdown-boot must be 0 (off) or at least 50, got {self.breakdown_boot}"
            )


@dataclass(frozen=True)
class IdentityConfig:
    """Identity scores: whether they are computed, with which face matcher, at which
    threshold."""

    mode: str = option(
        "auto",
        group=IDENTITY,
        flag="--identity",
        choices=("auto", "on", "off"),
        help="identity scores of faces (auto: on for protocols that align a face)",
    )
    face_embedder: str = option(
        "auto",
        group=IDENTITY,
        metavar="NAME",
        help="face matcher: auto (facenet-vggface2 when its weights are in the cache, else "
        "dlib-resnet-v1, which installs with the package; the choice is printed), "
        "dlib-resnet-v1, facenet-vggface2, facenet-casia-webface, an entry point in "
        "srforensics.face_embedders, or package.module:Class",
    )
    face_weights: str | None = option(
        None,
        group=IDENTITY,
        metavar="FILE",
        help="a lab's own state dict for the face embedder; its SHA-256 is recorded as "
        "user-supplied",
    )
    id_threshold: float | None = option(
        None,
        group=IDENTITY,
        metavar="COS",
        parse=float,
        default_text="calibrated on the dataset's HR faces at --id-fmr",
        help="verification threshold on cosine similarity",
    )
    id_fmr: float = option(
        1e-3,
        group=IDENTITY,
        metavar="RATE",
        parse=float,
        help="false-match rate the threshold is calibrated at",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 < self.id_fmr < 1:
            raise SRForensicsError(f"--id-fmr must be in (0, 1), got {self.id_fmr}")
        if self.id_threshold is not None and not -1 <= self.id_threshold <= 1:
            raise SRForensicsError(
                f"--id-threshold is a cosine similarity in [-1, 1], got {self.id_threshold}"
            )


@dataclass(frozen=True)
class ExecutionConfig:
    """Where and how the work runs; results do not depend on it at a fixed ``threads``."""

    device: Device = option(
        "cpu",
        group=EXECUTION,
        choices=("auto", "cpu", "cuda"),
        help="where the model and metrics run",
    )
    dtype: str = option(
        "float32",
        group=EXECUTION,
        choices=("float32", "float16", "bfloat16"),
        help="precision of the model",
    )
    batch_size: int = option(
        8,
        group=EXECUTION,
        metavar="B",
        parse=int,
        help="LRs per model call; each call's outputs are committed together",
    )
    workers: int = option(
        0,
        group=EXECUTION,
        metavar="N",
        parse=int,
        help="worker processes, each running whole shards of records (decoding, degradation, "
        "model, metrics); 0 = this process",
    )
    threads: int = option(
        1,
        group=EXECUTION,
        metavar="T",
        parse=int,
        help="torch threads of each process that computes (this one, or each worker; "
        "parallelism comes from --workers). Results are bit-identical at the same T",
    )
    executor: Literal["local", "ray"] = option(
        "local",
        group=EXECUTION,
        choices=("local", "ray"),
        help="local or ray: shards on --workers Ray actors, with --device cuda one GPU each or "
        "an even share of fewer (pip install 'srforensics[ray]')",
    )
    ray_address: str | None = option(
        None,
        group=EXECUTION,
        metavar="ADDR",
        default_text="start a local one",
        help="an existing Ray cluster",
    )
    shard_size: int = option(
        64,
        group=EXECUTION,
        metavar="R",
        parse=int,
        help="records per shard; batches never cross shards, so results do not depend on "
        "--workers or --executor",
    )
    loaders: int = option(
        0,
        group=EXECUTION,
        metavar="N",
        parse=int,
        help="processes that decode, prepare and degrade the next records while this one runs "
        "the model and metrics (with --workers 0); 0 = none. Results are identical",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.batch_size < 1:
            raise SRForensicsError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise SRForensicsError(
                f"--workers must be 0 (this process) or more, got {self.workers}"
            )
        if self.threads < 1:
            raise SRForensicsError(f"--threads must be at least 1, got {self.threads}")
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


@dataclass(frozen=True)
class SafetyConfig:
    """Guards against hostile inputs and misbehaving models."""

    range_tolerance: float = option(
        0.1,
        group=SAFETY,
        metavar="T",
        parse=float,
        help="outputs outside [-T, 1+T] are recorded as failed; within it they are clipped",
    )
    max_pixels: int = option(
        DEFAULT_MAX_PIXELS,
        group=SAFETY,
        metavar="N",
        parse=int,
        help="refuse input images over N pixels (decompression-bomb guard)",
    )
    model_timeout: float | None = option(
        None,
        group=SAFETY,
        metavar="SECONDS",
        parse=float,
        help="a model call (one batch) running longer fails its outputs, and the run goes on",
    )
    allow_downloads: bool = option(
        False,
        group=SAFETY,
        kind="flag",
        help="let metrics download missing weight files (off by default)",
    )
    trust_weights: bool = option(
        False,
        group=SAFETY,
        kind="flag",
        help="allow weight files that need full unpickling (they can run code); the manifest "
        "records it",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 <= self.range_tolerance <= 1:
            raise SRForensicsError(
                f"--range-tolerance must be in [0, 1], got {self.range_tolerance}"
            )
        if self.model_timeout is not None and not self.model_timeout > 0:
            raise SRForensicsError(
                f"--model-timeout is in seconds and must be positive, got {self.model_timeout}"
            )
        if self.max_pixels < 1:
            raise SRForensicsError(f"--max-pixels must be at least 1, got {self.max_pixels}")


#: The groups of an audit's configuration: ``AuditConfig`` field -> its dataclass.
GROUPS = {
    "study": StudyConfig,
    "outputs": OutputConfig,
    "identity": IdentityConfig,
    "execution": ExecutionConfig,
    "safety": SafetyConfig,
}


@dataclass(frozen=True)
class AuditConfig:
    """Everything that defines an audit, in groups; each group checks its values when made.

    Build one from the command line's option names with :meth:`from_options`
    (``AuditConfig.from_options(model="bicubic", samples=2)``), or group by group
    (``AuditConfig(study=StudyConfig(model="bicubic"))``).
    """

    study: StudyConfig = field(default_factory=StudyConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    #: The command that started (or resumed) the run, as recorded.
    command: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, *, command: Sequence[str] | None = None, **options: Any) -> AuditConfig:
        """An audit from its options by name: each option's long flag without its dashes
        (``model``, ``samples``, ``identity``, ``workers``, ...; ``model_args`` and
        ``sampler_args`` as dicts). An unknown name is refused, with the nearest ones."""
        where = option_names(GROUPS)
        unknown = sorted(set(options) - set(where))
        if unknown:
            hints = [
                f"{u} (did you mean {', '.join(close)}?)"
                if (close := get_close_matches(u, where, n=2))
                else u
                for u in unknown
            ]
            raise SRForensicsError(
                f"unknown audit option(s): {'; '.join(hints)}; the options are the CLI's "
                "(srforensics audit --help), with underscores"
            )
        groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for name, value in options.items():
            group, field_name = where[name]
            groups[group][field_name] = value
        return cls(
            **{g: GROUPS[g](**kw) for g, kw in groups.items()},
            command=None if command is None else tuple(command),
        )

    def load_model(self, device: str):
        """The model (with its sampler) this configuration names, on ``device``."""
        from srforensics.models import load_model  # lazy: torch, for --help speed

        study = self.study
        return load_model(
            study.model,
            args=study.model_args,
            device=device,
            dtype=self.execution.dtype,
            sampler=study.sampler,
            sampler_args=study.sampler_args,
        )

    def to_dict(self) -> dict[str, Any]:
        """The configuration as ``config.json`` and the manifest hold it: a dict per group."""
        d: dict[str, Any] = {g: asdict(getattr(self, g)) for g in GROUPS}
        d["study"]["model_args"] = dict(self.study.model_args)
        d["study"]["sampler_args"] = dict(self.study.sampler_args)
        metrics = self.study.metrics
        d["study"]["metrics"] = list(metrics) if metrics is not None else None
        d["command"] = list(self.command) if self.command is not None else None
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditConfig:
        """The configuration :meth:`to_dict` wrote; a flat one (every option at the top, as
        written before the options were grouped) is read by option name."""
        if not any(isinstance(data.get(name), Mapping) for name in GROUPS):
            where = option_names(GROUPS)
            flat = {k: v for k, v in data.items() if k in where}
            if flat.get("metrics") is not None:
                flat["metrics"] = tuple(flat["metrics"])
            return cls.from_options(**flat, command=data.get("command"))
        groups = {}
        for name, group in GROUPS.items():
            known = {f.name for f in fields(group)}
            kw = {k: v for k, v in (data.get(name) or {}).items() if k in known}
            if kw.get("metrics") is not None:
                kw["metrics"] = tuple(kw["metrics"])
            groups[name] = group(**kw)
        command = data.get("command")
        return cls(**groups, command=tuple(command) if command is not None else None)
