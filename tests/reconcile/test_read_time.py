"""Reconcile reads a record at R and writes it at W, later: what landed in between survives (rule 6 of
`lake.changes`).

Deterministic interleavings, in the style of `tests/changefeed/test_pull_vs_apply.py`: reconcile's read, an
event applied (a real event store, the real applier), then reconcile's write. First through
`lake.reconcile.write` with real files; then with the real `Reconciler` against a sandbox over HTTP, the
event landed right after the listing returned (a hook on the reconciler's fetcher), before it compares and
writes. One clock (`Ticks`) gives reconcile's read times and the events' receipt times, in call order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orderspace_devtools.lake_diff import diff_lake, truth_from_sandbox
from orderspace_pipelines import reconcile as reconcile_module
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.defs.partitions import first_partition_day
from orderspace_pipelines.endpoints import ENDPOINTS
from orderspace_pipelines.lake import reconcile as lake_reconcile
from orderspace_pipelines.lake.changes import ApplyReport, apply_pending
from orderspace_pipelines.lake.reconcile import stored_keys, tombstoned
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import PartitionedLanding
from orderspace_pipelines.reconcile import DEFAULT_SWEEP_DAYS, Reconciler, plan_slice, saved_since
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_pipelines.webhooks.events import parse_delivery
from orderspace_pipelines.webhooks.store import SqliteEventStore
from tests.changefeed.helpers import Feed, customer, ev, order, table_rows
from tests.reconcile.conftest import SandboxHttp

DAY = "2026-11-02T10:00:00Z"
ORDERS, CUSTOMERS = ENDPOINTS["orders"], ENDPOINTS["customers"]


def _by_id(data_dir: Path, table: str, key: str = "id") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in table_rows(data_dir, table)}


# --- the applier, through `lake.reconcile.write` -------------------------------------------------------


def test_an_event_applied_between_the_read_and_the_write_survives(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    feed.deliver(ev("order.created", order("or_a", DAY)))  # the lake's state before reconcile reads
    apply_pending(data_dir, feed.store)
    read_at = feed.clock + timedelta(milliseconds=500)  # reconcile reads or_a: on hold (no event for it)
    read = order("or_a", DAY, status="on_hold")
    feed.deliver(ev("order.updated", order("or_a", DAY, status="cancelled")))  # received after the read
    apply_pending(data_dir, feed.store)
    written = lake_reconcile.write(data_dir, ORDERS, [read], [], at=read_at)
    feed.store.close()
    stored = _by_id(data_dir, "orders")["or_a"]
    assert stored["status"] == "cancelled"  # not rolled back to the state reconcile read before it
    assert stored["_loaded_at"] == feed.clock  # still stamped with the event's receipt
    assert written.skipped == 1
    assert written.changed == {}


def test_a_pull_that_started_after_the_read_and_wrote_before_the_write_survives(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    read_at = feed.clock  # reconcile reads or_a (new)...
    pull = PartitionedLanding(
        data_dir, RESOURCES["orders"], start=None, end=None, loaded_at=read_at + timedelta(seconds=1)
    )
    pull.add_page([order("or_a", DAY, status="cancelled")])  # ...a pull starts later, reads it cancelled
    pull.finish()
    written = lake_reconcile.write(data_dir, ORDERS, [order("or_a", DAY, status="new")], [], at=read_at)
    assert _by_id(data_dir, "orders")["or_a"]["status"] == "cancelled"
    assert written.skipped == 1


@pytest.mark.parametrize(
    ("endpoint", "record"),
    [(ORDERS, order("or_new", DAY)), (CUSTOMERS, customer("cu_new", "Created after the read"))],
    ids=["orders (by day)", "customers (whole)"],
)
def test_a_record_landed_after_the_listings_read_is_neither_removed_nor_tombstoned(
    tmp_path: Path, endpoint: Any, record: dict[str, Any]
) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    listing_read_at = feed.clock  # the listing (which cannot hold it) is read...
    singular = lake_reconcile.SINGULAR_OF[endpoint.resource]
    feed.deliver(ev(f"{singular}.created", record))  # ...then the record is created and its event applied
    apply_pending(data_dir, feed.store)
    feed.store.close()
    # Stored but not listed: reconcile asks to remove it, with the listing's read time.
    written = lake_reconcile.write(data_dir, endpoint, [], [record["id"]], at=listing_read_at)
    assert record["id"] in stored_keys(data_dir, endpoint)
    assert tombstoned(data_dir, endpoint, [record["id"]]) == set()
    assert written.removed.get(endpoint.table, 0) == 0
    assert written.skipped == 1


def test_reconcile_still_overwrites_and_removes_what_was_loaded_before_its_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    feed.deliver(ev("order.created", order("or_a", DAY)), ev("order.created", order("or_gone", DAY)))
    apply_pending(data_dir, feed.store)
    feed.store.close()
    read_at = feed.clock + timedelta(seconds=1)  # after both landed: the listing is the truth
    read = order("or_a", DAY, status="cancelled")
    written = lake_reconcile.write(data_dir, ORDERS, [read], ["or_gone"], at=read_at)
    orders = _by_id(data_dir, "orders")
    assert sorted(orders) == ["or_a"]
    assert orders["or_a"]["status"] == "cancelled"
    assert orders["or_a"]["_loaded_at"] == read_at  # reconcile's rows carry the time it read them
    assert "or_gone" not in {row["order_id"] for row in table_rows(data_dir, "order_lines")}
    assert tombstoned(data_dir, ORDERS, ["or_gone"]) == {"or_gone"}
    assert written.changed == {"orders": 1}
    assert written.removed == {"orders": 1}
    assert written.skipped == 0


# --- the Reconciler over HTTP --------------------------------------------------------------------------


class Ticks:
    """The lake's clock for one test: each reading 1 ms after the last, from the test's start (later than
    every row the session's pull stored)."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def __call__(self) -> datetime:
        self.moment += timedelta(milliseconds=1)
        return self.moment


def deliver(data_dir: Path, received_at: datetime, *events: dict[str, Any]) -> ApplyReport:
    """Store one delivery (received at `received_at`) in the lake's event store and apply what is pending."""
    body = json.dumps(list(events)).encode()
    store = SqliteEventStore(data_dir / "webhooks" / "events.sqlite")
    try:
        store.add_delivery(body, parse_delivery(body), received_at=received_at)
        return apply_pending(data_dir, store)
    finally:
        store.close()


def after_listing(monkeypatch: pytest.MonkeyPatch, what: str, action: Callable[[], None]) -> list[str]:
    """Run `action` once the reconciler's listing `what` has returned (before it compares and writes)."""
    original = reconcile_module._Fetcher.listing
    ran: list[str] = []

    def listing(self: Any, name: str, resource: str, **filters: Any) -> list[dict[str, Any]]:
        records = original(self, name, resource, **filters)
        if name == what:
            action()
            ran.append(name)
        return records

    monkeypatch.setattr(reconcile_module._Fetcher, "listing", listing)
    return ran


@contextmanager
def reconciler(env: dict[str, str], lake: Path, clock: Ticks) -> Iterator[Reconciler]:
    """A full-cycle reconciler (whole tables listed) over the sandbox, on `clock`."""
    with OrderspaceClient.from_settings(OrderspaceSettings.read(env)) as client:
        sweep = plan_slice(lake, first_partition_day(), clock().date(), DEFAULT_SWEEP_DAYS, whole=True)
        yield Reconciler(client, lake, since=saved_since(lake), sweep=sweep, now=clock)


def _names(lake: Path) -> dict[str, str]:
    return {row["id"]: row["company_name"] for row in table_rows(lake, "customers")}


def test_reconciler_keeps_a_customer_changed_after_its_listing(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Ticks()
    cid = api.records("customers")[0]["id"]
    # Changed in the account with no event reaching the lake: reconcile will read this name...
    api.send("PUT", f"customers/{cid}", {"customer": {"company_name": "Read by reconcile"}})

    def changed_again() -> None:  # ...then it changes again and that change's event lands first
        record = api.send("PUT", f"customers/{cid}", {"customer": {"company_name": "Changed after the read"}})
        assert deliver(lake, clock(), ev("customer.updated", record["customer"])).events == 1

    ran = after_listing(monkeypatch, "customers (whole)", changed_again)
    with reconciler(orderspace_env, lake, clock) as run:
        run.customers()
    assert ran == ["customers (whole)"]
    assert _names(lake)[cid] == "Changed after the read"
    assert run.report.written.skipped == 1
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url), tables=["customers"])
    assert diff.equal, diff.summary()


def test_reconciler_keeps_an_order_created_after_its_sweep_listing(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Ticks()
    cid = api.records("customers")[0]["id"]
    sku = api.records("products")[0]["product_variants"][0]["sku"]
    created: list[str] = []

    def create() -> None:  # an order created after the sweep listed every day; its event lands at once
        body = {"order": {"customer_id": cid, "order_lines": [{"sku": sku, "quantity": 2}]}}
        record = api.send("POST", "orders", body)["order"]
        created.append(record["id"])
        assert deliver(lake, clock(), ev("order.created", record)).events == 1

    after_listing(monkeypatch, "orders sweep", create)
    with reconciler(orderspace_env, lake, clock) as run:
        run.orders(set())
    [new_id] = created
    assert new_id in stored_keys(lake, ORDERS)
    assert tombstoned(lake, ORDERS, [new_id]) == set()
    assert run.report.written.removed.get("orders", 0) == 0
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url), tables=["orders", "order_lines"])
    assert diff.equal, diff.summary()


def test_reconciler_keeps_an_inventory_level_set_after_its_whole_listing(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Ticks()
    sku = "RT-READ-1"

    def new_level() -> None:  # a new product's stock is set after the whole listing; its event lands
        product = {"code": "RT1", "name": "Tee", "product_variants": [{"sku": sku, "unit_price": 5.0}]}
        api.send("POST", "products", {"product": product})
        levels = api.send("POST", "inventory_levels", {"inventory_levels": [{"sku": sku, "on_hand": 7}]})
        [level] = levels["inventory_levels"]
        assert deliver(lake, clock(), ev("inventory_level.updated", level)).events == 1

    ran = after_listing(monkeypatch, "inventory_levels (whole)", new_level)
    with reconciler(orderspace_env, lake, clock) as run:
        assert run.sweep.cycle_start  # the whole list replaces the table (merge=False)
        run.inventory_levels()
    assert ran == ["inventory_levels (whole)"]
    levels = _by_id(lake, "inventory_levels", key="sku")
    assert levels[sku]["on_hand"] == 7.0
    assert run.report.written.removed.get("inventory_levels", 0) == 0
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url), tables=["inventory_levels"])
    assert diff.equal, diff.summary()


def test_reconciler_still_fixes_a_stale_customer_and_removes_a_deleted_one(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str]
) -> None:
    clock = Ticks()
    customers = api.records("customers")
    stale, gone = customers[0], customers[-1]
    # Before reconcile reads: an event (received then) left a state the account no longer has, and a
    # customer was deleted with its event lost.
    deliver(lake, clock(), ev("customer.updated", {**stale, "company_name": "Stale name"}))
    assert _names(lake)[stale["id"]] == "Stale name"
    api.delete("customers", gone["id"])
    with reconciler(orderspace_env, lake, clock) as run:
        run.customers()
    assert _names(lake)[stale["id"]] == stale["company_name"]
    assert gone["id"] not in stored_keys(lake, CUSTOMERS)
    assert tombstoned(lake, CUSTOMERS, [gone["id"]]) == {gone["id"]}
    assert run.report.written.changed == {"customers": 1}
    assert run.report.written.removed == {"customers": 1}
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url), tables=["customers"])
    assert diff.equal, diff.summary()
