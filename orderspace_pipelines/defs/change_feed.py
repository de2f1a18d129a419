"""The change feed in Dagster: `change_feed_job` applies the stored webhook events to the lake, and
`change_feed_sensor` launches it when events wait.

- The job makes no API request (the events carry the records), so its step is not in the `orderspace_api`
  pool. It is serialised with pull runs on the same tables by the lake's table locks
  (`lake.storage.table_locks`), which the pull's writes take too, and with other apply runs by one applier
  lock (`lake.changes.apply_pending`).
- The sensor (default running, every 10 s) reads the store's pending count; when events wait and no apply
  run is queued or running, it requests a run with run key `change-feed:<highest pending seq>`, so the
  same backlog is launched once and every newer event gets a new run.
- Each table's change feed (events waiting, the newest event's receipt time, when the newest applied one
  landed in the lake) is an asset observation on its asset page (`orders`, `invoices`, `invoice_payments`
  for payments, ...): logged by every apply run, and by the sensor whenever it changed.
- The run's output metadata: events applied, rows per table, records removed per table, tables touched,
  events skipped (tombstoned, stale, superseded, unplaced, unknown) and the last event's receipt time.
"""

import contextlib
import json
import sqlite3
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import SecretStr

from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.lake.changes import ApplyReport, apply_pending
from orderspace_pipelines.webhooks.store import open_store, store_exists, store_path
from orderspace_pipelines.webhooks.store_pg import PostgresEventStore

# 10 s, and the job in-process (one op: a step process only adds start-up time): p95 change to lake 41 s,
# not 62 s as with 30 s and the multiprocess executor (bench/bench_change_to_lake.py; bench/results/).
SENSOR_INTERVAL_SECONDS = 10
JOB_NAME = "change_feed_job"
_TABLE_OF = {
    "order": "orders",
    "invoice": "invoices",
    "payment": "invoice_payments",
    "dispatch": "dispatches",
    "customer": "customers",
    "product": "products",
    "inventory_level": "inventory_levels",
}


def report_metadata(report: ApplyReport) -> dict[str, Any]:
    """The run's metadata for one apply (plain values: no record contents, no secrets)."""
    return {
        "events_applied": report.events,
        "rows_per_table": dg.MetadataValue.json(dict(sorted(report.rows.items()))),
        "removed_per_table": dg.MetadataValue.json(dict(sorted(report.removed.items()))),
        "tables_touched": ", ".join(sorted(report.tables_touched)) or "none",
        "skipped": dg.MetadataValue.json(
            {
                "deleted_before (tombstoned)": report.tombstoned_skipped,
                "older_than_stored (stale)": report.stale_skipped,
                "superseded_in_batch": report.superseded,
                "unplaced": report.unplaced,
                "unknown_event_types": report.unknown,
            }
        ),
        "last_event_received_at": (
            report.last_received_at.isoformat() if report.last_received_at is not None else "none"
        ),
    }


@dg.op(description="Apply every stored webhook event to the lake (no API requests).")
def apply_change_events(context: dg.OpExecutionContext, lake: LakeResource) -> dict[str, Any]:
    waiting = backlog(lake.root, lake.database_url)
    store = open_store(lake.root, lake.database_url)
    try:
        report = apply_pending(lake.root, store, database_url=lake.database_url)
    finally:
        store.close()
    metadata = report_metadata(report)
    metadata["pending_before_per_table"] = dg.MetadataValue.json(
        dict(sorted(waiting.pending_per_table.items()))
    )
    metadata["last_delivery_received_at"] = waiting.last_received_at or "never"
    context.add_output_metadata(metadata)
    for observation in feed_observations(table_feeds(lake.root, lake.database_url)):
        context.log_event(observation)
    context.log.info("applied %d event(s); tables touched: %s", report.events, metadata["tables_touched"])
    return {"events": report.events, "tables": sorted(report.tables_touched)}


@dg.job(
    name=JOB_NAME,
    description=__doc__.split("\n\n")[0],
    tags={"orderspace/kind": "change_feed"},
    executor_def=dg.in_process_executor,
)
def change_feed_job() -> None:
    apply_change_events()


@dataclass(frozen=True)
class Backlog:
    """What waits in the event store, read-only: the highest pending seq, pending events per lake table
    (the webhook resource's parent table; payments under `invoice_payments`), the last delivery's time."""

    highest_seq: int | None
    pending_per_table: dict[str, int]
    last_received_at: str | None

    def describe(self) -> str:
        waiting = ", ".join(f"{table} {count}" for table, count in sorted(self.pending_per_table.items()))
        return f"pending: {waiting or 'none'}; last delivery: {self.last_received_at or 'never'}"


def backlog(data_dir: Path, database_url: SecretStr | None = None) -> Backlog:
    """The store's backlog (no store yet, or no tables yet: nothing waits). Opens the file read-only; with
    `database_url` set, reads the Postgres store."""
    if database_url is not None and database_url.get_secret_value():
        with PostgresEventStore(database_url) as store:
            rows = store.backlog()
            received = store.last_delivery_at()
        last = received.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if received is not None else None
        return _backlog(rows, last)
    path = store_path(data_dir)
    if not path.is_file():
        return Backlog(None, {}, None)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            rows = db.execute(
                "SELECT resource, COUNT(*), MAX(seq) FROM events WHERE applied_at IS NULL GROUP BY resource"
            ).fetchall()
            (last,) = db.execute("SELECT MAX(received_at) FROM deliveries").fetchone()
        except sqlite3.OperationalError:
            return Backlog(None, {}, None)  # the receiver has not created the tables yet
    return _backlog(rows, last)


def _backlog(rows: list[tuple[str, int, int]], last: str | None) -> Backlog:
    per_table: dict[str, int] = {}
    for resource, count, _ in rows:
        table = _TABLE_OF.get(resource, f"{resource} (unknown event type)")
        per_table[table] = per_table.get(table, 0) + int(count)
    seqs = [int(seq) for _, _, seq in rows if seq is not None]
    return Backlog(max(seqs) if seqs else None, per_table, last)


def highest_pending_seq(data_dir: Path, database_url: SecretStr | None = None) -> int | None:
    """The newest stored event not yet applied (None: nothing waits, or no store yet). Read-only."""
    return backlog(data_dir, database_url).highest_seq


@dataclass(frozen=True)
class TableFeed:
    """One lake table's change feed: events waiting, the newest event's receipt time, and when the newest
    applied event landed in the lake (store stamps, UTC ISO text; None: never)."""

    pending: int
    last_received_at: str | None
    last_landed_at: str | None

    def describe(self) -> str:
        return (
            f"{self.pending} webhook event(s) waiting; last event received "
            f"{self.last_received_at or 'never'}, last landed in the lake {self.last_landed_at or 'never'}"
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment is not None else None


def _feed_rows(
    data_dir: Path, database_url: SecretStr | None
) -> list[tuple[str, int, str | None, str | None]]:
    """(resource, pending, newest receipt, newest apply) per resource; None when there is no store yet."""
    if database_url is not None and database_url.get_secret_value():
        with PostgresEventStore(database_url) as store:
            return [(r, n, _iso(got), _iso(done)) for r, n, got, done in store.feed_per_resource()]
    path = store_path(data_dir)
    if not path.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            return db.execute(
                "SELECT e.resource, SUM(e.applied_at IS NULL), MAX(d.received_at), MAX(e.applied_at) "
                "FROM events e JOIN deliveries d ON d.id = e.delivery_id GROUP BY e.resource"
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # the receiver has not created the tables yet


def table_feeds(data_dir: Path, database_url: SecretStr | None = None) -> dict[str, TableFeed]:
    """Every change-feed table's status (all of them, zeros included, once a store exists). Read-only."""
    if (
        not (database_url is not None and database_url.get_secret_value())
        and not store_path(data_dir).is_file()
    ):
        return {}
    rows = _feed_rows(data_dir, database_url)
    feeds = {table: TableFeed(0, None, None) for table in _TABLE_OF.values()}
    for resource, pending, received, landed in rows:
        table = _TABLE_OF.get(resource)
        if table is not None:
            feeds[table] = TableFeed(int(pending or 0), received, landed)
    return feeds


def _stamp_value(stamp: str | None) -> dg.MetadataValue:
    if stamp is None:
        return dg.MetadataValue.text("never")
    return dg.MetadataValue.timestamp(datetime.fromisoformat(stamp.replace("Z", "+00:00")))


def feed_observations(feeds: dict[str, TableFeed]) -> list[dg.AssetObservation]:
    """One observation per table, shown on its asset page: events waiting, last received, last landed."""
    return [
        dg.AssetObservation(
            asset_key=table,
            description=feed.describe(),
            metadata={
                "change_feed_pending_events": dg.MetadataValue.int(feed.pending),
                "change_feed_last_event_received_at": _stamp_value(feed.last_received_at),
                "change_feed_last_landed_at": _stamp_value(feed.last_landed_at),
            },
        )
        for table, feed in sorted(feeds.items())
    ]


def _feed_cursor(feeds: dict[str, TableFeed]) -> str:
    return json.dumps({table: list(astuple(feed)) for table, feed in sorted(feeds.items())})


_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=change_feed_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches change_feed_job when webhook events wait to be applied (run key: highest seq).",
)
def change_feed_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    """Launch the apply run, and record each table's feed status (an asset observation) when it changed."""
    feeds = table_feeds(lake.root, lake.database_url)
    cursor = _feed_cursor(feeds)
    observed = feed_observations(feeds) if cursor != context.cursor else []
    waiting = backlog(lake.root, lake.database_url)
    seq = waiting.highest_seq
    if seq is None:
        return dg.SensorResult(
            skip_reason=f"no webhook events waiting ({waiting.describe()})",
            cursor=cursor,
            asset_events=observed,
        )
    active = context.instance.get_runs_count(dg.RunsFilter(job_name=JOB_NAME, statuses=_ACTIVE))
    if active:
        return dg.SensorResult(
            skip_reason=f"an apply run is in progress; events up to seq {seq} wait ({waiting.describe()})",
            cursor=cursor,
            asset_events=observed,
        )
    tags = {
        "orderspace/pending_events": str(sum(waiting.pending_per_table.values())),
        "orderspace/pending_per_table": ", ".join(
            f"{table}={count}" for table, count in sorted(waiting.pending_per_table.items())
        ),
        "orderspace/last_delivery_at": waiting.last_received_at or "never",
    }
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"change-feed:{seq}", tags=tags)],
        cursor=cursor,
        asset_events=observed,
    )


HEALTH_INTERVAL_SECONDS = 600  # one API request (GET the stored webhook) per tick


class WebhookSubscriptionWarning(RuntimeError):
    """The webhook subscription is missing, disabled or silent: the tick fails so the UI shows it in red."""


def webhook_health(lake: LakeResource, orderspace: OrderspaceResource) -> tuple[int, list[str]]:
    """`webhooks status` for a sensor: (exit code, lines). Uses `webhook_config()` and `subscription.status`
    (0 ok, 3 missing or disabled, 4 nothing arrived for ORDERSPACE_WEBHOOK_STALE_HOURS)."""
    from orderspace_pipelines.webhooks.config import webhook_config
    from orderspace_pipelines.webhooks.subscription import current_status

    config = webhook_config()
    report = current_status(
        lake.root,
        config.key_file,
        stale_after=config.stale_after,
        open_api=orderspace.get_client,
        database_url=config.database_url,
    )
    return report.exit_code, report.lines


@dg.sensor(
    minimum_interval_seconds=HEALTH_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Warns (a failed tick, red in the UI) when the webhook subscription is missing or disabled, or "
        "nothing has arrived for ORDERSPACE_WEBHOOK_STALE_HOURS. One API request per tick (every 10 min)."
    ),
)
def webhook_subscription_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, orderspace: OrderspaceResource
) -> dg.SkipReason:
    code, lines = webhook_health(lake, orderspace)
    summary = "; ".join(lines)
    if code != 0:
        context.log.warning(summary)
        raise WebhookSubscriptionWarning(f"webhook subscription needs attention: {summary}")
    return dg.SkipReason(f"webhook subscription healthy: {summary}")


CHANGE_FEED_JOBS = [change_feed_job]
CHANGE_FEED_SENSORS = [change_feed_sensor, webhook_subscription_sensor]


def apply_stored_events(instance: dg.DagsterInstance, lake: LakeResource) -> dg.ExecuteInProcessResult | None:
    """Run `change_feed_job` in-process (`sync` does this before it pulls); None when no store exists."""
    if not store_exists(lake.root, lake.database_url):
        return None
    return change_feed_job.execute_in_process(
        instance=instance,
        resources={"lake": lake},
        tags={"orderspace/trigger": "sync"},
        raise_on_error=False,
    )


def events_applied(result: dg.ExecuteInProcessResult) -> int:
    """The events a `change_feed_job` run applied (from its step output's metadata)."""
    for event in result.all_node_events:
        if event.event_type_value == "STEP_OUTPUT":
            value = event.event_specific_data.metadata.get("events_applied")  # type: ignore[union-attr]
            return int(getattr(value, "value", 0) or 0)
    return 0
