"""The documented filters of every list endpoint, typed, and their formatting as query parameters.

The filters are declared with their endpoint in `orderspace_pipelines/endpoints.py` (one `TypedDict` per
list, from the API reference's "Parameters" of each "List ..." section); each annotation carries the
filter's kind, which decides how a value is checked and formatted here:

- `DATETIME` (`created_since`, `created_before`, `updated_since`): the docs' example is `2019-10-29T21:00`
  (ISO 8601). A `datetime` is sent in UTC as `YYYY-MM-DDTHH:MM:SSZ` (naive means UTC). The `Z` is a guess
  the docs neither show nor forbid: records carry UTC times with `Z`, and an explicit zone cannot be read in
  the account's own time zone. A `date` is sent as `YYYY-MM-DD` (midnight).
- `DATE` (`invoice_date_after`, `due_date_before`, `delivery_date_since`, ...): `YYYY-MM-DD`, as the docs
  show. A `datetime` is refused (its time would be silently dropped).
- `BOOL` (`paid`, `proforma`, `active`): `true` / `false`, as the docs say ("Set to either true or false").
- `ORDER_STATUS`, `CUSTOMER_STATUS`: one of the documented values.
- `NUMBER` (order `number`): a whole number. `TEXT`: any non-empty text (ids, skus, names, invoice numbers).

A filter a resource does not document raises `TypeError` naming it (never sent silently); a bad value raises
`ValueError` naming the filter. `None` means "not set".
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from orderspace_pipelines.endpoints import (
    CUSTOMER_STATUSES,
    ENDPOINTS,
    ORDER_STATUSES,
    CategoryFilters,
    CustomerFilters,
    DateLike,
    DispatchFilters,
    InventoryLevelFilters,
    InvoiceFilters,
    Kind,
    NoFilters,
    OrderFilters,
    ProductFilters,
)

# resource -> filter name -> kind (declared with each endpoint in `endpoints.py`)
LIST_FILTERS: dict[str, dict[str, Kind]] = {
    resource: endpoint.filter_kinds for resource, endpoint in ENDPOINTS.items()
}


def format_datetime(value: DateLike, name: str = "created_since") -> str:
    """A `DATETIME` filter's value: `YYYY-MM-DD` for a date, `YYYY-MM-DDTHH:MM:SSZ` (UTC) for a datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=0).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a date, a datetime or ISO 8601 text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"{name} must not be empty")
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name} must be an ISO 8601 date or date and time (e.g. 2019-10-29T21:00), got {value!r}"
        ) from None
    return text


def format_date(value: date | str, name: str) -> str:
    """A `DATE` filter's value: `YYYY-MM-DD`."""
    if isinstance(value, datetime):
        raise ValueError(f"{name} takes a date (YYYY-MM-DD), not a date and time: got {value.isoformat()}")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a date or YYYY-MM-DD text, got {type(value).__name__}")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValueError(
            f"{name} must be a date in ISO 8601 format (e.g. 2019-10-29), got {value!r}"
        ) from None


def _format(kind: Kind, name: str, value: Any) -> str:
    if kind is Kind.DATETIME:
        return format_datetime(value, name)
    if kind is Kind.DATE:
        return format_date(value, name)
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise ValueError(f"{name} must be True or False, got {value!r}")
    if kind is Kind.NUMBER:
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not text.isdigit():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return str(int(text))
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ValueError(f"{name} must be non-empty text, got {value!r}")
    text = str(value).strip()
    allowed = {Kind.ORDER_STATUS: ORDER_STATUSES, Kind.CUSTOMER_STATUS: CUSTOMER_STATUSES}.get(kind)
    if allowed is not None and text not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(sorted(allowed))}; got {value!r}")
    return text


def filter_params(resource: str, filters: dict[str, Any]) -> dict[str, str]:
    """The query parameters for `filters` on `resource`'s list (None values dropped).

    Raises `TypeError` for a filter the resource does not document, `ValueError` for a bad value.
    """
    known = LIST_FILTERS.get(resource, {})
    params: dict[str, str] = {}
    for name, value in filters.items():
        kind = known.get(name)
        if kind is None:
            offered = ", ".join(sorted(known)) or "none"
            raise TypeError(f"GET /{resource} has no filter {name!r} (its documented filters: {offered})")
        if value is not None:
            params[name] = _format(kind, name, value)
    return params


__all__ = [
    "CUSTOMER_STATUSES",
    "LIST_FILTERS",
    "ORDER_STATUSES",
    "CategoryFilters",
    "CustomerFilters",
    "DateLike",
    "DispatchFilters",
    "InventoryLevelFilters",
    "InvoiceFilters",
    "NoFilters",
    "OrderFilters",
    "ProductFilters",
    "filter_params",
    "format_date",
    "format_datetime",
]
