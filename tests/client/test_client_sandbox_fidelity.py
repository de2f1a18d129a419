"""The real page size, the documented filters and the real error shapes over real HTTP, against the sandbox
(which follows the API reference and the recorded responses: `limit` default 50, maximum 200, each list's
filters, an empty-bodied 400, a 401 whose `WWW-Authenticate` says why)."""

from __future__ import annotations

import math
import time
from datetime import date, timedelta

import httpx
import pytest

from orderspace_pipelines.client import BadRequestError
from orderspace_pipelines.client.errors import AuthenticationError, error_from_response


@pytest.fixture
def small(sandbox_factory):
    return sandbox_factory(scale="small")


@pytest.mark.parametrize("resource", ["orders", "dispatches", "inventory_levels"])
def test_every_page_carries_200_records(small, make_client, resource: str) -> None:
    client = make_client(small)
    pages = list(client.iter_pages(resource))
    expected = small.store.all(resource)
    assert len(expected) > 200, "the small account has more than one page of each"
    assert [record for page in pages for record in page.records] == expected
    assert [len(page.records) for page in pages[:-1]] == [200] * (len(pages) - 1)
    assert small.stats()["by_path"] == {f"GET /v1/{resource}": math.ceil(len(expected) / 200)}


def test_a_list_without_has_more_costs_one_request_more(small, make_client) -> None:
    client = make_client(small)
    invoices = list(client.list_invoices())
    assert invoices == small.store.all("invoices")
    assert small.stats()["by_path"] == {"GET /v1/invoices": math.ceil(len(invoices) / 200) + 1}


def test_one_day_of_orders_by_created_since_and_created_before(small, make_client) -> None:
    client = make_client(small)
    everything = small.store.all("orders")
    day = date.fromisoformat(everything[len(everything) // 2]["created"][:10])
    expected = [order for order in everything if order["created"][:10] == day.isoformat()]
    assert expected
    got = list(client.list_orders(created_since=day, created_before=day + timedelta(days=1)))
    assert got == expected
    assert small.stats()["by_path"] == {"GET /v1/orders": 1}


def test_lookups_by_order_id_number_and_sku(small, make_client) -> None:
    client = make_client(small)
    dispatch = small.store.all("dispatches")[0]
    by_order = list(client.list_dispatches(order_id=dispatch["order_id"]))
    assert dispatch in by_order
    assert {d["order_id"] for d in by_order} == {dispatch["order_id"]}

    order = small.store.all("orders")[3]
    assert list(client.list_orders(number=order["number"])) == [order]

    level = small.store.all("inventory_levels")[7]
    assert list(client.list_inventory_levels(sku=level["sku"])) == [level]
    assert small.stats()["by_path"] == {
        "GET /v1/dispatches": 1,
        "GET /v1/orders": 1,
        "GET /v1/inventory_levels": 1,
    }


def test_invoice_date_range_and_paid(small, make_client) -> None:
    client = make_client(small)
    invoices = small.store.all("invoices")
    day = date.fromisoformat(invoices[len(invoices) // 2]["invoice_date"])
    # The bounds are exclusive on the sandbox (the reference is silent): after D-1 and before D+1 is day D.
    got = list(
        client.list_invoices(
            invoice_date_after=day - timedelta(days=1), invoice_date_before=day + timedelta(days=1)
        )
    )
    assert got == [invoice for invoice in invoices if invoice["invoice_date"] == day.isoformat()]
    unpaid = list(client.list_invoices(paid=False))
    assert unpaid == [invoice for invoice in invoices if invoice["paid"] is False]


def test_the_real_400_reads_clearly(sandbox, make_client) -> None:
    client = make_client(sandbox)
    with pytest.raises(BadRequestError) as caught:
        client.request("GET", "orders", params={"created_before": "not-a-date"})
    assert str(caught.value).startswith(
        "400 Bad Request from GET /v1/orders?created_before=not-a-date: empty body: the API refused the "
        "request without giving a reason; the query parameters sent were created_before"
    )


def _get_orders(server, token: str) -> httpx.Response:
    return httpx.get(f"{server.api_url}/orders", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_the_real_401_says_invalid_or_expired(sandbox_factory, make_client) -> None:
    server = sandbox_factory(token_ttl=0.3)
    invalid = _get_orders(server, "not-a-token")
    assert (invalid.status_code, invalid.content) == (401, b"")
    error = error_from_response(invalid)
    assert isinstance(error, AuthenticationError)
    assert error.message.startswith("the access token is invalid (WWW-Authenticate: error=invalid_token;")

    token = make_client(server).auth.token()
    time.sleep(0.4)  # past the sandbox's token lifetime
    expired = _get_orders(server, token)
    assert expired.status_code == 401
    error = error_from_response(expired, secrets=[token])
    assert error.message.startswith("the access token expired (WWW-Authenticate: error=invalid_token;")
    assert token not in str(error)
