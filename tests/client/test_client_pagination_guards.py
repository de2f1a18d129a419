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
from orderspace_pipelines.client.client import _extract_list, is_last_page, next_page_cursor
from tests.client.conftest import mock_client


def _client(
    tmp_path: Path, pages: Callable[[httpx.Request], Any]
) -> tuple[OrderspaceClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=json.dumps(pages(request)).encode())

    return mock_client(tmp_path, api), seen


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


# -- the guards' pure rules, on plain values ---------------------------------------------------------------


def test_next_page_cursor_is_the_last_records_cursor_field() -> None:
    records = [{"id": "a", "sku": "S1"}, {"id": "b", "sku": "S2"}]
    assert next_page_cursor("orders", "id", records, True, None, set()) == "b"
    assert next_page_cursor("inventory_levels", "sku", records, None, "S0", {"S0"}) == "S2"


def test_an_empty_page_ends_the_list_unless_it_claims_more() -> None:
    assert next_page_cursor("orders", "id", [], None, "or_9", {"or_9"}) is None
    assert next_page_cursor("orders", "id", [], False, "or_9", {"or_9"}) is None
    with pytest.raises(ResponseFormatError, match="after 'or_9' returned no records but has_more=true"):
        next_page_cursor("orders", "id", [], True, "or_9", {"or_9"})


def test_a_cursor_seen_before_is_a_stuck_pagination() -> None:
    with pytest.raises(ResponseFormatError, match="did not advance: the page after 'b' ends at 'a'"):
        next_page_cursor("orders", "id", [{"id": "a"}], True, "b", {"a", "b"})


@pytest.mark.parametrize("bad", [None, "", "  ", {"x": 1}, [1]])
def test_a_record_without_a_usable_cursor_is_named(bad: object) -> None:
    with pytest.raises(ResponseFormatError, match="record 1 has no 'id'"):
        next_page_cursor("orders", "id", [{"id": "a"}, {"id": bad}], True, None, set())


def test_is_last_page() -> None:
    assert is_last_page(False, paginated=True) and is_last_page(False, paginated=False)
    assert not is_last_page(True, paginated=True) and not is_last_page(None, paginated=True)
    assert is_last_page(None, paginated=False) and not is_last_page(True, paginated=False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        (" FALSE ", False),
        (1, True),
        (0, False),
        ("yes", None),
        (None, None),
    ],
)
def test_has_more_spellings(raw: object, expected: bool | None) -> None:
    assert _extract_list({"orders": [], "has_more": raw}, "orders") == ([], expected)


def test_extract_list_rejects_ambiguous_and_non_object_shapes() -> None:
    with pytest.raises(ResponseFormatError, match="expected a 'orders' list in the response"):
        _extract_list({"a": [], "b": []}, "orders")
    with pytest.raises(ResponseFormatError, match="expected a JSON object, got a JSON str"):
        _extract_list("orders", "orders")
    with pytest.raises(ResponseFormatError, match="record 1 is a JSON int, not an object"):
        _extract_list([{"id": "a"}, 7], "orders")


# -- the same rules through the page loop, on httpx.MockTransport ------------------------------------------


def test_has_more_false_ends_the_list_after_a_full_page(tmp_path: Path) -> None:
    client, seen = _client(
        tmp_path, lambda request: {"orders": [{"id": "or_1"}, {"id": "or_2"}], "has_more": False}
    )
    with client:
        assert [r["id"] for r in client.list_orders(page_size=2)] == ["or_1", "or_2"]
    assert len(seen) == 1


def test_an_unpaginated_list_is_read_once_without_limit(tmp_path: Path) -> None:
    client, seen = _client(tmp_path, lambda request: {"tax_rates": [{"id": "tr_1"}]})
    with client:
        assert [r["id"] for r in client.list_tax_rates()] == ["tr_1"]
    assert len(seen) == 1 and "limit" not in seen[0].url.params


def test_inventory_levels_page_on_sku(tmp_path: Path) -> None:
    def pages(request: httpx.Request) -> Any:
        if request.url.params.get("starting_after") == "S2":
            return {"inventory_levels": []}
        return {"inventory_levels": [{"sku": "S1", "on_hand": 1}, {"sku": "S2", "on_hand": 0}]}

    client, seen = _client(tmp_path, pages)
    with client:
        assert [r["sku"] for r in client.list_inventory_levels()] == ["S1", "S2"]
    assert [r.url.params.get("starting_after") for r in seen] == [None, "S2"]
