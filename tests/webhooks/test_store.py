"""The event store's API, as the applier uses it: order, filters, marking, stats, durability settings.

The API tests run on both stores (`@BOTH_STORES`: SQLite and a real Postgres); the durability settings of
each are checked on their own."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orderspace_pipelines.webhooks.events import RESOURCES, parse_delivery
from orderspace_pipelines.webhooks.store import (
    SCHEMA_VERSION,
    EventStore,
    SqliteEventStore,
    StoreError,
    open_store,
)
from tests.webhooks.conftest import BOTH_STORES
from tests.webhooks.helpers import body_of, event, mixed_events

Opener = Callable[[], EventStore]


@pytest.fixture
def opener(tmp_path: Path, state_url: str | None) -> Opener:
    """Opens the test's store (SQLite under tmp_path, or the test's Postgres database); each call a new
    connection, as another process would have."""
    return lambda: open_store(tmp_path, state_url)


def _add(store: EventStore, events: list[dict]) -> int:
    body = body_of(events)
    return store.add_delivery(body, parse_delivery(body)).delivery_id


def test_wal_full_sync_and_idempotent_migration(tmp_path: Path) -> None:
    path = tmp_path / "webhooks" / "events.sqlite"
    with SqliteEventStore(path) as store:
        _add(store, [event("order.created", 1)])
    with SqliteEventStore(path) as again:  # opening again changes nothing, loses nothing
        assert again.stats().events == 1
        assert again._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert again._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert again._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this program's"):
        SqliteEventStore(path)


@BOTH_STORES
def test_pending_in_receipt_order_filtered_and_marked(opener: Opener) -> None:
    with opener() as store:
        _add(store, mixed_events(14))
        _add(store, [event("order.updated", 1), event("inventory_level.updated", 2)])
        every = store.pending(100)
        assert [e.seq for e in every] == sorted(e.seq for e in every) and len(every) == 16
        assert [e.event_type for e in store.pending(2)] == ["order.created", "order.updated"]
        orders = store.pending(100, resources=["order"])
        assert [(e.event_type, e.record_id) for e in orders] == [
            ("order.created", "or_000000"), ("order.updated", "or_000001"),
            ("order.deleted", "or_000002"), ("order.updated", "or_000001"),
        ]  # fmt: skip
        assert store.pending(100, resources=[]) == []
        assert store.mark_applied([e.seq for e in orders[:3]]) == 3
        assert store.mark_applied([e.seq for e in orders[:3]]) == 0  # idempotent
        assert [e.seq for e in store.pending(100, resources=["order"])] == [orders[3].seq]
        stats = store.stats()
        assert stats.pending["order"] == 1 and stats.pending["inventory_level"] == 2
        assert set(stats.pending) == set(RESOURCES)
        assert stats.pending_total == 13 and stats.deliveries == 2 and stats.events == 16
        assert stats.last_applied_at is not None and stats.last_received_at == store.last_delivery_at()


@BOTH_STORES
def test_an_empty_store_reports_nothing_yet(opener: Opener) -> None:
    with opener() as store:
        stats = store.stats()
        assert stats.pending_total == 0 and stats.last_received_at is None and stats.last_applied_at is None
        assert store.last_delivery_at() is None
        assert store.pending(10) == [] and store.mark_applied([]) == 0


@BOTH_STORES
def test_received_at_is_kept_in_utc(opener: Opener) -> None:
    moment = datetime(2026, 11, 30, 4, 50, 1, 250000, tzinfo=UTC)
    with opener() as store:
        body = body_of([event("customer.deleted", 9)])
        store.add_delivery(body, parse_delivery(body), received_at=moment)
        assert store.last_delivery_at() == moment
        (stored,) = store.pending(1)
        assert stored.received_at == moment
        assert stored.record == {"id": "cu_000009", "deleted": True}


@BOTH_STORES
def test_two_connections_see_each_others_writes(opener: Opener) -> None:
    # The receiver writes, the applier (another process) reads and marks: both through their own connection.
    with opener() as receiver, opener() as applier:
        _add(receiver, [event("product.updated", 1)])
        (stored,) = applier.pending(10)
        applier.mark_applied([stored.seq])
        assert receiver.stats().pending_total == 0
