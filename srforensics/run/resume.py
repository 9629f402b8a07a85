"""Resuming a run that stopped: its recorded configuration, and the check that the inputs
it started with have not changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from srforensics.errors import SRForensicsError
from srforensics.provenance import MANIFEST_NAME
from srforensics.run.config import AuditConfig
from srforensics.run.folder import CONFIG_NAME

#: What a run's footing holds, and how a change of each is named.
_FOOTING = (
    ("protocol_sha256", "the protocol (its resolved form's SHA-256)"),
    ("model", "the model (its card or weights)"),
    ("records_sha256", "the dataset's records"),
)


def resumable_config(run_dir: Path, *, command: Sequence[str] | None = None) -> AuditConfig:
    """The configuration a stopped run in ``run_dir`` recorded (``command``: the command that
    resumes it); a finished run, or a folder that is not a run, is refused."""
    cfg_path = run_dir / CONFIG_NAME
    if not cfg_path.is_file():
        raise SRForensicsError(f"{run_dir} is not a run folder (no {CONFIG_NAME}); check the path")
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SRForensicsError(f"cannot read {cfg_path}: {exc}") from None
    if command is not None:
        data["command"] = list(command)
    try:
        status = json.loads((run_dir / MANIFEST_NAME).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status == "finished":
        raise SRForensicsError(
            f"{run_dir} is a finished run: it is never rewritten, so the manifest SHA-256 printed "
            f"when it ended stays valid. Check it with 'srforensics verify {run_dir}'"
        )
    return AuditConfig.from_dict(data)


def check_footing(ledger, parts, run_dir: Path) -> None:
    """A run is one protocol, one model and one list of records: a resume whose protocol
    file, model (or its weights) or dataset changed since the run started is refused
    before anything is written, so that LRs of two protocols never mix in one ledger."""
    records = hashlib.sha256(
        json.dumps([(r.id, str(r.path)) for r in parts.records]).encode()
    ).hexdigest()
    footing = {
        "protocol_sha256": parts.protocol.sha256,
        "model": parts.card.to_dict(),
        "records_sha256": records,
    }
    footing = json.loads(json.dumps(footing, sort_keys=True, default=str))
    recorded = ledger.get_meta("footing")
    if recorded is None:
        ledger.set_meta("footing", footing)
        return
    changed = [what for key, what in _FOOTING if recorded.get(key) != footing[key]]
    if changed:
        raise SRForensicsError(
            f"{run_dir} was started with other inputs: {'; '.join(changed)} changed since. "
            "Resuming would mix two audits in one run; restore them, or start a new run "
            "with another --out"
        )
