"""Explicit Arrow schemas for every lake table, and how each API resource maps onto them.

Design (see also `lake/__init__.py`):

- Columns keep the API's field names; nested objects are flattened with `_`
  (`shipping_address_postal_code`, `email_addresses_orders`, `grouping_category_id`).
- Arrays of line records become child tables carrying the parent's key (`order_lines.order_id`, ...).
  Lines without an id of their own (invoice lines, invoice payments, dispatch lines) get a 0-based
  `line_number`, their position in the parent record, so `(parent key, line_number)` is unique.
- Every other array (customer `buyers` and `addresses`, invoice `orders`, product `variant_options` and
  `categories`, variant `price_list_prices`, preorder window `categories`) and free-form dicts (variant
  `options`) are kept as JSON strings in one column each.
- Every table has `_loaded_at` (UTC timestamp of the write). Date-partitioned tables get their `date`
  column from the hive folder name (`date=YYYY-MM-DD`), so it is not stored inside the files.
- The declared columns come first, in a fixed order, with fixed types: the same in every partition.
  Fields the API sends that are not declared are kept as extra *string* columns (JSON for non-scalars),
  so their type never varies between partitions either. Declared fields the API stops sending are null.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import pyarrow as pa

from orderspace_pipelines.endpoints import (
    INVENTORY_LEVELS,
    LAKE_TABLES,
    PULLED,
    ChildTable,
    Endpoint,
)
from orderspace_pipelines.endpoints import INVENTORY_SNAPSHOTS as INVENTORY_SNAPSHOTS  # re-exported

STRING = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
DATE = pa.date32()
TIMESTAMP = pa.timestamp("us", tz="UTC")

LOADED_AT = "_loaded_at"
PARTITION_COLUMN = "date"
SNAPSHOT_AT = "snapshot_at"
LINE_NUMBER = "line_number"
# Column names the lake itself owns; an API field with one of these names is stored as `api_<name>`.
RESERVED_COLUMNS = frozenset({LOADED_AT, PARTITION_COLUMN})

_ADDRESS_FIELDS = (
    "company_name",
    "contact_name",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
    "country",
)
_EMAIL_FIELDS = ("orders", "dispatches", "invoices")


def _address(prefix: str) -> list[tuple[str, pa.DataType]]:
    return [(f"{prefix}_{name}", STRING) for name in _ADDRESS_FIELDS]


def _emails() -> list[tuple[str, pa.DataType]]:
    return [(f"email_addresses_{name}", STRING) for name in _EMAIL_FIELDS]


@dataclass(frozen=True)
class TableSpec:
    """One lake table: its declared columns, its key, and whether it is daily-partitioned."""

    name: str
    columns: tuple[tuple[str, pa.DataType], ...]
    key: tuple[str, ...]
    partitioned: bool = False
    parent: str | None = None  # the parent table of a child table
    parent_key: str | None = None  # the column in this table that holds the parent's `id`
    # API field names that land under another column (`created_at` -> `created`) when the record lacks it.
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def schema(self) -> pa.Schema:
        """The declared columns plus `_loaded_at` (the `date` partition column lives in the folder name)."""
        return pa.schema([*self.columns, (LOADED_AT, TIMESTAMP)])

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @cached_property
    def declared(self) -> frozenset[str]:
        """The declared column names as a set (flattening asks "is this declared?" for every field)."""
        return frozenset(self.column_names)


# How one API list lands in the lake: its endpoint declaration (`endpoints.py`).
ResourceSpec = Endpoint
ChildSpec = ChildTable


def _spec(
    name: str,
    columns: list[tuple[str, pa.DataType]],
    key: tuple[str, ...],
    *,
    aliases: dict[str, str] | None = None,
) -> TableSpec:
    return TableSpec(name, tuple(columns), key, aliases=tuple((aliases or {}).items()))


_COLUMNS: list[TableSpec] = [
    _spec(
        "customers",
        [
            ("id", STRING),
            ("company_name", STRING),
            ("created", TIMESTAMP),
            ("status", STRING),
            ("reference", STRING),
            ("internal_note", STRING),
            ("buyers", STRING),
            ("phone", STRING),
            *_emails(),
            ("tax_number", STRING),
            ("tax_rate_id", STRING),
            ("addresses", STRING),
            ("minimum_spend", FLOAT),
            ("payment_terms_id", STRING),
            ("customer_group_id", STRING),
            ("price_list_id", STRING),
        ],
        ("id",),
        # The reference documents `created_at`; recorded real responses carry `created`: either lands.
        aliases={"created_at": "created"},
    ),
    _spec(
        "orders",
        [
            ("id", STRING),
            ("number", INT),
            ("created", TIMESTAMP),
            ("status", STRING),
            ("customer_id", STRING),
            ("company_name", STRING),
            ("phone", STRING),
            *_emails(),
            ("delivery_date", DATE),
            ("reference", STRING),
            ("internal_note", STRING),
            ("customer_po_number", STRING),
            ("customer_note", STRING),
            ("standing_order_id", STRING),
            ("shipping_type", STRING),
            *_address("shipping_address"),
            *_address("billing_address"),
            ("currency", STRING),
            ("net_total", FLOAT),
            ("gross_total", FLOAT),
        ],
        ("id",),
    ),
    _spec(
        "order_lines",
        [
            ("id", STRING),
            ("order_id", STRING),
            ("sku", STRING),
            ("name", STRING),
            ("options", STRING),
            ("grouping_category_id", STRING),
            ("grouping_category_name", STRING),
            ("shipping", BOOL),
            ("quantity", FLOAT),
            ("unit_price", FLOAT),
            ("sub_total", FLOAT),
            ("tax_rate_id", STRING),
            ("tax_name", STRING),
            ("tax_rate", FLOAT),
            ("tax_amount", FLOAT),
            ("preorder_window_id", STRING),
            ("on_hold", BOOL),
            ("invoiced", FLOAT),
            ("paid", FLOAT),
            ("dispatched", FLOAT),
        ],
        ("id", "order_id"),
    ),
    _spec(
        "invoices",
        [
            ("id", STRING),
            ("number", STRING),
            ("invoice_date", DATE),
            ("customer_id", STRING),
            ("company_name", STRING),
            ("email_address", STRING),
            ("orders", STRING),
            ("payment_terms", STRING),
            ("due_date", DATE),
            ("paid", BOOL),
            ("proforma", BOOL),
            ("deposit_percentage", FLOAT),
            ("deposit_due_date", DATE),
            ("comments", STRING),
            *_address("address"),
            ("currency", STRING),
            ("net_total", FLOAT),
            ("gross_total", FLOAT),
        ],
        ("id",),
    ),
    _spec(
        "invoice_lines",
        [
            ("invoice_id", STRING),
            (LINE_NUMBER, INT),
            ("sku", STRING),
            ("name", STRING),
            ("options", STRING),
            ("quantity", FLOAT),
            ("unit_price", FLOAT),
            ("sub_total", FLOAT),
            ("tax_rate", FLOAT),
            ("tax_amount", FLOAT),
        ],
        ("invoice_id", LINE_NUMBER),
    ),
    _spec(
        "invoice_payments",
        [
            ("invoice_id", STRING),
            (LINE_NUMBER, INT),
            ("amount", FLOAT),
            ("payment_date", DATE),
            ("source", STRING),
            ("description", STRING),
            ("reference", STRING),
        ],
        ("invoice_id", LINE_NUMBER),
    ),
    _spec(
        "dispatches",
        [
            ("id", STRING),
            ("order_id", STRING),
            ("order_number", INT),
            ("created", TIMESTAMP),
            ("comments", STRING),
            ("customer_note", STRING),
            ("customer_po_number", STRING),
            ("shipping_type", STRING),
            *_address("shipping_address"),
            ("email_address", STRING),
            ("phone", STRING),
        ],
        ("id",),
    ),
    _spec(
        "dispatch_lines",
        [
            ("dispatch_id", STRING),
            (LINE_NUMBER, INT),
            ("order_line_id", STRING),
            ("sku", STRING),
            ("name", STRING),
            ("options", STRING),
            ("quantity", FLOAT),
        ],
        ("dispatch_id", LINE_NUMBER),
    ),
    _spec(
        "products",
        [
            ("id", STRING),
            ("code", STRING),
            ("name", STRING),
            ("description", STRING),
            ("active", BOOL),
            ("tariff_code", STRING),
            ("country_of_origin", STRING),
            ("composition", STRING),
            ("variant_options", STRING),
            ("categories", STRING),
            ("grouping_category_id", STRING),
            ("minimum", FLOAT),  # present when minimums are set per product (account setting)
            ("multiple", FLOAT),
        ],
        ("id",),
    ),
    _spec(
        "product_variants",
        [
            ("id", STRING),
            ("product_id", STRING),
            ("sku", STRING),
            ("barcode", STRING),
            ("options", STRING),
            ("unit_price", FLOAT),
            ("price_list_prices", STRING),
            ("rrp", FLOAT),
            ("backorder", BOOL),
            ("minimum", FLOAT),
            ("multiple", FLOAT),
            ("weight", FLOAT),
        ],
        ("id", "product_id"),
    ),
    _spec(
        "inventory_level_snapshots",
        [("sku", STRING), ("on_hand", FLOAT), ("available", FLOAT), (SNAPSHOT_AT, TIMESTAMP)],
        ("sku", SNAPSHOT_AT),
    ),
    _spec("inventory_levels", [("sku", STRING), ("on_hand", FLOAT), ("available", FLOAT)], ("sku",)),
    _spec(
        "categories",
        [
            ("id", STRING),
            ("name", STRING),
            ("description", STRING),
            ("active", BOOL),
            ("parent_id", STRING),
        ],
        ("id",),
    ),
    _spec("customer_groups", [("id", STRING), ("name", STRING)], ("id",)),
    _spec(
        "price_lists",
        [("id", STRING), ("name", STRING), ("currency", STRING), ("conversion_rate", FLOAT)],
        ("id",),
    ),
    _spec(
        "payment_terms",
        [
            ("id", STRING),
            ("name", STRING),
            ("days_due", INT),
            # The API reference spells it "deposit_pecentage"; accept both spellings.
            ("deposit_pecentage", FLOAT),
            ("deposit_percentage", FLOAT),
            ("deposit_days_due", INT),
        ],
        ("id",),
    ),
    _spec("tax_rates", [("id", STRING), ("name", STRING), ("rate", FLOAT)], ("id",)),
    _spec(
        "preorder_windows",
        [("id", STRING), ("name", STRING), ("deadline", DATE), ("due", DATE), ("categories", STRING)],
        ("id",),
    ),
]


def _placed(spec: TableSpec) -> TableSpec:
    """A table's columns and key (declared above) with its place in the lake (declared in `endpoints.py`):
    partitioned or not, and the parent table and key of a child table."""
    for endpoint in PULLED:
        if spec.name == endpoint.table:
            return replace(spec, partitioned=endpoint.partitioned)
        if spec.name == endpoint.snapshot_table:
            return replace(spec, partitioned=True)  # one folder per snapshot day
        if spec.name in {child.table for child in endpoint.children}:
            return replace(
                spec, partitioned=endpoint.partitioned, parent=endpoint.table, parent_key=endpoint.parent_key
            )
    raise ValueError(f"lake table {spec.name!r} belongs to no endpoint in endpoints.py")


TABLES: dict[str, TableSpec] = {spec.name: _placed(spec) for spec in _COLUMNS}
if set(TABLES) != set(LAKE_TABLES):
    raise ValueError(f"lake/schemas.py declares {sorted(TABLES)}, endpoints.py names {sorted(LAKE_TABLES)}")

# `inventory_levels` holds the current level of every SKU (parquet/inventory_levels/part.parquet); each
# refresh also adds a timestamped copy to `inventory_level_snapshots` (the history, in its own folder).
INVENTORY_LEVELS_VIEW = (
    INVENTORY_LEVELS  # the former name of the catalog's inventory_levels, kept for imports
)

# The order statuses of the API reference (orders model), in the order it lists them.
ORDER_STATUSES: tuple[str, ...] = (
    "new",
    "invoiced",
    "released",
    "part_fulfilled",
    "preorder",
    "fulfilled",
    "standing_order",
    "cancelled",
)

# How each pulled API list lands in the lake (declared in `endpoints.py`).
RESOURCES: dict[str, ResourceSpec] = {endpoint.resource: endpoint for endpoint in PULLED}


def table_spec(name: str) -> TableSpec:
    """The spec of a lake table; a clear error naming the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown lake table {name!r}; known tables: {', '.join(sorted(TABLES))}") from None
