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
6. Reconcile's own events (`seq == RECONCILE_SEQ`, built by `lake.reconcile.write`) are not received: they
   carry, as `received_at`, the moment reconcile READ the record from the API (taken just before the request
   that returned it), on the lake's clock (the one receipt times and pulls' starts are taken on). Such an
   event leaves alone a stored record with any row (parent or child) whose `_loaded_at` is later than that
   read: an event or a pull landed it after the read, so it is at least as new (`newer_kept`). Likewise a
   removal by reconcile is not done, nor tombstoned, when the record has a row loaded after the listing
   that missed it was read (`removals_kept`): it may have been created or changed since. The next run
   reads again. Webhook events (rules 1-5) never look at `_loaded_at`.

Rows from an event get `_loaded_at` = the event's receipt time (for reconcile's, the time it read the
record: like a pull's rows, whose `_loaded_at` is the pull's start, before its listing), so applying the
same events twice gives the same files. Each touched partition (or whole table) is rewritten atomically
through `lake.storage`, under the lake's table lock (`storage.table_locks`) held across read-modify-write,
the same lock the pull takes: an apply and a pull never overwrite each other's work. Events are marked
applied only after the writes and tombstones are durable; a crash in between means they are applied again,
which changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import SecretStr

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.flatten import CoercionLog, Row, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import INVENTORY_LEVELS, LOADED_AT, RESOURCES, ResourceSpec, table_spec
from orderspace_pipelines.lake.sweep import day_of
from orderspace_pipelines.lake.tombstones import TombstoneLookup, Tombstones, open_tombstones

log = logging.getLogger(__name__)

APPLIER_LOCK = "_change_feed"  # the lake lock one applier holds for its whole run
# The `seq` of reconcile's own events (`lake.reconcile.ReconcileEvent`; the store's seqs start at 1): their
# `received_at` is when reconcile read the record (rule 6), and tombstones record 0 = removed by reconcile.
RECONCILE_SEQ = 0

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
    newer_kept: int = 0  # reconcile's records not written: the stored one was loaded after reconcile read it
    removals_kept: int = 0  # reconcile's removals not done: the record was loaded after the listing's read
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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _newest_loaded(
    spec: ResourceSpec, stored: Mapping[str, pa.Table | None], ids: set[str]
) -> dict[str, datetime]:
    """Per stored record of `ids`: the latest `_loaded_at` of its rows (parent and children) in `stored`."""
    newest: dict[str, datetime] = {}
    for table, data in stored.items():
        key = _key_of(spec, table)
        if data is None or not data.num_rows or not {key, LOADED_AT} <= set(data.column_names):
            continue
        data = _only(data, key, ids, keep=True)  # only the records asked about, not the whole table
        if data is None or not data.num_rows:
            continue
        grouped = data.select([key, LOADED_AT]).group_by(key).aggregate([(LOADED_AT, "max")])
        keys, stamps = grouped.column(key).to_pylist(), grouped.column(f"{LOADED_AT}_max").to_pylist()
        for record_id, loaded in zip(keys, stamps, strict=True):
            if record_id is None or not isinstance(loaded, datetime):
                continue
            rid, moment = str(record_id), _aware(loaded)
            if rid not in newest or moment > newest[rid]:
                newest[rid] = moment
    return newest


def _landed_after_read(
    spec: ResourceSpec, events: Mapping[str, EventLike], stored: Mapping[str, pa.Table | None]
) -> set[str]:
    """Ids of reconcile's events (rule 6) whose stored record has a row loaded after reconcile read it."""
    mine = {rid: event for rid, event in events.items() if event.seq == RECONCILE_SEQ}
    if not mine:
        return set()
    newest = _newest_loaded(spec, stored, set(mine))
    return {rid for rid, event in mine.items() if rid in newest and newest[rid] > _aware(event.received_at)}


def _keep_landed(
    upserts: dict[str, EventLike], deletes: dict[str, EventLike], ids: set[str], report: ApplyReport
) -> None:
    """Drop reconcile's upserts and removals of `ids` (stored rows loaded after its read), counted."""
    for rid in ids:
        if upserts.pop(rid, None) is not None:
            report.newer_kept += 1
        if deletes.pop(rid, None) is not None:
            report.removals_kept += 1


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


def _target_days(
    spec: ResourceSpec,
    upserts: Mapping[str, EventLike],
    where: Mapping[str, date],
    report: ApplyReport,
) -> dict[str, date]:
    """The partition day each upserted record goes to: its date field, else where it is stored now."""
    target: dict[str, date] = {}
    for record_id, event in upserts.items():
        day = day_of(spec, event.record) or where.get(record_id)
        if day is None:
            report.unplaced += 1
            log.warning("%s %s: no usable %s; not applied", spec.resource, record_id, spec.date_field)
            continue
        target[record_id] = day
    return target


def _drop_stale(
    spec: ResourceSpec,
    resource: str,
    upserts: Mapping[str, EventLike],
    target: dict[str, date],
    where: Mapping[str, date],
    cache: Mapping[date, Mapping[str, pa.Table | None]],
    report: ApplyReport,
) -> None:
    """Remove from `target` every record whose event is older than its stored state (`is_older`)."""
    for record_id in list(target):
        stored_day = where.get(record_id)
        if stored_day is None:
            continue
        stored = _stored_record(spec, cache[stored_day], record_id)
        if stored is not None and is_older(resource, upserts[record_id].record, stored):
            report.stale_skipped += 1
            del target[record_id]


def _keep_landed_since_read(
    spec: ResourceSpec,
    upserts: dict[str, EventLike],
    deletes: dict[str, EventLike],
    target: dict[str, date],
    where: Mapping[str, date],
    cache: Mapping[date, Mapping[str, pa.Table | None]],
    report: ApplyReport,
) -> None:
    """Rule 6 for a date-partitioned table: reconcile's events for records stored with a row loaded after
    reconcile read them are dropped (`target` and `deletes`), each stored day's stamps read once."""
    by_day: dict[date, dict[str, EventLike]] = {}
    for rid, event in [*upserts.items(), *deletes.items()]:
        if event.seq == RECONCILE_SEQ and rid in where:
            by_day.setdefault(where[rid], {})[rid] = event
    for day, events in by_day.items():
        landed = _landed_after_read(spec, events, cache[day])
        for rid in landed:
            target.pop(rid, None)
        _keep_landed(upserts, deletes, landed, report)


def _event_rows(
    spec: ResourceSpec, tables: Sequence[str], events: Iterable[EventLike]
) -> dict[str, list[tuple[datetime, list[Row]]]]:
    """The rows of each event's record per table, with the event's receipt time (their `_loaded_at`)."""
    buffers: dict[str, list[tuple[datetime, list[Row]]]] = {table: [] for table in tables}
    for event in events:
        parent, children = split_record(spec, event.record)
        buffers[spec.table].append((event.received_at, [parent]))
        for child_table, rows in children.items():
            buffers[child_table].append((event.received_at, rows))
    return buffers


def _day_change(
    spec: ResourceSpec,
    drop: set[str],
    incoming: Sequence[EventLike],
    stored: Mapping[str, pa.Table | None],
    report: ApplyReport,
) -> dict[str, pa.Table]:
    """One day's new tables: the stored rows without `drop`, plus the incoming records' rows."""
    tables = _tables_of(spec)
    buffers = _event_rows(spec, tables, incoming)
    for table in tables:
        report._add_rows(table, sum(len(rows) for _, rows in buffers[table]))
    return {
        table: _replace(stored[table], _key_of(spec, table), drop, _arrow(table, buffers[table], report))
        for table in tables
    }


def _apply_partitioned(
    data_dir: Path,
    resource: str,
    events: Sequence[EventLike],
    tombstones: Tombstones,
    report: ApplyReport,
    payments: Sequence[EventLike] = (),
) -> None:
    """Orders, dispatches, invoices (with `payments`): each touched day rewritten once, under its locks."""
    spec = RESOURCES[SPEC_OF[resource]]
    tables = _tables_of(spec)
    upserts, deletes = _winners(events, resource, tombstones, report)
    payment_ids = [event.record_id for event in payments if event.record_id is not None]
    with storage.table_locks(data_dir, tables):
        where = _locate(data_dir, spec.table, sorted({*upserts, *deletes, *payment_ids}))
        target = _target_days(spec, upserts, where, report)
        days = sorted({*target.values(), *where.values()})
        cache = {
            day: {table: storage.read_partition(data_dir, table, day) for table in tables} for day in days
        }
        _keep_landed_since_read(spec, upserts, deletes, target, where, cache, report)
        _drop_stale(spec, resource, upserts, target, where, cache, report)
        changes: dict[date, dict[str, pa.Table]] = {}
        for day in days:
            drop = {rid for rid, at in where.items() if at == day and (rid in target or rid in deletes)}
            incoming = [upserts[rid] for rid, at in target.items() if at == day]
            if drop or incoming:
                changes[day] = _day_change(spec, drop, incoming, cache[day], report)
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
    locked = [*tables, INVENTORY_LEVELS] if resource == "product" else tables
    with storage.table_locks(data_dir, locked):
        old = {table: _read_whole(data_dir, table) for table in tables}
        _keep_landed(upserts, deletes, _landed_after_read(spec, {**upserts, **deletes}, old), report)
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
        if resource == "product" and deletes:
            levels, gone = _levels_without_products(data_dir, spec, old, set(deletes))
            if levels is not None:
                new_tables[INVENTORY_LEVELS] = levels
                report.removed[INVENTORY_LEVELS] = report.removed.get(INVENTORY_LEVELS, 0) + gone
                report.tables_touched.add(INVENTORY_LEVELS)
        storage.write_whole(data_dir, new_tables)
        for table in tables:
            report._add_rows(table, sum(len(rows) for _, rows in buffers[table]))
        if deletes:
            report.removed[spec.table] = report.removed.get(spec.table, 0) + len(deletes)
            report.tables_touched.update(tables)
    tombstones.add((resource, rid, event.seq) for rid, event in deletes.items())


def _levels_without_products(
    data_dir: Path, spec: ResourceSpec, old: Mapping[str, pa.Table | None], product_ids: set[str]
) -> tuple[pa.Table | None, int]:
    """The inventory levels left once deleted products' variant SKUs go (None: nothing to remove), and how
    many went. A deleted product's levels go with it: the API lists no level for a SKU it no longer has
    (a guess, as the sandbox does; the docs are silent and no inventory event says so)."""
    variants, levels = old.get("product_variants"), _read_whole(data_dir, INVENTORY_LEVELS)
    parent_key = _key_of(spec, "product_variants")
    if variants is None or levels is None or "sku" not in levels.column_names:
        return None, 0
    if parent_key not in variants.column_names or "sku" not in variants.column_names:
        return None, 0
    ids = pa.array(sorted(product_ids), pa.string())
    skus = variants.filter(pc.is_in(variants.column(parent_key), value_set=ids)).column("sku").drop_null()
    if len(skus) == 0:
        return None, 0
    kept = levels.filter(pc.invert(pc.is_in(levels.column("sku"), value_set=skus.unique())))
    return (kept, levels.num_rows - kept.num_rows) if kept.num_rows < levels.num_rows else (None, 0)


def _read_whole(data_dir: Path, table: str) -> pa.Table | None:
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
        # Levels before products: a product deleted after its levels changed takes its levels with it.
        for resource in ("customer", "inventory_level", "product"):
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
    total.newer_kept += part.newer_kept
    total.removals_kept += part.removals_kept
    total.seqs.extend(part.seqs)
    if part.last_received_at is not None and (
        total.last_received_at is None or part.last_received_at > total.last_received_at
    ):
        total.last_received_at = part.last_received_at


# --- a pull's write against the change feed --------------------------------------------------------------

_EVENT_RESOURCE = {spec_name: resource for resource, spec_name in SPEC_OF.items()}  # "orders" -> "order"


def _only(table: pa.Table | None, key: str, ids: set[str], keep: bool) -> pa.Table | None:
    """`table`'s rows whose `key` is in `ids` (keep=True) or is not (keep=False; nulls stay)."""
    if table is None or key not in table.column_names:
        return None if keep else table
    inside = pc.fill_null(pc.is_in(table.column(key), value_set=pa.array(sorted(ids), pa.string())), False)
    return table.filter(inside if keep else pc.invert(inside))


def _fresh_ids(spec: ResourceSpec, stored: Mapping[str, pa.Table | None], since: datetime) -> set[str]:
    """Ids of the stored records with any row (parent or child) loaded after `since` (vectorised: it runs
    on the pull's path, for every day and whole table it writes)."""
    moment = pa.scalar(_aware(since), type=pa.timestamp("us", tz="UTC"))
    found: set[str] = set()
    for table, data in stored.items():
        key = _key_of(spec, table)
        if data is None or key not in data.column_names or LOADED_AT not in data.column_names:
            continue
        newer = data.filter(pc.fill_null(pc.greater(data.column(LOADED_AT), moment), False))
        found.update(str(value) for value in newer.column(key).to_pylist() if value is not None)
    return found


def _may_hold_newer(path: Path, since: datetime) -> bool:
    """False when the Parquet file at `path` holds no row loaded after `since`, read from its footer's
    `_loaded_at` statistics (exact for timestamps; a tenth of the cost of reading the column). True when
    a row group's statistics say otherwise or say nothing (then the column itself decides)."""
    try:
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        return False
    except (OSError, pa.ArrowInvalid):
        return True
    column = next((i for i in range(meta.num_columns) if meta.schema.column(i).path == LOADED_AT), None)
    if column is None:
        return False  # no `_loaded_at` column: nothing in the file is newer (as `_fresh_ids` reads it)
    moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == meta.row_group(group).num_rows:
                continue  # every value null: no row of this group is newer
            return True
        newest = stats.max
        if not isinstance(newest, datetime):
            return True
        if (newest if newest.tzinfo is not None else newest.replace(tzinfo=UTC)) > moment:
            return True
    return False


def _key_stamps(spec: ResourceSpec, paths: Mapping[str, Path]) -> dict[str, pa.Table | None]:
    """Each table file's key and `_loaded_at` columns only (None: no file, or not those columns)."""
    stamps: dict[str, pa.Table | None] = {}
    for table, path in paths.items():
        try:
            stamps[table] = pq.read_table(path, columns=[_key_of(spec, table), LOADED_AT])
        except (FileNotFoundError, KeyError, pa.ArrowInvalid):
            stamps[table] = None
    return stamps


def loaded_since(data_dir: Path, spec: ResourceSpec, since: datetime) -> set[str]:
    """Ids of a whole table's records (`spec` not date-partitioned) with a stored row, the record's or a
    child's, loaded after `since`. Reads only the key and `_loaded_at` columns."""
    paths = {table: storage.whole_file(Path(data_dir), table) for table in _tables_of(spec)}
    return _fresh_ids(spec, _key_stamps(spec, paths), since)


class PullGuard:
    """Keeps a pull's write from undoing what the change feed applied while the pull was fetching.

    A pull lists the API after it starts (`since`, its `loaded_at`) and writes each day later. Rows the
    applier writes carry their event's receipt time as `_loaded_at`. So, under the table locks, just
    before the pull writes a day (`guard_day`):

    - a record the change feed deleted (tombstoned) is dropped from the pull's rows;
    - a stored record with a row (parent or child) loaded after `since` came from an event received after
      the pull started: it is kept as stored (replacing the pull's copy, or added where the pull has none),
      unless the pull's copy is provably newer by the applier's own rule (`is_older`).

    Events received before the pull started are the pull's to overwrite: its listing is newer than them.
    """

    def __init__(
        self,
        data_dir: Path,
        spec: ResourceSpec,
        since: datetime,
        database_url: SecretStr | str | None = None,
        *,
        tombstones: TombstoneLookup | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.spec = spec
        self.since = since
        # The tombstone look-ups: the landing's own (one store for the whole pull), else one of its own.
        self.tombstones = tombstones or TombstoneLookup(data_dir, database_url)
        self.resource = _EVENT_RESOURCE.get(spec.resource)  # None: no event changes this resource

    def guard_day(self, day: date, tables: Mapping[str, pa.Table | None]) -> dict[str, pa.Table | None]:
        """The pull's tables for `day` (parent and children) with the change feed's newer state kept."""
        if self.resource is None:
            return dict(tables)
        names = _tables_of(self.spec)
        pulled = {table: tables.get(table) for table in names}
        paths = {table: storage.partition_file(self.data_dir, table, day) for table in names}
        newer = any(_may_hold_newer(path, self.since) for path in paths.values())
        if not newer or not _fresh_ids(self.spec, _key_stamps(self.spec, paths), self.since):
            # The usual case, decided on the files' footers (else on two columns): no stored row is newer
            # than the pull, so only tombstoned records can need dropping (no look-up before the first
            # deletion is recorded; the landing's one open store after).
            return self.merge(pulled, dict.fromkeys(names))
        stored = {table: storage.read_partition(self.data_dir, table, day) for table in names}
        return self.merge(pulled, stored)

    def merge(
        self, pulled: Mapping[str, pa.Table | None], stored: Mapping[str, pa.Table | None]
    ) -> dict[str, pa.Table | None]:
        """`pulled` without tombstoned records, with the stored records newer than the pull (see above)."""
        assert self.resource is not None
        spec = self.spec
        parent = pulled.get(spec.table)
        ids = [] if parent is None else [str(v) for v in parent.column(spec.key).to_pylist() if v is not None]
        dead = self.tombstones.deleted(self.resource, ids)
        keep = {
            rid
            for rid in _fresh_ids(spec, stored, self.since) - dead
            if not self._pull_wins(rid, pulled, stored)
        }
        if not dead and not keep:
            return dict(pulled)
        log.info(
            "%s: the pull's write keeps %d record(s) changed by events since it started, drops %d deleted",
            spec.resource,
            len(keep),
            len(dead),
        )
        merged: dict[str, pa.Table | None] = {}
        for table, data in pulled.items():
            key = _key_of(spec, table)
            parts = [
                t
                for t in (_only(stored.get(table), key, keep, True), _only(data, key, dead | keep, False))
                if t is not None
            ]
            if not parts:
                merged[table] = data
                continue
            schema = storage.union_schema(*(part.schema for part in parts))
            merged[table] = pa.concat_tables([storage.conform(part, schema) for part in parts])
        return merged

    def whole_ids(self, pulled_ids: set[str]) -> tuple[set[str], set[str]]:
        """For a whole-table refresh that listed `pulled_ids`: (stored ids to keep as stored, ids to drop).

        Keep: the records with a stored row loaded after the pull started (an event's newer state; the
        pull's copy is not compared: the whole-table records carry no field that only grows). Drop: the
        listed ids the change feed has deleted since. Reads only the stored key and `_loaded_at` columns.
        """
        if self.resource is None:
            return set(), set()
        dead = self.tombstones.deleted(self.resource, pulled_ids)
        return loaded_since(self.data_dir, self.spec, self.since) - dead, dead

    def _pull_wins(
        self, record_id: str, pulled: Mapping[str, pa.Table | None], stored: Mapping[str, pa.Table | None]
    ) -> bool:
        """True when the pull's copy of `record_id` is provably newer than the stored one (`is_older`)."""
        mine = _stored_record(self.spec, pulled, record_id)
        theirs = _stored_record(self.spec, stored, record_id)
        return mine is not None and theirs is not None and is_older(str(self.resource), theirs, mine)


__all__ = [
    "INVENTORY_LEVELS",
    "RECONCILE_SEQ",
    "ApplyReport",
    "PullGuard",
    "Tombstones",
    "apply_events",
    "apply_pending",
    "is_older",
    "loaded_since",
]
