"""Where the webhook pieces live and when silence is alarming, read from the settings at call time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from orderspace_pipelines.settings import SettingsError, data_dir, env_non_negative
from orderspace_pipelines.webhooks.signing import key_file_path

DEFAULT_STALE_HOURS = 24.0


@dataclass(frozen=True)
class WebhookConfig:
    """`data_dir` holds the event store (`webhooks/events.sqlite`); `key_file` the signing key;
    `stale_after`: no delivery for this long (since the last one, or the registration) is worth a warning."""

    data_dir: Path
    key_file: Path
    stale_after: timedelta


def webhook_config() -> WebhookConfig:
    """The configuration from the environment (read now, never at import)."""
    root = data_dir()
    hours = env_non_negative("ORDERSPACE_WEBHOOK_STALE_HOURS", DEFAULT_STALE_HOURS, unit="hours")
    if hours <= 0:
        raise SettingsError(f"ORDERSPACE_WEBHOOK_STALE_HOURS must be greater than zero, got {hours!r}")
    configured = os.environ.get("ORDERSPACE_WEBHOOK_KEY_FILE", "").strip()
    key_file = Path(configured).expanduser().resolve() if configured else key_file_path(root)
    return WebhookConfig(data_dir=root, key_file=key_file, stale_after=timedelta(hours=hours))
