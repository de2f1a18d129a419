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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from orderspace_pipelines.warehouse.states import EntryState, RowStatus

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
    checked = [(row, *check_row(row, column)) for row in rows]
    last_line_of = {row.values["sku"]: row.line for row in rows if row.values.get("sku")}
    last_error_of = {
        row.values["sku"]: error
        for row, _, error in checked
        if error and row.values.get("sku") and last_line_of[row.values["sku"]] == row.line
    }
    levels: list[Level] = []
    results: list[RowResult] = []
    for row, value, error in checked:
        sku = row.values.get("sku", "")
        if error is None and value is not None and last_line_of[sku] == row.line:
            levels.append(Level(row.line, sku, value))
        else:
            results.append(_not_sent(row, column, error, last_line_of.get(sku), last_error_of.get(sku)))
    return levels, results


def check_row(row: CsvRow, column: str) -> tuple[Decimal | None, str | None]:
    """(value, error) for one row on its own: a filled SKU and a stock level of zero or more."""
    if not row.values.get("sku", ""):
        return None, "sku is empty"
    return parse_quantity(row.values.get(column, ""), column, positive=False)


def _not_sent(
    row: CsvRow, column: str, error: str | None, last: int | None, last_error: str | None
) -> RowResult:
    """The result of a row that is not sent: invalid itself, or not the last (valid) row of its SKU."""
    sku, raw = row.values.get("sku", ""), row.values.get(column, "")
    if error:
        return RowResult(row.line, RowStatus.REJECTED, error, sku=sku, value=raw)
    if last_error:
        reason = f"not sent: line {last}, the last row for this SKU, is invalid ({last_error})"
        return RowResult(row.line, RowStatus.REJECTED, reason, sku=sku, value=raw)
    reason = f"superseded by line {last} (the last row for a SKU wins)"
    return RowResult(row.line, RowStatus.SUPERSEDED, reason, sku=sku, value=raw)


@dataclass
class SkuKnowledge:
    """What is known of a file's SKUs before sending: which exist, which go unchecked, current levels."""

    known: set[str] = field(default_factory=set)  # SKUs Orderspace has (pulled data or a live look-up)
    unchecked: set[str] = field(default_factory=set)  # sent without a check: the API's refusal decides
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> level to diff against


def gather_knowledge(
    levels: Sequence[Level],
    *,
    client: PushClient,
    data_dir: Path,
    log: PushLog,
    snapshot_max_age_seconds: float,
) -> SkuKnowledge:
    """SKUs and levels from the pulled data, plus live look-ups of a few SKUs it does not know."""
    pulled = lakedata.pulled_skus(data_dir)
    knowledge = SkuKnowledge(known=set(pulled or ()))
    snapshot = lakedata.latest_snapshot(data_dir)
    if snapshot is not None and snapshot.age_seconds() <= snapshot_max_age_seconds:
        log.info(f"diffing against the pulled inventory snapshot of {snapshot.taken_at.isoformat()}")
        knowledge.reference.update(snapshot.levels)
    unknown = list(dict.fromkeys(level.sku for level in levels if level.sku not in knowledge.known))
    if unknown and pulled is not None and len(unknown) <= SKU_LOOKUP_LIMIT:
        log.info(f"looking up {len(unknown)} SKU(s) the pulled data does not know (1 request each)")
        for sku in unknown:
            live = lookup_level(client, sku)
            if live is not None:
                knowledge.known.add(sku)
                knowledge.reference[sku] = live  # fresher than any snapshot
    elif unknown:
        knowledge.unchecked = set(unknown)
        why = (
            "nothing was pulled yet" if pulled is None else f"{len(unknown)} SKUs are not in the pulled data"
        )
        log.info(
            f"{why}: those SKUs are sent unchecked and Orderspace refuses unknown ones (run a pull first)"
        )
    return knowledge


def triage(
    levels: Sequence[Level],
    knowledge: SkuKnowledge,
    already: Mapping[int, tuple[EntryState, str | None]],
    column: str,
) -> tuple[list[Level], list[RowResult]]:
    """The levels still to send, and results for the others (unknown SKU, settled earlier, unchanged)."""
    to_send: list[Level] = []
    results: list[RowResult] = []
    for level in levels:
        settled = _settled(level, knowledge, already.get(level.line), column)
        if settled is None:
            to_send.append(level)
        else:
            results.append(settled)
    return to_send, results


def _settled(
    level: Level, knowledge: SkuKnowledge, earlier: tuple[EntryState, str | None] | None, column: str
) -> RowResult | None:
    """The result of a level that needs no request, or None when it must be sent."""
    shown = level.shown
    if level.sku not in knowledge.known and level.sku not in knowledge.unchecked:
        reason = f"unknown SKU {level.sku!r}: Orderspace has no product variant with it"
        return RowResult(level.line, RowStatus.REJECTED, reason, sku=level.sku, value=shown)
    state, message = earlier or (None, None)
    if state == EntryState.CONFIRMED:
        return RowResult(level.line, RowStatus.UPDATED, "sent by an earlier attempt", level.sku, shown)
    if state == EntryState.REFUSED:
        return RowResult(level.line, RowStatus.REFUSED, message or "refused by the API", level.sku, shown)
    current = from_api(knowledge.reference.get(level.sku, {}).get(column))
    if state is None and current is not None and current == level.value:
        return RowResult(level.line, RowStatus.UNCHANGED, f"{column} is already {shown}", level.sku, shown)
    return None


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
    knowledge = gather_knowledge(
        levels, client=client, data_dir=data_dir, log=log, snapshot_max_age_seconds=snapshot_max_age_seconds
    )
    to_send, settled = triage(levels, knowledge, ledger.inventory_states(sha256), column)
    results.extend(settled)
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
    ledger.mark_inventory(sha256, rows, EntryState.PENDING)
    try:
        _update_with_retries(
            client, [{"sku": level.sku, column: to_json(level.value)} for level in batch], log
        )
    except ValidationError as exc:
        message = api_message(exc)
        if len(batch) == 1:
            level = batch[0]
            ledger.mark_inventory(sha256, rows, EntryState.REFUSED, message)
            log.warning(f"line {level.line}: the API refused {level.sku}: {message}")
            reason = f"refused by the API: {message}"
            return [RowResult(level.line, RowStatus.REFUSED, reason, level.sku, level.shown)]
        middle = len(batch) // 2
        log.info(f"a batch of {len(batch)} was refused ({message}); splitting it to isolate the bad rows")
        return [
            *_send(batch[:middle], column, sha256=sha256, client=client, ledger=ledger, log=log),
            *_send(batch[middle:], column, sha256=sha256, client=client, ledger=ledger, log=log),
        ]
    checkpoint("inventory.posted")
    ledger.mark_inventory(sha256, rows, EntryState.CONFIRMED)
    return [RowResult(level.line, RowStatus.UPDATED, "", level.sku, level.shown) for level in batch]


def api_message(exc: OrderspaceError) -> str:
    """The API's own message (the client prefixes chunk details to errors from batched updates)."""
    cause = exc.__cause__
    return cause.message if isinstance(cause, OrderspaceError) else exc.message


def _update_with_retries(client: PushClient, levels: list[dict[str, Any]], log: PushLog) -> None:
    """Send one request of levels, resending it after a 5xx or a dropped connection (levels are absolute)."""
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
