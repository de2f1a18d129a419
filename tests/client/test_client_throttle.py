"""The shared request budget: spacing, the window across processes, 429 recovery and the shared pause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orderspace_pipelines.client import RateLimitError, RequestThrottle, default_throttle_path

WORKER = textwrap.dedent(
    """
    import json
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    with OrderspaceClient.from_settings(OrderspaceSettings.from_env()) as client:
        ids = [order["id"] for order in client.list_orders(page_size=5)]
        print(json.dumps({"ids": ids, "stats": client.stats.as_dict()}))
    """
)


def test_budget_held_across_two_processes(sandbox_factory, throttle_db: Path) -> None:
    server = sandbox_factory(rate_limit=20, rate_window=1.0)
    env = os.environ | {
        "ORDERSPACE_CLIENT_ID": server.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": server.config.client_secret,
        "ORDERSPACE_API_URL": server.api_url,
        "ORDERSPACE_TOKEN_URL": server.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": "20",
        "ORDERSPACE_RATE_WINDOW_SECONDS": "1.0",
        "ORDERSPACE_THROTTLE_DB": str(throttle_db),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
        results.append(json.loads(out))
    expected = [order["id"] for order in server.store.all("orders")]
    assert all(result["ids"] == expected for result in results)
    stats = server.stats()
    assert stats["requests"] == 2 * 30
    assert stats["rate_limited"] == 0
    assert stats["max_in_window"] <= 20
    # The budget was actually contended: at least one process had to wait for the window.
    assert max(r["stats"]["max_throttle_wait_seconds"] for r in results) > 0.0


def test_429_waits_for_retry_after_then_continues(sandbox_factory, make_client) -> None:
    server = sandbox_factory(rate_window=1.0)  # Retry-After: 1
    client = make_client(server)
    server.faults.inject("429", path_prefix="/v1/orders")
    started = time.time()
    assert list(client.list_orders()) == server.store.all("orders")
    finished = time.time()
    assert client.stats.rate_limited == 1 and client.stats.retries == 1
    # The 429 paused the throttle for Retry-After (1 s) from when it arrived, and the retry waited it out
    # (ordering of wall-clock instants, not a speed measurement: it holds however loaded the machine is).
    paused_until = client.throttle.paused_until()
    assert paused_until >= started + 1.0
    assert finished >= paused_until
    assert client.stats.max_throttle_wait_seconds > 0
    assert server.stats()["by_status"]["429"] == 1


def test_persistent_429_raises_rate_limit_error(sandbox_factory, make_client) -> None:
    server = sandbox_factory(rate_window=0.2)
    client = make_client(server, max_retries=1, min_429_wait=0.2)
    server.faults.inject("429", count=3, path_prefix="/v1/tax_rates")
    with pytest.raises(RateLimitError) as caught:
        list(client.list_tax_rates())
    assert str(caught.value).startswith("429 Too Many Requests from GET /v1/tax_rates: Too many requests")
    assert caught.value.request_id
    assert client.stats.rate_limited == 2


def test_a_pause_set_by_one_process_holds_every_other(throttle_db: Path) -> None:
    """Two throttles on one file are as separate as two processes: own SQLite connection, own file lock."""
    first = RequestThrottle(throttle_db, limit=6000, window_seconds=60.0)
    second = RequestThrottle(throttle_db, limit=6000, window_seconds=60.0)
    try:
        assert second.acquire() < 0.5
        first.pause_all(0.6, reason="429 in another process")
        assert second.paused_until() > 0
        assert second.acquire() >= 0.55
    finally:
        first.close()
        second.close()


def test_spacing_between_requests(throttle_db: Path) -> None:
    throttle = RequestThrottle(throttle_db, limit=20, window_seconds=1.0)
    try:
        waits = [throttle.acquire() for _ in range(4)]
    finally:
        throttle.close()
    assert all(wait >= 0.04 for wait in waits[1:])  # one request every 50 ms at most


def test_default_throttle_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORDERSPACE_THROTTLE_DB", raising=False)
    one = default_throttle_path("https://api.orderspace.com/v1", "client-a")
    assert one.name.startswith("orderspace-throttle-") and one.suffix == ".sqlite"
    assert one == default_throttle_path("https://api.orderspace.com/v1", "client-a")
    assert one != default_throttle_path("https://api.orderspace.com/v1", "client-b")
    monkeypatch.setenv("ORDERSPACE_THROTTLE_DB", str(tmp_path / "shared.sqlite"))
    # The variable is read by the settings model (issue 8), which hands it to the client.
    from orderspace_pipelines.settings import load_settings

    assert default_throttle_path("x", "y", load_settings().throttle_db) == tmp_path / "shared.sqlite"
    assert default_throttle_path("x", "y").parent == one.parent  # the function itself reads no environment
