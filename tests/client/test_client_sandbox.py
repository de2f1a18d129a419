"""The client over real HTTP against the sandbox: pagination, drift, endpoints, errors, retries, inventory."""

from __future__ import annotations

import time

import pytest

from orderspace_pipelines.client import (
    INVENTORY_BATCH_LIMIT,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    OrderspaceClient,
    ResponseFormatError,
    ServerError,
    TransportError,
    ValidationError,
)
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SANDBOX_RESOURCES

LIST_METHODS = {
    "customers": "list_customers",
    "orders": "list_orders",
    "dispatches": "list_dispatches",
    "products": "list_products",
    "inventory_levels": "list_inventory_levels",
    "invoices": "list_invoices",
    "categories": "list_categories",
    "customer_groups": "list_customer_groups",
    "price_lists": "list_price_lists",
    "payment_terms": "list_payment_terms",
    "tax_rates": "list_tax_rates",
    "preorder_windows": "list_preorder_windows",
    "webhooks": "list_webhooks",
}
PAGINATED = ("customers", "orders", "dispatches", "products", "inventory_levels", "invoices", "categories")


def test_every_resource_has_a_list_method() -> None:
    assert set(LIST_METHODS) == set(SANDBOX_RESOURCES)


@pytest.mark.parametrize("resource", sorted(LIST_METHODS))
def test_list_endpoint_returns_every_record_in_order(sandbox, make_client, resource: str) -> None:
    client = make_client(sandbox)
    method = getattr(client, LIST_METHODS[resource])
    records = list(method(page_size=7)) if resource in PAGINATED else list(method())
    assert records == sandbox.store.all(resource)
    assert records, "the tiny sandbox has records of every kind"


@pytest.mark.parametrize("resource", ["orders", "customers", "inventory_levels", "invoices"])
def test_pagination_without_has_more_reads_to_an_empty_page(sandbox, make_client, resource: str) -> None:
    sandbox.drift.set(resource, omit_has_more=True)
    client = make_client(sandbox)
    pages = list(client.iter_pages(resource, page_size=10))
    expected = sandbox.store.all(resource)
    assert [r for page in pages for r in page.records] == expected
    assert all(page.has_more is None for page in pages)
    full_pages = -(-len(expected) // 10)
    # One request per page plus the empty page that proves the end.
    assert sum(sandbox.stats()["by_path"].values()) == full_pages + 1
    assert pages[-1].cursor == expected[-1]["sku" if resource == "inventory_levels" else "id"]


def test_has_more_is_trusted_when_present(sandbox, make_client) -> None:
    client = make_client(sandbox)
    pages = list(client.iter_pages("orders", page_size=50))
    assert [p.has_more for p in pages] == [True, True, False]
    assert sandbox.stats()["by_path"] == {"GET /v1/orders": 3}


def test_short_pages_do_not_end_pagination(sandbox_factory, make_client) -> None:
    server = sandbox_factory(max_page_size=8)  # the server caps pages below what we ask for
    server.drift.set("orders", omit_has_more=True)
    client = make_client(server)
    assert list(client.list_orders(page_size=100)) == server.store.all("orders")


def test_resume_from_a_cursor_and_created_since(sandbox, make_client) -> None:
    client = make_client(sandbox)
    everything = sandbox.store.all("orders")
    first = next(client.iter_pages("orders", page_size=30))
    rest = list(client.list_orders(starting_after=first.cursor))
    assert first.records + rest == everything

    recent = list(client.list_orders(created_since="2026-10-15"))
    assert recent == [o for o in everything if o["created"] >= "2026-10-15"]
    assert 0 < len(recent) < len(everything)


def test_drift_extra_fields_kept_and_missing_cursor_field_is_clear(sandbox, make_client) -> None:
    sandbox.drift.set("products", extra_fields={"season": "AW26"}, missing_fields=["composition"])
    client = make_client(sandbox)
    products = list(client.list_products())
    assert all(p["season"] == "AW26" and "composition" not in p for p in products)

    sandbox.drift.set("customers", missing_fields=["id"])
    with pytest.raises(ResponseFormatError, match=r"GET /customers: record 0 has no 'id'"):
        list(client.list_customers())


def test_single_record_endpoints(sandbox, make_client) -> None:
    client = make_client(sandbox)
    order = sandbox.store.all("orders")[3]
    assert client.get_order(order["id"]) == order
    invoice = sandbox.store.all("invoices")[0]
    assert client.get_invoice(invoice["id"]) == invoice
    dispatch = sandbox.store.all("dispatches")[0]
    assert client.get_dispatch(dispatch["id"]) == dispatch

    customer = sandbox.store.all("customers")[0]
    assert client.get_customer(customer["id"]) == customer
    updated = client.update_customer(customer["id"], {"phone": "0117 496 0000"})
    assert updated["phone"] == "0117 496 0000"
    assert sandbox.store.get("customers", customer["id"])["phone"] == "0117 496 0000"
    created = client.create_customer(
        {"company_name": "Tidy Co", "buyers": [{"name": "A", "email_address": "a@tidy.example"}]}
    )
    assert created["id"].startswith("cu_")
    assert sandbox.store.get("customers", created["id"])["company_name"] == "Tidy Co"

    product = sandbox.store.all("products")[0]
    assert client.get_product(product["id"]) == product
    assert client.update_product(product["id"], {"name": "Renamed"})["name"] == "Renamed"

    hook = client.create_webhook({"endpoint": "https://hooks.example/os", "events": ["order.created"]})
    assert client.get_webhook(hook["id"])["endpoint"] == "https://hooks.example/os"
    assert client.update_webhook(hook["id"], {"events": ["invoice.created"]})["events"] == ["invoice.created"]
    assert client.delete_webhook(hook["id"])["deleted"] is True
    assert sandbox.store.get("webhooks", hook["id"]) is None


def test_not_found_and_validation_errors_read_well(sandbox, make_client) -> None:
    client = make_client(sandbox)
    with pytest.raises(NotFoundError) as caught:
        client.get_customer("cu_missing")
    error = caught.value
    assert error.status == 404 and error.request_id
    assert str(error).startswith("404 Not Found from GET /v1/customers/cu_missing: ")
    assert str(error).endswith(f"(request id {error.request_id})")

    fulfilled = next(o for o in sandbox.store.all("orders") if o["status"] == "fulfilled")
    with pytest.raises(ValidationError) as caught:
        client.create_dispatch({"order_id": fulfilled["id"], "dispatch_lines": [{"sku": "X", "quantity": 1}]})
    assert str(caught.value) == (
        "422 Unprocessable Entity from POST /v1/dispatches: The order has already been fulfilled "
        f"(request id {caught.value.request_id})"
    )


@pytest.mark.parametrize(
    ("fault", "error_type", "expected_message"),
    [
        (
            "500_json",
            ServerError,
            "500 Internal Server Error from POST /v1/dispatches: Internal Server Error",
        ),
        ("503_empty", ServerError, "503 Service Unavailable from POST /v1/dispatches: (empty response body)"),
        ("400_html", BadRequestError, "400 Bad Request from POST /v1/dispatches: "),
    ],
)
def test_every_error_body_shape_over_http(
    sandbox, make_client, dispatchable_order, fault, error_type, expected_message
) -> None:
    client = make_client(sandbox)
    order, lines = dispatchable_order(sandbox)
    sandbox.faults.inject(fault, path_prefix="/v1/dispatches")
    with pytest.raises(error_type) as caught:
        client.create_dispatch({"order_id": order["id"], "dispatch_lines": lines})
    text = str(caught.value)
    assert text.startswith(expected_message)
    assert "<" not in text and "\n" not in text and len(caught.value.message) <= 200
    assert caught.value.request_id and text.endswith(f"(request id {caught.value.request_id})")
    assert sandbox.stats()["by_path"]["POST /v1/dispatches"] == 1, "a POST answered 5xx/400 is not retried"


@pytest.mark.parametrize("fault", ["500_html", "502_html", "503_empty", "500_json", "drop", "slow"])
def test_get_retries_through_faults(sandbox, make_client, fault: str) -> None:
    client = make_client(sandbox, timeout=0.5)
    sandbox.faults.inject(fault, count=2, path_prefix="/v1/customers", delay=2.0 if fault == "slow" else None)
    assert list(client.list_customers()) == sandbox.store.all("customers")
    assert client.stats.retries == 2
    assert sandbox.stats()["by_path"]["GET /v1/customers"] == 3


def test_get_gives_up_after_max_retries(sandbox, make_client) -> None:
    client = make_client(sandbox, max_retries=2)
    sandbox.faults.inject("502_html", count=5, path_prefix="/v1/orders")
    with pytest.raises(ServerError, match=r"^502 Bad Gateway from GET /v1/orders\?limit=200: "):
        list(client.list_orders())
    assert sandbox.stats()["by_path"]["GET /v1/orders"] == 3

    sandbox.faults.clear()
    sandbox.faults.inject("drop", count=5, path_prefix="/v1/orders")
    with pytest.raises(TransportError, match="RemoteProtocolError after 3 attempt") as caught:
        list(client.list_orders())
    assert caught.value.maybe_processed is False


def test_post_is_not_retried_after_a_dropped_connection(sandbox, make_client, dispatchable_order) -> None:
    client = make_client(sandbox)
    order, lines = dispatchable_order(sandbox)
    before = len(sandbox.store.all("dispatches"))
    sandbox.faults.inject("drop", path_prefix="/v1/dispatches")
    with pytest.raises(TransportError, match="may have been processed") as caught:
        client.create_dispatch({"order_id": order["id"], "dispatch_lines": lines})
    assert caught.value.maybe_processed is True
    assert sandbox.stats()["by_path"]["POST /v1/dispatches"] == 1
    assert len(sandbox.store.all("dispatches")) == before


def test_post_is_not_retried_after_a_read_timeout(sandbox, make_client, dispatchable_order) -> None:
    """The server processes the dispatch after the client gave up waiting: exactly one dispatch exists."""
    client = make_client(sandbox, timeout=0.3)
    order, lines = dispatchable_order(sandbox)
    before = len(sandbox.store.all("dispatches"))
    sandbox.faults.inject("slow", path_prefix="/v1/dispatches", delay=0.8)
    with pytest.raises(TransportError, match="ReadTimeout after the request was sent") as caught:
        client.create_dispatch({"order_id": order["id"], "dispatch_lines": lines})
    assert caught.value.maybe_processed is True
    assert sandbox.stats()["by_path"]["POST /v1/dispatches"] == 1
    for _ in range(100):  # the server finishes the slow request after the client gave up on it
        if len(sandbox.store.all("dispatches")) > before:
            break
        time.sleep(0.05)
    mine = [d for d in client.list_dispatches() if d["order_id"] == order["id"]]
    assert len(mine) == 1 and len(sandbox.store.all("dispatches")) == before + 1


def test_dispatch_created_once(sandbox, make_client, dispatchable_order) -> None:
    client = make_client(sandbox)
    order, lines = dispatchable_order(sandbox)
    dispatch = client.create_dispatch({"order_id": order["id"], "comments": "DPD", "dispatch_lines": lines})
    assert dispatch["order_id"] == order["id"] and dispatch["comments"] == "DPD"
    assert sandbox.store.get("dispatches", dispatch["id"]) == dispatch


def test_inventory_updates_split_into_batches_of_200(sandbox, make_client) -> None:
    client = make_client(sandbox)
    skus = [level["sku"] for level in sandbox.store.all("inventory_levels")]
    levels = [{"sku": skus[i % len(skus)], "on_hand": i} for i in range(450)]
    updated = client.update_inventory_levels(levels)
    assert INVENTORY_BATCH_LIMIT == 200
    assert sandbox.stats()["by_path"]["POST /v1/inventory_levels"] == 3
    assert [u["sku"] for u in updated] == [level["sku"] for level in levels]
    final = {level["sku"]: level["on_hand"] for level in levels}  # the last write of each sku wins
    assert {lv["sku"]: lv["on_hand"] for lv in sandbox.store.all("inventory_levels")} == final


def test_inventory_chunk_failure_says_what_was_applied(sandbox, make_client) -> None:
    client = make_client(sandbox)
    skus = [level["sku"] for level in sandbox.store.all("inventory_levels")]
    levels = [{"sku": skus[i % len(skus)], "on_hand": 1000 + i} for i in range(450)]
    levels[250] = {"sku": "NO-SUCH-SKU", "on_hand": 1}
    with pytest.raises(ValidationError) as caught:
        client.update_inventory_levels(levels)
    error = caught.value
    assert "inventory update chunk 2 of 3 (200 levels" in str(error)
    assert "1 earlier chunk(s) with 200 levels were already applied" in str(error)
    assert "SKU 'NO-SUCH-SKU' does not exist" in str(error)
    assert len(error.applied_levels) == 200 and "NO-SUCH-SKU" in error.failed_skus
    assert sandbox.stats()["by_path"]["POST /v1/inventory_levels"] == 2
    stored = {lv["sku"]: lv["on_hand"] for lv in sandbox.store.all("inventory_levels")}
    assert all(1000 <= stored[sku] < 1200 for sku in skus)  # chunk 1 applied, chunks 2 and 3 not


def test_inventory_bad_input_rejected_before_any_request(sandbox, make_client) -> None:
    client = make_client(sandbox)
    with pytest.raises(ValueError, match=r"inventory level 1 \(sku 'A'\) must set exactly one of"):
        client.update_inventory_levels(
            [{"sku": "B", "on_hand": 1}, {"sku": "A", "on_hand": 1, "available": 2}]
        )
    with pytest.raises(ValueError, match="inventory level 0 has no sku"):
        client.update_inventory_levels([{"on_hand": 1}])
    assert sandbox.stats()["requests"] == 0


def test_configuration_errors_name_the_variable(throttle_db) -> None:
    base = {"api_url": "http://127.0.0.1:9/v1", "token_url": "http://127.0.0.1:9/oauth/token"}
    with pytest.raises(ConfigurationError, match="ORDERSPACE_CLIENT_ID"):
        OrderspaceClient(
            OrderspaceSettings(client_id=" ", client_secret="s", **base), throttle_db=str(throttle_db)
        )
    with pytest.raises(ConfigurationError, match="ORDERSPACE_CLIENT_SECRET"):
        OrderspaceClient(
            OrderspaceSettings(client_id="c", client_secret="", **base), throttle_db=str(throttle_db)
        )
    with pytest.raises(ConfigurationError, match="ORDERSPACE_API_URL must be an http"):
        # The settings model rejects the URL itself now (it was the client's check before).
        OrderspaceSettings(client_id="c", client_secret="s", api_url="ftp:/x", token_url=base["token_url"])


def test_stats_count_requests_like_the_server(sandbox, make_client) -> None:
    client = make_client(sandbox)
    list(client.list_orders(page_size=40))
    list(client.list_tax_rates())
    assert client.stats.requests == sandbox.stats()["requests"] == 5
    assert client.stats.retries == 0 and client.stats.rate_limited == 0
    assert client.stats.throttle_acquires == 5
    assert client.stats.token_requests == 1
