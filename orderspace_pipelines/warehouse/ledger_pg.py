"""The push ledger in PostgreSQL (`ORDERSPACE_DATABASE_URL`): one ledger for every host of a deployment.

Same tables, states and guarantees as `SqliteLedger` (see `ledger.py`): every state change is one committed
transaction (Postgres' default `synchronous_commit=on`, so a commit is durable when it returns), the pending
entry is committed before its request leaves, and a file's hash is registered once (`ON CONFLICT DO NOTHING`
on the primary key: two hosts registering the same file at once both get the one record).

`claim(sha256)` is a session-level advisory lock on this ledger's connection, keyed by the file's hash: a
second host claiming the same bytes waits until the first is done. The server drops the lock when the
holder's connection ends, so a run killed mid-push (`kill -9`, a pod evicted) frees the file for the next
attempt; TCP keepalives on the session bound how long a vanished host can hold it.

The schema is created by `postgres.migrate` (component `warehouse_ledger`) when the ledger is opened: no
manual step, and safe when several processes open it at once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from pydantic import SecretStr

from orderspace_pipelines import postgres
from orderspace_pipelines.warehouse.ledger import (
    ClaimHeld,
    DispatchRecord,
    FileRecord,
    LedgerError,
    dispatch_record,
)
from orderspace_pipelines.warehouse.states import EntryState, FileKind, FileOutcome, FileState

if TYPE_CHECKING:
    import psycopg

COMPONENT = "warehouse_ledger"
# Append-only: a shipped entry is never edited (see `postgres.migrate`).
MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS warehouse_files (
        sha256 TEXT PRIMARY KEY,
        first_name TEXT NOT NULL,
        kind TEXT,
        state TEXT NOT NULL,
        outcome TEXT,
        final_path TEXT,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS warehouse_dispatches (
        file_sha256 TEXT NOT NULL,
        group_key TEXT NOT NULL,
        order_id TEXT NOT NULL,
        marker TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL,
        existing_ids TEXT,
        row_lines TEXT,
        state TEXT NOT NULL,
        dispatch_id TEXT,
        message TEXT,
        pending_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (file_sha256, group_key)
    )""",
    """CREATE TABLE IF NOT EXISTS warehouse_inventory_rows (
        file_sha256 TEXT NOT NULL,
        line INTEGER NOT NULL,
        sku TEXT NOT NULL,
        value TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (file_sha256, line)
    )""",
]
# A vanished host's claim is dropped after about idle + interval * count seconds without an answer.
_KEEPALIVES = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _resumable(
    method: Callable[Concatenate[PostgresLedger, _P], _R],
) -> Callable[Concatenate[PostgresLedger, _P], _R]:
    """A lost or refused connection becomes `LedgerError` (the push stops resumable: the file stays claimed
    in work/ and a re-run reconciles from what was committed). The message names the database, never the
    password."""

    @functools.wraps(method)
    def guarded(self: PostgresLedger, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        import psycopg

        try:
            return method(self, *args, **kwargs)
        except psycopg.OperationalError as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = lines[0] if lines else type(error).__name__
            raise LedgerError(f"the push ledger in {self.where} is unavailable: {reason}") from None

    return guarded


def claim_key(sha256: str) -> int:
    """The advisory-lock key of a content hash: its first 8 bytes as a signed bigint."""
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


def _stamp(value: datetime | None) -> str | None:
    """A stored time as `SqliteLedger` writes it (ISO 8601, UTC, seconds)."""
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def _file_record(row: dict[str, Any]) -> FileRecord:
    return FileRecord.from_row(
        row | {"started_at": _stamp(row["started_at"]), "finished_at": _stamp(row["finished_at"])}
    )


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A `warehouse_dispatches` row with its JSON text decoded and its time as `SqliteLedger` writes it.
    (JSON is stored as text, as in SQLite: `jsonb` would refuse a `\\u0000` a warehouse comment may carry.)"""
    decoded = row | {"body": json.loads(row["body"]), "pending_at": _stamp(row["pending_at"])}
    for column in ("existing_ids", "row_lines"):
        decoded[column] = json.loads(row[column]) if row[column] is not None else None
    return decoded


class PostgresLedger:
    """`Ledger` in PostgreSQL; one connection (autocommit, each change its own transaction)."""

    def __init__(self, url: SecretStr | str) -> None:
        from psycopg.rows import dict_row

        conn = postgres.connect(url, purpose="push ledger")
        self.where = postgres.describe_url(url)
        try:
            for name, value in _KEEPALIVES.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            postgres.migrate(conn, COMPONENT, MIGRATIONS)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = dict_row  # type: ignore[assignment]
        self._conn = cast("psycopg.Connection[dict[str, Any]]", conn)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.where!r})"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def claim(self, sha256: str, *, wait: bool = True) -> Iterator[None]:
        """A session advisory lock on the hash (see the module docstring); waits for another holder
        (`wait=False`: raises `ClaimHeld` instead)."""
        key = claim_key(sha256)
        if wait:
            self._advisory("pg_advisory_lock", key)
        elif not self._advisory("pg_try_advisory_lock", key):
            raise ClaimHeld(sha256)
        try:
            yield
        finally:
            if not self._conn.closed and not self._conn.broken:
                self._advisory("pg_advisory_unlock", key)

    @_resumable
    def _advisory(self, function: str, key: int) -> bool:
        row = self._conn.execute(f"SELECT {function}(%s) AS taken", (key,)).fetchone()
        return row is not None and row["taken"] is not False  # pg_advisory_lock returns void: taken

    # files ---------------------------------------------------------------------------------------------

    @_resumable
    def file(self, sha256: str) -> FileRecord | None:
        row = self._conn.execute("SELECT * FROM warehouse_files WHERE sha256 = %s", (sha256,)).fetchone()
        return _file_record(row) if row else None

    @_resumable
    def begin_file(self, sha256: str, name: str, kind: FileKind | None) -> FileRecord:
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO warehouse_files (sha256, first_name, kind, state, started_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (sha256) DO NOTHING",
                (sha256, name, kind, FileState.IN_PROGRESS),
            )
        record = self.file(sha256)
        assert record is not None
        return record

    @_resumable
    def finish_file(self, sha256: str, outcome: FileOutcome, final_path: str) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "UPDATE warehouse_files SET state = %s, outcome = %s, final_path = %s, finished_at = now() "
                "WHERE sha256 = %s",
                (FileState.DONE, outcome, final_path, sha256),
            )

    # dispatches ----------------------------------------------------------------------------------------

    @_resumable
    def _dispatch_rows(self, where: str, params: tuple[str, ...]) -> list[DispatchRecord]:
        rows = self._conn.execute(f"SELECT * FROM warehouse_dispatches WHERE {where}", params).fetchall()
        return [dispatch_record(_decoded(row)) for row in rows]

    def dispatch(self, sha256: str, group_key: str) -> DispatchRecord | None:
        found = self._dispatch_rows("file_sha256 = %s AND group_key = %s", (sha256, group_key))
        return found[0] if found else None

    def dispatches_of(self, sha256: str) -> list[DispatchRecord]:
        return self._dispatch_rows("file_sha256 = %s", (sha256,))

    @_resumable
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
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO warehouse_dispatches (file_sha256, group_key, order_id, marker, body, "
                "existing_ids, row_lines, state, pending_at, updated_at) "
                "VALUES (%s, %s, %s, '', %s, %s, %s, %s, now(), now()) "
                "ON CONFLICT (file_sha256, group_key) DO UPDATE SET state = excluded.state, "
                "body = excluded.body, order_id = excluded.order_id, marker = excluded.marker, "
                "existing_ids = excluded.existing_ids, row_lines = excluded.row_lines, "
                "updated_at = excluded.updated_at",
                (
                    sha256,
                    group_key,
                    order_id,
                    json.dumps(body, sort_keys=True),
                    json.dumps(sorted(set(existing_ids))),
                    json.dumps(sorted(set(row_lines))),
                    EntryState.PENDING,
                ),
            )
        record = self.dispatch(sha256, group_key)
        assert record is not None
        return record

    def dispatch_confirmed(self, sha256: str, group_key: str, dispatch_id: str) -> None:
        self._set_dispatch(sha256, group_key, EntryState.CONFIRMED, dispatch_id=dispatch_id)

    def dispatch_refused(self, sha256: str, group_key: str, message: str) -> None:
        self._set_dispatch(sha256, group_key, EntryState.REFUSED, message=message)

    @_resumable
    def _set_dispatch(
        self,
        sha256: str,
        group_key: str,
        state: EntryState,
        *,
        dispatch_id: str | None = None,
        message: str | None = None,
    ) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "UPDATE warehouse_dispatches SET state = %s, dispatch_id = COALESCE(%s, dispatch_id), "
                "message = %s, updated_at = now() WHERE file_sha256 = %s AND group_key = %s",
                (state, dispatch_id, message, sha256, group_key),
            )

    # inventory -----------------------------------------------------------------------------------------

    @_resumable
    def inventory_states(self, sha256: str) -> dict[int, tuple[EntryState, str | None]]:
        rows = self._conn.execute(
            "SELECT line, state, message FROM warehouse_inventory_rows WHERE file_sha256 = %s", (sha256,)
        ).fetchall()
        return {row["line"]: (EntryState(row["state"]), row["message"]) for row in rows}

    @_resumable
    def mark_inventory(
        self,
        sha256: str,
        rows: Iterable[tuple[int, str, str]],
        state: EntryState,
        message: str | None = None,
    ) -> None:
        values = [(sha256, line, sku, str(value), state, message) for line, sku, value in rows]
        with self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO warehouse_inventory_rows (file_sha256, line, sku, value, state, message, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, now()) ON CONFLICT (file_sha256, line) "
                "DO UPDATE SET state = excluded.state, message = excluded.message, "
                "updated_at = excluded.updated_at",
                values,
            )
