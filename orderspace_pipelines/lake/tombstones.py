"""The lake's tombstones: (resource, id) pairs deleted for good, so nothing stale brings them back.

Written by the change feed's applier (`*.deleted` events) and by reconciliation (records gone from the
account), both through `lake.changes.apply_events`; read by the applier (a created/updated event for a
tombstoned id is ignored) and by the pull's landings (`live`: a record listed before its deletion and landed
after it is dropped). Orderspace never reuses ids, so nothing legitimate is lost. `resource` is the webhook
resource name (`order`, `invoice`, `customer`, ...: the endpoint's `singular`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orderspace_pipelines.lake import storage

TOMBSTONE_FILE = "tombstones.sqlite"


def tombstone_path(data_dir: Path) -> Path:
    return Path(data_dir) / storage.STATE_DIR / TOMBSTONE_FILE


class Tombstones:
    """The (resource, id) pairs deleted for good, in a small SQLite file (durable: synchronous=FULL)."""

    def __init__(self, data_dir: Path) -> None:
        path = tombstone_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
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


def live(
    data_dir: Path, resource: str | None, records: Sequence[Any], key: str = "id"
) -> tuple[list[Any], int]:
    """`records` without those whose `key` is tombstoned for `resource`, and how many were dropped.

    Costs nothing when the lake has no tombstone file (no deletion recorded yet) or `resource` is None
    (a resource without webhook deletions: the reference tables)."""
    if resource is None or not tombstone_path(data_dir).is_file():
        return list(records), 0
    ids = [str(r[key]) for r in records if isinstance(r, Mapping) and r.get(key) is not None]
    if not ids:
        return list(records), 0
    tombstones = Tombstones(data_dir)
    try:
        dead = tombstones.deleted(resource, ids)
    finally:
        tombstones.close()
    if not dead:
        return list(records), 0
    kept = [r for r in records if not (isinstance(r, Mapping) and str(r.get(key)) in dead)]
    return kept, len(records) - len(kept)
