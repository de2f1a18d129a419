"""Daily partitions of the date-partitioned pull assets (orders, invoices, dispatches and their lines).

One partition per UTC day, keyed `YYYY-MM-DD`, from `ORDERSPACE_START_DATE` (default 2015-01-01) to today
inclusive (`end_offset=1`). Records older than the start date are still landed by a full pull, in their
own date folders (the asset warns); see `lake/sweep.py`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from orderspace_pipelines.settings import OrderspaceSettings

PARTITION_FORMAT = "%Y-%m-%d"

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# A run tagged with this pulls the whole history in one sweep, open on both sides, whatever partition (range)
# it targets; it logs a materialization for each day it wrote. `sync` without --since and `full_pull_job`
# use it so a full pull does not plan thousands of empty partitions: a run over a range logs a "planned"
# event per partition and asset when it is created, and a materialization per day of its range (days
# without records too, so that a UI backfill ends green). For `orders` over 2015..today that is 17,408
# events: ~48 s on the project's instance storage (batched writes, defs/event_log.py), minutes on
# Dagster's stock SQLite storage.
FULL_HISTORY_TAG = "orderspace/full_history"


def start_date() -> date:
    """The first daily partition: `ORDERSPACE_START_DATE` (YYYY-MM-DD) or 2015-01-01, through the model."""
    return OrderspaceSettings.read().start_date


def lookback_days() -> int:
    """Days before today the daily pull re-reads (orders change after creation): `ORDERSPACE_LOOKBACK_DAYS`
    (default 7), through the model."""
    return OrderspaceSettings.read().lookback_days


# Read when the code location loads (a Dagster partitions definition needs its start date then);
# `definitions.py` validates the model first, so a bad value fails the load with the model's one-line message.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=start_date().strftime(PARTITION_FORMAT),
    end_offset=1,
    timezone="UTC",
    fmt=PARTITION_FORMAT,
)


def today_utc() -> date:
    return datetime.now(UTC).date()


def first_partition_day() -> date:
    return date.fromisoformat(DAILY_PARTITIONS.get_first_partition_key())  # type: ignore[arg-type]


def last_partition_day(now: datetime | None = None) -> date:
    """The newest partition (today, UTC, at `now`)."""
    if now is not None:  # end_offset=1: the partition of `now`'s own day is the last one
        return now.astimezone(UTC).date()
    key = DAILY_PARTITIONS.get_last_partition_key()
    return date.fromisoformat(key) if key else today_utc()


def clamp_to_partitions(day: date, now: datetime | None = None) -> date:
    """`day` moved inside [first partition, last partition]."""
    return min(max(day, first_partition_day()), last_partition_day(now))


def range_tags(start: date, end: date) -> dict[str, str]:
    """Run tags for ONE run over the partitions start..end (single-run backfill policy)."""
    return {RANGE_START_TAG: start.strftime(PARTITION_FORMAT), RANGE_END_TAG: end.strftime(PARTITION_FORMAT)}


def window_days(start: datetime, end: datetime) -> tuple[date, date]:
    """A partition time window [start, end) as the inclusive days it covers."""
    return start.date(), (end - timedelta(days=1)).date()
