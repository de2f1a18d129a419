"""Read-only look-ups in the pulled Parquet (DuckDB in memory; the catalog file is never opened).

All of it is optional: a table that is not there (no pull yet), or that lacks a column after API drift,
reads as "unknown", and the caller asks the API instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)


def _glob(data_dir: Path, pattern: str) -> str | None:
    """The glob as a string when at least one file matches it, else None."""
    base = Path(data_dir) / "parquet"
    if not any(base.glob(pattern)):
        return None
    return str(base / pattern)


def _query(sql: str, params: list[object] | None = None) -> list[tuple] | None:
    try:
        with duckdb.connect() as con:
            return con.execute(sql, params or []).fetchall()
    except duckdb.Error as exc:  # missing column after drift, unreadable file, ...
        log.warning("pulled data could not be read (%s); falling back to the API", exc)
        return None


def pulled_skus(data_dir: Path) -> set[str] | None:
    """SKUs known from pulled product variants / inventory levels, or None when nothing was pulled."""
    sources = [
        _glob(data_dir, "product_variants/**/*.parquet"),
        _glob(data_dir, "inventory_levels/**/*.parquet"),
        _glob(data_dir, "inventory_level_snapshots/**/*.parquet"),
    ]
    found: set[str] | None = None
    for source in sources:
        if source is None:
            continue
        rows = _query(
            f"SELECT DISTINCT CAST(sku AS VARCHAR) FROM read_parquet('{source}', union_by_name = true)"
        )
        if rows is None:
            continue
        found = (found or set()) | {r[0].strip() for r in rows if r[0]}
    return found


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
    """The most recent pulled inventory snapshot (all SKUs sharing its `snapshot_at`), or None."""
    source = _glob(data_dir, "inventory_level_snapshots/**/*.parquet")
    if source is None:
        return None
    rows = _query(
        f"WITH s AS (SELECT * FROM read_parquet('{source}', union_by_name = true)) "
        "SELECT CAST(sku AS VARCHAR), TRY_CAST(on_hand AS DECIMAL(18, 3)), "
        "TRY_CAST(available AS DECIMAL(18, 3)), "
        "snapshot_at FROM s WHERE snapshot_at = (SELECT max(snapshot_at) FROM s)"
    )
    if not rows:
        return None
    taken_at = _as_utc(rows[0][3])
    if taken_at is None:
        return None
    levels = {
        sku.strip(): {"on_hand": on_hand, "available": available}
        for sku, on_hand, available, _ in rows
        if sku
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
    wanted = sorted({normalise_order_number(n) for n in numbers})
    source = _glob(data_dir, "orders/**/*.parquet")
    if not wanted or source is None:
        return {}
    rows = _query(
        f"SELECT DISTINCT CAST(number AS VARCHAR), CAST(id AS VARCHAR) "
        f"FROM read_parquet('{source}', union_by_name = true, hive_partitioning = true)"
    )
    wanted_set = set(wanted)
    found: dict[str, str] = {}
    for number, order_id in rows or []:
        if number is None or not order_id:
            continue
        key = normalise_order_number(number)
        if key in wanted_set:
            found[key] = order_id
    return found
