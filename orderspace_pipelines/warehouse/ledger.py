"""The outbox/ledger: what was sent to Orderspace for which file row, so every push happens once.

`Ledger` is the protocol the push works through; `open_ledger` picks the implementation from the settings, in
one place: `PostgresLedger` (`ledger_pg.py`) when `ORDERSPACE_DATABASE_URL` is set, so every host of a
deployment shares one ledger, else `SqliteLedger`, a SQLite file in WAL mode with `synchronous=FULL` at
`warehouse/ledger.sqlite` (one machine). Both give the same guarantees: every state change is one committed
transaction, written *before* the request it announces (pending) and *after* its response (confirmed), so a
process killed at any moment leaves either nothing, or a `pending` row the next run reconciles against
Orderspace before sending anything again.

`claim(sha256)` is held while a file is pushed, so two processes never push the same bytes at once: a
per-content file lock beside the SQLite ledger; a session advisory lock in Postgres (across hosts; released by
the server when the holder's connection dies, so a killed run never strands a file).

Tables (the same in both):

* `files(sha256)`: a file's content hash, the name it first came under, `in_progress` or `done`, and its
  outcome. A `done` hash dropped again is a duplicate: nothing is sent.
* `dispatches(file_sha256, group_key)`: one row per dispatch (the rows of one order in one file):
  `pending` (the exact request body and the ids of the order's dispatches that existed before it are
  recorded; the POST may or may not have landed), `confirmed` (the dispatch id is known), `refused` (the API
  answered 4xx: definitive, nothing created). `marker` is only set on entries written by versions that put a
  `[wh:...]` marker in the comments; they are still reconciled by it.
* `inventory_rows(file_sha256, line)`: one row per file line sent: `pending`, `confirmed` or `refused`.
  Levels are absolute, so resending a pending row is harmless; confirmed rows are not resent. The value is
  stored as its canonical decimal text, so no value can overflow the column.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout
from pydantic import SecretStr

from orderspace_pipelines.warehouse.states import EntryState, FileKind, FileOutcome, FileState

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    kind TEXT,
    state TEXT NOT NULL,
    outcome TEXT,
    final_path TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS dispatches (
    file_sha256 TEXT NOT NULL,
    group_key TEXT NOT NULL,
    order_id TEXT NOT NULL,
    marker TEXT NOT NULL,
    body TEXT NOT NULL,
    existing_ids TEXT,
    row_lines TEXT,
    state TEXT NOT NULL,
    dispatch_id TEXT,
    message TEXT,
    pending_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (file_sha256, group_key)
);
CREATE TABLE IF NOT EXISTS inventory_rows (
    file_sha256 TEXT NOT NULL,
    line INTEGER NOT NULL,
    sku TEXT NOT NULL,
    value TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (file_sha256, line)
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    first_name: str
    kind: FileKind | None
    state: FileState
    outcome: FileOutcome | None
    final_path: str | None
    started_at: str
    finished_at: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FileRecord:
        data = dict(row)
        data["state"] = FileState(data["state"])
        data["kind"] = FileKind(data["kind"]) if data["kind"] is not None else None
        data["outcome"] = FileOutcome(data["outcome"]) if data["outcome"] is not None else None
        return cls(**data)


@dataclass(frozen=True)
class DispatchRecord:
    file_sha256: str
    group_key: str
    order_id: str
    marker: str
    body: dict[str, Any]
    existing_ids: list[str] | None  # None: a legacy entry (reconciled by its marker)
    row_lines: list[int] | None  # the file lines the dispatch is made of (None: a legacy entry)
    state: EntryState
    dispatch_id: str | None
    message: str | None
    pending_at: str


class ClaimHeld(RuntimeError):
    """`claim(sha256, wait=False)`: another process or host holds the claim on these bytes right now."""


class LedgerError(RuntimeError):
    """The ledger could not be read or written (the shared database went away): nothing was lost, since
    every change is committed before it matters; the push stops and a re-run resumes it."""


def dispatch_record(data: Mapping[str, Any]) -> DispatchRecord:
    """A `DispatchRecord` from a `dispatches` row whose JSON columns are already decoded."""
    fields = {key: value for key, value in data.items() if key != "updated_at"}
    fields["state"] = EntryState(fields["state"])
    return DispatchRecord(**fields)


class Ledger(Protocol):
    """What the push records through (see the module docstring). Use as a context manager or `close()`."""

    def close(self) -> None: ...

    def __enter__(self) -> Ledger: ...

    def __exit__(self, *exc: object) -> None: ...

    def claim(self, sha256: str, *, wait: bool = True) -> AbstractContextManager[None]:
        """Held while one file is pushed: a second claim of the same hash waits for the first to end
        (`wait=False`: raises `ClaimHeld` instead)."""
        ...

    def file(self, sha256: str) -> FileRecord | None: ...

    def begin_file(self, sha256: str, name: str, kind: FileKind | None) -> FileRecord:
        """Register a file (or return its existing record: `done` means duplicate, `in_progress` resume)."""
        ...

    def finish_file(self, sha256: str, outcome: FileOutcome, final_path: str) -> None: ...

    def dispatch(self, sha256: str, group_key: str) -> DispatchRecord | None: ...

    def dispatches_of(self, sha256: str) -> list[DispatchRecord]:
        """Every dispatch entry of one file."""
        ...

    def dispatch_pending(
        self,
        sha256: str,
        group_key: str,
        order_id: str,
        body: dict[str, Any],
        *,
        existing_ids: Iterable[str],
        row_lines: Iterable[int],
    ) -> DispatchRecord:
        """Record the body about to be POSTed (committed before the request leaves); see `SqliteLedger`."""
        ...

    def dispatch_confirmed(self, sha256: str, group_key: str, dispatch_id: str) -> None: ...

    def dispatch_refused(self, sha256: str, group_key: str, message: str) -> None: ...

    def inventory_states(self, sha256: str) -> dict[int, tuple[EntryState, str | None]]:
        """line -> (state, API message) for the inventory rows of one file the ledger knows."""
        ...

    def mark_inventory(
        self,
        sha256: str,
        rows: Iterable[tuple[int, str, str]],
        state: EntryState,
        message: str | None = None,
    ) -> None:
        """Set the state of (line, sku, value as canonical decimal text) rows in one transaction."""
        ...


def open_ledger(ledger_path: Path, database_url: SecretStr | str | None = None) -> Ledger:
    """The push ledger: Postgres when `database_url` (`ORDERSPACE_DATABASE_URL`) is set, else the SQLite
    file at `ledger_path` (`WarehouseFolders.ledger_path`). The one place the implementation is chosen."""
    if database_url is not None and (
        database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    ):
        from orderspace_pipelines.warehouse.ledger_pg import PostgresLedger

        return PostgresLedger(database_url)
    return SqliteLedger(ledger_path)


class SqliteLedger:
    """`Ledger` on one SQLite file (one machine); use as a context manager or call `close()`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(dispatches)")}
        for column in ("existing_ids", "row_lines"):  # a ledger written before markers left the comments
            if column not in columns:
                self._db.execute(f"ALTER TABLE dispatches ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def claim(self, sha256: str, *, wait: bool = True) -> Iterator[None]:
        """A per-content lock file in `.locks/` beside the ledger (`WarehouseFolders.locks`)."""
        locks = self.path.parent / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{sha256[:16]}.lock"))
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            raise ClaimHeld(sha256) from None
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # files ---------------------------------------------------------------------------------------------

    def file(self, sha256: str) -> FileRecord | None:
        row = self._db.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        return FileRecord.from_row(row) if row else None

    def begin_file(self, sha256: str, name: str, kind: FileKind | None) -> FileRecord:
        """Register a file (or return its existing record: `done` means duplicate, `in_progress` resume)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO files (sha256, first_name, kind, state, started_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (sha256, name, kind, FileState.IN_PROGRESS, utc_now()),
            )
        record = self.file(sha256)
        assert record is not None
        return record

    def finish_file(self, sha256: str, outcome: FileOutcome, final_path: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET state = ?, outcome = ?, final_path = ?, finished_at = ? WHERE sha256 = ?",
                (FileState.DONE, outcome, final_path, utc_now(), sha256),
            )

    # dispatches ----------------------------------------------------------------------------------------

    def dispatch(self, sha256: str, group_key: str) -> DispatchRecord | None:
        row = self._db.execute(
            "SELECT * FROM dispatches WHERE file_sha256 = ? AND group_key = ?", (sha256, group_key)
        ).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["body"] = json.loads(data["body"])
        for column in ("existing_ids", "row_lines"):
            data[column] = json.loads(data[column]) if data.get(column) is not None else None
        return dispatch_record(data)

    def dispatches_of(self, sha256: str) -> list[DispatchRecord]:
        """Every dispatch entry of one file."""
        keys = self._db.execute(
            "SELECT group_key FROM dispatches WHERE file_sha256 = ?", (sha256,)
        ).fetchall()
        records = [self.dispatch(sha256, row["group_key"]) for row in keys]
        return [record for record in records if record is not None]

    def dispatch_pending(
        self,
        sha256: str,
        group_key: str,
        order_id: str,
        body: dict[str, Any],
        *,
        existing_ids: Iterable[str],
        row_lines: Iterable[int],
    ) -> DispatchRecord:
        """Record the exact body about to be POSTed, the ids of the order's dispatches that exist before it
        and the file lines it is made of (committed before the request leaves)."""
        now = utc_now()
        existing = json.dumps(sorted(set(existing_ids)))
        lines = json.dumps(sorted(set(row_lines)))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO dispatches (file_sha256, group_key, order_id, marker, body, existing_ids, "
                "row_lines, state, pending_at, updated_at) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (file_sha256, group_key) DO UPDATE SET state = excluded.state, "
                "body = excluded.body, order_id = excluded.order_id, marker = excluded.marker, "
                "existing_ids = excluded.existing_ids, row_lines = excluded.row_lines, "
                "updated_at = excluded.updated_at",
                (
                    sha256,
                    group_key,
                    order_id,
                    json.dumps(body, sort_keys=True),
                    existing,
                    lines,
                    EntryState.PENDING,
                    now,
                    now,
                ),
            )
        record = self.dispatch(sha256, group_key)
        assert record is not None
        return record

    def dispatch_confirmed(self, sha256: str, group_key: str, dispatch_id: str) -> None:
        self._set_dispatch(sha256, group_key, EntryState.CONFIRMED, dispatch_id=dispatch_id)

    def dispatch_refused(self, sha256: str, group_key: str, message: str) -> None:
        self._set_dispatch(sha256, group_key, EntryState.REFUSED, message=message)

    def _set_dispatch(
        self,
        sha256: str,
        group_key: str,
        state: EntryState,
        *,
        dispatch_id: str | None = None,
        message: str | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE dispatches SET state = ?, dispatch_id = COALESCE(?, dispatch_id), message = ?, "
                "updated_at = ? WHERE file_sha256 = ? AND group_key = ?",
                (state, dispatch_id, message, utc_now(), sha256, group_key),
            )

    # inventory -----------------------------------------------------------------------------------------

    def inventory_states(self, sha256: str) -> dict[int, tuple[EntryState, str | None]]:
        """line -> (state, API message) for the inventory rows of one file the ledger knows."""
        rows = self._db.execute(
            "SELECT line, state, message FROM inventory_rows WHERE file_sha256 = ?", (sha256,)
        ).fetchall()
        return {row["line"]: (EntryState(row["state"]), row["message"]) for row in rows}

    def mark_inventory(
        self,
        sha256: str,
        rows: Iterable[tuple[int, str, str]],
        state: EntryState,
        message: str | None = None,
    ) -> None:
        """Set the state of (line, sku, value as canonical decimal text) rows in one transaction."""
        now = utc_now()
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO inventory_rows (file_sha256, line, sku, value, state, message, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_sha256, line) DO UPDATE SET "
                "state = excluded.state, message = excluded.message, updated_at = excluded.updated_at",
                [(sha256, line, sku, str(value), state, message, now) for line, sku, value in rows],
            )
