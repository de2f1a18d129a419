"""Schema drift: extra and missing fields in list/get responses, has_more omitted; the store is untouched."""

from __future__ import annotations

import pytest


def test_extra_and_missing_fields_in_lists_and_gets(sandbox, api):
    sandbox.drift.set(
        "customers", extra_fields={"loyalty_tier": "gold"}, missing_fields=["phone", "reference"]
    )
    listed = api.get("customers", params={"limit": 3}).json()["customers"]
    assert all(c["loyalty_tier"] == "gold" and "phone" not in c and "reference" not in c for c in listed)
    one = api.get(f"customers/{listed[0]['id']}").json()["customer"]
    assert one["loyalty_tier"] == "gold" and "phone" not in one
    stored = sandbox.store.all("customers")[0]
    assert "phone" in stored and "loyalty_tier" not in stored
    assert "has_more" in api.get("customers").json()


def test_omit_has_more(sandbox, api):
    sandbox.drift.set("orders", omit_has_more=True)
    body = api.get("orders", params={"limit": 5}).json()
    assert "has_more" not in body and len(body["orders"]) == 5
    assert "has_more" in api.get("dispatches").json()


def test_drift_accumulates_and_clears(sandbox, api):
    sandbox.drift.set("products", extra_fields={"a": 1})
    sandbox.drift.set("products", extra_fields={"b": 2}, missing_fields=["tariff_code"])
    product = api.get("products", params={"limit": 1}).json()["products"][0]
    assert product["a"] == 1 and product["b"] == 2 and "tariff_code" not in product
    sandbox.drift.clear()
    product = api.get("products", params={"limit": 1}).json()["products"][0]
    assert "a" not in product and "tariff_code" in product


def test_drift_rejects_unknown_resources_and_bad_values(sandbox):
    with pytest.raises(ValueError, match="unknown resource"):
        sandbox.drift.set("widgets", extra_fields={"x": 1})
    with pytest.raises(ValueError, match="missing_fields"):
        sandbox.drift.set("orders", missing_fields="phone")
