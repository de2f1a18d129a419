"""The change feed's receiving end: Orderspace webhooks verified, stored durably, and read by the applier.

No Dagster here. `store` (the event store and its applier API; `store_pg` its Postgres implementation),
`signing` (signatures, the key file), `receiver` (the Starlette app), `subscription` (register/status against
the API), `commands` (the CLI).
"""

from orderspace_pipelines.webhooks.events import EVENT_TYPES, RESOURCES, ParsedEvent, parse_delivery
from orderspace_pipelines.webhooks.store import (
    EventStore,
    SqliteEventStore,
    StoredDelivery,
    StoredEvent,
    StoreStats,
    open_store,
    store_exists,
    store_path,
)
from orderspace_pipelines.webhooks.store_pg import PostgresEventStore

__all__ = [
    "EVENT_TYPES",
    "RESOURCES",
    "EventStore",
    "ParsedEvent",
    "PostgresEventStore",
    "SqliteEventStore",
    "StoreStats",
    "StoredDelivery",
    "StoredEvent",
    "open_store",
    "parse_delivery",
    "store_exists",
    "store_path",
]
