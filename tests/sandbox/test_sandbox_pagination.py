"""List endpoints: newest-first cursor pagination, limits, created_since, list-specific shapes."""

from __future__ import annotations

import pytest
from sandbox_test_helpers import is_bare_400, walk

from orderspace_sandbox.data import iso_time

NEWEST_FIRST = ["customers", "orders", "dispatches", "products", "invoices"]
UNPAGINATED = ["customer_groups", "price_lists", "payment_terms", "tax_rates", "preorder_windows", "webhooks"]


@pytest.mark.parametrize("resource", [*NEWEST_FIRST, "inventory_levels", "categories"])
def test_walking_every_page_returns_the_whole_list_in_order(sandbox, api, resource):
    records = walk(api, resource, limit=7)
    assert records == sandbox.store.all(resource)
    keys = [r.get("sku") or r["id"] for r in records]
    assert len(set(keys)) == len(keys)


def test_orders_are_newest_first_and_has_more_is_false_on_the_last_page(sandbox, api):
    first = api.get("orders", params={"limit": 5}).json()
    created = [order["created"] for order in first["orders"]]
    assert created == sorted(created, reverse=True)
    assert first["has_more"] is True
    total = len(sandbox.store.all("orders"))
    last_page_cursor = sandbox.store.all("orders")[total - 3]["id"]
    last = api.get("orders", params={"limit": 5, "starting_after": last_page_cursor}).json()
    assert len(last["orders"]) == 2
    assert last["has_more"] is False


def test_starting_after_continues_right_after_the_cursor(sandbox, api):
    orders = sandbox.store.all("orders")
    page = api.get("orders", params={"limit": 3, "starting_after": orders[10]["id"]}).json()["orders"]
    assert [o["id"] for o in page] == [o["id"] for o in orders[11:14]]


def test_default_page_size_is_50_and_limit_is_clamped_to_200(sandbox_factory, api_for):
    api = api_for(sandbox_factory(scale="small"))  # 1,500 orders: more than one full page of 200
    assert len(api.get("orders").json()["orders"]) == 50
    clamped = api.get("orders", params={"limit": 500}).json()
    assert len(clamped["orders"]) == 200
    assert clamped["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "-1", "ten"])
def test_bad_limit_is_a_bare_400(api, limit):
    assert is_bare_400(api.get("orders", params={"limit": limit}))


def test_unknown_cursor_is_a_bare_400(api):
    assert is_bare_400(api.get("orders", params={"starting_after": "or_nothere0"}))
    assert is_bare_400(api.get("inventory_levels", params={"starting_after": "NO-SUCH-SKU"}))


def test_created_since_a_date_keeps_orders_created_that_day_or_later(sandbox, api):
    orders = sandbox.store.all("orders")
    since = orders[len(orders) // 2]["created"][:10]
    expected = [o for o in orders if o["created"][:10] >= since]
    assert 0 < len(expected) < len(orders)
    assert walk(api, "orders", limit=9, created_since=since) == expected


def test_created_since_a_datetime_is_exact_to_the_second(sandbox, api):
    orders = sandbox.store.all("orders")
    pivot = orders[40]["created"]  # e.g. 2026-11-01T10:11:12Z
    got = walk(api, "orders", created_since=pivot)
    assert got == orders[:41]
    with_offset = pivot.replace("Z", "+00:00")
    assert walk(api, "orders", created_since=with_offset) == got


def test_created_since_applies_to_customers_dispatches_and_invoices(sandbox, api):
    for resource, field in [
        ("customers", "created"),
        ("dispatches", "created"),
    ]:
        records = sandbox.store.all(resource)
        since = records[len(records) // 3][field][:10]
        assert walk(api, resource, created_since=since) == [r for r in records if r[field][:10] >= since]
    # invoices by their hidden creation time, not by invoice_date (some are back- or forward-dated)
    invoices = sandbox.store.all("invoices")
    created = sandbox.store.created_times("invoices")
    since_time = created[invoices[len(invoices) // 3]["id"]]
    expected = [i for i in invoices if created[i["id"]] >= since_time]
    assert walk(api, "invoices", created_since=iso_time(since_time)) == expected


def test_created_since_must_be_a_date(api):
    assert is_bare_400(api.get("orders", params={"created_since": "last tuesday"}))


def test_invoices_list_has_no_has_more_like_the_real_api(api):
    body = api.get("invoices", params={"limit": 2}).json()
    assert len(body["invoices"]) == 2
    assert "has_more" not in body


def test_other_paginated_lists_carry_has_more(api):
    for resource in [
        "customers",
        "orders",
        "dispatches",
        "products",
        "inventory_levels",
        "categories",
    ]:
        assert "has_more" in api.get(resource, params={"limit": 1}).json(), resource


@pytest.mark.parametrize("resource", UNPAGINATED)
def test_unpaginated_lists_return_everything_without_has_more(sandbox, api, resource):
    body = api.get(resource, params={"limit": 1}).json()
    assert body == {resource: sandbox.store.all(resource)}
    assert len(body[resource]) >= 2


def test_inventory_is_in_sku_order_and_categories_in_sort_order(sandbox, api):
    skus = [level["sku"] for level in walk(api, "inventory_levels", limit=10)]
    assert skus == sorted(skus)
    categories = walk(api, "categories", limit=4)
    assert [c["name"] for c in categories[:2]] == ["Dresses", "Tops"]


def test_a_blank_filter_value_is_no_filter(sandbox, api):
    """A guess where the reference is silent: `?status=&sku=` reads as if absent (a `present?` check)."""
    assert walk(api, "orders", status="", customer_id="", created_before="") == sandbox.store.all("orders")
    assert walk(api, "inventory_levels", sku="") == sandbox.store.all("inventory_levels")


def test_a_filter_combines_with_the_cursor(sandbox, api):
    fulfilled = [o for o in sandbox.store.all("orders") if o["status"] == "fulfilled"]
    assert len(fulfilled) > 14
    assert walk(api, "orders", status="fulfilled", limit=7) == fulfilled
    page = api.get("orders", params={"status": "fulfilled", "limit": 3, "starting_after": fulfilled[4]["id"]})
    assert page.json() == {"orders": fulfilled[5:8], "has_more": True}
