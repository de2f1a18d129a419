"""Dagster's embedded SQLite storage, with asset materializations written in batches.

Dagster's default SQLite event log opens a new engine and connection, and commits a transaction, for every
event, twice for an asset event (the run's own database and the cross-run index). A full pull logs one
materialization per day and table (thousands), and that alone was most of its local time.

`BatchingSqliteStorage` is the default storage (`DagsterSqliteStorage`: the same files, the same layout under
`$DAGSTER_HOME`, readable by a stock Dagster) whose event log is `BatchingSqliteEventLogStorage`. Outside a
batch it behaves exactly like the default. Inside `batched_materializations(instance)` (on the calling thread
only), asset materializations are held in memory and written `BATCH_SIZE` at a time, each batch in one
transaction per database, through the default storage's own insert code. Log lines are held with them
(a landing logs a line per late record; writing the batch at each would split it). Any other event (a step
event, a check, an observation) first writes what is held, so the event log keeps its order; leaving the
block writes the rest, also when the block raises. Until a batch is written its events are not yet
visible to other processes (the UI sees a day's status at most `BATCH_SIZE` events late).

Dagster's own batched writes go the same way: a run over a partition range logs a "planned" event per
partition and asset when it is created (by the webserver or daemon for a UI backfill), which Dagster hands
to `store_event_batch` when `DAGSTER_EVENT_BATCH_SIZE` is set; this storage sets it (unless already set)
and writes each such batch in one transaction per database.

`orderspace_pipelines/dagster_home/dagster.yaml` selects it (`storage: custom:`). On any other instance
storage (the default SQLite, Postgres, the in-memory ephemeral instance) `batched_materializations` does
nothing and every event is written as it comes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import mkdir_p
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

BATCH_SIZE = 200
EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
_BATCHED_TYPES = frozenset({DagsterEventType.ASSET_MATERIALIZATION})


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that can hold a thread's asset materializations and write them in batches."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._local = threading.local()  # before the parent's __init__, which may already connect
        super().__init__(base_dir, inst_data=inst_data)

    # --- batching -----------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's materializations and log lines; write them `BATCH_SIZE` at a time (nestable)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.held = []
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self.flush()

    def flush(self) -> None:
        """Write the materializations this thread holds, in one transaction per database."""
        held: list[EventLogEntry] = getattr(self._local, "held", None) or []
        if not held:
            return
        self._local.held = []
        self._write_together(held)

    def _write_together(self, events: Sequence[EventLogEntry]) -> None:
        with self._db_lock:
            connections: dict[str, Connection] = {}
            self._local.connections = connections
            try:
                for event in events:
                    super().store_event(event)  # its `_connect` calls reuse `connections`
                for conn in connections.values():
                    conn.commit()
            finally:
                self._local.connections = None
                for conn in connections.values():
                    conn.close()
                    conn.engine.dispose()

    def store_event(self, event: EventLogEntry) -> None:
        if getattr(self._local, "depth", 0) > 0:
            if not event.is_dagster_event or event.dagster_event_type in _BATCHED_TYPES:
                self._local.held.append(event)
                if len(self._local.held) >= BATCH_SIZE:
                    self.flush()
                return
            self.flush()  # keep the log's order: what is held goes first
        super().store_event(event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Dagster's own batches (with `DAGSTER_EVENT_BATCH_SIZE` set): one transaction per database."""
        self.flush()
        self._write_together(events)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        connections: dict[str, Connection] | None = getattr(self._local, "connections", None)
        if connections is None:  # not writing a batch: the default behaviour
            with super()._connect(shard) as conn:
                yield conn
            return
        batch_conn = connections.get(shard)
        if batch_conn is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            batch_conn = engine.connect()
            batch_conn.begin()
            connections[shard] = batch_conn
        yield batch_conn


class BatchingSqliteStorage(DagsterSqliteStorage):
    """`DagsterSqliteStorage` (same files and layout) whose event log is `BatchingSqliteEventLogStorage`."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()
        # Dagster's own batches (a ranged run's per-partition "planned" events, at run creation, and the
        # per-partition events of an output) reach `store_event_batch` only with this set; the instance
        # reads it at each event. A value the user set is kept.
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(BATCH_SIZE))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Any) -> BatchingSqliteStorage:
        base_dir = str(config_value["base_dir"])
        mkdir_p(base_dir)
        return cls(base_dir, inst_data=inst_data)


@contextmanager
def batched_materializations(instance: dg.DagsterInstance) -> Iterator[None]:
    """Within the block, this thread's asset materializations are written in batches (if the instance's
    storage supports it; otherwise as they come)."""
    storage = instance.event_log_storage
    if isinstance(storage, BatchingSqliteEventLogStorage):
        with storage.batch():
            yield
    else:
        yield
