"""Applying stored webhook events to real Parquet files, from a real SQLite event store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.changes import apply_events, apply_pending, is_older
from tests.changefeed.helpers import (
    Feed,
    customer,
    dispatch,
    ev,
    invoice,
    order,
    product,
    snapshot,
    table_rows,
)


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    opened = Feed(tmp_path / "data")
    yield opened
    opened.store.close()


def _apply(feed: Feed):
    return apply_pending(feed.data_dir, feed.store)


def _ids(feed: Feed, table: str, column: str = "id") -> list[str]:
    return sorted(row[column] for row in table_rows(feed.data_dir, table))


def test_order_created_updated_deleted(feed: Feed) -> None:
    feed.deliver(ev("order.created", order("or_1")), ev("order.created", order("or_2", lines=1)))
    report = _apply(feed)
    assert report.events == 2
    assert report.rows == {"orders": 2, "order_lines": 3}
    orders = table_rows(feed.data_dir, "orders")
    assert sorted((r["id"], r["_day"]) for r in orders) == [("or_1", "2026-11-02"), ("or_2", "2026-11-02")]
    assert feed.store.stats().pending_total == 0

    # An update replaces the row and its lines: one line fewer, dispatched grows.
    feed.deliver(ev("order.updated", order("or_1", status="fulfilled", dispatched=5.0, lines=1)))
    _apply(feed)
    orders = {r["id"]: r for r in table_rows(feed.data_dir, "orders")}
    assert orders["or_1"]["status"] == "fulfilled"
    lines = [r for r in table_rows(feed.data_dir, "order_lines") if r["order_id"] == "or_1"]
    assert [(r["id"], r["dispatched"]) for r in lines] == [("or_1_l0", 5.0)]

    feed.deliver(ev("order.deleted", {"id": "or_1", "deleted": True}))
    report = _apply(feed)
    assert report.removed == {"orders": 1}
    assert _ids(feed, "orders") == ["or_2"]
    assert _ids(feed, "order_lines", "order_id") == ["or_2"]


def test_invoice_date_move_leaves_old_partition(feed: Feed) -> None:
    feed.deliver(
        ev("invoice.created", invoice("iv_1", "2026-11-03")),
        ev("invoice.created", invoice("iv_2", "2026-11-03")),
    )
    _apply(feed)
    feed.deliver(ev("invoice.created", invoice("iv_1", "2026-11-10")))
    _apply(feed)
    invoices = {r["id"]: r["_day"] for r in table_rows(feed.data_dir, "invoices")}
    assert invoices == {"iv_1": "2026-11-10", "iv_2": "2026-11-03"}
    lines = sorted((r["invoice_id"], r["_day"]) for r in table_rows(feed.data_dir, "invoice_lines"))
    assert lines == [("iv_1", "2026-11-10"), ("iv_2", "2026-11-03")]


def test_invoice_move_removes_emptied_partition(feed: Feed) -> None:
    feed.deliver(ev("invoice.created", invoice("iv_1", "2026-11-03")))
    _apply(feed)
    feed.deliver(ev("invoice.created", invoice("iv_1", "2026-11-04")))
    _apply(feed)
    assert storage.stored_days(feed.data_dir, "invoices") == [storage_day("2026-11-04")]


def storage_day(text: str):
    from datetime import date

    return date.fromisoformat(text)


def test_payment_updates_invoice_once(feed: Feed) -> None:
    feed.deliver(ev("invoice.created", invoice("iv_1")))
    _apply(feed)
    payment = {
        "invoice_id": "iv_1",
        "invoice_number": "INV-1",
        "amount": 20.0,
        "payment_date": "2026-11-20",
        "source": "card",
        "reference": "pi_1",
    }
    feed.deliver(ev("payment.created", payment))
    _apply(feed)
    [stored] = table_rows(feed.data_dir, "invoices")
    assert stored["paid"] is False  # 20 of 48 paid
    feed.deliver(ev("payment.created", {**payment, "amount": 28.0, "reference": "pi_2"}))
    # A duplicate payment (same reference, amount, date) in another delivery is not added twice.
    feed.deliver(ev("payment.created", payment), ev("order.created", order("or_9")))
    _apply(feed)
    pays = table_rows(feed.data_dir, "invoice_payments")
    assert sorted((p["reference"], p["amount"], p["line_number"]) for p in pays) == [
        ("pi_1", 20.0, 0),
        ("pi_2", 28.0, 1),
    ]
    [stored] = table_rows(feed.data_dir, "invoices")
    assert stored["paid"] is True


def test_payment_for_unknown_invoice_is_counted_not_lost_silently(feed: Feed) -> None:
    feed.deliver(ev("payment.created", {"invoice_id": "iv_404", "amount": 1.0, "payment_date": "2026-11-20"}))
    report = _apply(feed)
    assert report.unplaced == 1
    assert table_rows(feed.data_dir, "invoice_payments") == []


def test_invoice_deleted_with_lines_and_payments(feed: Feed) -> None:
    pay = [{"amount": 5.0, "payment_date": "2026-11-04", "reference": "x"}]
    feed.deliver(ev("invoice.created", invoice("iv_1", payments=pay)), ev("invoice.created", invoice("iv_2")))
    _apply(feed)
    assert _ids(feed, "invoice_payments", "invoice_id") == ["iv_1"]
    feed.deliver(ev("invoice.deleted", {"id": "iv_1", "number": "INV-1", "deleted": True}))
    _apply(feed)
    assert _ids(feed, "invoices") == ["iv_2"]
    assert _ids(feed, "invoice_lines", "invoice_id") == ["iv_2"]
    assert table_rows(feed.data_dir, "invoice_payments") == []


def test_dispatch_created(feed: Feed) -> None:
    feed.deliver(ev("dispatch.created", dispatch("di_1")))
    _apply(feed)
    assert [(r["id"], r["_day"]) for r in table_rows(feed.data_dir, "dispatches")] == [("di_1", "2026-11-05")]
    assert [r["dispatch_id"] for r in table_rows(feed.data_dir, "dispatch_lines")] == ["di_1"]


def test_customers_and_products_merge_by_id(feed: Feed) -> None:
    feed.deliver(
        ev("customer.created", customer("cu_1")),
        ev("customer.created", customer("cu_2")),
        ev("product.created", product("pr_1")),
        ev("product.created", product("pr_2")),
    )
    _apply(feed)
    feed.deliver(
        ev("customer.updated", customer("cu_1", "Green Sky")),
        ev("customer.deleted", {"id": "cu_2", "company_name": "x", "deleted": True}),
        ev("product.updated", product("pr_1", "Tee 2", variants=1)),
        ev("product.deleted", {"id": "pr_2", "deleted": True}),
    )
    report = _apply(feed)
    assert report.removed == {"customers": 1, "products": 1}
    assert [(r["id"], r["company_name"]) for r in table_rows(feed.data_dir, "customers")] == [
        ("cu_1", "Green Sky")
    ]
    assert [(r["id"], r["name"]) for r in table_rows(feed.data_dir, "products")] == [("pr_1", "Tee 2")]
    assert _ids(feed, "product_variants") == ["pr_1_v0"]


def test_inventory_levels_updated(feed: Feed) -> None:
    level = {"sku": "AD01-10", "on_hand": 20.0, "on_hand_adjustment": 10.0, "available": 20.0}
    feed.deliver(ev("inventory_level.updated", level), ev("inventory_level.updated", {**level, "sku": "B"}))
    feed.deliver(ev("inventory_level.updated", {**level, "on_hand": 7.0, "available": 6.0}))
    _apply(feed)
    rows = {r["sku"]: (r["on_hand"], r["available"]) for r in table_rows(feed.data_dir, "inventory_levels")}
    assert rows == {"AD01-10": (7.0, 6.0), "B": (20.0, 20.0)}


def test_deleted_product_takes_its_inventory_levels(feed: Feed) -> None:
    feed.deliver(ev("product.created", product("pr_1")), ev("product.created", product("pr_2")))
    level = {"sku": "pr_1-0", "on_hand": 5.0, "available": 5.0}
    skus = ("pr_1-0", "pr_1-1", "pr_2-0")
    feed.deliver(*(ev("inventory_level.updated", {**level, "sku": sku}) for sku in skus))
    _apply(feed)
    # A level change, then its product's deletion, applied in one batch: the level goes with the product.
    feed.deliver(ev("inventory_level.updated", {**level, "sku": "pr_1-1", "on_hand": 9.0}))
    feed.deliver(ev("product.deleted", {"id": "pr_1", "deleted": True}))
    report = _apply(feed)
    assert report.removed == {"products": 1, "inventory_levels": 2}
    assert _ids(feed, "inventory_levels", "sku") == ["pr_2-0"]
    assert _ids(feed, "product_variants") == ["pr_2_v0", "pr_2_v1"]


def test_late_update_after_delete_never_resurrects(feed: Feed) -> None:
    feed.deliver(ev("order.created", order("or_1")), ev("customer.created", customer("cu_1")))
    _apply(feed)
    feed.deliver(
        ev("order.deleted", {"id": "or_1", "deleted": True}),
        ev("customer.deleted", {"id": "cu_1", "deleted": True}),
    )
    _apply(feed)
    # A late (older) update arrives in a later batch: stays deleted.
    feed.deliver(
        ev("order.updated", order("or_1", status="released")), ev("customer.updated", customer("cu_1"))
    )
    report = _apply(feed)
    assert report.tombstoned_skipped == 2
    assert table_rows(feed.data_dir, "orders") == []
    assert table_rows(feed.data_dir, "customers") == []
    # ... and within one batch, an update after the delete is ignored too.
    feed.deliver(ev("order.created", order("or_2")))
    feed.deliver(ev("order.deleted", {"id": "or_2", "deleted": True}))
    feed.deliver(ev("order.updated", order("or_2", status="released")))
    _apply(feed)
    assert table_rows(feed.data_dir, "orders") == []


def test_older_order_state_never_overwrites_newer(feed: Feed) -> None:
    feed.deliver(ev("order.updated", order("or_1", status="fulfilled", dispatched=5.0)))
    _apply(feed)
    feed.deliver(ev("order.created", order("or_1", status="new", dispatched=0.0)))  # late, older state
    report = _apply(feed)
    assert report.stale_skipped == 1
    [stored] = table_rows(feed.data_dir, "orders")
    assert stored["status"] == "fulfilled"
    assert {r["dispatched"] for r in table_rows(feed.data_dir, "order_lines")} == {5.0}
    # In one batch, received newer-then-older: the newer one is kept.
    feed.deliver(ev("order.updated", order("or_3", dispatched=3.0)))
    feed.deliver(ev("order.updated", order("or_3", dispatched=1.0)))
    _apply(feed)
    assert {r["dispatched"] for r in table_rows(feed.data_dir, "order_lines") if r["order_id"] == "or_3"} == {
        3.0
    }


def test_older_invoice_state_never_overwrites_newer(feed: Feed) -> None:
    pay = [{"amount": 48.0, "payment_date": "2026-11-04", "reference": "x"}]
    feed.deliver(ev("invoice.created", invoice("iv_1", paid=True, payments=pay)))
    feed.deliver(ev("invoice.created", invoice("iv_1", paid=False)))
    _apply(feed)
    [stored] = table_rows(feed.data_dir, "invoices")
    assert stored["paid"] is True
    assert len(table_rows(feed.data_dir, "invoice_payments")) == 1


def test_is_older_rules() -> None:
    assert is_older("product", {"updated_at": "2026-01-01T00:00:00Z"}, {"updated_at": "2026-02-01T00:00:00Z"})
    assert not is_older(
        "product", {"updated_at": "2026-03-01T00:00:00Z"}, {"updated_at": "2026-02-01T00:00:00Z"}
    )
    assert not is_older("customer", {"name": "a"}, {"name": "b"})  # receipt order is the only guide


def test_duplicates_and_rerun_are_idempotent(feed: Feed) -> None:
    events = [
        ev("order.created", order("or_1")),
        ev("invoice.created", invoice("iv_1")),
        ev(
            "payment.created",
            {"invoice_id": "iv_1", "amount": 10.0, "payment_date": "2026-11-20", "reference": "p"},
        ),
        ev("customer.created", customer("cu_1")),
        ev("product.created", product("pr_1")),
        ev("inventory_level.updated", {"sku": "S", "on_hand": 1.0, "available": 1.0}),
    ]
    feed.deliver(*events)
    stored = feed.store.pending(100)
    apply_events(feed.data_dir, stored)
    first = snapshot(feed.data_dir)
    # The same events again (e.g. marked applied never happened), and the same records in a new delivery.
    apply_events(feed.data_dir, stored)
    assert snapshot(feed.data_dir) == first
    feed.deliver(*events[:2], events[2])
    _apply(feed)
    assert len(table_rows(feed.data_dir, "orders")) == 1
    assert len(table_rows(feed.data_dir, "invoice_payments")) == 1
    assert len(table_rows(feed.data_dir, "order_lines")) == 2


def test_crash_between_write_and_mark_applied(feed: Feed) -> None:
    class Crash(RuntimeError):
        pass

    class CrashingStore:
        def __init__(self, real) -> None:
            self.real = real

        def pending(self, limit, resources=None):
            return self.real.pending(limit, resources)

        def mark_applied(self, seqs, *, applied_at=None):
            raise Crash("power cut")

    feed.deliver(ev("order.created", order("or_1")), ev("order.deleted", {"id": "or_0", "deleted": True}))
    feed.deliver(ev("invoice.created", invoice("iv_1")))
    with pytest.raises(Crash):
        apply_pending(feed.data_dir, CrashingStore(feed.store))
    after_crash = snapshot(feed.data_dir)
    assert feed.store.stats().pending_total == 3  # nothing marked
    report = _apply(feed)
    assert report.events == 3
    assert snapshot(feed.data_dir) == after_crash
    assert feed.store.stats().pending_total == 0
