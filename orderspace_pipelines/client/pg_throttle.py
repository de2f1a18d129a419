"""The request budget and the shared 429 pause in PostgreSQL, for every process on every host.

Used by `RequestThrottle` when `ORDERSPACE_DATABASE_URL` is set (`RequestThrottle.on_postgres`). Two tables:
`orderspace_request_slots` (one row per request slot taken: budget key, time) and `orderspace_request_pause`
(per budget key, the time until which every process holds off after a 429).

Taking a slot is one call of a server-side function (one round trip, one transaction):
`pg_advisory_xact_lock` on the budget, then, for each rate of `throttle.budget_rates` (spacing and budget),
count the slots of its interval; if every rate has room and no pause is in force, insert the slot; else
answer how long to wait. Every time is the database's `clock_timestamp()`, read after the lock
is held, so the hosts' clocks never meet: a wait is a duration computed in the database and slept locally.

Why not pyrate-limiter's `PostgresBucket` (4.5), which the issue suggested first:
- time comes from each caller: `PostgresClock` reads the database clock in a separate round trip *before* the
  table lock, and silently falls back to the host's own clock when that query fails, so two hosts can write
  slots on two clocks; the slot is stamped with that earlier time, not the time it was granted;
- slots are stored as `TIMESTAMP` (without time zone) converted through each session's `TimeZone`, so two
  hosts whose sessions differ (PGTZ, a role's setting) or a DST change misplace each other's slots;
- `LOCK TABLE ... NOWAIT` fails fast under contention and records no wait; the table lock is held across
  several round trips (count, peek, insert), where this bucket's lock lives inside one server-side call;
- its table is created outside our migrations, and its 429-pause has no counterpart (we need one here anyway).
Measured (`bench/bench_pg_budget.py`, section "contention": 4 processes x 25 slots at 30 per 2 s, five runs
on a loaded 2-core machine): both hold the count (27-29 at most in any sliding 2 s window), but
`PostgresBucket` behind pyrate's blocking `Limiter` serves the processes one after another: one takes all its
25 slots while the last waits 5.5-6.4 s for its first; this bucket interleaves them (the last process first
admitted after 0.65-2.6 s, no process waiting more than 2 s between two slots). The four-process tests
(`tests/client/test_pg_budget.py`) prove this bucket.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from pydantic import SecretStr
from pyrate_limiter import Rate

from orderspace_pipelines import postgres

logger = logging.getLogger("orderspace_pipelines.client")

COMPONENT = "request_budget"  # its name in orderspace_schema_migrations
SLOTS_TABLE = "orderspace_request_slots"
PAUSE_TABLE = "orderspace_request_pause"
LOCK_NAMESPACE = postgres.advisory_key(COMPONENT)  # first half of the two-key advisory lock
TAKE_SLOT_FUNCTION = "orderspace_take_request_slot"

# Taking a slot is one server-side function, so one round trip: the advisory lock is held only while the
# database itself counts and inserts (not across network round trips), and is released at the commit that
# makes the new slot visible to the next holder. `p_intervals` / `p_limits` are the rates (ms, slots).
_TAKE_SLOT = f"""
CREATE OR REPLACE FUNCTION {TAKE_SLOT_FUNCTION}(
  p_key TEXT, p_lock_ns INTEGER, p_lock_key INTEGER, p_intervals BIGINT[], p_limits BIGINT[])
RETURNS TABLE (pause_left DOUBLE PRECISION, wait DOUBLE PRECISION)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_now TIMESTAMPTZ;
  v_pause DOUBLE PRECISION;
  v_wait DOUBLE PRECISION;
BEGIN
  PERFORM pg_advisory_xact_lock(p_lock_ns, p_lock_key);
  v_now := clock_timestamp();  -- after the lock: the time the slot is granted, on the database's clock
  SELECT EXTRACT(EPOCH FROM p.until - v_now) INTO v_pause FROM {PAUSE_TABLE} p WHERE p.budget_key = p_key;
  SELECT MAX(EXTRACT(EPOCH FROM w.oldest + r.interval_ms * INTERVAL '1 millisecond' - v_now)) INTO v_wait
    FROM unnest(p_intervals, p_limits) AS r(interval_ms, max_slots)
    CROSS JOIN LATERAL (
      SELECT s.taken_at AS oldest FROM {SLOTS_TABLE} s
      WHERE s.budget_key = p_key AND s.taken_at > v_now - r.interval_ms * INTERVAL '1 millisecond'
      ORDER BY s.taken_at DESC OFFSET r.max_slots - 1 LIMIT 1) AS w;
  v_pause := GREATEST(COALESCE(v_pause, 0), 0);
  v_wait := GREATEST(COALESCE(v_wait, 0), 0);
  IF v_pause = 0 AND v_wait = 0 THEN
    INSERT INTO {SLOTS_TABLE} (budget_key, taken_at) VALUES (p_key, v_now);
    DELETE FROM {SLOTS_TABLE} s WHERE s.budget_key = p_key
      AND s.taken_at < v_now - (SELECT MAX(i) FROM unnest(p_intervals) AS i) * INTERVAL '1 millisecond';
  END IF;
  RETURN QUERY SELECT v_pause, v_wait;
END $$
"""

MIGRATIONS = (
    f"CREATE TABLE {SLOTS_TABLE} (budget_key TEXT NOT NULL, taken_at TIMESTAMPTZ NOT NULL)",
    f"CREATE INDEX {SLOTS_TABLE}_by_time ON {SLOTS_TABLE} (budget_key, taken_at)",
    f"CREATE TABLE {PAUSE_TABLE} (budget_key TEXT PRIMARY KEY, until TIMESTAMPTZ NOT NULL, reason TEXT)",
    _TAKE_SLOT,
)


class PostgresBudget:
    """One account's budget in the shared database: `take_slot()` and the shared pause.

    Holds one connection (opened and migrated here; an unreachable database raises `postgres.DatabaseError`
    with one line naming ORDERSPACE_DATABASE_URL). Thread-safe: the connection is used under a local lock.
    """

    def __init__(self, url: str | SecretStr, budget_key: str, rates: list[Rate]) -> None:
        self.where = postgres.describe_url(url)
        self.budget_key = budget_key
        self._url = url
        self._intervals = [int(rate.interval) for rate in rates]
        self._limits = [int(rate.limit) for rate in rates]
        self._lock_key = postgres.advisory_key(budget_key)
        self._lock = threading.Lock()
        self._conn = postgres.connect(url, purpose="request budget")
        try:
            with self._guard("create the request budget's tables"):
                postgres.migrate(self._conn, COMPONENT, MIGRATIONS)
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresBudget({self.where}, key={self.budget_key!r})"

    def take_slot(self) -> tuple[float, float]:
        """One attempt: `(0, 0)` when a slot was taken, else `(pause_left, wait)` in seconds (one > 0)."""
        params = (self.budget_key, LOCK_NAMESPACE, self._lock_key, self._intervals, self._limits)
        with self._lock, self._guard("take a request slot"):
            row = self._conn.execute(
                f"SELECT pause_left, wait FROM {TAKE_SLOT_FUNCTION}(%s, %s, %s, %s, %s)", params
            ).fetchone()
        return (float(row[0]), float(row[1])) if row else (0.0, 0.0)

    def pause_left(self) -> float | None:
        """Seconds until the shared pause ends (negative once it has passed); None when never paused."""
        with self._lock, self._guard("read the shared pause"):
            row = self._conn.execute(
                f"SELECT EXTRACT(EPOCH FROM until - clock_timestamp()) FROM {PAUSE_TABLE} "
                "WHERE budget_key = %s",
                (self.budget_key,),
            ).fetchone()
        return float(row[0]) if row else None

    def pause(self, seconds: float, reason: str) -> float:
        """Pause every process of this budget for at least `seconds` (database clock); returns the seconds
        left of the pause now in force (a longer one already set wins)."""
        with self._lock, self._guard("set the shared pause"):
            row = self._conn.execute(
                f"INSERT INTO {PAUSE_TABLE} AS p (budget_key, until, reason) "
                "VALUES (%s, clock_timestamp() + %s * INTERVAL '1 second', %s) "
                "ON CONFLICT (budget_key) DO UPDATE SET until = GREATEST(p.until, excluded.until), "
                "reason = excluded.reason "
                "RETURNING EXTRACT(EPOCH FROM until - clock_timestamp())",
                (self.budget_key, max(0.0, seconds), reason),
            ).fetchone()
        return float(row[0]) if row else seconds

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turns a database failure into one clear `DatabaseError` line (no password, no SQL), replacing a
        broken connection so that the next attempt can succeed."""
        import psycopg

        try:
            yield
        except psycopg.Error as error:
            broken = self._conn.broken or self._conn.closed
            logger.warning(
                "The shared request budget at %s failed to %s (%s)%s",
                self.where,
                action,
                type(error).__name__,
                "; reconnecting" if broken else "",
            )
            if broken:
                self._conn.close()
                self._conn = postgres.connect(self._url, purpose="request budget")
            raise postgres.DatabaseError(
                f"ORDERSPACE_DATABASE_URL ({self.where}): could not {action}: {type(error).__name__}"
            ) from None
