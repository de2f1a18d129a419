"""Land a stream of API list pages in the lake, one page at a time (memory: one page plus open days).

Memory does not grow with the number of records: a day's rows are dropped once the day is written,
ids for duplicate detection are kept only for the days still open (a late record for a written day is
checked against that day's stored ids), and what the report keeps per day is a few counters.

Ranges are fetched with the API's own filters (`range_filters`), never by seeking from what the lake
holds: a range of days costs ceil(records in it / page size) requests (+1 where the last page is full or
the list sends no `has_more`), whether the lake is empty or full.

`PartitionedLanding` serves the daily-partitioned resources (orders, invoices, dispatches). It is fed the
pages of ONE newest-first listing of a range of days `[start, end]`, filtered by the server, and

- groups records by day (the resource's date field) and writes each day (parent and child tables in
  one atomic step) as soon as the listing is past it by more than the resource's order slack;
- keeps exactly the records of `[start, end]`: the server's bounds are one step wider than the range
  (whether they are inclusive is undocumented), the rest is filtered here;
- stops early (`add_page` returns False) at the first record older than `start` for strictly ordered
  lists (orders, dispatches: a guard should a server ignore `created_since`); invoices, listed by creation
  rather than by invoice date, are read to the end of the server-bounded listing;
- judges how far the listing has come by each page's oldest day (strictly ordered lists) or median day
  (invoices: a back-dated one in a page does not count as the listing's position);
- if a record turns up for a day already written (ordering looser than the slack: forward-dated invoices),
  it rewrites that day with the record added (unless that day's file already holds its id), once per day
  at the end (or when `LATE_BATCH` late records are buffered), and counts it; the slack then grows to
  that record's lateness (up to `MAX_SLACK_DAYS`), so the account's next forward-dated records find their
  days still open instead of rewriting one day each (at the large scale: 773 of 1,911 day writes before);
- calls `on_day_written(day, {table: rows})` after each day is written, so the caller can report it
  while the listing goes on (between requests, in the time the rate limit leaves free). Days are written
  on the sweep's own thread: a background writer thread was tried and was slower, because
  `pq.write_table` gives up and retakes the GIL many times per file and waits for the busy sweep thread
  each time (1.6 ms per file alone, ~400 ms next to a busy Python thread);
- when the listing ends, removes stored days in the range that got no records, so nothing stale remains.

`start=None` / `end=None` leave that side open: a full pull lands records older than the partitions'
start date or newer than today in their own date folders too (with a warning), so nothing is lost.

`DayMerge` lands records whose days are scattered (invoices created since the last pull, whatever their
invoice date: users back-date and forward-date invoices) into their stored days, replacing by id, one
atomic write per day.

`WholeLanding` streams whole-refresh tables into one file per table (plus, for inventory levels, a
timestamped snapshot). With `merge=True` the pages are the records changed since the last pull
(`updated_since`): they replace the stored rows with the same key (a changed product's variants are all
replaced) and the other stored rows are carried over, streamed, so the table is the complete current state.
Duplicate keys within one sweep (a record listed twice while the account changes) are landed once.

Every landing drops listed records whose id the lake has tombstoned (`lake.tombstones.live`, one SQLite
look-up per page, none before the first deletion): a listing read before a deletion and landed after the
change feed or reconciliation removed the record does not bring it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import SecretStr

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.flatten import CoercionLog, Row, record_date, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import SNAPSHOT_AT, TIMESTAMP, ResourceSpec, table_spec
from orderspace_pipelines.lake.tombstones import live

log = logging.getLogger(__name__)

PREVIEW_ROWS = 5
LATE_BATCH = 2000  # late records (for days already written) buffered before their days are rewritten
# The most a loosely ordered listing's slack grows to when records turn up for days already written: days
# are held open that much longer (memory: that many days of records), a guess that covers invoices
# forward-dated by up to two months.
MAX_SLACK_DAYS = 62
_DATE_FALLBACKS = ("created", "created_at", "invoice_date", "date")


def day_of(spec: ResourceSpec, record: Mapping[str, Any]) -> date | None:
    """The partition day of a record: its date field, else the first usable fallback date field."""
    day = record_date(record.get(spec.date_field))  # type: ignore[arg-type]
    if day is None:
        for name in _DATE_FALLBACKS:
            day = record_date(record.get(name))
            if day is not None:
                break
    return day


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
    filters: dict[str, str] = field(default_factory=dict)  # the server-side filters of the listing(s)
    merged_records: int = 0  # records merged into their stored days by id (`DayMerge`)
    already_covered: int = 0  # records `DayMerge` left alone: their day was re-pulled whole in this run
    changed_records: int = 0  # records of an `updated_since` refresh that replaced stored rows or were new
    tombstoned: int = 0  # records listed but recorded as deleted (`lake.tombstones`): not landed
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


def _guarded(
    data_dir: Path,
    spec: ResourceSpec,
    since: datetime,
    day: date,
    tables: Mapping[str, pa.Table | None],
    database_url: SecretStr | str | None,
) -> dict[str, pa.Table | None]:
    """A pull's tables for `day`, keeping what the change feed applied since the pull started
    (`lake.changes.PullGuard`; the caller holds the day's table locks)."""
    from orderspace_pipelines.lake.changes import PullGuard  # changes imports this module

    return PullGuard(data_dir, spec, since, database_url).guard_day(day, tables)


# The created_since bound is moved this much earlier than the range's first midnight (UTC), so a record
# created on the stroke of midnight is listed whether the server reads "since" as >= or as >.
SINCE_MARGIN = timedelta(seconds=1)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def range_filters(spec: ResourceSpec, start: date | None, end: date | None) -> dict[str, str]:
    """The list's server-side bounds for the days `[start, end]` (None: that side open).

    The reference does not say whether its bounds are inclusive, so each is chosen to be right either way
    and the landing keeps exactly `[start, end]`:

    - orders, dispatches: `created_since` = the first midnight (UTC, explicit `Z`) minus one second, and
      `created_before` = the midnight after `end` (a record at exactly that instant belongs to the next day:
      listed only if "before" is inclusive, then dropped here);
    - invoices (`invoice_date` is a date): `invoice_date_after` = the day before `start`,
      `invoice_date_before` = the day after `end` (exact if they are exclusive, as "after"/"before" read;
      one extra day each side, dropped here, if inclusive).
    """
    filters: dict[str, str] = {}
    if spec.range_filter == "created":
        if start is not None:
            first_midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
            filters["created_since"] = _utc_stamp(first_midnight - SINCE_MARGIN)
        if end is not None:
            after = end + timedelta(days=1)
            filters["created_before"] = _utc_stamp(datetime(after.year, after.month, after.day, tzinfo=UTC))
    elif spec.range_filter == "invoice_date":
        if start is not None:
            filters["invoice_date_after"] = (start - timedelta(days=1)).isoformat()
        if end is not None:
            filters["invoice_date_before"] = (end + timedelta(days=1)).isoformat()
    elif spec.range_filter is not None:
        raise ValueError(f"{spec.resource}: unknown range filter {spec.range_filter!r}")
    return filters


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
        server_bounded: bool = False,
        database_url: SecretStr | str | None = None,
    ) -> None:
        if spec.date_field is None:
            raise ValueError(f"{spec.resource} is not date-partitioned")
        if start is not None and end is not None and start > end:
            raise ValueError(f"empty range: start {start} is after end {end}")
        self.data_dir = Path(data_dir)
        self.database_url = database_url  # where the tombstones are (`lake.tombstones.open_tombstones`)
        self.spec = spec
        self.start = start
        self.end = end
        self.loaded_at = loaded_at
        self.partitions_start = partitions_start
        self.partitions_end = partitions_end
        self.logger = logger or log
        self.progress_every = progress_every
        self.on_day_written = on_day_written
        # The pages come from a listing the server bounds to the range (`range_filters`): a loosely ordered
        # list is then read to its end rather than stopped after a page of older records.
        self.server_bounded = server_bounded
        self.report = LandingReport(spec.resource, rows=dict.fromkeys(_tables_of(spec), 0))
        self._open: dict[date, dict[str, list[Row]]] = {}
        self._open_ids: dict[date, set[Any]] = {}  # ids of the open days only (dropped when written)
        self._written: set[date] = set()
        self._low_water: date | None = None
        self._slack = timedelta(days=spec.order_slack_days)  # grows with late records (see `land`)
        self._finished = False

    def _day_of(self, record: Mapping[str, Any]) -> date | None:
        return day_of(self.spec, record)

    def plan(self, records: Sequence[Mapping[str, Any]]) -> PagePlan:
        """Sort a page's records into days and decide whether the sweep needs another page.

        Cheap (dates only), so a caller can ask for the next page before landing this one.
        """
        started = time.perf_counter()
        records, dropped = live(self.data_dir, self.spec.singular, records, self.spec.key, self.database_url)
        self.report.tombstoned += dropped
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
        elif self.server_bounded:
            plan.wants_more = True  # the server ends the listing; its order says nothing about the dates
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
            if day in self._written and self._low_water is not None:
                self._widen_slack(day - self._low_water)
            self._add(day, record)
        page_water = self._page_water(sorted(day for day, _ in plan.dated))
        if page_water is not None and (self._low_water is None or page_water < self._low_water):
            self._low_water = page_water
        if self._low_water is not None:
            slack = self._slack
            # Days written already that got late records are rewritten once, at the end (or when their
            # buffered records grow past LATE_BATCH), not once per late record.
            for day in [d for d in self._open if d - slack > self._low_water and d not in self._written]:
                self._flush(day)
            if self._late_records() > LATE_BATCH:
                for day in [d for d in self._open if d in self._written]:
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

    def _page_water(self, days: list[date]) -> date | None:
        """How far back the listing has come, judged by one page's (sorted) days.

        Strictly ordered lists: the page's oldest day. Loosely ordered ones (invoices, listed by creation):
        the page's median day, so that one back-dated record (weeks before its neighbours) does not make
        the landing write out, too early, every day between it and the listing's real position.
        """
        if not days:
            return None
        return days[0] if self.spec.order_slack_days == 0 else days[(len(days) - 1) // 2]

    def _widen_slack(self, lateness: timedelta) -> None:
        """A record came for a day the listing had passed by `lateness`: hold days open that long (plus the
        resource's own slack, as the listing's position is judged by page) from now on."""
        base = self.spec.order_slack_days
        if base > 0:
            wanted = lateness + timedelta(days=base)
            self._slack = min(max(self._slack, wanted), timedelta(days=MAX_SLACK_DAYS))

    def _late_records(self) -> int:
        return sum(len(self._open[day][self.spec.table]) for day in self._open if day in self._written)

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
        # A late day is read, merged and rewritten: under the lake's table locks (see `storage.table_locks`).
        with storage.table_locks(self.data_dir, _tables_of(self.spec)):
            self._flush_locked(day)

    def _flush_locked(self, day: date) -> None:
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
        tables: dict[str, pa.Table] = {}
        for table, rows in buffer.items():
            data = rows_to_arrow(
                table_spec(table), rows, loaded_at=self.loaded_at, coercions=self.report.coercions
            )
            old = old_tables.get(table)
            if old is not None:
                schema = storage.union_schema(data.schema, old.schema)
                data = pa.concat_tables([storage.conform(old, schema), storage.conform(data, schema)])
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
        guarded = _guarded(self.data_dir, self.spec, self.loaded_at, day, tables, self.database_url)
        stored = storage.write_partition(self.data_dir, day, guarded)
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

    def _empty_day(self, day: date) -> None:
        """Remove a day of the range the listing had no record for (keeping records the change feed
        applied since the pull started: `_guarded`)."""
        tables = _tables_of(self.spec)
        with storage.table_locks(self.data_dir, tables):
            kept = _guarded(
                self.data_dir, self.spec, self.loaded_at, day, dict.fromkeys(tables), self.database_url
            )
            if any(data is not None and data.num_rows for data in kept.values()):
                self.report.day_rows[day] = storage.write_partition(self.data_dir, day, kept)
                return
            for table in tables:
                if storage.remove_partition(self.data_dir, table, day):
                    if day not in self.report.days_removed:
                        self.report.days_removed.append(day)
                    self.report.day_rows.setdefault(day, {})[table] = 0

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
                    self._empty_day(day)
        self.report.days_written.sort()
        self.report.days_removed.sort()
        self._finished = True
        self.report.processing_seconds += time.perf_counter() - started
        return self.report


def _not_in(column: pa.ChunkedArray, keys: set[Any]) -> pa.ChunkedArray:
    """A mask: True where `column`'s value is not one of `keys` (nulls are kept)."""
    values = pa.array(sorted(keys), type=column.type) if keys else pa.array([], type=column.type)
    return pc.invert(pc.fill_null(pc.is_in(column, value_set=values), False))


def _key_column(spec: ResourceSpec, table: str) -> str:
    """The column of `table` that holds the parent record's key (its own key for the parent table)."""
    return spec.key if table == spec.table else (table_spec(table).parent_key or "parent_id")


class DayMerge:
    """Merge records into their stored days, replacing by id (parent rows and their child rows).

    For records that belong to scattered days (invoices created since the last pull, whatever their invoice
    date). Each touched day is rewritten in one atomic step (temporary files, fsync, `os.replace`) with its
    stored rows minus the merged ids plus the merged records. Days for which `covered(day)` is true are
    skipped: the same run re-pulled them whole. Memory: one page.
    """

    def __init__(
        self,
        data_dir: Path,
        spec: ResourceSpec,
        *,
        loaded_at: datetime,
        report: LandingReport | None = None,
        covered: Callable[[date], bool] | None = None,
        partitions_start: date | None = None,
        partitions_end: date | None = None,
        logger: logging.Logger | None = None,
        on_day_written: Callable[[date, dict[str, int]], None] | None = None,
        database_url: SecretStr | str | None = None,
    ) -> None:
        if spec.date_field is None:
            raise ValueError(f"{spec.resource} is not date-partitioned")
        self.data_dir = Path(data_dir)
        self.database_url = database_url  # where the tombstones are (`lake.tombstones.open_tombstones`)
        self.spec = spec
        self.loaded_at = loaded_at
        self.report = report or LandingReport(spec.resource, rows=dict.fromkeys(_tables_of(spec), 0))
        self.covered = covered or (lambda _day: False)
        self.partitions_start = partitions_start
        self.partitions_end = partitions_end
        self.logger = logger or log
        self.on_day_written = on_day_written

    def add_page(self, records: Sequence[Mapping[str, Any]]) -> bool:
        """Merge one page's records into their days; always True (the listing's own end stops it)."""
        started = time.perf_counter()
        report = self.report
        report.pages += 1
        records, dropped = live(self.data_dir, self.spec.singular, records, self.spec.key, self.database_url)
        report.tombstoned += dropped
        by_day: dict[date, dict[Any, Mapping[str, Any]]] = {}
        for record in records:
            report.records += 1
            if not isinstance(record, Mapping):
                report.undated += 1
                self.logger.warning(
                    "%s: skipped a list entry that is not an object: %r", self.spec.resource, record
                )
                continue
            day = day_of(self.spec, record)
            if day is None:
                report.undated += 1
                self.logger.warning(
                    "%s %s has no usable %s; not landed",
                    self.spec.resource,
                    record.get("id"),
                    self.spec.date_field,
                )
                continue
            if self.covered(day):
                report.already_covered += 1
                continue
            records_of_day = by_day.setdefault(day, {})
            if record.get("id") in records_of_day:
                report.duplicates += 1
                continue
            records_of_day[record.get("id")] = record
        for day in sorted(by_day):
            self._merge(day, list(by_day[day].values()))
        report.processing_seconds += time.perf_counter() - started
        return True

    def _merge(self, day: date, records: list[Mapping[str, Any]]) -> None:
        # Read-modify-write under the lake's table locks: a change-feed apply never interleaves.
        with storage.table_locks(self.data_dir, _tables_of(self.spec)):
            self._merge_locked(day, records)

    def _merge_locked(self, day: date, records: list[Mapping[str, Any]]) -> None:
        spec = self.spec
        buffer: dict[str, list[Row]] = {table: [] for table in _tables_of(spec)}
        for record in records:
            parent, children = split_record(spec, record)
            buffer[spec.table].append(parent)
            for table, rows in children.items():
                buffer[table].extend(rows)
        ids = {record.get("id") for record in records} - {None}
        tables: dict[str, pa.Table | None] = {}
        replaced = 0
        for table, rows in buffer.items():
            data = rows_to_arrow(
                table_spec(table), rows, loaded_at=self.loaded_at, coercions=self.report.coercions
            )
            old = storage.read_partition(self.data_dir, table, day)
            key = _key_column(spec, table)
            if old is not None and key in old.column_names:
                kept = old.filter(_not_in(old.column(key), ids))
                if table == spec.table:
                    replaced = old.num_rows - kept.num_rows
                schema = storage.union_schema(data.schema, kept.schema)
                data = pa.concat_tables([storage.conform(data, schema), storage.conform(kept, schema)])
            elif old is not None:
                schema = storage.union_schema(data.schema, old.schema)
                data = pa.concat_tables([storage.conform(data, schema), storage.conform(old, schema)])
            tables[table] = data
            self.report._note_schema(table, data.schema)
            self.report._note_preview(table, rows)
            self.report.rows[table] = self.report.rows.get(table, 0) + len(rows)
        stored = storage.write_partition(
            self.data_dir, day, _guarded(self.data_dir, spec, self.loaded_at, day, tables, self.database_url)
        )
        self.report.merged_records += len(records)
        self.report.day_rows[day] = stored
        if day not in self.report.days_written:
            self.report.days_written.append(day)
        outside = (self.partitions_start is not None and day < self.partitions_start) or (
            self.partitions_end is not None and day > self.partitions_end
        )
        if outside:
            self.report.outside_partitions += len(records)
        self.logger.info(
            "%s: merged %d record(s) into %s by id (%d replaced)%s",
            spec.resource,
            len(records),
            day,
            replaced,
            " (outside the partitions)" if outside else "",
        )
        if self.on_day_written is not None:
            called = time.perf_counter()
            self.on_day_written(day, stored)
            self.report.processing_seconds -= time.perf_counter() - called


class WholeLanding:
    """Stream a whole-refresh resource into one file per table, page by page (see the module docstring).

    `merge=False`: the pages are the whole list and replace the stored tables. `merge=True`: the pages are
    the records changed since the last pull; stored rows with other keys are carried over. A resource with a
    `snapshot_table` (inventory levels) also gets a snapshot of the resulting table at `snapshot_at`. Every
    file is swapped in at `finish`, all at once; until then the old ones are untouched.
    """

    def __init__(
        self,
        data_dir: Path,
        spec: ResourceSpec,
        *,
        loaded_at: datetime,
        snapshot_at: datetime | None = None,
        merge: bool = False,
        logger: logging.Logger | None = None,
        database_url: SecretStr | str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url  # where the tombstones are (`lake.tombstones.open_tombstones`)
        self.spec = spec
        self.loaded_at = loaded_at
        self.snapshot_at = snapshot_at
        self.merge = merge
        self.logger = logger or log
        self.report = LandingReport(spec.resource, rows=dict.fromkeys(_tables_of(spec), 0))
        self._seen: set[Any] = set()
        self._writers: dict[str, storage.StreamingFileWriter] = {
            table: storage.StreamingFileWriter(
                storage.whole_file(self.data_dir, table), table_spec(table).schema
            )
            for table in _tables_of(spec)
        }
        self._snapshot: storage.StreamingFileWriter | None = None
        if spec.snapshot_table is not None:
            if snapshot_at is None:
                raise ValueError(f"{spec.resource} keeps snapshots: it needs snapshot_at")
            self._snapshot = storage.StreamingFileWriter(
                storage.snapshot_file(self.data_dir, snapshot_at), table_spec(spec.snapshot_table).schema
            )

    def __enter__(self) -> WholeLanding:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def _write_snapshot(self, data: pa.Table) -> None:
        if self._snapshot is not None and self.snapshot_at is not None:
            stamp = pa.repeat(pa.scalar(self.snapshot_at, type=TIMESTAMP), data.num_rows)
            self._snapshot.write(data.append_column(pa.field(SNAPSHOT_AT, TIMESTAMP), stamp))

    def add_page(self, records: Iterable[Mapping[str, Any]]) -> bool:
        started = time.perf_counter()
        report = self.report
        report.pages += 1
        key = self.spec.key
        records, dropped = live(self.data_dir, self.spec.singular, list(records), key, self.database_url)
        report.tombstoned += dropped
        buffers: dict[str, list[Row]] = {table: [] for table in self._writers}
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
            buffers[self.spec.table].append(parent)
            for table, rows in children.items():
                buffers[table].extend(rows)
        for table, rows in buffers.items():
            data = rows_to_arrow(
                table_spec(table), rows, loaded_at=self.loaded_at, coercions=report.coercions
            )
            self._writers[table].write(data)
            if table == self.spec.table:
                self._write_snapshot(data)
            report._note_schema(table, data.schema)
            report._note_preview(table, rows)
        report.changed_records = len(self._seen)
        report.processing_seconds += time.perf_counter() - started
        return True

    def _change_feed_ids(self) -> tuple[set[Any], set[Any]]:
        """(stored records to keep as stored, listed records to drop): what the change feed applied since
        this pull started (`lake.changes.PullGuard.whole_ids`). The pull's own rows of both are removed."""
        from orderspace_pipelines.lake.changes import PullGuard  # changes imports this module

        guard = PullGuard(self.data_dir, self.spec, self.loaded_at, self.database_url)
        keep, drop = guard.whole_ids({str(key) for key in self._seen if key is not None})
        if keep or drop:
            for table, writer in self._writers.items():
                writer.drop_rows(_key_column(self.spec, table), keep | drop)
            if self._snapshot is not None:  # the snapshot is the resulting table: the kept rows follow
                self._snapshot.drop_rows(self.spec.key, keep | drop)
            self.logger.info(
                "%s: kept %d record(s) changed by events since the pull started, dropped %d deleted",
                self.spec.resource,
                len(keep),
                len(drop),
            )
        return keep, drop

    def _carry_over(self, keep: set[Any]) -> None:
        """Stream into the new files the stored rows whose key was not in this refresh (`merge=True`) or
        is in `keep` (records the change feed changed since the pull started)."""
        replaced = self._seen - keep if self.merge else None
        for table, writer in self._writers.items():
            key = _key_column(self.spec, table)
            for batch in storage.iter_batches(storage.whole_file(self.data_dir, table)):
                if key not in batch.column_names:
                    kept = batch if self.merge else batch.slice(0, 0)
                elif replaced is not None:
                    kept = batch.filter(_not_in(batch.column(key), replaced))
                else:
                    kept = batch.filter(pc.invert(_not_in(batch.column(key), keep)))
                if kept.num_rows:
                    writer.write(kept)
                    if table == self.spec.table:
                        self._write_snapshot(kept)

    def finish(self) -> LandingReport:
        # The carry-over reads the stored rows: hold the lake's table locks until the new files are in place.
        with storage.table_locks(self.data_dir, _tables_of(self.spec)):
            return self._finish_locked()

    def _finish_locked(self) -> LandingReport:
        started = time.perf_counter()
        keep, _ = self._change_feed_ids()
        if self.merge or keep:
            self._carry_over(keep)
        writers = dict(self._writers)
        if self._snapshot is not None and self.spec.snapshot_table is not None:
            writers[self.spec.snapshot_table] = self._snapshot
        written = storage.commit_streams(writers)
        self.report.rows = {table: written[table] for table in self._writers}
        if self.spec.snapshot_table is not None:
            self.report.rows[self.spec.snapshot_table] = written.get(self.spec.snapshot_table, 0)
        self.report.processing_seconds += time.perf_counter() - started
        return self.report

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
        if self._snapshot is not None:
            self._snapshot.abort()
