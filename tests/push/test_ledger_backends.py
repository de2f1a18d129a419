"""The push ledger on both backends (SQLite, a real Postgres): one contract, the same stored facts; and what
only Postgres must add: one claim and one record per file across hosts, a dead holder's claim freed,
idempotent migrations, and a database URL whose password never shows."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orderspace_pipelines import postgres
from orderspace_pipelines.warehouse import Ledger, open_ledger
from orderspace_pipelines.warehouse.ledger_pg import COMPONENT, MIGRATIONS, PostgresLedger, claim_key
from orderspace_pipelines.warehouse.states import EntryState, FileKind, FileOutcome, FileState
from tests.postgres_server import PASSWORD, applied_migrations

from .conftest import BOTH_LEDGERS, Quiet, posts
from .test_dispatch_push import OPEN, dispatches_for, find_order, goods

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32


@pytest.fixture
def ledger(tmp_path: Path, state_url: str | None) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "warehouse" / "ledger.sqlite", state_url) as opened:
        yield opened


@BOTH_LEDGERS
def test_files_are_registered_once_and_finished(ledger: Ledger) -> None:
    first = ledger.begin_file(SHA, "a.csv", FileKind.DISPATCHES)
    again = ledger.begin_file(SHA, "renamed.csv", FileKind.DISPATCHES)  # the same bytes under a new name
    assert first == again and first.first_name == "a.csv" and first.state is FileState.IN_PROGRESS
    assert first.started_at.endswith("+00:00") and first.finished_at is None
    ledger.finish_file(SHA, FileOutcome.PROCESSED, "/data/warehouse/processed/a.csv")
    done = ledger.file(SHA)
    assert done is not None and (done.state, done.outcome, done.kind) == (
        FileState.DONE,
        FileOutcome.PROCESSED,
        FileKind.DISPATCHES,
    )
    assert done.final_path == "/data/warehouse/processed/a.csv" and done.finished_at is not None
    assert ledger.file("cd" * 32) is None


@BOTH_LEDGERS
def test_dispatch_entries_keep_body_ids_and_lines_through_every_state(ledger: Ledger) -> None:
    body = {"order_id": "or_1", "comments": "DPD \u0000 x", "dispatch_lines": [{"sku": "A", "quantity": 1.5}]}
    pending = ledger.dispatch_pending(
        SHA, "no:7", "or_1", body, existing_ids=["d2", "d1", "d2"], row_lines=[3, 2]
    )
    assert (pending.state, pending.body, pending.existing_ids, pending.row_lines) == (
        EntryState.PENDING,
        body,
        ["d1", "d2"],
        [2, 3],
    )
    assert pending.marker == "" and pending.dispatch_id is None and pending.pending_at.endswith("+00:00")
    ledger.dispatch_confirmed(SHA, "no:7", "di_9")
    confirmed = ledger.dispatch(SHA, "no:7")
    assert confirmed is not None and (confirmed.state, confirmed.dispatch_id) == (
        EntryState.CONFIRMED,
        "di_9",
    )
    assert confirmed.pending_at == pending.pending_at
    ledger.dispatch_pending(SHA, "id:or_2", "or_2", {"order_id": "or_2"}, existing_ids=[], row_lines=[4])
    ledger.dispatch_refused(SHA, "id:or_2", "order is cancelled")
    refused = ledger.dispatch(SHA, "id:or_2")
    assert refused is not None and (refused.state, refused.message) == (
        EntryState.REFUSED,
        "order is cancelled",
    )
    assert {(d.group_key, d.state) for d in ledger.dispatches_of(SHA)} == {
        ("no:7", EntryState.CONFIRMED),
        ("id:or_2", EntryState.REFUSED),
    }
    assert ledger.dispatch(SHA, "no:8") is None and ledger.dispatches_of("cd" * 32) == []


@BOTH_LEDGERS
def test_inventory_rows_are_marked_in_one_go_and_overwritten(ledger: Ledger) -> None:
    ledger.mark_inventory(SHA, [(2, "A", "1000000000"), (3, "B", "0.125")], EntryState.PENDING)
    ledger.mark_inventory(SHA, [(3, "B", "0.125")], EntryState.REFUSED, "unknown SKU")
    ledger.mark_inventory(SHA, [(2, "A", "1000000000")], EntryState.CONFIRMED)
    assert ledger.inventory_states(SHA) == {
        2: (EntryState.CONFIRMED, None),
        3: (EntryState.REFUSED, "unknown SKU"),
    }
    assert ledger.inventory_states("cd" * 32) == {}


def test_open_ledger_picks_postgres_only_when_the_url_is_set(tmp_path: Path, postgres_url: str) -> None:
    from pydantic import SecretStr

    path = tmp_path / "ledger.sqlite"
    with open_ledger(path, SecretStr(postgres_url)) as in_postgres:
        assert isinstance(in_postgres, PostgresLedger) and PASSWORD not in repr(in_postgres)
    assert not path.exists()
    with open_ledger(path, SecretStr("")) as blank, open_ledger(path, None) as unset:
        assert type(blank).__name__ == type(unset).__name__ == "SqliteLedger"
    assert path.exists()


def test_two_hosts_registering_the_same_file_at_once_share_one_record(postgres_url: str) -> None:
    hosts = [PostgresLedger(postgres_url) for _ in range(6)]
    start = threading.Barrier(len(hosts))
    records = {}

    def register(n: int) -> None:
        start.wait()
        records[n] = hosts[n].begin_file(SHA, f"host{n}.csv", FileKind.INVENTORY)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(len(hosts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for host in hosts:
        host.close()
    assert len(records) == len(hosts) and len(set(records.values())) == 1  # one record, the first name


def _waiting_for(url: str, key: int) -> int:
    with psycopg.connect(url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",  # a bigint key: high and low halves
            (key,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_claimed_file_makes_the_other_host_wait_until_it_is_released(postgres_url: str) -> None:
    first, second = PostgresLedger(postgres_url), PostgresLedger(postgres_url)
    order: list[str] = []
    second_has_it = threading.Event()

    def other_host() -> None:
        with second.claim(SHA):
            order.append("second claimed")
            second_has_it.set()

    with first.claim(SHA):
        order.append("first claimed")
        thread = threading.Thread(target=other_host)
        thread.start()
        while _waiting_for(postgres_url, claim_key(SHA)) == 0:  # the other host is queued on the lock...
            assert thread.is_alive()
        assert not second_has_it.is_set()  # ...and not through while the first holds the claim
        with first.claim("cd" * 32):  # another file is not held up
            order.append("first claimed another file")
        order.append("first released")
    thread.join()
    assert order == ["first claimed", "first claimed another file", "first released", "second claimed"]
    first.close()
    second.close()


HOLD = """
import sys, time
from orderspace_pipelines.warehouse.ledger_pg import PostgresLedger
ledger = PostgresLedger(sys.argv[1])
with ledger.claim(sys.argv[2]):
    print("claimed", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_frees_its_claim(postgres_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, postgres_url, SHA], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        with psycopg.connect(postgres_url, autocommit=True) as probe:
            taken = probe.execute("SELECT pg_try_advisory_lock(%s)", (claim_key(SHA),)).fetchone()
            assert taken == (False,)  # held by the child
            holder.kill()  # what kill -9 or an evicted pod leaves: no unlock, just a dead connection
            holder.wait()
            give_up = time.monotonic() + 60  # a guard against hanging, not a timing assertion
            while probe.execute("SELECT pg_try_advisory_lock(%s)", (claim_key(SHA),)).fetchone() != (True,):
                assert time.monotonic() < give_up, "the dead holder's claim was never freed"
    finally:
        holder.kill()
        holder.wait()
    with PostgresLedger(postgres_url) as ledger, ledger.claim(SHA):
        pass  # and a new attempt claims it


def test_migrations_are_idempotent_and_need_no_manual_step(postgres_url: str) -> None:
    openers = [threading.Thread(target=lambda: PostgresLedger(postgres_url).close()) for _ in range(4)]
    for thread in openers:  # several processes starting at once on an empty database
        thread.start()
    for thread in openers:
        thread.join()
    with PostgresLedger(postgres_url) as ledger:
        ledger.begin_file(SHA, "kept.csv", None)
    with PostgresLedger(postgres_url) as again:  # opening again changes nothing, loses nothing
        kept = again.file(SHA)
        assert kept is not None and kept.first_name == "kept.csv"
    assert applied_migrations(postgres_url, COMPONENT) == list(range(1, len(MIGRATIONS) + 1))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert postgres.migrate(conn, COMPONENT, MIGRATIONS) == 0


def test_an_unreachable_database_is_one_line_naming_the_variable_never_the_password(
    postgres_server, tmp_path: Path
) -> None:
    closed = postgres_server.url("orders").replace(f":{postgres_server.port}/", ":1/")
    wrong = postgres_server.url("orders").replace(PASSWORD, "not-the-password-x1")
    for url in (closed, wrong):
        with pytest.raises(postgres.DatabaseError) as caught:
            open_ledger(tmp_path / "ledger.sqlite", url)
        message = str(caught.value)
        assert "\n" not in message and message.startswith("cannot connect to ORDERSPACE_DATABASE_URL")
        assert "127.0.0.1" in message and "/orders" in message
        assert PASSWORD not in message and "not-the-password-x1" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_push_on_the_postgres_ledger_logs_and_writes_no_password(
    sandbox, client, data_dir, drop, folders, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from orderspace_pipelines.warehouse import push_file

    caplog.set_level(logging.DEBUG)
    order = find_order(sandbox, OPEN, untouched=True)
    path = drop("pw.csv", f"order_id,sku,quantity\n{order['id']},{goods(order)[0]['sku']},1\n")
    log = Quiet()
    result = push_file(path, client=client, data_dir=data_dir, log=log, database_url=postgres_url)
    assert result.dispatches_created == 1
    written = "".join(p.read_text() for p in folders.processed.iterdir())
    assert PASSWORD not in caplog.text and PASSWORD not in " ".join(log.messages) and PASSWORD not in written
    assert PASSWORD not in repr(result)


def test_one_file_pushed_from_two_hosts_at_once_is_dispatched_once(
    sandbox, push_env, data_dir, drop, postgres_url: str
) -> None:
    orders = [find_order(sandbox, OPEN, untouched=True, skip=n) for n in range(3)]
    body = "order_id,sku,quantity\n" + "".join(
        f"{order['id']},{line['sku']},{line['quantity']}\n" for order in orders for line in goods(order)
    )
    path = drop("both.csv", body)
    env = {k: v for k, v in push_env.items() if k != "DAGSTER_HOME"} | {
        "ORDERSPACE_DATABASE_URL": postgres_url
    }
    sandbox.reset_stats()
    hosts = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.push.crash_child", str(path), "", "0"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    codes = [host.wait(timeout=120) for host in hosts]
    outputs = [host.communicate()[1] for host in hosts]
    assert 0 in codes, outputs  # one host pushed it; the other found it claimed or already done
    for order in orders:
        assert len(dispatches_for(sandbox, order["id"])) == 1, order["number"]
    assert posts(sandbox, "dispatches") == 3
    assert PASSWORD not in "".join(outputs)


def test_the_ledger_database_going_away_mid_push_stops_it_resumable_and_never_dispatches_twice(
    sandbox, client, data_dir, drop, folders, postgres_url: str
) -> None:
    from orderspace_pipelines.testing_hooks import at_nth
    from orderspace_pipelines.warehouse import hooks, push_file
    from orderspace_pipelines.warehouse.ledger import LedgerError

    order = find_order(sandbox, OPEN, untouched=True)
    path = drop("gone.csv", f"order_id,sku,quantity\n{order['id']},{goods(order)[0]['sku']},1\n")

    def drop_the_ledger_connection(_: str) -> None:  # a database restart or failover, as the push sees it
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'orderspace-pipelines push ledger'"
            )

    sandbox.reset_stats()
    hooks.install(at_nth("dispatch.pending", 1, drop_the_ledger_connection))
    try:
        with pytest.raises(
            LedgerError, match=r"the push ledger in postgresql://orderspace@127\.0\.0\.1"
        ) as caught:
            push_file(path, client=client, data_dir=data_dir, log=Quiet(), database_url=postgres_url)
    finally:
        hooks.install(None)
    assert PASSWORD not in str(caught.value)
    assert len(dispatches_for(sandbox, order["id"])) == 1  # the POST went out; its confirmation was lost
    assert [p.name for p in folders.work.iterdir() if p.name.endswith("gone.csv")]  # still claimed

    result = push_file(path, client=client, data_dir=data_dir, log=Quiet(), database_url=postgres_url)

    assert result.dispatches_created == 1 and posts(sandbox, "dispatches") == 1  # reconciled, not resent
    assert len(dispatches_for(sandbox, order["id"])) == 1
