"""The one configuration model: every `ORDERSPACE_*` variable of the README's table, declared once.

`OrderspaceSettings` is a pydantic-settings model (prefix `ORDERSPACE_`). The CLI, the Dagster resources, the
partitions, the sensor and the client all read it, so a variable has one default, one parser and one
message. Rules applied once, here:

- a blank value (empty or only spaces) is the same as an unset one: the default applies, and a required
  credential is reported as "not set";
- a bad value raises `ConfigurationError` whose one-line message names the variable
  (`ORDERSPACE_START_DATE must be a date as YYYY-MM-DD, got '2024-13-01'`) and never shows the client secret.

The credentials are optional in the model (the partitions and the sensor need none);
`credentials()` is where a missing one is reported (`from_env()` and the client call it).
No Dagster here, and nothing is read at import.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "ORDERSPACE_"
DEFAULT_API_URL = "https://api.orderspace.com/v1"
DEFAULT_TOKEN_URL = "https://identity.orderspace.com/oauth/token"
DEFAULT_REQUESTS_PER_MINUTE = 60
DEFAULT_DATA_DIR = "./data"
DEFAULT_START_DATE = date(2015, 1, 1)
DEFAULT_LOOKBACK_DAYS = 7
DEFAULT_STABLE_SECONDS = 5.0
DEFAULT_WEBHOOK_STALE_HOURS = 24.0

_CREDENTIAL_MEANINGS = {"client_id": "client id", "client_secret": "client secret"}
_SECRET_FIELDS = frozenset({"client_secret", "database_url"})
# False while `from_env(mapping)` builds a model from a mapping instead of the process environment.
_READ_PROCESS_ENV: ContextVar[bool] = ContextVar("orderspace_read_process_env", default=True)


@contextmanager
def _without_process_env() -> Iterator[None]:
    token = _READ_PROCESS_ENV.set(False)
    try:
        yield
    finally:
        _READ_PROCESS_ENV.reset(token)


class ConfigurationError(ValueError):
    """A configuration variable is missing or malformed. The one-line message names the variable."""


def env_name(field: str) -> str:
    """The environment variable behind a model field: `start_date` -> `ORDERSPACE_START_DATE`."""
    return ENV_PREFIX + field.upper()


def not_set_message(field: str) -> str:
    """The message for a missing (or blank) credential."""
    return (
        f"{env_name(field)} is not set: it must hold the Orderspace private app's "
        f"{_CREDENTIAL_MEANINGS[field]}. Export it (or put it in .env for `dagster dev`) and run again."
    )


# -- value parsers: each raises ValueError("must be ...") that the model prefixes with the variable --------


def _number(raw: Any, *, whole: bool, positive: bool, unit: str = "") -> float:
    """A number from text or a number; `positive` demands > 0, else >= 0."""
    kind = ("a whole number" if whole and unit else "a number") + (f" of {unit}" if unit else "")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"must be {kind}, got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be {kind}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be {kind}, got {raw!r}")
    if positive and value <= 0:
        raise ValueError(f"must be greater than zero, got {raw!r}")
    if not positive and value < 0:
        raise ValueError(f"must be zero or more, got {raw!r}")
    if whole and value != int(value):
        raise ValueError(f"must be a whole number{f' of {unit}' if unit else ''}, got {raw!r}")
    return value


def _http_url(raw: Any) -> str:
    try:
        parsed = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"must be an http(s) URL, got {raw!r}")
    return str(raw)


def _iso_date(raw: Any) -> date:
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"must be a date as YYYY-MM-DD, got {raw!r}") from None


class OrderspaceSettings(BaseSettings):
    """Every `ORDERSPACE_*` variable (README, "Configuration"). `repr` never shows a secret.

    `OrderspaceSettings(**values)` reads the process environment for every field not passed; `read(mapping)`
    and `from_env(mapping)` read only the mapping. Construction raises `ConfigurationError`, never pydantic's
    `ValidationError`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    # The public contract.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    token_url: str = DEFAULT_TOKEN_URL
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    # Extensions (README: "(extension)").
    rate_window_seconds: float = 60.0
    throttle_db: Path | None = None
    token_cache: str | None = None
    start_date: date = DEFAULT_START_DATE
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    warehouse_stable_seconds: float = DEFAULT_STABLE_SECONDS
    # The change feed: the signing key file (default `<data_dir>/webhooks/signing_key.json`, see
    # `webhook_key_path()`), and how long without a delivery counts as stale.
    webhook_key_file: Path | None = None
    webhook_stale_hours: float = DEFAULT_WEBHOOK_STALE_HOURS
    # Shared state for several hosts (`postgres.py`, README "Shared state in PostgreSQL"): when set, the
    # request budget and access token (`client/shared_state.py`), the push ledger, the webhook event store
    # and the tombstones live in this database; else in SQLite/files on this machine.
    database_url: SecretStr | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigurationError(describe_validation_error(error)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The settings to connect with: the model from `env` (default: the process environment) with
        `overrides` winning over it, whose credentials must be set."""
        settings = cls.read(env, **overrides)
        settings.credentials()
        return settings

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The model from `env` (default: the process environment); credentials are checked when used."""
        if env is None:
            return cls(**overrides)
        values = {name: env[env_name(name)] for name in cls.model_fields if env_name(name) in env}
        with _without_process_env():
            return cls(**(values | overrides))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the process environment (skipped while reading a given mapping)."""
        return (init_settings, env_settings) if _READ_PROCESS_ENV.get() else (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        """Strip text values; drop blank ones so the default applies (the one emptiness check)."""
        if not isinstance(values, dict):
            return values
        cleaned: dict[str, Any] = {}
        for name, value in values.items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str):
                if not text.strip():
                    continue
                value = text.strip()
            cleaned[name] = value
        return cleaned

    @field_validator("api_url", "token_url", mode="before")
    @classmethod
    def _check_url(cls, value: Any) -> str:
        return _http_url(value)

    @field_validator("requests_per_minute", mode="before")
    @classmethod
    def _check_rate(cls, value: Any) -> int:
        return int(_number(value, whole=True, positive=True))

    @field_validator("rate_window_seconds", mode="before")
    @classmethod
    def _check_window(cls, value: Any) -> float:
        return _number(value, whole=False, positive=True)

    @field_validator("lookback_days", mode="before")
    @classmethod
    def _check_lookback(cls, value: Any) -> int:
        return int(_number(value, whole=True, positive=False, unit="days"))

    @field_validator("warehouse_stable_seconds", mode="before")
    @classmethod
    def _check_stable(cls, value: Any) -> float:
        return _number(value, whole=False, positive=False, unit="seconds")

    @field_validator("webhook_stale_hours", mode="before")
    @classmethod
    def _check_stale_hours(cls, value: Any) -> float:
        return _number(value, whole=False, positive=True, unit="hours")

    def webhook_key_path(self) -> Path:
        """Where `webhooks register` keeps the signing key and `webhooks serve` reads it."""
        if self.webhook_key_file is not None:
            return self.webhook_key_file.expanduser().resolve()
        return self.data_dir / "webhooks" / "signing_key.json"

    @field_validator("start_date", mode="before")
    @classmethod
    def _check_start(cls, value: Any) -> date:
        return _iso_date(value)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def credentials(self) -> tuple[str, str]:
        """(client id, client secret); a missing one raises `ConfigurationError` naming its variable."""
        if self.client_id is None:
            raise ConfigurationError(not_set_message("client_id"))
        if self.client_secret is None:
            raise ConfigurationError(not_set_message("client_secret"))
        return self.client_id, self.client_secret.get_secret_value()


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the variable of the first problem; never the value of a secret."""
    first = error.errors(include_input=False, include_url=False)[0]
    if not first["loc"]:
        return str(first["msg"])
    field = str(first["loc"][0])
    name = env_name(field)
    if first["type"] == "missing" and field in _CREDENTIAL_MEANINGS:
        return not_set_message(field)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ValueError) and field not in _SECRET_FIELDS:
        return f"{name} {cause}"  # our parsers' "must be ..., got '...'"
    return f"{name}: {first['msg']}"


def load_settings(env: Mapping[str, str] | None = None) -> OrderspaceSettings:
    """The whole model from the process environment (or `env`); credentials are checked only when used."""
    return OrderspaceSettings.read(env)


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$ORDERSPACE_DATA_DIR` (default ./data), absolute."""
    return load_settings(os.environ if env is None else env).data_dir
