"""The run's SQLite store: one row per output, committed as it goes.

WAL mode with ``synchronous=NORMAL``: every finished LR (its outputs and their
scores) is one transaction, so a run that stops keeps everything finished and a
resume recomputes only what is missing. Exports to Parquet and CSV.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srforensics.errors import SRForensicsError

# numpy, pandas: imported in the functions that use them, so that importing this module (as
# `srforensics --help` and `metrics list` do, or a run that never calls them) stays cheap.

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LEDGER_NAME = "ledger.sqlite"
SCHEMA_VERSION = 2
#: How :meth:`Ledger.content_digests` writes a row: ``json.dumps(row, separators=(",", ":"))``,
#: with one encoder, not one per row.
_ROW_ENCODER = json.JSONEncoder(separators=(",", ":"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, path TEXT NOT NULL, subject TEXT,
    attributes TEXT NOT NULL, sha256 TEXT, status TEXT NOT NULL, error TEXT,
    hr_params TEXT, hr_sha256 TEXT, hr_path TEXT
);
CREATE TABLE IF NOT EXISTS lrs (
    record_id TEXT NOT NULL, variant INTEGER NOT NULL, params TEXT NOT NULL,
    lr_sha256 TEXT NOT NULL, lr_path TEXT, std_map_path TEXT, PRIMARY KEY (record_id, variant)
);
CREATE TABLE IF NOT EXISTS lr_scores (
    record_id TEXT NOT NULL, variant INTEGER NOT NULL, name TEXT NOT NULL, value REAL, note TEXT,
    PRIMARY KEY (record_id, variant, name)
);
CREATE TABLE IF NOT EXISTS outputs (
    record_id TEXT NOT NULL, variant INTEGER NOT NULL, sample INTEGER NOT NULL,
    seed INTEGER, status TEXT NOT NULL, error TEXT, output_sha256 TEXT, output_path TEXT,
    batch INTEGER, PRIMARY KEY (record_id, variant, sample)
);
CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, members TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    record_id TEXT NOT NULL, variant INTEGER NOT NULL, sample INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL, note TEXT,
    PRIMARY KEY (record_id, variant, sample, metric)
);
CREATE TABLE IF NOT EXISTS embeddings (
    record_id TEXT NOT NULL, variant INTEGER NOT NULL, sample INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (record_id, variant, sample)
);
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT PRIMARY KEY, position INTEGER NOT NULL, info TEXT NOT NULL, unavailable TEXT
);
"""


@dataclass(frozen=True)
class OutputRow:
    """One output of one LR: its status and, when ok, its scores (metric -> value or None)."""

    sample: int
    seed: int | None
    status: str
    error: str | None = None
    output_sha256: str | None = None
    output_path: str | None = None
    scores: Mapping[str, float | None] | None = None
    notes: Mapping[str, str] | None = None


class StoredJSON(str):
    """A value already encoded as the ledger stores it (:func:`to_json`): stored as it is.

    A loader process encodes an LR's drawn parameters (a blur kernel is hundreds of
    numbers) while it makes the LR, so that the process running the model does not.
    """


def to_json(obj: Any) -> StoredJSON:
    """``obj`` as the ledger stores it: JSON with sorted keys and no spaces, numpy values
    as Python's."""
    return StoredJSON(_dumps(obj))


def _dumps(obj: Any) -> str:
    if isinstance(obj, StoredJSON):
        return str(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in the ledger")


class Ledger:
    """An open run ledger. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, timeout=30.0)
        self._depth = 0
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            # One transaction: a reader of a ledger being created sees all its tables or none.
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{_SCHEMA}\n"
                f"INSERT OR IGNORE INTO meta(key, value) VALUES "
                f"('schema_version', '{int(SCHEMA_VERSION)}');\nCOMMIT;"
            )
            found = self.get_meta("schema_version")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise SRForensicsError(
                f"{self.path} is not a readable run ledger ({exc}); it may be damaged"
            ) from None
        if found != SCHEMA_VERSION:
            self.conn.close()
            raise SRForensicsError(
                f"{self.path} has ledger schema {found}; this srforensics reads schema "
                f"{SCHEMA_VERSION}: open it with the version that wrote it, or audit again"
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for everything written inside (nested uses join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self.conn:
                yield
        finally:
            self._depth = 0

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- meta -----------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _dumps(value)),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- metrics ----------------------------------------------------------------
    def set_metrics(
        self, infos: Sequence[Mapping[str, Any]], unavailable: Mapping[str, str]
    ) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM metrics")
            self.conn.executemany(
                "INSERT INTO metrics(name, position, info, unavailable) VALUES (?, ?, ?, ?)",
                [
                    (i["name"], pos, _dumps(i), unavailable.get(i["name"]))
                    for pos, i in enumerate(infos)
                ],
            )

    def metrics(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT info, unavailable FROM metrics ORDER BY position"
        ).fetchall()
        return [dict(json.loads(info), unavailable=unav) for info, unav in rows]

    # -- records ----------------------------------------------------------------
    def put_record(
        self,
        *,
        record_id: str,
        idx: int,
        path: str,
        subject: str | None,
        attributes: Mapping[str, Any],
        sha256: str | None,
        status: str,
        error: str | None = None,
        hr_params: Any = None,
        hr_sha256: str | None = None,
        hr_path: str | None = None,
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record_id,
                    idx,
                    path,
                    subject,
                    _dumps(dict(attributes)),
                    sha256,
                    status,
                    error,
                    None if hr_params is None else _dumps(hr_params),
                    hr_sha256,
                    hr_path,
                ),
            )

    def record(self, record_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM records WHERE record_id = ?", (record_id,))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["attributes"] = json.loads(out["attributes"])
        out["hr_params"] = json.loads(out["hr_params"]) if out["hr_params"] else None
        return out

    def records(self) -> list[dict[str, Any]]:
        ids = [r[0] for r in self.conn.execute("SELECT record_id FROM records ORDER BY idx")]
        return [self.record(i) for i in ids]  # type: ignore[misc]

    # -- outputs ----------------------------------------------------------------
    def done_samples(self, record_id: str, variant: int) -> set[int]:
        rows = self.conn.execute(
            "SELECT sample FROM outputs WHERE record_id = ? AND variant = ?", (record_id, variant)
        )
        return {r[0] for r in rows}

    def put_lr(
        self,
        *,
        record_id: str,
        variant: int,
        params: Any,
        lr_sha256: str | None,
        lr_path: str | None,
        outputs: Iterable[OutputRow],
        lr_scores: Mapping[str, float | None] | None = None,
        lr_notes: Mapping[str, str] | None = None,
        std_map_path: str | None = None,
        embeddings: Mapping[tuple[int, int], Any] | None = None,
        batch: int | None = None,
    ) -> None:
        """Store one LR, its outputs with their scores, and its per-LR scores, in one transaction.

        ``batch`` names the model call that made the outputs (see :meth:`put_batch`).
        """
        with self.transaction():
            if lr_sha256 is not None:
                self.conn.execute(
                    "INSERT OR REPLACE INTO lrs VALUES (?, ?, ?, ?, ?, ?)",
                    (record_id, variant, _dumps(params), lr_sha256, lr_path, std_map_path),
                )
            # Face embeddings, keyed (variant, sample); the HR's is (-1, -1).
            self.conn.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                [
                    (record_id, v, smp, _vector_bytes(vec))
                    for (v, smp), vec in (embeddings or {}).items()
                ],
            )
            names = set(lr_scores or {}) | set(lr_notes or {})
            self.conn.executemany(
                "INSERT OR REPLACE INTO lr_scores VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        record_id,
                        variant,
                        m,
                        _finite_or_inf((lr_scores or {}).get(m)),
                        (lr_notes or {}).get(m),
                    )
                    for m in sorted(names)
                ],
            )
            for o in outputs:
                self._put_output(record_id, variant, o, batch)

    def _put_output(self, record_id: str, variant: int, o: OutputRow, batch: int | None) -> None:
        """One output and its scores (inside :meth:`put_lr`'s transaction)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                variant,
                o.sample,
                o.seed,
                o.status,
                o.error,
                o.output_sha256,
                o.output_path,
                batch,
            ),
        )
        names = set(o.scores or {}) | set(o.notes or {})
        self.conn.executemany(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    record_id,
                    variant,
                    o.sample,
                    m,
                    _finite_or_inf((o.scores or {}).get(m)),
                    (o.notes or {}).get(m),
                )
                for m in sorted(names)
            ],
        )

    # -- batches: which LRs went through the model together ------------------------
    def next_batch(self) -> int:
        row = self.conn.execute("SELECT MAX(batch) FROM batches").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def put_batch(self, batch: int, members: Sequence[tuple[str, int, Sequence[int]]]) -> None:
        """Record one model call: its LRs ``(record_id, variant, samples)`` in call order.

        A batched model may round differently with other inputs beside an LR, so an
        output is recomputed bit-identically by recomputing its whole batch.
        """
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?)",
                (batch, _dumps([[r, v, list(s)] for r, v, s in members])),
            )

    def batch(self, batch: int) -> list[tuple[str, int, list[int]]]:
        row = self.conn.execute("SELECT members FROM batches WHERE batch = ?", (batch,)).fetchone()
        return [] if row is None else [(r, int(v), list(s)) for r, v, s in json.loads(row[0])]

    def batches_of(self, keys: Iterable[tuple[str, int]]) -> list[int]:
        """The batches that made the outputs of the LRs ``(record_id, variant)``, in order."""
        found: set[int] = set()
        for rid, v in keys:
            found.update(
                r[0]
                for r in self.conn.execute(
                    "SELECT DISTINCT batch FROM outputs WHERE record_id = ? AND variant = ? "
                    "AND batch IS NOT NULL",
                    (str(rid), int(v)),
                )
            )
        return sorted(found)

    def outputs_of(self, record_id: str, variant: int) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT * FROM outputs WHERE record_id = ? AND variant = ? ORDER BY sample",
            (record_id, variant),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def set_image_paths(
        self,
        *,
        record_id: str,
        variant: int,
        hr_path: str | None,
        lr_path: str | None,
        std_map_path: str | None,
        output_paths: Mapping[int, str],
    ) -> None:
        """Point the ledger at images saved after the fact (e.g. for the report's galleries)."""
        with self.transaction():
            if hr_path:
                self.conn.execute(
                    "UPDATE records SET hr_path = ? WHERE record_id = ?", (hr_path, record_id)
                )
            self.conn.execute(
                "UPDATE lrs SET lr_path = COALESCE(?, lr_path), "
                "std_map_path = COALESCE(?, std_map_path) WHERE record_id = ? AND variant = ?",
                (lr_path, std_map_path, record_id, variant),
            )
            self.conn.executemany(
                "UPDATE outputs SET output_path = ? WHERE record_id = ? AND variant = ? AND sample = ?",
                [(p, record_id, variant, s) for s, p in output_paths.items()],
            )

    def lr(self, record_id: str, variant: int) -> dict[str, Any] | None:
        cur = self.conn.execute(
            "SELECT * FROM lrs WHERE record_id = ? AND variant = ?", (record_id, variant)
        )
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["params"] = json.loads(out["params"])
        return out

    def lrs(self, *, saved: bool = False) -> list[dict[str, Any]]:
        """Every LR with its parameters; with ``saved``, only those whose image was saved."""
        where = " WHERE lr_path IS NOT NULL" if saved else ""
        cur = self.conn.execute(f"SELECT * FROM lrs{where} ORDER BY record_id, variant")  # noqa: S608
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True), params=json.loads(r[2])) for r in cur.fetchall()]

    def lr_digests(self) -> list[dict[str, Any]]:
        """Each LR's ``record_id``, ``variant``, ``lr_sha256`` and ``params_sha256``: the SHA-256
        of its parameters as stored (canonical JSON: sorted keys, no spaces), without parsing
        them (a blur kernel is thousands of numbers)."""

        rows = self.conn.execute(
            "SELECT record_id, variant, lr_sha256, params FROM lrs ORDER BY record_id, variant"
        )
        return [
            {
                "record_id": r[0],
                "variant": r[1],
                "lr_sha256": r[2],
                "params_sha256": hashlib.sha256(r[3].encode()).hexdigest(),
            }
            for r in rows
        ]

    def lr_scores(self) -> pd.DataFrame:
        """Per-LR scores (diversity, per-pixel std) in long form, with the std-map paths."""
        import pandas as pd

        return pd.read_sql_query(
            "SELECT s.record_id, s.variant, s.name, s.value, s.note, l.std_map_path "
            "FROM lr_scores s LEFT JOIN lrs l USING (record_id, variant) ORDER BY s.record_id, s.variant",
            self.conn,
        )

    def embeddings(self) -> tuple[list[tuple[str, int, int]], np.ndarray]:
        """All stored face embeddings: keys ``(record_id, variant, sample)`` and a ``(K, D)`` matrix."""
        import numpy as np

        rows = self.conn.execute(
            "SELECT record_id, variant, sample, vector FROM embeddings ORDER BY record_id, variant, sample"
        ).fetchall()
        keys = [(r[0], r[1], r[2]) for r in rows]
        mat = (
            np.stack([np.frombuffer(r[3], dtype="<f8") for r in rows]) if rows else np.zeros((0, 0))
        )
        return keys, mat

    def update_scores(
        self, rows: Iterable[tuple[str, int, int, str, float | None, str | None]]
    ) -> None:
        """Insert or replace per-output scores computed after the outputs (e.g. misidentification)."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                [(r, v, smp, m, _finite_or_inf(val), note) for r, v, smp, m, val, note in rows],
            )

    def update_lr_scores(
        self, rows: Iterable[tuple[str, int, str, float | None, str | None]]
    ) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO lr_scores VALUES (?, ?, ?, ?, ?)",
                [(r, v, m, _finite_or_inf(val), note) for r, v, m, val, note in rows],
            )

    # -- integrity ---------------------------------------------------------------
    _TABLE_KEYS = {
        "meta": "key",
        "records": "record_id",
        "lrs": "record_id, variant",
        "lr_scores": "record_id, variant, name",
        "outputs": "record_id, variant, sample",
        "scores": "record_id, variant, sample, metric",
        "embeddings": "record_id, variant, sample",
        "batches": "batch",
        "metrics": "name",
    }

    def content_digests(self) -> dict[str, str]:
        """SHA-256 of each table's rows in key order: an edited value changes its table's digest.

        Content, not file bytes: SQLite may rewrite its file (checkpoints) without changing a value.
        """

        encode = _ROW_ENCODER.encode
        out = {}
        for table, key in self._TABLE_KEYS.items():
            h = hashlib.sha256()
            rows = self.conn.execute(f"SELECT * FROM {table} ORDER BY {key}")  # noqa: S608
            while chunk := rows.fetchmany(4096):
                # Each row as compact JSON and a newline (as json.dumps writes it); a row is
                # a tuple, written as a list is, and bytes (embeddings) as hex.
                try:
                    lines = list(map(encode, chunk))
                except TypeError:  # bytes, which JSON cannot hold
                    lines = [
                        encode([c.hex() if isinstance(c, bytes) else c for c in row])
                        for row in chunk
                    ]
                h.update(("\n".join(lines) + "\n").encode())
            out[table] = h.hexdigest()
        return out

    def counts(self) -> dict[str, int]:
        return dict(
            self.conn.execute("SELECT status, COUNT(*) FROM outputs GROUP BY status").fetchall()
        )

    # -- export -----------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """One row per output: ids, subject, attributes, status, one column per metric, paths."""
        import pandas as pd

        metric_names = [m["name"] for m in self.metrics()]
        # The scores, one column per metric, pivoted by SQLite (a metric name is a bound value;
        # the columns are named s0, s1, ... here and renamed below).
        picks = "".join(f", s.s{i}" for i in range(len(metric_names)))
        pivot = "".join(
            f", MAX(CASE WHEN metric = ? THEN value END) AS s{i}" for i in range(len(metric_names))
        )
        q = f"""
        SELECT o.record_id, r.subject, r.attributes, o.variant, o.sample,
               CAST(o.seed AS TEXT) AS seed, o.status, o.error,
               r.path AS input_path, r.sha256 AS input_sha256, l.lr_sha256, o.output_sha256,
               r.hr_path, l.lr_path, o.output_path{picks}
        FROM outputs o JOIN records r USING (record_id)
        LEFT JOIN lrs l ON l.record_id = o.record_id AND l.variant = o.variant
        LEFT JOIN (
            SELECT record_id, variant, sample{pivot} FROM scores GROUP BY record_id, variant, sample
        ) s ON s.record_id = o.record_id AND s.variant = o.variant AND s.sample = o.sample
        ORDER BY r.idx, o.variant, o.sample
        """  # noqa: S608 (only generated column names are formatted in)
        df = pd.read_sql_query(q, self.conn, params=metric_names)
        parsed: dict[str, dict[str, Any]] = {}  # a record's attributes, parsed once
        attrs = [
            parsed[a] if a in parsed else parsed.setdefault(a, json.loads(a))
            for a in df["attributes"]
        ]
        attr_names: list[str] = []
        for a in parsed.values():
            attr_names.extend(k for k in a if k not in attr_names)
        attr_df = pd.DataFrame(
            [{k: a.get(k) for k in attr_names} for a in attrs], columns=attr_names, index=df.index
        )
        scores = df[[f"s{i}" for i in range(len(metric_names))]].astype("float64")
        scores.columns = metric_names
        tail = [
            "seed",
            "input_path",
            "input_sha256",
            "lr_sha256",
            "output_sha256",
            "hr_path",
            "lr_path",
            "output_path",
        ]
        merged = pd.concat(
            [
                df[["record_id", "subject"]],
                attr_df,
                df[["variant", "sample", "status", "error"]],
                scores,
                df[tail],
            ],
            axis=1,
        )
        # Nullable integers. A 63-bit seed must not pass through float64, where a column
        # with a missing value (a failed output's) puts it: read as text, made an integer.
        merged["seed"] = pd.array(
            [None if pd.isna(v) else int(v) for v in df["seed"]], dtype="Int64"
        )
        return merged.astype({"variant": "Int64", "sample": "Int64"})

    def notes(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_sql_query(
            "SELECT record_id, variant, sample, metric, note FROM scores WHERE note IS NOT NULL",
            self.conn,
        )


def _vector_bytes(vec: Any) -> bytes:
    import numpy as np

    return np.ascontiguousarray(np.asarray(vec, dtype="<f8")).tobytes()


def _finite_or_inf(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v
