"""Jobs and schedules of the pull.

- `daily_pull_job` + `daily_pull_schedule` (02:00 UTC): ONE run over the partitions
  [today - lookback, today] (range tags), which re-reads recent days (orders change status after they are
  created) and refreshes customers, products and the reference tables. The look-back is
  `$ORDERSPACE_LOOKBACK_DAYS` (default 7), read when the schedule ticks.
- `inventory_snapshot_job` + `inventory_snapshot_schedule` (hourly, minute 15): one inventory snapshot.
- `full_pull_job`: every pull asset, the whole history in one sweep per resource (launch it on any
  partition, e.g. today's; see `partitions.FULL_HISTORY_TAG`). Backfills of any range can also be launched
  from the asset pages; the single-run backfill policy makes each one sweep.

Both schedules default to STOPPED on a fresh install (switch them on in the UI; `make dev` starts them).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orderspace_pipelines.defs.partitions import (
    DAILY_PARTITIONS,
    FULL_HISTORY_TAG,
    clamp_to_partitions,
    lookback_days,
    range_tags,
)
from orderspace_pipelines.defs.pull_assets import INVENTORY_ASSET, PULL_ASSETS

_ALL_PULL = dg.AssetSelection.assets(*PULL_ASSETS)
_INVENTORY = dg.AssetSelection.assets(INVENTORY_ASSET)

daily_pull_job = dg.define_asset_job(
    "daily_pull_job",
    selection=_ALL_PULL - _INVENTORY,
    partitions_def=DAILY_PARTITIONS,
    description="Recent days of orders, invoices and dispatches (one sweep each), whole-refresh tables.",
)

inventory_snapshot_job = dg.define_asset_job(
    "inventory_snapshot_job",
    selection=_INVENTORY,
    description="Add one inventory snapshot (the catalog's inventory_levels view shows the latest).",
)

full_pull_job = dg.define_asset_job(
    "full_pull_job",
    selection=_ALL_PULL,
    partitions_def=DAILY_PARTITIONS,
    tags={FULL_HISTORY_TAG: "true"},
    description="Everything the account holds, one sweep per resource, whatever partition it is launched on.",
)


def daily_run_request(scheduled_at: datetime, lookback: int) -> dg.RunRequest:
    """The daily pull's run: partitions [day - lookback, day] for the day the tick falls on, as one run."""
    day = scheduled_at.astimezone(UTC).date()
    end = clamp_to_partitions(day, scheduled_at)
    start = clamp_to_partitions(day - timedelta(days=lookback), scheduled_at)
    return dg.RunRequest(
        run_key=f"daily-{end.isoformat()}",
        tags={**range_tags(start, end), "orderspace/trigger": "daily_pull_schedule"},
    )


@dg.schedule(
    job=daily_pull_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily incremental pull: today plus ORDERSPACE_LOOKBACK_DAYS (default 7) days back, one run.",
)
def daily_pull_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled_at = context.scheduled_execution_time or datetime.now(UTC)
    return daily_run_request(scheduled_at, lookback_days())


inventory_snapshot_schedule = dg.ScheduleDefinition(
    name="inventory_snapshot_schedule",
    job=inventory_snapshot_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly inventory snapshot.",
)

PULL_JOBS = [daily_pull_job, inventory_snapshot_job, full_pull_job]
PULL_SCHEDULES = [daily_pull_schedule, inventory_snapshot_schedule]
