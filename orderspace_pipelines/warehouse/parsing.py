"""Reading a warehouse CSV: decoding, telling its kind by the header, splitting it into rows.

Rules (see CONTRACT.md, "Warehouse files"):

* UTF-8 with or without BOM, comma separated; anything else is a file-level error.
* Header names are matched case- and space-insensitively (`" On Hand"` is `on_hand`).
* inventory: `sku` and exactly one of `on_hand` / `available` (both -> file rejected: the API computes one
  from the other and refuses both at once).
* dispatches: `order_number` or `order_id` (both allowed: a row's `order_id` wins when filled), `sku`,
  `quantity`, optional `comments`. Other columns are ignored.
* A row with the wrong number of fields is a bad row (a short last line without a line ending is reported
  as truncated); completely empty lines are skipped; a CSV syntax error ends the file at that line, the rows
  before it are kept.

No values are interpreted here: that is validation's job (`inventory.py`, `dispatches.py`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from enum import StrEnum


class FileKind(StrEnum):
    INVENTORY = "inventory"
    DISPATCHES = "dispatches"


INVENTORY_COLUMNS = ("on_hand", "available")
ORDER_COLUMNS = ("order_number", "order_id")
EXPECTED_HEADERS = (
    "inventory: sku plus exactly one of on_hand or available; "
    "dispatches: order_number or order_id, sku, quantity and optionally comments"
)


@dataclass(frozen=True)
class CsvRow:
    """One data row: `line` is its 1-based line in the file (the header is line 1)."""

    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read as a record (wrong field count, CSV syntax error, blank fields)."""

    line: int
    reason: str
    raw: str = ""


@dataclass
class ParsedFile:
    """The outcome of reading one file. `file_error` set means nothing in it can be pushed."""

    kind: FileKind | None = None
    header: list[str] = field(default_factory=list)
    value_column: str | None = None  # inventory: "on_hand" or "available"
    rows: list[CsvRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    file_error: str | None = None


def canonical_column(name: str) -> str:
    """`' On Hand '` -> `on_hand`; `Order-Number` -> `order_number`."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")


def detect_kind(columns: list[str]) -> tuple[FileKind | None, str | None, str | None]:
    """(kind, inventory value column, error) for a canonical header."""
    present = set(columns)
    duplicates = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicates:
        return None, None, f"the header repeats column(s) {', '.join(duplicates)}"
    has_order = any(c in present for c in ORDER_COLUMNS)
    if "sku" in present and has_order and "quantity" in present:
        return FileKind.DISPATCHES, None, None
    values = [c for c in INVENTORY_COLUMNS if c in present]
    if "sku" in present and not has_order:
        if len(values) == 2:
            return (
                None,
                None,
                "the file has both on_hand and available columns; an inventory file must have exactly one "
                "(Orderspace computes one from the other and refuses both in one update)",
            )
        if len(values) == 1:
            return FileKind.INVENTORY, values[0], None
    shown = ", ".join(columns) if any(columns) else "(empty)"
    return None, None, f"the header [{shown}] matches no warehouse file kind; expected {EXPECTED_HEADERS}"


def decode(data: bytes) -> tuple[str | None, str | None]:
    """(text, error): UTF-8 with an optional BOM, strictly."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, (
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} is invalid); "
            "export it as CSV UTF-8"
        )


def parse_bytes(data: bytes) -> ParsedFile:
    """Read a whole warehouse file from its bytes."""
    parsed = ParsedFile()
    text, error = decode(data)
    if text is None:
        parsed.file_error = error
        return parsed
    if not text.strip():
        parsed.file_error = "the file is empty: no header row and no data rows"
        return parsed
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines = text.splitlines()
    ends_with_newline = text.endswith(("\n", "\r"))
    previous_line = 0
    try:
        header_fields = next(reader)
    except csv.Error as exc:
        parsed.file_error = f"the header line cannot be read as CSV: {exc}"
        return parsed
    previous_line = reader.line_num
    parsed.header = [canonical_column(h) for h in header_fields]
    kind, value_column, error = detect_kind(parsed.header)
    parsed.kind, parsed.value_column, parsed.file_error = kind, value_column, error
    width = len(parsed.header)
    while True:
        start = previous_line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raw = lines[start - 1] if start - 1 < len(lines) else ""
            parsed.bad_rows.append(
                BadRow(
                    start,
                    f"line {start} cannot be read as CSV ({exc}); the rest of the file was not read",
                    raw,
                )
            )
            break
        previous_line = reader.line_num
        if not fields:
            continue  # an empty line carries no data
        raw = ",".join(fields)
        if len(fields) > width and not any(f.strip() for f in fields[width:]):
            fields = fields[:width]  # trailing empty cells, e.g. "SKU-1,4,"
        if len(fields) != width:
            is_last = reader.line_num >= len(lines)
            if is_last and not ends_with_newline and len(fields) < width:
                reason = (
                    f"line {start} is truncated: {len(fields)} of {width} columns and no line ending "
                    "(was the file still being written?)"
                )
            else:
                reason = f"line {start} has {len(fields)} fields but the header has {width}"
            parsed.bad_rows.append(BadRow(start, reason, raw))
            continue
        values = {name: value.strip() for name, value in zip(parsed.header, fields, strict=True) if name}
        if not any(values.values()):
            parsed.bad_rows.append(BadRow(start, f"line {start} is blank (every field is empty)", raw))
            continue
        parsed.rows.append(CsvRow(start, values))
    if not parsed.rows and not parsed.bad_rows and parsed.file_error is None:
        parsed.file_error = "the file has a header but no data rows"
    return parsed
