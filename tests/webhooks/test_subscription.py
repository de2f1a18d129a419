"""`webhooks register` and `webhooks status` against the sandbox's webhook endpoints over real HTTP."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from orderspace_pipelines.cli import main
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.webhooks.events import EVENT_TYPES
from orderspace_pipelines.webhooks.signing import key_file_path, load_subscription, sign
from orderspace_pipelines.webhooks.store import SqliteEventStore, store_path
from orderspace_pipelines.webhooks.subscription import enabled_state, status
from tests.conftest import settings_for
from tests.webhooks.helpers import body_of, event, start_receiver

URL = "https://receiver.example.test/webhooks/orderspace"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(sandbox, throttle_db: Path):
    with OrderspaceClient.from_settings(
        settings_for(sandbox), throttle_db=str(throttle_db), token_store=None
    ) as opened:
        yield opened


def _data_dir(env: dict[str, str]) -> Path:
    return Path(env["ORDERSPACE_DATA_DIR"])


def _ours(client: OrderspaceClient, url: str = URL) -> list[dict]:
    return [hook for hook in client.list_webhooks() if hook.get("endpoint") == url]


def test_register_twice_leaves_one_subscription_and_a_private_key(
    orderspace_env, client, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seeded = len(list(client.list_webhooks()))
    assert main(["webhooks", "register", URL]) == 0
    first = capsys.readouterr()
    # The second run in a real process: its whole stdout and stderr are checked for the key.
    second = subprocess.run(
        [sys.executable, "-m", "orderspace_pipelines.cli", "-v", "webhooks", "register", URL],
        cwd=ROOT, env=orderspace_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    key_file = key_file_path(_data_dir(orderspace_env))
    stored = load_subscription(key_file)
    assert stored is not None
    ours = _ours(client)
    assert len(ours) == 1
    assert len(list(client.list_webhooks())) == seeded + 1
    assert ours[0]["id"] == stored.webhook_id
    assert set(ours[0]["events"]) == set(EVENT_TYPES)
    assert ours[0]["signing_key"] == stored.signing_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"webhook {stored.webhook_id} created" in first.out
    assert f"webhook {stored.webhook_id} updated" in second.stdout
    for text in (first.out, first.err, second.stdout, second.stderr, caplog.text):
        assert stored.signing_key not in text
    assert not list(key_file.parent.glob(".signing_key.*"))  # no temporary file left behind


def test_register_finds_the_webhook_by_url_when_the_key_file_is_lost(orderspace_env, client) -> None:
    assert main(["webhooks", "register", URL]) == 0
    key_file = key_file_path(_data_dir(orderspace_env))
    first = load_subscription(key_file)
    key_file.unlink()
    assert main(["webhooks", "register", URL]) == 0
    again = load_subscription(key_file)
    assert first is not None and again is not None
    assert again.webhook_id == first.webhook_id
    assert len(_ours(client)) == 1


def test_register_moves_the_one_webhook_to_a_new_url(orderspace_env, client) -> None:
    assert main(["webhooks", "register", URL]) == 0
    total = len(list(client.list_webhooks()))
    moved = "https://elsewhere.example.test/webhooks/orderspace"
    assert main(["webhooks", "register", moved]) == 0
    stored = load_subscription(key_file_path(_data_dir(orderspace_env)))
    assert stored is not None and stored.endpoint == moved
    assert len(list(client.list_webhooks())) == total
    assert _ours(client) == [] and [h["id"] for h in _ours(client, moved)] == [stored.webhook_id]


def test_register_recreates_a_webhook_deleted_at_orderspace(
    orderspace_env, client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhooks", "register", URL]) == 0
    gone = load_subscription(key_file_path(_data_dir(orderspace_env)))
    assert gone is not None
    client.delete_webhook(gone.webhook_id)
    capsys.readouterr()
    assert main(["webhooks", "status"]) == 3
    assert f"webhook {gone.webhook_id} no longer exists" in capsys.readouterr().out
    assert main(["webhooks", "register", URL]) == 0
    out = capsys.readouterr().out
    assert "created" in out and f"the stored webhook {gone.webhook_id} no longer exists" in out
    assert len(_ours(client)) == 1


def test_register_reports_orderspace_refusal_and_stores_nothing(
    orderspace_env, capsys: pytest.CaptureFixture[str]
) -> None:
    # Orderspace requires an https endpoint (the reference's 422 example); the message reaches the user.
    assert main(["webhooks", "register", "http://127.0.0.1:8787/webhooks/orderspace"]) == 1
    assert "https" in capsys.readouterr().err
    assert not key_file_path(_data_dir(orderspace_env)).exists()
    assert main(["webhooks", "register", "not a url"]) == 2
    assert "expected the receiver's public URL" in capsys.readouterr().err


def test_status_without_registration_says_so(orderspace_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["webhooks", "status"]) == 3
    out = capsys.readouterr().out
    assert "subscription: not registered" in out
    assert "last delivery: none yet" in out


def test_status_after_register_and_deliveries(
    orderspace_env, client, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _data_dir(orderspace_env)
    assert main(["webhooks", "register", URL]) == 0
    stored = load_subscription(key_file_path(data_dir))
    assert stored is not None
    # The key register stored is the one the receiver verifies with: a delivery signed with it lands.
    receiver = start_receiver(data_dir, key_file_path(data_dir))
    try:
        body = body_of([event("order.updated", 1), event("order.deleted", 2), event("payment.created", 3)])
        assert (
            receiver.post(body, {"X-Orderspace-Signature": sign(stored.signing_key, body)}).status_code == 200
        )
    finally:
        receiver.stop()
    capsys.readouterr()
    assert main(["webhooks", "status"]) == 0
    out = capsys.readouterr().out
    assert f"subscription: {stored.webhook_id} -> {URL} (14/14 event types" in out
    assert "last delivery: 20" in out
    assert "pending events: 3 (order 2, invoice 0, payment 1, dispatch 0" in out
    assert "last applied: never" in out
    assert stored.signing_key not in out

    # One API request, and a stale warning (exit 4) once nothing has arrived for longer than configured.
    with SqliteEventStore(store_path(data_dir)) as store:
        stats = store.stats()
    before = client.stats.requests
    assert stats.last_received_at is not None
    report = status(
        client, key_file_path(data_dir), stats,
        stale_after=timedelta(hours=2), now=stats.last_received_at + timedelta(hours=3),
    )  # fmt: skip
    assert client.stats.requests - before == 1
    assert report.exit_code == 4
    assert any(line.startswith("WARNING: nothing has arrived for more than 2 h") for line in report.lines)


def test_enabled_state_reads_what_the_api_may_say() -> None:
    assert enabled_state({"id": "wh_1"}) is None  # the documented object says nothing
    assert enabled_state({"enabled": False}) is False
    assert enabled_state({"disabled": True}) is False
    assert enabled_state({"active": True}) is True
    assert enabled_state({"status": "disabled"}) is False


def test_key_file_location_and_staleness_are_configurable(
    orderspace_env,
    client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "secrets" / "orderspace-webhook.json"
    monkeypatch.setenv("ORDERSPACE_WEBHOOK_KEY_FILE", str(elsewhere))
    assert main(["webhooks", "register", URL]) == 0
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert not key_file_path(_data_dir(orderspace_env)).exists()
    monkeypatch.setenv("ORDERSPACE_WEBHOOK_STALE_HOURS", "soon")
    assert main(["webhooks", "status"]) == 2
    assert "ORDERSPACE_WEBHOOK_STALE_HOURS must be a number of hours, got 'soon'" in capsys.readouterr().err
