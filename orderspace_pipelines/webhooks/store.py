"""The durable store of received webhook events, and the API the lake's applier reads it through.

`EventStore` is the protocol; `open_store` picks the implementation, in one place: `PostgresEventStore`
(`store_pg.py`) when `ORDERSPACE_DATABASE_URL` is set, so receivers and appliers on every host share it, else
`SqliteEventStore`, a file at `$ORDERSPACE_DATA_DIR/webhooks/events.sqlite` (one machine), in WAL mode with
`synchronous=FULL`: once `add_delivery` returns, the delivery survives a crash or a power loss, which is
what lets the receiver answer 200 (and Orderspace stop retrying).

Tables:

- `deliveries`: one row per distinct delivery body (`body_sha256` is UNIQUE, so a replayed identical body is
  stored once and `add_delivery` says it was a duplicate);
- `events`: one row per event; `seq` (AUTOINCREMENT) is the receipt order, `applied_at` is NULL until the
  applier calls `mark_applied`.

A delivery and its events are written in one transaction: the store never holds part of a delivery.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from orderspace_pipelines.webhooks.events import RESOURCES, ParsedEvent

SCHEMA_VERSION = 1
STORE_FILE = "events.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    body_sha256 TEXT NOT NULL UNIQUE,
    event_count INTEGER NOT NULL,
    types TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    idx INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    resource TEXT NOT NULL,
    record_id TEXT,
    known INTEGER NOT NULL,
    record TEXT NOT NULL,
    applied_at TEXT,
    UNIQUE (delivery_id, idx)
);
CREATE INDEX IF NOT EXISTS events_pending ON events (resource, seq) WHERE applied_at IS NULL;
CREATE INDEX IF NOT EXISTS events_applied_at ON events (applied_at);
"""


class StoreError(RuntimeError):
    """The event store cannot be opened or written (the message names the file and the cause)."""


@dataclass(frozen=True)
class StoredEvent:
    """One stored event. `seq` orders events by receipt; `record` is the event's `data.<resource>` object.

    `record_id` identifies the row it changes: the record's `id`, the paid invoice's id for a payment,
    the `sku` for an inventory level. `known` is False for an event type the reference does not list.
    """

    seq: int
    delivery_id: int
    index: int
    event_type: str
    resource: str
    record_id: str | None
    record: Any
    known: bool
    received_at: datetime


@dataclass(frozen=True)
class StoredDelivery:
    """What `add_delivery` did: the delivery's id, its event count, and whether the body was a replay."""

    delivery_id: int
    event_count: int
    duplicate: bool


@dataclass(frozen=True)
class StoreStats:
    """Pending (not yet applied) events per resource (every known resource listed, 0 included; an
    unknown event type's resource is listed too), plus when the last delivery landed and the last event was
    applied (None: never)."""

    pending: dict[str, int] = field(default_factory=dict)
    unknown_pending: int = 0
    deliveries: int = 0
    events: int = 0
    last_received_at: datetime | None = None
    last_applied_at: datetime | None = None

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


class EventStore(Protocol):
    """What the receiver writes through and the applier reads through."""

    def add_delivery(
        self, body: bytes, events: Sequence[ParsedEvent], *, received_at: datetime | None = None
    ) -> StoredDelivery:
        """Store one delivery's events atomically and durably; a body stored before is not stored again."""
        ...

    def pending(self, limit: int, resources: Iterable[str] | None = None) -> list[StoredEvent]:
        """Up to `limit` events not yet applied, oldest receipt first (`seq` order), optionally of some
        resources only. Unknown event types are included (`known=False`): the applier decides."""
        ...

    def mark_applied(self, seqs: Iterable[int], *, applied_at: datetime | None = None) -> int:
        """Mark events applied; returns how many were pending. Idempotent."""
        ...

    def stats(self) -> StoreStats:
        """Pending counts per resource, last receipt, last application."""
        ...

    def last_delivery_at(self) -> datetime | None:
        """When the newest delivery was stored (None: never)."""
        ...

    def close(self) -> None: ...


def store_path(data_dir: Path) -> Path:
    """`<data dir>/webhooks/events.sqlite`."""
    return Path(data_dir) / "webhooks" / STORE_FILE


def _is_set(database_url: SecretStr | str | None) -> bool:
    if isinstance(database_url, SecretStr):
        return bool(database_url.get_secret_value())
    return bool(database_url)


def open_store(data_dir: Path, database_url: SecretStr | str | None = None) -> EventStore:
    """The event store: Postgres when `database_url` (the settings' `database_url`) is set, else the SQLite
    file under `data_dir`. The one place the implementation is chosen."""
    if _is_set(database_url):
        from orderspace_pipelines.webhooks.store_pg import PostgresEventStore

        assert database_url is not None
        return PostgresEventStore(database_url)
    return SqliteEventStore(store_path(data_dir))


def store_exists(data_dir: Path, database_url: SecretStr | str | None = None) -> bool:
    """Whether there can be stored events: always with Postgres, else when the SQLite file exists."""
    return _is_set(database_url) or store_path(data_dir).is_file()


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    """A fixed-width UTC timestamp (sorts as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_stamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def event_rows(events: Sequence[ParsedEvent]) -> list[tuple[int, str, str, str | None, bool, str]]:
    """The events as both stores keep them: (index, type, resource, record id, known, record as JSON)."""
    return [
        (
            event.index,
            event.event_type,
            event.resource,
            event.record_id,
            bool(event.known),
            json.dumps(event.record, separators=(",", ":"), ensure_ascii=False),
        )
        for event in events
    ]


def stored_event(row: Sequence[Any], received_at: datetime) -> StoredEvent:
    """A pending event from its row (seq, delivery id, index, type, resource, record id, known, record)."""
    return StoredEvent(
        seq=int(row[0]),
        delivery_id=int(row[1]),
        index=row[2],
        event_type=row[3],
        resource=row[4],
        record_id=row[5],
        known=bool(row[6]),
        record=json.loads(row[7]),
        received_at=received_at,
    )


def pending_counts(counts: Iterable[Sequence[Any]]) -> tuple[dict[str, int], int]:
    """From (resource, known, count) rows of pending events: the count per resource (every known resource
    listed, 0 included) and how many are of an unknown type."""
    pending = dict.fromkeys(RESOURCES, 0)
    unknown = 0
    for resource, known, count in counts:
        pending[resource] = pending.get(resource, 0) + int(count)
        if not known:
            unknown += int(count)
    return pending, unknown


class SqliteEventStore:
    """`EventStore` on one SQLite file (WAL, `synchronous=FULL`). Thread-safe: one connection, one lock.
    Several processes may open the same file (the receiver writes, the applier reads and marks)."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float = 30.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the webhook event store {self.path}: {error}") from None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteEventStore({str(self.path)!r})"

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the webhook event store {self.path} has schema version {version}, newer than this "
                f"program's {SCHEMA_VERSION}: upgrade orderspace-pipelines"
            )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self, doing: str) -> Iterator[None]:
        """One write transaction under the lock: committed when the block ends (unless it rolled back
        itself), rolled back on any exception; an SQLite failure becomes `StoreError` naming the file."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    if self._db.in_transaction:
                        self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StoreError(f"cannot {doing} in {self.path}: {error}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the receiver's side ----------------------------------------------------------------------

    def add_delivery(
        self, body: bytes, events: Sequence[ParsedEvent], *, received_at: datetime | None = None
    ) -> StoredDelivery:
        digest = hashlib.sha256(body).hexdigest()
        stamp = _stamp(received_at or _now())
        types = json.dumps(sorted({event.event_type for event in events}))
        rows = event_rows(events)
        with self._write("store a delivery"):
            found = self._db.execute(
                "SELECT id, event_count FROM deliveries WHERE body_sha256 = ?", (digest,)
            ).fetchone()
            if found is not None:
                self._db.execute("ROLLBACK")
                return StoredDelivery(found[0], found[1], duplicate=True)
            cursor = self._db.execute(
                "INSERT INTO deliveries (received_at, body_sha256, event_count, types) VALUES (?, ?, ?, ?)",
                (stamp, digest, len(rows), types),
            )
            delivery_id = int(cursor.lastrowid or 0)
            self._db.executemany(
                "INSERT INTO events (delivery_id, idx, event_type, resource, record_id, known, "
                "record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(delivery_id, *row) for row in rows],
            )
        return StoredDelivery(delivery_id, len(rows), duplicate=False)

    # -- the applier's side -----------------------------------------------------------------------

    def pending(self, limit: int, resources: Iterable[str] | None = None) -> list[StoredEvent]:
        if limit <= 0:
            return []
        query = (
            "SELECT e.seq, e.delivery_id, e.idx, e.event_type, e.resource, e.record_id, e.known, e.record, "
            "d.received_at FROM events e JOIN deliveries d ON d.id = e.delivery_id WHERE e.applied_at IS NULL"
        )
        params: list[Any] = []
        if resources is not None:
            wanted = sorted(set(resources))
            if not wanted:
                return []
            query += f" AND e.resource IN ({','.join('?' * len(wanted))})"
            params += wanted
        query += " ORDER BY e.seq LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [stored_event(row, _parse_stamp(row[8]) or _now()) for row in rows]

    def mark_applied(self, seqs: Iterable[int], *, applied_at: datetime | None = None) -> int:
        chosen = sorted({int(seq) for seq in seqs})
        if not chosen:
            return 0
        stamp = _stamp(applied_at or _now())
        changed = 0
        with self._write("mark events applied"):
            for start in range(0, len(chosen), 500):
                part = chosen[start : start + 500]
                cursor = self._db.execute(
                    f"UPDATE events SET applied_at = ? WHERE applied_at IS NULL "
                    f"AND seq IN ({','.join('?' * len(part))})",
                    [stamp, *part],
                )
                changed += cursor.rowcount
        return changed

    def stats(self) -> StoreStats:
        with self._lock:
            counts = self._db.execute(
                "SELECT resource, known, COUNT(*) FROM events WHERE applied_at IS NULL "
                "GROUP BY resource, known"
            ).fetchall()
            deliveries, last_received = self._db.execute(
                "SELECT COUNT(*), MAX(received_at) FROM deliveries"
            ).fetchone()
            (events,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
            (last_applied,) = self._db.execute("SELECT MAX(applied_at) FROM events").fetchone()
        pending, unknown = pending_counts(counts)
        return StoreStats(
            pending=pending,
            unknown_pending=unknown,
            deliveries=deliveries,
            events=events,
            last_received_at=_parse_stamp(last_received),
            last_applied_at=_parse_stamp(last_applied),
        )

    def last_delivery_at(self) -> datetime | None:
        with self._lock:
            (last,) = self._db.execute("SELECT MAX(received_at) FROM deliveries").fetchone()
        return _parse_stamp(last)
