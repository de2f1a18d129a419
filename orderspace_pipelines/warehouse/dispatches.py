"""Dispatch files: the rows of one order become one dispatch, created exactly once.

Per row: an order reference (`order_id` when that column is filled, else `order_number`), a `sku` and a
whole `quantity` of at least 1. Rows are grouped by order reference, in file order.

Resolving an order number to its id: the pulled orders Parquet first; numbers it does not know are looked up
by paging the API's order list from the newest (one request per 100 orders, stopping when every number is
found; an unknown number therefore costs a full scan, which is why the pulled data is asked first).

Before sending, the live order is fetched (1 request): every row's SKU must be on the order and the rows'
quantities, taken in file order, must not exceed what is still outstanding (ordered - dispatched, summed
over the order's non-shipping lines with that SKU). Rows that fail are rejected with the reason; the
others form the dispatch, one dispatch line per SKU. An order with no sendable row creates no dispatch.

Exactly once: each dispatch carries a marker `[wh:<sha256[:12]>:<group>]` at the end of its `comments`.
The ledger records the exact body as `pending` before the POST and `confirmed` (with the dispatch id) after.
A `pending` entry found on a later run, or a POST whose outcome is unknown (connection dropped, 5xx), is
reconciled against Orderspace before anything is sent again: the dispatches created since the day before
the pending time are listed and one for the same order with the marker in its comments (or, should the API
stop returning comments, the same lines) counts as sent. Test hook: `ORDERSPACE_PUSH_CRASH_AFTER_SEND=1`
kills the process right after the API answers and before the ledger is updated.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orderspace_pipelines.client.errors import (
    APIError,
    BadRequestError,
    NotFoundError,
    ServerError,
    TransportError,
    ValidationError,
)
from orderspace_pipelines.warehouse import lakedata
from orderspace_pipelines.warehouse.inventory import CRASH_HOOK_ENV
from orderspace_pipelines.warehouse.ledger import DispatchRecord, Ledger
from orderspace_pipelines.warehouse.parsing import CsvRow, ParsedFile
from orderspace_pipelines.warehouse.protocols import PushClient, PushLog
from orderspace_pipelines.warehouse.report import RowResult

CLOSED_STATUSES = frozenset(
    {"fulfilled", "cancelled", "canceled", "voided", "void", "deleted", "rejected", "closed"}
)
DEFINITIVE_ERRORS = (ValidationError, BadRequestError, NotFoundError)


class DispatchOutcomeUnknownError(RuntimeError):
    """Some dispatches could not be confirmed or ruled out; the file stays claimed for a re-run."""


@dataclass(frozen=True)
class DispatchRow:
    line: int
    reference: str  # as written in the file, for reports
    group_key: str  # "id:or_x" or "no:1204"
    sku: str
    quantity: int
    comments: str


@dataclass
class OrderGroup:
    group_key: str
    reference: str
    rows: list[DispatchRow] = field(default_factory=list)
    order_id: str | None = None


def validate_rows(rows: list[CsvRow]) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows with a usable order reference, SKU and quantity; results for the others."""
    good: list[DispatchRow] = []
    bad: list[RowResult] = []
    for row in rows:
        values = row.values
        order_id = values.get("order_id", "")
        number = lakedata.normalise_order_number(values.get("order_number", ""))
        sku = values.get("sku", "")
        raw_quantity = values.get("quantity", "")
        reference = order_id or number
        problems = []
        if not reference:
            problems.append("the order reference (order_number / order_id) is empty")
        elif not order_id and not number.isdigit():
            problems.append(f"order_number {values.get('order_number')!r} is not a number")
        if not sku:
            problems.append("sku is empty")
        quantity = _whole(raw_quantity)
        if quantity is None:
            problems.append(
                f"quantity {raw_quantity!r} is not a whole number" if raw_quantity else "quantity is empty"
            )
        elif quantity < 1:
            problems.append(f"quantity {raw_quantity} must be at least 1")
        if problems:
            bad.append(
                RowResult(
                    row.line, "rejected", "; ".join(problems), sku=sku, value=raw_quantity, order=reference
                )
            )
            continue
        assert quantity is not None
        group_key = f"id:{order_id}" if order_id else f"no:{number}"
        good.append(DispatchRow(row.line, reference, group_key, sku, quantity, values.get("comments", "")))
    return good, bad


def _whole(text: str) -> int | None:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def marker_for(sha256: str, group_key: str) -> str:
    return f"[wh:{sha256[:12]}:{group_key.replace(':', '')}]"


def group_rows(rows: list[DispatchRow]) -> list[OrderGroup]:
    groups: dict[str, OrderGroup] = {}
    for row in rows:
        groups.setdefault(row.group_key, OrderGroup(row.group_key, row.reference)).rows.append(row)
    return list(groups.values())


def resolve_order_ids(groups: list[OrderGroup], *, client: PushClient, data_dir, log: PushLog) -> None:
    """Fill `order_id` for every group whose order can be found (pulled data first, then the API)."""
    numbers: dict[str, list[OrderGroup]] = defaultdict(list)
    for group in groups:
        if group.group_key.startswith("id:"):
            group.order_id = group.group_key[3:]
        else:
            numbers[group.group_key[3:]].append(group)
    if not numbers:
        return
    found = lakedata.order_ids_by_number(data_dir, numbers)
    missing = set(numbers) - set(found)
    if missing:
        log.info(f"looking up {len(missing)} order number(s) not in the pulled orders through the API")
        for order in client.list_orders():
            key = lakedata.normalise_order_number(order.get("number", ""))
            if key in missing and order.get("id"):
                found[key] = str(order["id"])
                missing.discard(key)
                if not missing:
                    break
    for number, owners in numbers.items():
        for group in owners:
            group.order_id = found.get(number)


def plan_dispatch(group: OrderGroup, order: dict[str, Any]) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows of `group` the live order can take, and rejections for the others."""
    label = f"order {order.get('number') or group.reference}"
    status = str(order.get("status") or "").strip().lower()
    if status in CLOSED_STATUSES:
        return [], [_reject(row, f"{label} is {status}; nothing can be dispatched") for row in group.rows]
    lines = order.get("order_lines")
    if not isinstance(lines, list):
        return [], [
            _reject(row, f"{label} came back without order lines; cannot check it") for row in group.rows
        ]
    ordered: Counter[str] = Counter()
    dispatched: Counter[str] = Counter()
    for line in lines:
        if not isinstance(line, dict) or line.get("shipping") is True:
            continue
        sku = str(line.get("sku") or "").strip()
        ordered[sku] += _whole(str(line.get("quantity", 0))) or 0
        dispatched[sku] += _whole(str(line.get("dispatched", 0) or 0)) or 0
    taken: Counter[str] = Counter()
    sendable: list[DispatchRow] = []
    rejected: list[RowResult] = []
    for row in group.rows:
        if row.sku not in ordered:
            rejected.append(_reject(row, f"SKU {row.sku} is not on {label}"))
            continue
        outstanding = ordered[row.sku] - dispatched[row.sku] - taken[row.sku]
        if row.quantity > outstanding:
            earlier = f" after earlier rows of this file ({taken[row.sku]})" if taken[row.sku] else ""
            rejected.append(
                _reject(
                    row,
                    f"quantity {row.quantity} exceeds the {max(outstanding, 0)} still outstanding for "
                    f"{row.sku} on {label}{earlier} "
                    f"(ordered {ordered[row.sku]}, dispatched {dispatched[row.sku]})",
                )
            )
            continue
        taken[row.sku] += row.quantity
        sendable.append(row)
    return sendable, rejected


def _reject(row: DispatchRow, reason: str, status: str = "rejected") -> RowResult:
    return RowResult(row.line, status, reason, sku=row.sku, value=str(row.quantity), order=row.reference)


def build_body(order_id: str, rows: list[DispatchRow], marker: str) -> dict[str, Any]:
    quantities: dict[str, int] = {}
    for row in rows:
        quantities[row.sku] = quantities.get(row.sku, 0) + row.quantity
    notes = list(dict.fromkeys(row.comments for row in rows if row.comments))
    return {
        "order_id": order_id,
        "comments": " ".join([*notes, marker]),
        "dispatch_lines": [{"sku": sku, "quantity": quantity} for sku, quantity in quantities.items()],
    }


def find_dispatch(client: PushClient, record: DispatchRecord) -> dict[str, Any] | None:
    """The dispatch a pending ledger entry created, if Orderspace has it (see the module docstring)."""
    pending_day = datetime.fromisoformat(record.pending_at).date() - timedelta(days=1)
    wanted_lines = Counter(
        (str(line["sku"]), int(line["quantity"])) for line in record.body.get("dispatch_lines", [])
    )
    same_order: list[dict[str, Any]] = []
    for dispatch in client.list_dispatches(created_since=pending_day.isoformat()):
        if str(dispatch.get("order_id") or "") != record.order_id:
            continue
        if record.marker in str(dispatch.get("comments") or ""):
            return dispatch
        same_order.append(dispatch)
    # Drift fallback: the API stopped returning comments, so match the same order and the same lines.
    for dispatch in same_order:
        if "comments" in dispatch:
            continue
        lines = Counter(
            (str(line.get("sku")), _whole(str(line.get("quantity"))) or 0)
            for line in dispatch.get("dispatch_lines") or []
            if isinstance(line, dict)
        )
        if lines == wanted_lines:
            return dispatch
    return None


def _dispatch_id(response: Any) -> str:
    if isinstance(response, dict):
        inner = response.get("dispatch") if isinstance(response.get("dispatch"), dict) else response
        return str(inner.get("id") or "")
    return ""


def push_dispatches(
    parsed: ParsedFile, *, sha256: str, client: PushClient, ledger: Ledger, data_dir, log: PushLog
) -> list[RowResult]:
    """Validate, check against the live orders and create one dispatch per order; a result for every row."""
    rows, results = validate_rows(parsed.rows)
    groups = group_rows(rows)
    # Orders already settled in the ledger need no look-up at all.
    unsettled = [g for g in groups if ledger.dispatch(sha256, g.group_key) is None]
    resolve_order_ids(unsettled, client=client, data_dir=data_dir, log=log)
    unknown_outcomes: list[str] = []
    for group in groups:
        record = ledger.dispatch(sha256, group.group_key)
        if record is not None:
            results.extend(
                _settle_recorded(group, record, sha256=sha256, client=client, ledger=ledger, log=log)
            )
            if (ledger.dispatch(sha256, group.group_key) or record).state == "pending":
                unknown_outcomes.append(group.reference)
            continue
        if group.order_id is None:
            reason = f"order number {group.reference} was not found in Orderspace"
            results.extend(_reject(row, reason) for row in group.rows)
            continue
        try:
            order = client.get_order(group.order_id)
        except NotFoundError:
            results.extend(
                _reject(row, f"order {group.reference} was not found in Orderspace") for row in group.rows
            )
            continue
        if isinstance(order.get("order"), dict):
            order = order["order"]
        sendable, rejected = plan_dispatch(group, order)
        results.extend(rejected)
        if not sendable:
            continue
        marker = marker_for(sha256, group.group_key)
        body = build_body(group.order_id, sendable, marker)
        record = ledger.dispatch_pending(sha256, group.group_key, group.order_id, marker, body)
        outcome = _send(group, sendable, record, sha256=sha256, client=client, ledger=ledger, log=log)
        results.extend(outcome)
        if (ledger.dispatch(sha256, group.group_key) or record).state == "pending":
            unknown_outcomes.append(group.reference)
    if unknown_outcomes:
        raise DispatchOutcomeUnknownError(
            f"the dispatch(es) for order(s) {', '.join(unknown_outcomes)} could not be confirmed or ruled "
            "out (Orderspace did not answer); the file stays claimed in warehouse/work/ and re-running the "
            "push reconciles them before sending anything again"
        )
    return results


def _settle_recorded(
    group: OrderGroup,
    record: DispatchRecord,
    *,
    sha256: str,
    client: PushClient,
    ledger: Ledger,
    log: PushLog,
) -> list[RowResult]:
    """Results for a group the ledger already knows; a pending one is reconciled and, if absent, resent."""
    rows = group.rows
    sent_skus = {line["sku"] for line in record.body.get("dispatch_lines", [])}
    if record.state == "confirmed":
        return [
            _dispatched(row, record.dispatch_id or "", "created by an earlier attempt")
            for row in rows
            if row.sku in sent_skus
        ] + _not_in_body(rows, sent_skus)
    if record.state == "refused":
        reason = f"the API refused the dispatch: {record.message}"
        return [_reject(row, reason, "refused") for row in rows if row.sku in sent_skus] + _not_in_body(
            rows, sent_skus
        )
    sendable = [row for row in rows if row.sku in sent_skus]
    return _send(
        group, sendable, record, sha256=sha256, client=client, ledger=ledger, log=log, reconcile_first=True
    ) + (_not_in_body(rows, sent_skus))


def _not_in_body(rows: list[DispatchRow], sent_skus: set[str]) -> list[RowResult]:
    return [
        _reject(row, "not part of the dispatch recorded by an earlier attempt (failed its checks then)")
        for row in rows
        if row.sku not in sent_skus
    ]


def _dispatched(row: DispatchRow, dispatch_id: str, reason: str = "") -> RowResult:
    return RowResult(
        row.line,
        "dispatched",
        reason,
        sku=row.sku,
        value=str(row.quantity),
        order=row.reference,
        dispatch_id=dispatch_id,
    )


def _send(
    group: OrderGroup,
    rows: list[DispatchRow],
    record: DispatchRecord,
    *,
    sha256: str,
    client: PushClient,
    ledger: Ledger,
    log: PushLog,
    reconcile_first: bool = False,
) -> list[RowResult]:
    """POST the recorded body (reconciling first when its earlier fate is unknown); one try + one resend."""
    attempts = 0
    must_reconcile = reconcile_first
    while True:
        if must_reconcile:
            log.info(f"reconciling the pending dispatch for order {group.reference} ({record.marker})")
            existing = find_dispatch(client, record)
            if existing is not None:
                dispatch_id = _dispatch_id(existing)
                ledger.dispatch_confirmed(sha256, group.group_key, dispatch_id)
                log.info(f"order {group.reference}: dispatch {dispatch_id} already exists; not sent again")
                return [_dispatched(row, dispatch_id, "created by an earlier attempt") for row in rows]
            if attempts >= 2:
                log.warning(f"order {group.reference}: outcome still unknown after {attempts} attempts")
                return [
                    _reject(row, "the dispatch could not be confirmed (Orderspace did not answer)", "pending")
                    for row in rows
                ]
        attempts += 1
        try:
            response = client.create_dispatch(record.body)
        except DEFINITIVE_ERRORS as exc:
            ledger.dispatch_refused(sha256, group.group_key, exc.message)
            log.warning(f"order {group.reference}: the API refused the dispatch: {exc.message}")
            return [_reject(row, f"the API refused the dispatch: {exc.message}", "refused") for row in rows]
        except (TransportError, ServerError) as exc:
            log.warning(f"order {group.reference}: dispatch outcome unknown ({exc}); reconciling")
            must_reconcile = True
            continue
        except APIError as exc:  # any other 4xx: definitive, nothing was created
            ledger.dispatch_refused(sha256, group.group_key, exc.message)
            return [_reject(row, f"the API refused the dispatch: {exc.message}", "refused") for row in rows]
        if os.environ.get(CRASH_HOOK_ENV) == "1":
            os._exit(70)  # test hook: die between the API call and the ledger write
        dispatch_id = _dispatch_id(response)
        ledger.dispatch_confirmed(sha256, group.group_key, dispatch_id)
        log.info(f"order {group.reference}: dispatch {dispatch_id} created ({len(rows)} row(s))")
        return [_dispatched(row, dispatch_id) for row in rows]
