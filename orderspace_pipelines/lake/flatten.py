"""Turn API records into flat rows and flat rows into Arrow tables with the declared schema.

- `split_record` flattens one API record into its parent row and its child rows (order lines, ...).
- `rows_to_arrow` builds the Arrow table of one lake table: declared columns with their declared types,
  then any undeclared fields as string columns (sorted by name), then `_loaded_at`.

Values that do not fit their declared type (a quantity of "lots", a date of "soon") never crash a run
and are never silently lost: the typed column gets a null, the original text is kept in an extra string
column `_raw_<column>`, and `CoercionLog` logs one warning per table and column (with a sample value and
a count) that the assets also report in their metadata. Empty strings in non-string columns are nulls.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from orderspace_pipelines.lake.schemas import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    LINE_NUMBER,
    LOADED_AT,
    RESERVED_COLUMNS,
    STRING,
    TIMESTAMP,
    ResourceSpec,
    TableSpec,
    table_spec,
)

log = logging.getLogger(__name__)

Row = dict[str, Any]
RAW_PREFIX = "_raw_"


class _Unfit(Exception):
    """A value that does not fit its declared column type."""


@dataclass
class CoercionLog:
    """Counts values that did not fit their declared type, per (table, column); warns once per column."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: dict[tuple[str, str], str] = field(default_factory=dict)
    logger: logging.Logger = log

    def record(self, table: str, column: str, value: Any, expected: pa.DataType) -> None:
        key = (table, column)
        if key not in self.counts:
            sample = _to_text(value)
            sample = sample if len(sample) <= 60 else sample[:57] + "..."
            self.samples[key] = sample
            self.logger.warning(
                "%s.%s: value %r does not fit the declared type %s; stored null (original kept in %s%s)",
                table,
                column,
                sample,
                expected,
                RAW_PREFIX,
                column,
            )
        self.counts[key] = self.counts.get(key, 0) + 1

    def summary(self) -> dict[str, str]:
        """`{"table.column": "N values, e.g. 'x'"}` for metadata."""
        return {
            f"{table}.{column}": f"{count} value(s) not of the declared type, e.g. {self.samples[key]!r}"
            for key, count in sorted(self.counts.items())
            for table, column in [key]
        }


def _column_name(name: str) -> str:
    return f"api_{name}" if name in RESERVED_COLUMNS else name


# Values that are never descended into (the common case, checked before the slower `Mapping` test).
_LEAVES = (str, int, float, bool, list, type(None))


def flatten(record: Mapping[str, Any], declared: frozenset[str] | set[str], prefix: str = "") -> Row:
    """Flatten nested objects with `_`; a declared column name stops the descent (its value is kept whole)."""
    out: Row = {}
    for key, value in record.items():
        name = f"{prefix}{key}" if prefix or type(key) is not str else key
        if not isinstance(value, _LEAVES) and name not in declared and isinstance(value, Mapping):
            out.update(flatten(value, declared, f"{name}_"))
        else:
            out[_column_name(name) if name in RESERVED_COLUMNS else name] = value
    return out


def split_record(spec: ResourceSpec, record: Mapping[str, Any]) -> tuple[Row, dict[str, list[Row]]]:
    """One API record -> (its flat parent row, {child table: flat child rows carrying the parent's key})."""
    parent_spec = table_spec(spec.table)
    parent_id = record.get("id")
    children: dict[str, list[Row]] = {}
    for child in spec.children:
        child_table = table_spec(child.table)
        declared = child_table.declared
        parent_key = child_table.parent_key or "parent_id"
        rows: list[Row] = []
        items = record.get(child.field)
        if isinstance(items, list):
            for position, item in enumerate(items):
                if not isinstance(item, Mapping):
                    item = {"value": item}
                row = flatten(item, declared)
                row[parent_key] = parent_id
                if child.numbered:
                    row[LINE_NUMBER] = position
                rows.append(row)
        elif items is not None:
            log.warning(
                "%s %s: %r is not a list of lines; no %s rows",
                spec.resource,
                parent_id,
                child.field,
                child.table,
            )
        children[child.table] = rows
    if spec.children:
        child_fields = {child.field for child in spec.children}
        record = {key: value for key, value in record.items() if key not in child_fields}
    return apply_aliases(parent_spec, flatten(record, parent_spec.declared)), children


def apply_aliases(spec: TableSpec, row: Row) -> Row:
    """Move aliased fields to their column (`created_at` -> `created`) unless the row already has a value."""
    for source, target in spec.aliases:
        if source in row and row.get(target) is None:
            row[target] = row.pop(source)
    return row


# --- value conversion -------------------------------------------------------------------------------------


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                parsed = float(text)
            except ValueError:
                raise _Unfit from None
            if not parsed.is_integer():
                raise _Unfit from None
            number = int(parsed)
    else:
        raise _Unfit
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _Unfit
    return number


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Unfit
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Unfit from None
        if math.isfinite(number):
            return number
    raise _Unfit


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Unfit


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise _Unfit from None
    raise _Unfit


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 time (or date) as an aware UTC datetime; naive times are taken as UTC (as the API says)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Unfit from None
    else:
        raise _Unfit
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_CONVERTERS: dict[pa.DataType, Callable[[Any], Any]] = {
    STRING: _to_text,
    INT: _to_int,
    FLOAT: _to_float,
    BOOL: _to_bool,
    DATE: _to_date,
    TIMESTAMP: parse_timestamp,
}


def record_date(value: Any) -> date | None:
    """The day a record belongs to, from a date or timestamp field; None if absent or unreadable."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and len(value.strip()) <= 10:
            return _to_date(value)
        return parse_timestamp(value).date()
    except _Unfit:
        return None


# Python types a column may hold to go to Arrow as they are (no per-value conversion): the common case.
_AS_IS: dict[pa.DataType, frozenset[type]] = {
    STRING: frozenset({str}),
    INT: frozenset({int}),
    FLOAT: frozenset({float, int}),
    BOOL: frozenset({bool}),
}
_NONE_TYPE = type(None)


def rows_to_arrow(
    spec: TableSpec, rows: Iterable[Row], *, loaded_at: datetime, coercions: CoercionLog | None = None
) -> pa.Table:
    """Build `spec`'s Arrow table: declared columns typed, extra fields as strings, then `_loaded_at`.

    A column whose values are all already of its type (or null) goes to Arrow in one call; any other
    column is converted value by value, so a value that does not fit is logged and kept as text.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    coercions = coercions if coercions is not None else CoercionLog()
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    raw_columns: dict[str, list[str | None]] = {}
    for name, dtype in spec.columns:
        column = [row.get(name) for row in rows]
        kinds = set(map(type, column))
        kinds.discard(_NONE_TYPE)
        as_is = _AS_IS.get(dtype)
        array = None
        if as_is is not None and kinds <= as_is:
            try:
                array = pa.array(column, type=dtype)
            except (pa.ArrowInvalid, OverflowError):
                array = None  # e.g. an integer beyond int64: convert value by value below
        if array is None:
            array = pa.array(
                _convert_column(spec.name, name, dtype, column, raw_columns, coercions), type=dtype
            )
        arrays.append(array)
        fields.append(pa.field(name, dtype))
    declared = spec.declared | {LOADED_AT}
    extra_names = sorted((set().union(*rows) - declared) | set(raw_columns))
    for name in extra_names:
        if name in raw_columns:
            values = raw_columns[name]
        else:
            values = [None if row.get(name) is None else _to_text(row[name]) for row in rows]
        arrays.append(pa.array(values, type=STRING))
        fields.append(pa.field(name, STRING))
    arrays.append(pa.repeat(pa.scalar(loaded_at, type=TIMESTAMP), len(rows)))
    fields.append(pa.field(LOADED_AT, TIMESTAMP))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _convert_column(
    table: str,
    name: str,
    dtype: pa.DataType,
    column: list[Any],
    raw_columns: dict[str, list[str | None]],
    coercions: CoercionLog,
) -> list[Any]:
    """Convert one column value by value; unfit values become null, their text goes to `_raw_<name>`."""
    convert = _CONVERTERS[dtype]
    values: list[Any] = [None] * len(column)
    for index, value in enumerate(column):
        if value is None or (value == "" and dtype != STRING):
            continue
        if dtype == STRING and type(value) is str:
            values[index] = value
            continue
        try:
            values[index] = convert(value)
        except _Unfit:
            coercions.record(table, name, value, dtype)
            raw_columns.setdefault(RAW_PREFIX + name, [None] * len(column))[index] = _to_text(value)
    return values
