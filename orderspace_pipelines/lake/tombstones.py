"""The lake's tombstones: the (resource, id) pairs deleted for good, so nothing stale brings them back.

Written by the change feed's applier (`*.deleted` events, `lake.changes` rule 2) and by reconciliation
(records gone from the account); read by the applier (a created/updated event for a tombstoned id is
ignored) and by the pull's landings (`live`: a record listed before its deletion and landed after it is
dropped). Orderspace never reuses ids, so nothing legitimate is lost. `resource` is the webhook resource
name (the endpoint's `singular`).

`open_tombstones` picks the store, in one place: Postgres when `ORDERSPACE_DATABASE_URL` is set, else a small
SQLite file at `<data dir>/state/tombstones.sqlite` (WAL, `synchronous=FULL`).

Why Postgres when it is configured, although the lake itself stays on the shared volume: every host of a
deployment sees that volume, but it is a network file system (NFS, EFS, a Kubernetes RWX volume), and SQLite
on one is unsafe: its locks are not reliable there and WAL mode needs shared memory that only processes of
one machine share, so two hosts' appliers could corrupt or silently lose tombstones, and a lost tombstone
lets a late `updated` event resurrect a deleted record. The tombstones are also state about the event
stream, not lake data: they belong with the event store, which is in Postgres whenever the URL is set.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from orderspace_pipelines import postgres
from orderspace_pipelines.lake import storage

if TYPE_CHECKING:
    import psycopg

TOMBSTONE_FILE = "tombstones.sqlite"
COMPONENT = "lake_tombstones"
MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS lake_tombstones (resource TEXT NOT NULL, id TEXT NOT NULL, seq BIGINT, "
    "PRIMARY KEY (resource, id))",
]


class Tombstones(Protocol):
    """Which ids of a resource were deleted for good; recording more. Close when done."""

    def deleted(self, resource: str, ids: Iterable[str]) -> set[str]: ...

    def add(self, items: Iterable[tuple[str, str, int]]) -> None:
        """Record (resource, id, seq of the delete) triples, durably; one already recorded is kept."""
        ...

    def close(self) -> None: ...


def tombstone_path(data_dir: Path) -> Path:
    return Path(data_dir) / storage.STATE_DIR / TOMBSTONE_FILE


def open_tombstones(data_dir: Path, database_url: SecretStr | str | None = None) -> Tombstones:
    """Postgres when `database_url` (the settings' `database_url`) is set, else the SQLite file."""
    plain = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
    if plain:
        return PostgresTombstones(plain)
    return SqliteTombstones(data_dir)


class SqliteTombstones:
    """`Tombstones` in a small SQLite file on this machine (durable: synchronous=FULL)."""

    def __init__(self, data_dir: Path) -> None:
        path = tombstone_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: a landing's store may be closed by its finalizer on another thread; it
        # is never used by two threads at once.
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tombstones (resource TEXT NOT NULL, id TEXT NOT NULL, "
            "seq INTEGER, PRIMARY KEY (resource, id))"
        )

    def deleted(self, resource: str, ids: Iterable[str]) -> set[str]:
        wanted = list(set(ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id FROM tombstones WHERE resource = ? AND id IN ({marks})", (resource, *chunk)
            )
            found.update(row[0] for row in rows)
        return found

    def add(self, items: Iterable[tuple[str, str, int]]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO tombstones (resource, id, seq) VALUES (?, ?, ?)", items)

    def close(self) -> None:
        self._db.close()


class PostgresTombstones:
    """`Tombstones` in the shared database (table `lake_tombstones`, migrated on open)."""

    def __init__(self, url: SecretStr | str) -> None:
        self._conn: psycopg.Connection = postgres.connect(url, purpose="lake tombstones")
        try:
            postgres.migrate(self._conn, COMPONENT, MIGRATIONS)
        except BaseException:
            self._conn.close()
            raise

    def deleted(self, resource: str, ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        rows = self._conn.execute(
            "SELECT id FROM lake_tombstones WHERE resource = %s AND id = ANY(%s)", (resource, wanted)
        ).fetchall()
        return {str(row[0]) for row in rows}

    def add(self, items: Iterable[tuple[str, str, int]]) -> None:
        values = list(items)
        if not values:
            return
        with self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO lake_tombstones (resource, id, seq) VALUES (%s, %s, %s) "
                "ON CONFLICT (resource, id) DO NOTHING",
                values,
            )

    def close(self) -> None:
        self._conn.close()


class TombstoneLookup:
    """Tombstone look-ups for one pull landing (`live` per page, `PullGuard` per write).

    Opens nothing while no deletion can have been recorded (SQLite and no file yet: one `stat` per call);
    after that the store is opened once and kept until `close` (or until this object is collected), not
    reopened per page. A Postgres connection lost during a long pull is reopened once per look-up."""

    def __init__(self, data_dir: Path, database_url: SecretStr | str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self._url = database_url.get_secret_value() if isinstance(database_url, SecretStr) else database_url
        self._store: Tombstones | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def possible(self) -> bool:
        """False only while no deletion can have been recorded (SQLite tombstones and no file yet)."""
        return bool(self._url) or tombstone_path(self.data_dir).is_file()

    def _open(self) -> Tombstones:
        if self._store is None:
            self._store = open_tombstones(self.data_dir, self._url)
            self._finalizer = weakref.finalize(self, self._store.close)
        return self._store

    def deleted(self, resource: str, ids: Iterable[str]) -> set[str]:
        """The ids among `ids` tombstoned for `resource`."""
        wanted = list(ids)
        if not wanted or not self.possible():
            return set()
        try:
            return self._open().deleted(resource, wanted)
        except Exception as error:
            if not self._url or not _connection_lost(error):
                raise
            self.close()
            return self._open().deleted(resource, wanted)

    def live(self, resource: str | None, records: Sequence[Any], key: str = "id") -> tuple[list[Any], int]:
        """`records` without those whose `key` is tombstoned for `resource`, and how many were dropped
        (`resource` None: a resource without webhook deletions, the reference tables)."""
        if resource is None:
            return list(records), 0
        ids = [str(r[key]) for r in records if isinstance(r, Mapping) and r.get(key) is not None]
        dead = self.deleted(resource, ids)
        if not dead:
            return list(records), 0
        kept = [r for r in records if not (isinstance(r, Mapping) and str(r.get(key)) in dead)]
        return kept, len(records) - len(kept)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._store, self._finalizer = None, None


def _connection_lost(error: Exception) -> bool:
    import psycopg

    return isinstance(error, psycopg.OperationalError)


def live(
    data_dir: Path,
    resource: str | None,
    records: Sequence[Any],
    key: str = "id",
    database_url: SecretStr | str | None = None,
) -> tuple[list[Any], int]:
    """`records` without those whose `key` is tombstoned for `resource`, and how many were dropped (one
    look-up; a landing keeps a `TombstoneLookup` instead). Costs nothing on SQLite before the first
    deletion is recorded, or when `resource` is None."""
    lookup = TombstoneLookup(data_dir, database_url)
    try:
        return lookup.live(resource, records, key)
    finally:
        lookup.close()
