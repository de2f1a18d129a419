"""The receiver killed (SIGKILL, a real child process) in the middle of a delivery: the sender never gets a
200, so Orderspace retries; the store never holds part of a delivery; the retry is stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from orderspace_pipelines.webhooks.store import open_store, store_path
from tests.webhooks.conftest import BOTH_STORES
from tests.webhooks.helpers import body_of, mixed_events, signed_headers

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(path: Path, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the receiver exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _start(
    data_dir: Path, tmp_path: Path, point: str = "", database_url: str | None = None
) -> tuple[subprocess.Popen, str, Path]:
    port_file = tmp_path / f"port-{time.monotonic_ns()}"
    args = [sys.executable, "-m", "tests.webhooks.receiver_child", str(port_file)]
    env = os.environ | {"ORDERSPACE_DATA_DIR": str(data_dir)}
    if database_url:
        env["ORDERSPACE_DATABASE_URL"] = database_url
    process = subprocess.Popen(args + ([point] if point else []), cwd=ROOT, env=env)
    _wait_for(port_file, process, "it listened")
    return process, f"http://127.0.0.1:{port_file.read_text()}/webhooks/orderspace", port_file


def _post_in_background(url: str, body: bytes) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(
                httpx.post(url, content=body, headers=signed_headers(body), timeout=60).status_code
            )
        except httpx.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, outcome


@BOTH_STORES
@pytest.mark.parametrize("point", ["delivery.parsed", "delivery.committed"])
def test_killed_mid_delivery_no_200_no_partial_delivery_retry_stored_once(
    hook_dir: Path, tmp_path: Path, point: str, state_url: str | None
) -> None:
    body = body_of(mixed_events(50))
    process, url, port_file = _start(hook_dir, tmp_path, point, state_url)
    try:
        thread, outcome = _post_in_background(url, body)
        _wait_for(Path(f"{port_file}.paused"), process, f"the delivery reached {point} ({outcome})")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        thread.join(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome  # no answer at all, no 200

    with open_store(hook_dir, state_url) as store:
        stats = store.stats()
        # Killed before the commit: nothing. After it: the whole delivery. Never a part.
        expected = (0, 0) if point == "delivery.parsed" else (1, 50)
        assert (stats.deliveries, stats.events) == expected

    # Orderspace retries the same body against the restarted receiver: stored once, all 50, in order.
    process, url, _ = _start(hook_dir, tmp_path, database_url=state_url)
    try:
        response = httpx.post(url, content=body, headers=signed_headers(body), timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert response.status_code == 200
    assert response.json()["duplicate"] is (point == "delivery.committed")
    with open_store(hook_dir, state_url) as store:
        stats = store.stats()
        assert (stats.deliveries, stats.events) == (1, 50)
        assert [e.index for e in store.pending(100)] == list(range(50))
    assert store_path(hook_dir).exists() == (state_url is None)  # the Postgres store leaves no file
