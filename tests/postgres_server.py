"""A real PostgreSQL server for the tests, started from Debian's server binaries in a temp directory.

Postgres refuses to run as root, and CI runs as root: then the cluster belongs to the `postgres` account and
the server runs as that user. It listens on 127.0.0.1 on a free port (and a Unix socket in its folder), with
password authentication, so URLs carry a password exactly as a deployment's do. `.ci/run` installs the
`postgresql` package where it is missing; without it the fixture fails naming the package.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from orderspace_pipelines.postgres import MIGRATIONS_TABLE
from tests.ports import free_port

SUPERUSER = "orderspace"
# A test-only password; tests assert it never reaches logs, files or exception text.
PASSWORD = "pg-test-secret-3c5e1f"


def server_binaries() -> Path:
    """The folder holding `initdb` and `pg_ctl` (PATH first, then Debian's /usr/lib/postgresql/<n>/bin)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package "
            "(`.ci/run` does this where it is missing)"
        )
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    """One running cluster; `url(db)` gives a client URL, `create_database()` a fresh empty database."""

    root: Path
    port: int
    run_as: str | None
    databases: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(server_binaries() / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self.run_as,
            cwd=self.root,
        )

    @classmethod
    def start(cls) -> PostgresServer:
        run_as = "postgres" if os.geteuid() == 0 else None
        # Not under pytest's tmp_path: that tree is 0700 root, which the postgres account cannot enter.
        root = Path(tempfile.mkdtemp(prefix="orderspace-pg-"))
        os.chmod(root, 0o755)
        if run_as:
            shutil.chown(root, user=run_as, group=run_as)
        server = cls(root=root, port=free_port(), run_as=run_as)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if run_as:
            shutil.chown(pwfile, user=run_as, group=run_as)
        server._run(
            "initdb", "-D", str(server.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={root} "
            "-c fsync=off -c max_connections=200 -c shared_buffers=64MB"
        )
        server._run(
            "pg_ctl", "-D", str(server.data_dir), "-l", str(root / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return server

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def applied_migrations(url: str, component: str) -> list[int]:
    """The migration versions recorded for `component` in the database at `url`, in order."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT version FROM {MIGRATIONS_TABLE} WHERE component = %s ORDER BY version", (component,)
        ).fetchall()
    return [row[0] for row in rows]
