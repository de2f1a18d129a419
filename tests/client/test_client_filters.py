"""Page size and the documented list filters, as the client puts them on the wire.

`httpx.MockTransport` records each query string (a unit of the client's request building; the sandbox tests
cover the same lists over real HTTP). The expected filter sets are the "Parameters" of each "List ..." section
of the API reference (`source/includes/models/_<resource>.html.md`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.client import LIST_FILTERS, MAX_PAGE_SIZE, OrderspaceClient, filter_params
from orderspace_pipelines.client.client import UNPAGINATED_RESOURCES
from orderspace_pipelines.client.errors import ConfigurationError
from tests.client.conftest import mock_client

DOCUMENTED_FILTERS = {
    "customers": {
        "created_since",
        "company_name",
        "buyers_email_address",
        "status",
        "reference",
        "payment_terms_id",
        "customer_group_id",
        "price_list_id",
    },
    "orders": {
        "created_since",
        "created_before",
        "delivery_date_since",
        "delivery_date_before",
        "number",
        "status",
        "reference",
        "customer_id",
        "standing_order_id",
    },
    "dispatches": {"created_since", "created_before", "order_id"},
    "invoices": {
        "created_since",
        "invoice_date_after",
        "invoice_date_before",
        "due_date_after",
        "due_date_before",
        "number",
        "customer_id",
        "paid",
        "proforma",
    },
    "products": {"created_since", "updated_since", "code", "name", "active", "category_id"},
    "inventory_levels": {"created_since", "updated_since", "product_id", "sku"},
    "categories": {"name", "parent_id"},
    "customer_groups": set(),
    "price_lists": set(),
    "payment_terms": set(),
    "tax_rates": set(),
    "preorder_windows": set(),
    "webhooks": set(),
}


def _client(
    tmp_path: Path, body: Callable[[httpx.Request], Any] | None = None, **kwargs: Any
) -> tuple[OrderspaceClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        resource = request.url.path.removeprefix("/v1/")
        payload = body(request) if body else {resource: [], "has_more": False}
        return httpx.Response(200, content=json.dumps(payload).encode())

    return mock_client(tmp_path, api, **kwargs), seen


def test_the_filter_table_is_the_documented_one() -> None:
    assert {resource: set(names) for resource, names in LIST_FILTERS.items()} == DOCUMENTED_FILTERS


@pytest.mark.parametrize("resource", sorted(DOCUMENTED_FILTERS))
def test_every_paginated_list_asks_for_200_and_unpaginated_ones_send_no_limit(
    tmp_path: Path, resource: str
) -> None:
    assert MAX_PAGE_SIZE == 200
    client, seen = _client(tmp_path)
    with client:
        assert list(getattr(client, f"list_{resource}")()) == []
    assert len(seen) == 1
    params = dict(seen[0].url.params)
    if resource in UNPAGINATED_RESOURCES:
        assert params == {}
    else:
        assert params == {"limit": "200"}


def test_every_page_of_a_long_list_asks_for_200(tmp_path: Path) -> None:
    def body(request: httpx.Request) -> Any:
        after = request.url.params.get("starting_after")
        start = 0 if after is None else int(after.removeprefix("or_")) + 1
        ids = range(start, min(start + 200, 450))
        return {"orders": [{"id": f"or_{i}"} for i in ids], "has_more": start + 200 < 450}

    client, seen = _client(tmp_path, body)
    with client:
        assert len(list(client.list_orders(created_since=date(2026, 1, 1)))) == 450
    assert [request.url.params["limit"] for request in seen] == ["200", "200", "200"]
    assert [request.url.params.get("starting_after") for request in seen] == [None, "or_199", "or_399"]
    assert all(request.url.params["created_since"] == "2026-01-01" for request in seen)


def test_page_size_above_the_documented_maximum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="between 1 and 200"):
        _client(tmp_path, page_size=201)
    client, seen = _client(tmp_path)
    with client, pytest.raises(ValueError, match="between 1 and 200"):
        client.iter_pages("orders", page_size=500)
    assert seen == []


def test_orders_filters_are_formatted_as_documented(tmp_path: Path) -> None:
    client, seen = _client(tmp_path)
    with client:
        list(
            client.list_orders(
                created_since=datetime(2019, 10, 29, 21, 0, tzinfo=timezone(timedelta(hours=1))),
                created_before=date(2019, 10, 31),
                delivery_date_since=date(2019, 11, 1),
                delivery_date_before="2019-11-30",
                number=1204,
                status="part_fulfilled",
                customer_id="cu_gpbOljAn",
            )
        )
    assert dict(seen[0].url.params) == {
        "limit": "200",
        "created_since": "2019-10-29T20:00:00Z",
        "created_before": "2019-10-31",
        "delivery_date_since": "2019-11-01",
        "delivery_date_before": "2019-11-30",
        "number": "1204",
        "status": "part_fulfilled",
        "customer_id": "cu_gpbOljAn",
    }


def test_invoice_dispatch_product_and_inventory_filters(tmp_path: Path) -> None:
    client, seen = _client(tmp_path)
    with client:
        list(
            client.list_invoices(
                invoice_date_after=date(2026, 3, 1),
                invoice_date_before="2026-03-31",
                due_date_after=date(2026, 4, 1),
                due_date_before=date(2026, 4, 30),
                paid=False,
                proforma="TRUE",
                number="INV-1288",
            )
        )
        list(client.list_dispatches(created_since="2026-03-01T00:00", created_before=None, order_id="or_1"))
        list(client.list_products(updated_since=datetime(2026, 3, 1, 12, 30, 15, 999), active=True))
        list(
            client.list_inventory_levels(updated_since="2026-03-01T12:30:00Z", sku="AD-10", product_id="pr_1")
        )
    invoices, dispatches, products, levels = (dict(request.url.params) for request in seen)
    assert invoices == {
        "limit": "200",
        "invoice_date_after": "2026-03-01",
        "invoice_date_before": "2026-03-31",
        "due_date_after": "2026-04-01",
        "due_date_before": "2026-04-30",
        "paid": "false",
        "proforma": "true",
        "number": "INV-1288",
    }
    # None means "not set": created_before is not sent.
    assert dispatches == {"limit": "200", "created_since": "2026-03-01T00:00", "order_id": "or_1"}
    # A naive datetime is UTC; microseconds are dropped.
    assert products == {"limit": "200", "updated_since": "2026-03-01T12:30:15Z", "active": "true"}
    assert levels == {
        "limit": "200",
        "updated_since": "2026-03-01T12:30:00Z",
        "sku": "AD-10",
        "product_id": "pr_1",
    }


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        ("orders", "updated_since"),  # documented for products and inventory levels only
        ("dispatches", "status"),
        ("invoices", "created_before"),
        ("customers", "created_before"),
        ("categories", "created_since"),
        ("tax_rates", "created_since"),
        ("inventory_levels", "skus"),
    ],
)
def test_an_undocumented_filter_fails_before_any_request(tmp_path: Path, resource: str, name: str) -> None:
    client, seen = _client(tmp_path)
    with client:
        with pytest.raises(TypeError, match=rf"GET /{resource} has no filter '{name}'"):
            client.iter_pages(resource, **{name: "2026-01-01"})
        with pytest.raises(TypeError, match=rf"'{name}'"):
            getattr(client, f"list_{resource}")(**{name: "2026-01-01"})
        with pytest.raises(TypeError, match=rf"'{name}'"):
            client.iter_records(resource, **{name: "2026-01-01"})
    assert seen == []


@pytest.mark.parametrize(
    ("resource", "filters", "message"),
    [
        ("orders", {"status": "processing"}, "status must be one of cancelled, fulfilled, invoiced"),
        ("customers", {"status": "archived"}, "status must be one of active, closed, new"),
        ("orders", {"number": "12a"}, "number must be a whole number"),
        ("orders", {"number": True}, "number must be a whole number"),
        ("invoices", {"paid": "yes"}, "paid must be True or False"),
        ("invoices", {"invoice_date_after": datetime(2026, 1, 1, 5)}, "invoice_date_after takes a date"),
        ("invoices", {"due_date_before": "31/01/2026"}, "due_date_before must be a date in ISO 8601"),
        ("orders", {"created_since": "yesterday"}, "created_since must be an ISO 8601 date"),
        ("orders", {"created_before": ""}, "created_before must not be empty"),
        ("dispatches", {"order_id": "  "}, "order_id must be non-empty text"),
        ("inventory_levels", {"sku": 12.5}, "sku must be non-empty text"),
    ],
)
def test_a_bad_filter_value_names_the_filter(
    tmp_path: Path, resource: str, filters: dict[str, Any], message: str
) -> None:
    client, seen = _client(tmp_path)
    with client, pytest.raises(ValueError, match=message):
        client.iter_pages(resource, **filters)
    assert seen == []


def test_every_documented_order_status_is_accepted() -> None:
    for status in (
        "new",
        "invoiced",
        "released",
        "part_fulfilled",
        "preorder",
        "fulfilled",
        "standing_order",
        "cancelled",
    ):
        assert filter_params("orders", {"status": status}) == {"status": status}


def test_the_pull_and_push_call_shapes_still_work(tmp_path: Path) -> None:
    """How `defs/pull_assets.py` and `warehouse/` call the client today: a generic `iter_pages` with a
    `created_since` date or None and a cursor, and `list_dispatches` with an ISO date string."""
    client, seen = _client(tmp_path)
    with client:
        for resource in ("orders", "dispatches", "invoices"):
            list(client.iter_pages(resource, starting_after="x_1", created_since=None))
            list(client.iter_pages(resource, starting_after=None, created_since=date(2026, 5, 2)))
        list(client.list_dispatches(created_since="2026-05-02"))
        list(client.list_orders())
        list(client.list_inventory_levels())
        for resource in DOCUMENTED_FILTERS:
            list(client.iter_pages(resource))
    queries = [dict(request.url.params) for request in seen]
    assert (
        queries[:6]
        == [
            {"limit": "200", "starting_after": "x_1"},
            {"limit": "200", "created_since": "2026-05-02"},
        ]
        * 3
    )
    assert queries[6] == {"limit": "200", "created_since": "2026-05-02"}
    assert len(seen) == 9 + len(DOCUMENTED_FILTERS)


def test_datetime_filters_are_sent_in_utc() -> None:
    moment = datetime(2026, 7, 1, 0, 30, tzinfo=UTC) + timedelta(seconds=0.4)
    assert filter_params("products", {"updated_since": moment}) == {"updated_since": "2026-07-01T00:30:00Z"}
    summer = datetime(2026, 7, 1, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    assert filter_params("inventory_levels", {"created_since": summer}) == {
        "created_since": "2026-07-01T00:30:00Z"
    }
