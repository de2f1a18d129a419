"""The pull's tombstone look-ups and guard decisions, made cheap without losing what they protect.

A landing opens the tombstone store once (not per page, not per day) and still sees a deletion recorded by
another connection after it opened it; the guard's footer check agrees with the `_loaded_at` column.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orderspace_pipelines.lake import storage, tombstones
from orderspace_pipelines.lake.changes import _may_hold_newer
from orderspace_pipelines.lake.schemas import RESOURCES
from orderspace_pipelines.lake.sweep import PartitionedLanding
from tests.changefeed.helpers import order, table_rows

DAY = "2026-11-02T10:00:00Z"
OTHER_DAY = "2026-11-01T10:00:00Z"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


def test_one_store_per_landing_still_sees_a_deletion_recorded_during_the_pull(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    real_open = tombstones.open_tombstones
    before = real_open(data_dir, database_url)
    before.add([("order", "or_dead", 1)])  # deleted before the pull: dropped from its page
    before.close()
    opened: list[Any] = []

    def counting_open(*args: Any, **kwargs: Any) -> tombstones.Tombstones:
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tombstones, "open_tombstones", counting_open)
    landing = PartitionedLanding(
        data_dir,
        RESOURCES["orders"],
        start=None,
        end=None,
        loaded_at=datetime.now(UTC),
        database_url=database_url,
    )
    landing.add_page([order("or_a", DAY), order("or_dead", DAY), order("or_gone", DAY)])
    # or_gone is deleted after the landing read its page (the store is open), through another connection
    # (as the applier does), before its day is written (the next page passes that day)
    during = real_open(data_dir, database_url)
    during.add([("order", "or_gone", 2)])
    during.close()
    landing.add_page([order("or_b", OTHER_DAY)])
    report = landing.finish()
    assert sorted(row["id"] for row in table_rows(data_dir, "orders")) == ["or_a", "or_b"]
    assert "or_gone" not in {row["order_id"] for row in table_rows(data_dir, "order_lines")}
    assert report.tombstoned == 1  # or_dead, from the page; or_gone by the guard at the day's write
    assert len(opened) == 1  # two pages and two day writes: one store


def test_footer_statistics_decide_as_the_loaded_at_column_does(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    loaded = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    landing = PartitionedLanding(data_dir, RESOURCES["orders"], start=None, end=None, loaded_at=loaded)
    landing.add_page([order("or_a", DAY)])
    landing.finish()
    day = date(2026, 11, 2)
    for table in ("orders", "order_lines"):
        path = storage.partition_file(data_dir, table, day)
        assert not _may_hold_newer(path, loaded)  # rows loaded at `since`: not newer
        assert _may_hold_newer(path, loaded - timedelta(microseconds=1))
        assert not _may_hold_newer(path, (loaded + timedelta(hours=1)).replace(tzinfo=None))
    assert not _may_hold_newer(storage.partition_file(data_dir, "orders", date(2026, 11, 3)), loaded)
