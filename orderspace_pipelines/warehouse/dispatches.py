"""Dispatch files: the rows of one order become one dispatch, created exactly once.

Per row: an order reference (`order_id` when that column is filled, else `order_number`), a `sku` and a
`quantity` above zero (decimals allowed, see `quantities.py`). When a row fills both `order_id` and
`order_number` they must name the same order: a row whose two references disagree is rejected naming both
(it is not dispatched to either). Rows are grouped by the order they resolve to, in file order, so rows
naming one order by id and others by number still make one dispatch.

Resolving an order number to its id: the pulled orders Parquet first; a number it does not know costs one
request, the order list filtered by `number` (never a scan of the list). That request returns the order
itself, so it is not fetched again.

Before sending, the live order is fetched (1 request, unless the number look-up just returned it). Its
status must be one that can still be dispatched (`DISPATCHABLE_STATUSES`, see there for which are guesses);
every row's SKU must be on the order and the rows' quantities, taken in file order, must not exceed what is
still outstanding (ordered - dispatched, summed over the order's non-shipping lines with that SKU). Rows that
fail are rejected with the reason; the others form the dispatch, one dispatch line per SKU. An order with no
sendable row creates no dispatch.

Exactly once, with nothing added to what the customer reads (`comments` appear on the delivery note and in
the dispatch email, so they carry only the warehouse's own comment):

1. The order's existing dispatches are listed with the dispatch list's `order_id` filter (1 request). When
   every line of the live order shows nothing dispatched yet, no dispatch of it can exist and the request
   is skipped (an inference from the API's model: a dispatch marks its order lines as dispatched).
2. The ledger records, committed before the POST: the exact body, the ids of those existing dispatches and
   the file lines the dispatch is made of (`pending`).
3. POST; the ledger records the dispatch id (`confirmed`).

A `pending` entry found on a later run (the process died between 2 and 3), or a POST whose outcome is unknown
(connection dropped, 5xx), is reconciled before anything is sent again: the order's dispatches are listed
(`order_id` filter, 1 request) and a dispatch that is not among the recorded ids and whose lines equal the
recorded lines (same SKUs, same total quantity per SKU) is ours: it is confirmed, not resent. None: the body
is resent.

Remaining ambiguity, by design: if, in the seconds between our list (1) and the reconcile, a person creates
by hand a dispatch for the same order with exactly the same lines, and our POST did not land, that dispatch
is taken for ours and ours is not resent. The order then shows those goods dispatched once, which is what
both meant in every case we can think of; telling them apart would need a marker in the customer's text.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
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
from orderspace_pipelines.warehouse.hooks import checkpoint
from orderspace_pipelines.warehouse.ledger import DispatchRecord, Ledger
from orderspace_pipelines.warehouse.parsing import CsvRow, ParsedFile
from orderspace_pipelines.warehouse.protocols import PushClient, PushLog
from orderspace_pipelines.warehouse.quantities import canonical, from_api, parse_quantity, to_json
from orderspace_pipelines.warehouse.report import RowResult
from orderspace_pipelines.warehouse.states import EntryState, RowStatus

# The real order statuses (API reference, orders model). Dispatchable: `new` and `part_fulfilled` plainly;
# `invoiced` (invoiced before it ships) and `released` (a pre-order released for dispatch) are guesses.
DISPATCHABLE_STATUSES = frozenset({"new", "invoiced", "released", "part_fulfilled"})
# Not dispatchable, with the reason the report gives. `fulfilled` and `cancelled` are certain; `preorder`
# (waits for its release) and `standing_order` (a template that repeat orders are made from) are guesses.
UNDISPATCHABLE_STATUSES = {
    "fulfilled": "everything on it has already been dispatched",
    "cancelled": "it was cancelled",
    "preorder": "a pre-order cannot be dispatched until it is released",
    "standing_order": "a standing order is a template for repeat orders, not an order to ship",
}
# Spellings some other systems (and older sandboxes) use for closed orders: not dispatchable either.
_CLOSED_ALIASES = frozenset({"canceled", "voided", "void", "deleted", "rejected", "closed"})
DEFINITIVE_ERRORS = (ValidationError, BadRequestError, NotFoundError)
# At most this many records are read from a `number`-filtered order list: a filtered list holds one order,
# and should the filter ever be ignored this keeps the look-up to its first page (1 request), not a scan.
NUMBER_LOOKUP_READ_LIMIT = 50


class DispatchOutcomeUnknownError(RuntimeError):
    """Some dispatches could not be confirmed or ruled out; the file stays claimed for a re-run."""


@dataclass(frozen=True)
class DispatchRow:
    line: int
    reference: str  # as written in the file, for reports
    group_key: str  # "id:or_x" or "no:1204"
    sku: str
    quantity: Decimal
    comments: str
    stated_number: str = ""  # order_number written beside an order_id (they must agree)


@dataclass
class OrderGroup:
    group_key: str
    reference: str
    rows: list[DispatchRow] = field(default_factory=list)
    order_id: str | None = None
    order: dict[str, Any] | None = None  # the live order when a look-up already returned it


def validate_rows(rows: list[CsvRow]) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows with a usable order reference, SKU and quantity; results for the others."""
    good: list[DispatchRow] = []
    bad: list[RowResult] = []
    for row in rows:
        checked = check_row(row)
        if isinstance(checked, DispatchRow):
            good.append(checked)
        else:
            bad.append(checked)
    return good, bad


def check_row(row: CsvRow) -> DispatchRow | RowResult:
    """One row on its own: a usable `DispatchRow`, or its rejection naming every problem."""
    values = row.values
    order_id = values.get("order_id", "")
    raw_number = values.get("order_number", "")
    number = lakedata.normalise_order_number(raw_number)
    sku = values.get("sku", "")
    raw_quantity = values.get("quantity", "")
    reference = order_id or number
    problems = []
    if not reference:
        problems.append("the order reference (order_number / order_id) is empty")
    elif number and not number.isdigit():
        problems.append(f"order_number {raw_number!r} is not a number")
    if not sku:
        problems.append("sku is empty")
    quantity, error = parse_quantity(raw_quantity, "quantity", positive=True)
    if error:
        problems.append(error)
    if problems or quantity is None:
        reason = "; ".join(problems)
        return RowResult(row.line, RowStatus.REJECTED, reason, sku=sku, value=raw_quantity, order=reference)
    group_key = f"id:{order_id}" if order_id else f"no:{number}"
    stated = number if order_id else ""
    return DispatchRow(row.line, reference, group_key, sku, quantity, values.get("comments", ""), stated)


def group_rows(rows: list[DispatchRow]) -> list[OrderGroup]:
    groups: dict[str, OrderGroup] = {}
    for row in rows:
        groups.setdefault(row.group_key, OrderGroup(row.group_key, row.reference)).rows.append(row)
    return list(groups.values())


def lookup_order_number(client: PushClient, number: str) -> dict[str, Any] | None:
    """The live order with this number: one request, the order list filtered by `number`."""
    for order in itertools.islice(client.list_orders(number=number), NUMBER_LOOKUP_READ_LIMIT):
        if lakedata.normalise_order_number(order.get("number", "")) == number and order.get("id"):
            return order
    return None


def resolve_order_ids(groups: list[OrderGroup], *, client: PushClient, data_dir: Path, log: PushLog) -> None:
    """Fill `order_id` for every group whose order can be found (pulled data first, then 1 request each)."""
    numbers: dict[str, list[OrderGroup]] = defaultdict(list)
    for group in groups:
        if group.order_id is not None:
            continue
        if group.group_key.startswith("id:"):
            group.order_id = group.group_key[3:]
        else:
            numbers[group.group_key[3:]].append(group)
    if not numbers:
        return
    found = lakedata.order_ids_by_number(data_dir, numbers)
    missing = [number for number in numbers if number not in found]
    if missing:
        log.info(f"looking up {len(missing)} order number(s) not in the pulled orders (1 request each)")
    fetched: dict[str, dict[str, Any]] = {}
    for number in missing:
        order = lookup_order_number(client, number)
        if order is not None:
            found[number] = str(order["id"])
            fetched[number] = order
    for number, owners in numbers.items():
        for group in owners:
            group.order_id = found.get(number)
            group.order = fetched.get(number)


def merge_by_order(groups: list[OrderGroup]) -> list[OrderGroup]:
    """One group per resolved order (rows naming it by id and by number make one dispatch)."""
    merged: dict[str, OrderGroup] = {}
    out: list[OrderGroup] = []
    for group in groups:
        if group.order_id is None:
            out.append(group)
            continue
        into = merged.get(group.order_id)
        if into is None:
            merged[group.order_id] = group
            out.append(group)
            continue
        into.rows = sorted([*into.rows, *group.rows], key=lambda row: row.line)
        into.order = into.order or group.order
        if group.group_key.startswith("id:") and not into.group_key.startswith("id:"):
            into.group_key, into.reference = group.group_key, group.reference
    return out


def _status_problem(status: str, label: str) -> str | None:
    if status in UNDISPATCHABLE_STATUSES:
        return f"{label} is {status}: {UNDISPATCHABLE_STATUSES[status]}; nothing can be dispatched"
    if status in _CLOSED_ALIASES:
        return f"{label} is {status}; nothing can be dispatched"
    return None


def _quantity(value: object) -> Decimal:
    return from_api(value) or Decimal(0)


def plan_dispatch(group: OrderGroup, order: dict[str, Any]) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows of `group` the live order can take, and rejections for the others."""
    label = f"order {order.get('number') or group.reference}"
    rows, rejected = _split_mismatched_numbers(group.rows, order)
    problem = _status_problem(str(order.get("status") or "").strip().lower(), label)
    if problem:
        return [], rejected + [_reject(row, problem) for row in rows]
    lines = order.get("order_lines")
    if not isinstance(lines, list):
        return [], rejected + [
            _reject(row, f"{label} came back without order lines; cannot check it") for row in rows
        ]
    sendable, over = take_outstanding(rows, *order_totals(lines), label=label)
    return sendable, rejected + over


def _split_mismatched_numbers(
    rows: list[DispatchRow], order: dict[str, Any]
) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows whose stated order_number (beside an order_id) agrees with the live order, and the others."""
    live_number = lakedata.normalise_order_number(order.get("number", ""))
    agreeing: list[DispatchRow] = []
    rejected: list[RowResult] = []
    for row in rows:
        if row.stated_number and live_number and row.stated_number != live_number:
            reason = (
                f"order_id {row.group_key[3:]} is order {live_number} but order_number says "
                f"{row.stated_number}; the row names two different orders, so it is sent to neither"
            )
            rejected.append(_reject(row, reason))
        else:
            agreeing.append(row)
    return agreeing, rejected


def order_totals(lines: list[Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """(ordered, dispatched) per SKU, summed over an order's non-shipping lines."""
    ordered: dict[str, Decimal] = defaultdict(Decimal)
    dispatched: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if not isinstance(line, dict) or line.get("shipping") is True:
            continue
        sku = str(line.get("sku") or "").strip()
        ordered[sku] += _quantity(line.get("quantity", 0))
        dispatched[sku] += _quantity(line.get("dispatched", 0))
    return dict(ordered), dict(dispatched)


def take_outstanding(
    rows: list[DispatchRow], ordered: dict[str, Decimal], dispatched: dict[str, Decimal], *, label: str
) -> tuple[list[DispatchRow], list[RowResult]]:
    """Rows (in file order) whose SKU is on the order and whose quantity is still outstanding; the rest."""
    taken: dict[str, Decimal] = defaultdict(Decimal)
    sendable: list[DispatchRow] = []
    rejected: list[RowResult] = []
    for row in rows:
        if row.sku not in ordered:
            rejected.append(_reject(row, f"SKU {row.sku} is not on {label}"))
            continue
        outstanding = ordered[row.sku] - dispatched[row.sku] - taken[row.sku]
        if row.quantity > outstanding:
            earlier = (
                f" after earlier rows of this file ({canonical(taken[row.sku])})" if taken[row.sku] else ""
            )
            reason = (
                f"quantity {canonical(row.quantity)} exceeds the {canonical(max(outstanding, Decimal(0)))} "
                f"still outstanding for {row.sku} on {label}{earlier} "
                f"(ordered {canonical(ordered[row.sku])}, dispatched {canonical(dispatched[row.sku])})"
            )
            rejected.append(_reject(row, reason))
            continue
        taken[row.sku] += row.quantity
        sendable.append(row)
    return sendable, rejected


def nothing_dispatched_yet(order: dict[str, Any]) -> bool:
    """True when every line of the live order says 0 dispatched (then no dispatch of it exists)."""
    lines = order.get("order_lines")
    if not isinstance(lines, list):
        return False
    for line in lines:
        if not isinstance(line, dict) or "dispatched" not in line:
            return False
        if from_api(line.get("dispatched") or 0) != 0:
            return False
    return True


def _reject(row: DispatchRow, reason: str, status: RowStatus = RowStatus.REJECTED) -> RowResult:
    return RowResult(
        row.line, status, reason, sku=row.sku, value=canonical(row.quantity), order=row.reference
    )


def build_body(order_id: str, rows: list[DispatchRow]) -> dict[str, Any]:
    """The POST body: the rows' SKUs summed, and the warehouse's own comments (nothing else)."""
    quantities: dict[str, Decimal] = {}
    for row in rows:
        quantities[row.sku] = quantities.get(row.sku, Decimal(0)) + row.quantity
    notes = list(dict.fromkeys(row.comments for row in rows if row.comments))
    body: dict[str, Any] = {
        "order_id": order_id,
        "dispatch_lines": [
            {"sku": sku, "quantity": to_json(quantity)} for sku, quantity in quantities.items()
        ],
    }
    if notes:
        body["comments"] = " ".join(notes)
    return body


def lines_of(dispatch_lines: object) -> dict[str, Decimal]:
    """SKU -> total quantity of a dispatch's (or a body's) lines, to compare them (zero totals left out)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in dispatch_lines if isinstance(dispatch_lines, list) else []:
        if isinstance(line, dict):
            totals[str(line.get("sku") or "").strip()] += _quantity(line.get("quantity"))
    return {sku: total for sku, total in totals.items() if total != 0}


def order_dispatches(client: PushClient, order_id: str) -> list[dict[str, Any]]:
    """The order's dispatches, newest first (the dispatch list filtered by `order_id`)."""
    return [d for d in client.list_dispatches(order_id=order_id) if str(d.get("order_id") or "") == order_id]


def find_dispatch(
    client: PushClient, record: DispatchRecord, log: PushLog
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The dispatch a pending ledger entry created, if Orderspace has it (see the module docstring), and the
    order's dispatches as listed."""
    listed = order_dispatches(client, record.order_id)
    checkpoint("dispatch.reconciled")
    if record.existing_ids is None:  # a legacy entry: its marker is in the comments
        found = next((d for d in listed if record.marker and record.marker in str(d.get("comments"))), None)
        return found, listed
    known = set(record.existing_ids)
    wanted = lines_of(record.body.get("dispatch_lines"))
    matches = [
        d
        for d in listed
        if str(d.get("id") or "") not in known and lines_of(d.get("dispatch_lines")) == wanted
    ]
    if len(matches) > 1:
        log.warning(
            f"order {record.order_id}: {len(matches)} new dispatches match the pending one; taking the oldest"
        )
    return (matches[-1] if matches else None), listed  # the list is newest first


def without_marker(body: dict[str, Any], marker: str) -> dict[str, Any]:
    """A legacy body with the `[wh:...]` marker taken out of its comments (it is never sent again)."""
    comments = str(body.get("comments") or "").replace(marker, "").strip() if marker else body.get("comments")
    clean = {key: value for key, value in body.items() if key != "comments"}
    if comments:
        clean["comments"] = comments
    return clean


def _dispatch_id(response: Any) -> str:
    if not isinstance(response, dict):
        return ""
    inner = response.get("dispatch")
    return str((inner if isinstance(inner, dict) else response).get("id") or "")


@dataclass(frozen=True)
class OrderPush:
    """What every step of one order's dispatch needs: the file and order it belongs to, the rows in play (all
    of the order's, then those planned or recorded), and the client, ledger and log it works with."""

    sha256: str
    group_key: str
    reference: str  # how reports and the log name the order
    rows: tuple[DispatchRow, ...]
    client: PushClient
    ledger: Ledger
    log: PushLog

    def narrowed(self, rows: Iterable[DispatchRow]) -> OrderPush:
        """The same order with only these rows in play."""
        return replace(self, rows=tuple(rows))

    def record(self) -> DispatchRecord | None:
        return self.ledger.dispatch(self.sha256, self.group_key)

    def record_pending(
        self, order_id: str, body: dict[str, Any], existing: list[dict[str, Any]]
    ) -> DispatchRecord:
        """Commit `body` as pending, with the ids of the order's `existing` dispatches and the rows' lines."""
        return self.ledger.dispatch_pending(
            self.sha256,
            self.group_key,
            order_id,
            body,
            existing_ids=[str(d.get("id") or "") for d in existing],
            row_lines=[row.line for row in self.rows],
        )

    def record_confirmed(self, dispatch_id: str) -> None:
        self.ledger.dispatch_confirmed(self.sha256, self.group_key, dispatch_id)

    def record_refused(self, message: str) -> list[RowResult]:
        """Record the API's refusal; the rows' results say it."""
        self.ledger.dispatch_refused(self.sha256, self.group_key, message)
        return self.rejected(_refusal(message), RowStatus.REFUSED)

    def rejected(self, reason: str, status: RowStatus = RowStatus.REJECTED) -> list[RowResult]:
        return [_reject(row, reason, status) for row in self.rows]

    def dispatched(self, dispatch_id: str, reason: str = "") -> list[RowResult]:
        return [_dispatched(row, dispatch_id, reason) for row in self.rows]


def push_dispatches(
    parsed: ParsedFile, *, sha256: str, client: PushClient, ledger: Ledger, data_dir: Path, log: PushLog
) -> list[RowResult]:
    """Validate, check against the live orders and create one dispatch per order; a result for every row."""
    rows, results = validate_rows(parsed.rows)
    groups = _order_groups(rows, sha256=sha256, client=client, ledger=ledger, data_dir=data_dir, log=log)
    unknown_outcomes: list[str] = []
    for group in groups:
        push = OrderPush(sha256, group.group_key, group.reference, tuple(group.rows), client, ledger, log)
        results.extend(_push_group(push, group))
        record = push.record()
        if record is not None and record.state == EntryState.PENDING:
            unknown_outcomes.append(group.reference)
    if unknown_outcomes:
        raise DispatchOutcomeUnknownError(
            f"the dispatch(es) for order(s) {', '.join(unknown_outcomes)} could not be confirmed or ruled "
            "out (Orderspace did not answer); the file stays claimed in warehouse/work/ and re-running the "
            "push reconciles them before sending anything again"
        )
    return results


def _order_groups(
    rows: list[DispatchRow], *, sha256: str, client: PushClient, ledger: Ledger, data_dir: Path, log: PushLog
) -> list[OrderGroup]:
    """The valid rows grouped by the order they resolve to (the ledger's record of a group first)."""
    groups = group_rows(rows)
    # Groups the ledger already knows need no look-up: their order id is recorded.
    for group in groups:
        record = ledger.dispatch(sha256, group.group_key)
        if record is not None:
            group.order_id = record.order_id
    resolve_order_ids(groups, client=client, data_dir=data_dir, log=log)
    return merge_by_order(groups)


def _push_group(push: OrderPush, group: OrderGroup) -> list[RowResult]:
    """One order's rows: settle a dispatch the ledger knows, or check the live order and send a new one."""
    record = push.record()
    if record is not None:
        return _settle_recorded(push, record)
    order = _live_order(group, push.client, push.log)
    if group.order_id is None or order is None:
        return push.rejected(f"order {_not_found(group)} was not found in Orderspace")
    sendable, results = plan_dispatch(group, order)
    if not sendable:
        return results
    existing = [] if nothing_dispatched_yet(order) else order_dispatches(push.client, group.order_id)
    checkpoint("dispatch.planned")
    planned = push.narrowed(sendable)
    record = planned.record_pending(group.order_id, build_body(group.order_id, sendable), existing)
    checkpoint("dispatch.pending")
    return results + _send(planned, record)


def _not_found(group: OrderGroup) -> str:
    """How a report names an order that could not be found: by number when no id was ever known."""
    return f"number {group.reference}" if group.order_id is None else group.reference


def _live_order(group: OrderGroup, client: PushClient, log: PushLog) -> dict[str, Any] | None:
    """The group's live order (from the number look-up, or 1 request), or None when Orderspace lacks it."""
    if group.order_id is None:
        return None
    order = group.order
    if order is None:
        try:
            order = client.get_order(group.order_id)
        except NotFoundError:
            return None
    if isinstance(order.get("order"), dict):
        order = order["order"]
    status = str(order.get("status") or "").strip().lower()
    if status and status not in DISPATCHABLE_STATUSES and _status_problem(status, "") is None:
        log.warning(f"order {group.reference} has status {status!r}, not a known one; Orderspace decides")
    return order


def _in_record(record: DispatchRecord, row: DispatchRow) -> bool:
    if record.row_lines is not None:
        return row.line in record.row_lines
    return row.sku in {str(line.get("sku")) for line in record.body.get("dispatch_lines", [])}


def _settle_recorded(push: OrderPush, record: DispatchRecord) -> list[RowResult]:
    """Results for an order the ledger already knows; a pending one is reconciled and, if absent, resent."""
    recorded = push.narrowed(row for row in push.rows if _in_record(record, row))
    others = push.narrowed(row for row in push.rows if not _in_record(record, row)).rejected(
        "not part of the dispatch recorded by an earlier attempt (failed its checks then)"
    )
    if record.state == EntryState.CONFIRMED:
        return recorded.dispatched(record.dispatch_id or "", "created by an earlier attempt") + others
    if record.state == EntryState.REFUSED:
        return recorded.rejected(_refusal(record.message), RowStatus.REFUSED) + others
    return _send(recorded, record, reconcile_first=True) + others


def _refusal(message: str | None) -> str:
    return f"the API refused the dispatch: {message}"


def _dispatched(row: DispatchRow, dispatch_id: str, reason: str = "") -> RowResult:
    return RowResult(
        row.line,
        RowStatus.DISPATCHED,
        reason,
        sku=row.sku,
        value=canonical(row.quantity),
        order=row.reference,
        dispatch_id=dispatch_id,
    )


def _send(push: OrderPush, record: DispatchRecord, *, reconcile_first: bool = False) -> list[RowResult]:
    """POST the recorded body (reconciling first when its earlier fate is unknown); one try + one resend."""
    attempts = 0
    must_reconcile = reconcile_first
    while True:
        if must_reconcile:
            record, found = _reconcile(push, record)
            if found is not None:
                return found
            if attempts >= 2:
                push.log.warning(f"order {push.reference}: outcome still unknown after {attempts} attempts")
                return push.rejected(
                    "the dispatch could not be confirmed (Orderspace did not answer)", RowStatus.PENDING
                )
        attempts += 1
        sent = _post(push, record)
        if sent is not None:
            return sent
        must_reconcile = True


def _reconcile(push: OrderPush, record: DispatchRecord) -> tuple[DispatchRecord, list[RowResult] | None]:
    """Look for the pending dispatch in Orderspace: (the record to resend, None) or its confirmed rows."""
    push.log.info(f"reconciling the pending dispatch for order {push.reference}")
    existing, listed = find_dispatch(push.client, record, push.log)
    if existing is not None:
        dispatch_id = _dispatch_id(existing)
        push.record_confirmed(dispatch_id)
        checkpoint("dispatch.confirmed")
        push.log.info(f"order {push.reference}: dispatch {dispatch_id} already exists; not sent again")
        return record, push.dispatched(dispatch_id, "created by an earlier attempt")
    if record.existing_ids is None:
        # A pending entry from a version that marked the comments, not in Orderspace: it is resent without
        # the marker and from now on reconciled like any other entry.
        record = push.record_pending(record.order_id, without_marker(record.body, record.marker), listed)
    return record, None


def _post(push: OrderPush, record: DispatchRecord) -> list[RowResult] | None:
    """POST the recorded body once: the rows' results, or None when the outcome is unknown (5xx, network)."""
    try:
        response = push.client.create_dispatch(record.body)
    except DEFINITIVE_ERRORS as exc:
        refused = push.record_refused(exc.message)
        push.log.warning(f"order {push.reference}: {_refusal(exc.message)}")
        return refused
    except (TransportError, ServerError) as exc:
        push.log.warning(f"order {push.reference}: dispatch outcome unknown ({exc}); reconciling")
        return None
    except APIError as exc:  # any other 4xx: definitive, nothing was created
        return push.record_refused(exc.message)
    checkpoint("dispatch.posted")
    dispatch_id = _dispatch_id(response)
    push.record_confirmed(dispatch_id)
    checkpoint("dispatch.confirmed")
    push.log.info(f"order {push.reference}: dispatch {dispatch_id} created ({len(push.rows)} row(s))")
    return push.dispatched(dispatch_id)
