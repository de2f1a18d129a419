"""`OrderspaceClient`: authenticated, throttled, retrying access to every Orderspace endpoint.

Built to survive the API's drift from its documentation: list responses without `has_more` (keep paging until
an empty page), a list under an unexpected key (accepted when it is the only list), single records wrapped or
not, and error bodies that are JSON, HTML, plain text or empty (see `errors.py`).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, Unpack
from urllib.parse import quote

import httpx

from orderspace_pipelines.client.auth import ClientCredentialsAuth
from orderspace_pipelines.client.errors import (
    APIError,
    ConfigurationError,
    OrderspaceError,
    ResponseFormatError,
    display_url,
    error_from_response,
    truncate,
)
from orderspace_pipelines.client.filters import (
    CategoryFilters,
    CustomerFilters,
    DateLike,
    DispatchFilters,
    InventoryLevelFilters,
    InvoiceFilters,
    NoFilters,
    OrderFilters,
    ProductFilters,
    filter_params,
    format_datetime,
)
from orderspace_pipelines.client.shared_state import open_shared_state
from orderspace_pipelines.client.throttle import RequestThrottle
from orderspace_pipelines.client.token_store import TokenStore
from orderspace_pipelines.client.transport import RequestStats, ThrottledRetryTransport
from orderspace_pipelines.endpoints import ENDPOINTS
from orderspace_pipelines.settings import OrderspaceSettings

logger = logging.getLogger("orderspace_pipelines.client")

INVENTORY_BATCH_LIMIT = 200
# Send small requests at once rather than waiting on Nagle's algorithm (a 40 ms stall per request otherwise).
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
# `limit` on every paginated list: "The default is 50 and the maximum limit is 200" (API reference,
# source/includes/models/_<resource>.html.md, "List ..." parameters). The client always asks for the maximum.
MAX_PAGE_SIZE = 200
# Endpoints documented as returning everything in one response (no `limit` is sent; `has_more: true` is still
# followed, in case the API starts paginating them). Declared in `endpoints.py`.
UNPAGINATED_RESOURCES = frozenset(name for name, endpoint in ENDPOINTS.items() if not endpoint.paginated)


@dataclass(frozen=True)
class Page:
    """One list response: its records, the API's `has_more` (None when it was not sent) and the cursor to
    resume after it (the last record's `id`, or `sku` for inventory levels)."""

    records: list[dict[str, Any]]
    has_more: bool | None
    cursor: str | None


def cursor_field(resource: str) -> str:
    """The field whose value in a page's last record is the cursor for the next page (`id` by default)."""
    known = ENDPOINTS.get(resource)
    return known.key if known is not None else "id"


def _singular(resource: str) -> str:
    key = ENDPOINTS[resource].singular
    if key is None:
        raise ValueError(f"/{resource} has no single-record endpoint")
    return key


def format_since(value: DateLike) -> str:
    """`created_since` as the API expects it: `YYYY-MM-DD`, or an ISO 8601 UTC time (see `filters.py`)."""
    return format_datetime(value, "created_since")


def _coerce_has_more(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int):
        return bool(value)
    return None


def _path_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{kind} id must be a non-empty string, got {value!r}")
    return quote(value.strip(), safe="")


class OrderspaceClient:
    """A client for one Orderspace account. Thread-safe; use as a context manager or call `close()`.

    `transport` replaces the innermost HTTP transport (tests: `httpx.MockTransport`); throttling, retries and
    auth still wrap it. `min_429_wait` defaults to the settings' rate window (60 s on the real API). `stats`
    counts this client's API requests, retries, 429s and throttle waits.

    `token_store` shares the access token with the account's other clients and processes: by default a 0600
    file beside the throttle DB (`$ORDERSPACE_TOKEN_CACHE` relocates it, `off` disables it) or, with
    `ORDERSPACE_DATABASE_URL` set, the shared database (`shared_state.py` chooses); `None` for a token of
    this client's own, or any `TokenStore`.
    """

    def __init__(
        self,
        settings: OrderspaceSettings,
        *,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 30.0,
        max_retries: int = 5,
        throttle_db: str | None = None,
        min_429_wait: float | None = None,
        transport: httpx.BaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        token_store: TokenStore | Literal["default"] | None = "default",
    ) -> None:
        _check_page_size(page_size)
        client_id, client_secret = settings.credentials()  # the settings validated everything else
        self.settings = settings
        self.page_size = page_size
        self.stats = RequestStats()
        owns_store = token_store == "default"
        self.throttle, token_store = open_shared_state(
            settings, client_id, throttle_db=throttle_db, token_store=token_store
        )
        # The default store is this client's to close (a PostgreSQL one holds connections).
        self._owned_store = token_store if owns_store else None
        inner = transport if transport is not None else httpx.HTTPTransport(socket_options=NO_DELAY)
        retry = _RetryOptions(
            max_retries=max_retries,
            min_429_wait=settings.rate_window_seconds if min_429_wait is None else min_429_wait,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self._transport = retry.api_transport(inner, self.throttle, self.stats)
        self.auth = ClientCredentialsAuth(
            settings.token_url,
            client_id,
            client_secret,
            transport=retry.token_transport(inner),
            timeout=timeout,
            store=token_store,
        )
        self._http = _api_http_client(settings.api_url, self.auth, self._transport, timeout)

    @classmethod
    def from_settings(cls, settings: OrderspaceSettings, **kwargs: Any) -> Self:
        return cls(settings, **kwargs)

    def __repr__(self) -> str:
        return (
            f"OrderspaceClient(api_url={self.settings.api_url!r}, client_id={self.settings.client_id!r}, "
            f"requests_per_minute={self.settings.requests_per_minute})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self.auth.close()
        self.throttle.close()
        close_store = getattr(self._owned_store, "close", None)
        if close_store is not None:
            close_store()

    # -- requests ----------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """Send one API request and return its parsed JSON body; raises a typed error otherwise."""
        try:
            response = self._http.request(
                method,
                path.lstrip("/"),
                params={k: v for k, v in (params or {}).items() if v is not None} or None,
                json=json_body,
            )
        except OrderspaceError:
            raise
        except httpx.HTTPError as exc:  # not expected past the transport, but never leak a bare httpx error
            raise OrderspaceError(f"{method} /{path.lstrip('/')} failed: {type(exc).__name__}") from None
        finally:
            self.stats.token_requests = self.auth.tokens_fetched
        if response.status_code >= 300:
            hint = None
            if response.status_code == 401:
                hint = "The API rejected a freshly issued access token; check the app's access"
            raise error_from_response(response, hint=hint, secrets=self.auth.secrets)
        where = f"{response.status_code} from {method} {display_url(response.request.url)}"
        if not response.content.strip():
            raise ResponseFormatError(f"{where}: empty body where JSON was expected")
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "unknown content type")
            snippet = truncate(response.text, 80)
            raise ResponseFormatError(f"{where}: body is not JSON ({kind}): {snippet!r}") from None

    # -- lists -------------------------------------------------------------------------------------------

    def iter_pages(
        self,
        resource: str,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Any,
    ) -> Iterator[Page]:
        """Every page of a list endpoint, oldest request first, empty pages skipped.

        `filters` are the resource's documented filters (see `filters.py`; None means unset): one the
        resource does not document raises `TypeError` here, before any request.
        Pages by `limit`/`starting_after` (cursor: the last record's `id`, `sku` for inventory levels).
        `has_more` is trusted when sent; without it paging continues until an empty page (a short page is not
        the end: the server may cap the page size). A cursor that does not advance raises
        `ResponseFormatError`.
        """
        resource = resource.strip().strip("/")
        limit = page_size or self.page_size
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(
                f"page_size must be between 1 and {MAX_PAGE_SIZE} (the API's maximum), got {limit}"
            )
        query: dict[str, Any] = filter_params(resource, filters)
        return self._pages(resource, limit, query, starting_after)

    def _pages(
        self, resource: str, limit: int, query: dict[str, Any], starting_after: str | None
    ) -> Iterator[Page]:
        paginated = resource not in UNPAGINATED_RESOURCES
        field = cursor_field(resource)
        cursor = starting_after
        seen_cursors: set[str] = set() if cursor is None else {cursor}
        while True:
            page_query = dict(query)
            if paginated:
                page_query["limit"] = limit
            if cursor is not None:
                page_query["starting_after"] = cursor
            body = self.request("GET", resource, params=page_query)
            records, has_more = _extract_list(body, resource)
            next_cursor = next_page_cursor(resource, field, records, has_more, cursor, seen_cursors)
            if next_cursor is None:
                return
            seen_cursors.add(next_cursor)
            yield Page(records=records, has_more=has_more, cursor=next_cursor)
            if is_last_page(has_more, paginated=paginated):
                return
            cursor = next_cursor

    def iter_records(self, resource: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every record of a list endpoint (see `iter_pages`; the arguments are checked at once)."""
        pages = self.iter_pages(resource, **kwargs)
        return (record for page in pages for record in page.records)

    def _list(
        self, resource: str, page_size: int | None, starting_after: str | None, filters: Mapping[str, Any]
    ) -> Iterator[dict[str, Any]]:
        # Unpaginated endpoints take the same arguments (page_size is not sent to them) so callers can treat
        # every list_* alike.
        return self.iter_records(resource, page_size=page_size, starting_after=starting_after, **filters)

    def _get(self, resource: str, record_id: str) -> dict[str, Any]:
        key = _singular(resource)
        body = self.request("GET", f"{resource}/{_path_id(key, record_id)}")
        return _unwrap(body, key, f"GET /{resource}/{record_id}")

    def _create(self, resource: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        key = _singular(resource)
        body = self.request("POST", resource, json_body=_wrap(payload, key))
        return _unwrap(body, key, f"POST /{resource}")

    def _update(self, resource: str, record_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        key = _singular(resource)
        path = f"{resource}/{_path_id(key, record_id)}"
        body = self.request("PUT", path, json_body=_wrap(payload, key))
        return _unwrap(body, key, f"PUT /{path}")

    # -- endpoint map ------------------------------------------------------------------------------------

    def list_customers(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[CustomerFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, company_name, buyers_email_address, status, reference,
        payment_terms_id, customer_group_id, price_list_id."""
        return self._list("customers", page_size, starting_after, filters)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self._get("customers", customer_id)

    def create_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("customers", customer)

    def update_customer(self, customer_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._update("customers", customer_id, changes)

    def list_orders(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[OrderFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, created_before, delivery_date_since/_before, number, status,
        reference, customer_id, standing_order_id."""
        return self._list("orders", page_size, starting_after, filters)

    def get_order(self, order_id: str) -> dict[str, Any]:
        return self._get("orders", order_id)

    def create_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("orders", order)

    def list_dispatches(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[DispatchFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, created_before, order_id."""
        return self._list("dispatches", page_size, starting_after, filters)

    def get_dispatch(self, dispatch_id: str) -> dict[str, Any]:
        return self._get("dispatches", dispatch_id)

    def create_dispatch(self, dispatch: Mapping[str, Any]) -> dict[str, Any]:
        """Create a dispatch. Never retried once it may have been processed: on `TransportError` with
        `maybe_processed`, or `ServerError`, look for the dispatch before sending it again."""
        return self._create("dispatches", dispatch)

    def list_products(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[ProductFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, updated_since, code, name, active, category_id."""
        return self._list("products", page_size, starting_after, filters)

    def get_product(self, product_id: str) -> dict[str, Any]:
        return self._get("products", product_id)

    def create_product(self, product: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("products", product)

    def update_product(self, product_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._update("products", product_id, changes)

    def list_inventory_levels(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[InventoryLevelFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, updated_since, product_id, sku."""
        return self._list("inventory_levels", page_size, starting_after, filters)

    def update_inventory_levels(self, levels: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Set stock levels in requests of at most `INVENTORY_BATCH_LIMIT` (200); returns every updated level.

        Each level needs a `sku` and one of `on_hand` / `available`. Chunks are sent in order and each one is
        applied by the API as it lands: if chunk k fails, chunks 1..k-1 were already applied. The error raised
        (the failing chunk's own type) says which chunk and skus failed and carries `applied_levels` (the
        levels the API confirmed before the failure) and `failed_skus`.
        """
        items = [_check_level(level, index) for index, level in enumerate(levels)]
        chunks = [
            items[start : start + INVENTORY_BATCH_LIMIT]
            for start in range(0, len(items), INVENTORY_BATCH_LIMIT)
        ]
        updated: list[dict[str, Any]] = []
        for number, chunk in enumerate(chunks, start=1):
            try:
                body = self.request("POST", "inventory_levels", json_body={"inventory_levels": chunk})
                records, _ = _extract_list(body, "inventory_levels")
            except OrderspaceError as exc:
                skus = [level["sku"] for level in chunk]
                prefix = (
                    f"inventory update chunk {number} of {len(chunks)} ({len(chunk)} levels, skus "
                    f"{skus[0]} .. {skus[-1]}) failed; {number - 1} earlier chunk(s) with {len(updated)} "
                    "levels were already applied"
                )
                raise exc.with_prefix(prefix, applied_levels=list(updated), failed_skus=skus) from exc
            updated.extend(records)
        return updated

    def list_invoices(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[InvoiceFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: created_since, invoice_date_after/_before, due_date_after/_before, number,
        customer_id, paid, proforma."""
        return self._list("invoices", page_size, starting_after, filters)

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._get("invoices", invoice_id)

    def list_categories(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[CategoryFilters],
    ) -> Iterator[dict[str, Any]]:
        """Filters: name, parent_id."""
        return self._list("categories", page_size, starting_after, filters)

    def list_customer_groups(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("customer_groups", page_size, starting_after, filters)

    def list_price_lists(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("price_lists", page_size, starting_after, filters)

    def list_payment_terms(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("payment_terms", page_size, starting_after, filters)

    def list_tax_rates(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("tax_rates", page_size, starting_after, filters)

    def list_preorder_windows(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("preorder_windows", page_size, starting_after, filters)

    def list_webhooks(
        self,
        *,
        page_size: int | None = None,
        starting_after: str | None = None,
        **filters: Unpack[NoFilters],
    ) -> Iterator[dict[str, Any]]:
        """Documented without filters (and without pagination)."""
        return self._list("webhooks", page_size, starting_after, filters)

    def get_webhook(self, webhook_id: str) -> dict[str, Any]:
        return self._get("webhooks", webhook_id)

    def create_webhook(self, webhook: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("webhooks", webhook)

    def update_webhook(self, webhook_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._update("webhooks", webhook_id, changes)

    def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        path = f"webhooks/{_path_id('webhook', webhook_id)}"
        body = self.request("DELETE", path)
        if body is None:
            return {"id": webhook_id, "deleted": True}
        return _unwrap(body, "webhook", f"DELETE /{path}")


# -- helpers ---------------------------------------------------------------------------------------------


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(
            f"page_size must be between 1 and {MAX_PAGE_SIZE} (the API's maximum), got {page_size}"
        )


def _api_http_client(
    api_url: str, auth: httpx.Auth, transport: httpx.BaseTransport, timeout: float
) -> httpx.Client:
    return httpx.Client(
        base_url=api_url.rstrip("/") + "/",
        auth=auth,
        transport=transport,
        timeout=timeout,
        headers={"Accept": "application/json", "User-Agent": "orderspace-pipelines"},
    )


@dataclass(frozen=True)
class _RetryOptions:
    """The retry knobs of one client, shared by its API transport and its token transport."""

    max_retries: int
    min_429_wait: float
    backoff_base: float
    backoff_cap: float

    def api_transport(
        self, inner: httpx.BaseTransport, throttle: RequestThrottle, stats: RequestStats
    ) -> ThrottledRetryTransport:
        """API requests: spend the shared budget, retry what is safe to retry."""
        return ThrottledRetryTransport(
            inner,
            throttle=throttle,
            stats=stats,
            max_retries=self.max_retries,
            min_429_wait=self.min_429_wait,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
        )

    def token_transport(self, inner: httpx.BaseTransport) -> ThrottledRetryTransport:
        """Token requests: no throttle (separate service), fewer and shorter retries, POST repeatable."""
        return ThrottledRetryTransport(
            inner,
            throttle=None,
            stats=RequestStats(),
            max_retries=min(self.max_retries, 3),
            min_429_wait=min(self.min_429_wait, 5.0),
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            retry_unsafe_methods=True,
            close_inner=False,
        )


def _describe(body: Any) -> str:
    if isinstance(body, dict):
        return f"an object with keys {sorted(body)}"
    return f"a JSON {type(body).__name__}"


def _extract_list(body: Any, resource: str) -> tuple[list[dict[str, Any]], bool | None]:
    """The records and `has_more` of a list response, tolerating a differently named (but single) list key."""
    if isinstance(body, list):
        records = body
        has_more = None
    elif isinstance(body, dict):
        has_more = _coerce_has_more(body.get("has_more"))
        if isinstance(body.get(resource), list):
            records = body[resource]
        else:
            lists = [key for key, value in body.items() if isinstance(value, list)]
            if len(lists) != 1:
                raise ResponseFormatError(
                    f"GET /{resource}: expected a {resource!r} list in the response, got {_describe(body)}"
                )
            logger.warning("GET /%s: records arrived under %r instead of %r", resource, lists[0], resource)
            records = body[lists[0]]
    else:
        raise ResponseFormatError(f"GET /{resource}: expected a JSON object, got {_describe(body)}")
    bad = next((index for index, record in enumerate(records) if not isinstance(record, dict)), None)
    if bad is not None:
        raise ResponseFormatError(
            f"GET /{resource}: record {bad} is {_describe(records[bad])}, not an object"
        )
    return records, has_more


def next_page_cursor(
    resource: str,
    field: str,
    records: list[dict[str, Any]],
    has_more: bool | None,
    cursor: str | None,
    seen_cursors: set[str],
) -> str | None:
    """The cursor a page ends at (the last record's `field`), or None when an empty page ends the list.

    Guards: an empty page that claims `has_more`, or a cursor an earlier page already ended at, means the
    pagination is stuck (`ResponseFormatError`) rather than an endless loop.
    """
    if not records:
        if has_more:
            raise ResponseFormatError(
                f"GET /{resource} after {cursor!r} returned no records but has_more=true: pagination stuck"
            )
        return None
    next_cursor = [_record_cursor(record, resource, field, i) for i, record in enumerate(records)][-1]
    if next_cursor in seen_cursors:
        raise ResponseFormatError(
            f"GET /{resource} pagination did not advance: the page after {cursor!r} ends at "
            f"{next_cursor!r}, which an earlier page already ended at"
        )
    return next_cursor


def is_last_page(has_more: bool | None, *, paginated: bool) -> bool:
    """`has_more: false` ends a list; without `has_more` a paginated list goes on until an empty page, an
    unpaginated one ends after its one page unless it says `has_more: true`."""
    return has_more is False or (not paginated and has_more is not True)


def _record_cursor(record: Mapping[str, Any], resource: str, field: str, index: int) -> str:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, dict | list):
        raise ResponseFormatError(
            f"GET /{resource}: record {index} has no {field!r} (needed as the pagination cursor); it has "
            f"{sorted(record)}"
        )
    return str(value)


def _wrap(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise TypeError(f"the {key} payload must be a mapping, got {type(payload).__name__}")
    if set(payload) == {key} and isinstance(payload[key], Mapping):
        return {key: dict(payload[key])}
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the {key} payload is not JSON serialisable: {exc}") from None
    return {key: dict(payload)}


def _unwrap(body: Any, key: str, where: str) -> dict[str, Any]:
    """The record of a single-record response: `{"customer": {...}}`, or an unwrapped record."""
    if isinstance(body, dict):
        if isinstance(body.get(key), dict):
            return body[key]
        if "id" in body or "sku" in body:
            return body
        objects = [name for name, value in body.items() if isinstance(value, dict)]
        if len(objects) == 1 and len(body) == 1:
            return body[objects[0]]
    raise ResponseFormatError(f"{where}: expected a {key!r} object in the response, got {_describe(body)}")


def _check_level(level: Mapping[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(level, Mapping):
        raise ValueError(f"inventory level {index} must be a mapping, got {type(level).__name__}")
    sku = level.get("sku")
    if not isinstance(sku, str) or not sku.strip():
        raise ValueError(f"inventory level {index} has no sku: {dict(level)!r}")
    quantities = [name for name in ("on_hand", "available") if level.get(name) is not None]
    if len(quantities) != 1:
        raise ValueError(
            f"inventory level {index} (sku {sku!r}) must set exactly one of on_hand or available, got "
            f"{quantities or 'neither'}"
        )
    return dict(level)


__all__ = ["INVENTORY_BATCH_LIMIT", "APIError", "OrderspaceClient", "Page"]
