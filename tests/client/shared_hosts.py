"""Client processes on two "hosts" that share nothing but PostgreSQL and the sandbox (the Postgres budget and
token store tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from orderspace_sandbox import SandboxServer
from tests.conftest import connection_for


def host_env(server: SandboxServer, postgres_url: str, home: Path, rpm: int) -> dict[str, str]:
    """A "host" of its own: its temp dir and data dir, nothing shared but the database and the sandbox."""
    home.mkdir()
    base = {key: value for key, value in os.environ.items() if not key.startswith("ORDERSPACE_")}
    conn = connection_for(server, requests_per_minute=rpm)
    return base | {
        "TMPDIR": str(home),
        "ORDERSPACE_DATA_DIR": str(home / "data"),
        "ORDERSPACE_CLIENT_ID": conn["client_id"],
        "ORDERSPACE_CLIENT_SECRET": conn["client_secret"],
        "ORDERSPACE_API_URL": conn["api_url"],
        "ORDERSPACE_TOKEN_URL": conn["token_url"],
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(rpm),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(conn["rate_window_seconds"]),
        "ORDERSPACE_DATABASE_URL": postgres_url,
    }


def run_workers(
    script: str,
    postgres_url: str,
    args: list[str] | None = None,
    *,
    hosts: list[dict[str, str]] | None = None,
    count: int = 4,
) -> tuple[list[bytes], str]:
    """Run `count` processes `python -c script w<n> <count> *args` (by turns on `hosts`, if given) to the end.

    Each waits at the barrier, table `test_ready` (created here), until all `count` have started. Returns
    each worker's stdout, in start order, and all that the workers printed; each must exit 0.
    """
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE test_ready (worker TEXT)")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"w{n}", str(count), *(args or [])],
            env=hosts[n % len(hosts)] if hosts else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(count)
    ]
    outputs, logs = [], ""
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        logs += out.decode() + err.decode()
        assert worker.returncode == 0, err.decode()
        outputs.append(out)
    return outputs, logs
