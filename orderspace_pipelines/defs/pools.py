"""The `orderspace_api` concurrency pool's limit row, created before any step claims the pool.

Dagster creates a pool's limit row from `concurrency.pools.default_limit` the first time a step claims the
pool. With Postgres storage two processes doing that at once race, and Dagster 1.13.27 handles the loser
badly: its INSERT hits the unique key and its fallback UPDATE runs in the now-aborted transaction
(`InFailedSqlTransaction`), so the loser's step fails. CI saw this with two `sync`s started together on a
fresh database. `ensure_api_pool` creates the row first, from the entry points that start runs (`sync`,
`reconcile`, `push`, the warehouse inbox sensor), and a concurrent creator winning is not an error, so
the claim later finds the row and creates nothing.
"""

from __future__ import annotations

import logging

import dagster as dg

from orderspace_pipelines.defs.resources import ORDERSPACE_API_POOL

log = logging.getLogger(__name__)


def api_pool_exists(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's storage already holds a limit row for the `orderspace_api` pool."""
    return any(pool.name == ORDERSPACE_API_POOL for pool in instance.event_log_storage.get_pool_limits())


def ensure_api_pool(instance: dg.DagsterInstance) -> None:
    """Create the `orderspace_api` pool's row from the instance's default limit, unless it exists already.

    Does nothing when the storage has no global concurrency limits or the instance sets no default limit
    (then Dagster itself creates nothing). Safe to call from many processes at once.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or instance.global_op_concurrency_default_limit is None:
        return
    if api_pool_exists(instance):
        return
    try:
        storage.initialize_concurrency_limit_to_default(ORDERSPACE_API_POOL)
    except Exception:
        # Another process created the row between our check and our INSERT (see the module docstring).
        if not api_pool_exists(instance):
            raise
        log.debug("the %s pool was created by another process at the same time", ORDERSPACE_API_POOL)
