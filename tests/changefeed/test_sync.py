"""`sync` applies every stored webhook event first, then pulls (real sandbox over HTTP, real Dagster runs)."""

from __future__ import annotations

from pathlib import Path

from orderspace_pipelines.defs.sync import run_sync
from tests.changefeed.helpers import Feed, ev, order, table_rows
from tests.pull.conftest import resources_for


def test_sync_applies_stored_events_before_pulling(orderspace_env: dict[str, str]) -> None:
    data_dir = Path(orderspace_env["ORDERSPACE_DATA_DIR"])
    feed = Feed(data_dir)
    # An order on a day long before the sandbox's data: only the change feed can have put it there.
    feed.deliver(ev("order.created", order("or_from_webhook", "2019-06-01T10:00:00Z")))
    feed.deliver(ev("order.deleted", {"id": "or_gone", "deleted": True}))
    result = run_sync(select=["customers"], resources=resources_for(orderspace_env))
    assert result.success, result.error
    assert result.events_applied == 2
    assert "2 stored webhook event(s) applied first" in result.describe()
    assert len(result.run_ids) == 2  # the apply run, then the pull's run
    assert feed.store.stats().pending_total == 0
    assert [(r["id"], r["_day"]) for r in table_rows(data_dir, "orders")] == [
        ("or_from_webhook", "2019-06-01")
    ]
    assert table_rows(data_dir, "customers")  # the pull ran after it
    feed.store.close()


def test_sync_without_a_store_applies_nothing(orderspace_env: dict[str, str]) -> None:
    result = run_sync(select=["customers"], resources=resources_for(orderspace_env))
    assert result.success, result.error
    assert result.events_applied is None
    assert len(result.run_ids) == 1
