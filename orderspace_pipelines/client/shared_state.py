"""The one place that chooses where an account's request budget and access token live.

`ORDERSPACE_DATABASE_URL` unset: the budget in a SQLite file on this machine (`ORDERSPACE_THROTTLE_DB`,
default under the temp directory) and the token in a 0600 file beside it (`ORDERSPACE_TOKEN_CACHE`). Set: both
in that PostgreSQL database, shared by every process on every host (`pg_throttle.py`, `pg_token_store.py`);
`ORDERSPACE_TOKEN_CACHE=off` still disables token sharing.
"""

from __future__ import annotations

import logging
from typing import Literal

from orderspace_pipelines.client.pg_token_store import PostgresTokenStore
from orderspace_pipelines.client.throttle import RequestThrottle, budget_key, default_throttle_path
from orderspace_pipelines.client.token_store import (
    DISABLED_VALUES,
    FileTokenStore,
    TokenStore,
    account_key,
    default_token_cache_path,
)
from orderspace_pipelines.settings import OrderspaceSettings

logger = logging.getLogger("orderspace_pipelines.client")


def open_shared_state(
    settings: OrderspaceSettings,
    client_id: str,
    *,
    throttle_db: str | None = None,
    token_store: TokenStore | Literal["default"] | None = "default",
) -> tuple[RequestThrottle, TokenStore | None]:
    """The account's throttle and token store as the settings configure them (see the module docstring).

    `throttle_db` overrides `ORDERSPACE_THROTTLE_DB` (SQLite only); `token_store` other than "default" is used
    as given. Raises `postgres.DatabaseError` (one line naming ORDERSPACE_DATABASE_URL) when the database is
    configured but cannot be reached.
    """
    limit, window = settings.requests_per_minute, settings.rate_window_seconds
    url = settings.database_url
    if url is not None:
        throttle = RequestThrottle.on_postgres(
            url, budget_key(settings.api_url, client_id), limit=limit, window_seconds=window
        )
    else:
        path = default_throttle_path(settings.api_url, client_id, throttle_db or settings.throttle_db)
        throttle = RequestThrottle(path, limit=limit, window_seconds=window)
    if token_store != "default":
        return throttle, token_store
    try:
        return throttle, _default_token_store(settings, client_id, throttle)
    except BaseException:
        throttle.close()
        raise


def _default_token_store(
    settings: OrderspaceSettings, client_id: str, throttle: RequestThrottle
) -> TokenStore | None:
    """Postgres when configured (unless the cache is `off`), else the token file beside the throttle DB."""
    key = account_key(settings.api_url, settings.token_url, client_id)
    if settings.database_url is not None:
        if (settings.token_cache or "").strip().lower() in DISABLED_VALUES:
            return None
        return PostgresTokenStore(settings.database_url, key)
    assert throttle.path is not None  # a SQLite throttle always has its file
    cache_path = default_token_cache_path(throttle.path, settings.token_cache)
    return None if cache_path is None else FileTokenStore(cache_path, key)
