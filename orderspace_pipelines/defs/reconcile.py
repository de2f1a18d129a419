"""Reconciliation in Dagster: `reconcile_job` (one op) and `reconcile_schedule` (hourly, minute 40).

Brings every lake table back in line with the account without any webhook (what it lists and why:
`orderspace_pipelines.reconcile`). The op runs in the `orderspace_api` pool, shares the account's request
budget with every other run, and writes through the change feed's applier under the lake's per-table locks,
so a reconcile, an event apply and a pull never overwrite each other. Run config: `sweep_days` (the rolling
sweep's slice, default 30) and `full_cycle` (sweep the whole history in this one run).

Staleness bound with every webhook lost (T = the schedule's interval, 1 hour; S = sweep_days; H = days from
the oldest stored record to today; C = ceil((H + 1) / S) runs per sweep cycle): new records, status changes,
payments, dispatches, customer edits and deletions, product and inventory updates, deleted open orders and
unpaid invoices reach the lake within T + one run; deletions of closed orders, paid invoices and products,
and any other change to a closed record, within C * T + one run (3 years of history, S = 30: C = 37, 37 h).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from orderspace_pipelines.defs.console import CONSOLE_INFO
from orderspace_pipelines.defs.partitions import first_partition_day
from orderspace_pipelines.defs.pools import ensure_api_pool
from orderspace_pipelines.defs.pull_assets import WATERMARK_SAFETY_MARGIN, ServerClock
from orderspace_pipelines.defs.resources import ORDERSPACE_API_POOL, LakeResource, OrderspaceResource
from orderspace_pipelines.endpoints import PULLED
from orderspace_pipelines.lake import refresh_catalog
from orderspace_pipelines.reconcile import (
    DEFAULT_SWEEP_DAYS,
    Reconciler,
    ReconcileReport,
    plan_slice,
    save_progress,
    saved_since,
)

JOB_NAME = "reconcile_job"
OP_NAME = "reconcile_lake"
SCHEDULE_CRON = "40 * * * *"  # hourly: T = 1 hour in the staleness bound


class ReconcileConfig(dg.Config):
    sweep_days: int = DEFAULT_SWEEP_DAYS  # days of history one run's rolling sweep covers
    full_cycle: bool = False  # sweep the whole history in this run (a whole cycle at once)


def staleness_bound(report: ReconcileReport, interval_hours: float = 1.0) -> str:
    """The bound this configuration guarantees with every webhook lost (see the module docstring)."""
    cycle = report.cycle_runs * interval_hours
    return (
        f"updates caught by the cheap filters: {interval_hours:g} h + one run; deletions and changes to "
        f"closed records: {report.cycle_runs} runs x {interval_hours:g} h = {cycle:g} h + one run"
    )


def report_metadata(report: ReconcileReport) -> dict[str, Any]:
    """The run's metadata: requests, rows changed/removed per table, the slice, the bound (no record data)."""
    low, high = report.slice
    return {
        "api_requests": dg.MetadataValue.int(report.total_requests),
        "requests_per_listing": dg.MetadataValue.json(dict(report.requests)),
        "records_fetched_by_id": dg.MetadataValue.json(dict(report.fetched_by_id)),
        "changed_per_table": dg.MetadataValue.json(dict(sorted(report.written.changed.items()))),
        "removed_per_table": dg.MetadataValue.json(dict(sorted(report.written.removed.items()))),
        "rows_written_per_table": dg.MetadataValue.json(dict(sorted(report.written.rows.items()))),
        "skipped_by_the_applier": dg.MetadataValue.int(report.written.skipped),
        "sweep_slice": dg.MetadataValue.text(f"{low or 'oldest'}..{high or 'newest'}"),
        "sweep_cycle_runs": dg.MetadataValue.int(report.cycle_runs),
        "cycle_start": dg.MetadataValue.bool(report.cycle_start),
        "changes_since": dg.MetadataValue.text(report.since or "the newest stored day"),
        "staleness_bound": dg.MetadataValue.text(staleness_bound(report)),
    }


@dg.op(name=OP_NAME, pool=ORDERSPACE_API_POOL, description=__doc__.split("\n\n")[0])
def reconcile_lake(
    context: dg.OpExecutionContext,
    config: ReconcileConfig,
    orderspace: OrderspaceResource,
    lake: LakeResource,
) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    sweep = plan_slice(lake.root, first_partition_day(), today, config.sweep_days, whole=config.full_cycle)
    with orderspace.get_client() as client:
        clock = ServerClock(client)
        report = Reconciler(
            client, lake.root, since=saved_since(lake.root), sweep=sweep, database_url=lake.database_url
        ).run()
        report.sweep_days = config.sweep_days
    save_progress(lake.root, since=clock.start() - WATERMARK_SAFETY_MARGIN, sweep=sweep)
    touched = {*report.written.changed, *report.written.removed}
    tables = [table for endpoint in PULLED if endpoint.table in touched for table in endpoint.tables]
    if tables:  # the catalog's views change only when a table's columns do
        refresh_catalog(lake.root, tables, logger=context.log)
    context.add_output_metadata(report_metadata(report))
    context.log.info(report.describe())
    return {"requests": report.total_requests, "summary": report.describe()}


@dg.job(name=JOB_NAME, description=__doc__.split("\n\n")[0], tags={"orderspace/kind": "reconcile"})
def reconcile_job() -> None:
    reconcile_lake()


reconcile_schedule = dg.ScheduleDefinition(
    name="reconcile_schedule",
    job=reconcile_job,
    cron_schedule=SCHEDULE_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Hourly reconciliation (no webhook needed): with every webhook lost, updates reach the lake "
        "within 1 h + one run; deletions and changes to closed records within ceil((H + 1) / sweep_days) "
        "hours + one run (H: days of history; sweep_days 30)."
    ),
)

RECONCILE_JOBS = [reconcile_job]
RECONCILE_SCHEDULES = [reconcile_schedule]


@dataclass
class ReconcileResult:
    success: bool
    requests: int
    summary: str
    run_id: str
    error: str | None = None


def run_reconcile(
    *,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    sweep_days: int = DEFAULT_SWEEP_DAYS,
    full_cycle: bool = False,
) -> ReconcileResult:
    """Run `reconcile_job` in-process (what `orderspace-pipelines reconcile` does)."""
    run_config = {
        **CONSOLE_INFO,
        "ops": {OP_NAME: {"config": {"sweep_days": sweep_days, "full_cycle": full_cycle}}},
    }
    ensure_api_pool(instance)
    result = reconcile_job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config=run_config,
        tags={"orderspace/trigger": "cli"},
        raise_on_error=False,
    )
    if not result.success:
        failures = [event for event in result.all_events if event.is_failure]
        error = str(failures[0].message) if failures else "the reconcile run failed"
        return ReconcileResult(False, 0, "", result.run_id, error)
    output = result.output_for_node(OP_NAME)
    return ReconcileResult(True, int(output["requests"]), str(output["summary"]), result.run_id)
