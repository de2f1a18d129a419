"""Bulk inventory updates: delta semantics, the 200 cap and validation that rejects the whole request."""

from __future__ import annotations

import pytest
from sandbox_test_helpers import is_bare_400

BOTH = (
    "On Hand and Available can not be updated at the same time because one is automatically calculated "
    "from the other"
)


def _levels(sandbox) -> dict[str, dict]:
    return {level["sku"]: level for level in sandbox.store.all("inventory_levels")}


def test_on_hand_change_moves_available_by_the_same_delta(sandbox, api):
    sku, level = next(iter(_levels(sandbox).items()))
    response = api.post(
        "inventory_levels", json={"inventory_levels": [{"sku": sku, "on_hand": level["on_hand"] + 7}]}
    )
    assert response.status_code == 200, response.text
    expected = {"sku": sku, "on_hand": level["on_hand"] + 7, "available": level["available"] + 7}
    assert response.json() == {"inventory_levels": [expected]}
    assert _levels(sandbox)[sku] == expected


def test_available_change_moves_on_hand_by_the_same_delta(sandbox, api):
    sku, level = list(_levels(sandbox).items())[3]
    response = api.post("inventory_levels", json={"inventory_levels": [{"sku": sku, "available": 0}]})
    assert response.status_code == 200
    delta = -level["available"]
    assert _levels(sandbox)[sku] == {"sku": sku, "on_hand": level["on_hand"] + delta, "available": 0}


def test_many_levels_at_once_in_request_order(sandbox, api):
    skus = list(_levels(sandbox))[:5][::-1]
    items = [{"sku": sku, "on_hand": 10 + i} for i, sku in enumerate(skus)]
    body = api.post("inventory_levels", json={"inventory_levels": items}).json()
    assert [(lv["sku"], lv["on_hand"]) for lv in body["inventory_levels"]] == [
        (i["sku"], i["on_hand"]) for i in items
    ]
    assert all(_levels(sandbox)[i["sku"]]["on_hand"] == i["on_hand"] for i in items)


def _rejected(sandbox, api, body) -> str:
    before = sandbox.store.all("inventory_levels")
    response = api.post("inventory_levels", json=body)
    assert response.status_code == 422, response.text
    assert sandbox.store.all("inventory_levels") == before
    return response.json()["message"]


def test_both_fields_is_a_422_with_the_documented_message(sandbox, api):
    sku = next(iter(_levels(sandbox)))
    assert _rejected(sandbox, api, {"inventory_levels": [{"sku": sku, "on_hand": 1, "available": 1}]}) == BOTH


def test_more_than_200_is_rejected(sandbox, api):
    sku = next(iter(_levels(sandbox)))
    message = _rejected(sandbox, api, {"inventory_levels": [{"sku": sku, "on_hand": 1}] * 201})
    assert "200" in message


def test_exactly_200_is_accepted(sandbox, api):
    sku = next(iter(_levels(sandbox)))
    response = api.post("inventory_levels", json={"inventory_levels": [{"sku": sku, "on_hand": 3}] * 200})
    assert response.status_code == 200
    assert len(response.json()["inventory_levels"]) == 200


def test_unknown_sku_rejects_the_whole_request_naming_it(sandbox, api):
    known = next(iter(_levels(sandbox)))
    body = {"inventory_levels": [{"sku": known, "on_hand": 99}, {"sku": "NOPE-RED-10", "on_hand": 1}]}
    assert "NOPE-RED-10" in _rejected(sandbox, api, body)


@pytest.mark.parametrize("value", [-1, -0.5, "4", None, True])
def test_negative_or_non_numbers_are_rejected(sandbox, api, value):
    sku = next(iter(_levels(sandbox)))
    message = _rejected(sandbox, api, {"inventory_levels": [{"sku": sku, "on_hand": value}]})
    assert "on_hand" in message and sku in message


def test_decimal_levels_are_accepted_and_whole_floats_stored_whole(sandbox, api):
    sku = sorted(_levels(sandbox))[-1]
    response = api.post("inventory_levels", json={"inventory_levels": [{"sku": sku, "on_hand": 12.75}]})
    assert response.status_code == 200
    assert _levels(sandbox)[sku]["on_hand"] == 12.75

    sku = next(iter(_levels(sandbox)))
    response = api.post("inventory_levels", json={"inventory_levels": [{"sku": sku, "on_hand": 20.0}]})
    assert response.status_code == 200
    assert _levels(sandbox)[sku]["on_hand"] == 20


def test_neither_field_and_malformed_bodies(sandbox, api):
    sku = next(iter(_levels(sandbox)))
    assert "on_hand or available" in _rejected(sandbox, api, {"inventory_levels": [{"sku": sku}]})
    assert api.post("inventory_levels", json={"levels": []}).status_code == 400
    broken = api.post(
        "inventory_levels", content=b'{"inventory_levels": [', headers={"Content-Type": "application/json"}
    )
    assert is_bare_400(broken)
