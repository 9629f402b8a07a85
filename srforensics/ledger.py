"""The run's SQLite store: one row per output, committed as it goes.

WAL mode with ``synchronous=NORMAL``: every finished LR (its outputs and their
scores) is one transaction, so a run that stops keeps everything finished and a
resume recomputes only what is missing. Exports to Parquet and CSV.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LEDGER_NAME = "ledger.sqlite"
SCHEMA_VERSION = 1

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
    PRIMARY KEY (record_id, variant, sample)
);
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


def _dumps(obj: Any) -> str:
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
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- meta -----------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
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
        with self.conn:
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
        with self.conn:
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
    ) -> None:
        """Store one LR, its outputs with their scores, and its per-LR scores, in one transaction."""
        with self.conn:
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
                self.conn.execute(
                    "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record_id,
                        variant,
                        o.sample,
                        o.seed,
                        o.status,
                        o.error,
                        o.output_sha256,
                        o.output_path,
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

    def lrs(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM lrs ORDER BY record_id, variant")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True), params=json.loads(r[2])) for r in cur.fetchall()]

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
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                [(r, v, smp, m, _finite_or_inf(val), note) for r, v, smp, m, val, note in rows],
            )

    def update_lr_scores(
        self, rows: Iterable[tuple[str, int, str, float | None, str | None]]
    ) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO lr_scores VALUES (?, ?, ?, ?, ?)",
                [(r, v, m, _finite_or_inf(val), note) for r, v, m, val, note in rows],
            )

    def counts(self) -> dict[str, int]:
        return dict(
            self.conn.execute("SELECT status, COUNT(*) FROM outputs GROUP BY status").fetchall()
        )

    # -- export -----------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """One row per output: ids, subject, attributes, status, one column per metric, paths."""
        import pandas as pd

        q = """
        SELECT o.record_id, r.subject, r.attributes, o.variant, o.sample, o.seed, o.status, o.error,
               r.path AS input_path, r.sha256 AS input_sha256, l.lr_sha256, o.output_sha256,
               r.hr_path, l.lr_path, o.output_path, r.idx
        FROM outputs o JOIN records r USING (record_id)
        LEFT JOIN lrs l ON l.record_id = o.record_id AND l.variant = o.variant
        ORDER BY r.idx, o.variant, o.sample
        """
        df = pd.read_sql_query(q, self.conn)
        metric_names = [m["name"] for m in self.metrics()]
        attr_names: list[str] = []
        attrs = [json.loads(a) for a in df["attributes"]]
        for a in attrs:
            attr_names.extend(k for k in a if k not in attr_names)
        attr_df = pd.DataFrame(
            [{k: a.get(k) for k in attr_names} for a in attrs], columns=attr_names, index=df.index
        )
        scores = pd.read_sql_query(
            "SELECT record_id, variant, sample, metric, value FROM scores", self.conn
        )
        wide = (
            scores.pivot_table(
                index=["record_id", "variant", "sample"],
                columns="metric",
                values="value",
                aggfunc="first",
                dropna=False,
            )
            if len(scores)
            else pd.DataFrame(
                index=pd.MultiIndex.from_tuples([], names=["record_id", "variant", "sample"])
            )
        )
        wide = wide.reindex(columns=metric_names)
        base = df.drop(columns=["attributes", "idx"])
        head = base[["record_id", "subject"]]
        mid = base[["variant", "sample", "status", "error"]]
        tail = base[
            [
                "seed",
                "input_path",
                "input_sha256",
                "lr_sha256",
                "output_sha256",
                "hr_path",
                "lr_path",
                "output_path",
            ]
        ]
        merged = pd.concat([head, attr_df, mid], axis=1)
        merged = merged.merge(wide.reset_index(), on=["record_id", "variant", "sample"], how="left")
        merged = pd.concat([merged, tail.reset_index(drop=True)], axis=1)
        for m in metric_names:
            if m not in merged:
                merged[m] = float("nan")
        # Nullable integers: a 63-bit seed must not pass through float64 (NaN rows).
        return merged.astype({"variant": "Int64", "sample": "Int64", "seed": "Int64"})

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
