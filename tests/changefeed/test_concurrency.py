"""An apply run and a pull's merge writing the same partition at once: neither loses the other's rows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from orderspace_pipelines.lake.changes import apply_pending
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import DayMerge, WholeLanding
from tests.changefeed.helpers import Feed, customer, ev, order, table_rows

ROUNDS = 40
DAY = "2026-11-02T10:00:00Z"


def test_apply_and_pull_merge_together_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    for n in range(ROUNDS):
        feed.deliver(ev("order.created", order(f"or_hook{n:03d}", DAY, lines=1)))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def pull() -> None:
        try:
            start.wait()
            for n in range(ROUNDS):  # one page (one read-modify-write of the day) per record
                merge = DayMerge(data_dir, RESOURCES["orders"], loaded_at=datetime.now(UTC))
                merge.add_page([order(f"or_pull{n:03d}", DAY, lines=1)])
        except BaseException as error:
            errors.append(error)

    def apply() -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):  # one event per batch: as many read-modify-writes as the pull
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
    ids = sorted(row["id"] for row in table_rows(data_dir, "orders"))
    expected = sorted([f"or_hook{n:03d}" for n in range(ROUNDS)] + [f"or_pull{n:03d}" for n in range(ROUNDS)])
    assert ids == expected
    line_orders = sorted(row["order_id"] for row in table_rows(data_dir, "order_lines"))
    assert line_orders == expected


def test_apply_and_whole_table_refresh_together_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    for n in range(ROUNDS):
        feed.deliver(ev("customer.created", customer(f"cu_hook{n:03d}")))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def pull() -> None:
        try:
            start.wait()
            for n in range(ROUNDS):  # an `updated_since`-style refresh merged by id (reads, then replaces)
                with WholeLanding(
                    data_dir, RESOURCES["customers"], loaded_at=datetime.now(UTC), merge=True
                ) as land:
                    land.add_page([customer(f"cu_pull{n:03d}")])
                    land.finish()
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
    ids = sorted(row["id"] for row in table_rows(data_dir, "customers"))
    assert ids == sorted(
        [f"cu_hook{n:03d}" for n in range(ROUNDS)] + [f"cu_pull{n:03d}" for n in range(ROUNDS)]
    )
