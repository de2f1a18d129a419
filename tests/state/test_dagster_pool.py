"""The `orderspace_api` pool's row is created before any step claims it, safely from many processes at once.

Real Dagster instances on a real Postgres server (deploy/dagster.yaml) and on SQLite (the packaged default).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from orderspace_pipelines.commands import DEFAULT_DAGSTER_YAML
from orderspace_pipelines.defs.pools import api_pool_exists, ensure_api_pool
from orderspace_pipelines.defs.resources import ORDERSPACE_API_POOL
from tests.deploy.deployment import deployment_home
from tests.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 4
ROUNDS = 4


def postgres_home(tmp_path: Path, name: str, url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $DAGSTER_HOME with the deployment's dagster.yaml, its storage in the database at `url`."""
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", url)  # deploy/dagster.yaml reads it when the instance loads
    (tmp_path / name).mkdir()
    return deployment_home(tmp_path / name)


def instance_at(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def pool_limits(instance: dg.DagsterInstance) -> list[tuple[str, int]]:
    return [(pool.name, pool.limit) for pool in instance.event_log_storage.get_pool_limits()]


def test_dagsters_own_creation_fails_on_postgres_when_another_process_created_the_row(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why `ensure_api_pool` exists: the losing step's own creation fails (dagster 1.13.27). If this starts
    passing after a Dagster upgrade, the workaround in defs/pools.py may go."""
    home = postgres_home(tmp_path, "home", postgres_url, monkeypatch)
    with instance_at(home) as first, instance_at(home) as second:
        first.event_log_storage.initialize_concurrency_limit_to_default(ORDERSPACE_API_POOL)
        with pytest.raises(Exception, match=r"InFailedSqlTransaction|current transaction is aborted"):
            second.event_log_storage.initialize_concurrency_limit_to_default(ORDERSPACE_API_POOL)


def ensure_after(start: threading.Barrier, instance: dg.DagsterInstance, errors: list[BaseException]) -> None:
    """One process's `ensure_api_pool`, released together with the others; its error is collected."""
    start.wait()
    try:
        ensure_api_pool(instance)
    except BaseException as error:
        errors.append(error)


def test_many_processes_ensuring_the_pool_at_once_all_succeed_and_create_one_row(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for round_number in range(ROUNDS):
        home = postgres_home(tmp_path, f"round{round_number}", postgres_server.create_database(), monkeypatch)
        instances = [instance_at(home) for _ in range(PROCESSES)]
        for instance in instances:  # connect first, so the barrier releases only the pool's queries
            instance.event_log_storage.get_pool_limits()
        start = threading.Barrier(PROCESSES)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=ensure_after, args=(start, instance, errors)) for instance in instances
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert errors == []
            assert pool_limits(instances[0]) == [(ORDERSPACE_API_POOL, 2)]  # deploy/dagster.yaml's default
        finally:
            for instance in instances:
                instance.dispose()


def test_ensuring_an_existing_pool_changes_nothing(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = postgres_home(tmp_path, "home", postgres_url, monkeypatch)
    with instance_at(home) as instance:
        instance.event_log_storage.set_concurrency_slots(ORDERSPACE_API_POOL, 1)  # an operator's own limit
        ensure_api_pool(instance)
        assert pool_limits(instance) == [(ORDERSPACE_API_POOL, 1)]


def test_the_packaged_sqlite_home_gets_the_pool_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the packaged dagster.yaml reads it
    shutil.copy(DEFAULT_DAGSTER_YAML, home)
    with instance_at(home) as instance:
        assert not api_pool_exists(instance)
        ensure_api_pool(instance)
        assert pool_limits(instance) == [(ORDERSPACE_API_POOL, 2)]
