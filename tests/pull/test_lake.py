"""The lake layer alone: flattening, typed schemas, atomic partitions, streaming, merging, the catalog."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orderspace_pipelines.lake import catalog, storage
from orderspace_pipelines.lake.flatten import CoercionLog, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import RESOURCES, TABLES
from orderspace_pipelines.lake.sweep import DayMerge, PartitionedLanding, WholeLanding

LOADED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def order(number: int, created: str, *, lines: int = 2, **extra) -> dict:
    order_id = f"or_{number:05d}"
    record = {
        "id": order_id,
        "number": number,
        "created": created,
        "status": "new",
        "customer_id": "cu_1",
        "email_addresses": {
            "orders": "a@example.com",
            "dispatches": "d@example.com",
            "invoices": "i@example.com",
        },
        "delivery_date": created[:10],
        "shipping_address": {"line1": "1 Road", "postal_code": "BA1 2FJ", "country": "GB"},
        "order_lines": [
            {
                "id": f"ol_{number:05d}_{n}",
                "sku": f"SKU-{n}",
                "quantity": n + 1,
                "unit_price": 10.0,
                "sub_total": 10.0 * (n + 1),
                "grouping_category": {"id": "ca_1", "name": "Dresses"},
            }
            for n in range(lines)
        ],
        "currency": "GBP",
        "net_total": sum(10.0 * (n + 1) for n in range(lines)),
        "gross_total": 1.2 * sum(10.0 * (n + 1) for n in range(lines)),
    }
    record.update(extra)
    return record


def invoice(number: int, day: str, *, lines: int = 1, **extra) -> dict:
    return {
        "id": f"iv_{number}",
        "invoice_date": day,
        "invoice_lines": [{"sku": f"S{n}", "quantity": 1.5, "sub_total": 1.0} for n in range(lines)],
        **extra,
    }


def test_split_record_flattens_nested_objects_and_makes_child_rows() -> None:
    parent, children = split_record(RESOURCES["orders"], order(1, "2026-11-01T10:00:00Z"))
    assert parent["email_addresses_orders"] == "a@example.com"
    assert parent["shipping_address_postal_code"] == "BA1 2FJ"
    assert "order_lines" not in parent
    lines = children["order_lines"]
    assert [line["order_id"] for line in lines] == ["or_00001", "or_00001"]
    assert lines[0]["grouping_category_name"] == "Dresses"


def test_child_lines_without_ids_get_line_numbers() -> None:
    invoice = {
        "id": "iv_1",
        "invoice_date": "2026-11-02",
        "deposit": {"percentage": 25.0, "due_date": "2026-11-03"},
        "orders": [{"id": "or_1", "number": 1}],
        "invoice_lines": [{"sku": "A", "sub_total": 1.0}, {"sku": "B", "sub_total": 2.0}],
        "payments": [{"amount": 3.0, "payment_date": "2026-11-05"}],
    }
    parent, children = split_record(RESOURCES["invoices"], invoice)
    table = rows_to_arrow(TABLES["invoices"], [parent], loaded_at=LOADED)
    row = table.to_pylist()[0]
    assert row["deposit_percentage"] == 25.0
    assert row["deposit_due_date"] == date(2026, 11, 3)
    assert row["orders"] == '[{"id": "or_1", "number": 1}]'
    assert [(r["invoice_id"], r["line_number"]) for r in children["invoice_lines"]] == [
        ("iv_1", 0),
        ("iv_1", 1),
    ]
    assert children["invoice_payments"][0]["invoice_id"] == "iv_1"


def test_declared_types_extras_as_strings_and_unfit_values_kept_raw(caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"id": "or_1", "number": "12", "created": "2026-11-01T10:00:00Z", "net_total": 5, "brand_new": 7},
        {"id": "or_2", "number": "lots", "created": "2026-11-01T09:00:00", "loyalty": {"tier": "gold"}},
        {"id": "or_3", "delivery_date": ""},
    ]
    coercions = CoercionLog()
    with caplog.at_level(logging.WARNING):
        table = rows_to_arrow(TABLES["orders"], rows, loaded_at=LOADED, coercions=coercions)
    schema = table.schema
    assert schema.field("number").type == "int64"
    assert str(schema.field("created").type) == "timestamp[us, tz=UTC]"
    assert schema.field("brand_new").type == "string"
    assert schema.field("loyalty").type == "string"
    # Declared columns keep their order; extras follow, sorted; `_loaded_at` is last.
    assert schema.names[: len(TABLES["orders"].columns)] == list(TABLES["orders"].column_names)
    assert schema.names[-1] == "_loaded_at"
    data = table.to_pylist()
    assert data[0]["number"] == 12 and data[0]["net_total"] == 5.0 and data[0]["brand_new"] == "7"
    assert data[1]["number"] is None and data[1]["_raw_number"] == "lots"
    assert data[1]["loyalty"] == '{"tier": "gold"}'
    assert data[1]["created"] == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert data[2]["delivery_date"] is None and data[2]["created"] is None
    assert coercions.counts == {("orders", "number"): 1}
    assert "orders.number" in caplog.text and "lots" in caplog.text


def land(
    tmp_path: Path,
    pages: list[list[dict]],
    start: date | None = None,
    end: date | None = None,
    resource: str = "orders",
):
    """Land `pages` of a dated resource over [start, end]; (the report, how many pages it read)."""
    landing = PartitionedLanding(tmp_path, RESOURCES[resource], start=start, end=end, loaded_at=LOADED)
    pages_used = 0
    for page in pages:
        pages_used += 1
        if not landing.add_page(page):
            break
    return landing.finish(), pages_used


def newest_first(*orders: dict) -> list[dict]:
    return sorted(orders, key=lambda record: record["created"], reverse=True)


def stored_ids(tmp_path: Path, table: str, day: date) -> list[str]:
    """The ids in a table's stored partition for `day`, in their stored order."""
    return storage.read_partition(tmp_path, table, day).column("id").to_pylist()


def land_whole(
    tmp_path: Path,
    resource: str,
    pages: list[list[dict]],
    *,
    at: datetime = LOADED,
    snapshot: bool = False,
    merge: bool = False,
):
    """Land `pages` of a whole-table resource loaded `at` (snapshot then, when asked); the report."""
    snapshot_at = at if snapshot else None
    with WholeLanding(
        tmp_path, RESOURCES[resource], loaded_at=at, snapshot_at=snapshot_at, merge=merge
    ) as landing:
        for page in pages:
            landing.add_page(page)
        return landing.finish()


def listed_invoices(count: int, *, back_dated: bool, forward_dated: bool) -> list[dict]:
    """`count` invoices listed by creation, newest first, ten a day back from 2026-11-20; when asked, one
    in 25 is back-dated by 30 days (i % 25 == 24) and one in 25 forward-dated by 20 days (i % 25 == 12)."""
    base = date(2026, 11, 20)
    records = []
    for i in range(count):
        day = base - timedelta(days=i // 10)
        if back_dated and i % 25 == 24:
            day -= timedelta(days=30)
        elif forward_dated and i % 25 == 12:
            day += timedelta(days=20)
        records.append(invoice(i, day.isoformat()))
    return records


def pages_of(records: list[dict], size: int = 20) -> list[list[dict]]:
    return [records[n : n + size] for n in range(0, len(records), size)]


def assert_each_day_holds_its_invoices(tmp_path: Path, records: list[dict]) -> None:
    """Every stored invoice day holds exactly the records dated that day, and no other day is stored."""
    stored = {
        day: sorted(stored_ids(tmp_path, "invoices", day))
        for day in storage.stored_days(tmp_path, "invoices")
    }
    expected: dict[date, list[str]] = {}
    for record in records:
        expected.setdefault(date.fromisoformat(record["invoice_date"]), []).append(record["id"])
    assert stored == {day: sorted(ids) for day, ids in expected.items()}


def test_partitioned_landing_writes_days_stops_past_start_and_replaces_the_range(tmp_path: Path) -> None:
    records = newest_first(
        order(1, "2026-11-01T08:00:00Z"),
        order(2, "2026-11-01T09:00:00Z"),
        order(3, "2026-11-02T10:00:00Z", lines=0),
        order(4, "2026-11-04T10:00:00Z"),
        order(5, "2026-11-05T10:00:00Z"),
    )
    report, _ = land(tmp_path, [records[:2], records[2:4], records[4:]])
    assert report.days_written == [date(2026, 11, d) for d in (1, 2, 4, 5)]
    assert report.rows == {"orders": 5, "order_lines": 8}
    # Rows keep the API's listing order: the last row is the oldest of the day.
    assert stored_ids(tmp_path, "orders", date(2026, 11, 1)) == ["or_00002", "or_00001"]
    assert storage.read_partition(tmp_path, "order_lines", date(2026, 11, 2)) is None

    # Re-pulling [2nd, 4th]: order 4 is gone from the account, order 6 is new on the 2nd.
    newer = newest_first(order(6, "2026-11-02T11:00:00Z"), order(3, "2026-11-02T10:00:00Z", lines=0))
    report, pages_used = land(
        tmp_path,
        [newer, [order(2, "2026-11-01T09:00:00Z")], [{"id": "never"}]],
        date(2026, 11, 2),
        date(2026, 11, 4),
    )
    assert pages_used == 2  # stopped at the first record older than the start
    assert report.days_written == [date(2026, 11, 2)]
    assert report.days_removed == [date(2026, 11, 4)]
    assert storage.stored_days(tmp_path, "orders") == [date(2026, 11, d) for d in (1, 2, 5)]
    assert stored_ids(tmp_path, "orders", date(2026, 11, 2)) == ["or_00006", "or_00003"]


def test_loose_order_rewrites_a_day_and_stops_after_a_whole_older_page(tmp_path: Path) -> None:
    pages = [
        [invoice(1, "2026-11-20"), invoice(2, "2026-11-10")],
        [invoice(3, "2026-11-21"), invoice(4, "2026-11-01")],  # 11-21 arrives after 11-20..11-10 were passed
        [invoice(5, "2026-10-01")],
        [invoice(6, "2026-09-01")],
    ]
    report, pages_used = land(tmp_path, pages, date(2026, 11, 1), None, resource="invoices")
    assert pages_used == 3
    assert report.rows["invoices"] == 4
    assert sorted(storage.stored_days(tmp_path, "invoices")) == [date(2026, 11, d) for d in (1, 10, 20, 21)]


def test_late_record_for_a_written_day_is_added_not_lost(tmp_path: Path) -> None:
    pages = [
        [invoice(1, "2026-11-20", lines=0), invoice(2, "2026-11-01", lines=0)],
        [invoice(3, "2026-11-20", lines=0)],
    ]
    report, _ = land(tmp_path, pages, resource="invoices")
    assert report.late_rewrites == 1
    assert stored_ids(tmp_path, "invoices", date(2026, 11, 20)) == ["iv_1", "iv_3"]


def test_late_record_already_stored_is_not_duplicated_and_ids_are_not_kept(tmp_path: Path) -> None:
    landing = PartitionedLanding(tmp_path, RESOURCES["invoices"], start=None, end=None, loaded_at=LOADED)
    landing.add_page([invoice(1, "2026-11-20"), invoice(2, "2026-11-01")])
    assert landing._open_ids.keys() == {date(2026, 11, 1)}  # the written day's ids are dropped
    # The same invoice listed again after its day was written (the account changed while paging).
    landing.add_page([invoice(1, "2026-11-20"), invoice(3, "2026-10-01")])
    report = landing.finish()
    assert landing._open_ids == {}
    assert report.duplicates == 1 and report.late_rewrites == 0
    assert stored_ids(tmp_path, "invoices", date(2026, 11, 20)) == ["iv_1"]
    assert storage.read_partition(tmp_path, "invoice_lines", date(2026, 11, 20)).num_rows == 1
    assert report.rows == {"invoices": 3, "invoice_lines": 3, "invoice_payments": 0}


def test_plan_decides_on_the_next_page_before_landing(tmp_path: Path) -> None:
    landing = PartitionedLanding(
        tmp_path, RESOURCES["orders"], start=date(2026, 11, 2), end=None, loaded_at=LOADED
    )
    newer = landing.plan([order(2, "2026-11-03T08:00:00Z")])
    assert newer.wants_more and storage.stored_days(tmp_path, "orders") == []  # planning writes nothing
    older = landing.plan([order(1, "2026-11-01T08:00:00Z")])
    assert not older.wants_more and older.skipped_older == 1
    assert landing.land(newer) is True and landing.land(older) is False
    assert landing.finish().days_written == [date(2026, 11, 3)]


def test_crash_before_replace_leaves_the_old_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(tmp_path, [[order(1, "2026-11-01T08:00:00Z")]])
    before = {
        t: pq.read_table(storage.partition_file(tmp_path, t, date(2026, 11, 1)))
        for t in ("orders", "order_lines")
    }
    original_write = pq.write_table
    calls = {"n": 0}

    def crash_on_second_file(table, where, **kwargs):
        calls["n"] += 1
        original_write(table.slice(0, 1), where, **kwargs)  # part of the data reaches the temp file...
        if calls["n"] == 2:
            raise OSError("disk full")  # ...then the writer dies

    monkeypatch.setattr(pq, "write_table", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        land(tmp_path, [[order(1, "2026-11-01T08:00:00Z", lines=5, status="fulfilled")]])
    monkeypatch.undo()
    for table, old in before.items():
        assert pq.read_table(storage.partition_file(tmp_path, table, date(2026, 11, 1))).equals(old)
    leftovers = [
        p for p in (tmp_path / "parquet").rglob("*") if p.is_file() and not p.name.endswith(".parquet")
    ]
    assert leftovers == []


def test_whole_landing_streams_pages_and_unions_columns(tmp_path: Path) -> None:
    product = {
        "id": "pr_1",
        "name": "Dress",
        "variant_options": ["Size"],
        "product_variants": [{"id": "pv_1", "sku": "D-10", "options": {"Size": "10"}, "unit_price": 3}],
    }
    report = land_whole(
        tmp_path,
        "products",
        [[product], [{**product, "id": "pr_2", "season": "SS27", "product_variants": []}, product]],
    )
    assert report.rows == {"products": 2, "product_variants": 1}
    assert report.duplicates == 1
    table = pq.read_table(storage.whole_file(tmp_path, "products"))
    assert table.column("season").to_pylist() == [None, "SS27"]
    variants = pq.read_table(storage.whole_file(tmp_path, "product_variants")).to_pylist()
    assert variants[0]["options"] == '{"Size": "10"}' and variants[0]["product_id"] == "pr_1"
    assert [p.name for p in storage.table_dir(tmp_path, "products").iterdir()] == ["part.parquet"]


def test_catalog_views_typed_empty_views_and_inventory_history(tmp_path: Path) -> None:
    land(tmp_path, [[order(1, "2026-11-01T08:00:00Z")]])
    for hour, on_hand in ((1, 5), (2, 7)):
        at = datetime(2026, 11, 20, hour, tzinfo=UTC)
        land_whole(
            tmp_path,
            "inventory_levels",
            [[{"sku": "A", "on_hand": on_hand, "available": on_hand}]],
            at=at,
            snapshot=True,
        )
    result = catalog.refresh_catalog(tmp_path)
    assert "orders" in result.updated and not result.locked
    assert catalog.refresh_catalog(tmp_path).updated == []  # nothing changed: the file is not touched
    with catalog.connect_read_only(tmp_path) as db:
        assert db.execute("SELECT id, date FROM orders").fetchall() == [("or_00001", date(2026, 11, 1))]
        assert db.execute("SELECT count(*) FROM customers").fetchone() == (0,)
        types = dict(
            db.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'customers'"
            ).fetchall()
        )
        assert types["minimum_spend"] == "DOUBLE" and types["created"] == "TIMESTAMP WITH TIME ZONE"
        assert db.execute("SELECT on_hand FROM inventory_levels").fetchall() == [(7,)]
        assert db.execute("SELECT count(*) FROM inventory_level_snapshots").fetchone() == (2,)
    # Files that all agree are read without union_by_name (DuckDB opens one footer, not one per day).
    assert catalog.table_layout(tmp_path, "orders").uniform
    assert "union_by_name" not in catalog.view_body(tmp_path, "orders")
    # A new column (schema drift) recreates just that view, now with union_by_name.
    land(
        tmp_path,
        [[order(2, "2026-11-03T08:00:00Z", loyalty_tier="gold")]],
        date(2026, 11, 3),
        date(2026, 11, 3),
    )
    assert not catalog.table_layout(tmp_path, "orders").uniform
    assert "union_by_name = true" in catalog.view_body(tmp_path, "orders")
    assert catalog.refresh_catalog(tmp_path).updated == ["orders"]
    with catalog.connect_read_only(tmp_path) as db:
        assert db.execute("SELECT count(*), count(loyalty_tier) FROM orders").fetchone() == (2, 1)
    assert dict(catalog.summary(tmp_path))["order_lines"] == 4


def test_catalog_locked_by_a_reader_warns_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    land(tmp_path, [[order(1, "2026-11-01T08:00:00Z")]])
    catalog.refresh_catalog(tmp_path)
    land(tmp_path, [[order(2, "2026-11-03T08:00:00Z", loyalty_tier="gold")]])
    # A read-only connection from another process holds the file (DuckDB locks per process).
    reader = os.fork()
    if reader == 0:  # pragma: no cover - child
        db = duckdb.connect(str(catalog.catalog_path(tmp_path)), read_only=True)
        (tmp_path / "reader-ready").touch()
        while not (tmp_path / "reader-stop").exists():
            time.sleep(0.02)
        db.close()
        os._exit(0)
    try:
        while not (tmp_path / "reader-ready").exists():
            time.sleep(0.02)
        with caplog.at_level(logging.WARNING):
            result = catalog.refresh_catalog(tmp_path, attempts=3, first_delay=0.05)
        assert result.locked and result.updated == []
        assert "locked by another process" in caplog.text
    finally:
        (tmp_path / "reader-stop").touch()
        os.waitpid(reader, 0)
    assert catalog.refresh_catalog(tmp_path).updated == ["orders"]  # catches up once the reader is gone


def test_checks_read_files_missing_a_declared_column_written_by_an_older_version(tmp_path: Path) -> None:
    from orderspace_pipelines.defs.checks import check_connection, total_mismatches, unique_key_violations

    land(tmp_path, [[order(2, "2026-11-02T08:00:00Z"), order(1, "2026-11-01T08:00:00Z")]])
    # An older writer's file for the 3rd: no net_total column at all, and a duplicate of order 1.
    old_file = storage.partition_file(tmp_path, "orders", date(2026, 11, 3))
    old_file.parent.mkdir(parents=True)
    stored = storage.read_partition(tmp_path, "orders", date(2026, 11, 1))
    pq.write_table(stored.drop_columns(["net_total"]), old_file)
    with check_connection() as db:
        assert unique_key_violations(db, tmp_path, "orders") == (1, 0, ["or_00001"])
        mismatched, compared, _ = total_mismatches(db, tmp_path, "orders", "order_lines", "order_id")
    assert (mismatched, compared) == (0, 2)  # the file without net_total has nothing to compare


# --- server-side ranges, merges by id, incremental refreshes, real shapes --------------------------------


def test_range_filters_are_one_step_wider_than_the_range_on_each_side() -> None:
    from orderspace_pipelines.lake.sweep import range_filters

    day = date(2026, 11, 5)
    assert range_filters(RESOURCES["orders"], day, day) == {
        "created_since": "2026-11-04T23:59:59Z",  # one second early: right whether "since" is >= or >
        "created_before": "2026-11-06T00:00:00Z",  # the next midnight: right whether "before" is < or <=
    }
    assert range_filters(RESOURCES["dispatches"], date(2026, 10, 1), None) == {
        "created_since": "2026-09-30T23:59:59Z"
    }
    assert range_filters(RESOURCES["invoices"], date(2026, 10, 1), date(2026, 10, 30)) == {
        "invoice_date_after": "2026-09-30",
        "invoice_date_before": "2026-10-31",
    }
    assert range_filters(RESOURCES["invoices"], None, date(2026, 10, 30)) == {
        "invoice_date_before": "2026-10-31"
    }
    assert range_filters(RESOURCES["orders"], None, None) == {}


def test_a_server_bounded_invoice_listing_is_read_to_its_end(tmp_path: Path) -> None:
    # Invoices are listed by creation: a page of invoices dated just before the range (the server's bound
    # being inclusive) may precede a back-dated invoice that belongs in it.
    pages = [
        [invoice(1, "2026-11-03")],
        [invoice(2, "2026-10-31"), invoice(3, "2026-10-31")],
        [invoice(4, "2026-11-01")],
    ]
    landing = PartitionedLanding(
        tmp_path,
        RESOURCES["invoices"],
        start=date(2026, 11, 1),
        end=date(2026, 11, 3),
        loaded_at=LOADED,
        server_bounded=True,
    )
    assert all(landing.add_page(page) for page in pages)
    report = landing.finish()
    assert report.skipped_older == 2
    assert storage.stored_days(tmp_path, "invoices") == [date(2026, 11, 1), date(2026, 11, 3)]


def test_day_merge_replaces_by_id_and_keeps_the_other_rows_of_the_day(tmp_path: Path) -> None:
    land(tmp_path, [[invoice(1, "2026-10-01", lines=2), invoice(2, "2026-10-01")]], resource="invoices")
    written: list[date] = []
    merge = DayMerge(
        tmp_path,
        RESOURCES["invoices"],
        loaded_at=LOADED,
        covered=lambda day: date(2026, 11, 20) <= day <= date(2026, 11, 30),
        on_day_written=lambda day, stored: written.append(day),
    )
    # Invoice 1 changed (one line now), invoice 9 is back-dated to the 1st of October, invoice 10 is dated
    # inside the range the same run re-pulled whole (left alone), invoice 11 is forward-dated.
    merge.add_page(
        [
            invoice(1, "2026-10-01", lines=1, paid=True),
            invoice(9, "2026-10-01", lines=3),
            invoice(10, "2026-11-21"),
            invoice(11, "2027-01-15"),
        ]
    )
    report = merge.report
    assert written == [date(2026, 10, 1), date(2027, 1, 15)]
    assert report.merged_records == 3 and report.already_covered == 1
    stored = storage.read_partition(tmp_path, "invoices", date(2026, 10, 1))
    assert sorted(stored.column("id").to_pylist()) == ["iv_1", "iv_2", "iv_9"]
    assert dict(zip(stored.column("id").to_pylist(), stored.column("paid").to_pylist(), strict=True))["iv_1"]
    lines = storage.read_partition(tmp_path, "invoice_lines", date(2026, 10, 1)).to_pylist()
    assert sorted((line["invoice_id"], line["line_number"]) for line in lines) == [
        ("iv_1", 0),
        ("iv_2", 0),
        ("iv_9", 0),
        ("iv_9", 1),
        ("iv_9", 2),
    ]
    assert storage.stored_days(tmp_path, "invoices") == [date(2026, 10, 1), date(2027, 1, 15)]
    assert [p.name for p in (tmp_path / "parquet").rglob("*.tmp")] == []


def test_a_stored_day_written_with_integer_quantities_takes_decimal_ones(tmp_path: Path) -> None:
    # A file written before quantities became decimal: an int64 `quantity` column.
    old_lines = pa.table({"invoice_id": ["iv_1"], "line_number": [0], "quantity": pa.array([2], pa.int64())})
    old_invoices = pa.table({"id": ["iv_1"], "invoice_date": [date(2026, 10, 1)]})
    storage.write_partition(
        tmp_path, date(2026, 10, 1), {"invoices": old_invoices, "invoice_lines": old_lines}
    )
    merge = DayMerge(tmp_path, RESOURCES["invoices"], loaded_at=LOADED)
    merge.add_page([invoice(2, "2026-10-01")])
    lines = storage.read_partition(tmp_path, "invoice_lines", date(2026, 10, 1))
    assert lines.schema.field("quantity").type == pa.float64()
    assert sorted(lines.column("quantity").to_pylist()) == [1.5, 2.0]


def product(number: int, *variants: str, name: str = "Dress") -> dict:
    return {
        "id": f"pr_{number}",
        "name": name,
        "product_variants": [
            {"id": f"pv_{number}_{sku}", "sku": sku, "unit_price": 3.0, "minimum": 2.5} for sku in variants
        ],
    }


def test_whole_landing_merge_replaces_changed_products_and_their_variants(tmp_path: Path) -> None:
    land_whole(tmp_path, "products", [[product(1, "A", "B"), product(2, "C")], [product(3, "D")]])
    # Product 2 changed (renamed, variant C replaced by C2 and C3); product 4 is new.
    report = land_whole(
        tmp_path, "products", [[product(2, "C2", "C3", name="Skirt"), product(4, "E")]], merge=True
    )
    assert report.changed_records == 2
    assert report.rows == {"products": 4, "product_variants": 6}
    products = pq.read_table(storage.whole_file(tmp_path, "products")).to_pylist()
    assert sorted((row["id"], row["name"]) for row in products) == [
        ("pr_1", "Dress"),
        ("pr_2", "Skirt"),
        ("pr_3", "Dress"),
        ("pr_4", "Dress"),
    ]
    variants = pq.read_table(storage.whole_file(tmp_path, "product_variants")).to_pylist()
    assert sorted((row["product_id"], row["sku"]) for row in variants) == [
        ("pr_1", "A"),
        ("pr_1", "B"),
        ("pr_2", "C2"),
        ("pr_2", "C3"),
        ("pr_3", "D"),
        ("pr_4", "E"),
    ]
    assert {row["minimum"] for row in variants} == {2.5}
    assert sorted(p.name for p in storage.table_dir(tmp_path, "products").iterdir()) == ["part.parquet"]


def test_inventory_merge_keeps_the_complete_state_and_snapshots_it(tmp_path: Path) -> None:
    first = datetime(2026, 11, 20, 1, tzinfo=UTC)
    levels = [{"sku": sku, "on_hand": 5, "available": 4} for sku in ("A", "B", "C")]
    land_whole(tmp_path, "inventory_levels", [levels], at=first, snapshot=True)
    second = datetime(2026, 11, 20, 2, tzinfo=UTC)
    changed = [{"sku": "B", "on_hand": 2.5, "available": 0}]
    report = land_whole(tmp_path, "inventory_levels", [changed], at=second, snapshot=True, merge=True)
    assert report.rows == {"inventory_levels": 3, "inventory_level_snapshots": 3}
    catalog.refresh_catalog(tmp_path)
    with catalog.connect_read_only(tmp_path) as db:
        assert db.execute("SELECT sku, on_hand, available FROM inventory_levels ORDER BY sku").fetchall() == [
            ("A", 5.0, 4.0),
            ("B", 2.5, 0.0),
            ("C", 5.0, 4.0),
        ]
        history = db.execute(
            "SELECT snapshot_at, count(*), sum(on_hand) FROM inventory_level_snapshots GROUP BY 1 ORDER BY 1"
        ).fetchall()
        types = dict(db.execute("DESCRIBE inventory_levels").fetchall()[i][:2] for i in range(3))
    assert [(count, total) for _, count, total in history] == [(3, 15.0), (3, 12.5)]
    assert types["on_hand"] == "DOUBLE"
    assert storage.whole_file(tmp_path, "inventory_levels").is_file()


def test_customers_created_lands_typed_from_created_or_created_at() -> None:
    rows = [
        split_record(RESOURCES["customers"], {"id": "cu_1", "created": "2026-11-01T10:00:00Z"})[0],
        split_record(RESOURCES["customers"], {"id": "cu_2", "created_at": "2026-11-02T11:00:00+01:00"})[0],
    ]
    table = rows_to_arrow(TABLES["customers"], rows, loaded_at=LOADED)
    assert table.schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert "created_at" not in table.column_names
    assert table.column("created").to_pylist() == [
        datetime(2026, 11, 1, 10, tzinfo=UTC),
        datetime(2026, 11, 2, 10, tzinfo=UTC),
    ]


def test_quantities_are_decimal_columns() -> None:
    _, children = split_record(
        RESOURCES["orders"],
        order(1, "2026-11-01T10:00:00Z", lines=0) | {"order_lines": [{"id": "ol", "quantity": 2.5}]},
    )
    lines = rows_to_arrow(TABLES["order_lines"], children["order_lines"], loaded_at=LOADED)
    assert lines.column("quantity").to_pylist() == [2.5]
    for table, columns in {
        "order_lines": ("quantity", "invoiced", "paid", "dispatched"),
        "invoice_lines": ("quantity",),
        "dispatch_lines": ("quantity",),
        "inventory_levels": ("on_hand", "available"),
        "inventory_level_snapshots": ("on_hand", "available"),
    }.items():
        schema = TABLES[table].schema
        assert all(schema.field(column).type == pa.float64() for column in columns), table


def test_unknown_order_statuses_are_flagged(tmp_path: Path) -> None:
    from orderspace_pipelines.defs.checks import check_connection, unknown_statuses

    land(
        tmp_path,
        [
            [
                order(3, "2026-11-03T08:00:00Z", status="shipped"),
                order(2, "2026-11-02T08:00:00Z", status="part_fulfilled"),
            ]
        ],
    )
    with check_connection() as db:
        assert unknown_statuses(db, tmp_path) == (1, ["shipped (1)"])
    land(tmp_path, [[order(3, "2026-11-03T08:00:00Z", status="fulfilled")]])
    with check_connection() as db:
        assert unknown_statuses(db, tmp_path) == (0, [])


def test_state_updates_are_atomic_and_keep_other_keys(tmp_path: Path) -> None:
    assert storage.read_state(tmp_path) == {}
    storage.update_state(tmp_path, {"products.updated_since": "2026-11-20T01:00:00+00:00"})
    storage.update_state(tmp_path, {"invoices.created_since": "2026-11-20T02:00:00+00:00"})
    assert storage.read_state(tmp_path) == {
        "products.updated_since": "2026-11-20T01:00:00+00:00",
        "invoices.created_since": "2026-11-20T02:00:00+00:00",
    }
    storage.update_state(tmp_path, {"products.updated_since": None})
    assert list(storage.read_state(tmp_path)) == ["invoices.created_since"]
    storage.state_path(tmp_path).write_text("{not json")
    assert storage.read_state(tmp_path) == {}  # unreadable: the next pull is a full one
    assert [p.name for p in storage.state_path(tmp_path).parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("forward", [False, True])
def test_skewed_invoice_dates_do_not_make_the_landing_rewrite_days_over_and_over(
    tmp_path: Path, forward: bool
) -> None:
    records = listed_invoices(400, back_dated=True, forward_dated=forward)
    report, _ = land(tmp_path, pages_of(records), resource="invoices")
    forward_days = {
        date.fromisoformat(r["invoice_date"]) for i, r in enumerate(records) if forward and i % 25 == 12
    }
    # A back-dated invoice never causes a rewrite (it does not move the listing's position); a forward-dated
    # one may find its day written already: that day is rewritten once, whatever number of records it gets.
    assert report.late_rewrites <= len(forward_days)
    assert report.rows["invoices"] == 400
    assert_each_day_holds_its_invoices(tmp_path, records)


def test_a_forward_dated_invoice_widens_the_slack_so_later_ones_find_their_days_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = listed_invoices(1000, back_dated=False, forward_dated=True)  # 100 days
    with caplog.at_level(logging.WARNING):
        report, _ = land(tmp_path, pages_of(records), resource="invoices")
    rewritten = sorted(
        date.fromisoformat(r.getMessage().split(" for ")[1][:10])
        for r in caplog.records
        if "came after the sweep had written that day" in r.getMessage()
    )
    forward_into_the_past = [
        date.fromisoformat(r["invoice_date"]) for i, r in enumerate(records) if i % 25 == 12 and i // 10 >= 20
    ]
    # Without the wider slack each of these (a day written 20 days of listing earlier) is a rewrite. With
    # it, only those whose day was written before the first late record widened the slack (within its 20
    # days of listing) are rewritten; the other forward-dated invoices find their days still open.
    assert len(forward_into_the_past) == 32
    assert report.late_rewrites == len(rewritten) > 0
    assert rewritten[0] >= rewritten[-1] - timedelta(days=21)
    assert report.late_rewrites < len(forward_into_the_past) // 3
    assert_each_day_holds_its_invoices(tmp_path, records)
