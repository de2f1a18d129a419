"""PostgreSQL as the shared state of a deployment (`ORDERSPACE_DATABASE_URL`).

When the URL is set, the request budget, the current access token, the push ledger and the webhook event store
live in one database that every process on every host reaches; when it is unset they are SQLite files on this
machine. This module holds only what those stores share: opening a connection, a safe description of the URL
for messages, and idempotent schema migrations. Each store owns its own tables and migrations.

psycopg 3 is the driver (the one pyrate-limiter's Postgres bucket and dagster-postgres already use).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    import psycopg

MIGRATIONS_TABLE = "orderspace_schema_migrations"
CONNECT_TIMEOUT_SECONDS = 10


class DatabaseError(RuntimeError):
    """The shared database could not be reached or migrated; the message never carries the password."""


def _plain(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def describe_url(url: str | SecretStr) -> str:
    """`postgresql://user@host:port/db`: the URL without its password, for logs and error messages."""
    parts = urlsplit(_plain(url))
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"


def _redact(message: str, url: str | SecretStr) -> str:
    password = urlsplit(_plain(url)).password
    return message.replace(password, "***") if password else message


def connect(url: str | SecretStr, *, autocommit: bool = True, purpose: str = "state") -> psycopg.Connection:
    """A new connection to the shared database; a failure names the database (never the password)."""
    import psycopg

    try:
        return psycopg.connect(
            _plain(url),
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=f"orderspace-pipelines {purpose}",
        )
    except psycopg.Error as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = _redact(lines[0] if lines else type(error).__name__, url)  # the first line says what failed
        raise DatabaseError(
            f"cannot connect to ORDERSPACE_DATABASE_URL ({describe_url(url)}): {reason}"
        ) from None


def advisory_key(name: str) -> int:
    """A stable advisory-lock key for `name`, the same in every process (Python's hash() is salted)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def migrate(conn: psycopg.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply `component`'s migrations that this database has not seen yet, in order; returns how many ran.

    Idempotent and safe when several processes start at once: one transaction under one advisory lock (shared
    by every component, so two never race to create the bookkeeping table) records each applied step in
    `orderspace_schema_migrations`. A shipped migration is never edited; a change is a new entry appended.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(MIGRATIONS_TABLE),))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            " component TEXT NOT NULL, version INTEGER NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            f"SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE} WHERE component = %s", (component,)
        ).fetchone()
        done = int(row[0]) if row else 0
        for version, statement in enumerate(migrations, start=1):
            if version <= done:
                continue
            conn.execute(statement)  # our own literal DDL, no parameters
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (component, version) VALUES (%s, %s)", (component, version)
            )
        return max(0, len(migrations) - done)
