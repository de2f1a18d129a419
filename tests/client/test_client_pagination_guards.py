"""Pagination guards against responses the sandbox cannot produce (a cursor that does not advance, a renamed
list key, a bare list). These are units of the client's page loop, so `httpx.MockTransport` stands in for the
server; everything else about the client (auth, throttle, retries) still runs for real."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.client import OrderspaceClient, ResponseFormatError
from orderspace_pipelines.settings import OrderspaceSettings

API = "http://orderspace.test/v1"


def _client(
    tmp_path: Path, pages: Callable[[httpx.Request], Any]
) -> tuple[OrderspaceClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 1800})
        seen.append(request)
        return httpx.Response(200, content=json.dumps(pages(request)).encode())

    settings = OrderspaceSettings(
        client_id="id",
        client_secret="secret",
        api_url=API,
        token_url="http://orderspace.test/oauth/token",
        requests_per_minute=6000,
    )
    client = OrderspaceClient(
        settings, throttle_db=str(tmp_path / "throttle.sqlite"), transport=httpx.MockTransport(handler)
    )
    return client, seen


def test_cursor_that_does_not_advance_raises(tmp_path: Path) -> None:
    client, seen = _client(tmp_path, lambda request: {"customers": [{"id": "cu_1"}, {"id": "cu_2"}]})
    with client, pytest.raises(ResponseFormatError, match="did not advance"):
        list(client.list_customers())
    assert len(seen) == 2
    assert seen[1].url.params["starting_after"] == "cu_2"


def test_has_more_true_with_empty_page_raises(tmp_path: Path) -> None:
    def pages(request: httpx.Request) -> Any:
        if "starting_after" in request.url.params:
            return {"orders": [], "has_more": True}
        return {"orders": [{"id": "or_1"}], "has_more": True}

    client, _ = _client(tmp_path, pages)
    with client, pytest.raises(ResponseFormatError, match="has_more=true"):
        list(client.list_orders())


def test_renamed_list_key_and_bare_list_are_accepted(tmp_path: Path) -> None:
    def pages(request: httpx.Request) -> Any:
        after = request.url.params.get("starting_after")
        if after is None:
            return {"data": [{"id": "in_2"}, {"id": "in_1"}], "has_more": "true"}
        if after == "in_1":
            return [{"id": "in_0"}]
        return []

    client, seen = _client(tmp_path, pages)
    with client:
        assert [r["id"] for r in client.list_invoices(page_size=2)] == ["in_2", "in_1", "in_0"]
    assert [dict(r.url.params) for r in seen] == [
        {"limit": "2"},
        {"limit": "2", "starting_after": "in_1"},
        {"limit": "2", "starting_after": "in_0"},
    ]


def test_two_list_keys_is_ambiguous(tmp_path: Path) -> None:
    client, _ = _client(tmp_path, lambda request: {"a": [], "b": [], "has_more": False})
    with client, pytest.raises(ResponseFormatError, match="expected a 'products' list"):
        list(client.list_products())


def test_non_object_record_and_non_json_body(tmp_path: Path) -> None:
    client, _ = _client(tmp_path, lambda request: {"categories": [{"id": "ca_1"}, "oops"]})
    with client, pytest.raises(ResponseFormatError, match="record 1 is a JSON str"):
        list(client.list_categories())
    client, _ = _client(tmp_path, lambda request: "just a string")
    with client, pytest.raises(ResponseFormatError, match="expected a JSON object"):
        list(client.list_categories())
