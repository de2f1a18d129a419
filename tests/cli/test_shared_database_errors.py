"""An unreachable or refusing shared database (ORDERSPACE_DATABASE_URL) is one line and exit 1 from every
command that works with it: no traceback, no password, nothing done. Real processes, real Postgres."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.postgres_server import PASSWORD, PostgresServer

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]
CLOSED_PASSWORD = "never-shown-7d41"


def _run(args: list[str], env: dict[str, str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=env | {"ORDERSPACE_DATABASE_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [["sync"], ["reconcile"], ["push", "dispatches.csv"]])
def test_an_unreachable_database_is_one_line_and_nothing_is_done(
    command: list[str], orderspace_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "dispatches.csv").write_text("order_number,sku,quantity\n")
    url = f"postgresql://orderspace:{CLOSED_PASSWORD}@127.0.0.1:{free_port()}/lake"
    done = _run(command, orderspace_env, url, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "cannot connect to ORDERSPACE_DATABASE_URL (postgresql://orderspace@127.0.0.1:" in lines[0]
    assert "nothing was done" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert CLOSED_PASSWORD not in done.stderr + done.stdout
    assert not (Path(orderspace_env["ORDERSPACE_DATA_DIR"]) / "parquet").exists()  # no pull began


def test_a_refused_login_names_the_database_and_never_the_password(
    postgres_server: PostgresServer, orderspace_env: dict[str, str], tmp_path: Path
) -> None:
    url = postgres_server.url("postgres").replace(PASSWORD, CLOSED_PASSWORD)
    done = _run(["sync"], orderspace_env, url, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "password authentication failed" in done.stderr
    assert f"127.0.0.1:{postgres_server.port}/postgres" in done.stderr
    assert CLOSED_PASSWORD not in done.stderr + done.stdout and PASSWORD not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
