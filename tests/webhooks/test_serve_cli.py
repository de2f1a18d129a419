"""`orderspace-pipelines webhooks serve` as a real process: it serves, logs each delivery without the key,
and stops gracefully (exit 0) on SIGTERM and on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orderspace_pipelines.webhooks.store import SqliteEventStore, store_path
from tests.ports import free_port
from tests.webhooks.helpers import TEST_KEY, body_of, mixed_events, signed_headers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_receives_logs_and_stops_gracefully(hook_dir: Path, stop: signal.Signals) -> None:
    port = free_port()
    env = os.environ | {"ORDERSPACE_DATA_DIR": str(hook_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "orderspace_pipelines.cli", "webhooks", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "key": True}
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        body = body_of(mixed_events(20))
        response = httpx.post(f"{base}/webhooks/orderspace", content=body, headers=signed_headers(body))
        assert response.status_code == 200
        forged = httpx.post(
            f"{base}/webhooks/orderspace", content=body, headers={"X-Orderspace-Signature": "x"}
        )
        assert forged.status_code == 401
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "delivery 1 stored: 20 events" in err
    assert "delivery rejected 401" in err
    assert TEST_KEY not in out + err
    with SqliteEventStore(store_path(hook_dir)) as store:
        assert store.stats().events == 20
