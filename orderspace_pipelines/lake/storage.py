"""Atomic Parquet files: the lake's source of truth.

Layout under `<data_dir>/parquet/`:

- `<table>/date=YYYY-MM-DD/part.parquet`: one file per day of a date-partitioned table;
- `<table>/part.parquet`: whole-refresh tables;
- `inventory_level_snapshots/date=YYYY-MM-DD/snapshot-<YYYYmmddTHHMMSSffffffZ>.parquet`: inventory history.

Every write goes to a temporary file in the destination folder (`.<name>.<random>.tmp`, which no
`*.parquet` glob matches), is flushed and fsynced, and only then moved into place with `os.replace`
(`orderspace_pipelines.atomic`, which also fsyncs the folder).
When one write covers several tables (orders and order_lines of one day) all temporary files are
written first and then moved, so a failure before the moves leaves every old file as it was, and a
reader always sees a whole old file or a whole new one. A table with no rows for a partition has its
file removed, so a re-pull of a day that lost its records leaves nothing stale behind.

Rows inside a partition file keep the API's listing order (newest first) when a day is landed whole;
records merged into a stored day (by id) come first. Nothing reads the order back: ranges are fetched
with the API's server-side date filters, not by seeking from stored records.

`<data_dir>/state/pull_state.json` holds the pull's watermarks (see `read_state`/`update_state`): small
JSON, replaced atomically under a file lock, so concurrent runs of different assets never lose each
other's keys.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from orderspace_pipelines import atomic
from orderspace_pipelines.lake.schemas import INVENTORY_SNAPSHOTS, PARTITION_COLUMN

PART_FILE = "part.parquet"
PARQUET_DIR = "parquet"
_COMPRESSION = "zstd"


def parquet_root(data_dir: Path) -> Path:
    return Path(data_dir) / PARQUET_DIR


def table_dir(data_dir: Path, table: str) -> Path:
    return parquet_root(data_dir) / table


def partition_dir(data_dir: Path, table: str, day: date) -> Path:
    return table_dir(data_dir, table) / f"{PARTITION_COLUMN}={day.isoformat()}"


def partition_file(data_dir: Path, table: str, day: date) -> Path:
    return partition_dir(data_dir, table, day) / PART_FILE


def whole_file(data_dir: Path, table: str) -> Path:
    return table_dir(data_dir, table) / PART_FILE


def _write_temp(path: Path, table: pa.Table) -> Path:
    return atomic.write_temp(path, lambda handle: pq.write_table(table, handle, compression=_COMPRESSION))


def _remove(path: Path) -> bool:
    """Remove a data file and its folder if that is left empty; True if a file was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only succeeds when empty
    return True


# --- the lake's table locks (the change-feed applier and the pull) ------------------------------------
# One lock file per table (`<data dir>/state/locks/<table>.lock`): every write of a table's files takes it
# (in `write_files`), and a read-modify-write (the applier, the pull's merges) holds it across the read.
# One `FileLock` object per lock file and process: re-entrant within a thread, exclusive across threads
# (thread-local) and processes (an OS file lock).
_LOCKS: dict[Path, FileLock] = {}
_LOCKS_GUARD = threading.Lock()
LOCK_TIMEOUT_SECONDS = 600.0


def _table_lock(data_dir: Path, table: str) -> FileLock:
    path = Path(data_dir) / STATE_DIR / "locks" / f"{table}.lock"
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _LOCKS[path] = FileLock(str(path), timeout=LOCK_TIMEOUT_SECONDS)
        return lock


@contextlib.contextmanager
def table_locks(data_dir: Path, tables: Iterable[str]) -> Iterator[None]:
    """Hold the lake locks of `tables` (taken in name order, so two holders never deadlock)."""
    with contextlib.ExitStack() as stack:
        for table in sorted(set(tables)):
            stack.enter_context(_table_lock(data_dir, table))
        yield


def _tables_of_paths(paths: Iterable[Path]) -> tuple[Path | None, set[str]]:
    """The data dir and table names of lake files (`<data dir>/parquet/<table>/...`)."""
    data_dir: Path | None = None
    tables: set[str] = set()
    for path in paths:
        parts = Path(path).parts
        if PARQUET_DIR in parts:
            index = len(parts) - 1 - parts[::-1].index(PARQUET_DIR)
            if index + 1 < len(parts) - 1:
                data_dir = Path(*parts[:index])
                tables.add(parts[index + 1])
    return data_dir, tables


def write_files(files: Mapping[Path, pa.Table | None]) -> dict[Path, int]:
    """Replace several files as one step, under their tables' lake locks (see `table_locks`)."""
    data_dir, tables = _tables_of_paths(files)
    if data_dir is None:
        return _write_files(files)
    with table_locks(data_dir, tables):
        return _write_files(files)


def _write_files(files: Mapping[Path, pa.Table | None]) -> dict[Path, int]:
    """Replace several files as one step: write every temp file, then move them all into place.

    A `None` or zero-row table removes that file instead. Returns {path: rows written (0 = removed)}.
    """
    temps: dict[Path, Path] = {}
    try:
        for path, table in files.items():
            if table is not None and table.num_rows > 0:
                temps[path] = _write_temp(path, table)
    except BaseException:
        atomic.discard(temps.values())
        raise
    atomic.commit((temp, path) for path, temp in temps.items())
    written: dict[Path, int] = {}
    for path, table in files.items():
        if path in temps and table is not None:
            written[path] = table.num_rows
        else:
            _remove(path)
            written[path] = 0
    return written


def write_partition(data_dir: Path, day: date, tables: Mapping[str, pa.Table | None]) -> dict[str, int]:
    """Replace one day of one or more date-partitioned tables at once. Returns {table: rows}."""
    paths = {table: partition_file(data_dir, table, day) for table in tables}
    written = write_files({paths[table]: data for table, data in tables.items()})
    return {table: written[path] for table, path in paths.items()}


def write_whole(data_dir: Path, tables: Mapping[str, pa.Table | None]) -> dict[str, int]:
    """Replace whole-refresh tables at once. Returns {table: rows}."""
    paths = {table: whole_file(data_dir, table) for table in tables}
    written = write_files({paths[table]: data for table, data in tables.items()})
    return {table: written[path] for table, path in paths.items()}


def snapshot_file(data_dir: Path, snapshot_at: datetime) -> Path:
    stamp = snapshot_at.strftime("%Y%m%dT%H%M%S%fZ")
    return partition_dir(data_dir, INVENTORY_SNAPSHOTS, snapshot_at.date()) / f"snapshot-{stamp}.parquet"


def write_snapshot(data_dir: Path, snapshot_at: datetime, table: pa.Table) -> Path:
    """Add one inventory snapshot (kept forever, alongside the earlier ones)."""
    path = snapshot_file(data_dir, snapshot_at)
    write_files({path: table})
    return path


def remove_partition(data_dir: Path, table: str, day: date) -> bool:
    """Remove one stored day of a table (its day now has no records). True if there was a file."""
    return _remove(partition_file(data_dir, table, day))


def stored_days(data_dir: Path, table: str) -> list[date]:
    """The days of a date-partitioned table that have a file, oldest first."""
    root = table_dir(data_dir, table)
    if not root.is_dir():
        return []
    days = []
    prefix = f"{PARTITION_COLUMN}="
    for entry in root.iterdir():
        if entry.name.startswith(prefix) and (entry / PART_FILE).is_file():
            try:
                days.append(date.fromisoformat(entry.name[len(prefix) :]))
            except ValueError:
                continue
    return sorted(days)


def read_partition(data_dir: Path, table: str, day: date) -> pa.Table | None:
    """One stored day of a table, or None when there is none."""
    path = partition_file(data_dir, table, day)
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        return None


def iter_batches(path: Path, batch_rows: int = 10_000) -> Iterator[pa.Table]:
    """A stored file's rows in slices of at most `batch_rows` (nothing when there is no file)."""
    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError:
        return
    with contextlib.closing(parquet):
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])


def _fit(column: pa.ChunkedArray | pa.Array, dtype: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """`column` as `dtype` (a file written before a column's type changed, e.g. int64 quantities)."""
    return column if column.type == dtype else column.cast(dtype)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order and of its types; columns it lacks are nulls."""
    columns = [
        _fit(table.column(name), schema.field(name).type)
        if name in table.column_names
        else pa.nulls(table.num_rows, type=schema.field(name).type)
        for name in schema.names
    ]
    return pa.Table.from_arrays(columns, schema=schema)


_align = conform


def union_schema(*schemas: pa.Schema) -> pa.Schema:
    """The columns of every schema, in order of first appearance; a name keeps its first type."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for schema_field in schema:
            fields.setdefault(schema_field.name, schema_field)
    return pa.schema(list(fields.values()))


# --- the pull's state (watermarks) ---------------------------------------------------------------------

STATE_DIR = "state"
STATE_FILE = "pull_state.json"


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_DIR / STATE_FILE


def read_state(data_dir: Path) -> dict[str, Any]:
    """The pull's saved state (`{}` when there is none or it is unreadable: the next pull is a full one)."""
    try:
        state = json.loads(state_path(data_dir).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def read_moment(data_dir: Path, key: str) -> datetime | None:
    """An ISO 8601 moment saved in the state under `key` (UTC when it names no zone), or None (none yet,
    or unreadable: the caller falls back to a full load or listing)."""
    value = read_state(data_dir).get(key)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def update_state(data_dir: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Set (or, with a None value, remove) keys of the saved state, atomically; returns the new state."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{STATE_FILE}.lock")), timeout=60):
        state = read_state(data_dir)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        atomic.write_text(path, json.dumps(state, indent=1, sort_keys=True))
    return state


class StreamingFileWriter:
    """Write one Parquet file page by page without holding the whole table in memory, then swap it in.

    Each page goes to a temporary chunk file in the destination folder; `commit` streams the chunks,
    aligned to the union of their columns, into one temporary file and moves it into place. Until then
    the old file is untouched; `abort` (or an exception inside `with`) removes every temporary file.
    """

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.rows = 0
        self._chunks: list[Path] = []
        # `schema` fixes the first columns' order and types (the declared ones); others follow as they come.
        self._fields: dict[str, pa.Field] = {f.name: f for f in schema} if schema is not None else {}

    def __enter__(self) -> StreamingFileWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self._fields.values()))

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            for schema_field in table.schema:
                self._fields.setdefault(schema_field.name, schema_field)
            return
        chunk = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.chunk.tmp")
        chunk.parent.mkdir(parents=True, exist_ok=True)
        self._chunks.append(chunk)
        pq.write_table(table, chunk, compression=_COMPRESSION)
        for schema_field in table.schema:
            self._fields.setdefault(schema_field.name, schema_field)
        self.rows += table.num_rows

    def drop_rows(self, column: str, values: set[str]) -> None:
        """Remove the rows written so far whose `column` is one of `values` (rewrites those chunks)."""
        for chunk in self._chunks:
            data = pq.read_table(chunk)
            if column not in data.column_names:
                continue
            listed = pc.fill_null(
                pc.is_in(data.column(column), value_set=pa.array(sorted(values), pa.string())), False
            )
            kept = data.filter(pc.invert(listed))
            if kept.num_rows != data.num_rows:
                pq.write_table(kept, chunk, compression=_COMPRESSION)
                self.rows -= data.num_rows - kept.num_rows

    def prepare(self) -> Path | None:
        """Merge the chunks into one fsynced temporary file; returns it (None when there are no rows)."""
        if self.rows == 0:
            self._drop_chunks()
            return None
        schema = self.schema

        def merge(handle: IO[Any]) -> None:
            with pq.ParquetWriter(handle, schema, compression=_COMPRESSION) as writer:
                for chunk in self._chunks:
                    writer.write_table(_align(pq.read_table(chunk), schema))

        try:
            return atomic.write_temp(self.path, merge)
        finally:
            self._drop_chunks()

    def _drop_chunks(self) -> None:
        for chunk in self._chunks:
            with contextlib.suppress(FileNotFoundError):
                chunk.unlink()
        self._chunks = []

    def abort(self) -> None:
        self._drop_chunks()


def commit_streams(writers: Mapping[str, StreamingFileWriter]) -> dict[str, int]:
    """Swap in several streamed files as one step (all temporary files first, then the moves)."""
    temps: dict[str, Path | None] = {}
    try:
        for name, writer in writers.items():
            temps[name] = writer.prepare()
    except BaseException:
        atomic.discard(temp for temp in temps.values() if temp is not None)
        for writer in writers.values():
            writer.abort()
        raise
    data_dir, tables = _tables_of_paths(writer.path for writer in writers.values())
    with table_locks(data_dir, tables) if data_dir is not None else contextlib.nullcontext():
        return _move_streams(writers, temps)


def _move_streams(
    writers: Mapping[str, StreamingFileWriter], temps: Mapping[str, Path | None]
) -> dict[str, int]:
    atomic.commit((temp, writers[name].path) for name, temp in temps.items() if temp is not None)
    written: dict[str, int] = {}
    for name, writer in writers.items():
        if temps[name] is None:
            _remove(writer.path)
            written[name] = 0
        else:
            written[name] = writer.rows
    return written
