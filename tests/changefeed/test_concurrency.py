"""An apply run and a pull's merge writing the same partition at once: neither loses the other's rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orderspace_pipelines.lake.changes import apply_pending
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import DayMerge, WholeLanding
from tests.changefeed.helpers import Feed, customer, ev, order, table_rows

ROUNDS = 40
DAY = "2026-11-02T10:00:00Z"


def _ids(prefix: str) -> list[str]:
    """The ids one side writes, one per round."""
    return [f"{prefix}{n:03d}" for n in range(ROUNDS)]


def _race(data_dir: Path, feed: Feed, pull_round: Callable[[int], None]) -> None:
    """Run `pull_round(n)` for every round in one thread while another applies the feed one event per batch
    (as many read-modify-writes as the pull); both start together. Fails on any error in either thread."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def pull() -> None:
        try:
            start.wait()
            for n in range(ROUNDS):
                pull_round(n)
        except BaseException as error:
            errors.append(error)

    def apply() -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                apply_pending(data_dir, feed.store, batch=1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=pull), threading.Thread(target=apply)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    feed.store.close()
    assert errors == []


def test_apply_and_pull_merge_together_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    for order_id in _ids("or_hook"):
        feed.deliver(ev("order.created", order(order_id, DAY, lines=1)))

    def pull_round(n: int) -> None:  # one page (one read-modify-write of the day) per record
        merge = DayMerge(data_dir, RESOURCES["orders"], loaded_at=datetime.now(UTC))
        merge.add_page([order(f"or_pull{n:03d}", DAY, lines=1)])

    _race(data_dir, feed, pull_round)
    ids = sorted(row["id"] for row in table_rows(data_dir, "orders"))
    expected = sorted(_ids("or_hook") + _ids("or_pull"))
    assert ids == expected
    line_orders = sorted(row["order_id"] for row in table_rows(data_dir, "order_lines"))
    assert line_orders == expected


def test_apply_and_whole_table_refresh_together_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    for customer_id in _ids("cu_hook"):
        feed.deliver(ev("customer.created", customer(customer_id)))

    def pull_round(n: int) -> None:  # an `updated_since`-style refresh merged by id (reads, then replaces)
        with WholeLanding(data_dir, RESOURCES["customers"], loaded_at=datetime.now(UTC), merge=True) as land:
            land.add_page([customer(f"cu_pull{n:03d}")])
            land.finish()

    _race(data_dir, feed, pull_round)
    ids = sorted(row["id"] for row in table_rows(data_dir, "customers"))
    assert ids == sorted(_ids("cu_hook") + _ids("cu_pull"))
