"""Fixtures for the sandbox's own tests: plain httpx against the sandbox (never the project's client)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from sandbox_test_helpers import api_client

from orderspace_sandbox import SandboxServer


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with api_client(sandbox) as client:
        yield client


@pytest.fixture
def api_for() -> Iterator[Callable[[SandboxServer], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(server: SandboxServer) -> httpx.Client:
        client = api_client(server)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
