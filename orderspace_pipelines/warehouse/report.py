"""What happened to each row of a warehouse file, and the report written beside it.

Row statuses:

* inventory: `updated` (sent and accepted), `unchanged` (already at that level in fresh pulled or live
  data, not sent), `superseded` (a later row of the same SKU wins), `rejected` (failed validation, not sent),
  `refused` (the API refused that row; isolated by splitting the request).
* dispatches: `dispatched` (part of a created dispatch), `rejected` (not sendable: unknown order, SKU not on
  the order, more than is outstanding, ...), `refused` (the API refused the dispatch).
* any kind: `duplicate` (the same content was pushed before; nothing sent).

Every row of the file appears once, in file order. The report is written twice, as JSON (the whole
result, every text exactly as read) and as CSV (one line per row), both atomically. In the CSV, a cell that
a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return: file
text echoed back, such as a SKU `=HYPERLINK(...)`) is prefixed with a single quote, so it shows as text.

`PushResult.exit_code` is what `orderspace-pipelines push` exits with (the `EXIT_*` constants).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orderspace_pipelines.warehouse.files import atomic_write_text
from orderspace_pipelines.warehouse.states import FileKind, FileOutcome, RowStatus

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

EXIT_ALL_DONE = 0  # every row pushed, already right, superseded, or the file was a duplicate
EXIT_ROWS_REJECTED = 3  # the file was processed but some rows were rejected or refused (see the report)
EXIT_FILE_REJECTED = 4  # nothing was pushed: the file was unreadable or no row of it usable
EXIT_STOPPED = 5  # the push stopped on an unexpected error; the report names what was sent before it
EXIT_FILE_TAKEN = 6  # another process or host has the file (pushing it now, or pushed it); nothing done here


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: formula-like text gets a leading single quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass
class RowResult:
    """One row's fate. `reference` is the SKU (inventory) or the order reference (dispatches)."""

    line: int
    status: RowStatus
    reason: str = ""
    sku: str = ""
    value: str = ""
    order: str = ""
    dispatch_id: str = ""


@dataclass
class PushResult:
    """The outcome of pushing one file: what the CLI prints and the Dagster run shows."""

    file: str
    sha256: str
    kind: FileKind | None
    outcome: FileOutcome
    final_path: str = ""
    report_path: str = ""
    file_error: str | None = None
    stopped_by: str | None = None  # the unexpected error that stopped the push mid-file, if any
    duplicate_of: str | None = None
    taken_elsewhere: str | None = None  # why another process or host has the file (outcome `elsewhere`)
    rows_read: int = 0
    levels_updated: int = 0
    levels_unchanged: int = 0
    dispatches_created: int = 0
    rows_rejected: int = 0
    requests: int = 0
    throttle_wait_seconds: float = 0.0
    rows: list[RowResult] = field(default_factory=list)

    def set_rows(self, rows: list[RowResult]) -> None:
        """Take the rows' results (put in file order) and count them."""
        self.rows = sorted(rows, key=lambda row: row.line)
        self.levels_updated = sum(row.status == RowStatus.UPDATED for row in self.rows)
        self.levels_unchanged = sum(row.status == RowStatus.UNCHANGED for row in self.rows)
        dispatched = {row.dispatch_id for row in self.rows if row.status == RowStatus.DISPATCHED}
        self.dispatches_created = len(dispatched)
        self.rows_rejected = sum(row.status.is_bad for row in self.rows)

    def status_counts(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.rows))

    def summary(self) -> str:
        """One line for logs and the demo."""
        if self.taken_elsewhere:
            return self.taken_elsewhere
        if self.file_error:
            return f"{self.file}: rejected ({self.file_error})"
        if self.stopped_by:
            sent = sum(r.status.was_sent for r in self.rows)
            return (
                f"{self.file}: stopped by an unexpected error ({self.stopped_by}); "
                f"{sent} rows had been sent, the file is in rejected/ (drop it again to push the rest)"
            )
        if self.duplicate_of:
            return f"{self.file}: duplicate of {self.duplicate_of}, nothing sent"
        parts = [f"{self.file} ({self.kind}): {self.outcome}", f"{self.rows_read} rows read"]
        if self.kind == FileKind.INVENTORY:
            parts.append(f"{self.levels_updated} levels updated, {self.levels_unchanged} unchanged")
        else:
            parts.append(f"{self.dispatches_created} dispatches created")
        parts.append(f"{self.rows_rejected} rows rejected, {self.requests} API requests")
        return ", ".join(parts)

    @property
    def exit_code(self) -> int:
        """0 all rows done, 3 some rows rejected, 4 the whole file rejected, 5 stopped, 6 another process or
        host has the file (`EXIT_*`)."""
        if self.taken_elsewhere:
            return EXIT_FILE_TAKEN
        if self.stopped_by:
            return EXIT_STOPPED
        if self.outcome != FileOutcome.PROCESSED:
            return EXIT_FILE_REJECTED
        if any(row.status.is_bad for row in self.rows):
            return EXIT_ROWS_REJECTED
        return EXIT_ALL_DONE

    @property
    def success(self) -> bool:
        """True when the file was processed (its bad rows, if any, reported); False when rejected."""
        return self.outcome == FileOutcome.PROCESSED

    def describe(self, max_problems: int = 5) -> str:
        """A few lines for the CLI and the demo: the summary, the first problems, where the report is."""
        lines = [self.summary()]
        problems = [row for row in self.rows if row.status.is_bad]
        for row in problems[:max_problems]:
            lines.append(f"  line {row.line}: {row.status}: {row.reason}")
        if len(problems) > max_problems:
            lines.append(f"  ... and {len(problems) - max_problems} more rows not pushed")
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def to_json(self) -> str:
        payload = asdict(self)
        payload["status_counts"] = self.status_counts()
        return json.dumps(payload, indent=2, sort_keys=False) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["line", "status", "sku", "value", "order", "dispatch_id", "reason"])
        if self.file_error:
            writer.writerow(["", RowStatus.REJECTED, "", "", "", "", spreadsheet_safe(self.file_error)])
        for row in self.rows:
            cells = [row.sku, row.value, row.order, row.dispatch_id, row.reason]
            writer.writerow([row.line, row.status, *(spreadsheet_safe(cell) for cell in cells)])
        return buffer.getvalue()


def write_report(result: PushResult, beside: Path) -> Path:
    """Write `<file>.report.json` and `<file>.report.csv` next to `beside`; return the JSON path."""
    json_path = beside.with_name(beside.name + ".report.json")
    csv_path = beside.with_name(beside.name + ".report.csv")
    result.report_path = str(json_path)
    atomic_write_text(csv_path, result.to_csv())
    atomic_write_text(json_path, result.to_json())
    return json_path
