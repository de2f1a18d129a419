"""Land a stream of API list pages in the lake, one page at a time (memory: one page plus open days).

Memory does not grow with the number of records: a day's rows are dropped once the day is written,
ids for duplicate detection are kept only for the days still open (a late record for a written day is
checked against that day's stored ids), and what the report keeps per day is a few counters.

`PartitionedLanding` serves the daily-partitioned resources (orders, invoices, dispatches). It is fed the
pages of ONE newest-first sweep over a range of days `[start, end]` and

- seeks: `seek_id()` is the last-listed id of the nearest stored day after `end` (+ the resource's
  order slack), for `starting_after`, so re-pulling an old day does not page through newer history;
- groups records by day (the resource's date field) and writes each day (parent and child tables in
  one atomic step) as soon as the sweep is past it by more than the resource's order slack;
- stops (`add_page` returns False) once records are older than `start`: at the first such record for
  strictly ordered resources, after a whole page of them for loosely ordered ones (invoices);
- if a record turns up for a day already written in this sweep (ordering looser than the slack), it
  rewrites that day with the record added (unless that day's file already holds its id), and counts it;
- calls `on_day_written(day, {table: rows})` after each day is written, so the caller can report it
  while the sweep goes on (between requests, in the time the rate limit leaves free). Days are written
  on the sweep's own thread: a background writer thread was tried and was slower, because
  `pq.write_table` gives up and retakes the GIL many times per file and waits for the busy sweep thread
  each time (1.6 ms per file alone, ~400 ms next to a busy Python thread);
- when the sweep ends, removes stored days in the range that got no records, so nothing stale remains.

`start=None` / `end=None` leave that side open: a full pull lands records older than the partitions'
start date or newer than today in their own date folders too (with a warning), so nothing is lost.

`WholeLanding` streams whole-refresh tables (and inventory snapshots) into one file per table.
Duplicate ids within one sweep (a record listed twice while the account changes) are landed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.flatten import CoercionLog, Row, record_date, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import INVENTORY_SNAPSHOTS, SNAPSHOT_AT, ResourceSpec, table_spec

log = logging.getLogger(__name__)

PREVIEW_ROWS = 5
_DATE_FALLBACKS = ("created", "created_at", "invoice_date", "date")


@dataclass
class LandingReport:
    """What one landing wrote: for the asset's metadata and for tests."""

    resource: str
    rows: dict[str, int] = field(default_factory=dict)  # rows written per table
    pages: int = 0
    records: int = 0
    days_written: list[date] = field(default_factory=list)
    days_removed: list[date] = field(default_factory=list)
    day_rows: dict[date, dict[str, int]] = field(default_factory=dict)  # rows now stored per day and table
    skipped_newer: int = 0  # records after `end` (the sweep passed them on its way)
    skipped_older: int = 0  # records before `start` on the page where the sweep stopped
    undated: int = 0  # records without a usable date: not landed, warned about
    duplicates: int = 0
    late_rewrites: int = 0
    outside_partitions: int = 0  # landed, but older than the start date / newer than today
    seek_from: str | None = None
    schemas: dict[str, pa.Schema] = field(default_factory=dict)
    preview: dict[str, list[Row]] = field(default_factory=dict)
    coercions: CoercionLog = field(default_factory=CoercionLog)
    # Seconds spent landing (sorting, flattening, Arrow, Parquet writes), not waiting for pages and not
    # in the caller's `on_day_written`: for throughput figures.
    processing_seconds: float = 0.0

    def _note_schema(self, table: str, schema: pa.Schema) -> None:
        known = self.schemas.get(table)
        if known is None:
            self.schemas[table] = schema
            return
        names = set(known.names)
        extra = [schema_field for schema_field in schema if schema_field.name not in names]
        if extra:
            self.schemas[table] = pa.schema([*known, *extra])

    def _note_preview(self, table: str, rows: Iterable[Row]) -> None:
        preview = self.preview.setdefault(table, [])
        for row in rows:
            if len(preview) >= PREVIEW_ROWS:
                return
            preview.append(row)


def _tables_of(spec: ResourceSpec) -> list[str]:
    return [spec.table, *(child.table for child in spec.children)]


def seek_anchor(data_dir: Path, spec: ResourceSpec, end: date | None) -> str | None:
    """`starting_after` for a sweep ending at `end`: the last-listed id of the nearest stored day after it."""
    if end is None:
        return None
    threshold = end + timedelta(days=spec.order_slack_days + 1)
    for day in storage.stored_days(data_dir, spec.table):
        if day >= threshold:
            anchor = storage.last_listed_id(data_dir, spec.table, day)
            if anchor:
                return anchor
    return None


@dataclass
class PagePlan:
    """One page sorted out before it is landed: which records go to which day, and whether to go on."""

    dated: list[tuple[date, Mapping[str, Any]]]
    wants_more: bool  # False once the sweep has passed `start`: ask the API for no further page
    records: int = 0
    undated: int = 0
    skipped_newer: int = 0
    skipped_older: int = 0


class PartitionedLanding:
    """One newest-first sweep over `[start, end]` landed day by day (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        spec: ResourceSpec,
        *,
        start: date | None,
        end: date | None,
        loaded_at: datetime,
        partitions_start: date | None = None,
        partitions_end: date | None = None,
        logger: logging.Logger | None = None,
        progress_every: int = 25,
        on_day_written: Callable[[date, dict[str, int]], None] | None = None,
    ) -> None:
        if spec.date_field is None:
            raise ValueError(f"{spec.resource} is not date-partitioned")
        if start is not None and end is not None and start > end:
            raise ValueError(f"empty range: start {start} is after end {end}")
        self.data_dir = Path(data_dir)
        self.spec = spec
        self.start = start
        self.end = end
        self.loaded_at = loaded_at
        self.partitions_start = partitions_start
        self.partitions_end = partitions_end
        self.logger = logger or log
        self.progress_every = progress_every
        self.on_day_written = on_day_written
        self.report = LandingReport(spec.resource, rows=dict.fromkeys(_tables_of(spec), 0))
        self._open: dict[date, dict[str, list[Row]]] = {}
        self._open_ids: dict[date, set[Any]] = {}  # ids of the open days only (dropped when written)
        self._written: set[date] = set()
        self._low_water: date | None = None
        self._finished = False

    def seek_id(self) -> str | None:
        self.report.seek_from = seek_anchor(self.data_dir, self.spec, self.end)
        return self.report.seek_from

    def _day_of(self, record: Mapping[str, Any]) -> date | None:
        day = record_date(record.get(self.spec.date_field))  # type: ignore[arg-type]
        if day is None:
            for name in _DATE_FALLBACKS:
                day = record_date(record.get(name))
                if day is not None:
                    break
        return day

    def plan(self, records: Sequence[Mapping[str, Any]]) -> PagePlan:
        """Sort a page's records into days and decide whether the sweep needs another page.

        Cheap (dates only), so a caller can ask for the next page before landing this one.
        """
        started = time.perf_counter()
        plan = PagePlan(dated=[], wants_more=True)
        page_all_older = True
        reached_older = False
        for record in records:
            plan.records += 1
            if not isinstance(record, Mapping):
                plan.undated += 1
                self.logger.warning(
                    "%s: skipped a list entry that is not an object: %r", self.spec.resource, record
                )
                continue
            day = self._day_of(record)
            if day is None:
                plan.undated += 1
                self.logger.warning(
                    "%s %s has no usable %s; not landed",
                    self.spec.resource,
                    record.get("id"),
                    self.spec.date_field,
                )
                continue
            if self.start is not None and day < self.start:
                plan.skipped_older += 1
                reached_older = True
                continue
            page_all_older = False
            if self.end is not None and day > self.end:
                plan.skipped_newer += 1
                continue
            plan.dated.append((day, record))
        if self.spec.order_slack_days == 0:
            plan.wants_more = not reached_older
        else:
            plan.wants_more = not (plan.records > 0 and page_all_older)
        self.report.processing_seconds += time.perf_counter() - started
        return plan

    def add_page(self, records: Sequence[Mapping[str, Any]]) -> bool:
        """Land one page; False when the sweep has passed `start` and should stop asking for pages."""
        return self.land(self.plan(records))

    def land(self, plan: PagePlan) -> bool:
        """Land a planned page (see `plan`); returns `plan.wants_more`."""
        started = time.perf_counter()
        report = self.report
        report.pages += 1
        report.records += plan.records
        report.undated += plan.undated
        report.skipped_newer += plan.skipped_newer
        report.skipped_older += plan.skipped_older
        for day, record in plan.dated:
            self._add(day, record)
            if self._low_water is None or day < self._low_water:
                self._low_water = day
        if self._low_water is not None:
            slack = timedelta(days=self.spec.order_slack_days)
            for day in [d for d in self._open if d - slack > self._low_water]:
                self._flush(day)
        if report.pages % self.progress_every == 0:
            self.logger.info(
                "%s: %d pages, %d records, now at %s",
                self.spec.resource,
                report.pages,
                report.records,
                self._low_water,
            )
        report.processing_seconds += time.perf_counter() - started
        return plan.wants_more

    def _add(self, day: date, record: Mapping[str, Any]) -> None:
        ids = self._open_ids.setdefault(day, set())
        record_id = record.get("id")
        if record_id is not None:
            if record_id in ids:
                self.report.duplicates += 1
                return
            ids.add(record_id)
        buffer = self._open.setdefault(day, {table: [] for table in _tables_of(self.spec)})
        parent, children = split_record(self.spec, record)
        buffer[self.spec.table].append(parent)
        for table, rows in children.items():
            buffer[table].extend(rows)

    def _drop_stored_duplicates(self, day: date, buffer: dict[str, list[Row]], old_ids: set[Any]) -> None:
        """Remove from a late buffer the records (and their lines) whose id the day's file already holds."""
        parent_rows = buffer[self.spec.table]
        repeated = {row.get("id") for row in parent_rows if row.get("id") in old_ids}
        if not repeated:
            return
        self.report.duplicates += sum(1 for row in parent_rows if row.get("id") in repeated)
        buffer[self.spec.table] = [row for row in parent_rows if row.get("id") not in repeated]
        for child in self.spec.children:
            parent_key = table_spec(child.table).parent_key or "parent_id"
            buffer[child.table] = [row for row in buffer[child.table] if row.get(parent_key) not in repeated]

    def _flush(self, day: date) -> None:
        buffer = self._open.pop(day)
        self._open_ids.pop(day, None)
        late = day in self._written
        old_tables: dict[str, pa.Table | None] = {}
        if late:
            old_tables = {table: storage.read_partition(self.data_dir, table, day) for table in buffer}
            old_parent = old_tables.get(self.spec.table)
            if old_parent is not None and "id" in old_parent.column_names:
                self._drop_stored_duplicates(day, buffer, set(old_parent.column("id").to_pylist()))
            if not buffer[self.spec.table]:
                return  # every late record was already stored: nothing to rewrite
        tables: dict[str, pa.Table | None] = {}
        for table, rows in buffer.items():
            data = rows_to_arrow(
                table_spec(table), rows, loaded_at=self.loaded_at, coercions=self.report.coercions
            )
            old = old_tables.get(table)
            if old is not None:
                data = pa.concat_tables([old, data], promote_options="default")
            tables[table] = data
        if late:
            self.report.late_rewrites += 1
            self.logger.warning(
                "%s: a record for %s came after the sweep had written that day; rewrote it",
                self.spec.resource,
                day,
            )
        else:
            self._note_outside(day, len(buffer[self.spec.table]))
        stored = storage.write_partition(self.data_dir, day, tables)
        self.report.day_rows[day] = stored
        for table, data in tables.items():
            self.report._note_schema(table, data.schema)
            self.report._note_preview(table, buffer[table])
            self.report.rows[table] += len(buffer[table])
        if not late:
            self._written.add(day)
            self.report.days_written.append(day)
        if self.on_day_written is not None:  # time spent in the caller's callback is not ours
            called = time.perf_counter()
            self.on_day_written(day, stored)
            self.report.processing_seconds -= time.perf_counter() - called

    def _note_outside(self, day: date, records: int) -> None:
        outside = (self.partitions_start is not None and day < self.partitions_start) or (
            self.partitions_end is not None and day > self.partitions_end
        )
        if outside:
            self.report.outside_partitions += records
            self.logger.warning(
                "%s: %d record(s) dated %s, outside the partitions (%s..%s); landed in their date folder",
                self.spec.resource,
                records,
                day,
                self.partitions_start,
                self.partitions_end,
            )

    def finish(self) -> LandingReport:
        """Write the days still open and remove stored days of the range that had no records."""
        if self._finished:
            return self.report
        started = time.perf_counter()
        for day in sorted(self._open, reverse=True):
            self._flush(day)
        for table in _tables_of(self.spec):
            for day in storage.stored_days(self.data_dir, table):
                in_range = (self.start is None or day >= self.start) and (self.end is None or day <= self.end)
                if in_range and day not in self._written:
                    removed = storage.remove_partition(self.data_dir, table, day)
                    if removed and day not in self.report.days_removed:
                        self.report.days_removed.append(day)
                    if removed:
                        self.report.day_rows.setdefault(day, {})[table] = 0
        self.report.days_written.sort()
        self.report.days_removed.sort()
        self._finished = True
        self.report.processing_seconds += time.perf_counter() - started
        return self.report


class WholeLanding:
    """Stream a whole-refresh resource (or one inventory snapshot) into one file per table, page by page."""

    def __init__(
        self,
        data_dir: Path,
        spec: ResourceSpec,
        *,
        loaded_at: datetime,
        snapshot_at: datetime | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.spec = spec
        self.loaded_at = loaded_at
        self.snapshot_at = snapshot_at
        self.logger = logger or log
        self.report = LandingReport(spec.resource, rows=dict.fromkeys(_tables_of(spec), 0))
        self._seen: set[Any] = set()
        self._writers: dict[str, storage.StreamingFileWriter] = {}
        for table in _tables_of(spec):
            if spec.table == INVENTORY_SNAPSHOTS:
                if snapshot_at is None:
                    raise ValueError("an inventory snapshot needs snapshot_at")
                path = storage.snapshot_file(self.data_dir, snapshot_at)
            else:
                path = storage.whole_file(self.data_dir, table)
            self._writers[table] = storage.StreamingFileWriter(path)

    def __enter__(self) -> WholeLanding:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def add_page(self, records: Iterable[Mapping[str, Any]]) -> bool:
        started = time.perf_counter()
        report = self.report
        report.pages += 1
        buffers: dict[str, list[Row]] = {table: [] for table in self._writers}
        key = "sku" if self.spec.table == INVENTORY_SNAPSHOTS else "id"
        for record in records:
            report.records += 1
            if not isinstance(record, Mapping):
                self.logger.warning(
                    "%s: skipped a list entry that is not an object: %r", self.spec.resource, record
                )
                continue
            record_key = record.get(key)
            if record_key is not None:
                if record_key in self._seen:
                    report.duplicates += 1
                    continue
                self._seen.add(record_key)
            parent, children = split_record(self.spec, record)
            if self.snapshot_at is not None:
                parent[SNAPSHOT_AT] = self.snapshot_at
            buffers[self.spec.table].append(parent)
            for table, rows in children.items():
                buffers[table].extend(rows)
        for table, rows in buffers.items():
            data = rows_to_arrow(
                table_spec(table), rows, loaded_at=self.loaded_at, coercions=report.coercions
            )
            self._writers[table].write(data)
            report._note_schema(table, data.schema)
            report._note_preview(table, rows)
        report.processing_seconds += time.perf_counter() - started
        return True

    def finish(self) -> LandingReport:
        started = time.perf_counter()
        written = storage.commit_streams(self._writers)
        self.report.rows = written
        self.report.processing_seconds += time.perf_counter() - started
        return self.report

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
