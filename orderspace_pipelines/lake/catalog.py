"""The DuckDB catalog: `<data_dir>/orderspace.duckdb` holds one view per lake table over its Parquet files.

- Views read `read_parquet('<abs>/parquet/<table>/**/*.parquet', ...)`, with `hive_partitioning` for
  date-partitioned tables (the `date` column comes from the folder name). New Parquet files show up
  through the glob without touching the DuckDB file. When the files of a table do not all have the same
  columns (schema drift: an extra field in some days) the view adds `union_by_name=true`; when they do
  (the usual case) it does not, because DuckDB then has to open every file's footer at each bind (about
  80 KB of memory per file for the orders table) where otherwise it reads one.
- A table's layout (its union of columns, and whether every file has the same schema) is read from the
  Parquet footers with pyarrow, one file at a time: cheap in memory however many files there are. The
  views are recreated only when that layout changes.
- A table with no files yet gets an empty view with its declared column types, so queries never fail
  on a missing table.
- `inventory_levels` reads `parquet/inventory_levels/` (the current level of every SKU, kept complete by
  each refresh); `inventory_level_snapshots` shows every snapshot (the history, in its own folder).
- The DuckDB file is opened only to (re)create views whose column set changed (tracked in the sidecar
  `orderspace.duckdb.views.json`), for as short a time as possible, under a file lock shared by our own
  processes, and retried with backoff while another process (a notebook) holds the DuckDB lock. If it
  stays locked, `refresh_catalog` logs a warning and returns: Parquet is the truth and the next refresh
  catches up. Runs therefore never keep the file open and a notebook never blocks a run.
- Notebooks use `connect_read_only(data_dir)`. Tests and `summary` use `lake_connection(data_dir)`, an
  in-memory DuckDB with the same views, which never touches the catalog file at all. Checks use
  `scan_connection()` and `scan_sql(...)`: just the columns they need, with a memory limit (DuckDB
  spills to a temporary folder beyond it), so a check's memory does not grow with the table.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from orderspace_pipelines import atomic
from orderspace_pipelines.endpoints import LAKE_TABLES
from orderspace_pipelines.lake.schemas import (
    PARTITION_COLUMN,
    TABLES,
    table_spec,
)
from orderspace_pipelines.lake.storage import table_dir

log = logging.getLogger(__name__)

CATALOG_FILE = "orderspace.duckdb"
STATE_FILE = "orderspace.duckdb.views.json"
LOCK_FILE = ".orderspace.duckdb.lock"

# Tables in the order of the contract (and of `summary`), as `endpoints.py` lists them.
CATALOG_TABLES: tuple[str, ...] = LAKE_TABLES

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


# In-memory DuckDB for checks: bounded memory (beyond it, DuckDB spills to a temporary folder).
SCAN_MEMORY_LIMIT = "256MB"
SCAN_THREADS = 2


def _data_files(data_dir: Path, table: str) -> list[Path]:
    root = table_dir(data_dir, table)
    return sorted(root.rglob("*.parquet")) if root.is_dir() else []


def _has_files(data_dir: Path, table: str) -> bool:
    root = table_dir(data_dir, table)
    return root.is_dir() and next(root.rglob("*.parquet"), None) is not None


@dataclass(frozen=True)
class TableLayout:
    """What a table's Parquet files hold: the union of their columns, and whether they all agree."""

    files: int
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type) in order of first appearance
    uniform: bool  # every file has exactly the same columns and types

    def signature(self, partitioned: bool) -> list[str]:
        columns = [f"{name} {dtype}" for name, dtype in self.columns]
        if partitioned and self.files:
            columns.append(f"{PARTITION_COLUMN} DATE")
        mode = "no files" if not self.files else "uniform" if self.uniform else "union_by_name"
        return [*columns, f"-- {mode}"]


def _duckdb_type(dtype: pa.DataType) -> str:
    return _DUCKDB_TYPES.get(dtype, str(dtype).upper())


def table_layout(data_dir: Path, table: str) -> TableLayout:
    """Read a table's layout from its Parquet footers (one file at a time; memory does not grow)."""
    seen: dict[str, str] = {}
    first: tuple[tuple[str, str], ...] | None = None
    uniform = True
    files = 0
    for path in _data_files(Path(data_dir), table):
        try:
            schema = pq.read_schema(path)
        except FileNotFoundError:  # replaced or removed meanwhile: the glob will not see it either
            continue
        files += 1
        columns = tuple((f.name, _duckdb_type(f.type)) for f in schema)
        if first is None:
            first = columns
        elif columns != first:
            uniform = False
        for name, dtype in columns:
            if seen.setdefault(name, dtype) != dtype:
                uniform = False
    return TableLayout(files=files, columns=tuple(seen.items()), uniform=uniform)


def _source_sql(data_dir: Path, table: str, *, union_by_name: bool = True) -> str:
    spec = table_spec(table)
    glob = (table_dir(Path(data_dir).resolve(), table) / "**" / "*.parquet").as_posix()
    hive = (
        "hive_partitioning = true, hive_types = {'date': DATE}"
        if spec.partitioned
        else "hive_partitioning = false"
    )
    union = ", union_by_name = true" if union_by_name else ""
    return f"read_parquet({_quote_literal(glob)}{union}, {hive})"


def _empty_sql(table: str, columns: Sequence[str] | None = None) -> str:
    spec = table_spec(table)
    types = {f.name: _DUCKDB_TYPES[f.type] for f in spec.schema}
    if spec.partitioned:
        types[PARTITION_COLUMN] = "DATE"
    names = list(types) if columns is None else list(columns)
    selected = [f"CAST(NULL AS {types.get(name, 'VARCHAR')}) AS {_quote_ident(name)}" for name in names]
    return f"SELECT {', '.join(selected)} WHERE false"


def view_body(data_dir: Path, table: str, layout: TableLayout | None = None) -> str:
    """The SELECT behind a table's view: its Parquet glob, or an empty typed row set without files."""
    layout = layout or table_layout(data_dir, table)
    if layout.files:
        return f"SELECT * FROM {_source_sql(data_dir, table, union_by_name=not layout.uniform)}"
    return _empty_sql(table)


def scan_sql(data_dir: Path, table: str, columns: Sequence[str], *, union_by_name: bool = False) -> str:
    """A subquery with just `columns` (declared ones) of a lake table, read straight from its Parquet.

    Without `union_by_name` DuckDB opens one footer at bind time rather than all of them; every file
    written by this code has every declared column, and a file that lacks one (written by an older
    version) makes DuckDB raise an error naming the schema mismatch: then retry with `union_by_name`.
    """
    selected = ", ".join(_quote_ident(column) for column in columns)
    if not _has_files(data_dir, table):
        return f"({_empty_sql(table, columns)})"
    source = _source_sql(data_dir, table, union_by_name=union_by_name)
    return f"(SELECT {selected} FROM {source})"


def is_schema_mismatch(error: duckdb.Error) -> bool:
    """Whether a DuckDB error comes from Parquet files whose columns differ (retry with union_by_name)."""
    text = str(error).lower()
    return (
        "union_by_name" in text
        or "schema mismatch" in text
        or (isinstance(error, duckdb.BinderException) and "not found" in text)
    )


def scan_connection(
    *, memory_limit: str = SCAN_MEMORY_LIMIT, threads: int = SCAN_THREADS
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for queries over the Parquet files, with a memory limit and a spill folder."""
    return duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "threads": threads,
            "preserve_insertion_order": False,
            "temp_directory": os.path.join(tempfile.gettempdir(), f"orderspace-duckdb-{os.getpid()}"),
        }
    )


def table_signature(data_dir: Path, table: str, layout: TableLayout | None = None) -> list[str]:
    """`["name TYPE", ..., "-- mode"]` of a table's files as its view would show them (from the footers)."""
    layout = layout or table_layout(data_dir, table)
    return layout.signature(table_spec(table).partitioned)


def lake_connection(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per lake table over the Parquet: for tests and summaries.

    It never opens the catalog file, so it neither waits for nor blocks anyone.
    """
    connection = scan_connection()
    for table in TABLES:
        connection.execute(f"CREATE VIEW {_quote_ident(table)} AS {view_body(data_dir, table)}")
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
    atomic.write_text(path, json.dumps(state, indent=1, sort_keys=True))


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
    try:
        with FileLock(str(data_dir / LOCK_FILE), timeout=60):
            return _refresh_locked(data_dir, wanted, attempts, first_delay, logger)
    except Timeout:
        logger.warning(
            "Another process has been updating the DuckDB catalog for 60 s; views not updated this time."
        )
        return CatalogRefresh(locked=True)


def _refresh_locked(
    data_dir: Path, wanted: list[str], attempts: int, first_delay: float, logger: logging.Logger
) -> CatalogRefresh:
    """`refresh_catalog` under the catalog's file lock: compare signatures, replace the changed views."""
    result = CatalogRefresh()
    db_path = catalog_path(data_dir)
    state_path = data_dir / STATE_FILE
    state = _read_state(state_path) if db_path.exists() else {}
    layouts = {table: table_layout(data_dir, table) for table in wanted}
    signatures = {table: table_signature(data_dir, table, layouts[table]) for table in wanted}
    changed = [table for table in wanted if state.get(table) != signatures[table]]
    result.unchanged = [table for table in wanted if table not in changed]
    if not changed:
        return result
    connection = _connect_with_retry(db_path, attempts=attempts, first_delay=first_delay)
    if connection is None:
        result.locked = True
        logger.warning(
            "The DuckDB catalog %s is locked by another process (a notebook?); its views of %s "
            "were not updated this time. The Parquet files are written; close that connection "
            "and the next run updates the views.",
            db_path,
            ", ".join(changed),
        )
        return result
    try:
        _replace_views(connection, data_dir, {table: layouts[table] for table in changed})
    finally:
        connection.close()
    _write_state(state_path, state | {table: signatures[table] for table in changed})
    result.updated = changed
    return result


def _replace_views(
    connection: duckdb.DuckDBPyConnection, data_dir: Path, layouts: dict[str, TableLayout]
) -> None:
    """Replace the views of `layouts`' tables in one transaction."""
    connection.execute("BEGIN")
    for table, layout in layouts.items():
        body = view_body(data_dir, table, layout)
        connection.execute(f"CREATE OR REPLACE VIEW {_quote_ident(table)} AS {body}")
    connection.execute("COMMIT")


def summary(data_dir: Path) -> list[tuple[str, int]]:
    """`[(table, rows), ...]` for every catalog table, in contract order, read straight from the Parquet."""
    connection = lake_connection(Path(data_dir))
    try:
        counts = []
        for table in CATALOG_TABLES:
            row = connection.execute(f"SELECT count(*) FROM {_quote_ident(table)}").fetchone()
            counts.append((table, int(row[0]) if row else 0))
        return counts
    finally:
        connection.close()
