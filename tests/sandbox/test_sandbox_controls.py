"""The /_sandbox/ HTTP controls, for processes that did not start the server, and concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sandbox_test_helpers import api_client, plain


def test_stats_and_reset(sandbox, api):
    api.get("orders")
    api.get("orders/or_nothere0")
    stats = plain.get(f"{sandbox.base_url}/_sandbox/stats").json()
    assert stats["requests"] == 2
    assert stats["by_path"] == {"GET /v1/orders": 1, "GET /v1/orders/{id}": 1}
    assert stats["by_status"] == {"200": 1, "404": 1}
    assert stats["tokens_issued"] == 1 and stats["max_in_window"] == 2
    assert plain.post(f"{sandbox.base_url}/_sandbox/reset-stats").json() == {"ok": True}
    assert sandbox.stats()["requests"] == 0
    assert sandbox.stats()["requests"] == 0  # control calls are not counted


def test_faults_over_http(sandbox, api):
    body = {"kind": "500_json", "count": 2, "path_prefix": "/v1/customers"}
    response = plain.post(f"{sandbox.base_url}/_sandbox/faults", json=body)
    assert response.status_code == 200
    assert response.json()["pending_faults"][0]["remaining"] == 2
    assert [api.get("customers").status_code for _ in range(3)] == [500, 500, 200]
    bad = plain.post(f"{sandbox.base_url}/_sandbox/faults", json={"kind": "kaboom"})
    assert bad.status_code == 400 and "kaboom" in bad.json()["message"]


def test_drift_over_http(sandbox, api):
    body = {
        "resource": "orders",
        "extra_fields": {"x": 1},
        "missing_fields": ["phone"],
        "omit_has_more": True,
    }
    assert plain.post(f"{sandbox.base_url}/_sandbox/drift", json=body).status_code == 200
    listed = api.get("orders").json()
    assert "has_more" not in listed and listed["orders"][0]["x"] == 1 and "phone" not in listed["orders"][0]
    assert plain.post(f"{sandbox.base_url}/_sandbox/drift/clear").status_code == 200
    assert "has_more" in api.get("orders").json()
    assert plain.post(f"{sandbox.base_url}/_sandbox/drift", json={"resource": "nope"}).status_code == 400


def test_revoke_tokens_and_records_over_http(sandbox, api):
    assert plain.post(f"{sandbox.base_url}/_sandbox/revoke-tokens").status_code == 200
    assert api.get("orders").status_code == 401
    records = plain.get(f"{sandbox.base_url}/_sandbox/records/orders").json()
    assert records == {"orders": sandbox.store.all("orders")}
    assert plain.get(f"{sandbox.base_url}/_sandbox/records/widgets").status_code == 404
    assert plain.get(f"{sandbox.base_url}/_sandbox/nothing").status_code == 404
    assert plain.get(f"{sandbox.base_url}/elsewhere").status_code == 404


def test_concurrent_clients_and_dispatches_stay_consistent(sandbox):
    open_orders = [o for o in sandbox.store.all("orders") if o["status"] in ("new", "released")][:8]

    def dispatch_all(order: dict) -> list[int]:
        with api_client(sandbox) as client:
            lines = [
                {"order_line_id": line["id"], "quantity": line["quantity"]}
                for line in order["order_lines"]
                if not line["shipping"]
            ]
            body = {"dispatch": {"order_id": order["id"], "dispatch_lines": lines}}
            # the same order dispatched twice in parallel: exactly one wins
            return [client.post("dispatches", json=body).status_code, client.get("orders").status_code]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(dispatch_all, open_orders + open_orders))
    assert sorted(code for code, _ in results) == [200] * 8 + [422] * 8
    assert all(listed == 200 for _, listed in results)
    assert all(sandbox.store.get("orders", o["id"])["status"] == "fulfilled" for o in open_orders)
