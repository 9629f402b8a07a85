"""The ``srforensics`` command line: parses arguments into a config and calls the library.

Kept thin and cheap to import: ``srforensics --help`` imports no heavy library.
A user error prints one line ``srforensics: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from srforensics import __version__
from srforensics.errors import SRForensicsError
from srforensics.run.config import GROUPS, AuditConfig
from srforensics.run.options import add_options, given_options, key_value

# C0/C1 controls (but newline and tab) and the bidirectional overrides of "Trojan Source".
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` with control characters shown as escapes: a file name or label cannot drive the
    terminal (clear the screen, rewrite a line, reorder text)."""
    return _UNPRINTABLE.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"
        ),
        str(text),
    )


def _say(*parts: object, file: Any = None) -> None:
    """``print`` for everything the CLI writes: user-controlled strings are made printable."""
    print(*(printable(p) for p in parts), file=file or sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srforensics",
        description="Forensic-grade evaluation and audit of image super-resolution.",
    )
    parser.add_argument("--version", action="version", version=f"srforensics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (
        _add_audit,
        _add_models,
        _add_protocols,
        _add_metrics,
        _add_weights,
        _add_gate,
        _add_datasets,
        _add_review,
        _add_compare,
        _add_verify,
        _add_report,
    ):
        add(sub)
    return parser


def _add_audit(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "audit",
        help="run a model under a protocol and audit its outputs",
        description="Run an SR model under a degradation protocol on a dataset, score every "
        "output and write ledger, results, manifest and report to a run folder. "
        "The last line printed is the path of the report.",
    )
    # Every option of the audit is a field of AuditConfig, which carries its help.
    add_options(a, GROUPS)
    a.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="finish a run that stopped, with its recorded configuration",
    )


def _add_models(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list models").add_subparsers(dest="action", metavar="ACTION")
    m.required = False  # no action: list
    m.add_parser("list", help="list registered models")


def _add_protocols(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="list or show degradation protocols").add_subparsers(
        dest="action", metavar="ACTION"
    )
    p.required = False  # no action: list
    p.add_parser("list", help="list shipped protocols")
    show = p.add_parser("show", help="print a protocol's file and its SHA-256")
    show.add_argument("name", help="protocol name or YAML file")
    val = p.add_parser("validate", help="check a protocol file; print its resolved SHA-256")
    val.add_argument("file", help="protocol YAML file (or a shipped name)")
    pre = p.add_parser(
        "preview",
        help="write a protocol's LR variants of one image and a sheet of their parameters",
        description="Write hr.png, lr_v<V>.png, params.json and index.html (a sheet for a person "
        "to look at) into DIR.",
    )
    pre.add_argument("name", help="protocol name or YAML file")
    pre.add_argument("--image", required=True, help="the image to degrade")
    pre.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    pre.add_argument("--seed", type=int, default=None, help="run seed (default: the protocol's)")
    pre.add_argument(
        "--variants", type=int, default=None, help="LR variants (default: the protocol's)"
    )
    rep = p.add_parser(
        "replay",
        help="recreate a recorded LR and check its SHA-256 against the ledger",
        description="Recreate one LR of a finished run from its input file, the resolved protocol in "
        "its manifest and the parameters in its ledger. Exit 0 when the LR is bit-identical, 1 if not.",
    )
    rep.add_argument("run_dir", metavar="RUN_DIR")
    rep.add_argument("record_id", metavar="RECORD_ID")
    rep.add_argument("--variant", type=int, default=0, help="LR variant (default 0)")


def _add_metrics(sub: argparse._SubParsersAction) -> None:
    mt = sub.add_parser("metrics", help="list metrics").add_subparsers(
        dest="action", metavar="ACTION"
    )
    mt.required = False  # no action: list
    ml = mt.add_parser("list", help="list metrics: FR/NR, direction, availability")
    ml.add_argument(
        "--pyiqa", action="store_true", help="also list every pyiqa metric (pyiqa:<name>)"
    )


def _add_weights(sub: argparse._SubParsersAction) -> None:
    wt = sub.add_parser(
        "weights", help="list, fetch, import and verify weight files"
    ).add_subparsers(dest="action", metavar="ACTION")
    wt.required = False  # no action: list
    wt.add_parser(
        "list", help="registered weights: file, licence, URL, and whether the cache has them"
    )
    wf = wt.add_parser("fetch", help="download registered weights into the cache (needs network)")
    wf.add_argument("name")
    wi = wt.add_parser(
        "import", help="copy a local file into the cache if its SHA-256 matches a registered entry"
    )
    wi.add_argument("file")
    wi.add_argument(
        "--trust-weights",
        action="store_true",
        help="admit a pickle that does not load with torch.load(weights_only=True) (it can run "
        "code when unpickled); only for a file whose source you trust",
    )
    wt.add_parser(
        "verify",
        help="re-hash every file in the cache and check that pickles hold only tensors; exit 1 "
        "if any was altered or is unsafe",
    )


def _add_gate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate",
        help="judge a finished run against a gate file (exit 0 pass, 1 fail, 2 error)",
        description="Evaluate the gates of FILE on RUN_DIR. Each condition is judged on the end of its "
        "confidence interval that makes it conservative. Exit 0 when all pass, 1 when any fails, "
        "2 on a usage or data error.",
    )
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("--gates", required=True, metavar="FILE")
    g.add_argument(
        "--junit",
        default=None,
        metavar="OUT.xml",
        help="write a JUnit XML file, one test case per gate",
    )
    g.add_argument("--json", default=None, metavar="OUT.json", help="write the verdicts as JSON")


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("datasets", help="list, show or validate dataset cards").add_subparsers(
        dest="action", metavar="ACTION"
    )
    ds.required = False  # no action: list
    ds.add_parser("list", help="shipped dataset cards")
    dshow = ds.add_parser("show", help="print a dataset card")
    dshow.add_argument("name")
    dval = ds.add_parser(
        "validate", help="check a local copy against its card and print group counts"
    )
    dval.add_argument("name", help="card name or card file")
    dval.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="the local copy (required for cards not shipped)",
    )


def _add_review(sub: argparse._SubParsersAction) -> None:
    rv = sub.add_parser(
        "review",
        help="case review of one evidence image (no ground truth)",
        description="Run a model N times on one evidence image and write DIR/review.html (printable) and "
        "review.json: the input's SHA-256, the outputs, where they disagree, their consistency with the "
        "evidence, no-reference quality and, with --face, faces and identity agreement across outputs.",
    )
    rv.add_argument("image", metavar="IMAGE")
    rv.add_argument(
        "--model",
        default="bicubic",
        help="model name, file or package.module:Class (default bicubic)",
    )
    rv.add_argument("--model-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    rv.add_argument("--sampler", default=None, help="tta, mc-dropout or input-noise")
    rv.add_argument(
        "--sampler-arg", action="append", type=key_value, default=[], metavar="KEY=VALUE"
    )
    rv.add_argument("--scale", type=int, default=4, help="upscaling factor (default 4)")
    rv.add_argument("--samples", type=int, default=16, help="outputs (default 16)")
    rv.add_argument("--seed", type=int, default=0)
    rv.add_argument(
        "--face",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="look for faces in the outputs and compare their identities (default on)",
    )
    rv.add_argument(
        "--face-embedder", default="auto", metavar="NAME", help="face matcher (as for audit)"
    )
    rv.add_argument("--face-weights", default=None, metavar="FILE")
    rv.add_argument(
        "--id-threshold",
        type=float,
        default=None,
        metavar="COS",
        help="warn when two outputs' faces are less similar than this (default: the "
        "matcher's published operating point)",
    )
    rv.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    rv.add_argument("--out", default=None, metavar="DIR", help="default: review-<image name>/")
    rv.add_argument(
        "--reference",
        default=None,
        metavar="FILE",
        help="a real image of the same scene at the outputs' resolution (e.g. the same region "
        "of a higher-resolution frame): each output's RGB PSNR/SSIM and face similarity to it",
    )
    rv.add_argument(
        "--pdf",
        action="store_true",
        help="also print DIR/review.pdf with headless Chromium (page numbers and the evidence's "
        "SHA-256 in each page's footer)",
    )


def _add_compare(sub: argparse._SubParsersAction) -> None:
    cp = sub.add_parser(
        "compare",
        help="compare runs of several models on the same protocol and dataset",
        description="Write one self-contained HTML page with the runs side by side. Runs whose "
        "resolved protocol or input files differ are refused unless --allow-mismatch is given.",
    )
    cp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    cp.add_argument("--out", required=True, metavar="FILE")
    cp.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs on different protocols or inputs",
    )


def _add_verify(sub: argparse._SubParsersAction) -> None:
    vf = sub.add_parser(
        "verify",
        help="re-check a finished run: every hash in its manifest, and outputs recomputed",
    )
    vf.add_argument("run_dir", metavar="RUN_DIR")
    vf.add_argument(
        "--full", action="store_true", help="recompute every output (default: a seeded sample)"
    )
    vf.add_argument(
        "--fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of the model batches recomputed without --full (default 0.1, at least one)",
    )
    vf.add_argument(
        "--seed", type=int, default=None, help="picks the sample (default: the run's seed)"
    )
    vf.add_argument(
        "--expect-manifest",
        default=None,
        metavar="SHA256",
        help="the manifest SHA-256 printed at the end of the run",
    )
    vf.add_argument("--json", default=None, metavar="OUT.json", help="also write the findings")


def _add_report(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="re-render the report of a run folder (and print it to PDF)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument(
        "--pdf",
        action="store_true",
        help="also print RUN_DIR/report.pdf with headless Chromium (page numbers, run id and "
        "manifest SHA-256 in each page's footer); sealed with the report",
    )


def _cmd_audit(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from srforensics.run.pipeline import resume_audit, run_audit

    command = ("srforensics", *argv)
    if args.resume:
        run = resume_audit(args.resume, command=command)
    else:
        config = AuditConfig.from_options(**given_options(args, GROUPS), command=command)
        run = run_audit(config)
    by_reason: dict[str, list[str]] = {}
    for name, reason in run.unavailable.items():
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        _say(f"srforensics: warning: {', '.join(names)} unavailable: {reason}", file=sys.stderr)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(run.counts.items()))
    _say(f"outputs: {counts}")
    if run.timing is not None:
        _say(run.timing.describe())
    status = _print_verdicts(run.verdicts or [])
    _say(f"run folder: {run.run_dir}")
    _say(f"manifest SHA-256: {run.manifest_sha256}")
    _say(f"report SHA-256: {run.report_sha256} (sealed with the manifest's in seal.json)")
    _say(run.report)
    return status


def _print_verdicts(verdicts) -> int:
    """Print each verdict; the exit status they give (0 pass, 1 fail, 2 could not judge)."""
    from srforensics.gates import exit_status

    for v in verdicts:
        _say(f"{v.status.upper() if v.status != 'pass' else 'PASS'} {v.name}: {v.message}")
    status = exit_status(verdicts)
    if status == 2:
        names = ", ".join(v.name for v in verdicts if v.status == "error")
        _say(f"srforensics: error: gate(s) that could not be judged: {names}", file=sys.stderr)
    return status


def _cmd_gate(args: argparse.Namespace) -> int:
    from srforensics.gates import gate_run, load_gates, write_json, write_junit

    verdicts = gate_run(args.run_dir, load_gates(args.gates))
    if args.junit:
        write_junit(verdicts, args.junit)
    if args.json:
        write_json(verdicts, args.json)
    return _print_verdicts(verdicts)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from pathlib import Path

    from srforensics.data import available_datasets, load_dataset

    cards = available_datasets()
    if args.action == "list":
        import yaml

        for name, path in cards.items():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            shipped = "shipped" if data.get("root") is not None else "needs --root"
            _say(
                f"{name:<10} {data.get('layout', 'folder'):<9} {shipped:<13} {data.get('source', '')}"
            )
        return 0
    if args.action == "show":
        path = cards.get(args.name) or Path(args.name)
        if not path.is_file():
            raise SRForensicsError(f"unknown dataset card {args.name!r}; known: {', '.join(cards)}")
        _say(path.read_text(encoding="utf-8").rstrip())
        return 0
    ds = load_dataset(args.name, root=args.root)
    refused = [r for r in ds.records if r.error]
    missing = [r for r in ds.records if not r.error and not r.path.is_file()]
    _say(
        f"{ds.name}: {len(ds.records)} records under {ds.root}; {len(missing)} missing file(s), "
        f"{len(refused)} refused"
    )
    _say(f"subjects: {len({r.subject for r in ds.records if r.subject is not None})}")
    for attr in ds.attribute_names:
        counts: dict[str, int] = {}
        for r in ds.records:
            key = str(r.attributes.get(attr))
            counts[key] = counts.get(key, 0) + 1
        _say(f"{attr}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for r in missing[:5]:
        _say(f"missing: {r.path}")
    for r in refused[:5]:
        _say(f"refused: {r.error}")
    return 1 if missing or refused or not ds.records else 0


def _cmd_models(args: argparse.Namespace) -> int:
    from srforensics.models import MODELS

    for e in MODELS.entries():
        _say(f"{e.name:<20} {e.description or '-'}  [{e.origin}]")
    from srforensics.models import ARCHITECTURES, KNOWN_SYSTEMS, SAMPLERS

    _say("\nsystems by name (how each runs; where its weights come from):")
    for system, how, weights in KNOWN_SYSTEMS:
        _say(f"{system:<20} {how}; weights: {weights}")
    _say(f"\narchitectures for model spec YAML: {', '.join(ARCHITECTURES.names())}")
    _say("\nsamplers (--sampler, on any model):")
    for e in SAMPLERS.entries():
        _say(f"{e.name:<20} {e.description}")
    return 0


def _cmd_protocols(args: argparse.Namespace) -> int:
    from srforensics.degradations.protocol import available_protocols, load_protocol

    if args.action == "list":
        for name in available_protocols():
            p = load_protocol(name)
            first = p.description.split(". ")[0].rstrip(".")
            _say(f"{name:<12} x{p.scale}, {p.variants} variant(s)  {first}")
        return 0
    if args.action == "validate":
        p = load_protocol(args.file)
        _say(
            f"ok: {p.source}: protocol {p.name!r} v{p.version}, x{p.scale}, {p.variants} variant(s), "
            f"{len(p.hr_steps)} HR step(s), {len(p.steps)} step(s); SHA-256 {p.sha256}"
        )
        return 0
    if args.action == "preview":
        from srforensics.replay import preview_protocol

        if args.variants is not None and args.variants < 1:
            raise SRForensicsError(f"--variants must be at least 1, got {args.variants}")
        _say(
            preview_protocol(
                args.name, args.image, args.out, seed=args.seed, variants=args.variants
            )
        )
        return 0
    if args.action == "replay":
        from srforensics.replay import replay_lr

        r = replay_lr(args.run_dir, args.record_id, variant=args.variant)

        def mark(ok: bool) -> str:
            return "match" if ok else "MISMATCH"

        _say(f"recorded by:       {r.recorded_by}")
        _say(f"replayed by:       {r.replayed_by}")
        _say(f"input file:        {mark(r.input_matches)}")
        _say(f"prepared HR:       {mark(r.hr_matches)}")
        _say(f"parameters (seed): {mark(r.params_match)}")
        _say(
            f"LR SHA-256:        {mark(r.lr_matches)} (ledger {r.recorded_lr_sha256}, replayed {r.replayed_lr_sha256})"
        )
        if not r.ok and r.recorded_by != r.replayed_by:
            _say(
                "note: another srforensics recorded this run; face detection and the "
                "operators' arithmetic can change between versions in their last bits, which "
                "changes hashes (`srforensics verify` recomputes with the recorded parameters)"
            )
        return 0 if r.ok else 1
    p = load_protocol(args.name)
    _say(f"# {p.source}")
    _say(f"# SHA-256 (resolved): {p.sha256}")
    _say(p.text.rstrip())
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from srforensics.metrics import METRICS, describe_metric

    names = METRICS.names()
    if args.pyiqa:
        from srforensics.metrics.quality import pyiqa_configs

        names += [f"pyiqa:{n}" for n in sorted(pyiqa_configs())]
    _say(f"{'name':<22} {'type':<4} {'direction':<7} status")
    for name in names:
        info = describe_metric(name)
        kind = "FR" if info["requires_reference"] else ("LR" if info["requires_lr"] else "NR")
        direction = "higher" if info["higher_is_better"] else "lower"
        status = "usable" if info["unavailable"] is None else f"unavailable: {info['unavailable']}"
        _say(f"{info['name']:<22} {kind:<4} {direction:<7} {status}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from srforensics import weights as W

    if args.action == "list":
        _say(f"cache: {W.cache_dir()}")
        for s in W.registered():
            path = W.cached_path(s)
            state = "present" if path.is_file() else "missing"
            _say(
                f"{s.name:<22} {s.file_name:<32} {state:<8} check: {W.verification(s)}; "
                f"{s.licence}; {s.url}"
            )
        return 0
    if args.action == "fetch":
        _say(W.fetch(args.name))
        return 0
    if args.action == "import":
        s = W.import_file(args.file, trust_pickles=args.trust_weights)
        _say(f"imported {args.file} as {s.name!r}: {W.cached_path(s)}")
        return 0
    entries = W.verify_cache()
    for e in entries:
        _say(f"{e.status:<10} {e.path.name:<30} {e.name or '-':<20} {e.sha256}")
        if e.status in ("altered", "unsafe"):
            _say(f"    {e.detail}")
    if not entries:
        _say(f"the cache {W.cache_dir()} holds no weight files")
    return 1 if any(e.status in ("altered", "unsafe") for e in entries) else 0


def _cmd_review(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from srforensics.evidence import ReviewConfig, run_review

    config = ReviewConfig(
        image=args.image,
        model=args.model,
        model_args=dict(args.model_arg),
        sampler=args.sampler,
        sampler_args=dict(args.sampler_arg),
        scale=args.scale,
        samples=args.samples,
        seed=args.seed,
        face=args.face,
        face_embedder=args.face_embedder,
        face_weights=args.face_weights,
        id_threshold=args.id_threshold,
        device=args.device,
        out=args.out,
        reference=args.reference,
        command=("srforensics", *argv),
    )
    page = run_review(config)
    if args.pdf:
        from srforensics.images import sha256_file
        from srforensics.report.pdf import print_pdf

        pdf = print_pdf(page, page.with_name("review.pdf"))
        _say(f"PDF SHA-256: {sha256_file(pdf)}")
        _say(pdf)
    _say(page)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from srforensics.report.compare import compare_runs

    _say(compare_runs(args.run_dirs, args.out, allow_mismatch=args.allow_mismatch))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from srforensics.run.verify import verify_run

    r = verify_run(
        args.run_dir,
        full=args.full,
        fraction=args.fraction,
        seed=args.seed,
        expect_manifest=args.expect_manifest,
    )
    _say(f"manifest SHA-256: {r.manifest_sha256}")
    _say(
        f"files re-hashed: {r.files_checked}; saved outputs checked against the ledger: {r.outputs_checked}"
    )
    _say(
        f"recomputed: {r.batches_recomputed} of {r.batches_total} model batch(es), "
        f"{r.outputs_recomputed} output(s)"
    )
    for note in r.notes:
        _say(f"note: {note}")
    for problem in r.problems:
        _say(f"FAIL {problem}")
    _say("verified: everything matches" if r.ok else f"NOT verified: {len(r.problems)} problem(s)")
    if args.json:
        Path(args.json).write_text(json.dumps(r.to_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if r.ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from srforensics.report import render_report
    from srforensics.run.seal import write_seal

    path = render_report(args.run_dir)
    if args.pdf:
        from srforensics.report.pdf import print_pdf

        print_pdf(path, path.with_name("report.pdf"))
    seal = write_seal(path.parent)
    _say(f"report SHA-256: {seal['files']['report.html']} (sealed in seal.json)")
    if args.pdf:
        _say(f"PDF SHA-256: {seal['files']['report.pdf']} (sealed in seal.json)")
        _say(path.with_name("report.pdf"))
    _say(path)
    return 0


def _sqlite_errors() -> tuple[type[BaseException], ...]:
    """SQLite's errors for a full or unwritable disk, which are not OSErrors."""
    import sqlite3

    return (sqlite3.OperationalError,) if "sqlite3" in sys.modules else ()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "action", "") is None:  # e.g. `srforensics models`: the list
        args = build_parser().parse_args([*argv, "list"])
    from srforensics.runtime import tune_allocator

    tune_allocator()  # this process is the command's own: see tune_allocator
    try:
        if args.command == "audit":
            return _cmd_audit(args, argv)
        if args.command == "review":
            return _cmd_review(args, argv)
        handler = {
            "models": _cmd_models,
            "protocols": _cmd_protocols,
            "metrics": _cmd_metrics,
            "weights": _cmd_weights,
            "gate": _cmd_gate,
            "compare": _cmd_compare,
            "datasets": _cmd_datasets,
            "report": _cmd_report,
            "verify": _cmd_verify,
        }[args.command]
        return handler(args)
    except SRForensicsError as exc:
        _say(f"srforensics: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        _say(
            f"srforensics: error: {exc.strerror}{where}. What was finished is in the run's "
            "ledger: free space or fix the permission, then 'srforensics audit --resume RUN_DIR'",
            file=sys.stderr,
        )
        return 2
    except _sqlite_errors() as exc:
        if not any(w in str(exc) for w in ("disk", "full", "readonly", "read-only")):
            raise
        _say(
            f"srforensics: error: the ledger could not be written ({exc}). What was finished is "
            "in it: free space, then 'srforensics audit --resume RUN_DIR'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        _say(
            "srforensics: interrupted; finished outputs are in the ledger (use --resume)",
            file=sys.stderr,
        )
        return 130
