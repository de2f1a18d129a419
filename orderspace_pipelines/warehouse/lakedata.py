"""Read-only look-ups in the pulled lake, through `lake.readers` (the catalog file is never opened).

All of it is optional: a table that is not there (no pull yet), or that lacks a column after API drift,
reads as "unknown", and the caller asks the API instead.

SKUs known to exist come from the product variants and the latest inventory snapshot (a copy of every
level at the last refresh); products added since are looked up by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from orderspace_pipelines.lake.readers import read_columns, read_latest_snapshot
from orderspace_pipelines.lake.schemas import SNAPSHOT_AT
from orderspace_pipelines.warehouse.quantities import from_api

log = logging.getLogger(__name__)

VARIANTS = "product_variants"
ORDERS = "orders"


def _read(reader: Callable[[], pa.Table | None]) -> pa.Table | None:
    """The table a lake reader returns, or None when it cannot be read (logged; the caller asks the API)."""
    try:
        return reader()
    except (duckdb.Error, pa.ArrowException, OSError) as exc:  # missing column after drift, unreadable file
        log.warning("pulled data could not be read (%s); falling back to the API", exc)
        return None


def pulled_skus(data_dir: Path) -> set[str] | None:
    """SKUs known from pulled product variants / the latest inventory snapshot, or None when none was read."""
    sources = [
        _read(lambda: read_columns(data_dir, VARIANTS, ["sku"])),
        _read(lambda: read_latest_snapshot(data_dir, ["sku"])),
    ]
    tables = [table for table in sources if table is not None]
    if not tables:
        return None
    return {str(sku).strip() for table in tables for sku in table.column("sku").to_pylist() if sku}


@dataclass(frozen=True)
class LevelSnapshot:
    """The latest pulled inventory levels: sku -> {"on_hand": n, "available": n}."""

    taken_at: datetime
    levels: dict[str, dict[str, Decimal | None]]

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.taken_at).total_seconds()


def _as_utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latest_snapshot(data_dir: Path) -> LevelSnapshot | None:
    """The most recent pulled inventory snapshot (the SKUs sharing its latest `snapshot_at`), or None."""
    table = _read(lambda: read_latest_snapshot(data_dir, ["sku", "on_hand", "available", SNAPSHOT_AT]))
    if table is None or table.num_rows == 0:
        return None
    rows = [(row, _as_utc(row[SNAPSHOT_AT])) for row in table.to_pylist()]
    taken_at = max((moment for _, moment in rows if moment is not None), default=None)
    if taken_at is None:
        return None
    levels = {
        str(row["sku"]).strip(): {
            "on_hand": from_api(row["on_hand"]),
            "available": from_api(row["available"]),
        }
        for row, moment in rows
        if row["sku"] and moment == taken_at
    }
    return LevelSnapshot(taken_at, levels)


def normalise_order_number(value: object) -> str:
    """`'#1204'`, `' 1204 '`, `1204`, `1204.0` -> `'1204'`."""
    text = str(value).strip().lstrip("#").strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def order_ids_by_number(data_dir: Path, numbers: Iterable[str]) -> dict[str, str]:
    """Pulled order ids for the given order numbers (those found; others are simply absent)."""
    wanted = {normalise_order_number(n) for n in numbers}
    if not wanted:
        return {}
    table = _read(lambda: read_columns(data_dir, ORDERS, ["number", "id"]))
    found: dict[str, str] = {}
    for row in table.to_pylist() if table is not None else []:
        number, order_id = row["number"], row["id"]
        if number is None or not order_id:
            continue
        key = normalise_order_number(number)
        if key in wanted:
            found[key] = str(order_id)
    return found
