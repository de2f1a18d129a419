"""The receiver over real HTTP (uvicorn on 127.0.0.1): what is refused stores nothing, what is accepted is
stored once, in order, before the 200."""

from __future__ import annotations

import json
import logging

import httpx
import psycopg
import pytest

from orderspace_pipelines.webhooks.events import RESOURCES
from orderspace_pipelines.webhooks.signing import SIGNATURE_HEADER, key_file_path, sign
from orderspace_pipelines.webhooks.store import EventStore
from tests.postgres_server import PASSWORD, PostgresServer
from tests.webhooks.conftest import BOTH_STORES
from tests.webhooks.helpers import (
    TEST_KEY,
    Receiver,
    body_of,
    event,
    mixed_events,
    signed_headers,
    start_receiver,
)


def _counts(store: EventStore) -> tuple[int, int]:
    stats = store.stats()
    return stats.deliveries, stats.events


@BOTH_STORES
def test_signed_delivery_is_stored_before_the_200(receiver: Receiver, store: EventStore) -> None:
    body = body_of([event("order.updated", 1), event("payment.created", 2)])
    response = receiver.post(body, signed_headers(body))
    assert response.status_code == 200
    assert response.json() == {"delivery": 1, "events": 2, "duplicate": False}
    pending = store.pending(10)
    assert [(e.event_type, e.resource, e.record_id) for e in pending] == [
        ("order.updated", "order", "or_000001"),
        ("payment.created", "payment", "iv_000002"),  # a payment names the invoice it pays
    ]
    assert pending[0].record["status"] == "new"
    assert store.last_delivery_at() is not None


@pytest.mark.parametrize(
    "headers",
    [
        {},  # unsigned
        {SIGNATURE_HEADER: ""},
        {SIGNATURE_HEADER: sign("some-other-key", b"x")},  # forged: not this body, not our key
        {SIGNATURE_HEADER: "not base64 at all ✓"},
    ],
    ids=["unsigned", "blank", "forged", "garbage"],
)
def test_missing_or_wrong_signature_is_401_and_stores_nothing(
    receiver: Receiver, store: EventStore, headers: dict[str, str]
) -> None:
    body = body_of([event("order.deleted", 7)])
    response = receiver.post(body, {k: v.encode() for k, v in headers.items()})
    assert response.status_code == 401
    assert SIGNATURE_HEADER in response.json()["error"]
    assert _counts(store) == (0, 0)


def test_signature_with_another_key_is_401(receiver: Receiver, store: EventStore) -> None:
    body = body_of([event("order.deleted", 7)])
    assert receiver.post(body, signed_headers(body, key="an attacker's key")).status_code == 401
    assert _counts(store) == (0, 0)


def test_tampered_body_is_401(receiver: Receiver, store: EventStore) -> None:
    body = body_of([event("invoice.created", 3)])
    headers = signed_headers(body)
    tampered = body.replace(b"iv_000003", b"iv_999999")
    assert tampered != body
    assert receiver.post(tampered, headers).status_code == 401
    # Whitespace changes the raw body too: the signature is over bytes, not over the parsed JSON.
    reformatted = json.dumps(json.loads(body), indent=2).encode()
    assert receiver.post(reformatted, headers).status_code == 401
    assert _counts(store) == (0, 0)


@BOTH_STORES
def test_replayed_delivery_is_stored_once(receiver: Receiver, store: EventStore) -> None:
    body = body_of(mixed_events(5))
    first = receiver.post(body, signed_headers(body))
    again = receiver.post(body, signed_headers(body))
    assert first.status_code == again.status_code == 200
    assert first.json()["duplicate"] is False
    assert again.json() == {"delivery": first.json()["delivery"], "events": 5, "duplicate": True}
    assert _counts(store) == (1, 5)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b'{"event": "order.created", "data": {}}', 422, "JSON list"),
        (b"[]", 422, "at least one event"),
        (body_of(mixed_events(51)), 422, "at most 50 events, got 51"),
        (b'[{"data": {"order": {"id": "or_1"}}}]', 422, 'no "event"'),
        (b'[{"event": "order.created"}]', 422, 'no "data"'),
        (b'[{"event": "order.created", "data": {"order": {"number": 4}}}]', 422, "data.order.id"),
        (body_of([event("order.created", 1), {"event": "payment.created", "data": {"payment": {}}}]), 422,
         "event 1 of the delivery (payment.created)"),
    ],
    ids=["broken-json", "not-utf8", "object", "empty", "51-events", "no-event", "no-data", "no-id",
         "second-bad"],
)  # fmt: skip
def test_bad_bodies_get_a_clear_4xx_and_store_nothing(
    receiver: Receiver, store: EventStore, body: bytes, status: int, words: str
) -> None:
    response = receiver.post(body, signed_headers(body))
    assert response.status_code == status
    assert words in response.json()["error"]
    assert _counts(store) == (0, 0)


def test_oversized_body_is_413_and_stores_nothing(receiver: Receiver, store: EventStore) -> None:
    big = body_of([event("product.updated", 1) | {"padding": "x" * (9 * 1024 * 1024)}])
    response = receiver.post(big, signed_headers(big))
    assert response.status_code == 413
    assert _counts(store) == (0, 0)


def test_oversized_body_without_content_length_is_413(receiver: Receiver, store: EventStore) -> None:
    chunk = b" " * (1024 * 1024)
    body = b"[" + chunk * 9 + b"]"

    def chunks():
        for start in range(0, len(body), len(chunk)):
            yield body[start : start + len(chunk)]

    response = httpx.post(receiver.url, content=chunks(), headers=signed_headers(body), timeout=30)
    assert response.status_code == 413
    assert _counts(store) == (0, 0)


@BOTH_STORES
def test_fifty_mixed_events_are_stored_in_order(receiver: Receiver, store: EventStore) -> None:
    events = mixed_events(50)
    body = body_of(events)
    assert receiver.post(body, signed_headers(body)).json() == {
        "delivery": 1,
        "events": 50,
        "duplicate": False,
    }
    later = body_of(mixed_events(3, start=100))
    assert receiver.post(later, signed_headers(later)).status_code == 200
    stored = store.pending(100)
    assert [e.event_type for e in stored] == [e["event"] for e in events] + [
        e["event"] for e in json.loads(later)
    ]
    assert [e.index for e in stored[:50]] == list(range(50))
    assert [e.seq for e in stored] == sorted(e.seq for e in stored)
    assert {e.resource for e in stored} == set(RESOURCES)
    assert stored[5].record == events[5]["data"]["payment"]
    stats = store.stats()
    assert stats.pending_total == 53 and stats.deliveries == 2


def test_unknown_event_type_is_stored_and_flagged(
    receiver: Receiver, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = body_of(
        [event("order.updated", 1), {"event": "shipment.created", "data": {"shipment": {"id": "sh_1"}}}]
    )
    assert receiver.post(body, signed_headers(body)).status_code == 200
    stored = store.pending(10)
    assert [(e.event_type, e.known, e.record_id) for e in stored] == [
        ("order.updated", True, "or_000001"),
        ("shipment.created", False, "sh_1"),
    ]
    assert store.stats().unknown_pending == 1
    assert "unknown event types stored, flagged: shipment.created" in caplog.text


@BOTH_STORES
def test_every_delivery_is_logged_without_key_or_payload(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = body_of([event("customer.updated", 1), event("customer.updated", 2), event("dispatch.created", 3)])
    receiver.post(body, signed_headers(body))
    receiver.post(body, signed_headers(body))
    receiver.post(body, {SIGNATURE_HEADER: "forged"})
    text = caplog.text
    assert "delivery 1 stored: 3 events (customer.updated x2, dispatch.created)" in text
    assert "delivery 1 already stored (replay): 3 events" in text
    assert "delivery rejected 401" in text
    assert TEST_KEY not in text
    assert sign(TEST_KEY, body) not in text
    assert "cu_000001" not in text  # no payload content
    assert PASSWORD not in text  # the Postgres store's password (the URL is described without it)


def test_no_key_yet_is_503_so_orderspace_retries(receiver: Receiver, store: EventStore, hook_dir) -> None:
    (hook_dir / "webhooks" / "signing_key.json").unlink()
    body = body_of([event("order.created", 1)])
    response = receiver.post(body, signed_headers(body))
    assert response.status_code == 503
    assert _counts(store) == (0, 0)
    assert httpx.get(f"{receiver.base}/healthz").json() == {"status": "ok", "key": False}


def test_healthz(receiver: Receiver) -> None:
    assert httpx.get(f"{receiver.base}/healthz").json() == {"status": "ok", "key": True}


@BOTH_STORES
def test_readyz_is_200_with_a_key_and_a_store_that_answers(receiver: Receiver) -> None:
    response = httpx.get(f"{receiver.base}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "key": True, "store": "ok"}


def test_readyz_is_503_without_a_key_while_healthz_stays_200(receiver: Receiver, hook_dir) -> None:
    (hook_dir / "webhooks" / "signing_key.json").unlink()
    response = httpx.get(f"{receiver.base}/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "key": False, "store": "ok"}
    assert httpx.get(f"{receiver.base}/healthz").status_code == 200


def test_readyz_is_503_when_the_postgres_store_is_gone_and_says_so_without_the_password(
    hook_dir, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres_server.create_database("readyz")
    receiver = start_receiver(hook_dir, key_file_path(hook_dir), url)
    try:
        assert httpx.get(f"{receiver.base}/readyz").status_code == 200
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # the receiver's connection is cut too
        with caplog.at_level(logging.WARNING):
            response = httpx.get(f"{receiver.base}/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "not ready", "key": True, "store": "down"}
        assert httpx.get(f"{receiver.base}/healthz").status_code == 200  # alive: a restart would not help
        assert "not ready: the event store did not answer" in caplog.text
        assert PASSWORD not in caplog.text
    finally:
        receiver.stop()
