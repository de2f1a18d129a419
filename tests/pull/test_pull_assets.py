"""Real materializations of the pull assets against the sandbox on 127.0.0.1, with real Parquet and DuckDB."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orderspace_pipelines.client.client import MAX_PAGE_SIZE
from orderspace_pipelines.defs.partitions import range_tags
from orderspace_pipelines.defs.pull_assets import PULL_ASSETS
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.lake import catalog, lake_connection, storage
from orderspace_pipelines.lake.flatten import record_date

from .conftest import resources_for

PAGE = MAX_PAGE_SIZE  # the client's page size (the API's largest)


def data_dir(env: dict[str, str]) -> Path:
    return Path(env["ORDERSPACE_DATA_DIR"])


def query(env: dict[str, str], sql: str) -> list[tuple]:
    with lake_connection(data_dir(env)) as db:
        return db.execute(sql).fetchall()


def day_of(record: dict, field: str) -> date:
    day = record_date(record[field])
    assert day is not None
    return day


def materialize_days(env, start: date, end: date, select: list[str], page_size: int = PAGE):
    return dg.materialize(
        PULL_ASSETS,
        selection=select,
        resources=resources_for(env, page_size),
        tags=range_tags(start, end),
        raise_on_error=False,
    )


def test_full_pull_matches_the_sandbox_record_for_record(sandbox, orderspace_env) -> None:
    sandbox.reset_stats()
    result = run_sync(since=None, select=None, resources=resources_for(orderspace_env))
    assert result.success, result.describe()
    assert result.failed_checks == []
    store = sandbox.store
    for resource, table in [
        ("orders", "orders"),
        ("invoices", "invoices"),
        ("dispatches", "dispatches"),
        ("customers", "customers"),
        ("products", "products"),
        ("categories", "categories"),
        ("customer_groups", "customer_groups"),
        ("price_lists", "price_lists"),
        ("payment_terms", "payment_terms"),
        ("tax_rates", "tax_rates"),
        ("preorder_windows", "preorder_windows"),
    ]:
        expected = sorted(record["id"] for record in store.all(resource))
        assert expected, resource
        assert sorted(row[0] for row in query(orderspace_env, f"SELECT id FROM {table}")) == expected, table

    orders = {record["id"]: record for record in store.all("orders")}
    lines = {line["id"]: (order["id"], line) for order in orders.values() for line in order["order_lines"]}
    stored_lines = query(orderspace_env, "SELECT id, order_id, sku, quantity, sub_total FROM order_lines")
    assert len(stored_lines) == len(lines)
    for line_id, order_id, sku, quantity, sub_total in stored_lines:
        parent, line = lines[line_id]
        assert (order_id, sku, quantity) == (parent, line["sku"], line["quantity"])
        assert sub_total == pytest.approx(line["sub_total"])
    # Fields, types and partition folders of a few orders.
    for order_id, net_total, postal_code, day in query(
        orderspace_env, "SELECT id, net_total, shipping_address_postal_code, date FROM orders LIMIT 20"
    ):
        record = orders[order_id]
        assert net_total == pytest.approx(record["net_total"])
        assert postal_code == (record.get("shipping_address") or {}).get("postal_code")
        assert day == day_of(record, "created")

    invoices = store.all("invoices")
    assert query(orderspace_env, "SELECT count(*) FROM invoice_lines")[0][0] == sum(
        len(invoice["invoice_lines"]) for invoice in invoices
    )
    assert query(orderspace_env, "SELECT count(*) FROM invoice_payments")[0][0] == sum(
        len(invoice.get("payments") or []) for invoice in invoices
    )
    dispatches = store.all("dispatches")
    assert query(orderspace_env, "SELECT count(*) FROM dispatch_lines")[0][0] == sum(
        len(dispatch["dispatch_lines"]) for dispatch in dispatches
    )
    variants = sum(len(product["product_variants"]) for product in store.all("products"))
    assert query(orderspace_env, "SELECT count(*) FROM product_variants")[0][0] == variants
    levels = {level["sku"]: level["on_hand"] for level in store.all("inventory_levels")}
    assert dict(query(orderspace_env, "SELECT sku, on_hand FROM inventory_levels")) == levels

    # Requests: one sweep per resource, close to ceil(records / page size) (+1 where has_more is missing).
    minimum = (
        sum(
            max(1, math.ceil(len(store.all(resource)) / PAGE))
            for resource in (
                "orders",
                "invoices",
                "dispatches",
                "customers",
                "products",
                "inventory_levels",
                "categories",
            )
        )
        + 5
    )  # the five unpaginated reference lists
    list_requests = sandbox.stats()["requests"]
    assert minimum <= list_requests <= minimum + 3
    assert result.requests == list_requests
    assert sandbox.stats()["rate_limited"] == 0

    # The DuckDB catalog has every table, readable by a plain read-only client.
    with catalog.connect_read_only(data_dir(orderspace_env)) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == len(orders)
        tables = {row[0] for row in db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert set(catalog.CATALOG_TABLES) <= tables


def test_backfill_range_is_one_sweep_and_lands_just_those_days(sandbox, orderspace_env) -> None:
    orders = sandbox.store.all("orders")
    days = sorted({day_of(order, "created") for order in orders})
    start, end = days[len(days) // 2], days[len(days) // 2 + 3]
    sandbox.reset_stats()
    result = materialize_days(orderspace_env, start, end, ["orders", "order_lines"], page_size=10)
    assert result.success
    expected = sorted(order["id"] for order in orders if start <= day_of(order, "created") <= end)
    assert sorted(row[0] for row in query(orderspace_env, "SELECT id FROM orders")) == expected
    assert storage.stored_days(data_dir(orderspace_env), "orders") == sorted(
        {day_of(order, "created") for order in orders if start <= day_of(order, "created") <= end}
    )
    # One listing bounded by the server (created_since/created_before): the range's orders, paged by 10.
    assert sandbox.stats()["requests"] <= math.ceil(len(expected) / 10) + 1
    materialized = {
        event.partition
        for event in result.get_asset_materialization_events()
        if event.asset_key.path == ["orders"]
    }
    assert materialized == {
        day.isoformat() for day in storage.stored_days(data_dir(orderspace_env), "orders")
    }


def test_one_old_partition_is_repulled_by_its_filters_with_a_full_or_an_empty_lake(
    sandbox, orderspace_env
) -> None:
    resources = resources_for(orderspace_env, page_size=5)
    assert run_sync(select=["orders"], resources=resources).success
    root = data_dir(orderspace_env)
    days = storage.stored_days(root, "orders")
    old_day = days[5]
    untouched = {
        day: storage.partition_file(root, "orders", day).stat().st_mtime_ns for day in days if day != old_day
    }
    before = storage.read_partition(root, "orders", old_day).column("id").to_pylist()
    in_day = sum(1 for order in sandbox.store.all("orders") if day_of(order, "created") == old_day)

    sandbox.reset_stats()
    result = materialize_days(orderspace_env, old_day, old_day, ["orders"], page_size=5)
    assert result.success
    # Without the filters this would page through everything newer: len(orders) / 5 requests.
    assert sandbox.stats()["requests"] <= math.ceil(in_day / 5) + 1
    assert sandbox.stats()["requests"] < len(sandbox.store.all("orders")) / 5 / 4
    assert storage.read_partition(root, "orders", old_day).column("id").to_pylist() == before
    after = {day: storage.partition_file(root, "orders", day).stat().st_mtime_ns for day in untouched}
    assert after == untouched
    metadata = [
        event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.asset_key.path == ["orders"]
    ][-1]
    assert metadata["api_requests"].value == sandbox.stats()["requests"]
    assert metadata["server_filters"].value == {
        "created_since": f"{old_day - timedelta(days=1)}T23:59:59Z",
        "created_before": f"{old_day + timedelta(days=1)}T00:00:00Z",
    }

    # The same day into an empty lake costs the same: nothing local is consulted.
    shutil.rmtree(root / "parquet")
    sandbox.reset_stats()
    assert materialize_days(orderspace_env, old_day, old_day, ["orders"], page_size=5).success
    assert sandbox.stats()["requests"] <= math.ceil(in_day / 5) + 1
    assert storage.stored_days(root, "orders") == [old_day]
    assert storage.read_partition(root, "orders", old_day).column("id").to_pylist() == before


def test_crash_mid_write_leaves_the_old_partition_intact(sandbox, orderspace_env, monkeypatch) -> None:
    assert run_sync(select=["orders"], resources=resources_for(orderspace_env)).success
    root = data_dir(orderspace_env)
    day = storage.stored_days(root, "orders")[3]
    files = {table: storage.partition_file(root, table, day) for table in ("orders", "order_lines")}
    before = {table: path.read_bytes() for table, path in files.items()}

    original = pq.write_table

    def dies_half_way(table, where, **kwargs):
        original(table.slice(0, max(1, table.num_rows // 2)), where, **kwargs)
        raise OSError("killed while writing")

    monkeypatch.setattr(pq, "write_table", dies_half_way)
    result = materialize_days(orderspace_env, day, day, ["orders"])
    monkeypatch.undo()
    assert not result.success
    assert {table: path.read_bytes() for table, path in files.items()} == before
    assert [p.name for p in (root / "parquet").rglob("*.tmp")] == []


def test_schema_drift_extra_field_becomes_a_column_missing_field_nulls(sandbox, orderspace_env) -> None:
    sandbox.drift.set("orders", extra_fields={"loyalty_tier": "gold"}, missing_fields=["customer_po_number"])
    sandbox.drift.set("customers", missing_fields=["minimum_spend"], extra_fields={"rating": {"stars": 4}})
    result = run_sync(select=["orders", "customers"], resources=resources_for(orderspace_env))
    assert result.success, result.describe()
    total = len(sandbox.store.all("orders"))
    assert query(
        orderspace_env, "SELECT count(*), count(loyalty_tier), count(customer_po_number) FROM orders"
    ) == [(total, total, 0)]
    assert query(orderspace_env, "SELECT DISTINCT loyalty_tier FROM orders") == [("gold",)]
    assert query(orderspace_env, "SELECT DISTINCT rating_stars, minimum_spend FROM customers") == [
        ("4", None)
    ]
    with catalog.connect_read_only(data_dir(orderspace_env)) as db:
        columns = {row[0]: row[1] for row in db.execute("DESCRIBE orders").fetchall()}
    assert columns["loyalty_tier"] == "VARCHAR" and columns["customer_po_number"] == "VARCHAR"
    assert columns["net_total"] == "DOUBLE"


def test_checks_pass_on_good_data_and_fail_on_a_corrupted_file(sandbox, orderspace_env) -> None:
    result = run_sync(select=["orders", "products"], resources=resources_for(orderspace_env))
    assert result.success and result.failed_checks == []
    root = data_dir(orderspace_env)
    day = storage.stored_days(root, "orders")[0]
    orders_file = storage.partition_file(root, "orders", day)
    orders = pq.read_table(orders_file)
    changed = orders.set_column(
        orders.schema.get_field_index("net_total"), "net_total", pa.array([9999.0] * orders.num_rows)
    )
    pq.write_table(pa.concat_tables([changed, changed.slice(0, 1)]), orders_file)  # a duplicate, wrong totals
    lines_file = storage.whole_file(root, "product_variants")
    variants = pq.read_table(lines_file)
    product_ids = variants.column("product_id").to_pylist()
    product_ids[0] = "pr_missing"
    pq.write_table(variants.set_column(1, "product_id", pa.array(product_ids)), lines_file)

    checks = dg.AssetSelection.checks_for_assets(*PULL_ASSETS)
    result = dg.materialize(PULL_ASSETS, selection=checks, resources=resources_for(orderspace_env))
    failed = {
        evaluation.asset_check_key.to_user_string()
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    }
    assert failed == {"orders:unique_key", "orders:totals_match_lines", "product_variants:parent_exists"}


def test_daily_schedule_requests_one_range_run_and_that_run_works(
    sandbox, orderspace_env, monkeypatch
) -> None:
    from orderspace_pipelines.definitions import defs
    from orderspace_pipelines.defs.schedules import daily_pull_schedule

    monkeypatch.setenv("ORDERSPACE_LOOKBACK_DAYS", "3")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 2, 0))
    request = daily_pull_schedule(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-17"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-20"

    job = defs.get_job_def("daily_pull_job")
    result = job.execute_in_process(tags=request.tags, resources=resources_for(orderspace_env))
    assert result.success
    expected = sorted(
        order["id"] for order in sandbox.store.all("orders") if date(2026, 11, 17) <= day_of(order, "created")
    )
    assert sorted(row[0] for row in query(orderspace_env, "SELECT id FROM orders")) == expected
    assert query(orderspace_env, "SELECT count(*) FROM customers")[0][0] == len(
        sandbox.store.all("customers")
    )
    assert query(orderspace_env, "SELECT count(*) FROM inventory_levels")[0][0] == 0  # not in the daily job


def test_concurrent_runs_share_the_budget_without_429s(sandbox_factory, tmp_path: Path) -> None:
    # 40 requests per 4 s window for everyone: two processes paging by 5 need ~70 requests between them.
    server = sandbox_factory(rate_limit=40, rate_window=4.0)
    script = (
        "import sys, os, json\n"
        "from orderspace_pipelines.defs.sync import run_sync\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from conftest import resources_for\n"
        "r = run_sync(select=[sys.argv[1]], resources=resources_for(dict(os.environ), page_size=5))\n"
        "print(json.dumps({'ok': r.success, 'requests': r.requests, 'rate_limited': r.rate_limited}))\n"
    )
    env = {
        **os.environ,
        "ORDERSPACE_CLIENT_ID": server.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": server.config.client_secret,
        "ORDERSPACE_API_URL": server.api_url,
        "ORDERSPACE_TOKEN_URL": server.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": "40",
        "ORDERSPACE_RATE_WINDOW_SECONDS": "4",
        "ORDERSPACE_THROTTLE_DB": str(tmp_path / "shared-throttle.sqlite"),
    }
    env.pop("DAGSTER_HOME", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, resource, str(Path(__file__).resolve().parent)],
            env={**env, "ORDERSPACE_DATA_DIR": str(tmp_path / f"data-{resource}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for resource in ("orders", "dispatches")
    ]
    outputs = [
        json.loads(process.communicate(timeout=240)[0].strip().splitlines()[-1]) for process in processes
    ]
    assert all(output["ok"] for output in outputs)
    stats = server.stats()
    assert stats["rate_limited"] == 0
    assert (
        sum(output["requests"] for output in outputs) == stats["requests"] > 40
    )  # more than one window's worth
    assert Counter(output["rate_limited"] for output in outputs) == Counter({0: 2})


def test_page_fetcher_fetches_only_pages_asked_for_and_raises_their_errors() -> None:
    from orderspace_pipelines.client import Page
    from orderspace_pipelines.defs.pull_assets import PageFetcher

    fetched: list[int] = []

    def pages():
        for number in range(3):
            fetched.append(number)
            if number == 2:
                raise RuntimeError("page 2 broke")
            yield Page(records=[{"id": number}], has_more=True, cursor=str(number))

    with PageFetcher(pages()) as fetcher:
        fetcher.want()
        assert fetcher.get().records == [{"id": 0}]
        assert fetched == [0]  # nothing is fetched ahead until the caller asks for it
        fetcher.want()
        assert fetcher.get().records == [{"id": 1}]
        fetcher.want()
        with pytest.raises(RuntimeError, match="page 2 broke"):
            fetcher.get()
    assert fetched == [0, 1, 2]

    with PageFetcher(iter(())) as fetcher:
        fetcher.want()
        assert fetcher.get() is None  # the end of the listing


def test_watermarks_come_from_the_servers_clock_not_ours(tmp_path: Path, monkeypatch) -> None:
    """A server whose clock is a year behind ours: the watermark follows the server's `Date` header.

    (A unit of the clock reading: `httpx.MockTransport` plays a server whose clock differs from ours,
    which the sandbox, sharing this machine's clock, cannot.)
    """
    import httpx

    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.defs.pull_assets import WATERMARK_SAFETY_MARGIN, ServerClock, watermark_from
    from orderspace_pipelines.settings import OrderspaceSettings

    monkeypatch.setenv("ORDERSPACE_TOKEN_CACHE", str(tmp_path / "token.json"))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 1800})
        headers = {"Date": "Sun, 30 Nov 2025 04:00:00 GMT"}
        return httpx.Response(200, json={"products": [], "has_more": False}, headers=headers)

    settings = OrderspaceSettings(
        client_id="id",
        client_secret="secret",
        api_url="http://orderspace.test/v1",
        token_url="http://orderspace.test/oauth/token",
        requests_per_minute=6000,
    )
    with OrderspaceClient(
        settings, throttle_db=str(tmp_path / "throttle.sqlite"), transport=httpx.MockTransport(handler)
    ) as client:
        clock = ServerClock(client)
        assert list(client.iter_pages("products")) == []
    server_start = datetime(2025, 11, 30, 4, 0, tzinfo=UTC)
    assert clock.start() == server_start
    assert watermark_from(clock) == (server_start - WATERMARK_SAFETY_MARGIN).isoformat()
