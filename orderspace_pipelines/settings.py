"""Environment configuration shared by the CLI, the Dagster resources and the client factory.

Only the standard library: no Dagster, no HTTP. Every variable of the public contract is read here,
so a missing one is reported once, by name, in the same words everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "https://api.orderspace.com/v1"
DEFAULT_TOKEN_URL = "https://identity.orderspace.com/oauth/token"
DEFAULT_REQUESTS_PER_MINUTE = 60
DEFAULT_DATA_DIR = "./data"


class SettingsError(ValueError):
    """A configuration variable is missing or malformed. The message names the variable."""


def _read(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _require(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = _read(env, name)
    if value is None:
        raise SettingsError(
            f"{name} is not set: it must hold the Orderspace private app's {meaning}. "
            f"Export it (or put it in .env for `dagster dev`) and run again."
        )
    return value


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than zero, got {raw!r}")
    return value


def env_non_negative(name: str, default: float, *, whole: bool = False, unit: str = "") -> float:
    """A zero-or-more number from the environment (`default` when unset); a bad value names the variable."""
    raw = _read(os.environ, name)
    if raw is None:
        return default
    kind = ("a whole number" if whole else "a number") + (f" of {unit}" if unit else "")
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be zero or more, got {raw!r}")
    return value


@dataclass(frozen=True)
class OrderspaceSettings:
    """Connection settings for one Orderspace account. `repr` never shows the secret."""

    client_id: str
    client_secret: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    token_url: str = DEFAULT_TOKEN_URL
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    # Extensions to the contract, for the sandbox and tests: the length of the rate window the
    # budget applies to (the real API's is 60 s) and the minimum pause after a 429.
    rate_window_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OrderspaceSettings:
        env = os.environ if env is None else env
        client_id = _require(env, "ORDERSPACE_CLIENT_ID", "client id")
        client_secret = _require(env, "ORDERSPACE_CLIENT_SECRET", "client secret")
        rpm = _positive_number(env, "ORDERSPACE_REQUESTS_PER_MINUTE", DEFAULT_REQUESTS_PER_MINUTE)
        if rpm != int(rpm):
            raise SettingsError(f"ORDERSPACE_REQUESTS_PER_MINUTE must be a whole number, got {rpm!r}")
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            api_url=_read(env, "ORDERSPACE_API_URL", DEFAULT_API_URL) or DEFAULT_API_URL,
            token_url=_read(env, "ORDERSPACE_TOKEN_URL", DEFAULT_TOKEN_URL) or DEFAULT_TOKEN_URL,
            requests_per_minute=int(rpm),
            rate_window_seconds=_positive_number(env, "ORDERSPACE_RATE_WINDOW_SECONDS", 60.0),
        )


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$ORDERSPACE_DATA_DIR` (default ./data), absolute."""
    env = os.environ if env is None else env
    return Path(_read(env, "ORDERSPACE_DATA_DIR", DEFAULT_DATA_DIR) or DEFAULT_DATA_DIR).resolve()
