"""The current access token in PostgreSQL (ORDERSPACE_DATABASE_URL): one fetch for many processes, the secret
never stored, one clear line when the database is unreachable, and the one place that chooses the stores."""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

from orderspace_pipelines import postgres
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.client.pg_token_store import MIGRATIONS, PostgresTokenStore
from orderspace_pipelines.client.shared_state import open_shared_state
from orderspace_pipelines.client.token_store import (
    FileTokenStore,
    StoredToken,
    TokenStoreError,
    secret_digest,
)
from orderspace_pipelines.settings import OrderspaceSettings
from tests.client.shared_hosts import host_env, run_workers
from tests.conftest import connection_for
from tests.ports import free_port
from tests.postgres_server import PASSWORD

SECRET = "client-secret-never-stored"


def _token(value: str = "tok-1", secret: str = SECRET) -> StoredToken:
    return StoredToken(
        value=value,
        expires_at=time.time() + 1800,
        lifetime=1800,
        client_id="cid",
        secret_sha256=secret_digest("cid", secret),
    )


def test_round_trip_keeps_the_digest_never_the_secret(postgres_url: str) -> None:
    store = PostgresTokenStore(postgres_url, "account-a")
    other = PostgresTokenStore(postgres_url, "account-b")
    try:
        assert store.read() is None
        with store.locked():
            store.write(_token())
        stored = store.read()
        assert stored is not None and stored.value == "tok-1" and stored.client_id == "cid"
        assert stored.secret_sha256 == secret_digest("cid", SECRET)
        assert other.read() is None  # one row per account key
        with store.locked():
            assert not store.discard("some-other-token")  # only the token named is dropped
            assert store.discard("tok-1")
        assert store.read() is None
        with store.locked():
            store.write(_token("tok-2"))
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("SELECT t::text FROM orderspace_access_tokens t").fetchall()
        assert len(rows) == 1 and "tok-2" in rows[0][0]
        assert SECRET not in rows[0][0] and secret_digest("cid", SECRET) in rows[0][0]
    finally:
        store.close()
        other.close()


def test_the_lock_is_shared_between_stores(postgres_url: str) -> None:
    """Two stores are as separate as two hosts (own connections): the second waits for the first's lock."""
    first = PostgresTokenStore(postgres_url, "account")
    second = PostgresTokenStore(postgres_url, "account", lock_timeout=0.2)
    try:
        with first.locked(), first.locked():  # re-entrant within a thread
            with pytest.raises(TokenStoreError) as caught, second.locked():
                pass
            assert "timed out" in str(caught.value) and PASSWORD not in str(caught.value)
        entered = threading.Event()

        def take() -> None:
            with second.locked():
                entered.set()

        thread = threading.Thread(target=take)
        thread.start()
        thread.join(timeout=30)
        assert entered.is_set()  # released when the outer `locked()` ended
    finally:
        first.close()
        second.close()


TOKEN_WORKER = textwrap.dedent(
    """
    import logging, sys, time
    import psycopg
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    settings = OrderspaceSettings.from_env()
    with OrderspaceClient.from_settings(settings) as client:
        with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
            conn.execute("INSERT INTO test_ready VALUES (%s)", (sys.argv[1],))
            while conn.execute("SELECT count(*) FROM test_ready").fetchone()[0] < int(sys.argv[2]):
                time.sleep(0.005)
        print(len(list(client.list_tax_rates())), client.auth.tokens_fetched, client.auth.tokens_shared)
    """
)


def test_four_processes_starting_together_fetch_one_token(
    sandbox_factory, postgres_url: str, tmp_path: Path
) -> None:
    server = sandbox_factory()
    hosts = [host_env(server, postgres_url, tmp_path / f"host{n}", 6000) for n in range(2)]
    outputs, logs = run_workers(TOKEN_WORKER, postgres_url, hosts=hosts)
    fetched, shared = 0, 0
    for out in outputs:
        _, got, reused = (int(v) for v in out.split())
        fetched, shared = fetched + got, shared + reused
    assert server.stats()["tokens_issued"] == 1
    assert (fetched, shared) == (1, 3)
    assert "DEBUG" in logs
    for secret in (PASSWORD, server.config.client_secret):
        assert secret not in logs


def test_an_unreachable_database_fails_in_one_line(postgres_server, caplog) -> None:
    closed = postgres_server.url("tokendb").replace(str(postgres_server.port), str(free_port()))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(postgres.DatabaseError) as caught:
        PostgresTokenStore(closed, "account")
    message = str(caught.value)
    assert "\n" not in message
    assert "ORDERSPACE_DATABASE_URL" in message and "127.0.0.1" in message and "/tokendb" in message
    assert PASSWORD not in message and PASSWORD not in caplog.text


def test_migrations_are_idempotent(postgres_url: str) -> None:
    stores = [PostgresTokenStore(postgres_url, "a"), PostgresTokenStore(postgres_url, "b")]
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            assert postgres.migrate(conn, "token_store", MIGRATIONS) == 0
            count = conn.execute(
                "SELECT count(*) FROM orderspace_schema_migrations WHERE component = 'token_store'"
            ).fetchone()
            assert count == (len(MIGRATIONS),)
    finally:
        for store in stores:
            store.close()


def test_the_settings_choose_the_stores(sandbox, postgres_url: str, tmp_path: Path) -> None:
    local = OrderspaceSettings(**connection_for(sandbox), throttle_db=tmp_path / "t.sqlite")
    throttle, store = open_shared_state(local, local.client_id or "")
    try:
        assert throttle.path == tmp_path / "t.sqlite" and isinstance(store, FileTokenStore)
    finally:
        throttle.close()
    shared = OrderspaceSettings(**connection_for(sandbox), database_url=postgres_url)
    throttle, store = open_shared_state(shared, shared.client_id or "")
    try:
        assert throttle.path is None and "postgresql://" in throttle.where
        assert PASSWORD not in repr(throttle)
        assert isinstance(store, PostgresTokenStore) and PASSWORD not in repr(store)
    finally:
        throttle.close()
        assert isinstance(store, PostgresTokenStore)
        store.close()
    off = OrderspaceSettings(**connection_for(sandbox), database_url=postgres_url, token_cache="off")
    throttle, store = open_shared_state(off, off.client_id or "")
    throttle.close()
    assert store is None
    with OrderspaceClient(shared) as client:  # the client goes through the same chooser
        assert isinstance(client.auth.store, PostgresTokenStore)
        assert list(client.list_tax_rates()) == sandbox.store.all("tax_rates")


def test_a_database_that_refuses_the_tables_fails_in_one_line(postgres_url: str) -> None:
    """A role that may connect but not create tables (PostgreSQL 15+: no CREATE on `public` for others)."""
    from orderspace_pipelines.client.pg_throttle import PostgresBudget
    from orderspace_pipelines.client.throttle import budget_rates

    limited_password = "limited-role-secret-91b2"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE limited_role LOGIN PASSWORD '{limited_password}'")
    limited = postgres_url.replace(f"orderspace:{PASSWORD}@", f"limited_role:{limited_password}@")
    for open_store in (
        lambda: PostgresTokenStore(limited, "account"),
        lambda: PostgresBudget(limited, "account", budget_rates(60, 60.0)),
    ):
        with pytest.raises(postgres.DatabaseError) as caught:
            open_store()
        message = str(caught.value)
        assert "\n" not in message and "ORDERSPACE_DATABASE_URL" in message
        assert "limited_role@127.0.0.1" in message and "InsufficientPrivilege" in message
        assert limited_password not in message and PASSWORD not in message
