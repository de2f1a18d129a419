"""The lake side of reconciliation: what is stored, what differs from fresh API records, and the writes.

No HTTP here (`orderspace_pipelines.reconcile` fetches). Three jobs:

- `stored_keys`: the keys a table holds, optionally only those matching a condition (`status IN (...)`,
  `paid = false`) or stored in a range of days (the rolling sweep's slice), read with one DuckDB scan;
- `changed`: of some freshly fetched records, those whose rows (the parent row and every child row, and for
  a date-partitioned table the day it is stored in) differ from the lake's or are missing from it. Both
  sides go through the pull's own flattening, so only real differences count (`_loaded_at` aside);
- `write`: lands the changed records and removes the vanished ones through the change feed's applier
  (`lake.changes.apply_events`) as `ReconcileEvent`s: the same partition logic (a record found by id in any
  day, its child rows replaced, atomic writes), the same per-table lake locks as pulls and event applies,
  and the same tombstones, so a removed record stays removed whatever stale event or listing comes later.
  Inventory levels (whose change events carry only the levels) and the reference tables (no events at all)
  are landed with the pull's `WholeLanding` instead (`land_whole`).

Reconcile reads the API at R and writes at W, later. Its events carry R, the moment the record was read
(taken just before the request that returned it), not W: the applier's rule 6 (`lake.changes`) leaves alone
a stored record with a row loaded after R (an event or a pull landed a state at least as new), and does not
remove or tombstone such a record. So reconcile-written rows get `_loaded_at` = R, the time of the read (as
a pull's rows get the pull's start, before its listing). `land_whole` lands with `loaded_at` = R too, so the
pull's `PullGuard` keeps what the change feed applied after R.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from pydantic import SecretStr

from orderspace_pipelines.endpoints import Endpoint
from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.changes import RECONCILE_SEQ, SPEC_OF, ApplyReport, apply_events, loaded_since
from orderspace_pipelines.lake.flatten import Row, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import LOADED_AT, PARTITION_COLUMN, table_spec
from orderspace_pipelines.lake.sweep import WholeLanding, day_of
from orderspace_pipelines.lake.tombstones import open_tombstones

SINGULAR_OF = {resource: singular for singular, resource in SPEC_OF.items()}
_DAY = "_day"


@dataclass
class ReconcileEvent:
    """A fresh API record (or a vanished id) in the shape the change-feed applier takes (`EventLike`);
    `received_at` is when reconcile read it (rule 6 of `lake.changes`), `seq` is `RECONCILE_SEQ`."""

    event_type: str
    resource: str
    record_id: str | None
    record: Any
    received_at: datetime
    seq: int = RECONCILE_SEQ
    known: bool = True


@dataclass
class WriteReport:
    """What reconcile wrote: records changed (new or different) and removed per parent table; rows per
    table."""

    changed: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    # records and removals the applier left alone: tombstoned, an older state than the stored one, or a
    # stored record loaded after reconcile read it
    skipped: int = 0

    def add(self, other: WriteReport) -> None:
        for mine, theirs in (
            (self.changed, other.changed),
            (self.removed, other.removed),
            (self.rows, other.rows),
        ):
            for table, count in theirs.items():
                mine[table] = mine.get(table, 0) + count
        self.skipped += other.skipped


# --- what is stored ----------------------------------------------------------------------------------


def _glob(data_dir: Path, table: str) -> str | None:
    """The Parquet glob of a table's current files (None: nothing stored)."""
    spec = table_spec(table)
    if spec.partitioned:
        if not storage.stored_days(data_dir, table):
            return None
        return str(storage.table_dir(data_dir, table) / f"{PARTITION_COLUMN}=*" / storage.PART_FILE)
    path = storage.whole_file(data_dir, table)
    return str(path) if path.is_file() else None


def _day_of_file(filename: str) -> date | None:
    folder = Path(filename).parent.name
    prefix = f"{PARTITION_COLUMN}="
    return date.fromisoformat(folder[len(prefix) :]) if folder.startswith(prefix) else None


def stored_keys(
    data_dir: Path,
    endpoint: Endpoint,
    *,
    where: str = "true",
    days: tuple[date | None, date | None] | None = None,
) -> set[str]:
    """The keys of `endpoint`'s parent table whose row satisfies `where` (SQL over its columns) and, with
    `days`, that are stored in a day of `[start, end]` (None: that side open)."""
    glob = _glob(data_dir, endpoint.table)
    if glob is None:
        return set()
    key = endpoint.key
    sql = (
        f'SELECT "{key}", filename FROM read_parquet(?, filename=true, union_by_name=true, '
        f"hive_partitioning=false) WHERE {where}"
    )
    with duckdb.connect() as con:
        rows = con.execute(sql, [glob]).fetchall()
    keys: set[str] = set()
    for value, filename in rows:
        if value is None:
            continue
        if days is not None:
            day = _day_of_file(filename)
            if (
                day is None
                or (days[0] is not None and day < days[0])
                or (days[1] is not None and day > days[1])
            ):
                continue
        keys.add(str(value))
    return keys


def stored_days_of(data_dir: Path, endpoint: Endpoint, ids: Iterable[str]) -> dict[str, date]:
    """The stored day of each of `ids` found in a date-partitioned parent table."""
    wanted = sorted(set(ids))
    glob = _glob(data_dir, endpoint.table)
    if glob is None or not wanted or not endpoint.partitioned:
        return {}
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE wanted (id VARCHAR)")
        con.executemany("INSERT INTO wanted VALUES (?)", [(value,) for value in wanted])
        rows = con.execute(
            f'SELECT s."{endpoint.key}", s.filename FROM read_parquet(?, filename=true, union_by_name=true, '
            f'hive_partitioning=false) s WHERE s."{endpoint.key}" IN (SELECT id FROM wanted)',
            [glob],
        ).fetchall()
    found: dict[str, date] = {}
    for value, filename in rows:
        day = _day_of_file(filename)
        if day is not None:
            found[str(value)] = day
    return found


def day_counts(data_dir: Path, endpoint: Endpoint) -> dict[date, int]:
    """Records stored per day in a date-partitioned parent table (from the files' footers)."""
    if not endpoint.partitioned:
        return {}
    return {
        day: pq.ParquetFile(storage.partition_file(data_dir, endpoint.table, day)).metadata.num_rows
        for day in storage.stored_days(data_dir, endpoint.table)
    }


def _stored_rows(data_dir: Path, table: str, key: str, ids: Sequence[str]) -> list[Row]:
    """The stored rows of `table` whose `key` is one of `ids`, each with its file's day under `_day`."""
    glob = _glob(data_dir, table)
    if glob is None or not ids:
        return []
    if not table_spec(table).partitioned:
        data = pq.read_table(glob)
        wanted = set(ids)
        return [row for row in data.to_pylist() if str(row.get(key)) in wanted]
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE wanted (id VARCHAR)")
        con.executemany("INSERT INTO wanted VALUES (?)", [(value,) for value in ids])
        found = con.sql(
            "SELECT s.* FROM read_parquet($glob, filename=true, union_by_name=true, "
            f'hive_partitioning=false) s WHERE s."{key}" IN (SELECT id FROM wanted)',
            params={"glob": glob},
        ).to_arrow_table()
    rows = [] if found is None else found.to_pylist()
    for row in rows:
        row[_DAY] = _day_of_file(str(row.pop("filename")))
    return rows


# --- what differs ------------------------------------------------------------------------------------------


def _canonical(row: Mapping[str, Any]) -> str:
    """A row as comparable text: `_loaded_at` and nulls left out (a column one side lacks reads as null)."""
    kept = {name: value for name, value in row.items() if value is not None and name != LOADED_AT}
    return json.dumps(kept, sort_keys=True, default=_plain)


def _plain(value: Any) -> str:
    return str(value)  # dates (datetimes are numbers by then, see `_normalise`)


def _normalise(row: Row) -> Row:
    """Datetimes as UTC instants, so DuckDB's session zone and Arrow's UTC read alike."""
    return {
        name: (value.timestamp() if isinstance(value, datetime) else value) for name, value in row.items()
    }


def _fresh_rows(endpoint: Endpoint, record: Mapping[str, Any]) -> dict[str, list[str]]:
    """A fresh record's rows per table as comparable text (with its partition day for a partitioned one)."""
    parent, children = split_record(endpoint, record)
    day = day_of(endpoint, record) if endpoint.partitioned else None
    out: dict[str, list[str]] = {}
    epoch = datetime.fromtimestamp(0).astimezone()
    for table, rows in [(endpoint.table, [parent]), *children.items()]:
        typed = rows_to_arrow(table_spec(table), rows, loaded_at=epoch).to_pylist()
        if endpoint.partitioned:
            typed = [{**row, _DAY: day} for row in typed]
        out[table] = sorted(_canonical(_normalise(row)) for row in typed)
    return out


def _key_column(endpoint: Endpoint, table: str) -> str:
    return endpoint.key if table == endpoint.table else (table_spec(table).parent_key or "parent_id")


def changed(
    data_dir: Path, endpoint: Endpoint, records: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The records (fresh from the API) that are new to the lake or differ from what it stores."""
    fresh = {str(record[endpoint.key]): record for record in records if record.get(endpoint.key) is not None}
    if not fresh:
        return []
    ids = sorted(fresh)
    stored: dict[str, dict[str, list[str]]] = {rid: {} for rid in ids}
    for table in (endpoint.table, *(child.table for child in endpoint.children)):
        key = _key_column(endpoint, table)
        for row in _stored_rows(data_dir, table, key, ids):
            stored[str(row[key])].setdefault(table, []).append(_canonical(_normalise(row)))
    out = []
    for rid in ids:
        mine = _fresh_rows(endpoint, fresh[rid])
        theirs = stored[rid]
        if any(sorted(theirs.get(table, [])) != rows for table, rows in mine.items()):
            out.append(fresh[rid])
    return out


# --- the writes ------------------------------------------------------------------------------------------


def write(
    data_dir: Path,
    endpoint: Endpoint,
    upserts: Sequence[Mapping[str, Any]],
    removed: Iterable[str],
    *,
    at: datetime,
    read_at: Mapping[str, datetime] | None = None,
    database_url: SecretStr | str | None = None,
) -> WriteReport:
    """Land `upserts` (fresh records) and remove `removed` ids (gone from the account) with their child
    rows, through the change feed's applier: atomic, under the tables' locks, removals tombstoned.

    `at`: when the records were read from the API (no later than the first request that returned any of
    them, nor than the listing that missed a removed id); `read_at`: a record's (or removed id's) own read
    time where known. A stored record loaded after its read time is left alone (see the module docstring).
    """
    singular = SINGULAR_OF[endpoint.resource]
    when = read_at or {}
    events = []
    for record in upserts:
        rid = str(record[endpoint.key])
        events.append(ReconcileEvent(f"{singular}.updated", singular, rid, dict(record), when.get(rid, at)))
    gone = sorted(set(removed))
    events += [
        ReconcileEvent(
            f"{singular}.deleted", singular, rid, {endpoint.key: rid, "deleted": True}, when.get(rid, at)
        )
        for rid in gone
    ]
    if not events:
        return WriteReport()
    report = apply_events(data_dir, events, database_url=database_url)
    return _write_report(endpoint, report, upserts=len(upserts), removed=len(gone))


def _write_report(endpoint: Endpoint, report: ApplyReport, *, upserts: int, removed: int) -> WriteReport:
    skipped = report.tombstoned_skipped + report.stale_skipped + report.unplaced + report.newer_kept
    out = WriteReport(rows=dict(report.rows), skipped=skipped + report.removals_kept)
    if upserts - skipped > 0:
        out.changed[endpoint.table] = upserts - skipped
    if report.removed.get(endpoint.table) or removed:
        out.removed[endpoint.table] = report.removed.get(endpoint.table, 0)
    return out


def land_whole(
    data_dir: Path,
    endpoint: Endpoint,
    records: Sequence[Mapping[str, Any]],
    *,
    at: datetime,
    merge: bool,
    database_url: SecretStr | str | None = None,
) -> WriteReport:
    """Land records of a whole table with the pull's `WholeLanding`, only when something differs.

    `merge=True`: `records` are some of the table's records (an `updated_since` listing); the changed ones
    replace the rows with their key, the others stay. `merge=False`: `records` are the whole table, and
    stored keys it lacks are removed. No snapshot is added (the inventory history is the pull's).

    `at`: when the listing was read (just before its first request). It is the landing's `loaded_at`, so
    the pull's `PullGuard` keeps the records the change feed landed after it (neither overwritten nor
    removed), and those are not counted as removed.
    """
    fresh = changed(data_dir, endpoint, records)
    listed = {str(record.get(endpoint.key)) for record in records}
    gone = set() if merge else stored_keys(data_dir, endpoint) - listed
    if endpoint.resource in SINGULAR_OF and (fresh or gone):  # the change feed writes this table
        landed = loaded_since(data_dir, endpoint, at)  # kept as stored by the landing's `PullGuard`
        fresh = [record for record in fresh if str(record.get(endpoint.key)) not in landed]
        gone -= landed
    out = WriteReport()
    if not fresh and not gone:
        return out
    spec = dataclasses.replace(endpoint, snapshot_table=None)
    with WholeLanding(data_dir, spec, loaded_at=at, merge=merge, database_url=database_url) as landing:
        landing.add_page(fresh if merge else records)
        report = landing.finish()
    out.rows = {table: report.rows.get(table, 0) for table in spec.tables}
    if fresh:
        out.changed[endpoint.table] = len(fresh)
    if gone:
        out.removed[endpoint.table] = len(gone)
    return out


def tombstoned(
    data_dir: Path, endpoint: Endpoint, ids: Iterable[str], database_url: SecretStr | str | None = None
) -> set[str]:
    """The ids of `ids` that the lake has recorded as deleted (removed by an event or by reconcile)."""
    singular = SINGULAR_OF.get(endpoint.resource)
    if singular is None:
        return set()
    tombstones = open_tombstones(data_dir, database_url)
    try:
        return tombstones.deleted(singular, ids)
    finally:
        tombstones.close()
