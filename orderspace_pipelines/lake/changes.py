"""Apply stored webhook events to the Parquet tables, at no API cost (the events carry the records).

Ordering rules (also in the README's change-feed section):

1. Events are applied in receipt order (the store's `seq`), a batch at a time.
2. A delete is final: every deleted (resource, id) is kept as a tombstone (`lake.tombstones`: the file
   `<data dir>/state/tombstones.sqlite`, or Postgres when `ORDERSPACE_DATABASE_URL` is set), and any
   created/updated event for it, in this batch or a later one, is ignored. Orderspace never reuses ids, so
   nothing legitimate is lost.
3. Within one batch only the last surviving event per (resource, id) is applied.
4. Where the record carries a field that only grows, an older state never replaces a newer one:
   - order lines: `dispatched`, `invoiced` and `paid` quantities only grow; an order event whose line has
     less of any than the stored (or an earlier received) state is stale and skipped;
   - invoices: payments only accumulate and `paid` never goes back to false: an invoice event with fewer
     payments than stored, or unpaid where stored is paid, is stale;
   - any record with an `updated_at`/`updated` timestamp: a smaller one is stale.
   Customers, products, dispatches and inventory levels carry no such field in the reference's payloads:
   for them receipt order is the only guide (a late older event does overwrite a newer stored one).
5. A `payment.created` appends its payment to the invoice's `invoice_payments` (once: a payment with the
   same reference, amount and date is not added twice) and sets `paid` when the payments reach the gross
   total (a guess: the payload says nothing about the invoice's paid state). A payment for an invoice the
   lake does not hold is skipped and counted (the invoice's own event or the pull brings it with its
   payments).

Rows from an event get `_loaded_at` = the event's receipt time, so applying the same events twice gives the
same files. Each touched partition (or whole table) is rewritten atomically through `lake.storage`, under
the lake's table lock (`storage.table_locks`) held across read-modify-write, the same lock the pull takes:
an apply and a pull never overwrite each other's work. Events are marked applied only after the writes and
tombstones are durable; a crash in between means they are applied again, which changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import SecretStr

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.flatten import CoercionLog, Row, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import INVENTORY_LEVELS, RESOURCES, ResourceSpec, table_spec
from orderspace_pipelines.lake.sweep import day_of
from orderspace_pipelines.lake.tombstones import Tombstones, open_tombstones

log = logging.getLogger(__name__)

APPLIER_LOCK = "_change_feed"  # the lake lock one applier holds for its whole run

# Webhook resource -> the lake's resource spec (the list endpoint's name).
SPEC_OF: dict[str, str] = {
    "order": "orders",
    "invoice": "invoices",
    "dispatch": "dispatches",
    "customer": "customers",
    "product": "products",
    "inventory_level": "inventory_levels",
}
_MONOTONIC_LINE_FIELDS = ("dispatched", "invoiced", "paid")
_UPDATED_FIELDS = ("updated_at", "updated")


class EventLike(Protocol):
    """What the applier needs of a stored event (`webhooks.store.StoredEvent`)."""

    seq: int
    event_type: str
    resource: str
    record_id: str | None
    record: Any
    known: bool
    received_at: datetime


class PendingStore(Protocol):
    def pending(self, limit: int, resources: Iterable[str] | None = None) -> Sequence[Any]: ...

    def mark_applied(self, seqs: Iterable[int], *, applied_at: datetime | None = None) -> int: ...


@dataclass
class ApplyReport:
    """What one batch did: for the run's metadata and for tests."""

    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # rows written (new/replaced) per table
    removed: dict[str, int] = field(default_factory=dict)  # records deleted per parent table
    tables_touched: set[str] = field(default_factory=set)
    tombstoned_skipped: int = 0  # created/updated events for a deleted id
    stale_skipped: int = 0  # events older than the stored state (a monotonic field went back)
    superseded: int = 0  # events replaced by a later one for the same id in the batch
    unplaced: int = 0  # records without a usable partition date, payments for unknown invoices
    unknown: int = 0  # event types the applier does not know
    last_received_at: datetime | None = None
    seqs: list[int] = field(default_factory=list)
    coercions: CoercionLog = field(default_factory=CoercionLog)

    def _add_rows(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + count
        self.tables_touched.add(table)


# --- pure rules -----------------------------------------------------------------------------------------


def _is_delete(event: EventLike) -> bool:
    return event.event_type.endswith(".deleted") or (
        isinstance(event.record, Mapping) and event.record.get("deleted") is True
    )


def _updated_stamp(record: Mapping[str, Any]) -> str | None:
    for name in _UPDATED_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _line_quantities(lines: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not isinstance(lines, list):
        return out
    for line in lines:
        if isinstance(line, Mapping) and line.get("id") is not None:
            out[str(line["id"])] = {
                name: float(line[name])
                for name in _MONOTONIC_LINE_FIELDS
                if isinstance(line.get(name), int | float) and not isinstance(line.get(name), bool)
            }
    return out


def is_older(resource: str, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when `new` is provably an older state than `old` (a field that only grows went back)."""
    new_stamp, old_stamp = _updated_stamp(new), _updated_stamp(old)
    if new_stamp is not None and old_stamp is not None and new_stamp != old_stamp:
        return new_stamp < old_stamp  # ISO 8601 stamps of one source compare as text
    if resource == "order":
        old_lines = _line_quantities(old.get("order_lines"))
        for line_id, quantities in _line_quantities(new.get("order_lines")).items():
            stored = old_lines.get(line_id, {})
            if any(quantities.get(name, 0.0) < value for name, value in stored.items()):
                return True
    if resource == "invoice":
        new_payments, old_payments = new.get("payments"), old.get("payments")
        if (
            isinstance(new_payments, list)
            and isinstance(old_payments, list)
            and len(new_payments) < len(old_payments)
        ):
            return True
        if old.get("paid") is True and new.get("paid") is False:
            return True
    return False


# --- reading what is stored ----------------------------------------------------------------------------


def _locate(data_dir: Path, table: str, ids: Sequence[str]) -> dict[str, date]:
    """The stored partition day of each id found in a date-partitioned table (one DuckDB scan)."""
    if not ids or not storage.stored_days(data_dir, table):
        return {}
    glob = str(storage.table_dir(data_dir, table) / f"{storage_partition_prefix()}*" / storage.PART_FILE)
    found: dict[str, date] = {}
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE wanted (id VARCHAR)")
        con.executemany("INSERT INTO wanted VALUES (?)", [(value,) for value in ids])
        rows = con.execute(
            "SELECT s.id, s.filename FROM read_parquet(?, filename=true, union_by_name=true) s "
            "JOIN wanted USING (id)",
            [glob],
        ).fetchall()
    for record_id, filename in rows:
        folder = Path(filename).parent.name
        found[str(record_id)] = date.fromisoformat(folder.split("=", 1)[1])
    return found


def storage_partition_prefix() -> str:
    from orderspace_pipelines.lake.schemas import PARTITION_COLUMN

    return f"{PARTITION_COLUMN}="


def _tables_of(spec: ResourceSpec) -> list[str]:
    return [spec.table, *(child.table for child in spec.children)]


def _key_of(spec: ResourceSpec, table: str) -> str:
    return spec.key if table == spec.table else (table_spec(table).parent_key or "parent_id")


def _stored_record(spec: ResourceSpec, tables: Mapping[str, pa.Table | None], record_id: str) -> Row | None:
    """The stored parent row of `record_id` with its child rows under the child fields (for `is_older`)."""
    parent = tables.get(spec.table)
    if parent is None or spec.key not in parent.column_names:
        return None
    rows = parent.filter(pc.equal(parent.column(spec.key), record_id)).to_pylist()
    if not rows:
        return None
    record: Row = dict(rows[0])
    for child in spec.children:
        data = tables.get(child.table)
        key = _key_of(spec, child.table)
        if data is None or key not in data.column_names:
            continue
        record[child.field] = data.filter(pc.equal(data.column(key), record_id)).to_pylist()
    return record


def _arrow(table: str, rows_by_time: list[tuple[datetime, list[Row]]], report: ApplyReport) -> pa.Table:
    """Rows stamped with their event's receipt time as `_loaded_at` (so a re-apply writes the same)."""
    spec = table_spec(table)
    parts = [
        rows_to_arrow(spec, rows, loaded_at=at, coercions=report.coercions)
        for at, rows in rows_by_time
        if rows
    ]
    if not parts:
        return rows_to_arrow(
            spec, [], loaded_at=datetime(1970, 1, 1).astimezone(), coercions=report.coercions
        )
    schema = storage.union_schema(*(part.schema for part in parts))
    return pa.concat_tables([storage.conform(part, schema) for part in parts])


def _replace(old: pa.Table | None, key: str, drop: set[str], new: pa.Table) -> pa.Table:
    """`old` without the rows whose `key` is in `drop`, then `new` appended (new rows first)."""
    if old is None:
        return new
    if key in old.column_names and drop:
        old = old.filter(pc.invert(pc.is_in(old.column(key), value_set=pa.array(sorted(drop), pa.string()))))
    schema = storage.union_schema(new.schema, old.schema)
    return pa.concat_tables([storage.conform(new, schema), storage.conform(old, schema)])


# --- the applier -----------------------------------------------------------------------------------------


def _winners(
    events: Sequence[EventLike], resource: str, tombstones: Tombstones, report: ApplyReport
) -> tuple[dict[str, EventLike], dict[str, EventLike]]:
    """Per id: the event to upsert, or the delete. Tombstoned ids and in-batch older states drop out."""
    ids = [event.record_id for event in events if event.record_id is not None]
    dead = tombstones.deleted(resource, ids)
    upserts: dict[str, EventLike] = {}
    deletes: dict[str, EventLike] = {}
    for event in events:  # receipt order
        record_id = event.record_id
        if record_id is None:
            report.unplaced += 1
            continue
        if _is_delete(event):
            if record_id in upserts:
                report.superseded += 1
                del upserts[record_id]
            deletes.setdefault(record_id, event)
            continue
        if record_id in dead or record_id in deletes:
            report.tombstoned_skipped += 1
            continue
        best = upserts.get(record_id)
        if best is not None and is_older(resource, event.record, best.record):
            report.stale_skipped += 1
            continue
        if best is not None:
            report.superseded += 1
        upserts[record_id] = event
    return upserts, deletes


def _apply_partitioned(
    data_dir: Path,
    resource: str,
    events: Sequence[EventLike],
    tombstones: Tombstones,
    report: ApplyReport,
    payments: Sequence[EventLike] = (),
) -> None:
    spec = RESOURCES[SPEC_OF[resource]]
    tables = _tables_of(spec)
    upserts, deletes = _winners(events, resource, tombstones, report)
    payment_ids = [event.record_id for event in payments if event.record_id is not None]
    with storage.table_locks(data_dir, tables):
        where = _locate(data_dir, spec.table, sorted({*upserts, *deletes, *payment_ids}))
        target: dict[str, date] = {}
        for record_id, event in upserts.items():
            day = day_of(spec, event.record) or where.get(record_id)
            if day is None:
                report.unplaced += 1
                log.warning("%s %s: no usable %s; not applied", resource, record_id, spec.date_field)
                continue
            target[record_id] = day
        days = sorted({*target.values(), *where.values()})
        cache: dict[date, dict[str, pa.Table | None]] = {
            day: {table: storage.read_partition(data_dir, table, day) for table in tables} for day in days
        }
        # An older state never replaces a newer stored one.
        for record_id in list(target):
            stored_day = where.get(record_id)
            if stored_day is None:
                continue
            stored = _stored_record(spec, cache[stored_day], record_id)
            if stored is not None and is_older(resource, upserts[record_id].record, stored):
                report.stale_skipped += 1
                del target[record_id]
        changes: dict[date, dict[str, pa.Table]] = {}
        for day in days:
            drop = {
                rid
                for rid, stored_day in where.items()
                if stored_day == day and (rid in target or rid in deletes)
            }
            incoming = [rid for rid, target_day in target.items() if target_day == day]
            if not drop and not incoming:
                continue
            buffers: dict[str, list[tuple[datetime, list[Row]]]] = {table: [] for table in tables}
            for rid in incoming:
                event = upserts[rid]
                parent, children = split_record(spec, event.record)
                buffers[spec.table].append((event.received_at, [parent]))
                for child_table, rows in children.items():
                    buffers[child_table].append((event.received_at, rows))
            changes[day] = {
                table: _replace(
                    cache[day][table], _key_of(spec, table), drop, _arrow(table, buffers[table], report)
                )
                for table in tables
            }
            for table in tables:
                report._add_rows(table, sum(len(rows) for _, rows in buffers[table]))
        removed = [rid for rid in deletes if rid in where]
        if removed:
            report.removed[spec.table] = report.removed.get(spec.table, 0) + len(removed)
            report.tables_touched.update(tables)
        if payments:
            _add_payments(spec, payments, where, target, upserts, cache, changes, report)
        for day, day_tables in changes.items():
            storage.write_partition(data_dir, day, day_tables)
    tombstones.add((resource, rid, event.seq) for rid, event in deletes.items())


def _add_payments(
    spec: ResourceSpec,
    payments: Sequence[EventLike],
    where: Mapping[str, date],
    target: Mapping[str, date],
    upserts: Mapping[str, EventLike],
    cache: dict[date, dict[str, pa.Table | None]],
    changes: dict[date, dict[str, pa.Table]],
    report: ApplyReport,
) -> None:
    """Append each payment to its invoice's `invoice_payments` (once) and set `paid` when fully paid."""
    for event in payments:
        invoice_id = event.record_id or ""
        day = target.get(invoice_id, where.get(invoice_id))
        if day is None:
            report.unplaced += 1
            log.warning("payment for invoice %s: the invoice is not in the lake; skipped", invoice_id)
            continue
        current = changes.get(day) or {table: cache[day][table] for table in _tables_of(spec)}
        pays = current.get("invoice_payments")
        stored: list[Row] = []
        if pays is not None and "invoice_id" in pays.column_names:
            stored = pays.filter(pc.equal(pays.column("invoice_id"), invoice_id)).to_pylist()
        record = event.record
        same = [
            row
            for row in stored
            if row.get("reference") == record.get("reference")
            and row.get("amount") == record.get("amount")
            and str(row.get("payment_date")) == str(record.get("payment_date"))
        ]
        if same:
            continue
        row = {key: value for key, value in record.items() if key not in ("invoice_number",)}
        row["invoice_id"] = invoice_id
        row["line_number"] = max((r.get("line_number") or 0 for r in stored), default=-1) + 1
        new_rows = _arrow("invoice_payments", [(event.received_at, [row])], report)
        tables = dict(current)
        tables["invoice_payments"] = _replace(pays, "invoice_id", set(), new_rows)
        invoices = tables.get("invoices")
        if invoices is not None:
            total = sum(float(r.get("amount") or 0) for r in stored) + float(record.get("amount") or 0)
            tables["invoices"] = _set_paid(invoices, invoice_id, total)
        changes[day] = tables
        report._add_rows("invoice_payments", 1)
        report.tables_touched.add("invoices")


def _set_paid(invoices: pa.Table, invoice_id: str, paid_total: float) -> pa.Table:
    rows = invoices.to_pylist()
    for row in rows:
        if row.get("id") == invoice_id:
            gross = row.get("gross_total")
            if isinstance(gross, int | float) and paid_total + 1e-9 >= gross:
                row["paid"] = True
    return pa.Table.from_pylist(rows, schema=invoices.schema)


def _apply_whole(
    data_dir: Path, resource: str, events: Sequence[EventLike], tombstones: Tombstones, report: ApplyReport
) -> None:
    """Customers, products (with variants) and inventory levels: whole tables merged by key."""
    spec = RESOURCES[SPEC_OF[resource]]
    tables = _tables_of(spec)
    upserts, deletes = _winners(events, resource, tombstones, report)
    if resource == "inventory_level":
        deletes = {}
    with storage.table_locks(data_dir, tables):
        old = {table: _read_whole(data_dir, table) for table in tables}
        for record_id in list(upserts):
            stored = _stored_record(spec, old, record_id)
            if stored is not None and is_older(resource, upserts[record_id].record, stored):
                report.stale_skipped += 1
                del upserts[record_id]
        if not upserts and not deletes:
            tombstones.add((resource, rid, event.seq) for rid, event in deletes.items())
            return
        buffers: dict[str, list[tuple[datetime, list[Row]]]] = {table: [] for table in tables}
        for event in upserts.values():
            record = event.record
            if resource == "inventory_level":
                record = {key: record.get(key) for key in ("sku", "on_hand", "available")}
            parent, children = split_record(spec, record)
            buffers[spec.table].append((event.received_at, [parent]))
            for child_table, rows in children.items():
                buffers[child_table].append((event.received_at, rows))
        drop = set(upserts) | set(deletes)
        new_tables = {
            table: _replace(old[table], _key_of(spec, table), drop, _arrow(table, buffers[table], report))
            for table in tables
        }
        storage.write_whole(data_dir, new_tables)
        for table in tables:
            report._add_rows(table, sum(len(rows) for _, rows in buffers[table]))
        if deletes:
            report.removed[spec.table] = report.removed.get(spec.table, 0) + len(deletes)
            report.tables_touched.update(tables)
    tombstones.add((resource, rid, event.seq) for rid, event in deletes.items())


def _read_whole(data_dir: Path, table: str) -> pa.Table | None:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(storage.whole_file(data_dir, table))
    except FileNotFoundError:
        return None


def apply_events(
    data_dir: Path, events: Sequence[EventLike], *, database_url: SecretStr | str | None = None
) -> ApplyReport:
    """Apply a batch of stored events (in receipt order) to the lake; durable when this returns. The
    tombstones are in Postgres when `database_url` is set (`lake.tombstones`)."""
    report = ApplyReport(events=len(events), seqs=[event.seq for event in events])
    ordered = sorted(events, key=lambda event: event.seq)
    if ordered:
        report.last_received_at = max(event.received_at for event in ordered)
    by_resource: dict[str, list[EventLike]] = {}
    for event in ordered:
        if not event.known or (event.resource not in SPEC_OF and event.resource != "payment"):
            report.unknown += 1
            continue
        by_resource.setdefault(event.resource, []).append(event)
    tombstones = open_tombstones(data_dir, database_url)
    try:
        for resource in ("order", "dispatch"):
            if resource in by_resource:
                _apply_partitioned(data_dir, resource, by_resource[resource], tombstones, report)
        if "invoice" in by_resource or "payment" in by_resource:
            _apply_partitioned(
                data_dir,
                "invoice",
                by_resource.get("invoice", []),
                tombstones,
                report,
                payments=by_resource.get("payment", []),
            )
        for resource in ("customer", "product", "inventory_level"):
            if resource in by_resource:
                _apply_whole(data_dir, resource, by_resource[resource], tombstones, report)
    finally:
        tombstones.close()
    return report


def apply_pending(
    data_dir: Path, store: PendingStore, *, batch: int = 2000, database_url: SecretStr | str | None = None
) -> ApplyReport:
    """Apply every pending event, a batch at a time; a batch is marked applied once its writes are durable."""
    total = ApplyReport()
    # One applier at a time (two runs would read the same pending events): the `_change_feed` lake lock.
    with storage.table_locks(data_dir, [APPLIER_LOCK]):
        while True:
            events = store.pending(batch)
            if not events:
                return total
            report = apply_events(data_dir, events, database_url=database_url)
            store.mark_applied(report.seqs)
            _merge_reports(total, report)
            if len(events) < batch:
                return total


def _merge_reports(total: ApplyReport, part: ApplyReport) -> None:
    total.events += part.events
    for table, count in part.rows.items():
        total.rows[table] = total.rows.get(table, 0) + count
    for table, count in part.removed.items():
        total.removed[table] = total.removed.get(table, 0) + count
    total.tables_touched |= part.tables_touched
    total.tombstoned_skipped += part.tombstoned_skipped
    total.stale_skipped += part.stale_skipped
    total.superseded += part.superseded
    total.unplaced += part.unplaced
    total.unknown += part.unknown
    total.seqs.extend(part.seqs)
    if part.last_received_at is not None and (
        total.last_received_at is None or part.last_received_at > total.last_received_at
    ):
        total.last_received_at = part.last_received_at


__all__ = [
    "INVENTORY_LEVELS",
    "ApplyReport",
    "Tombstones",
    "apply_events",
    "apply_pending",
    "is_older",
]
