"""The webhook subscription sensor warns when the subscription is missing or silent (sandbox over HTTP)."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from orderspace_pipelines.cli import main
from orderspace_pipelines.defs.change_feed import WebhookSubscriptionWarning, webhook_subscription_sensor
from orderspace_pipelines.webhooks.signing import key_file_path, load_subscription
from tests.pull.conftest import resources_for

URL = "https://receiver.example.test/webhooks/orderspace"


def _tick(env: dict[str, str]) -> dg.SkipReason:
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources_for(env))
        return webhook_subscription_sensor(context)


def test_warns_when_missing_then_healthy_then_silent(
    orderspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(WebhookSubscriptionWarning, match="not registered"):
        _tick(orderspace_env)
    assert main(["webhooks", "register", URL]) == 0
    stored = load_subscription(key_file_path(Path(orderspace_env["ORDERSPACE_DATA_DIR"])))
    assert stored is not None
    healthy = _tick(orderspace_env)
    assert "webhook subscription healthy" in str(healthy.skip_message)
    assert stored.signing_key not in str(healthy.skip_message)
    # Silence longer than ORDERSPACE_WEBHOOK_STALE_HOURS (here 1.8 s) since the registration: a warning.
    monkeypatch.setenv("ORDERSPACE_WEBHOOK_STALE_HOURS", "0.0005")
    time.sleep(2)
    with pytest.raises(WebhookSubscriptionWarning, match="nothing has arrived") as raised:
        _tick(orderspace_env)
    assert stored.signing_key not in str(raised.value)
