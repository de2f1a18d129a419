"""Inventory files: validate every row, skip what is already right, update the rest in requests of 200.

Validation, per row (line numbers are the file's, header = line 1):

* `sku` filled; the value a whole number (`12` or `12.0`, not `12.5` or `abc`) and not negative.
* Several rows for one SKU: **the last row wins**; earlier rows are reported `superseded by line N`. When that
  last row is itself invalid, every row of the SKU is rejected (we do not fall back to an older value).
* The SKU must exist. Knowledge comes from the pulled Parquet (product variants, inventory levels); when
  nothing was pulled, or some SKUs are not in it, the live inventory levels are listed from the API (one
  request per 100 SKUs) and they decide.

Sending: a row whose level already equals the file's value is `unchanged` and not sent, judged against the
live levels when they were listed, else against the latest pulled snapshot if it is younger than
`snapshot_max_age_seconds`. The rest goes in file order, `batch_size` (200, the API maximum) per request;
so with SKUs known from pulled data and no fresh snapshot, 1,000 valid rows cost exactly 5 API requests.
A request refused with 422 is split in halves until the refused rows are isolated: the others land, each
refused row is reported with the API's message. Every batch is written to the ledger as pending before it is
sent and confirmed after, so a restarted run does not resend confirmed rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from orderspace_pipelines.client.errors import OrderspaceError, ServerError, TransportError, ValidationError
from orderspace_pipelines.warehouse import lakedata
from orderspace_pipelines.warehouse.ledger import Ledger
from orderspace_pipelines.warehouse.parsing import CsvRow, ParsedFile
from orderspace_pipelines.warehouse.protocols import PushClient, PushLog
from orderspace_pipelines.warehouse.report import RowResult

API_BATCH_LIMIT = 200
SEND_ATTEMPTS = 3  # levels are absolute: resending a batch after a 5xx / dropped connection is harmless
CRASH_HOOK_ENV = "ORDERSPACE_PUSH_CRASH_AFTER_SEND"


@dataclass(frozen=True)
class Level:
    """A validated row to send."""

    line: int
    sku: str
    value: int


def parse_whole_number(raw: str, column: str) -> tuple[int | None, str | None]:
    """(value, error) for a non-negative whole number cell."""
    text = raw.strip()
    if not text:
        return None, f"{column} is empty"
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, f"{column} {text!r} is not a whole number"
    if not number.is_finite() or number != number.to_integral_value():
        return None, f"{column} {text!r} is not a whole number"
    if number < 0:
        return None, f"{column} {text} is negative; stock levels cannot be below zero"
    return int(number), None


def validate_rows(rows: Sequence[CsvRow], column: str) -> tuple[list[Level], list[RowResult]]:
    """Rows that may be sent (one per SKU, the last) and the results of all the others."""
    results: list[RowResult] = []
    checked: list[tuple[CsvRow, int | None, str | None]] = []
    for row in rows:
        sku = row.values.get("sku", "")
        raw = row.values.get(column, "")
        if not sku:
            checked.append((row, None, "sku is empty"))
            continue
        value, error = parse_whole_number(raw, column)
        checked.append((row, value, error))
    last_line_of: dict[str, int] = {}
    for row, _, _ in checked:
        sku = row.values.get("sku", "")
        if sku:
            last_line_of[sku] = row.line
    last_error_of = {
        row.values["sku"]: error
        for row, _, error in checked
        if row.values.get("sku") and last_line_of[row.values["sku"]] == row.line and error
    }
    levels: list[Level] = []
    for row, value, error in checked:
        sku = row.values.get("sku", "")
        raw = row.values.get(column, "")
        if error:
            results.append(RowResult(row.line, "rejected", error, sku=sku, value=raw))
        elif last_line_of[sku] != row.line:
            last = last_line_of[sku]
            reason = f"superseded by line {last} (the last row for a SKU wins)"
            if sku in last_error_of:
                reason = (
                    f"not sent: line {last}, the last row for this SKU, is invalid ({last_error_of[sku]})"
                )
                results.append(RowResult(row.line, "rejected", reason, sku=sku, value=raw))
            else:
                results.append(RowResult(row.line, "superseded", reason, sku=sku, value=raw))
        else:
            assert value is not None
            levels.append(Level(row.line, sku, value))
    return levels, results


def push_inventory(
    parsed: ParsedFile,
    *,
    sha256: str,
    client: PushClient,
    ledger: Ledger,
    data_dir: Path,
    log: PushLog,
    snapshot_max_age_seconds: float = 900.0,
    batch_size: int = API_BATCH_LIMIT,
) -> list[RowResult]:
    """Validate, diff and send one inventory file's rows; return a result for every row."""
    column = parsed.value_column or "on_hand"
    batch_size = max(1, min(batch_size, API_BATCH_LIMIT))
    levels, results = validate_rows(parsed.rows, column)

    known = lakedata.pulled_skus(data_dir)
    live: dict[str, dict] | None = None
    if levels and (known is None or any(level.sku not in known for level in levels)):
        reason = "no pulled product variants" if known is None else "some SKUs are not in the pulled data"
        log.info(f"listing live inventory levels from the API ({reason})")
        live = {}
        for item in client.list_inventory_levels():
            sku = str(item.get("sku") or "").strip()
            if sku:
                live[sku] = item
        known = set(live)
    reference: dict[str, dict] | None = live
    if reference is None:
        snapshot = lakedata.latest_snapshot(data_dir)
        if snapshot is not None and snapshot.age_seconds() <= snapshot_max_age_seconds:
            log.info(f"diffing against the pulled inventory snapshot of {snapshot.taken_at.isoformat()}")
            reference = snapshot.levels

    already = ledger.inventory_states(sha256)
    to_send: list[Level] = []
    for level in levels:
        shown = str(level.value)
        if level.sku not in (known or set()):
            reason = f"unknown SKU {level.sku!r}: Orderspace has no product variant with it"
            results.append(RowResult(level.line, "rejected", reason, sku=level.sku, value=shown))
            continue
        state, message = already.get(level.line, (None, None))
        if state == "confirmed":
            results.append(RowResult(level.line, "updated", "sent by an earlier attempt", level.sku, shown))
            continue
        if state == "refused":
            results.append(
                RowResult(level.line, "refused", message or "refused by the API", level.sku, shown)
            )
            continue
        current = (reference or {}).get(level.sku, {}).get(column) if reference is not None else None
        if state is None and current is not None and _as_int(current) == level.value:
            results.append(
                RowResult(level.line, "unchanged", f"{column} is already {level.value}", level.sku, shown)
            )
            continue
        to_send.append(level)

    if to_send:
        log.info(f"sending {len(to_send)} {column} levels in batches of {batch_size}")
    for start in range(0, len(to_send), batch_size):
        batch = to_send[start : start + batch_size]
        results.extend(_send(batch, column, sha256=sha256, client=client, ledger=ledger, log=log))
    return results


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _send(
    batch: list[Level], column: str, *, sha256: str, client: PushClient, ledger: Ledger, log: PushLog
) -> list[RowResult]:
    """Send one batch; on 422 split it in halves until the refused rows are isolated."""
    rows = [(level.line, level.sku, level.value) for level in batch]
    ledger.mark_inventory(sha256, rows, "pending")
    try:
        _update_with_retries(client, [{"sku": level.sku, column: level.value} for level in batch], log)
    except ValidationError as exc:
        message = api_message(exc)
        if len(batch) == 1:
            level = batch[0]
            ledger.mark_inventory(sha256, rows, "refused", message)
            log.warning(f"line {level.line}: the API refused {level.sku}: {message}")
            reason = f"refused by the API: {message}"
            return [RowResult(level.line, "refused", reason, level.sku, str(level.value))]
        middle = len(batch) // 2
        log.info(f"a batch of {len(batch)} was refused ({message}); splitting it to isolate the bad rows")
        return [
            *_send(batch[:middle], column, sha256=sha256, client=client, ledger=ledger, log=log),
            *_send(batch[middle:], column, sha256=sha256, client=client, ledger=ledger, log=log),
        ]
    if os.environ.get(CRASH_HOOK_ENV) == "1":
        os._exit(70)  # test hook: die between the API call and the ledger write
    ledger.mark_inventory(sha256, rows, "confirmed")
    return [RowResult(level.line, "updated", "", level.sku, str(level.value)) for level in batch]


def api_message(exc: OrderspaceError) -> str:
    """The API's own message (the client prefixes chunk details to errors from batched updates)."""
    cause = exc.__cause__
    return cause.message if isinstance(cause, OrderspaceError) else exc.message


def _update_with_retries(client: PushClient, levels: list[dict], log: PushLog) -> None:
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            client.update_inventory_levels(levels)
            return
        except (ServerError, TransportError) as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            log.warning(
                f"inventory update failed ({exc}); resending (attempt {attempt + 1} of {SEND_ATTEMPTS})"
            )
