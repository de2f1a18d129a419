"""Inventory files: validate every row, skip what is already right, update the rest in requests of 200.

Validation, per row (line numbers are the file's, header = line 1):

* `sku` filled; the value a number of zero or more (decimals allowed: the API types levels as numbers; see
  `quantities.py` for the precision and range checks). `abc`, `NaN`, `-1`, `1e400` are rejected.
* Several rows for one SKU: **the last row wins**; earlier rows are reported `superseded by line N`. When that
  last row is itself invalid, every row of the SKU is rejected (we do not fall back to an older value).
* The SKU must exist. Knowledge comes from the pulled Parquet (product variants, inventory levels). When a
  few SKUs (at most `SKU_LOOKUP_LIMIT`) are not in it (products added since the last pull), each is looked
  up with the inventory levels list's `sku` filter: 1 request, and a clear "unknown SKU" for those Orderspace
  does not have. Every level is never listed. When nothing was pulled, or more SKUs are missing than that,
  look-ups would cost more than they save: those SKUs are sent unchecked, the API refuses an unknown SKU
  (422) and the refused request is split until that row is isolated, so the others still land (levels are
  absolute, so a row sent twice by the split is harmless).

Sending: a row whose level already equals the file's value is `unchanged` and not sent, judged against the
live level when it was looked up, else against the latest pulled snapshot if it is younger than
`snapshot_max_age_seconds`. The rest goes in file order, `batch_size` (200, the API maximum) per request;
so with SKUs known from pulled data and no fresh snapshot, 1,000 valid rows cost exactly 5 API requests.
A request refused with 422 is split in halves until the refused rows are isolated: the others land, each
refused row is reported with the API's message. Every batch is written to the ledger as pending before it is
sent and confirmed after, so a restarted run does not resend confirmed rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from orderspace_pipelines.client.errors import OrderspaceError, ServerError, TransportError, ValidationError
from orderspace_pipelines.warehouse import lakedata
from orderspace_pipelines.warehouse.hooks import checkpoint
from orderspace_pipelines.warehouse.ledger import Ledger
from orderspace_pipelines.warehouse.parsing import CsvRow, ParsedFile
from orderspace_pipelines.warehouse.protocols import PushClient, PushLog
from orderspace_pipelines.warehouse.quantities import canonical, from_api, parse_quantity, to_json
from orderspace_pipelines.warehouse.report import RowResult

API_BATCH_LIMIT = 200
SEND_ATTEMPTS = 3  # levels are absolute: resending a batch after a 5xx / dropped connection is harmless
# Up to this many SKUs missing from the pulled data are looked up (1 request each); more, and the API's own
# refusal decides (see the module docstring). A choice: 20 requests is a third of a minute's budget.
SKU_LOOKUP_LIMIT = 20
# Records read from a `sku`-filtered list (it holds one level; should the filter be ignored, the look-up
# still stops inside its first page).
SKU_LOOKUP_READ_LIMIT = 50


@dataclass(frozen=True)
class Level:
    """A validated row to send."""

    line: int
    sku: str
    value: Decimal

    @property
    def shown(self) -> str:
        return canonical(self.value)


def validate_rows(rows: Sequence[CsvRow], column: str) -> tuple[list[Level], list[RowResult]]:
    """Rows that may be sent (one per SKU, the last) and the results of all the others."""
    results: list[RowResult] = []
    checked: list[tuple[CsvRow, Decimal | None, str | None]] = []
    for row in rows:
        sku = row.values.get("sku", "")
        raw = row.values.get(column, "")
        if not sku:
            checked.append((row, None, "sku is empty"))
            continue
        value, error = parse_quantity(raw, column, positive=False)
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

    pulled = lakedata.pulled_skus(data_dir)
    known = set(pulled or ())
    reference: dict[str, dict] = {}
    snapshot = lakedata.latest_snapshot(data_dir)
    if snapshot is not None and snapshot.age_seconds() <= snapshot_max_age_seconds:
        log.info(f"diffing against the pulled inventory snapshot of {snapshot.taken_at.isoformat()}")
        reference.update(snapshot.levels)
    unknown = list(dict.fromkeys(level.sku for level in levels if level.sku not in known))
    unchecked: set[str] = set()
    if unknown and pulled is not None and len(unknown) <= SKU_LOOKUP_LIMIT:
        log.info(f"looking up {len(unknown)} SKU(s) the pulled data does not know (1 request each)")
        for sku in unknown:
            live = lookup_level(client, sku)
            if live is not None:
                known.add(sku)
                reference[sku] = live  # fresher than any snapshot
    elif unknown:
        unchecked = set(unknown)
        why = (
            "nothing was pulled yet" if pulled is None else f"{len(unknown)} SKUs are not in the pulled data"
        )
        log.info(
            f"{why}: those SKUs are sent unchecked and Orderspace refuses unknown ones (run a pull first)"
        )

    already = ledger.inventory_states(sha256)
    to_send: list[Level] = []
    for level in levels:
        shown = level.shown
        if level.sku not in known and level.sku not in unchecked:
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
        current = from_api(reference.get(level.sku, {}).get(column))
        if state is None and current is not None and current == level.value:
            results.append(
                RowResult(level.line, "unchanged", f"{column} is already {shown}", level.sku, shown)
            )
            continue
        to_send.append(level)

    if to_send:
        log.info(f"sending {len(to_send)} {column} levels in batches of {batch_size}")
    for start in range(0, len(to_send), batch_size):
        batch = to_send[start : start + batch_size]
        results.extend(_send(batch, column, sha256=sha256, client=client, ledger=ledger, log=log))
    return results


def lookup_level(client: PushClient, sku: str) -> dict[str, Any] | None:
    """The live level of one SKU (the inventory levels list filtered by `sku`: 1 request), or None."""
    for item in itertools.islice(client.list_inventory_levels(sku=sku), SKU_LOOKUP_READ_LIMIT):
        if str(item.get("sku") or "").strip() == sku:
            return item
    return None


def _send(
    batch: list[Level], column: str, *, sha256: str, client: PushClient, ledger: Ledger, log: PushLog
) -> list[RowResult]:
    """Send one batch; on 422 split it in halves until the refused rows are isolated."""
    rows = [(level.line, level.sku, level.shown) for level in batch]
    ledger.mark_inventory(sha256, rows, "pending")
    try:
        _update_with_retries(
            client, [{"sku": level.sku, column: to_json(level.value)} for level in batch], log
        )
    except ValidationError as exc:
        message = api_message(exc)
        if len(batch) == 1:
            level = batch[0]
            ledger.mark_inventory(sha256, rows, "refused", message)
            log.warning(f"line {level.line}: the API refused {level.sku}: {message}")
            reason = f"refused by the API: {message}"
            return [RowResult(level.line, "refused", reason, level.sku, level.shown)]
        middle = len(batch) // 2
        log.info(f"a batch of {len(batch)} was refused ({message}); splitting it to isolate the bad rows")
        return [
            *_send(batch[:middle], column, sha256=sha256, client=client, ledger=ledger, log=log),
            *_send(batch[middle:], column, sha256=sha256, client=client, ledger=ledger, log=log),
        ]
    checkpoint("inventory.posted")
    ledger.mark_inventory(sha256, rows, "confirmed")
    return [RowResult(level.line, "updated", "", level.sku, level.shown) for level in batch]


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
