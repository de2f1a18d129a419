"""Dispatch business rules: fulfil, partial, stock moves, and the 422s."""

from __future__ import annotations

import pytest
from sandbox_test_helpers import is_bare_400


def _open_order(sandbox, *, goods_lines: int = 2) -> dict:
    """A recent, undispatched order with at least `goods_lines` product lines."""
    for order in sandbox.store.all("orders"):
        goods = [line for line in order["order_lines"] if not line["shipping"]]
        untouched = all(line["dispatched"] == 0 and line["quantity"] >= 2 for line in goods)
        if order["status"] in ("new", "released") and len(goods) >= goods_lines and untouched:
            return order
    pytest.fail("the tiny sandbox has no suitable open order")


def _levels(sandbox) -> dict[str, dict]:
    return {level["sku"]: level for level in sandbox.store.all("inventory_levels")}


def _goods(order: dict) -> list[dict]:
    return [line for line in order["order_lines"] if not line["shipping"]]


def test_dispatching_every_line_fulfils_the_order_and_reduces_stock(sandbox, api):
    order = _open_order(sandbox)
    before = _levels(sandbox)
    lines = [{"sku": line["sku"], "quantity": line["quantity"]} for line in _goods(order)]
    response = api.post(
        "dispatches",
        json={"dispatch": {"order_id": order["id"], "comments": "DPD 123", "dispatch_lines": lines}},
    )
    assert response.status_code == 200, response.text
    dispatch = response.json()["dispatch"]
    assert dispatch["id"].startswith("di_")
    assert dispatch["order_id"] == order["id"]
    assert dispatch["order_number"] == order["number"]
    assert dispatch["comments"] == "DPD 123"
    assert dispatch["shipping_address"] == order["shipping_address"]
    assert {(d["order_line_id"], d["sku"], d["quantity"]) for d in dispatch["dispatch_lines"]} == {
        (line["id"], line["sku"], line["quantity"]) for line in _goods(order)
    }
    after_order = sandbox.store.get("orders", order["id"])
    assert after_order["status"] == "fulfilled"
    assert all(line["dispatched"] == line["quantity"] for line in _goods(after_order))
    after = _levels(sandbox)
    for line in _goods(order):
        assert after[line["sku"]]["on_hand"] == before[line["sku"]]["on_hand"] - line["quantity"]
        assert after[line["sku"]]["available"] == before[line["sku"]]["available"] - line["quantity"]
    assert api.get(f"dispatches/{dispatch['id']}").json()["dispatch"] == dispatch
    assert api.get("dispatches", params={"limit": 1}).json()["dispatches"][0]["id"] == dispatch["id"]


def test_partial_dispatch_then_the_rest(sandbox, api):
    order = _open_order(sandbox)
    first, second = _goods(order)[:2]
    response = api.post(
        "dispatches",
        json={
            "dispatch": {
                "order_id": order["id"],
                "dispatch_lines": [{"order_line_id": first["id"], "quantity": 1}],
            }
        },
    )
    assert response.status_code == 200, response.text
    partly = sandbox.store.get("orders", order["id"])
    assert partly["status"] == "part_fulfilled"
    assert next(line for line in partly["order_lines"] if line["id"] == first["id"])["dispatched"] == 1
    rest = [
        {"sku": line["sku"], "quantity": line["quantity"] - (1 if line["id"] == first["id"] else 0)}
        for line in _goods(order)
    ]
    assert second["sku"] in {r["sku"] for r in rest}
    response = api.post("dispatches", json={"dispatch": {"order_id": order["id"], "dispatch_lines": rest}})
    assert response.status_code == 200, response.text
    assert sandbox.store.get("orders", order["id"])["status"] == "fulfilled"


def test_dispatching_a_fulfilled_order_is_a_422_with_the_documented_message(sandbox, api):
    fulfilled = next(o for o in sandbox.store.all("orders") if o["status"] == "fulfilled")
    line = _goods(fulfilled)[0]
    response = api.post(
        "dispatches",
        json={
            "dispatch": {"order_id": fulfilled["id"], "dispatch_lines": [{"sku": line["sku"], "quantity": 1}]}
        },
    )
    assert response.status_code == 422
    assert response.json() == {"message": "The order has already been fulfilled"}


def _dispatch_rejected(sandbox, api, body: dict) -> str:
    before_orders = sandbox.store.all("orders")
    before_levels = sandbox.store.all("inventory_levels")
    before_dispatches = len(sandbox.store.all("dispatches"))
    response = api.post("dispatches", json=body)
    assert response.status_code == 422, response.text
    # nothing half-applied
    assert sandbox.store.all("orders") == before_orders
    assert sandbox.store.all("inventory_levels") == before_levels
    assert len(sandbox.store.all("dispatches")) == before_dispatches
    return response.json()["message"]


def test_over_quantity_is_rejected_and_nothing_changes(sandbox, api):
    order = _open_order(sandbox)
    first, second = _goods(order)[:2]
    lines = [{"sku": first["sku"], "quantity": 1}, {"sku": second["sku"], "quantity": second["quantity"] + 1}]
    message = _dispatch_rejected(
        sandbox, api, {"dispatch": {"order_id": order["id"], "dispatch_lines": lines}}
    )
    assert second["sku"] in message
    assert "outstanding" in message


def test_sku_not_on_the_order_is_rejected(sandbox, api):
    order = _open_order(sandbox)
    other = next(sku for sku in (lv["sku"] for lv in sandbox.store.all("inventory_levels"))
                 if sku not in {line["sku"] for line in order["order_lines"]})  # fmt: skip
    body = {"dispatch": {"order_id": order["id"], "dispatch_lines": [{"sku": other, "quantity": 1}]}}
    assert other in _dispatch_rejected(sandbox, api, body)


def test_unknown_order_and_bad_quantities_are_rejected(sandbox, api):
    body = {"dispatch": {"order_id": "or_nothere0", "dispatch_lines": [{"sku": "X", "quantity": 1}]}}
    assert "or_nothere0" in _dispatch_rejected(sandbox, api, body)
    order = _open_order(sandbox)
    sku = _goods(order)[0]["sku"]
    for quantity in (0, -2, "3", None, True):  # decimals are fine: quantities are numbers
        body = {"dispatch": {"order_id": order["id"], "dispatch_lines": [{"sku": sku, "quantity": quantity}]}}
        assert "quantity" in _dispatch_rejected(sandbox, api, body)
    body = {"dispatch": {"order_id": order["id"], "dispatch_lines": []}}
    assert "Dispatch lines" in _dispatch_rejected(sandbox, api, body)


def test_cancelled_orders_cannot_be_dispatched(sandbox, api):
    cancelled = next(o for o in sandbox.store.all("orders") if o["status"] == "cancelled")
    line = _goods(cancelled)[0]
    body = {
        "dispatch": {"order_id": cancelled["id"], "dispatch_lines": [{"sku": line["sku"], "quantity": 1}]}
    }
    assert "cancelled" in _dispatch_rejected(sandbox, api, body)


def test_a_body_without_the_dispatch_object_is_a_400(api):
    assert is_bare_400(api.post("dispatches", json={"order_id": "or_x"}))
