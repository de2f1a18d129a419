"""A pull that read the API before an event was applied, and writes its day after: the known gap.

Deterministic interleaving, with the real landing code, a real event store and the real applier:

1. the lake holds a day from an earlier pull;
2. a pull starts (`loaded_at` = its start) and lands a page read from the API *before* the events below;
3. events received after the pull started are applied: an order dispatched, a new order, a deletion;
4. the pull writes (finishes) its day.

Without the rule in `lake.changes.PullGuard`, step 4 rolled the dispatched order back, dropped the new
order and resurrected the deleted one (the first test failed that way before the fix).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orderspace_pipelines.lake.changes import apply_pending
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import DayMerge, PartitionedLanding, WholeLanding
from tests.changefeed.helpers import Feed, customer, ev, invoice, order, table_rows

DAY = "2026-11-02T10:00:00Z"


def _orders(data_dir: Path) -> dict[str, dict]:
    return {row["id"]: row for row in table_rows(data_dir, "orders")}


def _dispatched(data_dir: Path, order_id: str) -> list[float]:
    return sorted(
        row["dispatched"] for row in table_rows(data_dir, "order_lines") if row["order_id"] == order_id
    )


def _pull_day(feed: Feed, records: list[dict], *, at_offset: float = 0.0) -> PartitionedLanding:
    """A pull of 2026-11-02 that started now (the feed's clock) and has read `records` (not yet written)."""
    landing = PartitionedLanding(
        feed.data_dir,
        RESOURCES["orders"],
        start=None,
        end=None,
        loaded_at=feed.clock + timedelta(seconds=at_offset),
    )
    landing.add_page(records)
    return landing


def test_events_applied_while_a_pull_fetches_survive_its_day_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    # 1. the lake from an earlier pull: or_a, or_gone
    _pull_day(feed, [order("or_a", DAY), order("or_gone", DAY)], at_offset=-3600).finish()
    # 2. a new pull starts and reads or_a (undispatched), or_gone and or_b from the API
    landing = _pull_day(feed, [order("or_a", DAY), order("or_gone", DAY), order("or_b", DAY)])
    # 3. meanwhile Orderspace sends: or_a dispatched, or_new created, or_gone deleted; all applied
    feed.deliver(
        ev("order.updated", order("or_a", DAY, status="fulfilled", dispatched=5.0)),
        ev("order.created", order("or_new", DAY)),
        ev("order.deleted", {"id": "or_gone", "deleted": True}),
    )
    applied = apply_pending(data_dir, feed.store)
    assert applied.events == 3
    # 4. the pull writes its day
    landing.finish()
    feed.store.close()
    orders = _orders(data_dir)
    assert sorted(orders) == ["or_a", "or_b", "or_new"]  # or_new kept, or_gone not resurrected
    assert orders["or_a"]["status"] == "fulfilled"  # the event's newer state, not the pull's older one
    assert _dispatched(data_dir, "or_a") == [5.0, 5.0]
    assert _dispatched(data_dir, "or_new") == [0.0, 0.0]
    assert "or_gone" not in {row["order_id"] for row in table_rows(data_dir, "order_lines")}


def test_the_pull_still_wins_over_events_received_before_it_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    feed.deliver(ev("order.created", order("or_a", DAY)), ev("order.created", order("or_old", DAY)))
    apply_pending(data_dir, feed.store)
    # The pull starts after those events: its listing is the truth (or_old is gone from the account and
    # its delete event was lost; or_a changed status with no event).
    landing = _pull_day(feed, [order("or_a", DAY, status="cancelled")], at_offset=1)
    landing.finish()
    feed.store.close()
    orders = _orders(data_dir)
    assert sorted(orders) == ["or_a"]
    assert orders["or_a"]["status"] == "cancelled"


def test_the_pull_wins_where_it_is_provably_newer_than_the_event(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    landing = _pull_day(feed, [order("or_a", DAY, status="fulfilled", dispatched=5.0)])
    # An event received after the pull started, but carrying an older state (nothing dispatched yet).
    feed.deliver(ev("order.updated", order("or_a", DAY, status="new", dispatched=0.0)))
    apply_pending(data_dir, feed.store)
    landing.finish()
    feed.store.close()
    assert _orders(data_dir)["or_a"]["status"] == "fulfilled"  # the applier's own rule: quantities only grow
    assert _dispatched(data_dir, "or_a") == [5.0, 5.0]


def test_a_range_with_no_records_keeps_a_record_created_after_the_pull_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    landing = PartitionedLanding(data_dir, RESOURCES["orders"], start=None, end=None, loaded_at=feed.clock)
    landing.add_page([])  # the API listed nothing for the day
    feed.deliver(ev("order.created", order("or_new", DAY)))
    apply_pending(data_dir, feed.store)
    landing.finish()  # removes stored days that got no records: not the event's new order
    feed.store.close()
    assert sorted(_orders(data_dir)) == ["or_new"]


def test_payment_applied_while_invoices_are_merged_by_id_survives(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    feed.deliver(ev("invoice.created", invoice("in_1")))
    apply_pending(data_dir, feed.store)
    pull_started = feed.clock
    merge = DayMerge(data_dir, RESOURCES["invoices"], loaded_at=pull_started)
    read_from_api = [invoice("in_1")]  # unpaid when the pull read it
    payment = {"invoice_id": "in_1", "amount": 48.0, "payment_date": "2026-11-20", "reference": "BACS-1"}
    feed.deliver(ev("payment.created", payment))
    apply_pending(data_dir, feed.store)
    merge.add_page(read_from_api)
    feed.store.close()
    [stored] = table_rows(data_dir, "invoices")
    assert stored["paid"] is True
    assert [row["reference"] for row in table_rows(data_dir, "invoice_payments")] == ["BACS-1"]


def test_whole_table_refresh_keeps_a_customer_changed_after_it_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    with WholeLanding(data_dir, RESOURCES["customers"], loaded_at=feed.clock - timedelta(hours=1)) as first:
        first.add_page([customer("cu_1", "Old name"), customer("cu_gone")])
        first.finish()
    with WholeLanding(data_dir, RESOURCES["customers"], loaded_at=feed.clock) as land:
        land.add_page([customer("cu_1", "Old name"), customer("cu_gone")])
        feed.deliver(
            ev("customer.updated", customer("cu_1", "New name")),
            ev("customer.created", customer("cu_2", "Brand new")),
            ev("customer.deleted", {"id": "cu_gone", "deleted": True}),
        )
        apply_pending(data_dir, feed.store)
        land.finish()
    feed.store.close()
    names = {row["id"]: row["company_name"] for row in table_rows(data_dir, "customers")}
    assert names == {"cu_1": "New name", "cu_2": "Brand new"}


def test_inventory_refresh_and_its_snapshot_keep_a_level_set_after_it_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    level = {"sku": "SKU-1", "on_hand": 5.0, "available": 5.0}
    with WholeLanding(
        data_dir, RESOURCES["inventory_levels"], loaded_at=feed.clock, snapshot_at=feed.clock, merge=True
    ) as land:
        land.add_page([level, {"sku": "SKU-2", "on_hand": 1.0, "available": 1.0}])
        feed.deliver(ev("inventory_level.updated", {**level, "on_hand": 9.0, "available": 9.0}))
        apply_pending(data_dir, feed.store)
        land.finish()
    feed.store.close()
    levels = {row["sku"]: row["on_hand"] for row in table_rows(data_dir, "inventory_levels")}
    assert levels == {"SKU-1": 9.0, "SKU-2": 1.0}
    snapshot = sorted(
        (row["sku"], row["on_hand"]) for row in table_rows(data_dir, "inventory_level_snapshots")
    )
    assert snapshot == [("SKU-1", 9.0), ("SKU-2", 1.0)]
