"""Dagster resources: the Orderspace API client and the local lake, both configured from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field, SecretStr

from orderspace_pipelines.client import MAX_PAGE_SIZE, OrderspaceClient
from orderspace_pipelines.settings import OrderspaceSettings

# Every step that calls the API runs in this Dagster concurrency pool (limit set in dagster.yaml), on top of
# the client's cross-process throttle, so concurrent runs share the account's one request budget.
ORDERSPACE_API_POOL = "orderspace_api"


class OrderspaceResource(dg.ConfigurableResource):
    """An authenticated, throttled Orderspace API client for one account.

    Its settings are the configuration model's (`OrderspaceSettings`, read from the environment when a step
    asks for a client). `from_env()` binds the credentials through `EnvVar`, so Dagster shows the variable's
    name, never its value; the optional fields below override the model for tests and are `None` (use the
    model's value) otherwise. Each step gets its own client, so its request counts are its own; the access
    token is shared by every client of the account (the token cache, `ORDERSPACE_TOKEN_CACHE`).
    """

    client_id: str | None = Field(default=None, description="Overrides ORDERSPACE_CLIENT_ID.")
    client_secret: str | None = Field(
        default=None, description="Overrides ORDERSPACE_CLIENT_SECRET. Never logged."
    )
    api_url: str | None = Field(default=None, description="Overrides ORDERSPACE_API_URL.")
    token_url: str | None = Field(default=None, description="Overrides ORDERSPACE_TOKEN_URL.")
    requests_per_minute: int | None = Field(
        default=None, description="Overrides ORDERSPACE_REQUESTS_PER_MINUTE."
    )
    rate_window_seconds: float | None = Field(
        default=None, description="Overrides ORDERSPACE_RATE_WINDOW_SECONDS."
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE,
        description="Records asked for per list request (default 200: the API's documented maximum).",
    )

    @classmethod
    def from_env(cls) -> OrderspaceResource:
        """Credentials through `EnvVar` (an unset one fails the run by name); the rest from the model."""
        return cls(
            client_id=dg.EnvVar("ORDERSPACE_CLIENT_ID"),
            client_secret=dg.EnvVar("ORDERSPACE_CLIENT_SECRET"),
        )

    def settings(self) -> OrderspaceSettings:
        """The model read now, with this resource's non-None fields winning; credentials checked."""
        overrides = {
            name: value for name, value in self.model_dump(exclude={"page_size"}).items() if value is not None
        }
        return OrderspaceSettings.from_env(None, **overrides)

    def get_client(self) -> OrderspaceClient:
        """A new client (close it, or use it as a context manager); `.stats` count this step's requests."""
        return OrderspaceClient.from_settings(self.settings(), page_size=self.page_size)


class LakeResource(dg.ConfigurableResource):
    """Where the Parquet partitions, the DuckDB catalog and the warehouse folders live."""

    data_dir: str | None = Field(
        default=None, description="Root folder; None reads ORDERSPACE_DATA_DIR (default ./data)."
    )

    @classmethod
    def from_env(cls) -> LakeResource:
        """The root from the configuration model, read when it is first needed."""
        return cls()

    @property
    def root(self) -> Path:
        """The absolute root (the model resolves it; a blank value means the default, as everywhere)."""
        overrides = {} if self.data_dir is None else {"data_dir": self.data_dir}
        return OrderspaceSettings.read(None, **overrides).data_dir

    @property
    def database_url(self) -> SecretStr | None:
        """`ORDERSPACE_DATABASE_URL` (read now): the push ledger and the webhook event store live in that
        Postgres database, shared by every host; None: SQLite files under the root."""
        return OrderspaceSettings.read(None).database_url
