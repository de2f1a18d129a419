"""Every Orderspace API list endpoint the project knows, declared once.

One `Endpoint` per list: how it pages (or not), its cursor, its single-record key, its documented filters,
the field that dates its records (and the server-side filters that bound it), the lake tables it lands in,
and the asset descriptions. Everything else derives from `ENDPOINTS`: the client's paging, paths and filter
checks (`client/`), the lake's table list and landing (`lake/`), the Dagster assets, checks and `sync
--select` (`defs/`), the CLI test's tables and bench's resource order. Column schemas stay in
`lake/schemas.py`, keyed by table. No Dagster and no HTTP here (in the spirit of a declarative source
config: dlt's `rest_api` resources, the meltano SDK's streams).

Filters: the API reference's Slate source (`source/includes/models/_<resource>.html.md`, "Parameters" of
each "List ..." section). One `TypedDict` per endpoint names its filters; each annotation carries the
filter's `Kind`, which decides how `client/filters.py` checks and formats a value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, TypedDict, get_type_hints

DateLike = date | datetime | str

ORDER_STATUSES = frozenset(
    {"new", "invoiced", "released", "part_fulfilled", "preorder", "fulfilled", "standing_order", "cancelled"}
)
CUSTOMER_STATUSES = frozenset({"new", "active", "closed"})


class Kind(enum.Enum):
    DATETIME = "datetime"
    DATE = "date"
    BOOL = "bool"
    NUMBER = "number"
    TEXT = "text"
    ORDER_STATUS = "order status"
    CUSTOMER_STATUS = "customer status"


DateTimeFilter = Annotated[DateLike, Kind.DATETIME]
DateFilter = Annotated[date | str, Kind.DATE]
BoolFilter = Annotated[bool | str, Kind.BOOL]
TextFilter = Annotated[str, Kind.TEXT]


class CustomerFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    company_name: TextFilter
    buyers_email_address: TextFilter
    status: Annotated[str, Kind.CUSTOMER_STATUS]
    reference: TextFilter
    payment_terms_id: TextFilter
    customer_group_id: TextFilter
    price_list_id: TextFilter


class OrderFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    created_before: DateTimeFilter
    delivery_date_since: DateFilter
    delivery_date_before: DateFilter
    number: Annotated[int | str, Kind.NUMBER]
    status: Annotated[str, Kind.ORDER_STATUS]
    reference: TextFilter
    customer_id: TextFilter
    standing_order_id: TextFilter


class DispatchFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    created_before: DateTimeFilter
    order_id: TextFilter


class InvoiceFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    invoice_date_after: DateFilter
    invoice_date_before: DateFilter
    due_date_after: DateFilter
    due_date_before: DateFilter
    number: Annotated[int | str, Kind.TEXT]  # e.g. "INV-1288"
    customer_id: TextFilter
    paid: BoolFilter
    proforma: BoolFilter


class ProductFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    updated_since: DateTimeFilter
    code: TextFilter
    name: TextFilter
    active: BoolFilter
    category_id: TextFilter


class InventoryLevelFilters(TypedDict, total=False):
    created_since: DateTimeFilter
    updated_since: DateTimeFilter
    product_id: TextFilter
    sku: TextFilter


class CategoryFilters(TypedDict, total=False):
    name: TextFilter
    parent_id: TextFilter


class NoFilters(TypedDict, total=False):
    """The unpaginated lists (customer groups, price lists, payment terms, tax rates, preorder windows,
    webhooks) document no parameters."""


@dataclass(frozen=True)
class ChildTable:
    """An array of line records inside a parent record that becomes its own lake table."""

    field: str  # the array's field name in the parent record
    table: str
    numbered: bool  # add `line_number` (the line's position) because the lines have no id
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One API list endpoint and how it lands in the lake (the lake calls it a resource spec)."""

    resource: str  # the list's path and response key, e.g. "orders"
    filters: type  # the TypedDict of its documented list filters
    singular: str | None = None  # the single-record key (`{"order": {...}}`) where the API has GET /<id>
    paginated: bool = True  # False: documented as returning everything at once (no `limit` is sent)
    key: str = "id"  # the pagination cursor, and the parent table's key
    pulled: bool = True  # landed in the lake by the pull (False: managed only, e.g. webhooks)
    table: str = ""  # the lake's parent table (default: the resource's name)
    description: str = ""  # the parent table's asset description
    children: tuple[ChildTable, ...] = ()
    date_field: str | None = None  # the field whose date picks the partition (None: refreshed whole)
    # How many days out of order (by `date_field`) the API's newest-first listing may be. 0 means strictly
    # ordered; invoices are listed by creation, which only roughly follows the invoice date.
    order_slack_days: int = 0
    # The list's server-side bounds on `date_field` (see `lake.sweep.range_filters`): "created" for
    # `created_since`/`created_before`, "invoice_date" for `invoice_date_after`/`invoice_date_before`.
    range_filter: str | None = None
    # The list takes `updated_since`: after a first full load the table is refreshed with the records changed
    # since the previous pull, merged by `key` (see `lake.sweep.WholeLanding`).
    updated_since: bool = False
    snapshot_table: str | None = None  # a history table that gets a timestamped copy of every refresh
    filter_kinds: dict[str, Kind] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.table:
            object.__setattr__(self, "table", self.resource)
        hints = get_type_hints(self.filters, include_extras=True)
        kinds = {name: hint.__metadata__[0] for name, hint in hints.items()}
        object.__setattr__(self, "filter_kinds", kinds)

    @property
    def partitioned(self) -> bool:
        """Landed in daily partitions (by `date_field`) rather than refreshed whole."""
        return self.date_field is not None

    @property
    def tables(self) -> tuple[str, ...]:
        """The lake tables one listing fills: the parent, its children, then its snapshot table."""
        if not self.pulled:
            return ()
        snapshot = () if self.snapshot_table is None else (self.snapshot_table,)
        return (self.table, *(child.table for child in self.children), *snapshot)

    @property
    def parent_key(self) -> str:
        """The column of a child table that holds its parent's key: `order_id`, `invoice_id`, ..."""
        return f"{self.singular or self.resource}_{self.key}"

    def descriptions(self) -> dict[str, str]:
        """Asset description by table (the snapshot table belongs to the parent's asset)."""
        if not self.pulled:
            return {}
        return {self.table: self.description, **{child.table: child.description for child in self.children}}


INVENTORY_LEVELS = "inventory_levels"
INVENTORY_SNAPSHOTS = "inventory_level_snapshots"


def _reference(resource: str, what: str) -> Endpoint:
    """A small reference list: unpaginated, unfiltered, refreshed whole."""
    return Endpoint(resource, NoFilters, paginated=False, description=f"{what}, refreshed whole.")


# In the order of the contract's tables (the catalog's `summary`, the demo's table list).
ENDPOINTS: dict[str, Endpoint] = {
    endpoint.resource: endpoint
    for endpoint in [
        Endpoint(
            "customers",
            CustomerFilters,
            singular="customer",
            description="Customers (companies ordering), refreshed whole.",
        ),
        Endpoint(
            "orders",
            OrderFilters,
            singular="order",
            description="Orders, one partition per creation day (UTC).",
            children=(
                ChildTable(
                    "order_lines",
                    "order_lines",
                    numbered=False,
                    description="Order lines of the orders created that day; key (id, order_id).",
                ),
            ),
            date_field="created",
            range_filter="created",
        ),
        Endpoint(
            "invoices",
            InvoiceFilters,
            singular="invoice",
            description="Invoices, one partition per invoice date.",
            children=(
                ChildTable(
                    "invoice_lines",
                    "invoice_lines",
                    numbered=True,
                    description="Invoice lines, numbered by position; key (invoice_id, line_number).",
                ),
                ChildTable(
                    "payments",
                    "invoice_payments",
                    numbered=True,
                    description="Payments recorded on invoices, numbered by position; key (invoice_id, "
                    "line_number).",
                ),
            ),
            date_field="invoice_date",
            order_slack_days=3,
            range_filter="invoice_date",
        ),
        Endpoint(
            "dispatches",
            DispatchFilters,
            singular="dispatch",
            description="Dispatches, one partition per creation day (UTC).",
            children=(
                ChildTable(
                    "dispatch_lines",
                    "dispatch_lines",
                    numbered=True,
                    description="Dispatch lines, numbered by position; key (dispatch_id, line_number).",
                ),
            ),
            date_field="created",
            range_filter="created",
        ),
        Endpoint(
            "products",
            ProductFilters,
            singular="product",
            description="Products, refreshed whole.",
            children=(
                ChildTable(
                    "product_variants",
                    "product_variants",
                    numbered=False,
                    description="Product variants (SKUs) of each product; key (id, product_id).",
                ),
            ),
            updated_since=True,
        ),
        Endpoint(
            INVENTORY_LEVELS,
            InventoryLevelFilters,
            singular="inventory_level",
            key="sku",
            description="Inventory levels per SKU, current (refreshed with updated_since). Each "
            "materialization also adds a timestamped snapshot of every SKU to inventory_level_snapshots.",
            updated_since=True,
            snapshot_table=INVENTORY_SNAPSHOTS,
        ),
        Endpoint(
            "categories",
            CategoryFilters,
            description="Product categories, refreshed whole.",
        ),
        _reference("customer_groups", "Customer groups"),
        _reference("price_lists", "Price lists"),
        _reference("payment_terms", "Payment terms"),
        _reference("tax_rates", "Tax rates"),
        _reference("preorder_windows", "Preorder windows"),
        Endpoint("webhooks", NoFilters, singular="webhook", paginated=False, pulled=False),
    ]
}

# The endpoints the pull lands in the lake, partitioned ones first (the order of bench's pull).
PULLED: tuple[Endpoint, ...] = tuple(endpoint for endpoint in ENDPOINTS.values() if endpoint.pulled)
PULL_ORDER: tuple[str, ...] = tuple(
    endpoint.resource for endpoint in sorted(PULLED, key=lambda endpoint: not endpoint.partitioned)
)
# Every lake table in the contract's order (the parent, its children, its snapshot table, per endpoint).
LAKE_TABLES: tuple[str, ...] = tuple(table for endpoint in PULLED for table in endpoint.tables)


def endpoint(resource: str) -> Endpoint:
    """The endpoint `resource`; a clear error naming the known ones otherwise."""
    try:
        return ENDPOINTS[resource]
    except KeyError:
        raise KeyError(f"unknown API resource {resource!r}; known: {', '.join(ENDPOINTS)}") from None
