"""Dagster resources: the Orderspace API client and the local lake, both configured from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from orderspace_pipelines.client import MAX_PAGE_SIZE, OrderspaceClient
from orderspace_pipelines.settings import (
    DEFAULT_API_URL,
    DEFAULT_DATA_DIR,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TOKEN_URL,
    OrderspaceSettings,
    SettingsError,
)

# Every step that calls the API runs in this Dagster concurrency pool (limit set in dagster.yaml), on top of
# the client's cross-process throttle, so concurrent runs share the account's one request budget.
ORDERSPACE_API_POOL = "orderspace_api"


class OrderspaceResource(dg.ConfigurableResource):
    """An authenticated, throttled Orderspace API client for one account.

    Configure it from the environment with `OrderspaceResource.from_env()` (the contract's variables via
    `EnvVar`),
    or with literal values in tests. Each step gets its own client, so its request counts are its own; the
    access token is shared by every client of the account (the token cache, `ORDERSPACE_TOKEN_CACHE`).
    """

    client_id: str = Field(description="Orderspace private app client id (ORDERSPACE_CLIENT_ID).")
    client_secret: str = Field(
        description="Private app client secret (ORDERSPACE_CLIENT_SECRET). Never logged."
    )
    api_url: str = Field(default=DEFAULT_API_URL, description="API base URL (ORDERSPACE_API_URL).")
    token_url: str = Field(
        default=DEFAULT_TOKEN_URL, description="OAuth2 token endpoint (ORDERSPACE_TOKEN_URL)."
    )
    requests_per_minute: int = Field(
        default=DEFAULT_REQUESTS_PER_MINUTE,
        description="The account's request budget per rate window, shared by every process on the machine.",
    )
    rate_window_seconds: float = Field(
        default=60.0, description="Length of the rate window (60 s on the real API)."
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE,
        description="Records asked for per list request (default 200: the API's documented maximum).",
    )

    @classmethod
    def from_env(cls) -> OrderspaceResource:
        """Read the contract's variables at run time; a missing credential fails with the variable's name."""
        return cls(
            client_id=dg.EnvVar("ORDERSPACE_CLIENT_ID"),
            client_secret=dg.EnvVar("ORDERSPACE_CLIENT_SECRET"),
            api_url=_env_or("ORDERSPACE_API_URL", DEFAULT_API_URL),
            token_url=_env_or("ORDERSPACE_TOKEN_URL", DEFAULT_TOKEN_URL),
            requests_per_minute=dg.EnvVar.int("ORDERSPACE_REQUESTS_PER_MINUTE")
            if _is_set("ORDERSPACE_REQUESTS_PER_MINUTE")
            else DEFAULT_REQUESTS_PER_MINUTE,
            rate_window_seconds=float(_env_or("ORDERSPACE_RATE_WINDOW_SECONDS", "60")),
        )

    def settings(self) -> OrderspaceSettings:
        for name, value in (
            ("ORDERSPACE_CLIENT_ID", self.client_id),
            ("ORDERSPACE_CLIENT_SECRET", self.client_secret),
        ):
            if not value or not str(value).strip():
                raise SettingsError(f"{name} is not set: the Orderspace resource needs it to authenticate.")
        return OrderspaceSettings(
            client_id=self.client_id,
            client_secret=self.client_secret,
            api_url=self.api_url,
            token_url=self.token_url,
            requests_per_minute=self.requests_per_minute,
            rate_window_seconds=self.rate_window_seconds,
        )

    def get_client(self) -> OrderspaceClient:
        """A new client (close it, or use it as a context manager);
        its `.stats` count this step's requests."""
        return OrderspaceClient.from_settings(self.settings(), page_size=self.page_size)


class LakeResource(dg.ConfigurableResource):
    """Where the Parquet partitions, the DuckDB catalog and the warehouse folders live."""

    data_dir: str = Field(default=DEFAULT_DATA_DIR, description="Root folder (ORDERSPACE_DATA_DIR).")

    @classmethod
    def from_env(cls) -> LakeResource:
        return cls(data_dir=_env_or("ORDERSPACE_DATA_DIR", DEFAULT_DATA_DIR))

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()


def _is_set(name: str) -> bool:
    import os

    return bool(os.environ.get(name, "").strip())


def _env_or(name: str, default: str) -> str:
    import os

    return os.environ.get(name, "").strip() or default
