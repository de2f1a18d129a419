"""The narrow slices of the API client and of a logger that the push needs (structural types).

`orderspace_pipelines.client.OrderspaceClient` satisfies `PushClient` (mypy checks it: see the end of
`defs/push_jobs.py`); `logging.Logger` and Dagster's `context.log` satisfy `PushLog`. Keeping them as
protocols keeps `warehouse/` free of Dagster and lets the push be driven by anything with the same methods.
Each list method names only the one filter the push uses, so a client that accepts it (among others) fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class RequestStatsLike(Protocol):
    """The client's request counters the push reads (to report what one file cost)."""

    @property
    def requests(self) -> int: ...

    @property
    def throttle_wait_seconds(self) -> float: ...


class PushClient(Protocol):
    """The Orderspace calls the push makes."""

    @property
    def stats(self) -> RequestStatsLike: ...

    def update_inventory_levels(self, levels: Iterable[Mapping[str, Any]], /) -> object: ...

    def list_inventory_levels(self, *, sku: str) -> Iterable[dict[str, Any]]: ...

    def create_dispatch(self, dispatch: Mapping[str, Any], /) -> dict[str, Any]: ...

    def list_dispatches(self, *, order_id: str) -> Iterable[dict[str, Any]]: ...

    def get_order(self, order_id: str, /) -> dict[str, Any]: ...

    def list_orders(self, *, number: str) -> Iterable[dict[str, Any]]: ...


class PushLog(Protocol):
    """What the push logs through: `logging.Logger` or Dagster's `context.log`."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
