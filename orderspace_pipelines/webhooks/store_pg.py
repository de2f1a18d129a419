"""The webhook event store in PostgreSQL (`ORDERSPACE_DATABASE_URL`): receivers and appliers on any host.

`PostgresEventStore` implements `EventStore` with the same guarantees as `SqliteEventStore`:

- a delivery and its events are one transaction, committed with `synchronous_commit = on` (forced for the
  transaction, whatever the server's default), so once `add_delivery` returns the delivery survives a crash
  of the database server too, which is what lets the receiver answer 200;
- a replayed identical body is stored once (`body_sha256` UNIQUE; two receivers storing it at once: one
  inserts, the other waits for that commit and reports a duplicate);
- `seq` is the receipt order *and* the commit order: writers take one transaction-level advisory lock before
  they insert, so an applier never sees event N+1 pending while event N is still being written;
- pending / mark_applied / stats read and write exactly what the SQLite store does.

Records are stored as JSON text, as in SQLite (`jsonb` would refuse a `\\u0000` escape that a record may
carry). The schema comes from `postgres.migrate` (component `webhook_events`) when the store is opened.
One connection, one lock (the receiver calls from several threads); a connection the server dropped is
replaced on the next call.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from orderspace_pipelines import postgres
from orderspace_pipelines.webhooks.events import ParsedEvent
from orderspace_pipelines.webhooks.store import (
    StoredDelivery,
    StoredEvent,
    StoreError,
    StoreStats,
    event_rows,
    pending_counts,
    stored_event,
)

if TYPE_CHECKING:
    import psycopg

COMPONENT = "webhook_events"
# Append-only: a shipped entry is never edited (see `postgres.migrate`).
MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at TIMESTAMPTZ NOT NULL,
        body_sha256 TEXT NOT NULL UNIQUE,
        event_count INTEGER NOT NULL,
        types TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS webhook_events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id),
        idx INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        resource TEXT NOT NULL,
        record_id TEXT,
        known BOOLEAN NOT NULL,
        record TEXT NOT NULL,
        applied_at TIMESTAMPTZ,
        UNIQUE (delivery_id, idx)
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_events_pending ON webhook_events (resource, seq) "
    "WHERE applied_at IS NULL",
    "CREATE INDEX IF NOT EXISTS webhook_events_applied_at ON webhook_events (applied_at)",
]
_WRITER_LOCK = postgres.advisory_key("webhook_events.writer")
_T = TypeVar("_T")


class PostgresEventStore:
    """`EventStore` in PostgreSQL. Thread-safe: one connection, one lock."""

    def __init__(self, url: SecretStr | str) -> None:
        self._url = url
        self.where = postgres.describe_url(url)
        self._lock = threading.Lock()
        self._conn = self._open()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self.where!r})"

    def _open(self) -> psycopg.Connection:
        import psycopg

        try:
            conn = postgres.connect(self._url, purpose="webhook events")
        except postgres.DatabaseError as error:
            raise StoreError(f"cannot open the webhook event store: {error}") from None
        try:
            postgres.migrate(conn, COMPONENT, MIGRATIONS)
        except psycopg.Error as error:
            conn.close()
            raise StoreError(
                f"cannot migrate the webhook event store in {self.where}: {_one_line(error)}"
            ) from None
        return conn

    def _run(self, doing: str, work: Callable[[psycopg.Connection], _T]) -> _T:
        """`work` on the connection under the lock; a database failure becomes `StoreError` naming the
        database (never its password). A connection the server dropped (a restart, a failover) is replaced
        and `work` tried once more: every operation here is safe to repeat (a delivery is deduplicated by
        its body, marking is idempotent, the rest only reads)."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                if self._conn.closed or self._conn.broken:
                    self._conn = self._open()
                try:
                    return work(self._conn)
                except psycopg.OperationalError as error:
                    if attempt == 1 and self._conn.broken:
                        continue
                    raise StoreError(f"cannot {doing} in {self.where}: {_one_line(error)}") from None
                except psycopg.Error as error:
                    raise StoreError(f"cannot {doing} in {self.where}: {_one_line(error)}") from None
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the receiver's side ----------------------------------------------------------------------

    def add_delivery(
        self, body: bytes, events: Sequence[ParsedEvent], *, received_at: datetime | None = None
    ) -> StoredDelivery:
        digest = hashlib.sha256(body).hexdigest()
        moment = (received_at or datetime.now(UTC)).astimezone(UTC)
        types = json.dumps(sorted({event.event_type for event in events}))
        rows = event_rows(events)

        def store(conn: psycopg.Connection) -> StoredDelivery:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK,))
                inserted = conn.execute(
                    "INSERT INTO webhook_deliveries (received_at, body_sha256, event_count, types) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (body_sha256) DO NOTHING RETURNING id",
                    (moment, digest, len(rows), types),
                ).fetchone()
                if inserted is None:
                    found = conn.execute(
                        "SELECT id, event_count FROM webhook_deliveries WHERE body_sha256 = %s", (digest,)
                    ).fetchone()
                    assert found is not None  # the conflicting row is committed: we waited for it
                    return StoredDelivery(int(found[0]), int(found[1]), duplicate=True)
                delivery_id = int(inserted[0])
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO webhook_events (delivery_id, idx, event_type, resource, record_id, "
                        "known, record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(delivery_id, *row) for row in rows],
                    )
            return StoredDelivery(delivery_id, len(rows), duplicate=False)

        return self._run("store a delivery", store)

    # -- the applier's side -----------------------------------------------------------------------

    def pending(self, limit: int, resources: Iterable[str] | None = None) -> list[StoredEvent]:
        if limit <= 0:
            return []
        query = (
            "SELECT e.seq, e.delivery_id, e.idx, e.event_type, e.resource, e.record_id, e.known, e.record, "
            "d.received_at FROM webhook_events e JOIN webhook_deliveries d ON d.id = e.delivery_id "
            "WHERE e.applied_at IS NULL"
        )
        params: list[Any] = []
        if resources is not None:
            wanted = sorted(set(resources))
            if not wanted:
                return []
            query += " AND e.resource = ANY(%s)"
            params.append(wanted)
        query += " ORDER BY e.seq LIMIT %s"
        params.append(limit)
        rows = self._run("read pending events", lambda conn: conn.execute(query, params).fetchall())
        return [stored_event(row, row[8].astimezone(UTC)) for row in rows]

    def mark_applied(self, seqs: Iterable[int], *, applied_at: datetime | None = None) -> int:
        chosen = sorted({int(seq) for seq in seqs})
        if not chosen:
            return 0
        moment = (applied_at or datetime.now(UTC)).astimezone(UTC)

        def mark(conn: psycopg.Connection) -> int:
            with conn.transaction():
                cursor = conn.execute(
                    "UPDATE webhook_events SET applied_at = %s WHERE applied_at IS NULL AND seq = ANY(%s)",
                    (moment, chosen),
                )
                return int(cursor.rowcount)

        return self._run("mark events applied", mark)

    def stats(self) -> StoreStats:
        def read(conn: psycopg.Connection) -> tuple[list[Any], Any, Any]:
            with conn.transaction():  # one snapshot for every figure
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                counts = conn.execute(
                    "SELECT resource, known, COUNT(*) FROM webhook_events WHERE applied_at IS NULL "
                    "GROUP BY resource, known"
                ).fetchall()
                deliveries = conn.execute(
                    "SELECT COUNT(*), MAX(received_at) FROM webhook_deliveries"
                ).fetchone()
                events = conn.execute("SELECT COUNT(*), MAX(applied_at) FROM webhook_events").fetchone()
            return counts, deliveries, events

        counts, deliveries, events = self._run("read the store's figures", read)
        pending, unknown = pending_counts(counts)
        return StoreStats(
            pending=pending,
            unknown_pending=unknown,
            deliveries=int(deliveries[0]),
            events=int(events[0]),
            last_received_at=_utc(deliveries[1]),
            last_applied_at=_utc(events[1]),
        )

    def last_delivery_at(self) -> datetime | None:
        row = self._run(
            "read the last delivery",
            lambda conn: conn.execute("SELECT MAX(received_at) FROM webhook_deliveries").fetchone(),
        )
        return _utc(row[0] if row else None)

    def backlog(self) -> list[tuple[str, int, int]]:
        """(resource, pending count, highest pending seq) per resource with events waiting."""
        rows = self._run(
            "read the backlog",
            lambda conn: conn.execute(
                "SELECT resource, COUNT(*), MAX(seq) FROM webhook_events WHERE applied_at IS NULL "
                "GROUP BY resource"
            ).fetchall(),
        )
        return [(str(resource), int(count), int(seq)) for resource, count, seq in rows]

    def feed_per_resource(self) -> list[tuple[str, int, datetime | None, datetime | None]]:
        """(resource, pending count, newest delivery's receipt, newest apply) per resource ever received."""
        rows = self._run(
            "read the feed status",
            lambda conn: conn.execute(
                "SELECT e.resource, COUNT(*) FILTER (WHERE e.applied_at IS NULL), MAX(d.received_at), "
                "MAX(e.applied_at) FROM webhook_events e JOIN webhook_deliveries d ON d.id = e.delivery_id "
                "GROUP BY e.resource"
            ).fetchall(),
        )
        return [(str(r), int(pending), _utc(received), _utc(landed)) for r, pending, received, landed in rows]


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None
