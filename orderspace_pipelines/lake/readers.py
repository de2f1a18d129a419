"""Reading lake tables back, for layers outside the lake (the warehouse push): just the columns asked for.

Both readers answer None when the table has no files yet (nothing pulled), so a caller can tell "not
pulled" from "pulled, no rows". Errors (a column no file has, an unreadable file) propagate: the caller
decides whether to fall back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from orderspace_pipelines.lake.catalog import is_schema_mismatch, scan_connection, scan_sql
from orderspace_pipelines.lake.schemas import INVENTORY_SNAPSHOTS
from orderspace_pipelines.lake.storage import table_dir


def has_files(data_dir: Path, table: str) -> bool:
    """Whether any Parquet file of `table` is stored."""
    root = table_dir(data_dir, table)
    return root.is_dir() and next(root.rglob("*.parquet"), None) is not None


def read_columns(data_dir: Path, table: str, columns: Sequence[str]) -> pa.Table | None:
    """`columns` of every stored row of a lake table (None: no files). Files written before a column
    existed read it as null."""
    if not has_files(data_dir, table):
        return None
    with scan_connection() as con:
        try:
            return con.sql(f"SELECT * FROM {scan_sql(data_dir, table, columns)}").to_arrow_table()
        except duckdb.Error as exc:
            if not is_schema_mismatch(exc):
                raise
        unioned = scan_sql(data_dir, table, columns, union_by_name=True)
        return con.sql(f"SELECT * FROM {unioned}").to_arrow_table()


def latest_snapshot_file(data_dir: Path) -> Path | None:
    """The most recent inventory snapshot file (`snapshot-<UTC stamp>.parquet`; stamps sort by time)."""
    files = table_dir(data_dir, INVENTORY_SNAPSHOTS).glob("*/snapshot-*.parquet")
    return max(files, key=lambda path: path.name, default=None)


def read_latest_snapshot(data_dir: Path, columns: Sequence[str]) -> pa.Table | None:
    """`columns` of the most recent inventory snapshot (every SKU at one `snapshot_at`), or None."""
    path = latest_snapshot_file(data_dir)
    return None if path is None else pq.read_table(path, columns=list(columns))
