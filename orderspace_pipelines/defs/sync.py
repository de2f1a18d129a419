"""`orderspace-pipelines sync`: materialize the pull assets through Dagster from the command line.

The same asset code the UI and the schedules run. The daily-partitioned assets get ONE run over a partition
range (`dagster/asset_partition_range_start/_end` tags, single-run backfill policy): `--since D` pulls
D..today and materializes every day of that range (0 rows where there were no records). No `--since`
pulls the whole history as one sweep per resource (run tag `orderspace/full_history`, targeting today's
partition; each day written is logged as that partition's materialization), so records older than the
start date land too and Dagster does not plan thousands of empty partitions.
Whole-refresh assets and the inventory snapshot run once.
Before any pull, every stored webhook event is applied (`change_feed_job`, one more run, no API request),
so the pull's fresher listing lands on top of the change feed's rows, never under them.

`select` takes asset/table names (`orders`, `order_lines`, `inventory_level_snapshots`, ...); selecting
one table of a multi-asset selects the whole multi-asset (its tables come from one request stream).
With `$DAGSTER_HOME` set the runs are recorded in that instance; otherwise an ephemeral one is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

from orderspace_pipelines.defs.console import CONSOLE_INFO
from orderspace_pipelines.defs.partitions import (
    FULL_HISTORY_TAG,
    clamp_to_partitions,
    last_partition_day,
    range_tags,
)
from orderspace_pipelines.defs.pools import ensure_api_pool
from orderspace_pipelines.defs.pull_assets import PARTITIONED_KEYS, PULL_ASSET_KEYS, PULL_ASSETS
from orderspace_pipelines.endpoints import INVENTORY_LEVELS, INVENTORY_SNAPSHOTS, PULLED

# The parent table of every pulled endpoint (its asset key).
_PARENT_KEYS = frozenset(endpoint.table for endpoint in PULLED)
_PULLED_RESOURCES = frozenset(endpoint.resource for endpoint in PULLED)


@dataclass
class SyncResult:
    """What one sync did: rows written per table, API requests spent, the Dagster runs, success."""

    success: bool
    run_ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limit_wait_seconds: float = 0.0
    rate_limited: int = 0
    processing_seconds: float = 0.0  # time spent landing pages locally (flatten, Arrow, Parquet)
    partition_range: tuple[date, date] | None = None
    selected: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None
    events_applied: int | None = None  # stored webhook events applied before the pull (None: no store)

    def describe(self) -> str:
        lines = [f"sync {'succeeded' if self.success else 'FAILED'}: runs {', '.join(self.run_ids) or '-'}"]
        if self.partition_range:
            lines.append(f"  partitions {self.partition_range[0]}..{self.partition_range[1]} (one run)")
        else:
            lines.append("  the whole history (one sweep per resource)")
        if self.events_applied is not None:
            lines.append(f"  change feed: {self.events_applied} stored webhook event(s) applied first")
        for table in sorted(self.rows):
            lines.append(f"  {table:<28}{self.rows[table]:>10,} rows")
        lines.append(
            f"  API requests: {self.requests}, "
            f"waited {self.rate_limit_wait_seconds:.1f} s on the rate limit, "
            f"429 responses: {self.rate_limited}"
        )
        if self.failed_checks:
            lines.append(f"  failed checks: {', '.join(self.failed_checks)}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def resolve_selection(select: Sequence[str] | None) -> list[str]:
    """Asset keys to materialize: every pull asset, or the named ones with their multi-asset siblings."""
    if not select:
        return sorted(PULL_ASSET_KEYS)
    resources: set[str] = set()
    for raw in select:
        name = raw.strip()
        if name.startswith("pull_"):
            name = name[len("pull_") :]
        if name == INVENTORY_SNAPSHOTS:
            name = INVENTORY_LEVELS
        if name in PULL_ASSET_KEYS:
            resources.add(PULL_ASSET_KEYS[name])
        elif name in _PULLED_RESOURCES:
            resources.add(name)
        else:
            raise ValueError(
                f"unknown asset {raw!r} in --select; choose from: {', '.join(sorted(PULL_ASSET_KEYS))}"
            )
    return sorted(key for key, resource in PULL_ASSET_KEYS.items() if resource in resources)


def _instance(instance: dg.DagsterInstance | None) -> tuple[dg.DagsterInstance, bool]:
    if instance is not None:
        return instance, False
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get(), False
    return dg.DagsterInstance.ephemeral(), True


def _default_resources() -> dict[str, Any]:
    from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource

    return {"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()}


def _collect(result: dg.ExecuteInProcessResult, sync: SyncResult) -> None:
    sync.run_ids.append(result.run_id)
    # Rows: the latest count of each (asset, partition) of this run (a day rewritten later in a sweep is
    # logged again with its new count), summed per asset.
    latest: dict[tuple[str, str | None], int] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        key = materialization.asset_key.to_user_string()
        metadata = materialization.metadata
        row_count = metadata.get("dagster/row_count")
        if row_count is not None and isinstance(row_count.value, int):
            latest[(key, materialization.partition)] = row_count.value
        if key in _PARENT_KEYS:  # request counters are per step: count them once, on the parent table
            sync.requests += int(getattr(metadata.get("api_requests"), "value", 0) or 0)
            sync.rate_limited += int(getattr(metadata.get("rate_limited_429s"), "value", 0) or 0)
            sync.rate_limit_wait_seconds += float(
                getattr(metadata.get("rate_limit_wait_seconds"), "value", 0) or 0
            )
            sync.processing_seconds += float(
                getattr(metadata.get("local_processing_seconds"), "value", 0) or 0
            )
    for (key, _), rows in latest.items():
        sync.rows[key] = sync.rows.get(key, 0) + rows
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            sync.failed_checks.append(evaluation.asset_check_key.to_user_string())
    if not result.success:
        sync.success = False
        failures = [event for event in result.all_events if event.is_failure]
        if failures:
            sync.error = str(failures[0].message)


def _apply_change_feed(instance: dg.DagsterInstance, resources: Mapping[str, Any], sync: SyncResult) -> None:
    """Apply every stored webhook event (`change_feed_job`) before the pull; the contract's `sync` order."""
    from orderspace_pipelines.defs.change_feed import apply_stored_events, events_applied

    lake = resources.get("lake")
    if lake is None:
        return
    result = apply_stored_events(instance, lake)
    if result is None:
        return
    sync.run_ids.append(result.run_id)
    sync.events_applied = events_applied(result)
    if not result.success:
        sync.success = False
        failures = [event for event in result.all_events if event.is_failure]
        sync.error = str(failures[0].message) if failures else "the change feed's apply run failed"


def run_sync(
    *,
    since: date | None = None,
    select: list[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: Mapping[str, Any] | None = None,
    until: date | None = None,
) -> SyncResult:
    """Materialize the pull assets (all, or `select`) through Dagster; see the module docstring."""
    keys = resolve_selection(select)
    dagster_instance, ephemeral = _instance(instance)
    resource_defs = dict(resources) if resources is not None else _default_resources()
    sync = SyncResult(success=True, selected=keys)
    partitioned = [key for key in keys if key in PARTITIONED_KEYS]
    whole = [key for key in keys if key not in PARTITIONED_KEYS]

    def materialize(selection: list[str], tags: dict[str, str]) -> None:
        result = dg.materialize(
            PULL_ASSETS,
            selection=selection,
            instance=dagster_instance,
            resources=resource_defs,
            tags=tags,
            raise_on_error=False,
            run_config=CONSOLE_INFO,
        )
        _collect(result, sync)

    try:
        ensure_api_pool(dagster_instance)
        _apply_change_feed(dagster_instance, resource_defs, sync)
        if partitioned:
            materialize(partitioned, _partition_tags(sync, since, until))
        if whole:
            materialize(whole, {"orderspace/trigger": "sync"})
    finally:
        if ephemeral:
            dagster_instance.dispose()
    return sync


def _partition_tags(sync: SyncResult, since: date | None, until: date | None) -> dict[str, str]:
    """The partitioned run's tags (its range, or the whole history); records the range on `sync`."""
    end = last_partition_day() if until is None else clamp_to_partitions(until)
    tags = {"orderspace/trigger": "sync"}
    if since is None:  # the whole history in one sweep; the run targets the newest partition
        sync.partition_range = None
        return tags | {**range_tags(end, end), FULL_HISTORY_TAG: "true"}
    start = clamp_to_partitions(since)
    if start > end:
        raise ValueError(f"--since {since} is after the last day to pull ({end})")
    sync.partition_range = (start, end)
    return tags | range_tags(start, end)
