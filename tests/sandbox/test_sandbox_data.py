"""The generated account: deterministic, consistent, in the reference's shapes."""

from __future__ import annotations

import itertools
import re
import time
from collections import defaultdict
from datetime import date

import pytest

from orderspace_sandbox import SANDBOX_RESOURCES, Store
from orderspace_sandbox.store import DISPATCHABLE, ORDER_STATUSES

ID = re.compile(r"^[a-z]{2}_[a-z0-9]{8}$")


@pytest.fixture(scope="module")
def store() -> Store:
    return Store(seed=42, scale="tiny", end_date=date(2026, 11, 20))


def test_same_seed_same_account_other_seed_other_account():
    first = Store(7, "tiny", date(2026, 11, 20))
    again = Store(7, "tiny", date(2026, 11, 20))
    other = Store(8, "tiny", date(2026, 11, 20))
    for resource in SANDBOX_RESOURCES:
        assert first.all(resource) == again.all(resource), resource
    assert first.all("orders") != other.all("orders")


def test_tiny_scale_sizes(store):
    assert len(store.all("customers")) == 12
    assert len(store.all("products")) == 10
    assert len(store.all("orders")) == 150
    assert len(store.all("inventory_levels")) == sum(
        len(p["product_variants"]) for p in store.all("products")
    )
    for resource in SANDBOX_RESOURCES:
        if resource != "inventory_levels":
            assert store.all(resource), resource
    days = {o["created"][:10] for o in store.all("orders")}
    assert max(days) == "2026-11-20" and min(days) >= "2026-09-22"


def test_ids_are_prefixed_unique_and_well_formed(store):
    prefixes = {
        "customers": "cu", "orders": "or", "dispatches": "di", "products": "pr", "invoices": "iv",
        "categories": "ca", "customer_groups": "cg", "price_lists": "pl", "payment_terms": "pt",
        "tax_rates": "tr", "preorder_windows": "pw", "webhooks": "wh",
    }  # fmt: skip
    seen: set[str] = set()
    for resource, prefix in prefixes.items():
        for record in store.all(resource):
            assert ID.match(record["id"]) and record["id"].startswith(prefix + "_"), record["id"]
            seen.add(record["id"])
    line_ids = [line["id"] for o in store.all("orders") for line in o["order_lines"]]
    variant_ids = [v["id"] for p in store.all("products") for v in p["product_variants"]]
    assert all(i.startswith("ol_") for i in line_ids) and all(i.startswith("pv_") for i in variant_ids)
    everything = [*seen, *line_ids, *variant_ids]
    assert len(everything) == len(set(everything))


def test_order_totals_match_their_lines(store):
    for order in store.all("orders"):
        lines = order["order_lines"]
        assert lines
        for line in lines:
            assert line["sub_total"] == pytest.approx(line["quantity"] * line["unit_price"], abs=0.005)
            assert line["tax_amount"] == pytest.approx(line["sub_total"] * line["tax_rate"] / 100, abs=0.005)
        assert order["net_total"] == pytest.approx(sum(line["sub_total"] for line in lines), abs=0.005)
        taxes = sum(line["tax_amount"] for line in lines)
        assert order["gross_total"] == pytest.approx(order["net_total"] + taxes, abs=0.005)


def test_dispatched_counts_and_statuses_match_the_dispatches(store):
    dispatched: dict[str, float] = defaultdict(int)
    orders = {o["id"]: o for o in store.all("orders")}
    for dispatch in store.all("dispatches"):
        order = orders[dispatch["order_id"]]
        assert dispatch["order_number"] == order["number"]
        assert dispatch["created"] > order["created"]
        for line in dispatch["dispatch_lines"]:
            dispatched[line["order_line_id"]] += line["quantity"]
    statuses = set()
    for order in orders.values():
        goods = [line for line in order["order_lines"] if not line["shipping"]]
        for line in order["order_lines"]:
            assert line["dispatched"] == pytest.approx(dispatched.get(line["id"], 0))
            assert line["dispatched"] <= line["quantity"]
        full = all(line["dispatched"] == line["quantity"] for line in goods)
        some = any(line["dispatched"] for line in goods)
        expected = "fulfilled" if full else "part_fulfilled" if some else order["status"]
        assert order["status"] == expected
        if not some:
            assert order["status"] not in ("fulfilled", "part_fulfilled")
        statuses.add(order["status"])
    assert {"new", "fulfilled", "part_fulfilled", "cancelled"} <= statuses
    assert statuses <= set(ORDER_STATUSES)


def test_small_scale_uses_every_documented_status_in_sensible_proportions():
    orders = Store(42, "small", date(2026, 11, 20)).all("orders")
    counts = {status: sum(o["status"] == status for o in orders) for status in ORDER_STATUSES}
    assert all(counts.values()), counts
    assert counts["fulfilled"] > len(orders) / 2  # a year of trading: most orders long sent
    assert counts["cancelled"] < len(orders) / 10 and counts["standing_order"] < len(orders) / 10
    templates = {o["id"] for o in orders if o["status"] == "standing_order"}
    repeats = [o for o in orders if o["standing_order_id"]]
    assert repeats and all(o["standing_order_id"] in templates for o in repeats)
    for order in orders:
        if order["status"] == "preorder":
            assert all(line["preorder_window_id"] for line in order["order_lines"] if not line["shipping"])


def test_the_newest_orders_are_left_open_for_the_push_side(store):
    newest = store.all("orders")[:15]  # newest first: the last 10% of 150
    assert all(o["status"] in (*DISPATCHABLE, "standing_order") for o in newest)
    assert sum(o["status"] in DISPATCHABLE for o in newest) >= 12
    assert not any(line["dispatched"] for o in newest for line in o["order_lines"])


def test_invoices_match_their_orders(store):
    orders = {o["id"]: o for o in store.all("orders")}
    invoices = store.all("invoices")
    assert len(invoices) > 0.7 * len(orders)
    for invoice in invoices:
        order = orders[invoice["orders"][0]["id"]]
        assert invoice["currency"] == order["currency"]
        assert [(i["sku"], i["quantity"], i["sub_total"]) for i in invoice["invoice_lines"]] == [
            (line["sku"], line["quantity"], line["sub_total"]) for line in order["order_lines"]
        ]
        assert invoice["net_total"] == pytest.approx(
            sum(i["sub_total"] for i in invoice["invoice_lines"]), abs=0.005
        )
        taxes = sum(i["tax_amount"] for i in invoice["invoice_lines"])
        assert invoice["gross_total"] == pytest.approx(invoice["net_total"] + taxes, abs=0.005)
        if invoice["paid"]:
            paid = sum(p["amount"] for p in invoice["payments"])
            assert paid == pytest.approx(invoice["gross_total"], abs=0.005)
        else:
            assert invoice["payments"] == []
    created = store.created_times("invoices")
    times = [created[i["id"]] for i in invoices]
    assert times == sorted(times, reverse=True)  # newest first == creation order (not invoice_date order)


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_some_invoices_are_back_dated_and_some_forward_dated_by_weeks(scale):
    account = Store(42, scale, date(2026, 11, 20))
    created = account.created_times("invoices")
    shifts = [
        (date.fromisoformat(i["invoice_date"]) - date(*time.gmtime(created[i["id"]])[:3])).days
        for i in account.all("invoices")
    ]
    back, forward = sum(s <= -14 for s in shifts), sum(s >= 14 for s in shifts)
    assert back >= 2 and forward >= 2
    assert back + forward < len(shifts) / 10  # the exception, not the rule


def test_creation_times_strictly_increase(store):
    for resource, field in [("orders", "created"), ("customers", "created"), ("dispatches", "created")]:
        times = [r[field] for r in store.all(resource)][::-1]
        assert all(a < b for a, b in itertools.pairwise(times)), resource


def test_shapes_follow_the_reference(store):
    order = store.all("orders")[0]
    expected = {"id", "number", "created", "status", "customer_id", "order_lines", "shipping_address",
                "billing_address", "email_addresses", "net_total", "gross_total", "currency"}  # fmt: skip
    assert expected <= set(order)
    line = order["order_lines"][0]
    assert {"id", "sku", "grouping_category", "dispatched", "invoiced", "paid", "tax_rate_id"} <= set(line)
    customer = store.all("customers")[0]
    assert {"created", "buyers", "addresses", "email_addresses", "price_list_id"} <= set(customer)
    assert "created_at" not in customer and "internal_note" not in customer
    product = store.all("products")[0]
    variant = product["product_variants"][0]
    assert re.match(r"^[A-Z]{2}\d{2}-[A-Z]{3}-\w+$", variant["sku"])
    assert set(variant["options"]) == {"Colour", "Size"}
    assert {"id", "unit_price"} == set(variant["price_list_prices"][0])
    invoice = store.all("invoices")[0]
    assert "created" not in invoice and "invoice_date" in invoice
    assert {"orders", "invoice_lines", "payments", "deposit", "address"} <= set(invoice)
    dispatch = store.all("dispatches")[0]
    assert {"order_line_id", "sku", "name", "options", "quantity"} == set(dispatch["dispatch_lines"][0])
    level = store.all("inventory_levels")[0]
    assert set(level) == {"sku", "on_hand", "available"}
    assert "deposit_pecentage" in store.all("payment_terms")[0]  # the reference's spelling


def test_end_date_moves_the_data():
    later = Store(42, "tiny", date(2027, 1, 31))
    assert later.all("orders")[0]["created"][:10] == "2027-01-31"


def test_store_all_returns_copies(store):
    orders = store.all("orders")
    orders[0]["status"] = "tampered"
    assert store.all("orders")[0]["status"] != "tampered"


def test_small_scale_sizes():
    small = Store(42, "small", date(2026, 11, 20))
    assert len(small.all("customers")) == 100
    assert len(small.all("orders")) == 1500
    days = {o["created"][:10] for o in small.all("orders")}
    assert min(days) >= "2025-11-21"
