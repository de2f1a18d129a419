"""The narrow slices of the API client and of a logger that the push needs (structural types).

`orderspace_pipelines.client.OrderspaceClient` satisfies `PushClient`; `logging.Logger` and Dagster's
`context.log` satisfy `PushLog`. Keeping them as protocols keeps `warehouse/` free of Dagster and lets
the push be driven by anything with the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class RequestStatsLike(Protocol):
    requests: int
    throttle_wait_seconds: float


class PushClient(Protocol):
    stats: RequestStatsLike

    def update_inventory_levels(self, levels: list[dict[str, Any]]) -> Any: ...

    def list_inventory_levels(self, **filters: Any) -> Iterable[dict[str, Any]]: ...

    def create_dispatch(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def list_dispatches(self, **filters: Any) -> Iterable[dict[str, Any]]: ...

    def get_order(self, order_id: str) -> dict[str, Any]: ...

    def list_orders(self, **filters: Any) -> Iterable[dict[str, Any]]: ...


class PushLog(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
