"""Two `orderspace-pipelines sync` at once on one machine: real processes, one `DAGSTER_HOME`.

With SQLite storage (what `make dev` and a plain `DAGSTER_HOME` use) the second waits its turn, saying so;
before the turn-taking it could die at start-up with a SQLAlchemy traceback (`table alembic_version already
exists`: both created the storage's tables at once). With Postgres storage (deploy/dagster.yaml) both run
together.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from orderspace_sandbox import SandboxServer
from tests.cli.processes import REPO, finish, start, wait_for
from tests.deploy.deployment import deployment_home

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]
WAITING = "waiting for the other `orderspace-pipelines sync`"
TABLES = ("customers", "categories")

# The first sync, held at its start (after it took its turn) until the test lets it go: the second one then
# certainly arrives while the first is running, whatever the machine's speed.
GATED_SYNC = """
import sys, time
from pathlib import Path
import orderspace_pipelines.defs.sync as sync
from orderspace_pipelines import cli

started, go = Path(sys.argv[1]), Path(sys.argv[2])
real = sync.run_sync

def gated(**kwargs):
    started.touch()
    while not go.exists():
        time.sleep(0.05)
    return real(**kwargs)

sync.run_sync = gated
raise SystemExit(cli.main(sys.argv[3:]))
"""


def lake_ids(data_dir: Path, table: str) -> list[str]:
    return sorted(pq.read_table(data_dir / "parquet" / table).column("id").to_pylist())


def test_with_sqlite_storage_the_second_sync_waits_its_turn(
    orderspace_env: dict[str, str], sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the project's instance file reads it
    home.mkdir()  # fresh, as `make dev` leaves it: the project's instance file, SQLite storage
    shutil.copy(REPO / "orderspace_pipelines" / "dagster_home" / "dagster.yaml", home)
    env = orderspace_env | {"DAGSTER_HOME": str(home)}
    started, go = tmp_path / "first.started", tmp_path / "first.go"
    select = ["sync", "--select", ",".join(TABLES)]

    first, first_log = start(
        [sys.executable, "-c", GATED_SYNC, str(started), str(go), *select], env, tmp_path / "first.log"
    )
    wait_for(started.exists, "the first sync to take its turn")
    second, second_log = start([*CLI, *select], env, tmp_path / "second.log")
    wait_for(lambda: WAITING in (tmp_path / "second.log").read_text(), "the second sync to say it waits")
    go.touch()
    first_code, first_out = finish(first, first_log, tmp_path / "first.log", timeout=600)
    second_code, second_out = finish(second, second_log, tmp_path / "second.log", timeout=600)

    assert first_code == 0, first_out[-3000:]
    assert second_code == 0, second_out[-3000:]
    waiting = next(line for line in second_out.splitlines() if WAITING in line)
    assert f"DAGSTER_HOME={home}" in waiting and f"pid {first.pid}" in waiting
    assert WAITING not in first_out
    assert "Traceback" not in first_out + second_out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = sorted(instance.get_run_records(), key=lambda record: record.create_timestamp)
    assert len(records) == 2 and all(record.dagster_run.is_success for record in records)
    # One after the other: the second run started once the first had ended.
    assert records[1].start_time is not None and records[0].end_time is not None
    assert records[1].start_time >= records[0].end_time
    data_dir = Path(env["ORDERSPACE_DATA_DIR"])
    for table in TABLES:
        assert lake_ids(data_dir, table) == sorted(r["id"] for r in sandbox.store.all(table))


def test_with_postgres_storage_two_syncs_run_together(
    orderspace_env: dict[str, str],
    sandbox: SandboxServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", postgres_url)  # deploy/dagster.yaml reads it
    home = deployment_home(tmp_path)
    env = orderspace_env | {"DAGSTER_HOME": str(home), "ORDERSPACE_DATABASE_URL": postgres_url}

    runs = [start([*CLI, "sync"], env, tmp_path / f"sync{n}.log") for n in (1, 2)]
    results = [
        finish(process, handle, tmp_path / f"sync{n}.log", timeout=600)
        for n, (process, handle) in enumerate(runs, 1)
    ]

    for code, out in results:
        assert code == 0, out[-3000:]
        assert WAITING not in out  # neither queued behind the other
        assert "Traceback" not in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
    # Every run either sync reported (`sync succeeded: runs A, B, ...`) is in the shared storage, a success.
    reported = {
        run_id.strip()
        for _, out in results
        for line in out.splitlines()
        if line.startswith("sync succeeded: runs ")
        for run_id in line.removeprefix("sync succeeded: runs ").split(",")
    }
    assert len(reported) >= 4  # at least the two pull runs of each
    assert {record.dagster_run.run_id for record in records} == reported
    assert all(record.dagster_run.is_success for record in records)
    data_dir = Path(env["ORDERSPACE_DATA_DIR"])
    for table in ("customers", "orders", "invoices", "dispatches", "products"):
        found = pq.read_table(data_dir / "parquet" / table).column("id").to_pylist()
        assert len(found) == len(set(found))  # each record once, though two syncs wrote it
        assert sorted(found) == sorted(r["id"] for r in sandbox.store.all(table)), table
