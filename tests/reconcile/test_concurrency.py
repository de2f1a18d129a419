"""Reconcile's writes, an event apply and a pull's merge on the same partition at once: nobody's rows are
lost (all three take the lake's per-table locks across their read-modify-write)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orderspace_pipelines.endpoints import ENDPOINTS
from orderspace_pipelines.lake import reconcile as lake_reconcile
from orderspace_pipelines.lake.changes import apply_pending
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import DayMerge
from tests.changefeed.helpers import Feed, ev, order, table_rows

ROUNDS = 30
DAY = "2026-11-02T10:00:00Z"


def _together(*jobs: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        try:
            start.wait()
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_reconcile_apply_and_pull_on_one_partition_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    feed = Feed(data_dir)
    for n in range(ROUNDS):
        feed.deliver(ev("order.created", order(f"or_hook{n:03d}", DAY, lines=1)))
    # A record reconcile will remove, stored before everything starts.
    lake_reconcile.write(
        data_dir, ENDPOINTS["orders"], [order("or_gone", DAY, lines=1)], [], at=datetime.now(UTC)
    )

    def reconcile() -> None:  # one write (read-modify-write of the day) per record, like a run's batches
        for n in range(ROUNDS):
            removed = ["or_gone"] if n == ROUNDS // 2 else []
            fresh = [order(f"or_reconcile{n:03d}", DAY, lines=1)]
            lake_reconcile.write(data_dir, ENDPOINTS["orders"], fresh, removed, at=datetime.now(UTC))

    def pull() -> None:
        for n in range(ROUNDS):
            merge = DayMerge(data_dir, RESOURCES["orders"], loaded_at=datetime.now(UTC))
            merge.add_page([order(f"or_pull{n:03d}", DAY, lines=1)])

    def apply() -> None:
        for _ in range(ROUNDS):
            apply_pending(data_dir, feed.store, batch=1)

    assert _together(reconcile, pull, apply) == []
    feed.store.close()
    expected = sorted(f"or_{who}{n:03d}" for who in ("hook", "pull", "reconcile") for n in range(ROUNDS))
    assert sorted(row["id"] for row in table_rows(data_dir, "orders")) == expected
    assert sorted(row["order_id"] for row in table_rows(data_dir, "order_lines")) == expected
