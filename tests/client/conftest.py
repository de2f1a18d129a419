"""Client-test helpers: a factory for clients pointed at a sandbox, each with the test's own throttle file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orderspace_pipelines.client import OrderspaceClient
from orderspace_sandbox import SandboxServer
from tests.conftest import settings_for

FAST_BACKOFF = {"backoff_base": 0.01, "backoff_cap": 0.05}


@pytest.fixture
def make_client(throttle_db: Path) -> Iterator[Callable[..., OrderspaceClient]]:
    """`make_client(server, **kwargs)`: an OrderspaceClient for `server`, closed at the end of the test."""
    clients: list[OrderspaceClient] = []

    def make(server: SandboxServer, *, rpm: int | None = None, **kwargs: Any) -> OrderspaceClient:
        options: dict[str, Any] = {"throttle_db": str(throttle_db), **FAST_BACKOFF} | kwargs
        client = OrderspaceClient(settings_for(server, requests_per_minute=rpm), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _open_order(server: SandboxServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    for order in server.store.all("orders"):
        if order["status"] in ("new", "released"):
            lines = [
                {"sku": line["sku"], "quantity": line["quantity"] - line["dispatched"]}
                for line in order["order_lines"]
                if not line.get("shipping") and line["quantity"] > line["dispatched"]
            ]
            if lines:
                return order, lines
    raise AssertionError("the sandbox has no open order to dispatch")


@pytest.fixture
def dispatchable_order() -> Callable[[SandboxServer], tuple[dict[str, Any], list[dict[str, Any]]]]:
    """`dispatchable_order(server)`: an open order and the dispatch lines that dispatch all of its goods."""
    return _open_order
