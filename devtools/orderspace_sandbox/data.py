"""Deterministic sample data for one wholesale fashion brand's Orderspace account.

Everything comes from one `random.Random(seed)` and a fixed `end_date`, never from the global random state or
the clock, so the same (seed, scale, end_date) always gives the same account, byte for byte.

Consistency the generator guarantees (and the tests check):
- order `net_total` = sum of line `sub_total` (shipping lines included);
  `gross_total` = net + sum of `tax_amount`;
- each order line's `dispatched` = the quantities of the dispatch lines pointing at it; an order is
  `fulfilled` exactly when every non-shipping line is fully dispatched, `part_fulfilled` when some of it is,
  and every other status has nothing dispatched;
- invoice lines copy the order's lines and its totals; paid invoices carry payments summing to `gross_total`;
- creation timestamps strictly increase in creation order (invoices: their hidden creation time, which is
  not their `invoice_date`: some invoices are back-dated or forward-dated by weeks, see `SKEWED_EVERY`);
- the most recent ~10% of orders are still open (`new`, `invoiced`, `released`, `preorder`), so the push
  side has work to do.

Order statuses: the documented set (`ORDER_STATUSES`). Their meaning in generated data (the reference lists
the names only, so the mapping is a guess): `new` just placed; `invoiced` has a pro forma invoice, nothing
sent; `released` released to the warehouse, nothing sent yet; `preorder` its lines wait on a preorder
window; `part_fulfilled` / `fulfilled` as above; `standing_order` the template of a repeat order (other
orders point at it by `standing_order_id`; it is never dispatched itself); `cancelled`.

Quantities are JSON numbers, as documented: whole for garments (`5`), decimal for fabric sold by the
metre (`2.5`), in order, dispatch and invoice lines and in stock levels.
"""

from __future__ import annotations

import calendar
import gc
import math
import string
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random
from typing import Any

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_SPACE = 36**8

# (customers, products, orders, days of orders)
SCALE_SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (12, 10, 150, 60),
    "small": (100, 60, 1500, 365),
    "large": (2000, 400, 40000, 3 * 365),
}

RECENT_SHARE = 0.10  # the newest orders are left open for the push side
DAY = 86400
ORDER_STATUSES = (
    "new", "invoiced", "released", "part_fulfilled", "preorder", "fulfilled", "standing_order", "cancelled",
)  # fmt: skip
# Every SKEWED_EVERY-th invoice (by position in generation) is back-dated, and the one half-way between is
# forward-dated, by 14-60 days against its creation: deterministic, so every scale and seed has some.
SKEWED_EVERY = 25
METRE = "Per metre"  # the Size option of fabric sold by the metre: decimal quantities


def iso_time(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch_of(day: date) -> int:
    return calendar.timegm(day.timetuple())


def money(value: float) -> float:
    return round(value + 1e-9, 2)


def order_line_record(
    *,
    line_id: str,
    sku: str,
    name: str,
    options: str,
    grouping: dict[str, Any] | None,
    shipping: bool,
    quantity: float,
    unit_price: float,
    tax: dict[str, Any],
) -> dict[str, Any]:
    """One order line in the API's shape, nothing yet invoiced, paid or dispatched."""
    sub_total = money(quantity * unit_price)
    return {
        "id": line_id,
        "sku": sku,
        "name": name,
        "options": options,
        "grouping_category": grouping,
        "shipping": shipping,
        "quantity": quantity,
        "unit_price": unit_price,
        "sub_total": sub_total,
        "tax_rate_id": tax["id"],
        "tax_name": tax["name"],
        "tax_rate": tax["rate"],
        "tax_amount": money(sub_total * tax["rate"] / 100),
        "preorder_window_id": "",
        "on_hold": False,
        "invoiced": 0,
        "paid": 0,
        "dispatched": 0,
    }


class IdMaker:
    """Two-letter prefix + `_` + 8 random [a-z0-9]; unique across the whole account."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def new(self, prefix: str) -> str:
        getrandbits = self._rng.getrandbits
        while True:
            number = getrandbits(42)  # 36**8 < 2**42: draw 42 bits, keep draws below 36**8 (no bias)
            if number >= ID_SPACE:
                continue
            chars = []
            for _ in range(8):
                number, digit = divmod(number, 36)
                chars.append(ID_ALPHABET[digit])
            candidate = f"{prefix}_{''.join(chars)}"
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def reserve(self, identifier: str) -> None:
        self._used.add(identifier)


@dataclass
class Account:
    """The generated records, in creation order (oldest first), plus each record's creation time."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    created: dict[str, list[int]] = field(default_factory=dict)  # epoch seconds, parallel to records
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> level
    next_order_number: int = 1001


FIRST_NAMES = [
    "Alexa", "Amelia", "Bella", "Clara", "Daisy", "Elsie", "Freya", "Grace", "Hattie", "Iris", "Jasmine",
    "Kitty", "Luna", "Mabel", "Nora", "Olive", "Poppy", "Ruby", "Sadie", "Tilly", "Una", "Violet", "Willow",
    "Zara", "Esme", "Florence", "Ivy", "Maya", "Rosa", "Stella",
]  # fmt: skip
LAST_NAMES = [
    "Dogherty", "Hughes", "Patel", "Okafor", "Lindqvist", "Moreau", "Schmidt", "Byrne", "Evans", "Khan",
    "Murphy", "Rossi", "Walsh", "Ahmed", "Taylor", "Brown", "Nowak", "Garcia", "Jones", "Clarke",
]  # fmt: skip
COMPANY_WORDS = [
    "Blue Sky", "Willow", "Harbour", "Juniper", "Marigold", "Thistle", "Copper Kettle", "Meadow", "Saffron",
    "Linden", "Bramble", "Kingfisher", "Lark", "Oak & Ivy", "Seashell", "Wren", "Heather", "Fern", "Orchard",
    "Pebble", "Cobalt", "Magpie", "Primrose", "Elm Street", "Foxglove", "Sorrel", "Hazel", "Indigo", "Quince",
]  # fmt: skip
COMPANY_SUFFIXES = ["Boutique", "Ltd", "& Co", "Store", "Emporium", "Clothing", "Collective", "Studio"]
STREETS = [
    "High Street",
    "Market Place",
    "Church Lane",
    "Mill Road",
    "Station Road",
    "Queen Street",
    "The Green",
]
# (city, postcode prefix, country)
CITIES = [
    ("Bristol", "BS1", "GB"), ("Bath", "BA1", "GB"), ("London", "N1", "GB"), ("Leeds", "LS1", "GB"),
    ("Manchester", "M1", "GB"), ("York", "YO1", "GB"), ("Brighton", "BN1", "GB"), ("Edinburgh", "EH1", "GB"),
    ("Cardiff", "CF10", "GB"), ("Norwich", "NR1", "GB"), ("Exeter", "EX1", "GB"), ("Oxford", "OX1", "GB"),
    ("Dublin", "D02", "IE"), ("Paris", "75003", "FR"), ("Berlin", "10115", "DE"), ("Amsterdam", "1012", "NL"),
    ("New York", "10013", "US"),
]  # fmt: skip

# category name -> (sizes, garment types, tax rate name)
GARMENTS: dict[str, tuple[list[str], list[str]]] = {
    "Dresses": (["8", "10", "12", "14", "16"], ["Dress", "Pinafore"]),
    "Tops": (["XS", "S", "M", "L", "XL"], ["Top", "Blouse", "Shirt"]),
    "Knitwear": (["XS", "S", "M", "L", "XL"], ["Jumper", "Cardigan"]),
    "Trousers": (["8", "10", "12", "14", "16"], ["Trousers", "Jeans"]),
    "Skirts": (["8", "10", "12", "14", "16"], ["Skirt"]),
    "Outerwear": (["XS", "S", "M", "L", "XL"], ["Jacket", "Coat"]),
    "Accessories": (["OS"], ["Scarf", "Bag", "Hat"]),
    "Fabric": ([METRE], ["Linen", "Cotton Lawn", "Needlecord"]),
}
COLOURS = [
    ("RED", "Red"), ("NAV", "Navy"), ("BLK", "Black"), ("GRN", "Green"), ("CRM", "Cream"), ("MUS", "Mustard"),
    ("PNK", "Pink"), ("CHR", "Charcoal"), ("BLU", "Blue"), ("RST", "Rust"),
]  # fmt: skip
COMPOSITIONS = [
    "100% cotton",
    "100% linen",
    "80% wool, 20% nylon",
    "100% organic cotton",
    "55% linen, 45% viscose",
]
ORIGINS = ["India", "Portugal", "United Kingdom", "Turkey", "China"]
SHIPPING = [("Standard Delivery", 6.5), ("Next Day Delivery", 9.95), ("Special Delivery", 12.5)]
WEBHOOK_EVENTS = [
    "customer.created", "customer.updated", "customer.deleted", "dispatch.created", "inventory_level.updated",
    "invoice.created", "invoice.deleted", "payment.created", "product.created", "product.updated",
    "product.deleted", "order.created", "order.updated", "order.deleted",
]  # fmt: skip


def _customer_status(roll: float) -> str:
    """The documented customer statuses (new, active, closed), mostly active."""
    return "new" if roll < 0.03 else "closed" if roll < 0.09 else "active"


def _strictly_increasing(times: list[int]) -> list[int]:
    times.sort()
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            times[i] = times[i - 1] + 1
    return times


class _Generator:
    def __init__(self, seed: int, scale: str, end_date: date) -> None:
        self.rng = Random(seed)
        self.ids = IdMaker(self.rng)
        self.n_customers, self.n_products, self.n_orders, self.days = SCALE_SIZES[scale]
        self.end_date = end_date
        self.start_date = end_date - timedelta(days=self.days - 1)
        self.start = epoch_of(self.start_date)
        self.end = epoch_of(end_date) + DAY - 1  # last second of end_date
        self.account = Account()

    def add(self, resource: str, records: list[dict[str, Any]], created: list[int]) -> None:
        self.account.records[resource] = records
        self.account.created[resource] = created

    # --- reference data --------------------------------------------------------------------------

    def reference_data(self) -> None:
        new = self.ids.new
        early = self.start - 400 * DAY
        self.tax_rates: list[dict[str, Any]] = [
            {"id": new("tr"), "name": "Standard", "rate": 20.0},
            {"id": new("tr"), "name": "Reduced", "rate": 5.0},
            {"id": new("tr"), "name": "Zero", "rate": 0.0},
        ]
        self.payment_terms: list[dict[str, Any]] = [
            {
                "id": new("pt"),
                "name": name,
                "days_due": days,
                "deposit_pecentage": dep,
                "deposit_days_due": dd,
            }
            for name, days, dep, dd in [
                ("Pro Forma", 0, 0.0, 0),
                ("15 Days", 15, 0.0, 0),
                ("30 Days", 30, 0.0, 0),
                ("50% Deposit, 60 Days", 60, 50.0, 7),
            ]
        ]
        self.customer_groups: list[dict[str, Any]] = [
            {"id": new("cg"), "name": name} for name in ("Default", "Independent Retailers", "Distributors")
        ]
        self.price_lists: list[dict[str, Any]] = [
            {"id": new("pl"), "name": "Trade", "currency": "GBP", "conversion_rate": 100},
            {"id": new("pl"), "name": "Euros", "currency": "EUR", "conversion_rate": 117},
            {"id": new("pl"), "name": "US Dollars", "currency": "USD", "conversion_rate": 127},
        ]
        self.categories: list[dict[str, Any]] = []
        for name in GARMENTS:
            self.categories.append(
                {"id": new("ca"), "name": name, "description": "", "active": True, "parent_id": None}
            )
        collections = {
            "id": new("ca"), "name": "Collections", "description": "", "active": True, "parent_id": None,
        }  # fmt: skip
        self.categories.append(collections)
        year = self.end_date.year
        self.seasons: list[dict[str, Any]] = []
        for season_name in (
            f"Spring / Summer {year}",
            f"Autumn / Winter {year}",
            f"Spring / Summer {year + 1}",
        ):
            season: dict[str, Any] = {
                "id": new("ca"),
                "name": season_name,
                "description": "",
                "active": True,
                "parent_id": collections["id"],
            }
            self.categories.append(season)
            self.seasons.append(season)
        self.categories[-1]["active"] = self.rng.random() < 0.5
        self.preorder_windows: list[dict[str, Any]] = []
        for offset, season in zip((30, 120), self.seasons[1:], strict=True):
            deadline = self.end_date + timedelta(days=offset)
            self.preorder_windows.append(
                {
                    "id": new("pw"),
                    "name": season["name"].replace(" / ", "/"),
                    "deadline": deadline.isoformat(),
                    "due": (deadline + timedelta(days=45)).isoformat(),
                    "categories": [{"id": season["id"], "name": season["name"]}],
                }
            )
        for resource, records in [
            ("tax_rates", self.tax_rates),
            ("payment_terms", self.payment_terms),
            ("customer_groups", self.customer_groups),
            ("price_lists", self.price_lists),
            ("categories", self.categories),
            ("preorder_windows", self.preorder_windows),
        ]:
            self.add(resource, records, [early + i for i in range(len(records))])

    # --- products and inventory ------------------------------------------------------------------

    def products(self) -> None:
        rng, new = self.rng, self.ids.new
        garment_categories = {c["name"]: c for c in self.categories[: len(GARMENTS)]}
        standard, reduced = self.tax_rates[0], self.tax_rates[1]
        used_codes: dict[str, int] = {}
        products: list[dict[str, Any]] = []
        self.variants: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (product, variant)
        self.variant_tax: dict[str, dict[str, Any]] = {}
        clothing = [name for name in GARMENTS if name != "Fabric"]
        for index in range(self.n_products):
            # One product in twenty is fabric sold by the metre, the second one always (every scale has some).
            category_name = "Fabric" if index == 1 or rng.random() < 0.05 else rng.choice(clothing)
            sizes, types = GARMENTS[category_name]
            first, garment = rng.choice(FIRST_NAMES), rng.choice(types)
            prefix = first[0] + garment[0]
            used_codes[prefix] = used_codes.get(prefix, 0) + 1
            code = f"{prefix}{used_codes[prefix]:02d}"
            base_price = rng.randrange(16, 120) / 2
            colours = rng.sample(COLOURS, rng.randint(1, 3))
            if len(sizes) > 1:
                lo = rng.randint(0, 2)
                sizes = sizes[lo : lo + rng.randint(3, 5)]
            season = rng.choice(self.seasons)
            category = garment_categories[category_name]
            product: dict[str, Any] = {
                "id": new("pr"),
                "code": code,
                "name": f"{first} {garment}",
                "description": rng.choice(
                    ["", "Fully lined", "Relaxed fit", "Limited run", "Summer colours"]
                ),
                "active": rng.random() < 0.93,
                "tariff_code": f"{rng.randint(6101, 6117)}.{rng.randint(10, 99)}",
                "country_of_origin": rng.choice(ORIGINS),
                "composition": rng.choice(COMPOSITIONS),
                "variant_options": ["Colour", "Size"],
                "product_variants": [],
                "categories": [
                    {"id": category["id"], "name": category["name"]},
                    {"id": season["id"], "name": season["name"]},
                ],
                "grouping_category_id": category["id"],
            }
            tax = reduced if category_name == "Accessories" and rng.random() < 0.3 else standard
            for colour_code, colour in colours:
                for size in sizes:
                    unit_price = base_price
                    variant: dict[str, Any] = {
                        "id": new("pv"),
                        "sku": f"{code}-{colour_code}-{'MTR' if size == METRE else size}",
                        "barcode": str(rng.randrange(10**12, 10**13)),
                        "options": {"Colour": colour, "Size": size},
                        "unit_price": unit_price,
                        "price_list_prices": [
                            {"id": pl["id"], "unit_price": money(unit_price * pl["conversion_rate"] / 100)}
                            for pl in self.price_lists[1:]
                        ],
                        "rrp": float(math.ceil(unit_price * 2.4)),
                        "backorder": rng.random() < 0.3,
                        "minimum": 1 if METRE in sizes else rng.choice([1, 1, 2, 3]),
                        "multiple": 0.5 if METRE in sizes else rng.choice([None, None, 1, 2]),
                        "weight": rng.choice([0.0, 0.3, 0.5, 1.0]),
                    }
                    product["product_variants"].append(variant)
                    self.variants.append((product, variant))
                    self.variant_tax[variant["sku"]] = tax
            products.append(product)
        created = _strictly_increasing(
            [self.start - rng.randrange(30 * DAY, 700 * DAY) for _ in range(len(products))]
        )
        self.add("products", products, created)
        for _, variant in sorted(self.variants, key=lambda pv: pv[1]["sku"]):
            on_hand: float = rng.choice([0, rng.randint(0, 10), rng.randint(10, 150), rng.randint(20, 300)])
            held: float = rng.randint(0, min(int(on_hand), 8))
            if variant["options"]["Size"] == METRE:  # fabric is counted to the quarter metre
                on_hand, held = on_hand + rng.choice([0, 0.25, 0.5, 0.75]), held / 2
            self.account.inventory[variant["sku"]] = {
                "sku": variant["sku"],
                "on_hand": on_hand,
                "available": on_hand - held,
            }

    # --- customers -------------------------------------------------------------------------------

    def customers(self) -> None:
        rng, new = self.rng, self.ids.new
        n = self.n_customers
        n_before = math.ceil(n * 0.6)
        created = _strictly_increasing(
            [self.start - rng.randrange(DAY, 365 * DAY) for _ in range(n_before)]
            + [self.start + rng.randrange(0, int(self.days * 0.7) * DAY + DAY) for _ in range(n - n_before)]
        )
        names: set[str] = set()
        customers = []
        for i in range(n):
            name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"
            while name in names:
                name = f"{name} {rng.choice(CITIES)[0]}" if rng.random() < 0.7 else f"{name} {i}"
            names.add(name)
            slug = "".join(ch for ch in name.lower().replace("&", "and") if ch.isalnum())[:20] + str(i)
            city, postcode, country = (
                rng.choice(CITIES[:12]) if rng.random() < 0.8 else rng.choice(CITIES[12:])
            )
            contact = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            address = {
                "company_name": name,
                "contact_name": contact,
                "line1": f"{rng.randint(1, 180)} {rng.choice(STREETS)}",
                "line2": "",
                "city": city,
                "postal_code": postcode
                if country != "GB"
                else f"{postcode} {rng.randint(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}",
                "state": "NY" if country == "US" else "",
                "country": country,
            }
            price_list = {"GB": self.price_lists[0], "US": self.price_lists[2]}.get(
                country, self.price_lists[1]
            )
            email = f"orders@{slug}.example.com"
            customers.append(
                {
                    "id": new("cu"),
                    "company_name": name,
                    "created": iso_time(created[i]),  # `created`, as the real API sends (docs: created_at)
                    "status": _customer_status(rng.random()),
                    "reference": f"C{1000 + i}" if rng.random() < 0.5 else "",
                    "buyers": [
                        {"name": contact, "email_address": f"{contact.split()[0].lower()}@{slug}.example.com"}
                    ],
                    "phone": f"01632 {rng.randint(960000, 960999)}",
                    "email_addresses": {
                        "orders": email,
                        "dispatches": email,
                        "invoices": f"accounts@{slug}.example.com",
                    },
                    "tax_number": f"GB{rng.randint(100000000, 999999999)}" if rng.random() < 0.6 else "",
                    "tax_rate_id": None if country == "GB" else self.tax_rates[2]["id"],
                    "addresses": [address],
                    "minimum_spend": rng.choice([0.0, 100.0, 150.0, 250.0]),
                    "payment_terms_id": rng.choice(self.payment_terms)["id"],
                    "customer_group_id": rng.choice(self.customer_groups)["id"],
                    "price_list_id": price_list["id"],
                }
            )
        self.customer_created = created
        self.add("customers", customers, created)

    # --- orders, dispatches, invoices ------------------------------------------------------------

    def _order_line(
        self,
        customer: dict[str, Any],
        price_list: dict[str, Any],
        product: dict[str, Any],
        variant: dict[str, Any],
    ) -> dict[str, Any]:
        rng = self.rng
        if price_list["currency"] == "GBP":
            unit_price = variant["unit_price"]
        else:
            unit_price = next(
                p["unit_price"] for p in variant["price_list_prices"] if p["id"] == price_list["id"]
            )
        tax = self.tax_by_id.get(customer["tax_rate_id"]) or self.variant_tax[variant["sku"]]
        quantity: float = variant["minimum"] * rng.randint(1, 6)
        if variant["options"]["Size"] == METRE:
            quantity = rng.randint(2, 40) / 2  # 1.0 .. 20.0 metres in half metres
        grouping = self.category_by_id[product["grouping_category_id"]]
        return order_line_record(
            line_id=self.ids.new("ol"),
            sku=variant["sku"],
            name=product["name"],
            options=f"Colour: {variant['options']['Colour']}, Size: {variant['options']['Size']}",
            grouping={"id": grouping["id"], "name": grouping["name"]},
            shipping=False,
            quantity=quantity,
            unit_price=unit_price,
            tax=tax,
        )

    def orders(self) -> None:
        rng, new = self.rng, self.ids.new
        self.tax_by_id = {t["id"]: t for t in self.tax_rates}
        self.category_by_id = {c["id"]: c for c in self.categories}
        price_list_by_id = {p["id"]: p for p in self.price_lists}
        terms_by_id = {t["id"]: t for t in self.payment_terms}
        customers = self.account.records["customers"]
        times = _strictly_increasing(
            [
                self.start + rng.randrange(self.days) * DAY + rng.randrange(7 * 3600, 20 * 3600)
                for _ in range(self.n_orders)
            ]
        )
        recent_from = int(self.n_orders * (1 - RECENT_SHARE))
        orders: list[dict[str, Any]] = []
        dispatches: list[tuple[int, dict[str, Any]]] = []
        invoices: list[tuple[int, dict[str, Any]]] = []
        customer_by_id = {c["id"]: c for c in customers}
        self.order_by_id: dict[str, dict[str, Any]] = {}
        templates: list[dict[str, Any]] = []  # standing orders so far
        for index, created in enumerate(times):
            standing_order_id = None
            if templates and rng.random() < 0.03:  # a repeat order generated by a standing order
                template = rng.choice(templates)
                customer, standing_order_id = customer_by_id[template["customer_id"]], template["id"]
            else:
                known = max(1, bisect_right(self.customer_created, created))
                customer = customers[rng.randrange(known)]
            price_list = price_list_by_id[customer["price_list_id"]]
            shipping_name, shipping_price = rng.choice(SHIPPING)
            picks = rng.sample(
                self.variants, min(len(self.variants), rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 8]))
            )
            lines = [self._order_line(customer, price_list, product, variant) for product, variant in picks]
            if rng.random() < 0.9:
                tax = self.tax_by_id.get(customer["tax_rate_id"]) or self.tax_rates[0]
                shipping_unit = money(shipping_price * price_list["conversion_rate"] / 100)
                lines.append(
                    {
                        "id": new("ol"),
                        "sku": "",
                        "name": shipping_name,
                        "options": "",
                        "grouping_category": None,
                        "shipping": True,
                        "quantity": 1,
                        "unit_price": shipping_unit,
                        "sub_total": shipping_unit,
                        "tax_rate_id": tax["id"],
                        "tax_name": tax["name"],
                        "tax_rate": tax["rate"],
                        "tax_amount": money(shipping_unit * tax["rate"] / 100),
                        "preorder_window_id": "",
                        "on_hold": False,
                        "invoiced": 0,
                        "paid": 0,
                        "dispatched": 0,
                    }
                )
            net_total = money(sum(line["sub_total"] for line in lines))
            address = customer["addresses"][0]
            created_day = date(*time.gmtime(created)[:3])
            order = {
                "id": new("or"),
                "number": self.account.next_order_number,
                "created": iso_time(created),
                "status": "new",
                "customer_id": customer["id"],
                "company_name": customer["company_name"],
                "phone": customer["phone"],
                "email_addresses": customer["email_addresses"],
                "delivery_date": (created_day + timedelta(days=rng.randint(1, 14))).isoformat(),
                "reference": "",
                "internal_note": "",
                "customer_po_number": f"PO-{rng.randint(1000, 99999)}" if rng.random() < 0.4 else "",
                "customer_note": rng.choice(
                    ["", "", "", "Please deliver before noon", "Leave with reception"]
                ),
                "standing_order_id": standing_order_id,
                "shipping_type": shipping_name if lines[-1]["shipping"] else "",
                "shipping_address": address,
                "billing_address": address,
                "order_lines": lines,
                "currency": price_list["currency"],
                "net_total": net_total,
                "gross_total": money(net_total + sum(line["tax_amount"] for line in lines)),
            }
            self.account.next_order_number += 1
            orders.append(order)
            self.order_by_id[order["id"]] = order
            if index >= recent_from:
                self._open_order(order, customer, terms_by_id, created, templates, invoices)
                continue
            roll = rng.random()
            if roll < 0.03:
                order["status"] = "cancelled"
                continue
            if roll < 0.04 and standing_order_id is None:
                order["status"] = "standing_order"
                templates.append(order)
                continue
            dispatched_any = self._dispatch_history(order, created, partial=roll < 0.09, out=dispatches)
            if dispatched_any:
                invoices.append(self._invoice(order, customer, terms_by_id, created, proforma=False))
        self.add("orders", orders, times)
        dispatches.sort(key=lambda pair: pair[0])
        dispatch_times = _strictly_increasing([t for t, _ in dispatches])
        for t, (_, dispatch) in zip(dispatch_times, dispatches, strict=True):
            dispatch["created"] = iso_time(t)
        self.add("dispatches", [d for _, d in dispatches], dispatch_times)
        self._skew_invoice_dates(invoices)
        invoices.sort(key=lambda pair: pair[0])
        invoice_times = _strictly_increasing([t for t, _ in invoices])
        self.add("invoices", [inv for _, inv in invoices], invoice_times)

    def _open_order(
        self,
        order: dict[str, Any],
        customer: dict[str, Any],
        terms_by_id: dict[str, dict[str, Any]],
        created: int,
        templates: list[dict[str, Any]],
        invoices: list[tuple[int, dict[str, Any]]],
    ) -> None:
        """A recent order, nothing dispatched: new, invoiced (pro forma), released, preorder or standing."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            order["status"] = "invoiced"
            invoices.append(self._invoice(order, customer, terms_by_id, created, proforma=True))
        elif roll < 0.65:
            order["status"] = "new"
        elif roll < 0.85:
            order["status"] = "released"
        elif roll < 0.97 or order["standing_order_id"] is not None:
            order["status"] = "preorder"
            window = rng.choice(self.preorder_windows)
            order["delivery_date"] = window["due"]
            for line in order["order_lines"]:
                if not line["shipping"]:
                    line["preorder_window_id"] = window["id"]
        else:
            order["status"] = "standing_order"
            templates.append(order)

    def _skew_invoice_dates(self, invoices: list[tuple[int, dict[str, Any]]]) -> None:
        """Back-date and forward-date some invoices by 14-60 days against their creation, as users do."""
        for index, (_, invoice) in enumerate(invoices):
            if index % SKEWED_EVERY not in (SKEWED_EVERY // 2, SKEWED_EVERY - 1):
                continue
            shift = self.rng.randint(14, 60) * (-1 if index % SKEWED_EVERY == SKEWED_EVERY - 1 else 1)
            invoice_day = date.fromisoformat(invoice["invoice_date"]) + timedelta(days=shift)
            due_day = date.fromisoformat(invoice["due_date"]) + timedelta(days=shift)
            invoice["invoice_date"], invoice["due_date"] = invoice_day.isoformat(), due_day.isoformat()
            if invoice["deposit"]:
                deposit_day = date.fromisoformat(invoice["deposit"]["due_date"]) + timedelta(days=shift)
                invoice["deposit"]["due_date"] = deposit_day.isoformat()
            if invoice_day > self.end_date:  # forward-dated into the future: not paid yet
                invoice["paid"], invoice["payments"] = False, []
                for order in invoice["orders"]:
                    for line in self.order_by_id[order["id"]]["order_lines"]:
                        line["paid"] = 0
            for payment in invoice["payments"]:
                payment["payment_date"] = max(payment["payment_date"], invoice_day.isoformat())

    def _dispatch_history(
        self, order: dict[str, Any], created: int, *, partial: bool, out: list[tuple[int, dict[str, Any]]]
    ) -> bool:
        """Dispatch an older order in one or two goes (or part of it); returns whether anything was sent."""
        rng = self.rng
        goods = [line for line in order["order_lines"] if not line["shipping"]]
        first_at = created + rng.randrange(DAY, 5 * DAY)
        if first_at > self.end:
            order["status"] = "released"
            return False
        if partial:
            plan = [[(line, self._part_of(line["quantity"], first=i == 0)) for i, line in enumerate(goods)]]
        elif len(goods) > 1 and rng.random() < 0.2:
            cut = rng.randint(1, len(goods) - 1)
            plan = [
                [(line, line["quantity"]) for line in goods[:cut]],
                [(line, line["quantity"]) for line in goods[cut:]],
            ]
        else:
            plan = [[(line, line["quantity"]) for line in goods]]
        at = first_at
        for step, batch in enumerate(plan):
            if step and (at := at + rng.randrange(DAY, 7 * DAY)) > self.end:
                break
            dispatch_lines = []
            for line, quantity in batch:
                if quantity <= 0:
                    continue
                line["dispatched"] += quantity
                dispatch_lines.append(
                    {
                        "order_line_id": line["id"],
                        "sku": line["sku"],
                        "name": line["name"],
                        "options": line["options"],
                        "quantity": quantity,
                    }
                )
            out.append((at, self._dispatch_record(order, dispatch_lines)))
        done = all(line["dispatched"] >= line["quantity"] for line in goods)
        order["status"] = "fulfilled" if done else "part_fulfilled"
        return True

    def _part_of(self, quantity: float, *, first: bool) -> float:
        """Less than all of a line's quantity (at least something on the first line)."""
        if isinstance(quantity, int):
            return max(1, quantity // 2) if first else self.rng.randint(0, quantity - 1)
        half = math.floor(quantity) / 2  # decimal (fabric): half metres, 1.0 -> 0.5
        return half if first else self.rng.choice([0, half])

    def _dispatch_record(self, order: dict[str, Any], dispatch_lines: list[dict[str, Any]]) -> dict[str, Any]:
        comments = self.rng.choice(["", "Sent by Royal Mail", "DPD"])
        return dispatch_record(self.ids.new("di"), order, "", comments, dispatch_lines)

    def _invoice(
        self,
        order: dict[str, Any],
        customer: dict[str, Any],
        terms_by_id: dict[str, dict[str, Any]],
        order_created: int,
        *,
        proforma: bool,
    ) -> tuple[int, dict[str, Any]]:
        """(creation time, invoice): a pro forma is raised with its order, others 0-3 days later."""
        rng = self.rng
        created = order_created if proforma else order_created + rng.randrange(0, 4 * DAY)
        created = min(created, self.end)
        invoice_day = date(*time.gmtime(created)[:3])
        terms = terms_by_id[customer["payment_terms_id"]]
        due_day = invoice_day + timedelta(days=terms["days_due"])
        gross = order["gross_total"]
        paid = False
        payments: list[dict[str, Any]] = []
        if not proforma:
            paid = rng.random() < (0.93 if due_day < self.end_date else 0.4)
        if paid:
            latest = max(0, min(terms["days_due"] + 5, (self.end_date - invoice_day).days))
            pay_day = invoice_day + timedelta(days=rng.randint(0, latest))
            amounts = [gross]
            if terms["deposit_pecentage"]:
                deposit = money(gross * terms["deposit_pecentage"] / 100)
                amounts = [deposit, money(gross - deposit)]
            for amount in amounts:
                card = rng.random() < 0.5
                payments.append(
                    {
                        "amount": amount,
                        "payment_date": pay_day.isoformat(),
                        "source": "card" if card else "bank_transfer",
                        "description": f"Visa ending {rng.randint(1000, 9999)}" if card else "Bank transfer",
                        "reference": f"pi_{''.join(rng.choices(string.ascii_letters + string.digits, k=24))}"
                        if card
                        else f"BT{rng.randint(100000, 999999)}",
                    }
                )
        for line in order["order_lines"]:
            if not proforma:
                line["invoiced"] = line["quantity"]
                line["paid"] = line["quantity"] if paid else 0
        invoice = {
            "id": self.ids.new("iv"),
            "number": f"INV-{order['number']}",
            "invoice_date": invoice_day.isoformat(),
            "customer_id": customer["id"],
            "company_name": customer["company_name"],
            "email_address": customer["email_addresses"]["invoices"],
            "orders": [{"id": order["id"], "number": order["number"]}],
            "payment_terms": terms["name"],
            "due_date": due_day.isoformat(),
            "paid": paid,
            "proforma": proforma,
            "deposit": {
                "percentage": terms["deposit_pecentage"],
                "due_date": (invoice_day + timedelta(days=terms["deposit_days_due"])).isoformat(),
            }
            if terms["deposit_pecentage"]
            else None,
            "comments": "",
            "address": order["billing_address"],
            "invoice_lines": [
                {
                    "sku": line["sku"],
                    "name": line["name"],
                    "options": line["options"],
                    "quantity": line["quantity"],
                    "unit_price": line["unit_price"],
                    "sub_total": line["sub_total"],
                    "tax_rate": line["tax_rate"],
                    "tax_amount": line["tax_amount"],
                }
                for line in order["order_lines"]
            ],
            "currency": order["currency"],
            "net_total": order["net_total"],
            "gross_total": gross,
            "payments": payments,
        }
        return created, invoice

    def webhooks(self) -> None:
        rng, new = self.rng, self.ids.new
        hooks = []
        for name, events in [
            ("orders", ["order.created", "order.updated"]),
            ("stock", ["inventory_level.updated"]),
        ]:
            hooks.append(
                {
                    "id": new("wh"),
                    "endpoint": f"https://hooks.example.com/orderspace/{name}",
                    "events": events,
                    "signing_key": "".join(rng.choices(string.ascii_letters + string.digits, k=40)),
                }
            )
        self.add("webhooks", hooks, [self.start - 20 * DAY, self.start - 10 * DAY])


def dispatch_record(
    dispatch_id: str, order: dict[str, Any], created: str, comments: str, dispatch_lines: list[dict[str, Any]]
) -> dict[str, Any]:
    """A dispatch in API shape: what can be set (comments, lines) plus what is copied from its order."""
    return {
        "id": dispatch_id,
        "order_id": order["id"],
        "order_number": order["number"],
        "created": created,
        "comments": comments,
        "customer_note": order.get("customer_note", ""),
        "customer_po_number": order.get("customer_po_number", ""),
        "shipping_type": order.get("shipping_type", ""),
        "shipping_address": order.get("shipping_address"),
        "email_address": (order.get("email_addresses") or {}).get("dispatches", ""),
        "phone": order.get("phone", ""),
        "dispatch_lines": dispatch_lines,
    }


def generate_account(seed: int, scale: str, end_date: date) -> tuple[Account, IdMaker, Random]:
    """Build the whole account; also returns the id maker and random source for API-created records."""
    if scale not in SCALE_SIZES:
        raise ValueError(f"scale must be one of {', '.join(SCALE_SIZES)}, got {scale!r}")
    generator = _Generator(seed, scale, end_date)
    # Hundreds of thousands of new dicts trigger many full garbage collections that find nothing (no cycles
    # here); pausing the collector makes the large scale build ~35% faster.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        generator.reference_data()
        generator.products()
        generator.customers()
        generator.orders()
        generator.webhooks()
    finally:
        if was_enabled:
            gc.enable()
    return generator.account, generator.ids, generator.rng
