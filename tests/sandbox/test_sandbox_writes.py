"""Create/update endpoints for customers, orders, products and webhooks; 404s and malformed JSON."""

from __future__ import annotations

import pytest
from sandbox_test_helpers import is_bare_400

NEW_CUSTOMER = {
    "company_name": "Test Sky Ltd",
    "buyers": [{"name": "Ada Test", "email_address": "ada@testsky.example.com"}],
    "email_addresses": {
        "orders": "o@testsky.example.com",
        "dispatches": "d@x.example",
        "invoices": "i@x.example",
    },
    "addresses": [{"company_name": "Test Sky Ltd", "line1": "1 Test Lane", "city": "Bath", "country": "GB"}],
    "minimum_spend": 100.0,
}


def test_create_get_and_update_a_customer(sandbox, api):
    response = api.post("customers", json={"customer": NEW_CUSTOMER})
    assert response.status_code == 200, response.text
    customer = response.json()["customer"]
    assert customer["id"].startswith("cu_") and customer["status"] == "active"
    assert customer["created"] > sandbox.store.all("customers")[1]["created"]
    assert api.get("customers", params={"limit": 1}).json()["customers"][0]["id"] == customer["id"]
    updated = api.put(f"customers/{customer['id']}", json={"customer": {"phone": "0123"}}).json()["customer"]
    assert updated["phone"] == "0123" and updated["company_name"] == "Test Sky Ltd"
    assert api.get(f"customers/{customer['id']}").json()["customer"] == updated


def test_customer_validation(api):
    assert api.post("customers", json={"customer": {"company_name": ""}}).status_code == 422
    api.post("customers", json={"customer": NEW_CUSTOMER})
    duplicate = api.post("customers", json={"customer": NEW_CUSTOMER | {"company_name": "Other"}})
    assert duplicate.status_code == 422
    assert duplicate.json()["message"] == "Validation failed: Email address has already been taken"
    bad_terms = api.post(
        "customers", json={"customer": {"company_name": "X", "payment_terms_id": "pt_nothere0"}}
    )
    assert bad_terms.status_code == 422 and "pt_nothere0" in bad_terms.json()["message"]
    assert api.put("customers/cu_nothere0", json={"customer": {"phone": "1"}}).status_code == 404


def test_create_an_order_gets_the_next_number_and_consistent_totals(sandbox, api):
    customer = sandbox.store.all("customers")[0]
    sku = sandbox.store.all("inventory_levels")[0]["sku"]
    highest = max(o["number"] for o in sandbox.store.all("orders"))
    body = {
        "order": {
            "customer_id": customer["id"],
            "delivery_date": "2026-12-01",
            "order_lines": [
                {"sku": sku, "quantity": 3},
                {"name": "Gift wrap", "quantity": 2, "unit_price": 1.25},
                {"name": "Special Delivery", "unit_price": 4.9, "shipping": True},
            ],
        }
    }
    response = api.post("orders", json=body)
    assert response.status_code == 200, response.text
    order = response.json()["order"]
    assert order["number"] == highest + 1 and order["status"] == "new"
    assert order["shipping_type"] == "Special Delivery"
    lines = order["order_lines"]
    assert [line["sku"] for line in lines] == [sku, "", ""]
    assert all(line["id"].startswith("ol_") and line["dispatched"] == 0 for line in lines)
    assert order["net_total"] == pytest.approx(sum(line["sub_total"] for line in lines), abs=0.005)
    assert order["gross_total"] == pytest.approx(
        order["net_total"] + sum(line["tax_amount"] for line in lines), abs=0.005
    )
    assert api.get("orders", params={"limit": 1}).json()["orders"][0]["id"] == order["id"]
    # ... and it can be dispatched: the custom item (no SKU) by its order line id
    sent = [{"sku": sku, "quantity": 3}, {"order_line_id": lines[1]["id"], "quantity": 2}]
    dispatch = {"dispatch": {"order_id": order["id"], "dispatch_lines": sent}}
    assert api.post("dispatches", json=dispatch).status_code == 200
    assert api.get(f"orders/{order['id']}").json()["order"]["status"] == "fulfilled"


def test_order_with_unknown_skus_names_them(sandbox, api):
    customer = sandbox.store.all("customers")[0]
    lines = [{"sku": "GONE-1", "quantity": 1}, {"sku": "GONE-2", "quantity": 1}]
    response = api.post("orders", json={"order": {"customer_id": customer["id"], "order_lines": lines}})
    assert response.status_code == 422
    assert response.json()["message"] == "GONE-1 - No longer available,GONE-2 - No longer available"
    missing_customer = api.post("orders", json={"order": {"order_lines": lines}})
    assert missing_customer.status_code == 422 and "customer" in missing_customer.json()["message"].lower()


def test_create_and_update_a_product_adds_inventory(sandbox, api):
    category = sandbox.store.all("categories")[0]
    body = {
        "product": {
            "code": "ZZ01",
            "name": "Zelda Dress",
            "variant_options": ["Colour", "Size"],
            "product_variants": [
                {"sku": "ZZ01-RED-10", "options": {"Colour": "Red", "Size": "10"}, "unit_price": 30.0},
                {"sku": "ZZ01-RED-12", "options": {"Colour": "Red", "Size": "12"}, "unit_price": 30.0},
            ],
            "categories": [{"id": category["id"]}],
            "grouping_category_id": category["id"],
        }
    }
    response = api.post("products", json=body)
    assert response.status_code == 200, response.text
    product = response.json()["product"]
    assert product["categories"] == [{"id": category["id"], "name": category["name"]}]
    assert all(v["id"].startswith("pv_") for v in product["product_variants"])
    levels = {lv["sku"]: lv for lv in sandbox.store.all("inventory_levels")}
    assert levels["ZZ01-RED-10"] == {"sku": "ZZ01-RED-10", "on_hand": 0, "available": 0}
    duplicate = api.post("products", json=body).json()["message"]
    assert duplicate.startswith("Validation failed: Product Code must be unique")
    assert "ZZ01-RED-10" in duplicate
    variant = product["product_variants"][0]
    update = {
        "product": {
            "name": "Zelda Midi Dress",
            "product_variants": [{"id": variant["id"], "unit_price": 33.0}],
        }
    }
    updated = api.put(f"products/{product['id']}", json=update).json()["product"]
    assert updated["name"] == "Zelda Midi Dress"
    assert updated["product_variants"][0]["unit_price"] == 33.0
    assert len(updated["product_variants"]) == 2
    taken = {"product": {"product_variants": [{"sku": sandbox.store.all("inventory_levels")[0]["sku"]}]}}
    assert "already been taken" in api.put(f"products/{product['id']}", json=taken).json()["message"]


def test_webhooks_crud(api):
    created = api.post(
        "webhooks", json={"webhook": {"endpoint": "https://example.com/hook", "events": ["order.created"]}}
    ).json()["webhook"]
    assert created["id"].startswith("wh_") and len(created["signing_key"]) == 40
    assert api.get("webhooks").json()["webhooks"][-1]["id"] == created["id"]
    changed = api.put(f"webhooks/{created['id']}", json={"webhook": {"events": ["invoice.created"]}}).json()
    assert changed["webhook"]["events"] == ["invoice.created"]
    assert api.delete(f"webhooks/{created['id']}").json() == {
        "webhook": {"id": created["id"], "deleted": True}
    }
    assert api.get(f"webhooks/{created['id']}").status_code == 404
    bad = api.post("webhooks", json={"webhook": {"endpoint": "http://plain", "events": ["order.created"]}})
    assert bad.status_code == 422 and "https" in bad.json()["message"]


def test_unknown_ids_paths_and_methods(api):
    missing = api.get("orders/or_nothere0")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Couldn't find order with id or_nothere0"}
    for unknown in (api.get("widgets"), api.get("tax_rates/tr_x"), api.delete("dispatches/di_x")):
        assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
        assert b"Not Found" in unknown.content
    assert api.delete("orders/or_nothere0").status_code == 404  # routed now: DELETE is documented
    malformed = api.post("orders", content=b"{nope", headers={"Content-Type": "application/json"})
    assert is_bare_400(malformed)
    assert api.post("orders", json={"orders": {}}).status_code == 400
