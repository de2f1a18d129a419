"""Asset checks over the lake: unique keys, child rows pointing at existing parents, totals matching lines.

The checks are declared on the pull multi-assets themselves (`check_specs`) and evaluated at the end of
each pull step, right after the data lands. They cannot be separate `@asset_check` definitions: the
partitioned pull logs one materialization per day it wrote rather than one per partition of a range
(a full pull spans thousands of days), so its outputs are skippable, and Dagster skips separate checks
downstream of skipped outputs. The pull assets can be subset, so the checks can also be run on their own
from the UI (select only the checks: the step evaluates them without calling the API).

Checks read the Parquet files through an in-memory DuckDB (`lake.lake_connection`), never the catalog
file, so they neither wait for nor block a notebook or another run. They look at the whole table (all
partitions), since a broken key or an orphan line anywhere is worth knowing about.

- `unique_key` on every table: no two rows share the key, and no key column is null.
  Keys: the contract's, with `line_number` for line tables whose lines have no id of their own;
  `inventory_level_snapshots` is checked as (sku, snapshot_at) on the `inventory_levels` asset.
- `parent_exists` on order_lines, invoice_lines, invoice_payments, dispatch_lines, product_variants.
- `totals_match_lines` on orders and invoices: net_total equals the sum of the lines' sub_total, within
  half a penny per line plus a penny (rounding).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from orderspace_pipelines.lake import lake_connection
from orderspace_pipelines.lake.schemas import (
    INVENTORY_LEVELS_VIEW,
    INVENTORY_SNAPSHOTS,
    RESOURCES,
    table_spec,
)

SAMPLE = 5


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def unique_key_violations(data_dir: Path, table: str) -> tuple[int, int, list[str]]:
    """(duplicate rows, rows with a null key column, sample duplicate keys) for a lake table."""
    spec = table_spec(table)
    key = ", ".join(_quote(column) for column in spec.key)
    nulls = " OR ".join(f"{_quote(column)} IS NULL" for column in spec.key)
    with lake_connection(data_dir) as db:
        duplicates = db.execute(
            f"SELECT {key}, count(*) AS n FROM {_quote(table)} "
            "GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC"
        ).fetchall()
        null_rows = db.execute(f"SELECT count(*) FROM {_quote(table)} WHERE {nulls}").fetchone()[0]
    extra_rows = sum(row[-1] - 1 for row in duplicates)
    sample = [" / ".join(str(value) for value in row[:-1]) for row in duplicates[:SAMPLE]]
    return extra_rows, int(null_rows), sample


def orphan_rows(data_dir: Path, child: str) -> tuple[int, list[str]]:
    """(child rows whose parent id is not in the parent table, sample parent ids)."""
    spec = table_spec(child)
    assert spec.parent and spec.parent_key
    query = (
        f"SELECT c.{_quote(spec.parent_key)} FROM {_quote(child)} c "
        f"ANTI JOIN {_quote(spec.parent)} p ON c.{_quote(spec.parent_key)} = p.id"
    )
    with lake_connection(data_dir) as db:
        rows = db.execute(query).fetchall()
    return len(rows), sorted({str(row[0]) for row in rows})[:SAMPLE]


def total_mismatches(data_dir: Path, parent: str, lines: str, parent_key: str) -> tuple[int, int, list[str]]:
    """(records whose net_total differs from their lines' sum of sub_total, records compared, samples)."""
    query = f"""
        WITH sums AS (
            SELECT {_quote(parent_key)} AS parent_id, sum(sub_total) AS line_total, count(*) AS lines
            FROM {_quote(lines)} GROUP BY ALL
        )
        SELECT p.id, p.net_total, coalesce(s.line_total, 0) AS line_total
        FROM {_quote(parent)} p LEFT JOIN sums s ON s.parent_id = p.id
        WHERE p.net_total IS NOT NULL
          AND abs(p.net_total - coalesce(s.line_total, 0)) > 0.01 + 0.005 * coalesce(s.lines, 0)
        ORDER BY p.id
    """
    with lake_connection(data_dir) as db:
        compared = db.execute(
            f"SELECT count(*) FROM {_quote(parent)} WHERE net_total IS NOT NULL"
        ).fetchone()[0]
        rows = db.execute(query).fetchall()
    sample = [f"{row[0]}: net_total {row[1]} vs lines {row[2]:.2f}" for row in rows[:SAMPLE]]
    return len(rows), int(compared), sample


@dataclass(frozen=True)
class LakeCheck:
    """One check on one asset: its name, what it checks, and how to evaluate it over the lake."""

    asset: str
    name: str
    description: str
    evaluate: Callable[[Path], tuple[bool, dict[str, Any]]]

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, description=self.description)

    def result(self, data_dir: Path) -> dg.AssetCheckResult:
        passed, metadata = self.evaluate(data_dir)
        return dg.AssetCheckResult(
            asset_key=self.asset,
            check_name=self.name,
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
        )


def _asset_of(table: str) -> str:
    return INVENTORY_LEVELS_VIEW if table == INVENTORY_SNAPSHOTS else table


def _unique_check(table: str) -> LakeCheck:
    key = ", ".join(table_spec(table).key)

    def evaluate(data_dir: Path) -> tuple[bool, dict[str, Any]]:
        duplicates, nulls, sample = unique_key_violations(data_dir, table)
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

    def evaluate(data_dir: Path) -> tuple[bool, dict[str, Any]]:
        orphans, sample = orphan_rows(data_dir, child)
        return orphans == 0, {"orphan_rows": orphans, "sample_missing_parents": ", ".join(sample) or "-"}

    description = f"every {child}.{spec.parent_key} is the id of a row in {spec.parent}."
    return LakeCheck(child, "parent_exists", description, evaluate)


def _totals_check(parent: str, lines: str, parent_key: str) -> LakeCheck:
    def evaluate(data_dir: Path) -> tuple[bool, dict[str, Any]]:
        mismatched, compared, sample = total_mismatches(data_dir, parent, lines, parent_key)
        return mismatched == 0, {
            "mismatched": mismatched,
            "compared": compared,
            "sample": "; ".join(sample) or "-",
        }

    description = f"{parent}.net_total equals the sum of its {lines}.sub_total (rounding tolerance)."
    return LakeCheck(parent, "totals_match_lines", description, evaluate)


def _checks_for(resource: str) -> list[LakeCheck]:
    spec = RESOURCES[resource]
    tables = [spec.table, *(child.table for child in spec.children)]
    checks = [_unique_check(table) for table in tables]
    checks += [_parent_check(table) for table in tables if table_spec(table).parent]
    if resource == "orders":
        checks.append(_totals_check("orders", "order_lines", "order_id"))
    if resource == "invoices":
        checks.append(_totals_check("invoices", "invoice_lines", "invoice_id"))
    return checks


# The checks of each pull multi-asset, by API resource (the pull assets declare and evaluate them).
CHECKS_BY_RESOURCE: dict[str, list[LakeCheck]] = {resource: _checks_for(resource) for resource in RESOURCES}

# Separate `@asset_check` definitions for `Definitions(asset_checks=...)`: none, every check is declared on
# its pull multi-asset (see the module docstring), so Definitions picks them up with PULL_ASSETS.
PULL_CHECKS: list[dg.AssetChecksDefinition] = []
