"""What the Postgres event store adds to the shared contract (test_store.py runs that on both stores): several
receivers at once (replays stored once, each delivery's events contiguous in receipt order), idempotent
migrations, a dropped connection replaced, and a database URL whose password never shows."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from orderspace_pipelines.webhooks.events import parse_delivery
from orderspace_pipelines.webhooks.store import StoredDelivery, StoreError, open_store
from orderspace_pipelines.webhooks.store_pg import COMPONENT, MIGRATIONS, PostgresEventStore
from tests.postgres_server import PASSWORD, applied_migrations
from tests.webhooks.helpers import body_of, event, mixed_events

ROOT = Path(__file__).resolve().parents[2]


def _at_once(count: int, work) -> list:
    """Run `work(n)` in `count` threads released together; their results in order."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        start.wait()
        results[n] = work(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_replay_arriving_at_several_receivers_at_once_is_stored_once(postgres_url: str) -> None:
    receivers = [PostgresEventStore(postgres_url) for _ in range(6)]
    body = body_of(mixed_events(7))

    def deliver(n: int) -> StoredDelivery:
        return receivers[n].add_delivery(body, parse_delivery(body))

    stored = _at_once(len(receivers), deliver)
    assert sorted(result.duplicate for result in stored) == [False] + [True] * 5
    assert {(result.delivery_id, result.event_count) for result in stored} == {(stored[0].delivery_id, 7)}
    stats = receivers[0].stats()
    assert (stats.deliveries, stats.events, stats.pending_total) == (1, 7, 7)
    for receiver in receivers:
        receiver.close()


def test_deliveries_from_several_receivers_keep_their_events_together_in_seq_order(postgres_url: str) -> None:
    receivers = [PostgresEventStore(postgres_url) for _ in range(4)]

    def deliver(n: int) -> list[StoredDelivery]:
        done = []
        for round_ in range(5):
            body = body_of(mixed_events(12, start=1000 * n + 100 * round_))
            done.append(receivers[n].add_delivery(body, parse_delivery(body)))
        return done

    _at_once(len(receivers), deliver)
    with open_store(Path("/nonexistent"), postgres_url) as applier:
        pending = applier.pending(1000)
    assert len(pending) == 4 * 5 * 12 and len({e.seq for e in pending}) == len(pending)
    by_delivery: dict[int, list[int]] = {}
    for stored in pending:
        by_delivery.setdefault(stored.delivery_id, []).append(stored.seq)
    for delivery_id, seqs in by_delivery.items():  # one delivery's events: consecutive, in body order
        assert seqs == list(range(seqs[0], seqs[0] + 12)), delivery_id
    deliveries_in_seq_order = sorted(by_delivery, key=lambda d: by_delivery[d][0])
    assert deliveries_in_seq_order == sorted(by_delivery)  # receipt (commit) order is seq order
    for receiver in receivers:
        receiver.close()


def test_migrations_are_idempotent_and_need_no_manual_step(postgres_url: str) -> None:
    _at_once(4, lambda n: PostgresEventStore(postgres_url).close())  # several receivers starting at once
    with PostgresEventStore(postgres_url) as store:
        body = body_of([event("order.created", 1)])
        store.add_delivery(body, parse_delivery(body))
    with PostgresEventStore(postgres_url) as again:  # opening again changes nothing, loses nothing
        assert again.stats().events == 1
    assert applied_migrations(postgres_url, COMPONENT) == list(range(1, len(MIGRATIONS) + 1))


def test_a_connection_the_server_dropped_is_replaced(postgres_url: str) -> None:
    with PostgresEventStore(postgres_url) as store:
        first = body_of([event("customer.updated", 1)])
        store.add_delivery(first, parse_delivery(first))
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # a restart or failover, as seen
            (ended,) = admin.execute(  # from the store: its session is killed
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'orderspace-pipelines webhook events'"
            ).fetchone()
        assert ended == 1
        second = body_of([event("customer.updated", 2)])
        assert store.add_delivery(second, parse_delivery(second)).duplicate is False
        assert store.stats().events == 2


def test_an_unreachable_database_is_one_line_naming_the_variable_never_the_password(postgres_server) -> None:
    closed = postgres_server.url("events").replace(f":{postgres_server.port}/", ":1/")
    wrong = postgres_server.url("events").replace(PASSWORD, "not-the-password-x2")
    for url in (closed, wrong):
        with pytest.raises(StoreError) as caught:
            open_store(Path("/nonexistent"), url)
        message = str(caught.value)
        assert "\n" not in message and "ORDERSPACE_DATABASE_URL" in message
        assert "127.0.0.1" in message and "/events" in message
        assert PASSWORD not in message and "not-the-password-x2" not in message


def test_serve_refuses_an_unreachable_database_in_one_line(hook_dir: Path, postgres_server) -> None:
    url = postgres_server.url("events").replace(f":{postgres_server.port}/", ":1/")
    env = os.environ | {"ORDERSPACE_DATA_DIR": str(hook_dir), "ORDERSPACE_DATABASE_URL": url}
    served = subprocess.run(
        [sys.executable, "-m", "orderspace_pipelines.cli", "webhooks", "serve", "--port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert served.returncode == 2, served.stderr
    lines = served.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "ORDERSPACE_DATABASE_URL (postgresql://orderspace@127.0.0.1:1/events)" in lines[0]
    )
    assert PASSWORD not in served.stdout + served.stderr


def test_status_reads_the_postgres_store(hook_dir: Path, postgres_url: str) -> None:
    from datetime import timedelta

    from pydantic import SecretStr

    from orderspace_pipelines.webhooks.signing import key_file_path
    from orderspace_pipelines.webhooks.subscription import current_status

    with PostgresEventStore(postgres_url) as store:
        body = body_of([event("order.updated", 1), event("invoice.created", 2)])
        store.add_delivery(body, parse_delivery(body))

    def no_api():
        raise AssertionError("no API call expected")

    (key_file_path(hook_dir)).unlink()  # no subscription here: the store's lines only, no request
    report = current_status(
        hook_dir,
        key_file_path(hook_dir),
        stale_after=timedelta(hours=24),
        open_api=no_api,
        database_url=SecretStr(postgres_url),
    )
    text = "\n".join(report.lines)
    assert "pending events: 2 (order 1, invoice 1," in text and "last delivery: none yet" not in text
    assert not (hook_dir / "webhooks" / "events.sqlite").exists()
