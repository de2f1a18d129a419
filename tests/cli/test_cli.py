"""The console script as a person runs it: real subprocesses against the sandbox on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from orderspace_pipelines.endpoints import INVENTORY_SNAPSHOTS, LAKE_TABLES
from orderspace_sandbox import SandboxServer

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_missing_credential_names_the_variable_without_a_traceback(orderspace_env: dict[str, str]) -> None:
    env = dict(orderspace_env)
    del env["ORDERSPACE_CLIENT_ID"]
    result = run_cli("sync", env=env)
    assert result.returncode == 2
    assert "ORDERSPACE_CLIENT_ID is not set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_malformed_budget_and_date_are_named(orderspace_env: dict[str, str]) -> None:
    env = orderspace_env | {"ORDERSPACE_REQUESTS_PER_MINUTE": "sixty"}
    result = run_cli("sync", env=env)
    assert result.returncode == 2
    assert "ORDERSPACE_REQUESTS_PER_MINUTE must be a number" in result.stderr
    result = run_cli("sync", "--since", "26/11/2026", env=orderspace_env)
    assert result.returncode == 2
    assert "expected a date as YYYY-MM-DD" in result.stderr


def test_sync_select_lands_tables_and_records_the_run(
    orderspace_env: dict[str, str], sandbox: SandboxServer, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = orderspace_env | {"DAGSTER_HOME": str(home)}
    result = run_cli("sync", "--select", "customers,categories", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    data = Path(env["ORDERSPACE_DATA_DIR"]) / "parquet"
    customers = pq.read_table(data / "customers").column("id").to_pylist()
    assert sorted(customers) == sorted(c["id"] for c in sandbox.store.all("customers"))
    assert len(pq.read_table(data / "categories")) == len(sandbox.store.all("categories"))
    # The run is in $DAGSTER_HOME, as the contract says.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert runs and all(run.is_success for run in runs)
    # The secret never reaches the console.
    assert sandbox.config.client_secret not in result.stdout + result.stderr


def test_push_one_file(orderspace_env: dict[str, str], sandbox: SandboxServer, tmp_path: Path) -> None:
    levels = sandbox.store.all("inventory_levels")[:3]
    stock = tmp_path / "stock.csv"
    rows = "".join(f"{level['sku']},{level['on_hand'] + 7}\n" for level in levels)
    stock.write_text("sku,on_hand\n" + rows)
    result = run_cli("push", str(stock), env=orderspace_env)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {level["sku"]: level["on_hand"] for level in sandbox.store.all("inventory_levels")}
    assert all(after[level["sku"]] == level["on_hand"] + 7 for level in levels)
    assert stock.exists(), "a file pushed from outside the warehouse folders stays where it was"
    result = run_cli("push", str(tmp_path / "missing.csv"), env=orderspace_env)
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo`'s command at the demo's own scale (the samples are made for it), with a fast budget."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ORDERSPACE_") and key != "DAGSTER_HOME"
    }
    env["ORDERSPACE_DATA_DIR"] = str(tmp_path / "demo-data")
    result = run_cli("demo", "--scale", "small", "--rate-limit", "6000", env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Orderspace demo: summary" in out
    # Every table of the contract, its count checked against the sandbox account by the demo itself.
    # The snapshot history is not in the demo's summary (it has no counterpart in the sandbox account).
    for table in [name for name in LAKE_TABLES if name != INVENTORY_SNAPSHOTS]:
        line = next(line for line in out.splitlines() if line.startswith(f"{table} "))
        assert line.endswith("matches"), line
    assert "MISMATCH" not in out
    assert "API requests used:" in out
    assert "stock_levels.csv (inventory): processed, 300 rows read" in out
    assert "4 dispatches created" in out
    assert (tmp_path / "demo-data" / "orderspace.duckdb").exists()
    # A folder with someone's real data is never wiped by the demo.
    precious = tmp_path / "precious"
    (precious / "parquet").mkdir(parents=True)
    result = run_cli("demo", "--scale", "tiny", env=env | {"ORDERSPACE_DATA_DIR": str(precious)})
    assert result.returncode != 0
    assert "holds data the demo did not write" in result.stderr
    assert (precious / "parquet").exists()
