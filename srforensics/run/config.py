"""What defines an audit: :class:`AuditConfig`, checked when it is made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from srforensics.errors import SRForensicsError
from srforensics.limits import DEFAULT_MAX_PIXELS
from srforensics.run.options import check_choices, name_list, option

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
class AuditConfig:
    """Everything that defines an audit. ``None`` means "take it from the protocol"."""

    # -- the study: what is audited, on what, under which claim -------------------------
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
    # -- outputs and report --------------------------------------------------------------
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
    # -- identity ------------------------------------------------------------------------
    identity: str = option(
        "auto",
        group=IDENTITY,
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
    # -- execution -----------------------------------------------------------------------
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
    # -- safety --------------------------------------------------------------------------
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
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str):  # "psnr,ssim", as on the command line
            names = tuple(m.strip() for m in self.metrics.split(",") if m.strip())
            object.__setattr__(self, "metrics", names)
        check_choices(self)
        if self.samples < 1:
            raise SRForensicsError(f"--samples must be at least 1, got {self.samples}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SRForensicsError(
                f"--seed must be a whole number from 0 to 2^63 - 1 (numpy's SeedSequence), got {self.seed}"
            )
        if self.variants is not None and self.variants < 1:
            raise SRForensicsError(f"--variants must be at least 1, got {self.variants}")
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
