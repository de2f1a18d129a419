"""The shared-database basics: connecting, messages without the password, idempotent migrations."""

from __future__ import annotations

import threading

import pytest

from orderspace_pipelines.postgres import DatabaseError, connect, describe_url, migrate
from tests.postgres_server import PASSWORD

STEPS = [
    "CREATE TABLE widgets (id INTEGER PRIMARY KEY)",
    "ALTER TABLE widgets ADD COLUMN name TEXT",
]


def test_migrations_run_once_even_when_processes_race(postgres_url: str) -> None:
    results: list[int] = []

    def run() -> None:
        with connect(postgres_url) as conn:
            results.append(migrate(conn, "widgets", STEPS))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 2]
    with connect(postgres_url) as conn:
        assert migrate(conn, "widgets", [*STEPS, "CREATE INDEX widgets_name ON widgets (name)"]) == 1
        columns = {row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'"
        )}  # fmt: skip
        assert columns == {"id", "name"}


def test_a_refused_connection_names_the_database_but_never_the_password(postgres_url: str) -> None:
    wrong = postgres_url.replace(PASSWORD, PASSWORD + "-wrong")
    with pytest.raises(DatabaseError) as caught:
        connect(wrong)
    message = str(caught.value)
    assert "ORDERSPACE_DATABASE_URL" in message and "127.0.0.1" in message
    assert PASSWORD not in message and "wrong" not in message
    assert PASSWORD not in describe_url(postgres_url)
