"""Activity mode: random business changes through the store's own methods (the API's code paths), so webhooks
flow and a later reconcile has something to find.

Deterministic per seed: the same seed and the same number of changes, from the same starting account, make
the same changes (ids included, since the store draws them from its own seeded generator). The mix (weights
below) is a guess at a wholesale brand's day: mostly new orders, invoices, payments and dispatches, some
status changes and edits, occasional deletions.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from orderspace_sandbox.store import DISPATCHABLE, ApiError, Store

# (kind, weight): the mix of changes.
MIX: list[tuple[str, int]] = [
    ("order.create", 20),
    ("order.status", 10),
    ("invoice.create", 12),
    ("payment.create", 12),
    ("dispatch.create", 12),
    ("inventory.update", 12),
    ("product.update", 6),
    ("customer.update", 6),
    ("customer.create", 3),
    ("order.delete", 3),
    ("invoice.delete", 2),
    ("product.delete", 1),
    ("customer.delete", 1),
]


class Activity:
    """Makes one random change per `step()`; `start(per_minute)` runs steps from a background thread."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.rng = random.Random(f"activity-{seed}")
        self.changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()

    def step(self) -> dict[str, Any]:
        """One change: `{"kind": ..., "id": ...}`; falls back to another kind when one has no candidate."""
        with self._step_lock, self.store.lock:
            kinds, weights = zip(*MIX, strict=True)
            first = self.rng.choices(kinds, weights)[0]
            for kind in [first, "order.create", "inventory.update"]:
                try:
                    record_id = self._actions()[kind]()
                except (ApiError, IndexError):
                    continue
                if record_id is not None:
                    self.changes += 1
                    return {"kind": kind, "id": record_id}
            raise RuntimeError("activity found nothing to change")  # only on an emptied account

    def run(self, count: int) -> list[dict[str, Any]]:
        return [self.step() for _ in range(count)]

    def start(self, per_minute: float) -> None:
        """Make `per_minute` changes a minute, evenly spaced, until `stop()`."""
        if per_minute <= 0 or self._thread is not None:
            return
        interval = 60.0 / per_minute

        def loop() -> None:
            while not self._stop.wait(interval):
                self.step()

        self._thread = threading.Thread(target=loop, name="sandbox-activity", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the changes -----------------------------------------------------------------------------

    def _actions(self) -> dict[str, Callable[[], str | None]]:
        return {
            "order.create": self._new_order,
            "order.status": self._order_status,
            "invoice.create": self._invoice,
            "payment.create": self._payment,
            "dispatch.create": self._dispatch,
            "inventory.update": self._inventory,
            "product.update": self._product_edit,
            "customer.update": self._customer_edit,
            "customer.create": self._new_customer,
            "order.delete": lambda: self._delete("orders", lambda o: o["status"] in ("new", "cancelled")),
            "invoice.delete": lambda: self._delete("invoices", lambda i: not i["paid"]),
            "product.delete": lambda: self._delete("products", lambda p: True),
            "customer.delete": lambda: self._delete("customers", lambda c: True),
        }

    def _records(self, resource: str) -> list[dict[str, Any]]:
        return self.store._collection(resource).records

    def _new_order(self) -> str:
        customers = [c for c in self._records("customers") if c["status"] == "active"]
        skus = [v["sku"] for p in self._records("products") if p["active"] for v in p["product_variants"]]
        customer = self.rng.choice(customers)
        lines = [
            {"sku": sku, "quantity": self.rng.randint(1, 6)}
            for sku in self.rng.sample(skus, min(len(skus), self.rng.randint(1, 4)))
        ]
        order = self.store.create_order({"order": {"customer_id": customer["id"], "order_lines": lines}})
        return str(order["id"])

    def _order_status(self) -> str | None:
        open_orders = [o for o in self._records("orders") if o["status"] in ("new", "invoiced", "preorder")]
        order = self.rng.choice(open_orders)
        status = self.rng.choice(["released", "cancelled"] if order["status"] != "new" else ["released"])
        return str(self.store.update_order_status(order["id"], status)["id"])

    def _invoice(self) -> str:
        invoiced = {ref["id"] for i in self._records("invoices") for ref in i["orders"]}
        candidates = [
            o
            for o in self._records("orders")
            if o["id"] not in invoiced and o["status"] not in ("cancelled", "standing_order")
        ]
        return str(self.store.create_invoice(self.rng.choice(candidates)["id"])["id"])

    def _payment(self) -> str:
        unpaid = [i for i in self._records("invoices") if not i["paid"] and not i["proforma"]]
        invoice = self.rng.choice(unpaid)
        owed = invoice["gross_total"] - sum(p["amount"] for p in invoice["payments"])
        amount = None if self.rng.random() < 0.7 else round(owed / 2, 2)
        self.store.create_payment(invoice["id"], amount)
        return str(invoice["id"])

    def _dispatch(self) -> str:
        orders = [o for o in self._records("orders") if o["status"] in DISPATCHABLE]
        order = self.rng.choice(orders)
        goods = [line for line in order["order_lines"] if not line["shipping"]]
        lines = [
            {"order_line_id": line["id"], "quantity": line["quantity"] - line["dispatched"]}
            for line in goods
            if line["quantity"] > line["dispatched"]
        ]
        dispatch = self.store.create_dispatch(
            {"dispatch": {"order_id": order["id"], "dispatch_lines": lines}}
        )
        return str(dispatch["id"])

    def _inventory(self) -> str:
        skus = self.store._skus
        chosen = self.rng.sample(skus, min(len(skus), self.rng.randint(1, 5)))
        self.store.update_inventory(
            {"inventory_levels": [{"sku": sku, "on_hand": self.rng.randint(0, 200)} for sku in chosen]}
        )
        return chosen[0]

    def _product_edit(self) -> str:
        product = self.rng.choice(self._records("products"))
        change = self.rng.choice(["description", "active"])
        value: Any = not product["active"]
        if change == "description":
            value = f"Edited {self.rng.randint(1, 9999)}"
        return str(self.store.update_product(product["id"], {"product": {change: value}})["id"])

    def _customer_edit(self) -> str:
        customer = self.rng.choice(self._records("customers"))
        phone = f"0{self.rng.randint(1000000000, 9999999999)}"
        return str(self.store.update_customer(customer["id"], {"customer": {"phone": phone}})["id"])

    def _new_customer(self) -> str:
        number = self.rng.randint(1000, 999999)
        customer = self.store.create_customer({"customer": {"company_name": f"Activity Customer {number}"}})
        return str(customer["id"])

    def _delete(self, resource: str, allowed: Callable[[dict[str, Any]], bool]) -> str:
        record = self.rng.choice([r for r in self._records(resource) if allowed(r)])
        self.store.delete(resource, record["id"])
        return str(record["id"])
