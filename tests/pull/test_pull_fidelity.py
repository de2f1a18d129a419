"""Issue 7 on the pull side, against the sandbox over HTTP with real Dagster runs, Parquet and DuckDB.

- Ranges are fetched with the API's own date filters: one old day, or 30 days, costs
  ceil(records in the range / page size) + 1 requests at most, with an empty lake and with a full one.
- Back-dated and forward-dated invoices are in the lake after the daily pull and after a backfill.
- Products and inventory levels refresh with `updated_since`: an unchanged catalogue costs one request
  each, a few changes ceil(changes / page size) + 1, and the lake still equals the account.

Figures are printed (run with `-s` to see them); the assertions hold them to the bounds above.
"""

from __future__ import annotations

import copy
import math
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.defs.partitions import range_tags
from orderspace_pipelines.defs.pull_assets import FULL_REFRESH_TAG, PULL_ASSETS
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.lake import lake_connection, storage
from orderspace_pipelines.lake.flatten import record_date

from .conftest import resources_for

PAGE = 5  # small pages, so that the tiny account's ranges span several of them
DATE_FIELD = {"orders": "created", "dispatches": "created", "invoices": "invoice_date"}


def data_dir(env: dict[str, str]) -> Path:
    return Path(env["ORDERSPACE_DATA_DIR"])


def lake_ids(env: dict[str, str], table: str) -> list[str]:
    with lake_connection(data_dir(env)) as db:
        return sorted(row[0] for row in db.execute(f"SELECT id FROM {table}").fetchall())


def day_of(record: dict, field: str) -> date:
    day = record_date(record[field])
    assert day is not None
    return day


def requests_to(sandbox, resource: str) -> int:
    return sandbox.stats()["by_path"].get(f"GET /v1/{resource}", 0)


def materialize_range(env, resource: str, start: date, end: date, page_size: int = PAGE):
    result = dg.materialize(
        PULL_ASSETS,
        selection=[resource],
        resources=resources_for(env, page_size),
        tags=range_tags(start, end),
        raise_on_error=False,
    )
    assert result.success
    return result


def wipe_lake(env: dict[str, str]) -> None:
    shutil.rmtree(data_dir(env) / "parquet", ignore_errors=True)
    shutil.rmtree(data_dir(env) / "state", ignore_errors=True)


@pytest.mark.parametrize("resource", ["orders", "dispatches", "invoices"])
def test_one_old_day_and_30_days_cost_the_records_in_range_whatever_the_lake_holds(
    sandbox, orderspace_env, resource: str
) -> None:
    records = sandbox.store.all(resource)
    field = DATE_FIELD[resource]
    days = sorted({day_of(record, field) for record in records})
    newest = sandbox.config.end_date  # the account's last day (some invoices are forward-dated beyond it)
    # An old day with several records, and the 30 days before the last 15 of the account.
    old_day = max(
        (day for day in days if day <= newest - timedelta(days=20)),
        key=lambda day: sum(day_of(record, field) == day for record in records),
    )
    start, end = newest - timedelta(days=45), newest - timedelta(days=16)

    def expected(first: date, last: date) -> list[str]:
        return sorted(record["id"] for record in records if first <= day_of(record, field) <= last)

    in_day, in_range = expected(old_day, old_day), expected(start, end)
    assert len(in_day) >= 2 and len(in_range) > 3 * PAGE

    costs: dict[str, int] = {}
    for lake in ("empty lake", "full lake"):
        wipe_lake(orderspace_env)
        if lake == "full lake":
            assert run_sync(select=[resource], resources=resources_for(orderspace_env)).success
            assert len(lake_ids(orderspace_env, resource)) == len(records)
        sandbox.reset_stats()
        materialize_range(orderspace_env, resource, old_day, old_day)
        costs[f"one day, {lake}"] = requests_to(sandbox, resource)
        assert costs[f"one day, {lake}"] <= math.ceil(len(in_day) / PAGE) + 1
        sandbox.reset_stats()
        materialize_range(orderspace_env, resource, start, end)
        costs[f"30 days, {lake}"] = requests_to(sandbox, resource)
        assert costs[f"30 days, {lake}"] <= math.ceil(len(in_range) / PAGE) + 1
        stored = lake_ids(orderspace_env, resource)
        if lake == "empty lake":
            assert stored == sorted(set(in_day + in_range))
        else:
            assert stored == sorted(record["id"] for record in records)  # nothing lost, nothing doubled
    assert costs["one day, empty lake"] == costs["one day, full lake"]
    assert costs["30 days, empty lake"] == costs["30 days, full lake"]
    print(
        f"\n{resource} (page size {PAGE}): one old day {old_day} holds {len(in_day)} records, "
        f"{costs['one day, full lake']} requests; 30 days {start}..{end} hold {len(in_range)} records, "
        f"{costs['30 days, full lake']} requests (same with an empty lake)"
    )


def _skewed(store, today: date) -> tuple[list[dict], list[dict]]:
    created = store.created_times("invoices")

    def shift(invoice: dict) -> int:
        made = datetime.fromtimestamp(created[invoice["id"]], UTC).date()
        return (day_of(invoice, "invoice_date") - made).days

    invoices = store.all("invoices")
    return [i for i in invoices if shift(i) <= -14], [i for i in invoices if shift(i) >= 14]


def _add_invoice(store, template: dict, number: int, invoice_date: date) -> dict:
    """An invoice created now (through the sandbox's store: its API has no invoice creation) but dated
    `invoice_date`, as users back-date and forward-date them."""
    record = copy.deepcopy(template)
    record["id"] = f"iv_skewed{number}"
    record["number"] = f"SKEW-{number}"
    record["invoice_date"] = invoice_date.isoformat()
    with store.lock:
        store._collection("invoices").append(record, store._stamp())
    return record


def test_back_and_forward_dated_invoices_land_with_the_daily_pull_and_with_a_backfill(
    sandbox_factory, orderspace_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orderspace_pipelines.definitions import defs
    from orderspace_pipelines.defs.schedules import daily_pull_schedule

    today = datetime.now(UTC).date()
    server = sandbox_factory(end_date=today)
    env = {
        **orderspace_env,
        "ORDERSPACE_API_URL": server.api_url,
        "ORDERSPACE_TOKEN_URL": server.token_url,
    }
    store = server.store
    back, forward = _skewed(store, today)
    assert back and forward  # the generated account has both kinds

    # A full pull lands every invoice, whatever its date, and leaves a watermark for the daily pull.
    assert run_sync(select=["invoices"], resources=resources_for(env, PAGE)).success
    assert lake_ids(env, "invoices") == sorted(i["id"] for i in store.all("invoices"))
    assert "invoices.created_since" in storage.read_state(data_dir(env))

    # Created now: one dated 40 days ago (long before the daily pull's look-back), one dated in 30 days.
    template = store.all("invoices")[0]
    old_day, future_day = today - timedelta(days=40), today + timedelta(days=30)
    neighbours = lake_ids_of_day(env, old_day)
    backdated = _add_invoice(store, template, 1, old_day)
    forward_dated = _add_invoice(store, template, 2, future_day)

    monkeypatch.setenv("ORDERSPACE_LOOKBACK_DAYS", "3")
    context = dg.build_schedule_context(scheduled_execution_time=datetime.now(UTC))
    request = daily_pull_schedule(context)
    server.reset_stats()
    result = defs.get_job_def("daily_pull_job").execute_in_process(
        tags=request.tags, resources=resources_for(env, PAGE)
    )
    assert result.success
    stored = lake_ids(env, "invoices")
    assert backdated["id"] in stored and forward_dated["id"] in stored
    assert stored == sorted(i["id"] for i in store.all("invoices"))  # nothing else lost or doubled
    assert lake_ids_of_day(env, old_day) == sorted([*neighbours, backdated["id"]])
    assert lake_ids_of_day(env, future_day) == [forward_dated["id"]]
    assert [
        row[0] for row in query(env, "SELECT count(*) FROM invoice_lines WHERE invoice_id = 'iv_skewed1'")
    ] == [len(template["invoice_lines"])]
    print(f"\ndaily pull with invoice catch-up: {requests_to(server, 'invoices')} invoice requests")

    # A backfill of a closed range around the back-dated day, into an empty lake: every invoice dated in it.
    wipe_lake(env)
    first, last = old_day - timedelta(days=5), old_day + timedelta(days=5)
    materialize_range(env, "invoices", first, last)
    dated_in = sorted(i["id"] for i in store.all("invoices") if first <= day_of(i, "invoice_date") <= last)
    assert backdated["id"] in dated_in and lake_ids(env, "invoices") == dated_in
    generated_back = [i for i in back if first <= day_of(i, "invoice_date") <= last]
    assert all(i["id"] in dated_in for i in generated_back)
    # A backfill reaching today lands the forward-dated invoices too, in their own date folders.
    materialize_range(env, "invoices", today - timedelta(days=2), today)
    stored = lake_ids(env, "invoices")
    assert forward_dated["id"] in stored
    assert all(i["id"] in stored for i in forward if day_of(i, "invoice_date") >= today - timedelta(days=2))
    assert storage.partition_file(data_dir(env), "invoices", future_day).is_file()


def lake_ids_of_day(env: dict[str, str], day: date) -> list[str]:
    table = storage.read_partition(data_dir(env), "invoices", day)
    return [] if table is None else sorted(table.column("id").to_pylist())


def query(env: dict[str, str], sql: str) -> list[tuple]:
    with lake_connection(data_dir(env)) as db:
        return db.execute(sql).fetchall()


def _lake_matches_the_account(env: dict[str, str], store) -> None:
    levels = {
        (lv["sku"], float(lv["on_hand"]), float(lv["available"])) for lv in store.all("inventory_levels")
    }
    assert set(query(env, "SELECT sku, on_hand, available FROM inventory_levels")) == levels
    assert query(env, "SELECT count(*) FROM inventory_levels")[0][0] == len(levels)
    products = {(p["id"], p["name"]) for p in store.all("products")}
    assert set(query(env, "SELECT id, name FROM products")) == products
    assert query(env, "SELECT count(*) FROM products")[0][0] == len(products)
    variants = {
        (v["id"], p["id"], v["sku"], float(v["unit_price"]))
        for p in store.all("products")
        for v in p["product_variants"]
    }
    assert set(query(env, "SELECT id, product_id, sku, unit_price FROM product_variants")) == variants
    assert query(env, "SELECT count(*) FROM product_variants")[0][0] == len(variants)


def test_products_and_inventory_refresh_with_updated_since_and_stay_complete(
    sandbox, orderspace_env, settings
) -> None:
    page = 4
    store = sandbox.store
    resources = resources_for(orderspace_env, page)
    skus, products = len(store.all("inventory_levels")), len(store.all("products"))
    assert skus > 3 * page and products > page

    sandbox.reset_stats()
    assert run_sync(select=["products", "inventory_levels"], resources=resources).success
    full = {name: requests_to(sandbox, name) for name in ("products", "inventory_levels")}
    assert full["inventory_levels"] >= math.ceil(skus / page)
    _lake_matches_the_account(orderspace_env, store)

    # Nothing changed: one request each.
    sandbox.reset_stats()
    assert run_sync(select=["products", "inventory_levels"], resources=resources).success
    unchanged = {name: requests_to(sandbox, name) for name in ("products", "inventory_levels")}
    assert unchanged == {"products": 1, "inventory_levels": 1}
    _lake_matches_the_account(orderspace_env, store)

    # A few changes through the API: five levels, two products (a new name, a new variant price).
    with OrderspaceClient.from_settings(settings) as client:
        levels = store.all("inventory_levels")[:5]
        client.update_inventory_levels([{"sku": lv["sku"], "on_hand": lv["on_hand"] + 2.5} for lv in levels])
        for product in store.all("products")[:2]:
            variants = [
                {"id": v["id"], "unit_price": v["unit_price"] + 1} for v in product["product_variants"]
            ]
            client.update_product(
                product["id"], {"name": product["name"] + " (new)", "product_variants": variants}
            )
    sandbox.reset_stats()
    assert run_sync(select=["products", "inventory_levels"], resources=resources).success
    changed = {name: requests_to(sandbox, name) for name in ("products", "inventory_levels")}
    assert changed["inventory_levels"] <= math.ceil(5 / page) + 1
    assert changed["products"] <= math.ceil(2 / page) + 1
    _lake_matches_the_account(orderspace_env, store)
    assert query(orderspace_env, "SELECT count(DISTINCT snapshot_at) FROM inventory_level_snapshots") == [
        (3,)
    ]
    assert query(orderspace_env, "SELECT count(*) FROM inventory_level_snapshots") == [(3 * skus,)]

    # A full reload stays available (deletions show up only then): the run tag.
    sandbox.reset_stats()
    result = dg.materialize(
        PULL_ASSETS,
        selection=["products", "inventory_levels"],
        resources=resources,
        tags={FULL_REFRESH_TAG: "true"},
    )
    assert result.success
    assert requests_to(sandbox, "inventory_levels") == full["inventory_levels"]
    _lake_matches_the_account(orderspace_env, store)
    print(
        f"\nproducts / inventory levels (page size {page}, {products} products, {skus} SKUs): "
        f"full load {full['products']} / {full['inventory_levels']} requests, "
        f"unchanged refresh {unchanged['products']} / {unchanged['inventory_levels']}, "
        f"after 2 product and 5 level changes {changed['products']} / {changed['inventory_levels']}"
    )


def test_customers_created_is_a_typed_timestamp_in_the_lake(sandbox, orderspace_env) -> None:
    assert run_sync(select=["customers"], resources=resources_for(orderspace_env)).success
    with lake_connection(data_dir(orderspace_env)) as db:
        types = dict(db.execute("SELECT column_name, column_type FROM (DESCRIBE customers)").fetchall())
        created = dict(db.execute("SELECT id, created FROM customers").fetchall())
    assert types["created"] == "TIMESTAMP WITH TIME ZONE"
    for customer in sandbox.store.all("customers"):
        expected = datetime.fromisoformat(customer["created"].replace("Z", "+00:00"))
        assert created[customer["id"]] == expected
