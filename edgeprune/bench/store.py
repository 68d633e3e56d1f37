"""Append-only SQLite store of measurements (``$EDGEPRUNE_HOME/edgeprune.db``).

Rows are only ever inserted. A measurement is reused only when its whole context key matches.
Farm jobs carry a ``job_id`` with a unique index, so a job stored twice (a retry after a lost
reply) is kept once. WAL mode lets several processes write safely.

A measurement that cannot be written (a full disk, a read-only or locked database) is not lost:
`Store.add` saves it as JSON in a recovery folder — ``$EDGEPRUNE_HOME/recovery``, or when that
disk is full too, ``$TMPDIR/edgeprune-recovery`` — and raises `StoreError` naming the file. The
next `Store` opened on the same database adds every saved measurement and removes its file.

The file records its schema version. Opening an older store migrates it in one transaction (the
only time rows change: schema 2 spells runtimes one way, ``trt`` for the ``tensorrt`` of schema
1, and re-keys those rows so they keep matching new measurements of the same context); a store
from a newer edgeprune is refused with `StoreError` rather than half-read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeprune import config
from edgeprune.bench.result import Measurement, canonical_context, context_key
from edgeprune.bench.stats import Stats, compute_stats
from edgeprune.errors import StoreError, one_line

SCHEMA_VERSION = 2


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    context_key TEXT NOT NULL,
    device TEXT NOT NULL,
    profile TEXT,
    runtime TEXT NOT NULL,
    precision TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    label TEXT,
    job_id TEXT,
    n INTEGER NOT NULL,
    median_ms REAL NOT NULL,
    p90_ms REAL NOT NULL,
    p99_ms REAL NOT NULL,
    mean_ms REAL NOT NULL,
    std_ms REAL NOT NULL,
    cv REAL NOT NULL,
    min_ms REAL NOT NULL,
    valid INTEGER NOT NULL,
    unstable INTEGER NOT NULL,
    context_json TEXT NOT NULL,
    attempts_json TEXT NOT NULL,
    notes_json TEXT NOT NULL,
    raw_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_key ON measurements (context_key, created_at);
CREATE INDEX IF NOT EXISTS measurements_artifact ON measurements (artifact_sha256);
CREATE UNIQUE INDEX IF NOT EXISTS measurements_job ON measurements (job_id) WHERE job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS latency_lut (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    device_key TEXT NOT NULL,
    device TEXT NOT NULL,
    signature TEXT NOT NULL,
    cin INTEGER NOT NULL,
    cout INTEGER NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    n INTEGER NOT NULL,
    median_ms REAL NOT NULL,
    p90_ms REAL NOT NULL,
    mean_ms REAL NOT NULL,
    cv REAL NOT NULL,
    min_ms REAL NOT NULL,
    context_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS latency_lut_key ON latency_lut (device_key, signature, cin, cout, created_at);
"""


def _create(conn: sqlite3.Connection) -> None:
    """Create what is missing (statement by statement: `executescript` would commit first)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


_COLUMNS = (
    "id, created_at, started_at, finished_at, context_key, device, profile, runtime, precision, "
    "artifact_sha256, label, job_id, n, median_ms, p90_ms, p99_ms, mean_ms, std_ms, cv, min_ms, "
    "valid, unstable, context_json, attempts_json, notes_json, raw_json"
)


class Store:
    """The measurement store. Cheap to open; one connection per instance (not shared across threads)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else config.store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as e:
            raise StoreError(
                f"cannot open the measurement store {self.path}: {one_line(e)}",
                hint=f"free space or fix permissions under {self.path.parent}, then rerun "
                "(nothing was measured yet)",
            ) from e
        self._conn.execute("PRAGMA busy_timeout=30000")
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._open_schema()
        except sqlite3.OperationalError as e:  # full disk, read-only, locked
            self._conn.close()
            raise StoreError(
                f"cannot open the measurement store {self.path}: {one_line(e)}",
                hint=f"free space or fix permissions under {self.path.parent}, then rerun "
                "(nothing was measured yet)",
            ) from e
        except sqlite3.DatabaseError as e:  # not a database at all
            self._conn.close()
            raise StoreError(
                f"{self.path} is not a readable edgeprune store: {one_line(e)}",
                hint="move it away (a new store is created), or set EDGEPRUNE_HOME to another folder",
            ) from None
        except BaseException:
            self._conn.close()
            raise
        self.recovered = self._add_recovered()

    def _open_schema(self) -> None:
        """Create a new store, or check an existing one's version and migrate it to this one."""
        with self.transaction() as conn:
            found = self._schema_version(conn)
            if found is None:
                _create(conn)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                return
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer edgeprune (store schema {found}; "
                    f"this version reads schema {SCHEMA_VERSION} and older)",
                    hint="upgrade edgeprune, or set EDGEPRUNE_HOME to use another store",
                )
            for version in range(found, SCHEMA_VERSION):
                _MIGRATIONS[version](conn)
            _create(conn)
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """The stored version; None for an empty file. Raises `StoreError` when unreadable."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise StoreError(
                    f"{self.path} is an SQLite file but not an edgeprune store",
                    hint="set EDGEPRUNE_HOME to another folder",
                )
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row is not None else 1
        except ValueError:
            raise StoreError(
                f"{self.path} records an unknown store schema {row[0]!r}",
                hint="set EDGEPRUNE_HOME to another folder",
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (taken at once, so concurrent writers queue instead of failing)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) leaves the transaction open; end it either way.
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def add(self, m: Measurement) -> Measurement:
        """Insert ``m`` (sets ``m.id`` and ``m.created_at``). A duplicate ``job_id`` returns the stored row.

        Raises `StoreError` when the database cannot be written; ``m`` is saved to a recovery
        file first (see the module docstring), so the measurement is not lost.
        """
        try:
            return self._insert(m)
        except sqlite3.OperationalError as e:
            saved = _save_recovery(self.path, m)
            summary = f"median {m.stats.median:.4g} ms over {m.stats.n} runs"
            if saved is None:
                raise StoreError(
                    f"could not store the measurement ({summary}) in {self.path}, nor save it "
                    f"to a recovery file: {one_line(e)}",
                    hint=f"free space under {self.path.parent} and rerun the command",
                ) from e
            raise StoreError(
                f"could not store the measurement ({summary}) in {self.path}: {one_line(e)}; "
                f"it was saved to {saved}",
                hint=f"free space under {self.path.parent}; the next edgeprune command that opens "
                "the store adds it (`edgeprune bench ... --reuse` then returns it unmeasured)",
                recovery_file=str(saved),
            ) from e

    def _insert(self, m: Measurement) -> Measurement:
        created = time.time()
        ctx = m.context
        s = m.stats
        with self.transaction() as conn:
            if m.job_id is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM measurements WHERE job_id = ?", (m.job_id,)
                ).fetchone()
                if row is not None:
                    return _row_to_measurement(row)
            cur = conn.execute(
                "INSERT INTO measurements (created_at, started_at, finished_at, context_key, device, profile, runtime, precision, "
                "artifact_sha256, label, job_id, n, median_ms, p90_ms, p99_ms, mean_ms, std_ms, cv, min_ms, valid, unstable, "
                "context_json, attempts_json, notes_json, raw_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    created,
                    ctx.get("started_at"),
                    ctx.get("finished_at"),
                    m.key,
                    str(ctx.get("device")),
                    ctx.get("profile"),
                    str(ctx.get("runtime")),
                    str(ctx.get("precision")),
                    str(ctx.get("artifact_sha256")),
                    m.label,
                    m.job_id,
                    s.n,
                    s.median,
                    s.p90,
                    s.p99,
                    s.mean,
                    s.std,
                    s.cv,
                    s.min,
                    int(m.valid),
                    int(m.unstable),
                    json.dumps(ctx, sort_keys=True),
                    json.dumps([a.to_dict() for a in m.attempts]),
                    json.dumps(m.notes),
                    json.dumps([round(t, 6) for t in m.raw_ms]),
                ),
            )
            m.id = int(cur.lastrowid or 0)
            m.created_at = created
        return m

    def latest(self, key: str, valid_only: bool = True) -> Measurement | None:
        """The newest measurement with exactly this context key."""
        q = f"SELECT {_COLUMNS} FROM measurements WHERE context_key = ?"
        if valid_only:
            q += " AND valid = 1"
        row = self._conn.execute(
            q + " ORDER BY created_at DESC, id DESC LIMIT 1", (key,)
        ).fetchone()
        return _row_to_measurement(row) if row else None

    def get(self, mid: int) -> Measurement | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM measurements WHERE id = ?", (mid,)
        ).fetchone()
        return _row_to_measurement(row) if row else None

    def by_job(self, job_id: str) -> Measurement | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM measurements WHERE job_id = ?", (job_id,)
        ).fetchone()
        return _row_to_measurement(row) if row else None

    def job_ids(self, prefix: str = "") -> set[str]:
        """Every stored job id that starts with exactly ``prefix``."""
        rows = self._conn.execute(
            f"SELECT job_id FROM measurements WHERE job_id {_STARTS_WITH}", (_like_prefix(prefix),)
        ).fetchall()
        return {r[0] for r in rows}

    def query(
        self,
        device: str | None = None,
        artifact_sha256: str | None = None,
        label: str | None = None,
        job_prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Measurement]:
        q = f"SELECT {_COLUMNS} FROM measurements WHERE 1=1"
        args: list[Any] = []
        if device is not None:
            q += " AND device = ?"
            args.append(device)
        if artifact_sha256 is not None:
            q += " AND artifact_sha256 = ?"
            args.append(artifact_sha256)
        if label is not None:
            q += " AND label = ?"
            args.append(label)
        if job_prefix is not None:
            q += f" AND job_id {_STARTS_WITH}"
            args.append(_like_prefix(job_prefix))
        q += " ORDER BY created_at, id"
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        return [_row_to_measurement(r) for r in self._conn.execute(q, args).fetchall()]

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    # ------------------------------------------------------------------ latency lookup tables

    def lut_add(
        self,
        device_key: str,
        device: str,
        signature: str,
        cin: int,
        cout: int,
        artifact_sha256: str,
        stats: Stats,
        context: dict[str, Any],
    ) -> None:
        """Append one block measurement (a lookup-table entry) under a device context key.

        Raises `StoreError` when the database cannot be written (entries stored before are kept
        and reused by the next search)."""
        try:
            self._lut_insert(
                device_key, device, signature, cin, cout, artifact_sha256, stats, context
            )
        except sqlite3.OperationalError as e:
            raise StoreError(
                f"could not store a latency-table entry in {self.path}: {one_line(e)}",
                hint=f"free space under {self.path.parent} and rerun: the entries stored so far are reused",
            ) from e

    def _lut_insert(
        self,
        device_key: str,
        device: str,
        signature: str,
        cin: int,
        cout: int,
        artifact_sha256: str,
        stats: Stats,
        context: dict[str, Any],
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO latency_lut (created_at, device_key, device, signature, cin, cout, artifact_sha256, n, median_ms, "
                "p90_ms, mean_ms, cv, min_ms, context_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    time.time(),
                    device_key,
                    device,
                    signature,
                    cin,
                    cout,
                    artifact_sha256,
                    stats.n,
                    stats.median,
                    stats.p90,
                    stats.mean,
                    stats.cv,
                    stats.min,
                    json.dumps(context, sort_keys=True),
                ),
            )

    def lut_get(
        self, device_key: str, signature: str, cin: int, cout: int
    ) -> dict[str, float] | None:
        """The newest entry for exactly this device key, block signature and widths."""
        row = self._conn.execute(
            "SELECT median_ms, p90_ms, mean_ms, min_ms, cv, n FROM latency_lut WHERE device_key = ? AND signature = ? "
            "AND cin = ? AND cout = ? ORDER BY created_at DESC, id DESC LIMIT 1",
            (device_key, signature, cin, cout),
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("median", "p90", "mean", "min", "cv", "n"), row, strict=True))

    def lut_count(self, device_key: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM latency_lut", []
        if device_key is not None:
            q, args = q + " WHERE device_key = ?", [device_key]
        return int(self._conn.execute(q, args).fetchone()[0])

    # ------------------------------------------------------------------ recovery

    def _add_recovered(self) -> int:
        """Insert the measurements saved for this database when it could not be written."""
        added = 0
        for f in _recovery_files(self.path):
            try:
                rec = json.loads(f.read_text())
                m = Measurement.from_dict(rec["measurement"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable or half-written: left for a person to look at
            if not self._holds(m):
                try:
                    self._insert(m)
                except sqlite3.OperationalError:
                    break  # still cannot write: keep the files for the next try
            f.unlink(missing_ok=True)
            added += 1
        return added

    def _holds(self, m: Measurement) -> bool:
        """True when ``m`` (by job id, else by key and measuring window) is stored already."""
        if m.job_id is not None:
            return self.by_job(m.job_id) is not None
        row = self._conn.execute(
            "SELECT 1 FROM measurements WHERE context_key = ? AND started_at IS ? AND finished_at IS ?",
            (m.key, m.context.get("started_at"), m.context.get("finished_at")),
        ).fetchone()
        return row is not None


def _recovery_dirs(db: Path) -> list[Path]:
    """Where measurements for ``db`` are saved when it cannot be written: beside it, then in the
    temporary folder (often another filesystem), in a folder named after the database."""
    tag = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:12]
    return [db.parent / "recovery", Path(tempfile.gettempdir()) / f"edgeprune-recovery-{tag}"]


def _recovery_files(db: Path) -> list[Path]:
    return [f for d in _recovery_dirs(db) if d.is_dir() for f in sorted(d.glob("*.json"))]


def _save_recovery(db: Path, m: Measurement) -> Path | None:
    """Write ``m`` to the first recovery folder that takes it; None when none does."""
    text = json.dumps({"store": str(db), "measurement": m.to_dict(raw=True)})
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{m.key[:12]}.json"
    for d in _recovery_dirs(db):
        target = d / name
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=d)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError:
            continue
        return target
    return None


def _row_to_measurement(row: tuple) -> Measurement:
    (
        mid,
        created,
        _started,
        _finished,
        _key,
        _device,
        _profile,
        _runtime,
        _precision,
        _sha,
        label,
        job_id,
        _n,
        _med,
        _p90,
        _p99,
        _mean,
        _std,
        _cv,
        _min,
        valid,
        unstable,
        ctx_json,
        attempts_json,
        notes_json,
        raw_json,
    ) = row
    attempts = [Stats.from_dict(a) for a in json.loads(attempts_json)]
    raw = json.loads(raw_json)
    stats = compute_stats(raw) if raw else attempts[-1]
    return Measurement(
        stats=stats,
        context=canonical_context(json.loads(ctx_json)),
        raw_ms=raw,
        valid=bool(valid),
        unstable=bool(unstable),
        attempts=attempts,
        notes=json.loads(notes_json),
        id=mid,
        created_at=created,
        job_id=job_id,
        label=label,
    )


# ``job_id LIKE 'prefix%' ESCAPE '\'`` with the prefix's own wildcards escaped: an exact prefix
# match that still uses the index (a bare LIKE reads ``_`` and ``%`` in a sweep name as wildcards).
_STARTS_WITH = "LIKE ? ESCAPE '\\'"


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Schema 1 recorded TensorRT runs as runtime ``tensorrt``: spell it ``trt`` and re-key."""
    rows = conn.execute(
        "SELECT id, context_json, notes_json FROM measurements WHERE runtime != ?", ("ort",)
    ).fetchall()
    for mid, ctx_json, notes_json in rows:
        ctx = json.loads(ctx_json)
        fixed = canonical_context(ctx)
        if fixed.get("runtime") == ctx.get("runtime"):
            continue
        notes = [
            *json.loads(notes_json),
            f"store schema 2: runtime {ctx.get('runtime')!r} is spelled {str(fixed['runtime'])!r}",
        ]
        conn.execute(
            "UPDATE measurements SET runtime = ?, context_key = ?, context_json = ?, "
            "notes_json = ? WHERE id = ?",
            (
                str(fixed["runtime"]),
                context_key(fixed),
                json.dumps(fixed, sort_keys=True),
                json.dumps(notes),
                mid,
            ),
        )


# _MIGRATIONS[v] turns a schema-v store into schema v + 1 (inside the opening transaction).
_MIGRATIONS = {1: _migrate_1_to_2}
