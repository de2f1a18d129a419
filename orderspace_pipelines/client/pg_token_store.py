"""`PostgresTokenStore`: the account's current access token in PostgreSQL, shared by every host.

Used instead of the 0600 token file when `ORDERSPACE_DATABASE_URL` is set. One row per account key in
`orderspace_access_tokens` holding exactly what the file store holds: the token, its expiry (epoch seconds),
its lifetime, the client id and the sha256 of the client id and secret (never the secret itself).
`locked()` holds a session advisory lock on the account, so of N processes on N hosts starting at once one
fetches a token and the others find it stored.

Database failures become `TokenStoreError` (the auth then fetches a token of its own, with a warning) whose
text names the database without its password and never carries a token or a statement's parameters.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import SecretStr

from orderspace_pipelines import postgres
from orderspace_pipelines.client.token_store import LOCK_TIMEOUT_SECONDS, StoredToken, TokenStoreError

if TYPE_CHECKING:
    import psycopg

COMPONENT = "token_store"  # its name in orderspace_schema_migrations
TABLE = "orderspace_access_tokens"
LOCK_NAMESPACE = postgres.advisory_key(COMPONENT)  # first half of the two-key advisory lock
MIGRATIONS = (
    f"CREATE TABLE {TABLE} ("
    " account_key TEXT PRIMARY KEY, access_token TEXT NOT NULL,"
    " expires_at DOUBLE PRECISION NOT NULL, lifetime DOUBLE PRECISION NOT NULL,"
    " client_id TEXT NOT NULL, secret_sha256 TEXT NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
)
COLUMNS = "access_token, expires_at, lifetime, client_id, secret_sha256"


class PostgresTokenStore:
    """`TokenStore` in the shared database (see the module docstring). Thread-safe.

    Opening it connects and migrates; an unreachable database raises `postgres.DatabaseError` with one line
    naming ORDERSPACE_DATABASE_URL. The lock uses a second connection, opened on first use, so `read()`
    never waits behind a fetch in progress.
    """

    def __init__(self, url: str | SecretStr, key: str, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        import psycopg

        self.where = postgres.describe_url(url)
        self.key = key
        self.lock_timeout = lock_timeout
        self._url = url
        self._lock_key = postgres.advisory_key(key)
        self._data_lock = threading.Lock()
        self._thread_lock = threading.RLock()
        self._lock_conn: psycopg.Connection | None = None
        self._depth = 0
        self._conn = postgres.connect(url, purpose="token store")
        try:
            postgres.migrate(self._conn, COMPONENT, MIGRATIONS)
        except psycopg.Error as error:
            self._conn.close()
            raise postgres.DatabaseError(
                f"ORDERSPACE_DATABASE_URL ({self.where}): could not create the token table: "
                f"{type(error).__name__}"
            ) from None

    def __repr__(self) -> str:
        return f"PostgresTokenStore({self.where})"

    def read(self) -> StoredToken | None:
        with self._data_lock, self._guard("read the shared token"):
            row = self._conn.execute(
                f"SELECT {COLUMNS} FROM {TABLE} WHERE account_key = %s", (self.key,)
            ).fetchone()
        if row is None:
            return None
        names = ("access_token", "expires_at", "lifetime", "client_id", "secret_sha256")
        return StoredToken.from_json(dict(zip(names, row, strict=True)))

    def write(self, token: StoredToken) -> None:
        with self._data_lock, self._guard("store the shared token"):
            self._conn.execute(
                f"INSERT INTO {TABLE} (account_key, {COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (account_key) DO UPDATE SET access_token = excluded.access_token, "
                "expires_at = excluded.expires_at, lifetime = excluded.lifetime, "
                "client_id = excluded.client_id, secret_sha256 = excluded.secret_sha256, updated_at = now()",
                (
                    self.key,
                    token.value,
                    token.expires_at,
                    token.lifetime,
                    token.client_id,
                    token.secret_sha256,
                ),
            )

    def discard(self, value: str) -> bool:
        with self._data_lock, self._guard("discard the shared token"):
            cursor = self._conn.execute(
                f"DELETE FROM {TABLE} WHERE account_key = %s AND access_token = %s", (self.key, value)
            )
            return cursor.rowcount > 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The account's advisory lock, held on a connection of its own (threads of this process queue on
        a local lock first, as with the file store; re-entrant within a thread)."""
        with self._thread_lock:
            if self._depth == 0:
                self._take_advisory_lock()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release_advisory_lock()

    def close(self) -> None:
        with self._data_lock, self._thread_lock:
            self._conn.close()
            if self._lock_conn is not None:
                self._lock_conn.close()
                self._lock_conn = None

    # -- internals ---------------------------------------------------------------------------------------

    def _take_advisory_lock(self) -> None:
        import psycopg

        try:
            if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.broken:
                self._lock_conn = postgres.connect(self._url, purpose="token store lock")
            conn = self._lock_conn
            conn.execute(f"SET lock_timeout = {int(self.lock_timeout * 1000)}")
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, self._lock_key))
        except psycopg.errors.LockNotAvailable:
            raise TokenStoreError(
                f"timed out after {self.lock_timeout:.0f} s waiting for the token lock in {self.where}"
            ) from None
        except (psycopg.Error, postgres.DatabaseError) as error:
            raise TokenStoreError(
                f"cannot lock the shared token in {self.where}: {type(error).__name__}"
            ) from None

    def _release_advisory_lock(self) -> None:
        import psycopg

        conn = self._lock_conn
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, self._lock_key))
        except psycopg.Error:
            conn.close()  # a session lock dies with its connection
            self._lock_conn = None

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """A database failure as one `TokenStoreError` line; a broken connection is replaced."""
        import psycopg

        try:
            yield
        except psycopg.Error as error:
            if self._conn.broken or self._conn.closed:
                with contextlib.suppress(postgres.DatabaseError):
                    self._conn.close()
                    self._conn = postgres.connect(self._url, purpose="token store")
            raise TokenStoreError(f"cannot {action} in {self.where}: {type(error).__name__}") from None
