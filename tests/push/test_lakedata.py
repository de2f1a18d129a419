"""The push's look-ups in the pulled lake: real Parquet files written by the lake's own writers."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.readers import latest_snapshot_file
from orderspace_pipelines.warehouse import lakedata

from .conftest import write_pulled_orders, write_pulled_snapshot, write_pulled_variants


def test_nothing_pulled_reads_as_unknown(tmp_path: Path) -> None:
    assert lakedata.pulled_skus(tmp_path) is None
    assert lakedata.latest_snapshot(tmp_path) is None
    assert lakedata.order_ids_by_number(tmp_path, ["1204"]) == {}


def test_the_latest_snapshot_wins_and_its_skus_are_known(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=1, hours=3)  # another day's folder
    write_pulled_snapshot(tmp_path, [{"sku": "A", "on_hand": 1, "available": 1}], taken_at=old)
    write_pulled_snapshot(
        tmp_path,
        [{"sku": " B ", "on_hand": 2.5, "available": 2}, {"sku": "C", "on_hand": 0, "available": None}],
        taken_at=now,
    )
    write_pulled_variants(tmp_path, ["V1", "", "C"])
    path = latest_snapshot_file(tmp_path)
    assert path is not None and path.parent.name == f"date={now.date().isoformat()}"
    snapshot = lakedata.latest_snapshot(tmp_path)
    assert snapshot is not None and snapshot.taken_at == now
    assert snapshot.levels == {
        "B": {"on_hand": Decimal("2.5"), "available": Decimal(2)},
        "C": {"on_hand": Decimal(0), "available": None},
    }
    # The variants and the latest snapshot; "A" only existed in an older snapshot.
    assert lakedata.pulled_skus(tmp_path) == {"V1", "C", "B"}


def test_order_numbers_resolve_across_stored_days(tmp_path: Path) -> None:
    write_pulled_orders(tmp_path, [{"id": "or_1", "number": 1204}], day=date(2026, 11, 1))
    write_pulled_orders(tmp_path, [{"id": "or_2", "number": 1300}], day=date(2026, 11, 2))
    assert lakedata.order_ids_by_number(tmp_path, ["#1204", "1300", "999"]) == {
        "1204": "or_1",
        "1300": "or_2",
    }
    assert lakedata.order_ids_by_number(tmp_path, []) == {}


def test_a_table_without_the_column_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage.write_whole(tmp_path, {"product_variants": pa.table({"id": ["pv_1"], "code": ["X"]})})
    with caplog.at_level(logging.WARNING, logger=lakedata.__name__):
        assert lakedata.pulled_skus(tmp_path) is None  # no sku anywhere: unknown, the API decides
    assert "pulled data could not be read" in caplog.text
