"""Reading a warehouse CSV: decoding, telling its kind by the header, splitting it into rows.

Rules (see CONTRACT.md, "Warehouse files"):

* UTF-8 with or without BOM (a UTF-16 file with its BOM is read too), comma separated. A line holding bytes
  that are not UTF-8 (a Windows-1252 `é` in one comment) is a bad row naming the byte; the other lines are
  read. A header that is not UTF-8 rejects the file.
* Header names are matched case- and space-insensitively (`" On Hand"` is `on_hand`). A column the file
  kind uses may appear once (twice is ambiguous: file rejected); repeated columns the push ignores are fine.
* inventory: `sku` and exactly one of `on_hand` / `available` (both -> file rejected: the API computes one
  from the other and refuses both at once).
* dispatches: `order_number` or `order_id` (both allowed: a row's `order_id` wins when filled, and the two
  must name the same order), `sku`, `quantity`, optional `comments`. Other columns are ignored.
* A row with the wrong number of fields is a bad row (a short last line without a line ending is reported
  as truncated); completely empty lines are skipped. A field longer than `MAX_FIELD_CHARS` makes its row a
  bad row. A line that is not valid CSV (a stray quote, a NUL byte) is a bad row and reading goes on at the
  next line, so one broken line never costs the rows after it.

No values are interpreted here: that is validation's job (`inventory.py`, `dispatches.py`).
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field

from orderspace_pipelines.warehouse.states import FileKind

INVENTORY_COLUMNS = ("on_hand", "available")
ORDER_COLUMNS = ("order_number", "order_id")
USED_COLUMNS = frozenset({"sku", "quantity", "comments", *INVENTORY_COLUMNS, *ORDER_COLUMNS})
# The longest field a row may carry (a SKU, a number, a comment with tracking details all fit many times
# over); a longer one is a bad row. Python's csv module stops a whole file at 131,072 characters by default.
MAX_FIELD_CHARS = 10_000
_PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_UNDECODED = re.compile(r"[\udc80-\udcff]")
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

    def all_lines(self) -> list[int]:
        """The line numbers of every row read, good and bad, in file order."""
        return sorted([row.line for row in self.rows] + [bad.line for bad in self.bad_rows])


def canonical_column(name: str) -> str:
    """`' On Hand '` -> `on_hand`; `Order-Number` -> `order_number`."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")


def detect_kind(columns: list[str]) -> tuple[FileKind | None, str | None, str | None]:
    """(kind, inventory value column, error) for a canonical header."""
    present = set(columns)
    duplicates = sorted({c for c in columns if c in USED_COLUMNS and columns.count(c) > 1})
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
    """(text, error). UTF-8 (optional BOM); bytes that are not UTF-8 are kept as lone surrogates
    (`surrogateescape`) so that only the lines holding them are rejected. UTF-16 with a BOM is decoded."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError as exc:
            return None, f"the file starts like UTF-16 text but is not ({exc.reason}); export it as CSV UTF-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape"), None


def undecoded_byte(text: str) -> str | None:
    """`'byte 0xe9'` for the first byte of `text` that was not UTF-8, else None."""
    match = _UNDECODED.search(text)
    if match is None:
        return None
    return f"byte 0x{ord(match.group()) - 0xDC00:02x}"


def physical_lines(text: str) -> list[str]:
    """The text's lines with their endings, split where the csv module splits (\\n, \\r\\n, \\r)."""
    return _PHYSICAL_LINE.findall(text)


def parse_bytes(data: bytes) -> ParsedFile:
    """Read a whole warehouse file from its bytes."""
    parsed = ParsedFile()
    text, error = decode(data)
    if text is None or not text.strip():
        parsed.file_error = error or "the file is empty: no header row and no data rows"
        return parsed
    if csv.field_size_limit() < len(text) + 1:
        # Fields are measured below; the csv module must not stop the file at its own (small) limit.
        csv.field_size_limit(min(sys.maxsize, max(len(text) + 1, 1 << 20)))
    lines = physical_lines(text)
    header_end, header_fields, header_error = _read_header(lines)
    if header_error is not None:
        parsed.file_error = header_error
        return parsed
    parsed.header = [canonical_column(h) for h in header_fields]
    parsed.kind, parsed.value_column, parsed.file_error = detect_kind(parsed.header)
    ends_with_newline = text.endswith(("\n", "\r"))
    position = header_end  # index in `lines` of the next line to read
    while position < len(lines):
        position = _read_records(parsed, lines, position, ends_with_newline=ends_with_newline)
    if not parsed.rows and not parsed.bad_rows and parsed.file_error is None:
        parsed.file_error = "the file has a header but no data rows"
    return parsed


def _read_records(parsed: ParsedFile, lines: list[str], position: int, *, ends_with_newline: bool) -> int:
    """Read records from `lines[position:]` into `parsed` until the end or a line that is not valid CSV
    (reported as a bad row); return the index of the next line to read."""
    reader = csv.reader(iter(lines[position:]), strict=True)
    previous = 0
    while True:
        start = position + previous + 1  # 1-based line number of the record about to be read
        try:
            fields = next(reader)
        except StopIteration:
            return len(lines)
        except csv.Error as exc:
            raw = lines[start - 1].rstrip("\r\n")
            problem = "holds a NUL byte" if "\x00" in raw else f"cannot be read as CSV ({exc})"
            parsed.bad_rows.append(BadRow(start, f"line {start} {problem}", _clip(raw)))
            return start  # go on at the next physical line
        previous = reader.line_num
        is_last = position + previous >= len(lines)
        _take_row(parsed, fields, start, is_last=is_last, ends_with_newline=ends_with_newline)


def _read_header(lines: list[str]) -> tuple[int, list[str], str | None]:
    """(lines used, header fields, error) for the first non-empty record."""
    reader = csv.reader(iter(lines), strict=True)
    try:
        fields = next(reader)
        while not fields:
            fields = next(reader)
    except StopIteration:
        return 0, [], "the file is empty: no header row and no data rows"
    except csv.Error as exc:
        return 0, [], f"the header line cannot be read as CSV: {exc}"
    if any("\x00" in name for name in fields):
        return 0, [], "the header holds NUL bytes (is the file UTF-16 without a BOM?); export it as CSV UTF-8"
    bad = undecoded_byte("".join(fields))
    if bad:
        return 0, [], f"the header is not UTF-8 text ({bad} is invalid); export the file as CSV UTF-8"
    if any(len(f) > MAX_FIELD_CHARS for f in fields):
        return 0, [], f"the header has a name longer than {MAX_FIELD_CHARS:,} characters"
    return reader.line_num, fields, None


def _clip(raw: str, limit: int = 200) -> str:
    return raw if len(raw) <= limit else raw[:limit] + f"... ({len(raw):,} characters)"


def _take_row(
    parsed: ParsedFile, fields: list[str], start: int, *, is_last: bool, ends_with_newline: bool
) -> None:
    """Add one record to `parsed`: a row, a bad row, or nothing (an empty line carries no data)."""
    if not fields:
        return
    raw = _clip(",".join(fields))
    width = len(parsed.header)
    if len(fields) > width and not any(f.strip() for f in fields[width:]):
        fields = fields[:width]  # trailing empty cells, e.g. "SKU-1,4,"
    bad = _bad_shape(fields, width, start, raw, is_last=is_last, ends_with_newline=ends_with_newline)
    bad = bad or _bad_content(parsed.header, fields, start, raw)
    if bad is not None:
        parsed.bad_rows.append(bad)
        return
    values = {name: value.strip() for name, value in zip(parsed.header, fields, strict=True) if name}
    if not any(values.values()):
        parsed.bad_rows.append(BadRow(start, f"line {start} is blank (every field is empty)", raw))
        return
    parsed.rows.append(CsvRow(start, values))


def _bad_shape(
    fields: list[str], width: int, start: int, raw: str, *, is_last: bool, ends_with_newline: bool
) -> BadRow | None:
    """A bad row when the record does not have one field per header column (a truncated last line says so)."""
    if len(fields) == width:
        return None
    if is_last and not ends_with_newline and len(fields) < width:
        reason = (
            f"line {start} is truncated: {len(fields)} of {width} columns and no line ending "
            "(was the file still being written?)"
        )
    else:
        reason = f"line {start} has {len(fields)} fields but the header has {width}"
    return BadRow(start, reason, raw)


def _bad_content(header: list[str], fields: list[str], start: int, raw: str) -> BadRow | None:
    """A bad row when a field is too long, holds a NUL byte or bytes that were not UTF-8."""
    long = [
        (name or f"column {i + 1}", len(v))
        for i, (name, v) in enumerate(zip(header, fields, strict=True))
        if len(v) > MAX_FIELD_CHARS
    ]
    if long:
        name, size = long[0]
        reason = (
            f"line {start}: {name} is {size:,} characters long, more than the {MAX_FIELD_CHARS:,} allowed"
        )
        return BadRow(start, reason, raw)
    if any("\x00" in value for value in fields):
        return BadRow(start, f"line {start} holds a NUL byte", raw.replace("\x00", "\\0"))
    bad = undecoded_byte("".join(fields))
    if bad:
        reason = f"line {start} is not UTF-8 text ({bad} is invalid); export the file as CSV UTF-8"
        return BadRow(start, reason, raw.encode("utf-8", "replace").decode("utf-8"))
    return None
