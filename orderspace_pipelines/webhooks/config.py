"""Where the webhook pieces live and when silence is alarming, from `OrderspaceSettings` at call time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from orderspace_pipelines.settings import OrderspaceSettings, load_settings


@dataclass(frozen=True)
class WebhookConfig:
    """`data_dir` holds the event store (`webhooks/events.sqlite`); `key_file` the signing key;
    `stale_after`: no delivery for this long (since the last one, or the registration) is worth a warning;
    `database_url`: the event store is in that Postgres database (`ORDERSPACE_DATABASE_URL`), not the file."""

    data_dir: Path
    key_file: Path
    stale_after: timedelta
    database_url: SecretStr | None = None


def webhook_config(settings: OrderspaceSettings | None = None) -> WebhookConfig:
    """The configuration from `settings` (default: the environment, read now, never at import)."""
    settings = settings or load_settings()
    return WebhookConfig(
        data_dir=settings.data_dir,
        key_file=settings.webhook_key_path(),
        stale_after=timedelta(hours=settings.webhook_stale_hours),
        database_url=settings.database_url,
    )
