"""The in-memory account behind the sandbox: records in API shape, list pagination and the business rules.

One lock guards everything. Handlers call the store's methods, which take the lock, and serialise responses
while holding it (`render_*`), so a reader never sees a record half-way through a dispatch.

Facts from the reference's source (jgarlick/apidocs, includes/models/_*.html.md) and the recorded real
responses (ecomba/orderspace-ruby, spec/fixtures/responses.http): `limit` default 50, maximum 200; each
list's filters (see `page`); the order statuses; quantities and stock levels are numbers (may be decimal);
DELETE on customers, orders, invoices, products, categories, price lists and webhooks answers
`{"<singular>": {"id": ..., "deleted": true}}`; customers carry `created` and no `internal_note`.

Choices where they are silent (all documented here, the tests pin them):
- a `limit` above 200 is clamped to 200; `limit` < 1 or not a number -> 400 (empty body, as every 400);
- `starting_after` naming no record of that list -> 400 (inventory: a SKU that does not exist);
- the bounds of each filter (inclusive / exclusive): see `_time_param` and `Store._filters`;
- a filter value that cannot be parsed (a date that is not a date, `paid=yes`, an unknown status) -> 400;
- `created_since` compares each record's creation time, hidden where the record has no such field
  (invoices: not their `invoice_date`; products, inventory levels, webhooks); categories ignore it;
- dispatching reduces both `on_hand` and `available` of each SKU and may take them below zero (backorders);
- an order can be dispatched while `new`, `invoiced`, `released`, `part_fulfilled` or `preorder`
  (`DISPATCHABLE`); `fulfilled`, `cancelled` and `standing_order` (a template) are refused with a 422;
- deleting is a hard delete with no cascade, except what cannot exist alone: a product's inventory levels go
  with it; a deleted category leaves products' category lists, a deleted price list leaves customers and
  variant prices (those products count as updated);
- the invoices list has no `has_more`, as in the reference (the real API's drift); webhooks are one
  unpaginated list (the recorded list_webhooks response has no `has_more`); other paginated lists have it.
"""

from __future__ import annotations

import calendar
import copy
import json
import math
import re
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from orderspace_sandbox.data import (
    WEBHOOK_EVENTS,
    dispatch_record,
    generate_account,
    iso_time,
    money,
    order_line_record,
)

# Resources in the store, with the singular key of their get/create/update responses.
SANDBOX_SINGULAR = {
    "customers": "customer",
    "orders": "order",
    "dispatches": "dispatch",
    "products": "product",
    "inventory_levels": "inventory_level",
    "invoices": "invoice",
    "categories": "category",
    "customer_groups": "customer_group",
    "price_lists": "price_list",
    "payment_terms": "payment_terms",
    "tax_rates": "tax_rate",
    "preorder_windows": "preorder_window",
    "webhooks": "webhook",
}
SANDBOX_RESOURCES = tuple(SANDBOX_SINGULAR)
NEWEST_FIRST = ("customers", "orders", "dispatches", "products", "invoices")
UNPAGINATED = ("customer_groups", "price_lists", "payment_terms", "tax_rates", "preorder_windows", "webhooks")
WITHOUT_HAS_MORE = ("invoices",)
CREATED_BEFORE = ("orders", "dispatches")  # the lists that document `created_before`
DEFAULT_PAGE_SIZE = 50  # documented on every paginated list: "The default is 50 and the maximum limit is 200"
MAX_PAGE_SIZE = 200
ORDER_STATUSES = (
    "new", "invoiced", "released", "part_fulfilled", "preorder", "fulfilled", "standing_order", "cancelled",
)  # fmt: skip
CUSTOMER_STATUSES = ("new", "active", "closed")
# A sandbox concession when switched on (the real API wants https): plain http for a receiver on this machine.
LOOPBACK_HTTP = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)")
# What a `<resource>.deleted` event carries (the documented examples), for the resources that have one.
DELETED_IDENTITY = {
    "orders": ("id", "number"),
    "invoices": ("id", "number"),
    "customers": ("id", "company_name"),
    "products": ("id", "code", "name"),
}
DELETABLE = ("customers", "orders", "invoices", "products", "categories", "price_lists", "webhooks")
DISPATCHABLE = ("new", "invoiced", "released", "part_fulfilled", "preorder")
# The recorded 404 bodies: "Couldn't find order with id 42", "Couldn't find a customer with ID cu_x". Other
# resources follow the order's wording (a guess).
NOT_FOUND = {"customers": "Couldn't find a customer with ID {id}"}
MAX_INVENTORY_UPDATE = 200
BOTH_LEVELS_MESSAGE = (
    "On Hand and Available can not be updated at the same time because one is automatically calculated "
    "from the other"
)


class ApiError(Exception):
    """An error answer: HTTP status and the `message` of its JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _whole(value: Any) -> int | None:
    """`value` as an int if it is a whole number (5 or 5.0, not True or "5"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _quantity(value: Any) -> float | None:
    """A quantity: a number greater than zero (decimals allowed: the API types quantities as numbers).
    Whole values stay ints (5.0 -> 5); decimals are rounded to 6 places against float noise."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return _tidy(number)


def _tidy(number: float) -> float:
    """An int when whole, else rounded to 6 decimal places (sums of decimal quantities stay clean)."""
    if isinstance(number, int):
        return number
    number = round(number, 6)
    return int(number) if number.is_integer() else number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_time(text: str) -> int:
    """A `*_since` / `*_before` time as epoch seconds: a date means its midnight UTC; a datetime without a
    zone is taken as UTC (a guess: the reference's examples, e.g. `2019-10-29T21:00`, carry none).
    ValueError if malformed."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return calendar.timegm(date.fromisoformat(text).timetuple())
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*", text):
        raise ValueError(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        return calendar.timegm(moment.timetuple())
    return int(moment.timestamp())


def _time_param(params: Mapping[str, str], name: str) -> int | None:
    """A time filter: `created_since` / `updated_since` keep records at or after it (inclusive: "since"),
    `created_before` keeps records strictly before it, so `since=D&before=D+1` is exactly day D with no
    overlap between consecutive days. The reference is silent on both ends; these are guesses."""
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise ApiError(
            400, f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 date and time, got {text!r}"
        ) from None


def _day_param(params: Mapping[str, str], name: str) -> str | None:
    """A date filter (YYYY-MM-DD, as documented), returned as its ISO text (which sorts like the date)."""
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError(text)
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ApiError(400, f"{name} must be a date (YYYY-MM-DD), got {text!r}") from None


def _bool_param(params: Mapping[str, str], name: str) -> bool | None:
    """`true` / `false`, as documented; anything else is a 400 (a guess)."""
    text = params.get(name)
    if text is None or text == "":
        return None
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    raise ApiError(400, f"{name} must be true or false, got {text!r}")


def _whole_param(params: Mapping[str, str], name: str) -> int:
    text = params[name]
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {text!r}") from None


def _body_object(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise ApiError(400, f"The request body must be a JSON object with a {key!r} object")
    return body[key]


class _Collection:
    """Records of one resource in creation order (oldest first), their creation times and an id index."""

    def __init__(self, records: list[dict[str, Any]], created: list[int]) -> None:
        self.records = records
        self.created = created
        self.position = {record["id"]: i for i, record in enumerate(records)}
        # Last change through the API (creation at first); hidden, as the records carry no such field.
        self.updated = {record["id"]: at for record, at in zip(records, created, strict=True)}

    def append(self, record: dict[str, Any], created: int) -> None:
        self.position[record["id"]] = len(self.records)
        self.records.append(record)
        self.created.append(created)
        self.updated[record["id"]] = created

    def remove(self, record_id: str) -> dict[str, Any]:
        index = self.position[record_id]
        record = self.records.pop(index)
        self.created.pop(index)
        self.updated.pop(record_id, None)
        self.position = {r["id"]: i for i, r in enumerate(self.records)}
        return record

    def get(self, record_id: str) -> dict[str, Any] | None:
        index = self.position.get(record_id)
        return None if index is None else self.records[index]


class Store:
    """The sandbox account. Thread-safe: every public method takes the store's lock."""

    def __init__(self, seed: int, scale: str, end_date: date, max_page_size: int = MAX_PAGE_SIZE) -> None:
        account, self._ids, self._rng = generate_account(seed, scale, end_date)
        self.lock = threading.RLock()
        self.max_page_size = max_page_size
        self._collections = {
            name: _Collection(account.records[name], account.created[name])
            for name in SANDBOX_RESOURCES
            if name != "inventory_levels"
        }
        self._inventory = account.inventory
        self._skus = sorted(self._inventory)
        self._next_order_number = account.next_order_number
        self._variant_by_sku: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for product in self._collections["products"].records:
            for variant in product["product_variants"]:
                self._variant_by_sku[variant["sku"]] = (product, variant)
        self._emails = {
            buyer.get("email_address")
            for customer in self._collections["customers"].records
            for buyer in customer.get("buyers") or []
        }
        # Hidden creation and last-change times of each inventory level (created_since / updated_since): a
        # level is created with its product; it last changed at the latest dispatch of its SKU, if any.
        products = self._collections["products"]
        self._level_created: dict[str, int] = {}
        for product, created in zip(products.records, products.created, strict=True):
            for variant in product["product_variants"]:
                self._level_created[variant["sku"]] = created
        self._level_updated = dict(self._level_created)
        dispatches = self._collections["dispatches"]
        for dispatch, created in zip(dispatches.records, dispatches.created, strict=True):
            for line in dispatch["dispatch_lines"]:
                if line["sku"] in self._level_updated:
                    self._level_updated[line["sku"]] = max(self._level_updated[line["sku"]], created)
        # Changes through the API are stamped no earlier than the generated history's end (end_date may be
        # ahead of the clock), so `updated_since` a moment before a change always finds it.
        self._history_end = max(
            [self._level_updated[s] for s in self._skus]
            + [c.created[-1] for c in self._collections.values() if c.created]
        )
        # Change feed: called with the lock held, once per change, with that change's webhook events in order
        # (`[{"event": ..., "data": {<singular>: record}}]`); set by the server's webhook dispatcher.
        self.on_events: Callable[[list[dict[str, Any]]], None] | None = None
        # Webhooks created or updated through the API in this run: only they receive deliveries (the seeded
        # ones point at fictional hosts).
        self.live_webhooks: set[str] = set()
        # Off by default, as the real API: endpoints must be https. On (`SandboxConfig.webhook_allow_http`),
        # plain http is accepted for a receiver on this machine.
        self.allow_http_loopback = False

    # --- reading ---------------------------------------------------------------------------------

    def all(self, resource: str) -> list[dict[str, Any]]:
        """Every record of `resource` in the list endpoint's order, as independent copies."""
        with self.lock:
            return json.loads(json.dumps(self._ordered(resource)))

    def count(self, resource: str) -> int:
        with self.lock:
            return (
                len(self._inventory)
                if resource == "inventory_levels"
                else len(self._collection(resource).records)
            )

    def get(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """One record by id (a copy), or None."""
        with self.lock:
            record = self._collection(resource).get(record_id)
            return None if record is None else copy.deepcopy(record)

    def _collection(self, resource: str) -> _Collection:
        if resource not in self._collections:
            raise KeyError(f"unknown resource {resource!r}; known: {', '.join(SANDBOX_RESOURCES)}")
        return self._collections[resource]

    def _ordered(self, resource: str) -> list[dict[str, Any]]:
        if resource == "inventory_levels":
            return [self._inventory[sku] for sku in self._skus]
        records = self._collection(resource).records
        return records[::-1] if resource in NEWEST_FIRST else list(records)

    def find(self, resource: str, record_id: str) -> dict[str, Any]:
        """The stored record (not a copy; call with the lock held) or a 404."""
        record = self._collection(resource).get(record_id)
        if record is None:
            template = NOT_FOUND.get(
                resource, "Couldn't find " + SANDBOX_SINGULAR[resource].replace("_", " ") + " with id {id}"
            )
            raise ApiError(404, template.format(id=record_id))
        return record

    def page(self, resource: str, params: Mapping[str, str]) -> tuple[list[dict[str, Any]], bool | None]:
        """One page of a list endpoint: (records, has_more); has_more is None where the list has none.

        `params` are the query parameters (last value of each). Unknown parameters are ignored; a malformed
        value of a known one is a 400 (empty body, as the real API's). Call with the lock held and serialise
        the records before releasing it.
        """
        if resource in UNPAGINATED:
            return list(self._collection(resource).records), None
        # A blank value (`?sku=`) is no filter at all, as a `present?` check in the web app reads it: a guess.
        params = {name: value for name, value in params.items() if value.strip() != ""}
        size = self._page_size(params.get("limit"))
        starting_after = params.get("starting_after") or None
        if resource == "inventory_levels":
            return self._inventory_page(size, starting_after, params)
        collection = self._collection(resource)
        records = collection.records
        after_index: int | None = None
        if starting_after:
            after_index = collection.position.get(starting_after)
            if after_index is None:
                raise ApiError(
                    400,
                    f"starting_after: no {SANDBOX_SINGULAR[resource].replace('_', ' ')} "
                    f"with id {starting_after!r}",
                )
        if resource not in NEWEST_FIRST:  # categories: sort order, oldest position first; no filters
            start = 0 if after_index is None else after_index + 1
            return records[start : start + size], start + size < len(records)
        since = _time_param(params, "created_since")
        before = _time_param(params, "created_before") if resource in CREATED_BEFORE else None
        low = 0 if since is None else bisect_left(collection.created, since)  # created >= since
        high = len(records) if before is None else bisect_left(collection.created, before)  # created < before
        if after_index is not None:
            high = min(high, after_index)
        tests = self._filters(resource, params)
        if not tests:
            chosen = records[max(low, high - size) : max(low, high)][::-1]
            return chosen, high - size > low
        chosen = []
        for index in range(high - 1, low - 1, -1):
            record = records[index]
            if all(test(record) for test in tests):
                if len(chosen) == size:
                    return chosen, True
                chosen.append(record)
        return chosen, False

    def _page_size(self, limit: str | None) -> int:
        """`limit`: default 50, at most `max_page_size` (200) as documented. A larger limit is clamped (the
        reference is silent on it: a guess); zero, negative or not a whole number -> 400 (a guess too)."""
        if limit is None:
            return min(DEFAULT_PAGE_SIZE, self.max_page_size)
        try:
            size = int(limit)
        except ValueError:
            raise ApiError(400, f"limit must be a whole number, got {limit!r}") from None
        if size < 1:
            raise ApiError(400, f"limit must be at least 1, got {size}")
        return min(size, self.max_page_size)

    def _inventory_page(
        self, size: int, starting_after: str | None, params: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """Inventory levels in SKU order, cursor = SKU; filters: sku, product_id, created_/updated_since."""
        start = 0
        if starting_after:
            if starting_after not in self._inventory:
                raise ApiError(400, f"starting_after: no inventory level with SKU {starting_after!r}")
            start = bisect_right(self._skus, starting_after)
        since = _time_param(params, "created_since")
        updated_since = _time_param(params, "updated_since")
        sku = params.get("sku")
        product_id = params.get("product_id")
        if since is None and updated_since is None and sku is None and product_id is None:
            skus = self._skus[start : start + size]
            return [self._inventory[s] for s in skus], start + size < len(self._skus)
        if sku is not None:
            candidates = [sku] if sku in self._inventory and bisect_left(self._skus, sku) >= start else []
        else:
            candidates = self._skus[start:]
        chosen: list[dict[str, Any]] = []
        for candidate in candidates:
            if since is not None and self._level_created[candidate] < since:
                continue
            if updated_since is not None and self._level_updated[candidate] < updated_since:
                continue
            if product_id is not None:
                owner = self._variant_by_sku.get(candidate)
                if owner is None or owner[0]["id"] != product_id:
                    continue
            if len(chosen) == size:
                return chosen, True
            chosen.append(self._inventory[candidate])
        return chosen, False

    def _filters(self, resource: str, params: Mapping[str, str]) -> list[Callable[[dict[str, Any]], bool]]:
        """The record tests for `resource`'s documented filters present in `params` (created_* aside)."""
        tests: list[Callable[[dict[str, Any]], bool]] = []

        def equal(name: str, key: str | None = None) -> None:
            if name in params:
                value, field_name = params[name], key or name
                tests.append(lambda r: r.get(field_name) == value)

        def day_bound(name: str, key: str, after: bool) -> None:
            # Date bounds named *_after / *_before (and delivery_date_since, documented as "after the
            # specified date") are EXCLUSIVE here. The reference is silent; this is a guess, and the strict
            # one on purpose: a client that widens its window by a day each side and filters locally is
            # right whether the real API is inclusive or exclusive; one relying on inclusion is caught here.
            bound = _day_param(params, name)
            if bound is not None:
                if after:
                    tests.append(lambda r: bool(r.get(key)) and r[key] > bound)
                else:
                    tests.append(lambda r: bool(r.get(key)) and r[key] < bound)

        def flag(name: str) -> None:
            value = _bool_param(params, name)
            if value is not None:
                tests.append(lambda r: r.get(name) is value)

        if resource == "orders":
            day_bound("delivery_date_since", "delivery_date", after=True)
            day_bound("delivery_date_before", "delivery_date", after=False)
            if "number" in params:
                number = _whole_param(params, "number")
                tests.append(lambda r: r["number"] == number)
            if "status" in params:
                status = params["status"]
                if status not in ORDER_STATUSES:
                    raise ApiError(400, f"status must be one of {', '.join(ORDER_STATUSES)}, got {status!r}")
                tests.append(lambda r: r["status"] == status)
            for name in ("reference", "customer_id", "standing_order_id"):
                equal(name)
        elif resource == "dispatches":
            equal("order_id")
        elif resource == "invoices":
            day_bound("invoice_date_after", "invoice_date", after=True)
            day_bound("invoice_date_before", "invoice_date", after=False)
            day_bound("due_date_after", "due_date", after=True)
            day_bound("due_date_before", "due_date", after=False)
            equal("number")
            equal("customer_id")
            flag("paid")
            flag("proforma")
        elif resource == "products":
            updated_since = _time_param(params, "updated_since")
            if updated_since is not None:
                updated = self._collections["products"].updated
                tests.append(lambda r: updated[r["id"]] >= updated_since)
            equal("code")
            equal("name")
            flag("active")
            if "category_id" in params:
                category_id = params["category_id"]
                tests.append(lambda r: any(c.get("id") == category_id for c in r.get("categories") or []))
        elif resource == "customers":
            if "status" in params:
                status = params["status"]
                if status not in CUSTOMER_STATUSES:
                    raise ApiError(
                        400, f"status must be one of {', '.join(CUSTOMER_STATUSES)}, got {status!r}"
                    )
                tests.append(lambda r: r["status"] == status)
            for name in (
                "company_name",
                "reference",
                "payment_terms_id",
                "customer_group_id",
                "price_list_id",
            ):
                equal(name)
            if "buyers_email_address" in params:
                email = params["buyers_email_address"]
                tests.append(lambda r: any(b.get("email_address") == email for b in r.get("buyers") or []))
        return tests

    # --- customers -------------------------------------------------------------------------------

    CUSTOMER_FIELDS = (
        "company_name", "status", "reference", "buyers", "phone", "email_addresses",
        "tax_number", "tax_rate_id", "addresses", "minimum_spend", "payment_terms_id", "customer_group_id",
        "price_list_id",
    )  # fmt: skip

    def _check_customer(self, fields: dict[str, Any], existing: dict[str, Any] | None) -> None:
        problems = []
        name = fields.get("company_name", existing["company_name"] if existing else None)
        if not isinstance(name, str) or not name.strip():
            problems.append("Company name can't be blank")
        if "status" in fields and fields["status"] not in CUSTOMER_STATUSES:
            problems.append("Status must be new, active or closed")
        own = {b.get("email_address") for b in (existing or {}).get("buyers") or []}
        buyers = fields.get("buyers")
        if buyers is not None:
            if not isinstance(buyers, list) or not all(isinstance(b, dict) for b in buyers):
                problems.append("Buyers must be a list of objects with name and email_address")
            elif any(b.get("email_address") in self._emails - own for b in buyers if b.get("email_address")):
                problems.append("Email address has already been taken")
        for key, resource in [
            ("payment_terms_id", "payment_terms"),
            ("customer_group_id", "customer_groups"),
            ("price_list_id", "price_lists"),
            ("tax_rate_id", "tax_rates"),
        ]:
            value = fields.get(key)
            if value is not None and self._collections[resource].get(value) is None:
                problems.append(f"{key} {value!r} does not exist")
        for key in ("addresses",):
            if key in fields and not (
                isinstance(fields[key], list) and all(isinstance(a, dict) for a in fields[key])
            ):
                problems.append("Addresses must be a list of objects")
        if "email_addresses" in fields and not isinstance(fields["email_addresses"], dict):
            problems.append("Email addresses must be an object with orders, dispatches and invoices")
        if "minimum_spend" in fields and _number(fields["minimum_spend"]) is None:
            problems.append("Minimum spend must be a number")
        if problems:
            raise ApiError(422, "Validation failed: " + ", ".join(problems))

    def create_customer(self, body: Any) -> dict[str, Any]:
        fields = {k: v for k, v in _body_object(body, "customer").items() if k in self.CUSTOMER_FIELDS}
        with self.lock:
            self._check_customer(fields, None)
            collection = self._collections["customers"]
            created = self._now(collection)
            customer = {
                "id": self._ids.new("cu"),
                "company_name": fields["company_name"],
                "created": iso_time(created),  # as the recorded responses (the docs say created_at)
                "status": "active",
                "reference": "",
                "buyers": [],
                "phone": "",
                "email_addresses": {"orders": "", "dispatches": "", "invoices": ""},
                "tax_number": "",
                "tax_rate_id": None,
                "addresses": [],
                "minimum_spend": 0.0,
                "payment_terms_id": None,
                "customer_group_id": None,
                "price_list_id": None,
            } | fields
            collection.append(customer, created)
            self._emails.update(b.get("email_address") for b in customer["buyers"])
            self._emit(("customer.created", customer))
            return copy.deepcopy(customer)

    def update_customer(self, customer_id: str, body: Any) -> dict[str, Any]:
        fields = {k: v for k, v in _body_object(body, "customer").items() if k in self.CUSTOMER_FIELDS}
        with self.lock:
            customer = self.find("customers", customer_id)
            self._check_customer(fields, customer)
            self._emails.difference_update(b.get("email_address") for b in customer["buyers"])
            customer.update(fields)
            self._emails.update(b.get("email_address") for b in customer["buyers"])
            self._emit(("customer.updated", customer))
            return copy.deepcopy(customer)

    # --- orders ----------------------------------------------------------------------------------

    def create_order(self, body: Any) -> dict[str, Any]:
        fields = _body_object(body, "order")
        with self.lock:
            customer_id = fields.get("customer_id")
            if not customer_id:
                raise ApiError(422, "Validation failed: Customer can't be blank (customer_id is required)")
            customer = self._collections["customers"].get(customer_id)
            if customer is None:
                raise ApiError(422, f"Validation failed: Customer {customer_id!r} does not exist")
            number = fields.get("number")
            if number is not None:
                number = _whole(number)
                if number is None or number < 1:
                    raise ApiError(422, "Validation failed: Number must be a whole number of at least 1")
                if any(o["number"] == number for o in self._collections["orders"].records):
                    raise ApiError(422, f"Validation failed: Number {number} has already been taken")
            delivery_date = fields.get("delivery_date") or ""
            if delivery_date:
                try:
                    date.fromisoformat(str(delivery_date))
                except ValueError:
                    raise ApiError(
                        422, f"Validation failed: delivery_date must be YYYY-MM-DD, got {delivery_date!r}"
                    ) from None
            lines = self._order_lines(customer, fields.get("order_lines"))
            address = (customer.get("addresses") or [{}])[0]
            for key in ("shipping_address", "billing_address"):
                if key in fields and not isinstance(fields[key], dict):
                    raise ApiError(422, f"Validation failed: {key} must be an object")
            collection = self._collections["orders"]
            created = self._now(collection)
            if number is None:
                number = self._next_order_number
            self._next_order_number = max(self._next_order_number, number + 1)
            net_total = money(sum(line["sub_total"] for line in lines))
            shipping_lines = [line for line in lines if line["shipping"]]
            order = {
                "id": self._ids.new("or"),
                "number": number,
                "created": iso_time(created),
                "status": "new",
                "customer_id": customer["id"],
                "company_name": customer["company_name"],
                "phone": customer.get("phone", ""),
                "email_addresses": copy.deepcopy(customer.get("email_addresses")),
                "delivery_date": delivery_date,
                "reference": str(fields.get("reference") or ""),
                "internal_note": str(fields.get("internal_note") or ""),
                "customer_po_number": str(fields.get("customer_po_number") or ""),
                "customer_note": str(fields.get("customer_note") or ""),
                "standing_order_id": None,
                "shipping_type": shipping_lines[0]["name"] if shipping_lines else "",
                "shipping_address": fields.get("shipping_address") or copy.deepcopy(address),
                "billing_address": fields.get("billing_address") or copy.deepcopy(address),
                "order_lines": lines,
                "currency": self._currency(customer),
                "net_total": net_total,
                "gross_total": money(net_total + sum(line["tax_amount"] for line in lines)),
            }
            collection.append(order, created)
            self._emit(("order.created", order))
            return copy.deepcopy(order)

    def _currency(self, customer: dict[str, Any]) -> str:
        price_list = self._collections["price_lists"].get(customer.get("price_list_id") or "")
        return price_list["currency"] if price_list else "GBP"

    def _order_lines(self, customer: dict[str, Any], raw_lines: Any) -> list[dict[str, Any]]:
        if not isinstance(raw_lines, list) or not raw_lines:
            raise ApiError(422, "Validation failed: Order lines can't be blank")
        tax_rates = self._collections["tax_rates"]
        standard = tax_rates.records[0]
        customer_tax = tax_rates.get(customer.get("tax_rate_id") or "")
        price_list_id = customer.get("price_list_id")
        unknown: list[str] = []
        problems: list[str] = []
        lines = []
        for position, raw in enumerate(raw_lines, start=1):
            if not isinstance(raw, dict):
                problems.append(f"order line {position} must be an object")
                continue
            sku = raw.get("sku") or ""
            shipping = raw.get("shipping") is True
            quantity = _quantity(raw.get("quantity", 1))
            if quantity is None:
                problems.append(f"order line {position}: quantity must be a number greater than zero")
                continue
            tax = customer_tax
            if raw.get("tax_rate_id"):
                tax = tax_rates.get(raw["tax_rate_id"])
                if tax is None:
                    problems.append(
                        f"order line {position}: tax_rate_id {raw['tax_rate_id']!r} does not exist"
                    )
                    continue
            grouping = None
            if sku:
                found = self._variant_by_sku.get(sku)
                if found is None:
                    unknown.append(f"{sku} - No longer available")
                    continue
                product, variant = found
                unit_price = next(
                    (p["unit_price"] for p in variant["price_list_prices"] if p["id"] == price_list_id),
                    variant["unit_price"],
                )
                name = product["name"]
                options = ", ".join(f"{k}: {v}" for k, v in (variant.get("options") or {}).items())
                category = self._collections["categories"].get(product.get("grouping_category_id") or "")
                grouping = {"id": category["id"], "name": category["name"]} if category else None
                tax = tax or standard
            else:
                name = raw.get("name")
                if not isinstance(name, str) or not name.strip():
                    problems.append(f"order line {position} needs a sku, or a name for a custom item")
                    continue
                unit_price = _number(raw.get("unit_price"))
                if unit_price is None or unit_price < 0:
                    problems.append(
                        f"order line {position} ({name}): unit_price must be a number of zero or more"
                    )
                    continue
                options = ""
                tax = tax or standard
            if "unit_price" in raw and sku:
                override = _number(raw["unit_price"])
                if override is None or override < 0:
                    problems.append(
                        f"order line {position} ({sku}): unit_price must be a number of zero or more"
                    )
                    continue
                unit_price = override
            lines.append(
                order_line_record(
                    line_id=self._ids.new("ol"),
                    sku=sku,
                    name=name,
                    options=options,
                    grouping=grouping,
                    shipping=shipping,
                    quantity=quantity,
                    unit_price=unit_price,
                    tax=tax,
                )
            )
        if unknown:
            raise ApiError(422, ",".join(unknown))
        if problems:
            raise ApiError(422, "Validation failed: " + "; ".join(problems))
        return lines

    # --- dispatches ------------------------------------------------------------------------------

    def create_dispatch(self, body: Any) -> dict[str, Any]:
        """Dispatch items of an order: all checks first, then every change at once (nothing half-applied)."""
        fields = _body_object(body, "dispatch")
        with self.lock:
            order_id = fields.get("order_id")
            if not order_id or not isinstance(order_id, str):
                raise ApiError(422, "Validation failed: Order can't be blank (order_id is required)")
            order = self._collections["orders"].get(order_id)
            if order is None:
                raise ApiError(422, f"Validation failed: Order {order_id!r} does not exist")
            if order["status"] == "fulfilled":
                raise ApiError(422, "The order has already been fulfilled")
            if order["status"] == "cancelled":
                raise ApiError(422, f"Order {order['number']} has been cancelled and can not be dispatched")
            if order["status"] not in DISPATCHABLE:  # a standing order is a template, never sent itself
                raise ApiError(
                    422,
                    f"Order {order['number']} is a {order['status'].replace('_', ' ')} "
                    "and can not be dispatched",
                )
            raw_lines = fields.get("dispatch_lines")
            if not isinstance(raw_lines, list) or not raw_lines:
                raise ApiError(422, "Validation failed: Dispatch lines can't be blank")
            goods = [line for line in order["order_lines"] if not line.get("shipping")]
            planned: dict[str, float] = {}  # order line id -> quantity in this dispatch
            for position, raw in enumerate(raw_lines, start=1):
                self._plan_dispatch_line(order, goods, raw, position, planned)
            dispatch_lines = []
            levels_before = {
                sku: dict(level)
                for sku, level in self._inventory.items()
                if sku in {line["sku"] for line in goods}
            }
            for line in goods:
                quantity = planned.get(line["id"])
                if not quantity:
                    continue
                line["dispatched"] = _tidy(line["dispatched"] + quantity)
                level = self._inventory.get(line["sku"])
                if level is not None:
                    level["on_hand"] = _tidy(level["on_hand"] - quantity)
                    level["available"] = _tidy(level["available"] - quantity)
                    self._touch_levels([line["sku"]])
                dispatch_lines.append(
                    {
                        "order_line_id": line["id"],
                        "sku": line["sku"],
                        "name": line["name"],
                        "options": line["options"],
                        "quantity": quantity,
                    }
                )
            done = all(line["dispatched"] >= line["quantity"] for line in goods)
            order["status"] = "fulfilled" if done else "part_fulfilled"
            collection = self._collections["dispatches"]
            created = self._now(collection)
            comments = fields.get("comments")
            dispatch = dispatch_record(
                self._ids.new("di"),
                order,
                iso_time(created),
                comments if isinstance(comments, str) else "",
                dispatch_lines,
            )
            dispatch = copy.deepcopy(dispatch)
            collection.append(dispatch, created)
            touched = [
                sku for sku in dict.fromkeys(line["sku"] for line in dispatch_lines) if sku in levels_before
            ]
            self._emit(
                ("dispatch.created", dispatch),
                ("order.updated", order),
                *[("inventory_level.updated", self._level_event(levels_before[sku], sku)) for sku in touched],
            )
            return copy.deepcopy(dispatch)

    @staticmethod
    def _plan_dispatch_line(
        order: dict[str, Any],
        goods: list[dict[str, Any]],
        raw: Any,
        position: int,
        planned: dict[str, float],
    ) -> None:
        if not isinstance(raw, dict):
            raise ApiError(422, f"Validation failed: dispatch line {position} must be an object")
        quantity = _quantity(raw.get("quantity"))
        label = raw.get("sku") or raw.get("order_line_id") or f"line {position}"
        if quantity is None:
            raise ApiError(
                422, f"Validation failed: quantity for {label} must be a number greater than zero, "
                f"got {raw.get('quantity')!r}"
            )  # fmt: skip
        if raw.get("order_line_id"):
            candidates = [line for line in goods if line["id"] == raw["order_line_id"]]
            if not candidates:
                raise ApiError(
                    422,
                    f"Validation failed: order line {raw['order_line_id']!r} "
                    f"is not on order {order['number']}",
                )
        elif raw.get("sku"):
            candidates = [line for line in goods if line["sku"] == raw["sku"]]
            if not candidates:
                raise ApiError(
                    422, f"Validation failed: SKU {raw['sku']!r} is not on order {order['number']}"
                )
        else:
            raise ApiError(
                422, f"Validation failed: dispatch line {position} needs a sku or an order_line_id"
            )
        remaining: float = quantity
        outstanding_total: float = 0
        for line in candidates:
            outstanding = _tidy(line["quantity"] - line["dispatched"] - planned.get(line["id"], 0))
            outstanding_total = _tidy(outstanding_total + outstanding)
        if quantity > outstanding_total:
            raise ApiError(
                422,
                f"Validation failed: cannot dispatch {quantity} of {label} on order {order['number']}: "
                f"only {max(outstanding_total, 0)} outstanding",
            )
        for line in candidates:
            outstanding = _tidy(line["quantity"] - line["dispatched"] - planned.get(line["id"], 0))
            take = min(outstanding, remaining)
            if take > 0:
                planned[line["id"]] = _tidy(planned.get(line["id"], 0) + take)
                remaining = _tidy(remaining - take)

    # --- inventory -------------------------------------------------------------------------------

    def update_inventory(self, body: Any) -> list[dict[str, Any]]:
        """Bulk update: every item is checked before any is applied."""
        if not isinstance(body, dict) or "inventory_levels" not in body:
            raise ApiError(400, "The request body must be a JSON object with an 'inventory_levels' list")
        items = body["inventory_levels"]
        if not isinstance(items, list):
            raise ApiError(422, "Validation failed: inventory_levels must be a list")
        if not items:
            raise ApiError(422, "Validation failed: inventory_levels can't be empty")
        if len(items) > MAX_INVENTORY_UPDATE:
            raise ApiError(
                422,
                f"A maximum of {MAX_INVENTORY_UPDATE} inventory levels can be updated per request, "
                f"got {len(items)}",
            )
        with self.lock:
            changes: list[tuple[str, str, float]] = []
            for position, item in enumerate(items, start=1):
                if not isinstance(item, dict):
                    raise ApiError(422, f"Validation failed: inventory level {position} must be an object")
                sku = item.get("sku")
                if not isinstance(sku, str) or not sku:
                    raise ApiError(422, f"Validation failed: inventory level {position} has no sku")
                if "on_hand" in item and "available" in item:
                    raise ApiError(422, BOTH_LEVELS_MESSAGE)
                if sku not in self._inventory:
                    raise ApiError(422, f"Validation failed: SKU {sku!r} does not exist")
                field_name = "on_hand" if "on_hand" in item else "available" if "available" in item else None
                if field_name is None:
                    raise ApiError(422, f"Validation failed: SKU {sku!r} needs on_hand or available")
                number = _number(item[field_name])  # documented as a number: decimals allowed
                if number is None or not math.isfinite(number) or number < 0:
                    raise ApiError(
                        422,
                        f"Validation failed: {field_name} for SKU {sku!r} must be a number of zero or more, "
                        f"got {item[field_name]!r}",
                    )
                value = _tidy(number)
                changes.append((sku, field_name, value))
            updated = []
            events = []
            for sku, field_name, value in changes:
                level = self._inventory[sku]
                before = dict(level)
                other = "available" if field_name == "on_hand" else "on_hand"
                level[other] = _tidy(level[other] + value - level[field_name])
                level[field_name] = value
                updated.append(dict(level))
                events.append(("inventory_level.updated", self._level_event(before, sku)))
            self._touch_levels([sku for sku, _, _ in changes])
            self._emit(*events)
            return updated

    # --- products --------------------------------------------------------------------------------

    PRODUCT_FIELDS = (
        "code", "name", "description", "active", "tariff_code", "country_of_origin", "composition",
        "variant_options", "grouping_category_id",
    )  # fmt: skip
    VARIANT_FIELDS = (
        "sku",
        "barcode",
        "options",
        "unit_price",
        "rrp",
        "backorder",
        "minimum",
        "multiple",
        "weight",
    )

    def create_product(self, body: Any) -> dict[str, Any]:
        fields = _body_object(body, "product")
        with self.lock:
            collection = self._collections["products"]
            product: dict[str, Any] = {
                "id": "",
                "code": "",
                "name": "",
                "description": "",
                "active": True,
                "tariff_code": "",
                "country_of_origin": "",
                "composition": "",
                "variant_options": [],
                "product_variants": [],
                "categories": [],
                "grouping_category_id": None,
            }
            new_skus = self._apply_product_fields(product, fields, creating=True)
            product["id"] = self._ids.new("pr")
            for variant in product["product_variants"]:
                if not variant["id"]:
                    variant["id"] = self._ids.new("pv")
            collection.append(product, self._now(collection))
            collection.updated[product["id"]] = self._stamp()  # found by updated_since like any change
            self._commit_skus(product, new_skus, {})
            self._emit(("product.created", product))
            return copy.deepcopy(product)

    def update_product(self, product_id: str, body: Any) -> dict[str, Any]:
        fields = _body_object(body, "product")
        with self.lock:
            collection = self._collections["products"]
            current = self.find("products", product_id)
            product = copy.deepcopy(current)
            old_skus = {v["id"]: v["sku"] for v in current["product_variants"]}
            new_skus = self._apply_product_fields(product, fields, creating=False)
            for variant in product["product_variants"]:
                if not variant["id"]:
                    variant["id"] = self._ids.new("pv")
            collection.records[collection.position[product_id]] = product
            collection.updated[product_id] = self._stamp()
            self._commit_skus(product, new_skus, old_skus)
            self._emit(("product.updated", product))
            return copy.deepcopy(product)

    def _commit_skus(self, product: dict[str, Any], new_skus: list[str], old_skus: dict[str, str]) -> None:
        """Index the product's variants; renamed SKUs keep their stock, new SKUs start at zero."""
        for variant in product["product_variants"]:
            old = old_skus.get(variant["id"])
            if old is not None and old != variant["sku"]:
                level = self._inventory.pop(old)
                self._skus.remove(old)
                self._variant_by_sku.pop(old, None)
                level["sku"] = variant["sku"]
                self._inventory[variant["sku"]] = level
                insort(self._skus, variant["sku"])
                self._level_created[variant["sku"]] = self._level_created.pop(old)
                self._level_updated.pop(old, None)
                self._touch_levels([variant["sku"]])
            self._variant_by_sku[variant["sku"]] = (product, variant)
        for sku in new_skus:
            if sku not in self._inventory:
                self._inventory[sku] = {"sku": sku, "on_hand": 0, "available": 0}
                insort(self._skus, sku)
                self._level_created[sku] = self._stamp()
                self._touch_levels([sku])

    def _apply_product_fields(
        self, product: dict[str, Any], fields: dict[str, Any], *, creating: bool
    ) -> list[str]:
        """Validate `fields`, apply them to `product` (a fresh or copied record); returns SKUs to create."""
        problems: list[str] = []
        for key in self.PRODUCT_FIELDS:
            if key in fields:
                product[key] = fields[key]
        if not isinstance(product["code"], str) or not product["code"].strip():
            problems.append("Product Code can't be blank")
        elif any(
            p["code"] == product["code"] and p["id"] != product["id"]
            for p in self._collections["products"].records
        ):
            problems.append("Product Code must be unique")
        if not isinstance(product["name"], str) or not product["name"].strip():
            problems.append("Name can't be blank")
        categories = self._collections["categories"]
        if "categories" in fields:
            if not isinstance(fields["categories"], list):
                problems.append("categories must be a list of {id} objects")
            else:
                resolved = []
                for entry in fields["categories"]:
                    category = categories.get(entry.get("id", "")) if isinstance(entry, dict) else None
                    if category is None:
                        problems.append(f"Category {entry!r} does not exist")
                    else:
                        resolved.append({"id": category["id"], "name": category["name"]})
                product["categories"] = resolved
        if (
            product["grouping_category_id"] is not None
            and categories.get(product["grouping_category_id"]) is None
        ):
            problems.append(f"Grouping category {product['grouping_category_id']!r} does not exist")
        new_skus: list[str] = []
        if "product_variants" in fields:
            raw_variants = fields["product_variants"]
            if not isinstance(raw_variants, list) or not all(isinstance(v, dict) for v in raw_variants):
                raise ApiError(422, "Validation failed: product_variants must be a list of objects")
            by_id = {v["id"]: v for v in product["product_variants"]}
            for raw in raw_variants:
                if raw.get("id"):
                    variant = by_id.get(raw["id"])
                    if variant is None:
                        problems.append(f"Product variant {raw['id']!r} is not on this product")
                        continue
                else:
                    variant = {
                        "id": "", "sku": "", "barcode": "", "options": {}, "unit_price": 0.0,
                        "price_list_prices": [], "rrp": None, "backorder": False, "minimum": None,
                        "multiple": None, "weight": 0.0,
                    }  # fmt: skip
                    product["product_variants"].append(variant)
                    if isinstance(raw.get("sku"), str):
                        new_skus.append(raw["sku"])
                for key in self.VARIANT_FIELDS:
                    if key in raw:
                        variant[key] = raw[key]
                if "price_list_prices" in raw:
                    prices = raw["price_list_prices"]
                    if not isinstance(prices, list):
                        problems.append(f"price_list_prices of {variant['sku']!r} must be a list")
                    else:
                        kept = []
                        for price in prices:
                            if not isinstance(price, dict) or price.get("unit_price") is None:
                                continue  # {"id": ..., "unit_price": null} removes that price
                            if self._collections["price_lists"].get(price.get("id", "")) is None:
                                problems.append(f"Price list {price.get('id')!r} does not exist")
                            elif _number(price["unit_price"]) is None:
                                problems.append(f"unit_price for price list {price['id']!r} must be a number")
                            else:
                                kept.append({"id": price["id"], "unit_price": float(price["unit_price"])})
                        variant["price_list_prices"] = kept
                if _number(variant["unit_price"]) is None:
                    problems.append(f"unit_price of {variant['sku']!r} must be a number")
        skus = [v["sku"] for v in product["product_variants"]]
        if creating and not skus:
            problems.append("Product variants can't be blank")
        for sku in skus:
            if not isinstance(sku, str) or not sku.strip():
                problems.append("SKU can't be blank")
            elif skus.count(sku) > 1:
                problems.append(f"SKU {sku!r} appears more than once")
            else:
                owner = self._variant_by_sku.get(sku)
                if owner is not None and owner[0]["id"] != product["id"]:
                    problems.append(f"SKU {sku!r} has already been taken")
        if problems:
            raise ApiError(422, "Validation failed: " + ", ".join(dict.fromkeys(problems)))
        return new_skus

    # --- webhooks --------------------------------------------------------------------------------

    def _check_webhook(self, webhook: dict[str, Any]) -> None:
        problems = []
        endpoint = webhook.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            problems += ["Endpoint can't be blank", "Endpoint must be a https url"]
        elif not endpoint.startswith("https://") and not (
            self.allow_http_loopback and LOOPBACK_HTTP.match(endpoint)
        ):
            problems.append("Endpoint must be a https url")
        events = webhook.get("events")
        if not isinstance(events, list) or not events:
            problems.append("Events can't be blank")
        else:
            unknown = [e for e in events if e not in WEBHOOK_EVENTS]
            if unknown:
                problems.append(f"Events {unknown!r} are not known events")
        if problems:
            raise ApiError(422, "Validation failed: " + ", ".join(problems))

    def create_webhook(self, body: Any) -> dict[str, Any]:
        fields = _body_object(body, "webhook")
        with self.lock:
            webhook = {"id": "", "endpoint": fields.get("endpoint"), "events": fields.get("events")}
            self._check_webhook(webhook)
            webhook["id"] = self._ids.new("wh")
            webhook["signing_key"] = "".join(
                self._rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", k=40)
            )
            collection = self._collections["webhooks"]
            collection.append(webhook, self._now(collection))
            self.live_webhooks.add(str(webhook["id"]))
            return copy.deepcopy(webhook)

    def update_webhook(self, webhook_id: str, body: Any) -> dict[str, Any]:
        fields = _body_object(body, "webhook")
        with self.lock:
            webhook = self.find("webhooks", webhook_id)
            changed = webhook | {k: fields[k] for k in ("endpoint", "events") if k in fields}
            self._check_webhook(changed)
            webhook.update(changed)
            self.live_webhooks.add(webhook_id)
            return copy.deepcopy(webhook)

    def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        return self.delete("webhooks", webhook_id)

    def delete(self, resource: str, record_id: str) -> dict[str, Any]:
        """Hard-delete one record (404 if absent); later lists and gets omit it. Returns the documented short
        representation `{"id": ..., "deleted": true}`. Side effects (guesses, see the module docstring): a
        product's inventory levels go with it; categories and price lists are detached from what uses them."""
        with self.lock:
            record = self.find(resource, record_id)
            if resource not in DELETABLE:
                raise ApiError(405, f"DELETE is not supported on {resource}")
            self._collection(resource).remove(record_id)
            identity = DELETED_IDENTITY.get(resource)
            if identity is not None:
                short = {key: record.get(key) for key in identity} | {"deleted": True}
                self._emit((f"{SANDBOX_SINGULAR[resource]}.deleted", short))
            if resource == "webhooks":
                self.live_webhooks.discard(record_id)
            if resource == "customers":
                self._emails.difference_update(b.get("email_address") for b in record.get("buyers") or [])
            elif resource == "products":
                for variant in record["product_variants"]:
                    sku = variant["sku"]
                    self._variant_by_sku.pop(sku, None)
                    if self._inventory.pop(sku, None) is not None:
                        self._skus.remove(sku)
                        self._level_created.pop(sku, None)
                        self._level_updated.pop(sku, None)
            elif resource == "categories":
                products = self._collections["products"]
                for product in products.records:
                    kept = [c for c in product["categories"] if c.get("id") != record_id]
                    if (
                        len(kept) != len(product["categories"])
                        or product["grouping_category_id"] == record_id
                    ):
                        product["categories"] = kept
                        if product["grouping_category_id"] == record_id:
                            product["grouping_category_id"] = None
                        products.updated[product["id"]] = self._stamp()
                for category in self._collections["categories"].records:
                    if category.get("parent_id") == record_id:
                        category["parent_id"] = None
            elif resource == "price_lists":
                for customer in self._collections["customers"].records:
                    if customer.get("price_list_id") == record_id:
                        customer["price_list_id"] = None
                products = self._collections["products"]
                for product in products.records:
                    touched = False
                    for variant in product["product_variants"]:
                        prices = variant.get("price_list_prices") or []
                        kept = [p for p in prices if p.get("id") != record_id]
                        if len(kept) != len(prices):
                            variant["price_list_prices"], touched = kept, True
                    if touched:
                        products.updated[product["id"]] = self._stamp()
            return {"id": record_id, "deleted": True}

    def created_times(self, resource: str) -> dict[str, int]:
        """Each record's (possibly hidden) creation time in epoch seconds, by id (inventory: by SKU)."""
        with self.lock:
            if resource == "inventory_levels":
                return dict(self._level_created)
            collection = self._collection(resource)
            return {r["id"]: at for r, at in zip(collection.records, collection.created, strict=True)}

    # --- changes made by activity mode (no API endpoint in the sandbox; same rules and events) -------

    def update_order_status(self, order_id: str, status: str) -> dict[str, Any]:
        """Move an order to another documented status (what a user does in the web app); `order.updated`."""
        with self.lock:
            order = self.find("orders", order_id)
            if status not in ORDER_STATUSES:
                raise ApiError(422, f"Validation failed: unknown order status {status!r}")
            order["status"] = status
            self._emit(("order.updated", order))
            return copy.deepcopy(order)

    def create_invoice(self, order_id: str) -> dict[str, Any]:
        """Invoice a whole order, unpaid, dated today (the guessed shape follows the generated invoices).
        Emits `invoice.created` and `order.updated` (its lines are now invoiced)."""
        with self.lock:
            order = self.find("orders", order_id)
            customer = self._collections["customers"].get(order["customer_id"]) or {}
            terms = self._collections["payment_terms"].get(customer.get("payment_terms_id") or "") or {}
            created = self._stamp()
            day = date(*time.gmtime(created)[:3])
            due = day.toordinal() + int(terms.get("days_due") or 0)
            for line in order["order_lines"]:
                line["invoiced"] = line["quantity"]
            invoice = {
                "id": self._ids.new("iv"),
                "number": f"INV-{order['number']}",
                "invoice_date": day.isoformat(),
                "customer_id": order["customer_id"],
                "company_name": order["company_name"],
                "email_address": (order.get("email_addresses") or {}).get("invoices", ""),
                "orders": [{"id": order["id"], "number": order["number"]}],
                "payment_terms": terms.get("name", ""),
                "due_date": date.fromordinal(due).isoformat(),
                "paid": False,
                "proforma": False,
                "deposit": None,
                "comments": "",
                "address": copy.deepcopy(order["billing_address"]),
                "invoice_lines": [
                    {
                        key: line[key]
                        for key in (
                            "sku",
                            "name",
                            "options",
                            "quantity",
                            "unit_price",
                            "sub_total",
                            "tax_rate",
                            "tax_amount",
                        )
                    }
                    for line in order["order_lines"]
                ],
                "currency": order["currency"],
                "net_total": order["net_total"],
                "gross_total": order["gross_total"],
                "payments": [],
            }
            collection = self._collections["invoices"]
            collection.append(invoice, self._now(collection))
            self._emit(("invoice.created", invoice), ("order.updated", order))
            return copy.deepcopy(invoice)

    def create_payment(self, invoice_id: str, amount: float | None = None) -> dict[str, Any]:
        """Record a payment on an invoice (default: what is still owed); `payment.created`. The invoice is
        `paid` once payments reach its gross total, and its orders' lines count as paid."""
        with self.lock:
            invoice = self.find("invoices", invoice_id)
            owed = money(invoice["gross_total"] - sum(p["amount"] for p in invoice["payments"]))
            amount = owed if amount is None else money(amount)
            if amount <= 0:
                raise ApiError(422, f"Validation failed: invoice {invoice['number']} has nothing left to pay")
            day = date(*time.gmtime(self._stamp())[:3]).isoformat()
            payment = {
                "amount": amount,
                "payment_date": day,
                "source": "bank_transfer",
                "description": "Bank transfer",
                "reference": f"BT{self._ids.new('bt')[3:]}",
            }
            invoice["payments"].append(payment)
            events: list[tuple[str, dict[str, Any]]] = [
                ("payment.created", {"invoice_id": invoice_id, "invoice_number": invoice["number"]} | payment)
            ]
            if money(sum(p["amount"] for p in invoice["payments"])) >= invoice["gross_total"]:
                invoice["paid"] = True
                for ref in invoice["orders"]:
                    order = self._collections["orders"].get(ref["id"])
                    if order is not None:
                        for line in order["order_lines"]:
                            line["paid"] = line["quantity"]
                        events.append(("order.updated", order))
            self._emit(*events)
            return copy.deepcopy(payment)

    # --- helpers ---------------------------------------------------------------------------------

    def _emit(self, *changes: tuple[str, dict[str, Any]]) -> None:
        """Hand this change's events to the change feed, each record copied as the API would return it.
        Call with the lock held, after the change is applied."""
        if self.on_events is None or not changes or not self.live_webhooks:
            return  # nobody could receive them: skip the copies
        events = [
            {"event": name, "data": {name.split(".")[0]: copy.deepcopy(record)}} for name, record in changes
        ]
        self.on_events(events)

    def _level_event(self, before: dict[str, Any], sku: str) -> dict[str, Any]:
        """An `inventory_level.updated` record: the new levels and how much each moved."""
        after = self._inventory[sku]
        return {
            "sku": sku,
            "on_hand": after["on_hand"],
            "on_hand_adjustment": _tidy(after["on_hand"] - before["on_hand"]),
            "available": after["available"],
            "available_adjustment": _tidy(after["available"] - before["available"]),
        }

    def _stamp(self) -> int:
        """The time of a change made now: the clock, but never before the generated history's end."""
        return max(int(time.time()), self._history_end + 1)

    def _touch_levels(self, skus: list[str]) -> None:
        stamp = self._stamp()
        for sku in skus:
            self._level_updated[sku] = stamp

    @staticmethod
    def _now(collection: _Collection) -> int:
        """Creation time for a new record: the clock, but always after the newest record of its list."""
        latest = collection.created[-1] if collection.created else 0
        return max(int(time.time()), latest + 1)
