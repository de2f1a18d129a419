"""Pure rules of a delivery body (no I/O)."""

from __future__ import annotations

import json

import pytest

from orderspace_pipelines.webhooks.events import DeliveryRejected, describe_types, parse_delivery
from orderspace_pipelines.webhooks.signing import sign, verify


def test_record_ids_per_resource() -> None:
    body = json.dumps(
        [
            {"event": "payment.created", "data": {"payment": {"invoice_id": "iv_7xg471xv", "amount": 26.7}}},
            {
                "event": "inventory_level.updated",
                "data": {"inventory_level": {"sku": "AD01-10", "on_hand": 20.0}},
            },
            {
                "event": "order.deleted",
                "data": {"order": {"id": "or_l5DYqeDn", "number": 1204, "deleted": True}},
            },
        ]
    ).encode()
    events = parse_delivery(body)
    assert [(e.resource, e.record_id, e.known) for e in events] == [
        ("payment", "iv_7xg471xv", True),
        ("inventory_level", "AD01-10", True),
        ("order", "or_l5DYqeDn", True),
    ]
    assert describe_types(events + events[:1]) == "payment.created x2, inventory_level.updated, order.deleted"


def test_rejections_name_the_event_and_the_field() -> None:
    with pytest.raises(DeliveryRejected) as caught:
        parse_delivery(b'[{"event": "dispatch.created", "data": {"dispatch": {"order_id": "or_1"}}}]')
    assert caught.value.status == 422
    assert caught.value.message == 'event 0 of the delivery (dispatch.created) has no "data.dispatch.id"'


def test_signature_matches_the_documented_recipe() -> None:
    # base64(HMAC-SHA256(key, payload)): a value computed independently with `openssl dgst -sha256 -hmac`.
    assert sign("key", b"[]") == "jPPVhLrEIHDkTySaVQkQvQB30YqcxipUxZxnWEWL8Bo="
    assert verify("key", b"[]", " jPPVhLrEIHDkTySaVQkQvQB30YqcxipUxZxnWEWL8Bo= ")
    assert not verify("key", b"[] ", "jPPVhLrEIHDkTySaVQkQvQB30YqcxipUxZxnWEWL8Bo=")
    assert not verify("key", b"[]", None)
