"""Client-test helpers: a factory for clients pointed at a sandbox, each with the test's own throttle file,
and `mock_client` for the units the sandbox cannot exercise (`httpx.MockTransport` as the server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxServer
from tests.conftest import settings_for

FAST_BACKOFF = {"backoff_base": 0.01, "backoff_cap": 0.05}
MOCK_API = "http://orderspace.test/v1"
MOCK_TOKEN_URL = "http://orderspace.test/oauth/token"


def mock_client(
    tmp_path: Path,
    api: Callable[[httpx.Request], httpx.Response],
    *,
    token: Callable[[], dict[str, Any]] | None = None,
    client_id: str = "id",
    client_secret: str = "secret",
    **kwargs: Any,
) -> OrderspaceClient:
    """A real `OrderspaceClient` (auth, throttle, retries) on `httpx.MockTransport`: the token endpoint
    answers `token()` (default: a 30-minute token "tok"), every other request gets `api(request)`."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json=token() if token else {"access_token": "tok", "expires_in": 1800})
        return api(request)

    settings = OrderspaceSettings(
        client_id=client_id,
        client_secret=client_secret,
        api_url=MOCK_API,
        token_url=MOCK_TOKEN_URL,
        requests_per_minute=6000,
    )
    mock = httpx.MockTransport(handler)
    return OrderspaceClient(settings, throttle_db=str(tmp_path / "throttle.sqlite"), transport=mock, **kwargs)


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
