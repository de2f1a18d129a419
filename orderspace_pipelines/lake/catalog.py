"""The DuckDB catalog: `<data_dir>/orderspace.duckdb` holds one view per lake table over its Parquet files.

- Views read `read_parquet('<abs>/parquet/<table>/**/*.parquet', union_by_name=true, ...)`, with
  `hive_partitioning` for date-partitioned tables (the `date` column comes from the folder name). New
  Parquet files show up through the glob without touching the DuckDB file.
- A table with no files yet gets an empty view with its declared column types, so queries never fail
  on a missing table.
- `inventory_level_snapshots` shows every snapshot; `inventory_levels` the latest one.
- The DuckDB file is opened only to (re)create views whose column set changed (tracked in the sidecar
  `orderspace.duckdb.views.json`), for as short a time as possible, under a file lock shared by our own
  processes, and retried with backoff while another process (a notebook) holds the DuckDB lock. If it
  stays locked, `refresh_catalog` logs a warning and returns: Parquet is the truth and the next refresh
  catches up. Runs therefore never keep the file open and a notebook never blocks a run.
- Notebooks use `connect_read_only(data_dir)`. Checks and `summary` use `lake_connection(data_dir)`, an
  in-memory DuckDB with the same views, which never touches the catalog file at all.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from filelock import FileLock, Timeout

from orderspace_pipelines.lake.schemas import (
    INVENTORY_LEVELS_VIEW,
    INVENTORY_SNAPSHOTS,
    PARTITION_COLUMN,
    SNAPSHOT_AT,
    TABLES,
    table_spec,
)
from orderspace_pipelines.lake.storage import table_dir

log = logging.getLogger(__name__)

CATALOG_FILE = "orderspace.duckdb"
STATE_FILE = "orderspace.duckdb.views.json"
LOCK_FILE = ".orderspace.duckdb.lock"

# Tables in the order of the contract (and of `summary`).
CATALOG_TABLES: tuple[str, ...] = (
    "customers",
    "orders",
    "order_lines",
    "invoices",
    "invoice_lines",
    "invoice_payments",
    "dispatches",
    "dispatch_lines",
    "products",
    "product_variants",
    INVENTORY_LEVELS_VIEW,
    INVENTORY_SNAPSHOTS,
    "categories",
    "customer_groups",
    "price_lists",
    "payment_terms",
    "tax_rates",
    "preorder_windows",
)

_DUCKDB_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
}


def catalog_path(data_dir: Path) -> Path:
    return Path(data_dir) / CATALOG_FILE


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _has_files(data_dir: Path, table: str) -> bool:
    root = table_dir(data_dir, table)
    return root.is_dir() and next(root.rglob("*.parquet"), None) is not None


def _source_sql(data_dir: Path, table: str) -> str:
    spec = table_spec(table)
    glob = (table_dir(Path(data_dir).resolve(), table) / "**" / "*.parquet").as_posix()
    hive = (
        "hive_partitioning = true, hive_types = {'date': DATE}"
        if spec.partitioned
        else "hive_partitioning = false"
    )
    return f"read_parquet({_quote_literal(glob)}, union_by_name = true, {hive})"


def _empty_sql(table: str) -> str:
    spec = table_spec(table)
    columns = [f"CAST(NULL AS {_DUCKDB_TYPES[f.type]}) AS {_quote_ident(f.name)}" for f in spec.schema]
    if spec.partitioned:
        columns.append(f"CAST(NULL AS DATE) AS {_quote_ident(PARTITION_COLUMN)}")
    return f"SELECT {', '.join(columns)} WHERE false"


def view_body(data_dir: Path, table: str) -> str:
    """The SELECT behind a table's view: its Parquet glob, or an empty typed row set without files."""
    if _has_files(data_dir, table):
        return f"SELECT * FROM {_source_sql(data_dir, table)}"
    return _empty_sql(table)


def _latest_inventory_body() -> str:
    snapshots = _quote_ident(INVENTORY_SNAPSHOTS)
    return (
        f"SELECT * EXCLUDE ({_quote_ident(PARTITION_COLUMN)}) FROM {snapshots} "
        f"WHERE {SNAPSHOT_AT} = (SELECT max({SNAPSHOT_AT}) FROM {snapshots})"
    )


def table_signature(
    data_dir: Path, table: str, connection: duckdb.DuckDBPyConnection | None = None
) -> list[str]:
    """`["name TYPE", ...]` of a table's view as it would be created now (from the Parquet files' footers)."""
    own = connection is None
    connection = connection or duckdb.connect()
    try:
        rows = connection.execute(f"DESCRIBE {view_body(data_dir, table)}").fetchall()
        return [f"{row[0]} {row[1]}" for row in rows]
    finally:
        if own:
            connection.close()


def lake_connection(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per lake table over the Parquet: for checks, tests and summaries.

    It never opens the catalog file, so it neither waits for nor blocks anyone.
    """
    connection = duckdb.connect()
    for table in TABLES:
        connection.execute(f"CREATE VIEW {_quote_ident(table)} AS {view_body(data_dir, table)}")
    connection.execute(f"CREATE VIEW {_quote_ident(INVENTORY_LEVELS_VIEW)} AS {_latest_inventory_body()}")
    return connection


def connect_read_only(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """Open the catalog read-only (notebooks, BI tools). Close it when done so runs can update views."""
    path = catalog_path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"no DuckDB catalog at {path}: run `orderspace-pipelines sync` first")
    return duckdb.connect(str(path), read_only=True)


@dataclass
class CatalogRefresh:
    """What one `refresh_catalog` call did."""

    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    locked: bool = False  # the DuckDB file stayed locked by another process; views not updated this time


def _read_state(path: Path) -> dict[str, list[str]]:
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(path: Path, state: dict[str, list[str]]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(temp, path)


def _connect_with_retry(path: Path, *, attempts: int, first_delay: float) -> duckdb.DuckDBPyConnection | None:
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if attempt == attempts:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    return None


def refresh_catalog(
    data_dir: Path,
    tables: Iterable[str] | None = None,
    *,
    attempts: int = 6,
    first_delay: float = 0.1,
    logger: logging.Logger | None = None,
) -> CatalogRefresh:
    """(Re)create the views of `tables` (default: all) whose column set changed, or that are missing."""
    logger = logger or log
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted = list(TABLES) if tables is None else [table_spec(name).name for name in tables]
    result = CatalogRefresh()
    db_path = catalog_path(data_dir)
    state_path = data_dir / STATE_FILE
    try:
        with FileLock(str(data_dir / LOCK_FILE), timeout=60):
            state = _read_state(state_path) if db_path.exists() else {}
            scratch = duckdb.connect()
            try:
                signatures = {table: table_signature(data_dir, table, scratch) for table in wanted}
            finally:
                scratch.close()
            changed = [table for table in wanted if state.get(table) != signatures[table]]
            need_inventory_view = INVENTORY_SNAPSHOTS in changed or INVENTORY_LEVELS_VIEW not in state
            need_inventory_view = need_inventory_view and INVENTORY_SNAPSHOTS in wanted
            result.unchanged = [table for table in wanted if table not in changed]
            if not changed and not need_inventory_view:
                return result
            connection = _connect_with_retry(db_path, attempts=attempts, first_delay=first_delay)
            if connection is None:
                result.locked = True
                logger.warning(
                    "The DuckDB catalog %s is locked by another process (a notebook?); its views of %s "
                    "were not updated this time. The Parquet files are written; close that connection "
                    "and the next run updates the views.",
                    db_path,
                    ", ".join(changed) or INVENTORY_LEVELS_VIEW,
                )
                return result
            try:
                connection.execute("BEGIN")
                for table in changed:
                    body = view_body(data_dir, table)
                    connection.execute(f"CREATE OR REPLACE VIEW {_quote_ident(table)} AS {body}")
                if need_inventory_view:
                    latest = _latest_inventory_body()
                    connection.execute(
                        f"CREATE OR REPLACE VIEW {_quote_ident(INVENTORY_LEVELS_VIEW)} AS {latest}"
                    )
                connection.execute("COMMIT")
            finally:
                connection.close()
            for table in changed:
                state[table] = signatures[table]
            if need_inventory_view:
                state[INVENTORY_LEVELS_VIEW] = ["latest snapshot"]
            _write_state(state_path, state)
            result.updated = changed
            return result
    except Timeout:
        result.locked = True
        logger.warning(
            "Another process has been updating the DuckDB catalog for 60 s; views not updated this time."
        )
        return result


def summary(data_dir: Path) -> list[tuple[str, int]]:
    """`[(table, rows), ...]` for every catalog table, in contract order, read straight from the Parquet."""
    connection = lake_connection(Path(data_dir))
    try:
        return [
            (table, int(connection.execute(f"SELECT count(*) FROM {_quote_ident(table)}").fetchone()[0]))
            for table in CATALOG_TABLES
        ]
    finally:
        connection.close()
