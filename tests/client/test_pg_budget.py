"""The request budget and the 429 pause in PostgreSQL (ORDERSPACE_DATABASE_URL): held by real processes that
share nothing but the database, measured from outside the bucket."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest
from pyrate_limiter import Rate

from orderspace_pipelines import postgres
from orderspace_pipelines.client import OrderspaceClient, RequestThrottle
from orderspace_pipelines.client.pg_throttle import LOCK_NAMESPACE, PostgresBudget
from orderspace_pipelines.client.pg_throttle import MIGRATIONS as BUDGET_MIGRATIONS
from orderspace_pipelines.postgres import advisory_key
from orderspace_pipelines.settings import OrderspaceSettings
from tests.client.shared_hosts import host_env, run_workers
from tests.conftest import connection_for
from tests.ports import free_port
from tests.postgres_server import PASSWORD

LIMIT, WINDOW, WORKERS, PER_WORKER = 30, 2.0, 4, 25

# One "process on some host": waits at a barrier in the database until all are ready, then takes slots and
# records each admission with the database's clock on a connection of its own (not the bucket's).
BUDGET_WORKER = textwrap.dedent(
    """
    import sys, time
    import psycopg
    from orderspace_pipelines.client import RequestThrottle

    worker, workers, url, count, limit, window = sys.argv[1:7]
    throttle = RequestThrottle.on_postgres(url, "contended", limit=int(limit), window_seconds=float(window))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO test_ready VALUES (%s)", (worker,))
        while conn.execute("SELECT count(*) FROM test_ready").fetchone()[0] < int(workers):
            time.sleep(0.01)
        for _ in range(int(count)):
            throttle.acquire()
            conn.execute("INSERT INTO test_admissions VALUES (%s, clock_timestamp())", (worker,))
    throttle.close()
    """
)


def _max_in_sliding_window(times: list[float], window: float) -> int:
    """The most admissions inside any window of `window` seconds (every window starting at an admission)."""
    times = sorted(times)
    best, end = 0, 0
    for start, first in enumerate(times):
        while end < len(times) and times[end] < first + window:
            end += 1
        best = max(best, end - start)
    return best


def run_budget_workers(postgres_url: str, script: str, args: list[str]) -> None:
    """WORKERS processes running `script` against one budget; each records its admissions in the database."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE test_admissions (worker TEXT, at TIMESTAMPTZ)")
    run_workers(script, postgres_url, [postgres_url, *args], count=WORKERS)


def test_four_processes_never_exceed_the_budget_and_none_starves(postgres_url: str) -> None:
    run_budget_workers(postgres_url, BUDGET_WORKER, [str(PER_WORKER), str(LIMIT), str(WINDOW)])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT worker, EXTRACT(EPOCH FROM at)::float8 FROM test_admissions ORDER BY at"
        ).fetchall()
    assert len(rows) == WORKERS * PER_WORKER
    by_worker = {name: sum(1 for who, _ in rows if who == name) for name, _ in rows}
    assert by_worker == {f"w{n}": PER_WORKER for n in range(WORKERS)}
    times = [at for _, at in rows]
    # The budget: never more than LIMIT admissions in any WINDOW, judged on every sliding window.
    assert _max_in_sliding_window(times, WINDOW) <= LIMIT
    # The budget was the limiter (the 100 admissions needed more than one window) ...
    assert times[-1] - times[0] > WINDOW
    # ... and nobody starved: every worker was admitted within the first half of all admissions.
    first_half = {who for who, _ in rows[: len(rows) // 2]}
    assert first_half == {f"w{n}" for n in range(WORKERS)}


# The bucket alone with one burst rate (no spacing): every window opens with all four processes stampeding for
# the freed slots, the moment a missing lock would let two of them count the same free slot.
BURST_WORKER = textwrap.dedent(
    """
    import sys, time
    import psycopg
    from pyrate_limiter import Rate
    from orderspace_pipelines.client.pg_throttle import PostgresBudget

    worker, workers, url, count, limit, interval_ms = sys.argv[1:7]
    budget = PostgresBudget(url, "burst", [Rate(int(limit), int(interval_ms))])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO test_ready VALUES (%s)", (worker,))
        while conn.execute("SELECT count(*) FROM test_ready").fetchone()[0] < int(workers):
            time.sleep(0.01)
        for _ in range(int(count)):
            while True:
                pause_left, wait = budget.take_slot()
                if pause_left == wait == 0:
                    break
                time.sleep(wait)
            conn.execute("INSERT INTO test_admissions VALUES (%s, clock_timestamp())", (worker,))
    budget.close()
    """
)


def test_window_openings_under_a_stampede_never_admit_too_many(postgres_url: str) -> None:
    # 10 per 1.1 s in the bucket, judged on 1.0 s windows: 100 ms for recording an admission after it.
    run_budget_workers(postgres_url, BURST_WORKER, ["10", "10", "1100"])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        times = [at for (at,) in conn.execute("SELECT EXTRACT(EPOCH FROM at)::float8 FROM test_admissions")]
    assert len(times) == WORKERS * 10
    assert _max_in_sliding_window(times, 1.0) <= 10


def test_no_slot_is_granted_while_another_holds_the_budget_lock(postgres_url: str) -> None:
    """The count-then-insert is under the budget's advisory lock (races too rare for the process tests to
    catch reliably are excluded by construction)."""
    budget = PostgresBudget(postgres_url, "locked", [Rate(100, 1000)])
    granted = threading.Event()

    def take() -> None:
        if budget.take_slot() == (0.0, 0.0):
            granted.set()

    try:
        with psycopg.connect(postgres_url) as holder:  # a transaction holding the lock, as another host would
            holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, advisory_key("locked")))
            taker = threading.Thread(target=take)
            taker.start()
            assert not granted.wait(0.5)  # waits behind the holder ...
            holder.commit()
        taker.join(timeout=60)
        assert granted.is_set()  # ... and takes its slot once the holder is done
    finally:
        budget.close()


CLIENT_WORKER = textwrap.dedent(
    """
    import json, logging, sys, time
    import psycopg
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    settings = OrderspaceSettings.from_env()
    url = settings.database_url.get_secret_value()
    with OrderspaceClient.from_settings(settings) as client:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO test_ready VALUES (%s)", (sys.argv[1],))
            while conn.execute("SELECT count(*) FROM test_ready").fetchone()[0] < int(sys.argv[2]):
                time.sleep(0.01)
        ids = [order["id"] for order in client.list_orders(page_size=5)]
        print(json.dumps({"ids": ids, "stats": client.stats.as_dict(), "throttle": repr(client.throttle)}))
    """
)


def test_four_clients_on_two_hosts_share_one_budget_and_one_token(
    sandbox_factory, postgres_url: str, tmp_path: Path
) -> None:
    server = sandbox_factory(rate_limit=20, rate_window=1.0)
    hosts = [host_env(server, postgres_url, tmp_path / f"host{n}", 20) for n in range(2)]
    outputs, logs = run_workers(CLIENT_WORKER, postgres_url, hosts=hosts)
    results = [json.loads(out) for out in outputs]
    expected = [order["id"] for order in server.store.all("orders")]
    assert all(result["ids"] == expected for result in results)
    stats = server.stats()
    assert stats["requests"] == 4 * 30
    assert stats["rate_limited"] == 0
    assert stats["max_in_window"] <= 20
    assert stats["tokens_issued"] == 1  # four processes, two hosts, one token
    assert max(r["stats"]["max_throttle_wait_seconds"] for r in results) > 0.0  # the budget was contended
    assert all("postgresql://" in r["throttle"] for r in results)
    assert "DEBUG" in logs  # the workers did log (so the next assertions mean something)
    for secret in (PASSWORD, server.config.client_secret):
        assert secret not in logs
    # Nothing of the budget or the token was written beside the processes: only Postgres was shared.
    for n in range(2):
        assert not any(p.name.startswith("orderspace-") for p in (tmp_path / f"host{n}").iterdir())


def _settings(server, postgres_url: str) -> OrderspaceSettings:
    return OrderspaceSettings(**connection_for(server), database_url=postgres_url)


def test_a_429_pauses_every_client_through_the_database(sandbox_factory, postgres_url: str) -> None:
    server = sandbox_factory(rate_window=1.0)  # Retry-After: 1
    settings = _settings(server, postgres_url)
    with (
        OrderspaceClient(settings, backoff_base=0.01, backoff_cap=0.05) as client,
        OrderspaceClient(settings, token_store=None) as other,
    ):
        server.faults.inject("429", path_prefix="/v1/orders")
        started = time.time()
        assert list(client.list_orders()) == server.store.all("orders")
        assert client.stats.rate_limited == 1
        # The pause is in the database: the other client (its own connection, as another host's) sees it.
        paused_until = other.throttle.paused_until()
        assert paused_until >= started + 1.0
        assert abs(paused_until - client.throttle.paused_until()) < 0.5
        assert time.time() >= paused_until - 0.05  # the retry waited the pause out


def test_a_pause_holds_another_throttle_until_it_ends(postgres_url: str) -> None:
    first = RequestThrottle.on_postgres(postgres_url, "k", limit=6000, window_seconds=60.0)
    second = RequestThrottle.on_postgres(postgres_url, "k", limit=6000, window_seconds=60.0)
    elsewhere = RequestThrottle.on_postgres(postgres_url, "other-account", limit=6000, window_seconds=60.0)
    try:
        assert second.paused_until() == 0.0
        second.acquire()
        until = first.pause_all(0.6, reason="429 in another process")
        first.pause_all(0.1, reason="a shorter pause")  # never cuts a longer one short
        assert abs(second.paused_until() - until) < 0.05
        assert second.paused_until() > time.time()
        assert elsewhere.paused_until() == 0.0  # budgets are per account
        second.acquire()
        assert time.time() >= until - 0.05  # acquire returned only once the pause was over
    finally:
        for throttle in (first, second, elsewhere):
            throttle.close()


def test_migrations_are_idempotent_and_automatic(postgres_url: str) -> None:
    rates = RequestThrottle.on_postgres(postgres_url, "k", limit=60, window_seconds=60.0)
    again = PostgresBudget(postgres_url, "k", rates.rates)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            versions = conn.execute(
                "SELECT version FROM orderspace_schema_migrations WHERE component = 'request_budget'"
            ).fetchall()
            assert sorted(v for (v,) in versions) == list(range(1, len(BUDGET_MIGRATIONS) + 1))
            assert postgres.migrate(conn, "request_budget", BUDGET_MIGRATIONS) == 0
    finally:
        rates.close()
        again.close()


def test_an_unreachable_database_fails_in_one_line_without_the_password(
    postgres_server, sandbox_factory
) -> None:
    server = sandbox_factory()
    closed = postgres_server.url("budgetdb").replace(str(postgres_server.port), str(free_port()))
    settings = OrderspaceSettings(**connection_for(server), database_url=closed)
    with pytest.raises(postgres.DatabaseError) as caught:
        OrderspaceClient(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert "ORDERSPACE_DATABASE_URL" in message and "127.0.0.1" in message and "/budgetdb" in message
    assert PASSWORD not in message and PASSWORD not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
