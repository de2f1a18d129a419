"""Does the lake equal the account, record for record? A comparator for tests and benchmarks.

```python
from orderspace_devtools.lake_diff import diff_lake, truth_from_sandbox, truth_from_store

diff = diff_lake(data_dir, truth_from_store(server.store))       # in-process sandbox
diff = diff_lake(data_dir, truth_from_sandbox(server.base_url))   # any sandbox, over /_sandbox/records/
assert diff.equal, diff.summary()
diff.tables["orders"].missing    # keys the account has and the lake lacks
diff.tables["orders"].extra      # keys the lake has and the account lacks (deleted records left behind)
diff.tables["orders"].differing  # {key: {column: (lake value, account value)}}
diff.tables["orders"].duplicates # keys stored more than once
```

The truth side is the sandbox's current records (the API's shape) turned into rows by the product's own
flattening (`lake.flatten.split_record` + `rows_to_arrow`), so both sides have the same columns and types.
Every table the lake holds is compared (`endpoints.PULLED`: parents and child tables), except the
inventory snapshot history, which records past states, not the account.

What is normalised, because it is representation only: column order and row order; a column one side lacks
compares as null (a field the API stopped sending lands as nulls, by the contract); `_loaded_at` (when a row
was written) is ignored. Everything else counts, including the partition a record is stored in (the `date`
folder of a date-partitioned table, compared with the day its record's date field gives): a record left in
its old day after its invoice date changed is a difference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from orderspace_pipelines.endpoints import PULLED, Endpoint
from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.flatten import Row, rows_to_arrow, split_record
from orderspace_pipelines.lake.schemas import LOADED_AT, PARTITION_COLUMN, table_spec
from orderspace_pipelines.lake.sweep import day_of

Key = tuple[Any, ...]
Records = Mapping[str, Sequence[Mapping[str, Any]]]  # resource -> records in the API's shape
IGNORED_COLUMNS = frozenset({LOADED_AT})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def compared_tables() -> dict[str, Endpoint]:
    """Every lake table compared, with the endpoint that fills it (parents and children, no snapshots)."""
    return {
        table: endpoint
        for endpoint in PULLED
        for table in endpoint.tables
        if table != endpoint.snapshot_table
    }


@dataclass
class TableDiff:
    """How one table differs; empty lists/dicts when it is equal."""

    table: str
    key: tuple[str, ...]
    lake_rows: int = 0
    truth_rows: int = 0
    missing: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    differing: dict[Key, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    duplicates: list[Key] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.duplicates)

    def summary(self, limit: int = 5) -> str:
        if self.equal:
            return f"{self.table}: equal ({self.lake_rows} rows)"
        parts = [f"{self.table}: lake {self.lake_rows} rows, account {self.truth_rows}"]
        for name, keys in (("missing", self.missing), ("extra", self.extra), ("duplicated", self.duplicates)):
            if keys:
                parts.append(f"  {name} {len(keys)}: {', '.join(map(_key_text, keys[:limit]))}")
        if self.differing:
            parts.append(f"  differing {len(self.differing)}:")
            for key, columns in list(self.differing.items())[:limit]:
                shown = "; ".join(
                    f"{name} lake={lake!r} account={truth!r}" for name, (lake, truth) in columns.items()
                )
                parts.append(f"    {_key_text(key)}: {shown}")
        return "\n".join(parts)


@dataclass
class LakeDiff:
    """The per-table differences between a lake and an account."""

    tables: dict[str, TableDiff]

    @property
    def equal(self) -> bool:
        return all(diff.equal for diff in self.tables.values())

    def unequal(self) -> list[str]:
        return [name for name, diff in self.tables.items() if not diff.equal]

    def summary(self, limit: int = 5) -> str:
        if self.equal:
            rows = sum(diff.lake_rows for diff in self.tables.values())
            return f"lake equals the account: {len(self.tables)} tables, {rows} rows"
        return "\n".join(self.tables[name].summary(limit) for name in self.unequal())


def _key_text(key: Key) -> str:
    return "/".join(str(part) for part in key)


# --- the truth side -----------------------------------------------------------------------------------


def truth_from_store(store: Any) -> dict[str, list[dict[str, Any]]]:
    """The records of an in-process sandbox (`SandboxServer.store`), one consistent copy per resource."""
    with store.lock:
        return {endpoint.resource: store.all(endpoint.resource) for endpoint in PULLED}


def truth_from_sandbox(base_url: str, *, timeout: float = 60.0) -> dict[str, list[dict[str, Any]]]:
    """The records of a sandbox in another process, over `GET <base>/_sandbox/records/<resource>`
    (`base_url` is the server's root, e.g. `http://127.0.0.1:8765`, not its `/v1` API URL)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout) as http:
        for endpoint in PULLED:
            response = http.get(f"/_sandbox/records/{endpoint.resource}")
            response.raise_for_status()
            out[endpoint.resource] = response.json()[endpoint.resource]
    return out


def truth_rows(endpoint: Endpoint, records: Iterable[Mapping[str, Any]]) -> dict[str, list[Row]]:
    """An endpoint's records as the lake's rows per table (child rows carry their parent's key); a
    date-partitioned table's rows also carry the `date` their record belongs in."""
    rows: dict[str, list[Row]] = {table: [] for table in endpoint.tables if table != endpoint.snapshot_table}
    for record in records:
        parent, children = split_record(endpoint, record)
        day = day_of(endpoint, record) if endpoint.partitioned else None
        for table, table_rows in [(endpoint.table, [parent]), *children.items()]:
            for row in table_rows:
                rows[table].append({**row, PARTITION_COLUMN: day} if endpoint.partitioned else row)
    return rows


def _typed(table: str, rows: list[Row]) -> list[Row]:
    """Rows through the lake's own Arrow conversion (declared types), as Python values."""
    days = [row.get(PARTITION_COLUMN) for row in rows]
    data = rows_to_arrow(table_spec(table), rows, loaded_at=_EPOCH).to_pylist()
    if table_spec(table).partitioned:
        for row, day in zip(data, days, strict=True):
            row[PARTITION_COLUMN] = day
    return data


# --- the lake side --------------------------------------------------------------------------------------


def lake_rows(data_dir: Path, table: str) -> list[Row]:
    """Every stored row of a lake table; a date-partitioned one's rows carry their folder's `date`."""
    root = storage.table_dir(data_dir, table)
    if not table_spec(table).partitioned:
        path = storage.whole_file(data_dir, table)
        return pq.read_table(path).to_pylist() if path.is_file() else []
    rows: list[Row] = []
    for day in storage.stored_days(data_dir, table):
        data = pq.read_table(root / f"{PARTITION_COLUMN}={day.isoformat()}" / storage.PART_FILE)
        rows.extend({**row, PARTITION_COLUMN: day} for row in data.to_pylist())
    return rows


# --- comparison -------------------------------------------------------------------------------------------


def _same(lake: Any, truth: Any) -> bool:
    if isinstance(lake, float) and isinstance(truth, float) and math.isnan(lake) and math.isnan(truth):
        return True
    if lake is None or truth is None:
        return lake is truth
    return type(lake) is type(truth) and bool(lake == truth)


def _by_key(rows: Iterable[Row], key: tuple[str, ...]) -> tuple[dict[Key, Row], list[Key]]:
    out: dict[Key, Row] = {}
    duplicates: list[Key] = []
    for row in rows:
        row_key = tuple(row.get(name) for name in key)
        if row_key in out:
            duplicates.append(row_key)
        out[row_key] = row
    return out, duplicates


def diff_rows(table: str, lake: Iterable[Row], truth: Iterable[Row]) -> TableDiff:
    """Compare one table's lake rows with the account's rows (both as Python values) by the table's key."""
    key = table_spec(table).key
    lake_by_key, duplicates = _by_key(lake, key)
    truth_by_key, _ = _by_key(truth, key)
    diff = TableDiff(table, key, lake_rows=len(lake_by_key) + len(duplicates), truth_rows=len(truth_by_key))
    diff.duplicates = sorted(set(duplicates), key=_key_text)
    diff.missing = sorted((k for k in truth_by_key if k not in lake_by_key), key=_key_text)
    diff.extra = sorted((k for k in lake_by_key if k not in truth_by_key), key=_key_text)
    for row_key in sorted(set(lake_by_key) & set(truth_by_key), key=_key_text):
        stored, wanted = lake_by_key[row_key], truth_by_key[row_key]
        columns = (set(stored) | set(wanted)) - IGNORED_COLUMNS
        changed = {
            name: (stored.get(name), wanted.get(name))
            for name in sorted(columns)
            if not _same(stored.get(name), wanted.get(name))
        }
        if changed:
            diff.differing[row_key] = changed
    return diff


def diff_lake(data_dir: Path, truth: Records, tables: Iterable[str] | None = None) -> LakeDiff:
    """Compare every lake table (or just `tables`) with the account's records (`truth_from_*`)."""
    wanted = compared_tables()
    names = list(wanted) if tables is None else list(tables)
    unknown = [name for name in names if name not in wanted]
    if unknown:
        raise KeyError(f"not a compared lake table: {', '.join(unknown)}; known: {', '.join(wanted)}")
    expected: dict[str, list[Row]] = {}
    for endpoint in {wanted[name].resource: wanted[name] for name in names}.values():
        if endpoint.resource not in truth:
            raise KeyError(f"the account's records lack {endpoint.resource!r}")
        for table, rows in truth_rows(endpoint, truth[endpoint.resource]).items():
            expected[table] = _typed(table, rows)
    return LakeDiff(
        {name: diff_rows(name, lake_rows(Path(data_dir), name), expected[name]) for name in names}
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m orderspace_devtools.lake_diff DATA_DIR SANDBOX_URL`: the summary; exit 1 if unequal."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("sandbox_url", help="the sandbox's root URL, e.g. http://127.0.0.1:8765")
    parser.add_argument("--json", action="store_true", help="print the differing keys as JSON")
    args = parser.parse_args(argv)
    diff = diff_lake(args.data_dir, truth_from_sandbox(args.sandbox_url))
    if args.json:
        print(json.dumps({name: _as_json(diff.tables[name]) for name in diff.unequal()}, default=str))
    else:
        print(diff.summary())
    return 0 if diff.equal else 1


def _as_json(diff: TableDiff) -> dict[str, Any]:
    return {
        "missing": diff.missing,
        "extra": diff.extra,
        "duplicates": diff.duplicates,
        "differing": {_key_text(key): columns for key, columns in diff.differing.items()},
    }


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "LakeDiff",
    "TableDiff",
    "compared_tables",
    "diff_lake",
    "diff_rows",
    "lake_rows",
    "truth_from_sandbox",
    "truth_from_store",
    "truth_rows",
]
