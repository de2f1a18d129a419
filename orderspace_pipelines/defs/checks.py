"""Asset checks over the lake: unique keys, child rows pointing at existing parents, totals matching lines.

The checks are declared on the pull multi-assets themselves (`check_specs`) and evaluated at the end of
each pull step, right after the data lands. They cannot be separate `@asset_check` definitions: the
partitioned pull logs one materialization per day it wrote rather than one per partition of a range
(a full pull spans thousands of days), so its outputs are skippable, and Dagster skips separate checks
downstream of skipped outputs. The pull assets can be subset, so the checks can also be run on their own
from the UI (select only the checks: the step evaluates them without calling the API).

Checks read the Parquet files through an in-memory DuckDB (`lake.catalog.scan_connection`, one per
step), never the catalog file, so they neither wait for nor block a notebook or another run. They look
at the whole table (all partitions), since a broken key or an orphan line anywhere is worth knowing
about, but read only the columns they need, without `union_by_name` (one footer opened at bind time,
not one per day: see `catalog.scan_sql`; on a schema mismatch a query is retried with it), and under a
DuckDB memory limit (it spills to disk beyond it), so their memory does not grow with the lake.

- `unique_key` on every table: no two rows share the key, and no key column is null.
  Keys: the contract's, with `line_number` for line tables whose lines have no id of their own;
  `inventory_levels` by sku, and its history `inventory_level_snapshots` as (sku, snapshot_at), both on
  the `inventory_levels` asset.
- `parent_exists` on order_lines, invoice_lines, invoice_payments, dispatch_lines, product_variants.
- `totals_match_lines` on orders and invoices: net_total equals the sum of the lines' sub_total, within
  half a penny per line plus a penny (rounding).
- `status_known` on orders (a warning, not an error): every status is one of the API reference's
  (`lake.schemas.ORDER_STATUSES`); a new one is worth knowing about before a report miscounts it.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from orderspace_pipelines.lake.catalog import is_schema_mismatch, scan_connection, scan_sql
from orderspace_pipelines.lake.schemas import (
    INVENTORY_LEVELS_VIEW,
    INVENTORY_SNAPSHOTS,
    ORDER_STATUSES,
    RESOURCES,
    table_spec,
)

SAMPLE = 5


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def check_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """One in-memory DuckDB (memory-limited) for the checks of one step."""
    db = scan_connection()
    try:
        yield db
    finally:
        db.close()


def _fetch(
    db: duckdb.DuckDBPyConnection, data_dir: Path, build: Callable[[Callable[..., str]], str]
) -> list[tuple]:
    """Run the query `build(scan)` (scan(table, *columns) -> subquery); retry with union_by_name if needed."""

    def fast(table: str, *columns: str) -> str:
        return scan_sql(data_dir, table, columns)

    def union(table: str, *columns: str) -> str:
        return scan_sql(data_dir, table, columns, union_by_name=True)

    try:
        return db.execute(build(fast)).fetchall()
    except duckdb.Error as error:
        if not is_schema_mismatch(error):
            raise
        return db.execute(build(union)).fetchall()


def unique_key_violations(
    db: duckdb.DuckDBPyConnection, data_dir: Path, table: str
) -> tuple[int, int, list[str]]:
    """(duplicate rows, rows with a null key column, sample duplicate keys) for a lake table."""
    spec = table_spec(table)
    key = ", ".join(_quote(column) for column in spec.key)
    nulls = " OR ".join(f"{_quote(column)} IS NULL" for column in spec.key)
    duplicates = _fetch(
        db,
        data_dir,
        lambda scan: (
            f"SELECT {key}, count(*) AS n FROM {scan(table, *spec.key)} "
            "GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC"
        ),
    )
    null_rows = _fetch(
        db, data_dir, lambda scan: f"SELECT count(*) FROM {scan(table, *spec.key)} WHERE {nulls}"
    )[0][0]
    extra_rows = sum(row[-1] - 1 for row in duplicates)
    sample = [" / ".join(str(value) for value in row[:-1]) for row in duplicates[:SAMPLE]]
    return extra_rows, int(null_rows), sample


def orphan_rows(db: duckdb.DuckDBPyConnection, data_dir: Path, child: str) -> tuple[int, list[str]]:
    """(child rows whose parent id is not in the parent table, sample parent ids)."""
    spec = table_spec(child)
    assert spec.parent and spec.parent_key
    parent, key = spec.parent, _quote(spec.parent_key)

    def orphans(scan: Callable[..., str]) -> str:
        return (
            f"SELECT c.{key} FROM {scan(child, spec.parent_key)} c "
            f"ANTI JOIN {scan(parent, 'id')} p ON c.{key} = p.id"
        )

    count = _fetch(db, data_dir, lambda scan: f"SELECT count(*) FROM ({orphans(scan)})")[0][0]
    if not count:
        return 0, []
    sample = _fetch(
        db, data_dir, lambda scan: f"SELECT DISTINCT * FROM ({orphans(scan)}) ORDER BY 1 LIMIT {SAMPLE}"
    )
    return int(count), [str(row[0]) for row in sample]


def total_mismatches(
    db: duckdb.DuckDBPyConnection, data_dir: Path, parent: str, lines: str, parent_key: str
) -> tuple[int, int, list[str]]:
    """(records whose net_total differs from their lines' sum of sub_total, records compared, samples)."""

    def compared(scan: Callable[..., str]) -> str:
        return f"""
            WITH sums AS (
                SELECT {_quote(parent_key)} AS parent_id, sum(sub_total) AS line_total, count(*) AS lines
                FROM {scan(lines, parent_key, "sub_total")} GROUP BY ALL
            )
            SELECT p.id, p.net_total, coalesce(s.line_total, 0) AS line_total,
                   abs(p.net_total - coalesce(s.line_total, 0)) > 0.01 + 0.005 * coalesce(s.lines, 0)
                       AS mismatched
            FROM {scan(parent, "id", "net_total")} p LEFT JOIN sums s ON s.parent_id = p.id
            WHERE p.net_total IS NOT NULL
        """

    mismatched, total = _fetch(
        db,
        data_dir,
        lambda scan: f"SELECT count(*) FILTER (WHERE mismatched), count(*) FROM ({compared(scan)})",
    )[0]
    if not mismatched:
        return 0, int(total), []
    rows = _fetch(
        db,
        data_dir,
        lambda scan: (
            f"SELECT id, net_total, line_total FROM ({compared(scan)}) "
            f"WHERE mismatched ORDER BY id LIMIT {SAMPLE}"
        ),
    )
    sample = [f"{row[0]}: net_total {row[1]} vs lines {row[2]:.2f}" for row in rows]
    return int(mismatched), int(total), sample


def unknown_statuses(db: duckdb.DuckDBPyConnection, data_dir: Path) -> tuple[int, list[str]]:
    """(orders whose status is not one of the reference's, a sample of those statuses)."""
    known = ", ".join("'" + status + "'" for status in ORDER_STATUSES)
    rows = _fetch(
        db,
        data_dir,
        lambda scan: (
            f"SELECT status, count(*) FROM {scan('orders', 'status')} "
            f"WHERE status IS NOT NULL AND status NOT IN ({known}) GROUP BY ALL ORDER BY 2 DESC"
        ),
    )
    return sum(int(row[1]) for row in rows), [f"{row[0]} ({row[1]})" for row in rows[:SAMPLE]]


@dataclass(frozen=True)
class LakeCheck:
    """One check on one asset: its name, what it checks, and how to evaluate it over the lake."""

    asset: str
    name: str
    description: str
    evaluate: Callable[[duckdb.DuckDBPyConnection, Path], tuple[bool, dict[str, Any]]]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, description=self.description)

    def result(self, db: duckdb.DuckDBPyConnection, data_dir: Path) -> dg.AssetCheckResult:
        """Evaluate over the lake at `data_dir` with `db` (from `check_connection()`)."""
        passed, metadata = self.evaluate(db, data_dir)
        return dg.AssetCheckResult(
            asset_key=self.asset,
            check_name=self.name,
            passed=passed,
            severity=self.severity,
            metadata=metadata,
        )


def _asset_of(table: str) -> str:
    return INVENTORY_LEVELS_VIEW if table == INVENTORY_SNAPSHOTS else table


def _unique_check(table: str) -> LakeCheck:
    key = ", ".join(table_spec(table).key)

    def evaluate(db: duckdb.DuckDBPyConnection, data_dir: Path) -> tuple[bool, dict[str, Any]]:
        duplicates, nulls, sample = unique_key_violations(db, data_dir, table)
        metadata = {
            "key": key,
            "duplicate_rows": duplicates,
            "null_key_rows": nulls,
            "sample_duplicate_keys": ", ".join(sample) or "-",
        }
        return duplicates == 0 and nulls == 0, metadata

    name = "unique_snapshot_key" if table == INVENTORY_SNAPSHOTS else "unique_key"
    return LakeCheck(_asset_of(table), name, f"{table}: ({key}) is unique and never null.", evaluate)


def _parent_check(child: str) -> LakeCheck:
    spec = table_spec(child)

    def evaluate(db: duckdb.DuckDBPyConnection, data_dir: Path) -> tuple[bool, dict[str, Any]]:
        orphans, sample = orphan_rows(db, data_dir, child)
        return orphans == 0, {"orphan_rows": orphans, "sample_missing_parents": ", ".join(sample) or "-"}

    description = f"every {child}.{spec.parent_key} is the id of a row in {spec.parent}."
    return LakeCheck(child, "parent_exists", description, evaluate)


def _totals_check(parent: str, lines: str, parent_key: str) -> LakeCheck:
    def evaluate(db: duckdb.DuckDBPyConnection, data_dir: Path) -> tuple[bool, dict[str, Any]]:
        mismatched, compared, sample = total_mismatches(db, data_dir, parent, lines, parent_key)
        return mismatched == 0, {
            "mismatched": mismatched,
            "compared": compared,
            "sample": "; ".join(sample) or "-",
        }

    description = f"{parent}.net_total equals the sum of its {lines}.sub_total (rounding tolerance)."
    return LakeCheck(parent, "totals_match_lines", description, evaluate)


def _status_check() -> LakeCheck:
    def evaluate(db: duckdb.DuckDBPyConnection, data_dir: Path) -> tuple[bool, dict[str, Any]]:
        unknown, sample = unknown_statuses(db, data_dir)
        return unknown == 0, {"unknown_status_rows": unknown, "sample": ", ".join(sample) or "-"}

    description = "orders.status is one of the API reference's: " + ", ".join(ORDER_STATUSES) + "."
    return LakeCheck("orders", "status_known", description, evaluate, dg.AssetCheckSeverity.WARN)


def _checks_for(resource: str) -> list[LakeCheck]:
    spec = RESOURCES[resource]
    checks = [_unique_check(table) for table in spec.tables]
    checks += [_parent_check(table) for table in spec.tables if table_spec(table).parent]
    if resource == "orders":
        checks.append(_totals_check("orders", "order_lines", "order_id"))
        checks.append(_status_check())
    if resource == "invoices":
        checks.append(_totals_check("invoices", "invoice_lines", "invoice_id"))
    return checks


# The checks of each pull multi-asset, by API resource (the pull assets declare and evaluate them).
CHECKS_BY_RESOURCE: dict[str, list[LakeCheck]] = {resource: _checks_for(resource) for resource in RESOURCES}
