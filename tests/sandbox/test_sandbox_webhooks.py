"""The sandbox's change feed over real HTTP: a tiny stdlib receiver on 127.0.0.1 records every delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sandbox_test_helpers import api_client, plain

from orderspace_sandbox import SandboxServer
from orderspace_sandbox.cli import build_parser
from orderspace_sandbox.data import WEBHOOK_EVENTS

WAIT = 30.0  # the longest any condition is waited for (a hang guard, not a speed assertion)


class Receiver:
    """Records each POST (raw body, signature, arrival time) and answers from a script: each entry is a status
    code or "drop" (close the connection without answering); after the script, `default`."""

    def __init__(self, script: list[int | str] | None = None, default: int | str = 200) -> None:
        self.script = list(script or [])
        self.default = default
        self.posts: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.changed:
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.posts.append(
                        {
                            "body": body,
                            "signature": self.headers.get("X-Orderspace-Signature"),
                            "at": time.monotonic(),
                            "answer": answer,
                        }
                    )
                    receiver.changed.notify_all()
                if answer == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.http.server_port}/hooks"

    def accepted_events(self) -> list[dict[str, Any]]:
        """Events of the deliveries answered 200, in arrival order."""
        with self.changed:
            return [e for p in self.posts if p["answer"] == 200 for e in json.loads(p["body"])]

    def wait_for(self, done: Callable[[Receiver], bool]) -> None:
        deadline = time.monotonic() + WAIT
        with self.changed:
            while not done(self):
                remaining = deadline - time.monotonic()
                assert remaining > 0, (
                    f"receiver never saw the expected deliveries; got {len(self.posts)} posts"
                )
                self.changed.wait(remaining)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    """A tiny sandbox that accepts the test receivers' plain-http endpoints on 127.0.0.1."""
    return sandbox_factory(webhook_allow_http=True)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(script: list[int | str] | None = None, default: int | str = 200) -> Receiver:
        made.append(Receiver(script, default))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def subscribe(api: httpx.Client, url: str, events: list[str]) -> dict[str, Any]:
    response = api.post("webhooks", json={"webhook": {"endpoint": url, "events": events}})
    assert response.status_code == 200, response.text
    return response.json()["webhook"]


def expected_signature(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def control(server: SandboxServer, method: str, action: str, **body: Any) -> Any:
    response = plain.request(method, f"{server.base_url}/_sandbox/{action}", json=body or None)
    assert response.status_code == 200, response.text
    return response.json()


def hook_state(server: SandboxServer, webhook_id: str) -> dict[str, Any]:
    states = control(server, "GET", "webhooks")["webhooks"]
    return next(s for s in states if s["id"] == webhook_id)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_every_event_type_is_sent_signed_with_the_record_as_the_api_returns_it(sandbox, receiver_factory):
    receiver = receiver_factory()
    api = api_client(sandbox)
    hook = subscribe(api, receiver.url, list(WEBHOOK_EVENTS))
    store = sandbox.store

    customer = api.post("customers", json={"customer": {"company_name": "Hook Test Ltd"}}).json()["customer"]
    customer = api.put(f"customers/{customer['id']}", json={"customer": {"phone": "0123"}}).json()["customer"]
    product = api.post(
        "products",
        json={
            "product": {
                "code": "HK1",
                "name": "Hook",
                "product_variants": [{"sku": "HK1-A", "unit_price": 5}],
            }
        },
    ).json()["product"]
    product = api.put(f"products/{product['id']}", json={"product": {"description": "edited"}}).json()[
        "product"
    ]
    sku = store._skus[0]
    api.post("inventory_levels", json={"inventory_levels": [{"sku": sku, "on_hand": 77}]}).raise_for_status()
    order = api.post(
        "orders",
        json={"order": {"customer_id": customer["id"], "order_lines": [{"sku": sku, "quantity": 2}]}},
    ).json()["order"]
    dispatch = api.post(
        "dispatches",
        json={"dispatch": {"order_id": order["id"], "dispatch_lines": [{"sku": sku, "quantity": 2}]}},
    ).json()["dispatch"]
    invoice = store.create_invoice(order["id"])  # no invoice endpoint in the sandbox: activity mode's path
    store.create_payment(invoice["id"])
    second_invoice = store.create_invoice(order["id"])
    for path in (f"invoices/{second_invoice['id']}", f"orders/{order['id']}", f"customers/{customer['id']}",
                 f"products/{product['id']}"):  # fmt: skip
        api.delete(path).raise_for_status()

    receiver.wait_for(lambda r: {e["event"] for e in r.accepted_events()} >= set(WEBHOOK_EVENTS))
    for post in receiver.posts:  # the signature covers the exact raw bytes sent
        assert post["signature"] == expected_signature(hook["signing_key"], post["body"])
        payload = json.loads(post["body"])
        assert isinstance(payload, list) and 1 <= len(payload) <= 50
    events = receiver.accepted_events()
    for event in events:
        assert set(event) == {"event", "data"}
        assert list(event["data"]) == [event["event"].split(".")[0]]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event"], []).append(event["data"][event["event"].split(".")[0]])
    assert by_type["customer.updated"][0] == customer  # what PUT answered
    assert by_type["product.updated"][0] == product
    assert by_type["dispatch.created"] == [dispatch]
    assert by_type["order.created"][0]["id"] == order["id"] and by_type["order.created"][0]["status"] == "new"
    assert by_type["order.updated"][0]["status"] == "fulfilled"  # the dispatch completed it
    assert by_type["invoice.created"][0] == invoice
    assert by_type["payment.created"][0]["invoice_id"] == invoice["id"]
    assert by_type["payment.created"][0]["amount"] == invoice["gross_total"]
    level = by_type["inventory_level.updated"][0]
    assert set(level) == {"sku", "on_hand", "on_hand_adjustment", "available", "available_adjustment"}
    assert level["sku"] == sku and level["on_hand"] == 77.0
    assert level["available_adjustment"] == level["on_hand_adjustment"]  # setting on_hand moves both
    assert by_type["order.deleted"] == [{"id": order["id"], "number": order["number"], "deleted": True}]
    assert by_type["invoice.deleted"] == [
        {"id": second_invoice["id"], "number": second_invoice["number"], "deleted": True}
    ]
    assert by_type["customer.deleted"] == [
        {"id": customer["id"], "company_name": "Hook Test Ltd", "deleted": True}
    ]
    assert by_type["product.deleted"] == [
        {"id": product["id"], "code": "HK1", "name": "Hook", "deleted": True}
    ]
    # In order: the events arrive in the order the changes were made.
    order_events = [e["event"] for e in events if e["event"].startswith("order.")]
    assert order_events[0] == "order.created" and order_events[-1] == "order.deleted"


def test_a_bulk_change_leaves_in_deliveries_of_at_most_50_events(sandbox, receiver_factory):
    receiver = receiver_factory()
    api = api_client(sandbox)
    subscribe(api, receiver.url, ["inventory_level.updated"])
    skus = sandbox.store._skus[:59]
    items = [{"sku": sku, "on_hand": 100 + n} for n, sku in enumerate(skus)] * 2  # 118 updates, one request
    items = items[:118]
    api.post("inventory_levels", json={"inventory_levels": items}).raise_for_status()

    receiver.wait_for(lambda r: len(r.accepted_events()) == 118)
    sizes = [len(json.loads(p["body"])) for p in receiver.posts]
    assert sizes == [50, 50, 18]  # queued atomically by the one request, then cut at the documented 50
    assert [e["data"]["inventory_level"]["sku"] for e in receiver.accepted_events()] == [
        i["sku"] for i in items
    ]


def test_a_failed_delivery_is_retried_with_incremental_backoff_then_succeeds(
    sandbox_factory, receiver_factory
):
    base = 0.2
    sandbox = sandbox_factory(webhook_retry_base=base, webhook_max_failures=5, webhook_allow_http=True)
    receiver = receiver_factory(script=[500, "drop", 503])
    api = api_client(sandbox)
    hook = subscribe(api, receiver.url, ["customer.created"])
    first = api.post("customers", json={"customer": {"company_name": "First Co"}}).json()["customer"]

    receiver.wait_for(lambda r: len(r.posts) >= 2)  # one failure seen: queue a second change behind it
    second = api.post("customers", json={"customer": {"company_name": "Second Co"}}).json()["customer"]
    receiver.wait_for(
        lambda r: [e["data"]["customer"]["id"] for e in r.accepted_events()] == [first["id"], second["id"]]
    )

    answers = [p["answer"] for p in receiver.posts]
    assert answers == [500, "drop", 503, 200, 200]
    first_body = receiver.posts[0]["body"]
    assert all(p["body"] == first_body for p in receiver.posts[:4])  # a retry resends the same bytes
    assert json.loads(first_body)[0]["data"]["customer"]["id"] == first["id"]  # the second waited its turn
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.posts[:3], receiver.posts[1:4], strict=True)]
    for attempt, gap in enumerate(gaps, start=1):  # the k-th retry waits at least k * base
        assert gap >= attempt * base * 0.95
    wait_until(lambda: hook_state(sandbox, hook["id"])["delivered_events"] == 2)  # the last 200 reached it
    state = hook_state(sandbox, hook["id"])
    assert state["enabled"] and state["consecutive_failures"] == 0 and state["queued"] == 0
    log = [d for d in control(sandbox, "GET", "webhooks")["deliveries"] if d["webhook_id"] == hook["id"]]
    assert [(d["outcome"], d["status"], d["attempt"]) for d in log] == [
        ("failed", 500, 1), ("failed", None, 2), ("failed", 503, 3), ("delivered", 200, None),
        ("delivered", 200, None),
    ]  # fmt: skip
    assert log[1]["error"]  # the connection failure is named


def test_a_webhook_is_disabled_after_repeated_failures_and_an_update_re_enables_it(
    sandbox_factory, receiver_factory
):
    sandbox = sandbox_factory(webhook_retry_base=0.01, webhook_max_failures=3, webhook_allow_http=True)
    receiver = receiver_factory(script=[500, 500, 404])
    api = api_client(sandbox)
    hook = subscribe(api, receiver.url, ["customer.created", "customer.updated"])
    doomed = api.post("customers", json={"customer": {"company_name": "Doomed Co"}}).json()["customer"]
    wait_until(lambda: not hook_state(sandbox, hook["id"])["enabled"])

    assert len(receiver.posts) == 3
    state = hook_state(sandbox, hook["id"])
    assert state["queued"] == 0 and state["attempts"] == 3
    log = [d for d in control(sandbox, "GET", "webhooks")["deliveries"] if d["webhook_id"] == hook["id"]]
    assert [d["outcome"] for d in log] == ["failed", "failed", "failed", "disabled"]
    assert "3 consecutive failed attempts" in log[-1]["error"]
    # Disabled: a change queues nothing (queueing happens inside the change, so this is already settled).
    api.put(f"customers/{doomed['id']}", json={"customer": {"phone": "1"}}).raise_for_status()
    assert hook_state(sandbox, hook["id"])["queued"] == 0 and hook_state(sandbox, hook["id"])["attempts"] == 3

    api.put(f"webhooks/{hook['id']}", json={"webhook": {"endpoint": receiver.url}}).raise_for_status()
    assert hook_state(sandbox, hook["id"])["enabled"]
    revived = api.post("customers", json={"customer": {"company_name": "Revived Co"}}).json()["customer"]
    receiver.wait_for(lambda r: len(r.accepted_events()) == 1)
    assert [e["data"]["customer"]["id"] for e in receiver.accepted_events()] == [revived["id"]]


def test_nothing_is_sent_without_a_subscription_or_for_unlisted_types(sandbox, receiver_factory):
    receiver = receiver_factory()
    api = api_client(sandbox)
    api.post("customers", json={"customer": {"company_name": "Before Any Hook"}}).raise_for_status()
    assert control(sandbox, "GET", "webhooks")["deliveries"] == []
    assert all(s["queued"] == 0 for s in control(sandbox, "GET", "webhooks")["webhooks"])

    hook = subscribe(api, receiver.url, ["customer.updated"])
    created = api.post("customers", json={"customer": {"company_name": "Unlisted"}}).json()["customer"]
    updated = api.put(f"customers/{created['id']}", json={"customer": {"phone": "9"}}).json()["customer"]
    receiver.wait_for(lambda r: len(r.accepted_events()) >= 1)
    assert receiver.accepted_events() == [{"event": "customer.updated", "data": {"customer": updated}}]
    wait_until(lambda: hook_state(sandbox, hook["id"])["queued"] == 0)  # the 200 reaches the sandbox

    api.delete(f"webhooks/{hook['id']}").raise_for_status()
    api.put(f"customers/{created['id']}", json={"customer": {"phone": "10"}}).raise_for_status()
    assert all(s["queued"] == 0 for s in control(sandbox, "GET", "webhooks")["webhooks"])
    assert len(receiver.posts) == 1
    # The seeded subscriptions (fictional hosts) never receive anything.
    assert {s["id"]: s["live"] for s in control(sandbox, "GET", "webhooks")["webhooks"]} == {
        w["id"]: False for w in sandbox.store.all("webhooks")
    }


def test_activity_changes_are_deterministic_and_flow_as_webhooks(sandbox_factory, receiver_factory):
    receiver = receiver_factory()
    one, two = (
        sandbox_factory(seed=7, webhook_allow_http=True),
        sandbox_factory(seed=7, webhook_allow_http=True),
    )
    hook = subscribe(api_client(one), receiver.url, list(WEBHOOK_EVENTS))
    twin = receiver_factory()
    subscribe(api_client(two), twin.url, list(WEBHOOK_EVENTS))  # the same starting account on both
    before = {name: one.store.all(name) for name in ("orders", "invoices", "customers", "products")}

    changes = control(one, "POST", "activity", changes=60)["changes"]
    assert len(changes) == 60
    assert control(two, "POST", "activity", changes=60)["changes"] == changes  # same seed, same changes
    kinds = {c["kind"] for c in changes}
    assert {"order.create", "invoice.create", "payment.create", "dispatch.create"} <= kinds
    assert any(kind.endswith(".delete") for kind in kinds)
    after = {name: one.store.all(name) for name in before}
    assert after != before
    assert {o["id"] for o in after["orders"]} - {o["id"] for o in before["orders"]} == {
        c["id"]
        for c in changes
        if c["kind"] == "order.create" and c["id"] in {o["id"] for o in after["orders"]}
    }

    wait_until(lambda: hook_state(one, hook["id"])["queued"] == 0)
    events = receiver.accepted_events()
    assert len(events) == hook_state(one, hook["id"])["delivered_events"] >= 60
    created_orders = [e["data"]["order"]["id"] for e in events if e["event"] == "order.created"]
    assert created_orders == [c["id"] for c in changes if c["kind"] == "order.create"]
    deleted = {e["data"]["order"]["id"] for e in events if e["event"] == "order.deleted"}
    assert deleted == {c["id"] for c in changes if c["kind"] == "order.delete"}
    assert not deleted & {o["id"] for o in after["orders"]}
    twin.wait_for(lambda r: len(r.accepted_events()) == len(events))

    def identities(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:  # times differ, ids and types do not
        return [(e["event"], next(iter(e["data"].values())).get("id") or "") for e in sent]

    assert identities(twin.accepted_events()) == identities(events)  # the same seed sends the same events


def test_activity_mode_runs_in_the_background(sandbox_factory, receiver_factory):
    receiver = receiver_factory()
    sandbox = sandbox_factory(activity=1200.0, webhook_allow_http=True)  # 20 a second
    subscribe(api_client(sandbox), receiver.url, list(WEBHOOK_EVENTS))
    receiver.wait_for(lambda r: len(r.accepted_events()) >= 5)
    assert sandbox.activity.changes >= 1


def test_activity_and_webhook_knobs_on_the_command_line_and_their_checks():
    args = build_parser().parse_args(
        ["--activity", "30", "--webhook-retry-base", "2", "--webhook-max-failures", "4"]
    )
    assert (args.activity, args.webhook_retry_base, args.webhook_max_failures) == (30.0, 2.0, 4)
    from orderspace_sandbox import SandboxConfig

    with pytest.raises(ValueError, match="webhook_max_failures must be at least 1"):
        SandboxConfig(webhook_max_failures=0)
    with pytest.raises(ValueError, match="activity must be zero or more"):
        SandboxConfig(activity=-1)


def test_activity_control_rejects_a_bad_count(sandbox):
    response = plain.post(f"{sandbox.base_url}/_sandbox/activity", json={"changes": 0})
    assert response.status_code == 400 and "changes must be a whole number" in response.json()["message"]


def test_plain_http_endpoints_only_on_this_machine_and_only_when_allowed(sandbox_factory, api_for):
    events = ["order.created"]
    faithful = api_for(sandbox_factory())  # the real API's rule: https only
    refused = faithful.post(
        "webhooks", json={"webhook": {"endpoint": "http://127.0.0.1:9/x", "events": events}}
    )
    assert refused.status_code == 422 and "https" in refused.json()["message"]
    allowing = api_for(sandbox_factory(webhook_allow_http=True))
    ok = allowing.post("webhooks", json={"webhook": {"endpoint": "http://127.0.0.1:9/x", "events": events}})
    assert ok.status_code == 200
    bad = allowing.post("webhooks", json={"webhook": {"endpoint": "http://10.0.0.1/x", "events": events}})
    assert bad.status_code == 422 and "https" in bad.json()["message"]
    args = build_parser().parse_args(["--webhook-allow-http"])
    assert args.webhook_allow_http is True


class _PlainWebhookApi:
    """`register`'s WebhookApi over plain httpx against the sandbox."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        return response.json()

    def list_webhooks(self) -> Any:
        return self._ok(self.client.get("webhooks"))["webhooks"]

    def get_webhook(self, webhook_id: str) -> dict[str, Any]:
        return self._ok(self.client.get(f"webhooks/{webhook_id}"))["webhook"]

    def create_webhook(self, webhook: Any) -> dict[str, Any]:
        return self._ok(self.client.post("webhooks", json={"webhook": dict(webhook)}))["webhook"]

    def update_webhook(self, webhook_id: str, changes: Any) -> dict[str, Any]:
        return self._ok(self.client.put(f"webhooks/{webhook_id}", json={"webhook": dict(changes)}))["webhook"]


def test_end_to_end_sandbox_to_the_real_receiver_stores_every_event(sandbox_factory, tmp_path):
    """Sandbox activity -> `webhooks register` -> the project's receiver (uvicorn) -> its event store."""
    from orderspace_pipelines.webhooks.signing import key_file_path
    from orderspace_pipelines.webhooks.store import SqliteEventStore, store_path
    from orderspace_pipelines.webhooks.subscription import register
    from tests.webhooks.helpers import start_receiver

    data_dir = tmp_path / "data"
    sandbox = sandbox_factory(seed=11, webhook_retry_base=0.05, webhook_allow_http=True)
    running = start_receiver(data_dir, key_file_path(data_dir))
    try:
        registered = register(_PlainWebhookApi(api_client(sandbox)), running.url, key_file_path(data_dir))
        assert registered.action == "created"
        assert hook_state(sandbox, registered.webhook_id)["live"]
        changes = control(sandbox, "POST", "activity", changes=80)["changes"]
        wait_until(lambda: hook_state(sandbox, registered.webhook_id)["queued"] == 0)
        state = hook_state(sandbox, registered.webhook_id)
        assert state["enabled"] and state["consecutive_failures"] == 0
        with SqliteEventStore(store_path(data_dir)) as store:
            stored = store.pending(limit=100_000)
        assert len(stored) == state["delivered_events"] >= 80
        log = [d for d in control(sandbox, "GET", "webhooks")["deliveries"] if d["outcome"] == "delivered"]
        assert sum(d["events"] for d in log) == len(stored)
        assert {e.event_type for e in stored} >= {"order.created", "invoice.created", "payment.created"}
        order_ids = [e.record_id for e in stored if e.event_type == "order.created"]
        assert order_ids and order_ids == [c["id"] for c in changes if c["kind"] == "order.create"]
        deleted = {e.record_id for e in stored if e.event_type == "order.deleted"}
        assert deleted == {c["id"] for c in changes if c["kind"] == "order.delete"}
        assert all(sandbox.store.get("orders", i) is None for i in deleted)
        assert all(e.known for e in stored)
    finally:
        running.stop()
