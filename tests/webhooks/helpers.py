"""Deliveries for the webhook tests: realistic event bodies (shapes from the reference's examples), signed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from orderspace_pipelines.webhooks.commands import build_server
from orderspace_pipelines.webhooks.config import WebhookConfig
from orderspace_pipelines.webhooks.signing import SIGNATURE_HEADER, sign

PREFIX = {"order": "or", "invoice": "iv", "customer": "cu", "product": "pr", "dispatch": "di"}
TEST_KEY = "k3yF0rTests-UNxdW7ugYl8PCKjVGkoXkHARkCo"


def event(kind: str, n: int) -> dict[str, Any]:
    """One event of type `kind` whose record is numbered `n`."""
    resource, action = kind.split(".", 1)
    if resource == "payment":
        record: dict[str, Any] = {
            "invoice_id": f"iv_{n:06d}",
            "amount": 10.5 + n,
            "payment_date": "2026-11-30",
        }
    elif resource == "inventory_level":
        record = {"sku": f"SKU-{n}", "on_hand": float(n), "available": float(n)}
    elif action == "deleted":
        record = {"id": f"{PREFIX[resource]}_{n:06d}", "deleted": True}
    else:
        record = {
            "id": f"{PREFIX[resource]}_{n:06d}",
            "number": n,
            "status": "new",
            "lines": [{"sku": "A", "q": n}],
        }
    return {"event": kind, "data": {resource: record}}


MIXED = [
    "order.created", "order.updated", "order.deleted", "invoice.created", "invoice.deleted",
    "payment.created", "dispatch.created", "customer.created", "customer.updated", "customer.deleted",
    "product.created", "product.updated", "product.deleted", "inventory_level.updated",
]  # fmt: skip


def mixed_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [event(MIXED[i % len(MIXED)], start + i) for i in range(count)]


def body_of(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode()


def signed_headers(body: bytes, key: str = TEST_KEY) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(key, body), "Content-Type": "application/json"}


@dataclass
class Receiver:
    """A receiver served by uvicorn on 127.0.0.1 in a thread of this process."""

    url: str
    base: str
    server: Any
    thread: threading.Thread

    def post(self, body: bytes, headers: Mapping[str, str | bytes] | None = None) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=dict(headers or {}), timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_receiver(data_dir: Path, key_file: Path, database_url: str | None = None) -> Receiver:
    """A receiver on a free port, storing into the SQLite store under `data_dir` or, with `database_url`,
    into Postgres."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = WebhookConfig(
        data_dir=data_dir,
        key_file=key_file,
        stale_after=timedelta(hours=24),
        database_url=SecretStr(database_url) if database_url else None,
    )
    server, store, _keys = build_server(config, "127.0.0.1", port)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            store.close()

    thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    return Receiver(url=f"{base}/webhooks/orderspace", base=base, server=server, thread=thread)
