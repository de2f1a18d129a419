"""Pure rules for one webhook delivery: what a valid body is, and which record each event names.

A delivery is a JSON list of up to 50 `{"event": "<resource>.<action>", "data": {"<resource>": {...}}}`
(the API reference, "Webhook Events"). No I/O here; the receiver and the tests call `parse_delivery`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

MAX_EVENTS = 50

# The 14 event types the reference lists for a webhook's `events` (and documents one by one).
EVENT_TYPES: tuple[str, ...] = (
    "customer.created", "customer.updated", "customer.deleted",
    "dispatch.created",
    "inventory_level.updated",
    "invoice.created", "invoice.deleted",
    "payment.created",
    "product.created", "product.updated", "product.deleted",
    "order.created", "order.updated", "order.deleted",
)  # fmt: skip
RESOURCES: tuple[str, ...] = (
    "order", "invoice", "payment", "dispatch", "customer", "product", "inventory_level",
)  # fmt: skip

# The field of each resource's record that identifies the row it changes. A payment changes its invoice
# (the payment payload has no id of its own, only `invoice_id`); an inventory level is keyed by `sku`.
RECORD_KEY: dict[str, str] = {resource: "id" for resource in RESOURCES} | {
    "payment": "invoice_id",
    "inventory_level": "sku",
}


class DeliveryRejected(ValueError):
    """The body is not a delivery we can store. `status` is the HTTP answer (400 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ParsedEvent:
    """One event of a delivery, ready to store.

    `known` is False for an event type the reference does not list (stored anyway, flagged: the API may add
    types); its `resource` is then the part before the first dot and `record_id` whatever `id` it carries.
    """

    index: int
    event_type: str
    resource: str
    record_id: str | None
    record: Any
    known: bool


def parse_body(body: bytes) -> Any:
    """The JSON value of a raw body; `DeliveryRejected(400)` when it is not UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise DeliveryRejected(400, f"the body is not JSON ({type(error).__name__}: {error})") from None


def parse_delivery(body: bytes) -> list[ParsedEvent]:
    """Every event of a raw delivery body, in order, or `DeliveryRejected` naming the first problem."""
    payload = parse_body(body)
    if not isinstance(payload, list):
        raise DeliveryRejected(422, f"a delivery must be a JSON list of events, got a JSON {_kind(payload)}")
    if not payload:
        raise DeliveryRejected(422, "a delivery must hold at least one event, got an empty list")
    if len(payload) > MAX_EVENTS:
        raise DeliveryRejected(422, f"a delivery holds at most {MAX_EVENTS} events, got {len(payload)}")
    return [parse_event(index, item) for index, item in enumerate(payload)]


def parse_event(index: int, item: Any) -> ParsedEvent:
    """One list item as an event; `DeliveryRejected(422)` naming its position and the problem."""
    where = f"event {index} of the delivery"
    if not isinstance(item, dict):
        raise DeliveryRejected(422, f"{where} must be a JSON object, got a JSON {_kind(item)}")
    event_type = item.get("event")
    if not isinstance(event_type, str) or not event_type.strip():
        raise DeliveryRejected(422, f'{where} has no "event" name (a string like "order.updated")')
    data = item.get("data")
    if not isinstance(data, dict):
        raise DeliveryRejected(422, f'{where} ({event_type}) has no "data" object')
    known = event_type in EVENT_TYPES
    resource = event_type.split(".", 1)[0]
    if not known:
        record = data.get(resource, data)
        record_id = record.get("id") if isinstance(record, dict) else None
        return ParsedEvent(index, event_type, resource, _text(record_id), record, known=False)
    record = data.get(resource)
    if not isinstance(record, dict):
        raise DeliveryRejected(422, f'{where} ({event_type}) has no "data.{resource}" object')
    key = RECORD_KEY[resource]
    record_id = _text(record.get(key))
    if record_id is None:
        raise DeliveryRejected(422, f'{where} ({event_type}) has no "data.{resource}.{key}"')
    return ParsedEvent(index, event_type, resource, record_id, record, known=True)


def describe_types(events: list[ParsedEvent]) -> str:
    """`order.updated x2, payment.created` for the log: the types and their counts, in first-seen order."""
    counts = Counter(event.event_type for event in events)
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
