"""Conformance: each fact the two public sources establish about the real Orderspace API, asserted over HTTP.

Sources (cited per test):
- the API reference's Slate source, jgarlick/apidocs: `source/includes/models/_<resource>.html.md`;
- recorded real responses, ecomba/orderspace-ruby: `spec/fixtures/responses.http/<name>.http`.
Where both are silent the sandbox makes a choice; tests of those say "guess" and pin the choice.

Read-only facts run against one small account shared by the module (1,500 orders, so pages of 200 fill);
tests that change data get a fresh tiny sandbox of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest
from sandbox_test_helpers import api_client, fetch_token, is_bare_400, plain, walk

from orderspace_sandbox import SandboxConfig, SandboxServer
from orderspace_sandbox.data import iso_time

ORDER_STATUSES = (
    "new", "invoiced", "released", "part_fulfilled", "preorder", "fulfilled", "standing_order", "cancelled",
)  # fmt: skip
PAGINATED = ("customers", "orders", "dispatches", "products", "inventory_levels", "invoices", "categories")
# The keys of a customer in the recorded get_customer / list_customers / create_customer responses, in order.
RECORDED_CUSTOMER_KEYS = [
    "id", "company_name", "created", "status", "reference", "buyers", "phone", "email_addresses",
    "tax_number", "tax_rate_id", "addresses", "minimum_spend", "payment_terms_id", "customer_group_id",
    "price_list_id",
]  # fmt: skip
# The keys of an order in the recorded list_orders response, in order.
RECORDED_ORDER_KEYS = [
    "id", "number", "created", "status", "customer_id", "company_name", "phone", "email_addresses",
    "delivery_date", "reference", "internal_note", "customer_po_number", "customer_note", "standing_order_id",
    "shipping_type", "shipping_address", "billing_address", "order_lines", "currency", "net_total",
    "gross_total",
]  # fmt: skip


@pytest.fixture(scope="module")
def small() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, scale="small", rate_limit=100_000)) as server:
        yield server


@pytest.fixture(scope="module")
def read(small: SandboxServer) -> Iterator[httpx.Client]:
    with api_client(small) as client:
        yield client


def _day(text: str) -> date:
    return date.fromisoformat(text[:10])


# --- pagination ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", PAGINATED)
def test_limit_defaults_to_50(read, small, resource):
    """`limit`: "The default is 50" (apidocs _<resource>.html.md, List parameters)."""
    body = read.get(resource).json()
    assert len(body[resource]) == min(50, small.store.count(resource))
    assert small.store.count(resource) > 50 or resource in ("categories",)


@pytest.mark.parametrize("resource", ["orders", "dispatches", "invoices", "inventory_levels"])
def test_limit_maximum_is_200_and_a_larger_limit_is_clamped_to_it(read, resource):
    """`limit`: "the maximum limit is 200" (apidocs _orders/_dispatches/_invoices/_inventory_levels.html.md).
    Clamping a larger limit (rather than a 400) is a guess: the reference is silent."""
    assert len(read.get(resource, params={"limit": 200}).json()[resource]) == 200
    assert len(read.get(resource, params={"limit": 1000}).json()[resource]) == 200


def test_starting_after_pages_through_every_record_once_and_has_more_ends_false(read, small):
    """Cursor pagination with `starting_after` (apidocs _orders.html.md) and `has_more` (list_orders.http)."""
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 200} | ({"starting_after": cursor} if cursor else {})
        body = read.get("orders", params=params).json()
        seen += [o["id"] for o in body["orders"]]
        pages += 1
        if not body["has_more"]:
            break
        cursor = body["orders"][-1]["id"]
    assert len(seen) == len(set(seen)) == small.store.count("orders") == 1500
    assert pages == 8  # ceil(1500 / 200)


def test_an_empty_list_has_has_more_false(read):
    """An empty page is `{"orders": [], "has_more": false}` (orderspace-ruby list_orders/success_empty)."""
    assert read.get("orders", params={"number": 1}).json() == {"orders": [], "has_more": False}


def test_webhooks_list_is_one_page_without_has_more(read):
    """Webhooks list without `has_more` and with no parameters (list_webhooks/success.http; apidocs
    _webhooks.html.md documents no list parameters)."""
    body = read.get("webhooks", params={"limit": 1}).json()
    assert set(body) == {"webhooks"} and len(body["webhooks"]) == 2


# --- filters: orders -------------------------------------------------------------------------------------


def test_orders_created_since_and_created_before_select_exactly_one_day(read, small):
    """`created_since` / `created_before` on orders (apidocs _orders.html.md). Since is inclusive, before is
    exclusive (a guess), so consecutive days tile without overlap."""
    orders = small.store.all("orders")
    day = _day(orders[700]["created"])
    got = walk(read, "orders", created_since=day.isoformat(), created_before=(day + timedelta(1)).isoformat())
    assert got and got == [o for o in orders if _day(o["created"]) == day]


def test_orders_created_since_takes_a_datetime_to_the_second(read, small):
    """`created_since` "in ISO 8601 format, e.g. 2019-10-29T21:00" (apidocs _orders.html.md)."""
    orders = small.store.all("orders")
    pivot = orders[300]["created"]
    assert walk(read, "orders", created_since=pivot) == orders[:301]
    assert walk(read, "orders", created_before=pivot) == orders[301:]


def test_orders_delivery_date_since_and_before_are_exclusive_bounds(read, small):
    """`delivery_date_since` ("a delivery date after the specified date") and `delivery_date_before`
    (apidocs _orders.html.md). Both exclusive: "after"/"before" read literally (the reference is silent)."""
    orders = small.store.all("orders")
    low, high = "2026-06-01", "2026-06-05"
    expected = [o for o in orders if low < o["delivery_date"] < high]
    assert expected
    assert walk(read, "orders", delivery_date_since=low, delivery_date_before=high) == expected


def test_orders_number_filter_finds_one_order_in_one_request(read, small):
    """`number`: "Return records with the specified order number" (apidocs _orders.html.md)."""
    order = small.store.all("orders")[1234]
    assert read.get("orders", params={"number": order["number"]}).json() == {
        "orders": [order],
        "has_more": False,
    }


@pytest.mark.parametrize("status", ORDER_STATUSES)
def test_orders_status_filter_and_every_documented_status_occurs(read, small, status):
    """`status`, one of new, invoiced, released, part_fulfilled, preorder, fulfilled, standing_order,
    cancelled (apidocs _orders.html.md); the generated account uses each of them."""
    got = walk(read, "orders", status=status)
    assert got and got == [o for o in small.store.all("orders") if o["status"] == status]


def test_orders_customer_id_filter(read, small):
    """`customer_id`: "Return records for the specified customer" (apidocs _orders.html.md)."""
    customer_id = small.store.all("orders")[10]["customer_id"]
    got = walk(read, "orders", customer_id=customer_id)
    assert got and got == [o for o in small.store.all("orders") if o["customer_id"] == customer_id]


def test_orders_standing_order_id_filter_returns_the_repeat_orders(read, small):
    """`standing_order_id`: repeat orders of a standing order (apidocs _orders.html.md)."""
    repeat = next(o for o in small.store.all("orders") if o["standing_order_id"])
    got = walk(read, "orders", standing_order_id=repeat["standing_order_id"])
    assert repeat in got and all(o["standing_order_id"] == repeat["standing_order_id"] for o in got)


def test_orders_reference_filter(sandbox, api):
    """`reference`: "Return records with the specified reference" (apidocs _orders.html.md)."""
    customer = sandbox.store.all("customers")[0]
    sku = sandbox.store.all("inventory_levels")[0]["sku"]
    body = {"order": {"customer_id": customer["id"], "reference": "REF-77", "order_lines": [{"sku": sku}]}}
    created = api.post("orders", json=body).json()["order"]
    assert walk(api, "orders", reference="REF-77") == [created]


# --- filters: dispatches ---------------------------------------------------------------------------------


def test_dispatches_created_since_and_created_before(read, small):
    """`created_since` / `created_before` on dispatches (apidocs _dispatches.html.md)."""
    dispatches = small.store.all("dispatches")
    day = _day(dispatches[500]["created"])
    got = walk(
        read, "dispatches", created_since=day.isoformat(), created_before=(day + timedelta(1)).isoformat()
    )
    assert got and got == [d for d in dispatches if _day(d["created"]) == day]


def test_dispatches_order_id_filter(read, small):
    """`order_id`: "Return dispatches for the specified order" (apidocs _dispatches.html.md)."""
    order_id = small.store.all("dispatches")[20]["order_id"]
    got = read.get("dispatches", params={"order_id": order_id}).json()
    assert got["dispatches"] == [d for d in small.store.all("dispatches") if d["order_id"] == order_id]
    assert got["has_more"] is False


# --- filters: invoices -----------------------------------------------------------------------------------


def test_invoices_invoice_date_after_and_before_are_exclusive_bounds(read, small):
    """`invoice_date_after` / `invoice_date_before` (apidocs _invoices.html.md). Exclusive (a guess)."""
    low, high = "2026-03-01", "2026-03-09"
    expected = [i for i in small.store.all("invoices") if low < i["invoice_date"] < high]
    assert expected
    assert walk(read, "invoices", invoice_date_after=low, invoice_date_before=high) == expected


def test_invoices_due_date_after_and_before_are_exclusive_bounds(read, small):
    """`due_date_after` / `due_date_before` (apidocs _invoices.html.md). Exclusive (a guess)."""
    low, high = "2026-04-01", "2026-04-09"
    expected = [i for i in small.store.all("invoices") if low < i["due_date"] < high]
    assert expected
    assert walk(read, "invoices", due_date_after=low, due_date_before=high) == expected


def test_invoices_created_since_is_the_creation_time_not_the_invoice_date(read, small):
    """`created_since` on invoices "Return records created since" (apidocs _invoices.html.md): creation,
    which users' back-dated and forward-dated invoice dates do not follow."""
    created = small.store.created_times("invoices")
    invoices = small.store.all("invoices")
    since = created[invoices[600]["id"]]
    got = walk(read, "invoices", created_since=iso_time(since))
    assert got == invoices[:601]
    assert any(_day(i["invoice_date"]) < _day(iso_time(since)) - timedelta(14) for i in got)


def test_some_invoices_are_dated_weeks_before_or_after_their_creation(read, small):
    """Users back-date and forward-date invoices (issue 7, item 3): both occur, found only by invoice date."""
    created = small.store.created_times("invoices")
    shifts = [
        (_day(i["invoice_date"]) - _day(iso_time(created[i["id"]]))).days for i in walk(read, "invoices")
    ]
    assert sum(s <= -14 for s in shifts) >= 2 and sum(s >= 14 for s in shifts) >= 2


@pytest.mark.parametrize("value", ["true", "false"])
def test_invoices_paid_filter(read, small, value):
    """`paid`: "Set to either true or false" (apidocs _invoices.html.md)."""
    got = walk(read, "invoices", paid=value)
    assert got and got == [i for i in small.store.all("invoices") if i["paid"] is (value == "true")]


def test_invoices_number_customer_id_and_proforma_filters(read, small):
    """`number`, `customer_id`, `proforma` on invoices (apidocs _invoices.html.md)."""
    invoices = small.store.all("invoices")
    one = invoices[77]
    assert walk(read, "invoices", number=one["number"]) == [one]
    assert walk(read, "invoices", customer_id=one["customer_id"]) == [
        i for i in invoices if i["customer_id"] == one["customer_id"]
    ]
    proforma = walk(read, "invoices", proforma="true")
    assert proforma and proforma == [i for i in invoices if i["proforma"]]


# --- filters: products, inventory levels, customers ------------------------------------------------------


def test_products_updated_since_returns_exactly_the_changed_products(sandbox, api):
    """`updated_since` on products (apidocs _products.html.md): after one update, only that product."""
    before = iso_time(int(time.time()) - 1)
    assert walk(api, "products", updated_since=before) == []
    product = sandbox.store.all("products")[3]
    changed = api.put(f"products/{product['id']}", json={"product": {"name": "Renamed"}}).json()["product"]
    assert walk(api, "products", updated_since=before) == [changed]


def test_products_code_name_active_and_category_id_filters(read, small):
    """`code`, `name`, `active`, `category_id` on products (apidocs _products.html.md)."""
    products = small.store.all("products")
    one = products[5]
    assert walk(read, "products", code=one["code"]) == [one]
    assert walk(read, "products", name=one["name"]) == [p for p in products if p["name"] == one["name"]]
    assert walk(read, "products", active="false") == [p for p in products if not p["active"]]
    category = one["categories"][0]["id"]
    in_category = [p for p in products if any(c["id"] == category for c in p["categories"])]
    assert walk(read, "products", category_id=category) == in_category


def test_inventory_levels_sku_filter_returns_that_level(read, small):
    """`sku`: "Return the inventory level for a specific SKU" (apidocs _inventory_levels.html.md)."""
    level = small.store.all("inventory_levels")[123]
    assert read.get("inventory_levels", params={"sku": level["sku"]}).json() == {
        "inventory_levels": [level],
        "has_more": False,
    }


def test_inventory_levels_product_id_filter(read, small):
    """`product_id`: "Return inventory levels for a specific product" (apidocs _inventory_levels.html.md)."""
    product = small.store.all("products")[7]
    skus = sorted(v["sku"] for v in product["product_variants"])
    assert [lv["sku"] for lv in walk(read, "inventory_levels", product_id=product["id"])] == skus


def test_inventory_levels_updated_since_returns_exactly_the_changed_levels(sandbox, api):
    """`updated_since` on inventory levels (apidocs _inventory_levels.html.md): an update and a dispatch
    are changes; nothing else is returned."""
    before = iso_time(int(time.time()) - 1)
    assert walk(api, "inventory_levels", updated_since=before) == []
    skus = sorted(lv["sku"] for lv in sandbox.store.all("inventory_levels"))
    api.post("inventory_levels", json={"inventory_levels": [{"sku": skus[0], "on_hand": 7}]})
    order = next(o for o in sandbox.store.all("orders") if o["status"] in ("new", "released"))
    line = next(line for line in order["order_lines"] if not line["shipping"])
    dispatch = {
        "dispatch": {"order_id": order["id"], "dispatch_lines": [{"sku": line["sku"], "quantity": 1}]}
    }
    assert api.post("dispatches", json=dispatch).status_code == 200
    changed = {lv["sku"] for lv in walk(api, "inventory_levels", updated_since=before)}
    assert changed == {skus[0], line["sku"]}


def test_inventory_levels_created_since(read, small):
    """`created_since` on inventory levels (apidocs _inventory_levels.html.md): a level is created with its
    product (the level carries no such field: the time is the sandbox's hidden one)."""
    created = small.store.created_times("inventory_levels")
    pivot = sorted(created.values())[len(created) // 2]
    got = walk(read, "inventory_levels", created_since=iso_time(pivot))
    assert got and {lv["sku"] for lv in got} == {sku for sku, at in created.items() if at >= pivot}


def test_customers_created_since_status_and_attribute_filters(read, small):
    """`created_since`, `company_name`, `buyers_email_address`, `status`, `reference`, `payment_terms_id`,
    `customer_group_id`, `price_list_id` on customers (apidocs _customers.html.md)."""
    customers = small.store.all("customers")
    one = customers[40]
    assert walk(read, "customers", created_since=one["created"]) == customers[:41]
    assert walk(read, "customers", company_name=one["company_name"]) == [one]
    email = one["buyers"][0]["email_address"]
    assert walk(read, "customers", buyers_email_address=email) == [one]
    for status in ("new", "active", "closed"):
        assert walk(read, "customers", status=status) == [c for c in customers if c["status"] == status]
    for key in ("payment_terms_id", "customer_group_id", "price_list_id"):
        assert walk(read, "customers", **{key: one[key]}) == [c for c in customers if c[key] == one[key]]


@pytest.mark.parametrize(
    ("resource", "name", "value"),
    [
        ("orders", "created_since", "yesterday"),
        ("orders", "created_before", "2026-13-01"),
        ("orders", "delivery_date_since", "01/02/2026"),
        ("orders", "number", "one"),
        ("orders", "status", "processing"),
        ("dispatches", "created_before", "soon"),
        ("invoices", "invoice_date_after", "2026-02-30"),
        ("invoices", "due_date_before", "next week"),
        ("invoices", "paid", "yes"),
        ("products", "updated_since", "recently"),
        ("products", "active", "1"),
        ("inventory_levels", "updated_since", "2026-11"),
        ("customers", "status", "inactive"),
        ("orders", "limit", "ten"),
    ],
)
def test_a_malformed_filter_value_is_a_400_with_an_empty_body(read, resource, name, value):
    """A 400 has an empty body (orderspace-ruby bad_request.http: text/html, Content-Length 0). Which values
    count as malformed is a guess: anything not of the documented type or not one of the documented values."""
    assert is_bare_400(read.get(resource, params={name: value}))


# --- shapes ----------------------------------------------------------------------------------------------


def test_customers_carry_created_and_no_internal_note_as_recorded(read):
    """Customers have `created` (not the documented `created_at`) and no `internal_note`, with exactly the
    recorded keys in the recorded order (orderspace-ruby get_customer/success.http, list_customers)."""
    for customer in read.get("customers").json()["customers"]:
        assert list(customer) == RECORDED_CUSTOMER_KEYS


def test_orders_carry_the_recorded_keys(read):
    """Every key of the recorded order (orderspace-ruby list_orders/success.http) in the same order. The
    sandbox's order lines add `tax_rate_id` and `preorder_window_id`, documented in apidocs _orders."""
    order = read.get("orders", params={"limit": 1}).json()["orders"][0]
    assert list(order) == RECORDED_ORDER_KEYS


def test_token_response_has_the_recorded_fields(small):
    """The token endpoint answers access_token, token_type, expires_in, scope (orderspace-ruby
    oauth/success.http)."""
    form = {
        "client_id": small.config.client_id,
        "client_secret": small.config.client_secret,
        "grant_type": "client_credentials",
    }
    body = plain.post(small.token_url, data=form).json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800


def test_quantities_and_stock_levels_are_numbers_some_of_them_decimal(read, small):
    """Quantities of order, dispatch and invoice lines and stock levels are typed `number` (apidocs
    _orders/_dispatches/_invoices/_inventory_levels.html.md); fabric sold by the metre has decimals."""

    def decimal(value: object) -> bool:
        return isinstance(value, float) and not value.is_integer()

    orders = walk(read, "orders")
    assert any(decimal(line["quantity"]) for o in orders for line in o["order_lines"])
    assert any(decimal(line["quantity"]) for d in walk(read, "dispatches") for line in d["dispatch_lines"])
    assert any(decimal(line["quantity"]) for i in walk(read, "invoices") for line in i["invoice_lines"])
    levels = walk(read, "inventory_levels")
    assert any(decimal(lv["on_hand"]) or decimal(lv["available"]) for lv in levels)
    assert any(isinstance(line["quantity"], int) for o in orders for line in o["order_lines"])


def test_dispatch_create_and_inventory_update_accept_decimal_quantities(sandbox, api):
    """`dispatch_line.quantity` and `on_hand` / `available` are numbers (apidocs _dispatches.html.md,
    _inventory_levels.html.md): 1.25 metres dispatched, 10.5 on hand set."""
    fabric = next(lv["sku"] for lv in sandbox.store.all("inventory_levels") if lv["sku"].endswith("-MTR"))
    customer = sandbox.store.all("customers")[0]
    body = {"order": {"customer_id": customer["id"], "order_lines": [{"sku": fabric, "quantity": 2.5}]}}
    order = api.post("orders", json=body).json()["order"]
    assert order["order_lines"][0]["quantity"] == 2.5
    line = {"sku": fabric, "quantity": 1.25}
    response = api.post("dispatches", json={"dispatch": {"order_id": order["id"], "dispatch_lines": [line]}})
    assert response.status_code == 200, response.text
    assert response.json()["dispatch"]["dispatch_lines"][0]["quantity"] == 1.25
    after = api.get(f"orders/{order['id']}").json()["order"]
    assert after["status"] == "part_fulfilled" and after["order_lines"][0]["dispatched"] == 1.25
    levels = api.post("inventory_levels", json={"inventory_levels": [{"sku": fabric, "on_hand": 10.5}]})
    assert levels.json()["inventory_levels"][0]["on_hand"] == 10.5


def test_orders_that_cannot_be_dispatched_are_refused(sandbox, api):
    """A fulfilled order cannot be dispatched again ("The order has already been fulfilled", apidocs
    _dispatches.html.md); nor a cancelled order or a standing order (a template): a guess for those two."""
    for status in ("fulfilled", "cancelled", "standing_order"):
        order = next(o for o in sandbox.store.all("orders") if o["status"] == status)
        line = next(line for line in order["order_lines"] if not line["shipping"])
        body = {
            "dispatch": {"order_id": order["id"], "dispatch_lines": [{"sku": line["sku"], "quantity": 1}]}
        }
        assert api.post("dispatches", json=body).status_code == 422, status


# --- errors ----------------------------------------------------------------------------------------------


def test_an_expired_token_is_a_401_with_an_empty_body_and_www_authenticate(sandbox_factory):
    """401 for an expired token: empty `text/html` body, `WWW-Authenticate: Bearer realm="Orderspace",
    error="invalid_token", error_description="The access token expired"` (orderspace-ruby token_expired)."""
    server = sandbox_factory(token_ttl=0.2)
    headers = {"Authorization": f"Bearer {fetch_token(server)}"}
    time.sleep(0.3)
    response = plain.get(f"{server.api_url}/orders", headers=headers)
    assert response.status_code == 401 and response.content == b""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="Orderspace", error="invalid_token", error_description="The access token expired"'
    )


def test_an_invalid_token_is_a_401_with_an_empty_body_and_www_authenticate(small):
    """401 for an unknown token: same shape, `error_description="The access token is invalid"`
    (orderspace-ruby unauthorized.http)."""
    response = plain.get(f"{small.api_url}/orders", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401 and response.content == b""
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="Orderspace", error="invalid_token", error_description="The access token is invalid"'
    )


def test_a_missing_record_is_a_404_with_a_json_message(read):
    """`{"message":"Couldn't find order with id 42"}` (orderspace-ruby get_order/no_order.http) and
    `{"message":"Couldn't find a customer with ID ..."}` (get_customer/error.http)."""
    order = read.get("orders/42")
    assert order.status_code == 404 and order.json() == {"message": "Couldn't find order with id 42"}
    customer = read.get("customers/cu_nothere0")
    assert customer.status_code == 404
    assert customer.json() == {"message": "Couldn't find a customer with ID cu_nothere0"}


def test_an_unknown_path_is_an_html_404_page(read, small):
    """An unknown path answers an HTML 404 page (orderspace-ruby not_found.http), before authentication."""
    for response in (
        read.get("widgets"),
        plain.get(f"{small.api_url}/widgets/1/2"),
        plain.get(small.base_url),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert b"<html>" in response.content and b"Not Found" in response.content


# --- DELETE ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "singular"),
    [
        ("customers", "customer"),
        ("orders", "order"),
        ("invoices", "invoice"),
        ("products", "product"),
        ("categories", "category"),
        ("price_lists", "price_list"),
    ],
)
def test_delete_answers_the_short_representation_and_the_record_is_gone(sandbox, api, resource, singular):
    """`DELETE /v1/<resource>/:id` answers `{"<singular>": {"id": ..., "deleted": true}}`, 404 for a missing
    record (apidocs _customers/_orders/_invoices/_products/_categories/_price_lists.html.md); later lists and
    gets omit the record."""
    victim = sandbox.store.all(resource)[1]
    response = api.delete(f"{resource}/{victim['id']}")
    assert response.status_code == 200
    assert response.json() == {singular: {"id": victim["id"], "deleted": True}}
    assert api.get(f"{resource}/{victim['id']}").status_code == 404
    listed = walk(api, resource) if resource != "price_lists" else api.get(resource).json()[resource]
    assert victim["id"] not in {r["id"] for r in listed}
    assert len(listed) == len(sandbox.store.all(resource))
    assert api.delete(f"{resource}/{victim['id']}").status_code == 404


def test_deleting_a_product_removes_its_inventory_levels(sandbox, api):
    """A product's inventory levels exist per variant (apidocs _inventory_levels.html.md), so they go with
    the product (the cascade is a guess: the reference is silent)."""
    product = sandbox.store.all("products")[0]
    skus = {v["sku"] for v in product["product_variants"]}
    assert api.delete(f"products/{product['id']}").status_code == 200
    assert not skus & {lv["sku"] for lv in walk(api, "inventory_levels")}
