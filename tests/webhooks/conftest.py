"""Fixtures for the webhook tests: a data dir with a signing key, and a live receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orderspace_pipelines.webhooks.signing import Subscription, key_file_path, save_subscription
from orderspace_pipelines.webhooks.store import EventStore, open_store
from tests.conftest import BOTH_BACKENDS
from tests.webhooks.helpers import TEST_KEY, Receiver, start_receiver


@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    """A data dir whose key file holds TEST_KEY (as `register` would leave it)."""
    data_dir = tmp_path / "data"
    save_subscription(
        key_file_path(data_dir),
        Subscription("wh_test0001", "https://example.test/webhooks/orderspace", TEST_KEY, datetime.now(UTC)),
    )
    return data_dir


# Runs a test on both event stores: `@BOTH_STORES` above a test that uses `receiver`/`store`/`state_url`.
BOTH_STORES = BOTH_BACKENDS


@pytest.fixture
def receiver(hook_dir: Path, state_url: str | None) -> Iterator[Receiver]:
    running = start_receiver(hook_dir, key_file_path(hook_dir), state_url)
    yield running
    running.stop()


@pytest.fixture
def store(hook_dir: Path, state_url: str | None) -> Iterator[EventStore]:
    """The receiver's store, opened by the test as the applier would (a second connection)."""
    opened = open_store(hook_dir, state_url)
    yield opened
    opened.close()
