"""The shared token cache, over real HTTP against the sandbox and across real processes.

Every Dagster step builds its own client, often in its own process; they must share one access token per
account while it lives (the sandbox counts the tokens it issues in `stats()["tokens_issued"]`).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from orderspace_pipelines.client import AuthenticationError, OrderspaceClient, TokenStore
from orderspace_pipelines.client.token_store import (
    TOKEN_CACHE_ENV,
    FileTokenStore,
    MemoryTokenStore,
    StoredToken,
    TokenStoreError,
    account_key,
    secret_digest,
)
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxServer
from tests.conftest import connection_for, settings_for

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    barrier = Path(sys.argv[1])
    name = sys.argv[2]
    with OrderspaceClient(OrderspaceSettings.from_env()) as client:
        (barrier / f"ready-{name}").touch()
        while not (barrier / "go").exists():
            time.sleep(0.005)
        records = len(list(client.list_tax_rates()))
        print(json.dumps({
            "records": records,
            "fetched": client.auth.tokens_fetched,
            "shared": client.auth.tokens_shared,
        }))
    """
)


def _settings(server: SandboxServer, secret: str | None = None) -> OrderspaceSettings:
    return settings_for(server, client_secret=secret)


def _cache_path(throttle_db: Path) -> Path:
    return throttle_db.with_name(f"{throttle_db.stem}.tokens.json")


def _run_workers(
    server: SandboxServer, throttle_db: Path, tmp_path: Path, count: int
) -> list[dict[str, Any]]:
    """Start `count` processes that each build a client, wait until all are ready, then make one request."""
    barrier = tmp_path / f"barrier-{time.monotonic_ns()}"
    barrier.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ) | {
        "ORDERSPACE_CLIENT_ID": server.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": server.config.client_secret,
        "ORDERSPACE_API_URL": server.api_url,
        "ORDERSPACE_TOKEN_URL": server.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(server.config.rate_limit),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(server.config.rate_window),
        "ORDERSPACE_THROTTLE_DB": str(throttle_db),
    }
    env.pop(TOKEN_CACHE_ENV, None)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(barrier), str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < count:
            assert all(worker.poll() is None for worker in workers), "a worker died before the barrier"
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.01)
        (barrier / "go").touch()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return results


def test_processes_starting_at_once_fetch_one_token(sandbox, throttle_db, tmp_path) -> None:
    results = _run_workers(sandbox, throttle_db, tmp_path, 4)
    expected = len(sandbox.store.all("tax_rates"))
    assert [result["records"] for result in results] == [expected] * 4
    assert sandbox.stats()["tokens_issued"] == 1
    assert sum(result["fetched"] for result in results) == 1
    assert sum(result["shared"] for result in results) == 3
    assert sandbox.stats()["by_path"] == {"GET /v1/tax_rates": 4}
    assert "401" not in sandbox.stats()["by_status"]


def test_cache_file_is_private_and_never_holds_the_secret(sandbox, throttle_db) -> None:
    previous = os.umask(0)  # the most permissive umask: the modes below are the code's own
    try:
        with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
            list(client.list_tax_rates())
            token = client.auth.token()
    finally:
        os.umask(previous)
    cache = _cache_path(throttle_db)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.with_name(cache.name + ".lock").stat().st_mode) == 0o600
    raw = cache.read_text()
    assert sandbox.config.client_secret not in raw
    (entry,) = json.loads(raw)["tokens"].values()
    assert entry["access_token"] == token
    assert entry["client_id"] == sandbox.config.client_id
    assert entry["secret_sha256"] == secret_digest(sandbox.config.client_id, sandbox.config.client_secret)
    assert entry["expires_at"] > time.time() + 1700
    # Written by rename from a temporary file: nothing else is left beside it.
    assert sorted(p.name for p in throttle_db.parent.iterdir() if "tokens" in p.name) == [
        cache.name,
        cache.name + ".lock",
    ]


def test_a_sync_like_sequence_of_clients_in_one_process_uses_one_token(sandbox, throttle_db) -> None:
    resource = OrderspaceResource(**connection_for(sandbox))
    os.environ["ORDERSPACE_THROTTLE_DB"] = str(throttle_db)
    try:
        for step in ("orders", "dispatches", "invoices", "customers", "products", "inventory_levels") * 2:
            with resource.get_client() as client:  # one client per step, as the pull assets do
                assert list(client.iter_records(step)) == sandbox.store.all(step)
    finally:
        del os.environ["ORDERSPACE_THROTTLE_DB"]
    assert sandbox.stats()["tokens_issued"] == 1
    assert "401" not in sandbox.stats()["by_status"]


def test_a_real_dagster_sync_takes_one_token(sandbox, orderspace_env) -> None:
    resources = {
        "orderspace": OrderspaceResource.from_env(),
        "lake": LakeResource(data_dir=orderspace_env["ORDERSPACE_DATA_DIR"]),
    }
    result = run_sync(resources=resources)
    assert result.success, result.error
    assert len(result.selected) >= 12
    assert sandbox.stats()["tokens_issued"] == 1
    assert "401" not in sandbox.stats()["by_status"]


def test_an_expired_cached_token_is_renewed_before_use(sandbox_factory, throttle_db) -> None:
    server = sandbox_factory(token_ttl=1.0)
    with OrderspaceClient(_settings(server), throttle_db=str(throttle_db)) as first:
        list(first.list_tax_rates())
        old = first.auth.token()
    time.sleep(1.1)  # the cached token is now past its expiry
    with OrderspaceClient(_settings(server), throttle_db=str(throttle_db)) as second:
        list(second.list_tax_rates())
        new = second.auth.token()
        assert second.auth.tokens_fetched == 1 and second.auth.tokens_shared == 0
    assert new != old
    stats = server.stats()
    assert stats["tokens_issued"] == 2
    assert "401" not in stats["by_status"], "the expiry was known from the cache, not learnt from a 401"
    (entry,) = json.loads(_cache_path(throttle_db).read_text())["tokens"].values()
    assert entry["access_token"] == new


def test_a_revoked_token_is_renewed_exactly_once_across_clients(sandbox, throttle_db) -> None:
    clients = [OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) for _ in range(3)]
    try:
        for client in clients:
            list(client.list_tax_rates())
        assert sandbox.stats()["tokens_issued"] == 1
        sandbox.revoke_tokens()
        for client in clients:  # each still holds the revoked token in memory
            assert list(client.list_tax_rates()) == sandbox.store.all("tax_rates")
        assert len({client.auth.token() for client in clients}) == 1
    finally:
        for client in clients:
            client.close()
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 2
    assert stats["by_status"]["401"] == 3


def test_a_revoked_cached_token_is_renewed_once_by_processes_starting_at_once(
    sandbox, throttle_db, tmp_path
) -> None:
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
        list(client.list_tax_rates())
    sandbox.revoke_tokens()  # the cache now holds a token the API rejects
    results = _run_workers(sandbox, throttle_db, tmp_path, 4)
    assert all(result["records"] == len(sandbox.store.all("tax_rates")) for result in results)
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 2
    assert sum(result["fetched"] for result in results) == 1
    assert stats["by_status"]["401"] == 4  # each process presented the cached token once


def test_a_rotated_secret_is_never_served_the_old_token(sandbox, throttle_db) -> None:
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
        list(client.list_tax_rates())
    requests = sandbox.stats()["requests"]
    wrong = _settings(sandbox, secret="a-rotated-secret")
    with (
        OrderspaceClient(wrong, throttle_db=str(throttle_db)) as other,
        pytest.raises(AuthenticationError, match="from POST /oauth/token"),
    ):
        list(other.list_tax_rates())
    assert sandbox.stats()["requests"] == requests, "no API request was sent with the other secret's token"
    assert sandbox.stats()["tokens_issued"] == 1


def test_the_cache_can_be_disabled(sandbox, throttle_db, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_CACHE_ENV, "off")
    for _ in range(2):
        with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
            assert client.auth.store is None
            list(client.list_tax_rates())
    assert sandbox.stats()["tokens_issued"] == 2
    assert not _cache_path(throttle_db).exists()


def test_the_cache_can_be_relocated(sandbox, throttle_db, tmp_path, monkeypatch) -> None:
    elsewhere = tmp_path / "private" / "tokens.json"
    monkeypatch.setenv(TOKEN_CACHE_ENV, str(elsewhere))
    for _ in range(2):
        with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
            list(client.list_tax_rates())
    assert sandbox.stats()["tokens_issued"] == 1
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert not _cache_path(throttle_db).exists()


def test_the_cache_can_be_a_directory(sandbox, throttle_db, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "cache-dir"
    folder.mkdir()
    monkeypatch.setenv(TOKEN_CACHE_ENV, str(folder))
    for _ in range(2):
        with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
            list(client.list_tax_rates())
    assert sandbox.stats()["tokens_issued"] == 1
    assert stat.S_IMODE((folder / "orderspace-tokens.json").stat().st_mode) == 0o600


def test_a_corrupt_or_shared_cache_file_is_ignored_and_replaced(sandbox, throttle_db, caplog) -> None:
    cache = _cache_path(throttle_db)
    cache.write_text("{not json")
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
        list(client.list_tax_rates())
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())["tokens"]
    assert sandbox.stats()["tokens_issued"] == 1

    # A readable-by-others file is never trusted (nor is it the 0600 file we write).
    planted = StoredToken("planted-token", time.time() + 1800, 1800.0, sandbox.config.client_id, "")
    key = account_key(sandbox.api_url, sandbox.token_url, sandbox.config.client_id)
    planted_entry = planted.as_json() | {
        "secret_sha256": secret_digest(sandbox.config.client_id, sandbox.config.client_secret)
    }
    cache.write_text(json.dumps({"version": 1, "tokens": {key: planted_entry}}))
    cache.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="orderspace_pipelines.client")
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
        list(client.list_tax_rates())
        assert client.auth.token() != "planted-token"
    assert "not private to this user" in caplog.text
    assert "401" not in sandbox.stats()["by_status"], "the planted token was never sent"
    assert sandbox.stats()["tokens_issued"] == 2
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_an_unusable_cache_location_costs_tokens_not_the_run(
    sandbox, throttle_db, tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(TOKEN_CACHE_ENV, str(blocker / "tokens.json"))  # a path under a regular file
    caplog.set_level(logging.WARNING, logger="orderspace_pipelines.client")
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db)) as client:
        assert list(client.list_tax_rates()) == sandbox.store.all("tax_rates")
    assert "The shared token cache is unusable" in caplog.text
    assert sandbox.config.client_secret not in caplog.text


def test_an_explicit_store_is_shared_and_none_means_a_token_of_its_own(sandbox, throttle_db) -> None:
    store: TokenStore = MemoryTokenStore()
    for _ in range(3):
        with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db), token_store=store) as client:
            list(client.list_tax_rates())
    assert sandbox.stats()["tokens_issued"] == 1
    with OrderspaceClient(_settings(sandbox), throttle_db=str(throttle_db), token_store=None) as client:
        list(client.list_tax_rates())
    assert sandbox.stats()["tokens_issued"] == 2
    assert not _cache_path(throttle_db).exists()


def test_discard_only_drops_the_named_token(tmp_path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", "account")
    token = StoredToken("value-1", time.time() + 60, 60.0, "id", "digest")
    with store.locked():
        store.write(token)
        assert store.discard("value-0") is False
        assert store.read() == token
        assert store.discard("value-1") is True
        assert store.read() is None
    assert "value-1" not in repr(token)


class _UnwritableStore(MemoryTokenStore):
    """A store whose writes fail (a full disk, a read-only folder)."""

    def write(self, token: StoredToken) -> None:
        raise TokenStoreError("disk full")


def test_a_store_that_cannot_save_the_token_costs_no_extra_token(sandbox, throttle_db, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="orderspace_pipelines.client")
    with OrderspaceClient(
        _settings(sandbox), throttle_db=str(throttle_db), token_store=_UnwritableStore()
    ) as client:
        assert list(client.list_tax_rates()) == sandbox.store.all("tax_rates")
        list(client.list_customers())
    assert sandbox.stats()["tokens_issued"] == 1
    assert "Could not share the new access token (disk full)" in caplog.text
