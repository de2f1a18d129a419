"""The account's request budget, shared by every process on the machine (or, with ORDERSPACE_DATABASE_URL set,
by every process on every host: `pg_throttle.py` keeps the same two rates and the pause in PostgreSQL).

Without a database, one pyrate-limiter `SQLiteBucket` with a file lock holds a log of request timestamps in
a SQLite file every process opens (`ORDERSPACE_THROTTLE_DB`, or a path under the temp directory keyed by API
URL + client id).
Two rates apply:

- spacing: at most one request every `window / limit` seconds, so requests are spread out, never burst;
- budget: at most `limit` requests in any `window + margin` seconds. The margin (2% of the window, at least
  100 ms) absorbs the jitter between taking a slot here and the request reaching the server, so a 61st request
  can never land inside the server's 60 s window.

A second table in the same file holds a "paused until" time: a 429 seen by any process pauses all of them.
Timestamps are wall-clock milliseconds, which every process on one machine shares.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from pydantic import SecretStr
from pyrate_limiter import Limiter, Rate, RateItem, SQLiteBucket

from orderspace_pipelines.client.pg_throttle import PostgresBudget

logger = logging.getLogger("orderspace_pipelines.client")

THROTTLE_DB_ENV = "ORDERSPACE_THROTTLE_DB"  # read by the settings model
BUCKET_TABLE = "orderspace_requests"
PAUSE_TABLE = "orderspace_pause"
ITEM_NAME = "orderspace-api"
MIN_MARGIN_SECONDS = 0.1
MARGIN_FRACTION = 0.02
LOCK_POLL_SECONDS = 0.002  # retry delay when another process holds the file lock for its few microseconds
LOG_WAITS_FROM_SECONDS = 1.0  # throttle waits at least this long are logged at INFO, shorter ones at DEBUG


def budget_key(api_url: str, client_id: str) -> str:
    """The key of one account's budget: `sha256(api_url + client_id)[:12]`, the same on every host."""
    return hashlib.sha256((api_url + client_id).encode()).hexdigest()[:12]


def default_throttle_path(
    api_url: str, client_id: str, configured: str | os.PathLike[str] | None = None
) -> Path:
    """`configured` (the settings' `ORDERSPACE_THROTTLE_DB`) if set, else
    `<tempdir>/orderspace-throttle-<sha256(api_url + client_id)[:12]>.sqlite`."""
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"orderspace-throttle-{budget_key(api_url, client_id)}.sqlite"


def budget_rates(limit: int, window_seconds: float) -> list[Rate]:
    """The two pyrate-limiter rates for `limit` requests per `window_seconds` (see the module docstring)."""
    if limit < 1:
        raise ValueError(f"the request budget must be at least 1 per window, got {limit}")
    if window_seconds <= 0:
        raise ValueError(f"the rate window must be longer than zero, got {window_seconds}")
    margin = max(MIN_MARGIN_SECONDS, MARGIN_FRACTION * window_seconds)
    budget = Rate(limit, round((window_seconds + margin) * 1000))
    if limit == 1:
        return [budget]
    spacing_ms = max(1, round(window_seconds * 1000 / limit))
    spacing = Rate(1, spacing_ms)
    if spacing.interval >= budget.interval or 1 / spacing.interval < limit / budget.interval:
        return [budget]
    return [spacing, budget]


class _SQLiteBudget:
    """The budget on this machine: a pyrate-limiter `SQLiteBucket` (file-locked) plus the pause table."""

    def __init__(self, path: Path, rates: list[Rate]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._bucket = SQLiteBucket.init_from_file(
            rates, table=BUCKET_TABLE, db_path=str(path), use_file_lock=True
        )
        self._limiter = Limiter(self._bucket, buffer_ms=0)
        self._local_lock = threading.Lock()
        self._pause_db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self._pause_lock = threading.Lock()
        with self._pause_lock:
            self._pause_db.execute(
                f"CREATE TABLE IF NOT EXISTS {PAUSE_TABLE} "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL, reason TEXT)"
            )

    def paused_until(self) -> float:
        with self._pause_lock:
            row = self._pause_db.execute(f"SELECT until FROM {PAUSE_TABLE} WHERE id = 1").fetchone()
        return float(row[0]) if row else 0.0

    def pause_all(self, seconds: float, reason: str) -> float:
        until = time.time() + max(0.0, seconds)
        with self._pause_lock:
            self._pause_db.execute(
                f"INSERT INTO {PAUSE_TABLE} (id, until, reason) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason",
                (until, reason),
            )
        return until

    def _try_take_slot(self) -> float:
        """One attempt at a slot: 0.0 when taken, else a hint of how long to sleep before the next attempt."""
        with self._local_lock:
            if self._limiter.try_acquire(ITEM_NAME, blocking=True, timeout=0):
                return 0.0
            hint_ms = self._bucket.waiting(RateItem(ITEM_NAME, self._bucket.now()))
        if not isinstance(hint_ms, int) or hint_ms <= 0:
            return LOCK_POLL_SECONDS
        return hint_ms / 1000 + LOCK_POLL_SECONDS

    def take_slot(self) -> tuple[float, float]:
        """`(0, 0)` when a slot was taken, else `(pause_left, wait)` in seconds."""
        pause_left = self.paused_until() - time.time()
        if pause_left > 0:
            return pause_left, 0.0
        wait = self._try_take_slot()
        if wait > 0:
            return 0.0, wait
        # A pause set while we were taking the slot wins: give the slot up and wait it out.
        pause_left = self.paused_until() - time.time()
        return (pause_left, 0.0) if pause_left > 0 else (0.0, 0.0)

    def close(self) -> None:
        try:
            self._limiter.close()
        finally:
            with self._pause_lock:
                self._pause_db.close()


class _PostgresBudgetAdapter:
    """`PostgresBudget` (pg_throttle.py) speaking this module's epoch-seconds interface."""

    def __init__(self, budget: PostgresBudget) -> None:
        self.budget = budget

    def paused_until(self) -> float:
        left = self.budget.pause_left()
        return 0.0 if left is None else time.time() + left

    def pause_all(self, seconds: float, reason: str) -> float:
        return time.time() + self.budget.pause(seconds, reason)

    def take_slot(self) -> tuple[float, float]:
        pause_left, wait = self.budget.take_slot()
        return pause_left, (wait + LOCK_POLL_SECONDS if wait > 0 else 0.0)

    def close(self) -> None:
        self.budget.close()


class RequestThrottle:
    """Cross-process request slots: `acquire()` blocks until this process may send one API request.

    Thread-safe and process-safe. `pause_all(seconds)` makes every process sharing the budget wait.
    `RequestThrottle(path, ...)` keeps the budget in a SQLite file on this machine;
    `RequestThrottle.on_postgres(url, key, ...)` keeps it in PostgreSQL for every host (`pg_throttle.py`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        limit: int,
        window_seconds: float,
        database_url: str | SecretStr | None = None,
        budget_key: str = "",
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.rates = budget_rates(limit, window_seconds)
        self.path = Path(path) if path is not None else None
        self._backend: _SQLiteBudget | _PostgresBudgetAdapter
        if database_url is not None:
            if not budget_key:
                raise ValueError("a budget in PostgreSQL needs a budget key")
            self._backend = _PostgresBudgetAdapter(PostgresBudget(database_url, budget_key, self.rates))
            self.where = self._backend.budget.where
        elif self.path is not None:
            self._backend = _SQLiteBudget(self.path, self.rates)
            self.where = str(self.path)
        else:
            raise ValueError("a request throttle needs a SQLite path or a PostgreSQL URL")
        self._closed = False

    @classmethod
    def on_postgres(
        cls, url: str | SecretStr, budget_key: str, *, limit: int, window_seconds: float
    ) -> RequestThrottle:
        """The budget `budget_key` in the PostgreSQL database at `url`, shared by every host; raises
        `postgres.DatabaseError` (one line naming ORDERSPACE_DATABASE_URL) when it cannot be reached."""
        return cls(None, limit=limit, window_seconds=window_seconds, database_url=url, budget_key=budget_key)

    def __repr__(self) -> str:
        return f"RequestThrottle({self.where!r}, limit={self.limit}, window={self.window_seconds} s)"

    def paused_until(self) -> float:
        """Wall-clock time (epoch seconds, this host's clock) until which every process must hold off; 0 when
        never paused."""
        return self._backend.paused_until()

    def pause_all(self, seconds: float, reason: str = "") -> float:
        """Pause every process sharing this budget for at least `seconds`; returns its end (epoch s)."""
        until = self._backend.pause_all(seconds, reason)
        logger.info("Pausing all Orderspace API requests for %.1f s: %s", seconds, reason or "requested")
        return until

    def acquire(self) -> float:
        """Block until a request may be sent (honouring any shared pause); returns the seconds waited."""
        if self._closed:
            raise RuntimeError("the request throttle is closed")
        started = time.monotonic()
        paused_logged = False
        while True:
            pause_left, wait = self._backend.take_slot()
            if pause_left <= 0 and wait <= 0:
                break
            if pause_left > 0 and not paused_logged:
                logger.info("Orderspace API paused after a 429: waiting %.1f s", pause_left)
                paused_logged = True
            time.sleep(max(pause_left, wait))
        waited = time.monotonic() - started
        if waited >= LOG_WAITS_FROM_SECONDS:
            logger.info(
                "Waited %.2f s for an Orderspace API request slot (budget %d per %.0f s)",
                waited,
                self.limit,
                self.window_seconds,
            )
        elif waited > 0.0005:
            logger.debug("Waited %.3f s for an Orderspace API request slot", waited)
        return waited

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._backend.close()
