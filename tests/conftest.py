"""Shared fixtures: a real sandbox Orderspace API on 127.0.0.1 and the environment pointing at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxConfig, SandboxServer
from tests.postgres_server import PostgresServer

# Fast time knobs: tests must not wait real minutes. The budget is generous so only the
# rate-limit tests, which set their own, ever wait on it.
FAST_RATE_LIMIT = 6000
FAST_RATE_WINDOW = 60.0


@pytest.fixture
def sandbox_factory() -> Iterator:
    """Start sandboxes with custom knobs; every one is stopped at the end of the test."""
    started: list[SandboxServer] = []

    def start(**overrides) -> SandboxServer:
        config = SandboxConfig(
            port=0,
            scale=overrides.pop("scale", "tiny"),
            rate_limit=overrides.pop("rate_limit", FAST_RATE_LIMIT),
            rate_window=overrides.pop("rate_window", FAST_RATE_WINDOW),
            **overrides,
        )
        server = SandboxServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    """A fresh tiny sandbox for one test (starts in well under a second)."""
    return sandbox_factory()


@pytest.fixture
def throttle_db(tmp_path: Path) -> Path:
    """A per-test throttle bucket so tests never share (or wait on) each other's budget."""
    return tmp_path / "throttle.sqlite"


def connection_for(
    server: SandboxServer, *, requests_per_minute: int | None = None, client_secret: str | None = None
) -> dict[str, Any]:
    """The connection fields (for `OrderspaceSettings` or `OrderspaceResource`) that point at `server`."""
    return {
        "client_id": server.config.client_id,
        "client_secret": client_secret or server.config.client_secret,
        "api_url": server.api_url,
        "token_url": server.token_url,
        "requests_per_minute": requests_per_minute or server.config.rate_limit,
        "rate_window_seconds": server.config.rate_window,
    }


def settings_for(
    server: SandboxServer, *, requests_per_minute: int | None = None, client_secret: str | None = None
) -> OrderspaceSettings:
    """Settings for a client of `server` (its account, its rate budget)."""
    return OrderspaceSettings(
        **connection_for(server, requests_per_minute=requests_per_minute, client_secret=client_secret)
    )


@pytest.fixture
def settings(sandbox: SandboxServer) -> OrderspaceSettings:
    return settings_for(sandbox)


@pytest.fixture
def orderspace_env(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, tmp_path: Path, throttle_db: Path
):
    """Point the contract's environment variables at the sandbox and a temporary data dir."""
    data_dir = tmp_path / "data"
    values = {
        "ORDERSPACE_CLIENT_ID": sandbox.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": sandbox.config.client_secret,
        "ORDERSPACE_API_URL": sandbox.api_url,
        "ORDERSPACE_TOKEN_URL": sandbox.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(sandbox.config.rate_limit),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(sandbox.config.rate_window),
        "ORDERSPACE_DATA_DIR": str(data_dir),
        "ORDERSPACE_THROTTLE_DB": str(throttle_db),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ) | values


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (started on first use, about 2 s)."""
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server, as a `postgresql://user:password@host:port/db` URL."""
    return postgres_server.create_database()


BACKENDS = ["sqlite", "postgres"]
# Runs a test on both backends of the shared state (push ledger, event store): `@BOTH_BACKENDS` above a test
# that uses `state_url` (itself or through a fixture).
BOTH_BACKENDS = pytest.mark.parametrize("state_backend", BACKENDS, indirect=True)


@pytest.fixture
def state_backend(request: pytest.FixtureRequest) -> str:
    """The shared state's backend: `sqlite` unless a test is parametrized with `BOTH_BACKENDS`."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def state_url(state_backend: str, request: pytest.FixtureRequest) -> str | None:
    """`ORDERSPACE_DATABASE_URL` for the shared state: a fresh Postgres database, or None (SQLite files)."""
    return request.getfixturevalue("postgres_url") if state_backend == "postgres" else None
