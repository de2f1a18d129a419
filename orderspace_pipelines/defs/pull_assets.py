"""The pull assets: every Orderspace resource landed in the lake (Parquet partitions + DuckDB catalog).

- One multi-asset per API resource; child tables come out of the same request stream as their parent
  (`orders` + `order_lines`, `invoices` + `invoice_lines` + `invoice_payments`, `dispatches` +
  `dispatch_lines`, `products` + `product_variants`). Asset keys are the lake's table names.
- `orders`, `invoices` and `dispatches` (and their lines) are daily-partitioned by creation day (invoices:
  invoice date) with a single-run backfill policy: a run over any range of days is ONE listing bounded by
  the API's own filters (`created_since`/`created_before`, `invoice_date_after`/`invoice_date_before`;
  see `lake.sweep.range_filters`), so it costs ceil(records in the range / page size) requests (+1 at
  most), whatever the lake holds. A range that reaches the first partition is open below (older records
  land too); one that reaches today is open above (future-dated invoices land in their date folders).
- Invoices are partitioned by invoice date, which users set weeks before or after creation. A run whose
  range reaches today (the daily pull) therefore also lists the invoices created since the previous such
  run (its watermark, else the range's first day) and merges each into its invoice-date partition by id
  (`lake.sweep.DayMerge`), so a back-dated invoice is never dropped.
- The reference tables and customers are refreshed whole. Products and inventory levels are refreshed
  with `updated_since` after a first full load: the changed records replace theirs in the stored table
  (a changed product's variants are all replaced), so an unchanged catalogue costs one request. A run
  tagged `orderspace/full_refresh=true` reloads them whole (deletions show up only then, or through the
  change feed). `inventory_levels` also adds a snapshot of the whole table to `inventory_level_snapshots`.
- Watermarks (`<data_dir>/state/pull_state.json`) are the API server's time at the start of the previous
  successful pull (the `Date` header of its first response, so the local clock does not matter) minus
  `WATERMARK_SAFETY_MARGIN`, which covers records written while that first page was read and any drift
  between the server's clocks.
- Every step that calls the API runs in the `orderspace_api` concurrency pool on top of the client's
  cross-process throttle, so concurrent runs share the one request budget.
- Each materialization reports rows, column schema, a preview, the API requests it spent, the time it
  waited on the rate limit, retries and 429s, what the sweep did, and any values that did not fit their
  declared type. After writing, the asset refreshes its tables' views in the DuckDB catalog.
- Requests and local work overlap: a background thread fetches the next page while the step lands the
  current one (`PageFetcher`, a one-worker executor). It asks for a page only once the landing has said
  it wants one (a date check before the page is landed), so no request is spent past the end of a range,
  and it holds at most one page ahead, so memory stays at a couple of pages. The per-day materialization
  events of a partitioned pull are logged as each day is written, in the time the rate limit leaves between
  requests, rather than all at the end; on the project's instance storage they are written to SQLite in
  batches (`defs/event_log.py`), which took most of a full pull's local time when written one by one.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import dagster as dg
import httpx
import pyarrow as pa

from orderspace_pipelines.client import OrderspaceClient, Page
from orderspace_pipelines.defs.checks import CHECKS_BY_RESOURCE, check_connection
from orderspace_pipelines.defs.event_log import batched_materializations
from orderspace_pipelines.defs.partitions import (
    DAILY_PARTITIONS,
    FULL_HISTORY_TAG,
    first_partition_day,
    last_partition_day,
    window_days,
)
from orderspace_pipelines.defs.resources import ORDERSPACE_API_POOL, LakeResource, OrderspaceResource
from orderspace_pipelines.endpoints import PULLED
from orderspace_pipelines.lake import refresh_catalog, storage
from orderspace_pipelines.lake.schemas import (
    INVENTORY_LEVELS,
    INVENTORY_SNAPSHOTS,
    RESOURCES,
    ResourceSpec,
    table_spec,
)
from orderspace_pipelines.lake.sweep import (
    DayMerge,
    LandingReport,
    PartitionedLanding,
    WholeLanding,
    range_filters,
)

GROUP = "orderspace_pull"
PREVIEW_COLUMNS = 8
# A run tagged with this reloads `updated_since` resources (products, inventory levels) whole.
FULL_REFRESH_TAG = "orderspace/full_refresh"
# Watermarks are this much earlier than the server's time at the start of the pull they come from: records
# written while the first page was being read, and clock drift between the API's servers, are fetched again
# next time rather than missed (a few records more per pull).
WATERMARK_SAFETY_MARGIN = timedelta(minutes=10)

PARTITIONED_RESOURCES = tuple(endpoint.resource for endpoint in PULLED if endpoint.partitioned)
WHOLE_RESOURCES = tuple(
    endpoint.resource
    for endpoint in PULLED
    if not endpoint.partitioned and endpoint.resource != INVENTORY_LEVELS
)
_DESCRIPTIONS = {table: text for endpoint in PULLED for table, text in endpoint.descriptions().items()}


def _table_names(spec: ResourceSpec) -> list[str]:
    """The parent table and its children (the assets of one multi-asset; the snapshot table is not one)."""
    return [table for table in spec.tables if table != spec.snapshot_table]


def _asset_key_of(table: str) -> str:
    return INVENTORY_LEVELS if table == INVENTORY_SNAPSHOTS else table


# --- metadata -------------------------------------------------------------------------------------


def _column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def _preview_markdown(rows: list[dict[str, Any]], schema: pa.Schema | None) -> str:
    if not rows:
        return "_no rows_"
    names = (schema.names if schema is not None else list(rows[0]))[:PREVIEW_COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row.get(name)) for name in names) + " |" for row in rows]
    return "\n".join(lines)


def _request_metadata(client: OrderspaceClient) -> dict[str, Any]:
    stats = client.stats
    return {
        "api_requests": dg.MetadataValue.int(stats.requests),
        "rate_limit_wait_seconds": dg.MetadataValue.float(round(stats.throttle_wait_seconds, 3)),
        "retries": dg.MetadataValue.int(stats.retries),
        "rate_limited_429s": dg.MetadataValue.int(stats.rate_limited),
    }


def _metadata(
    table: str, report: LandingReport, requests: dict[str, Any], lake: LakeResource, extra: dict[str, Any]
) -> dict[str, Any]:
    schema = report.schemas.get(table) or table_spec(table).schema
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(report.rows.get(table, 0)),
        "dagster/column_schema": _column_schema(schema),
        "preview": dg.MetadataValue.md(_preview_markdown(report.preview.get(table, []), schema)),
        "path": dg.MetadataValue.path(str(lake.root / "parquet" / table)),
        **requests,
        "pages": dg.MetadataValue.int(report.pages),
        "records_seen": dg.MetadataValue.int(report.records),
        "local_processing_seconds": dg.MetadataValue.float(round(report.processing_seconds, 3)),
        **extra,
    }
    if table == report_parent(report):
        if report.duplicates:
            metadata["duplicates_skipped"] = dg.MetadataValue.int(report.duplicates)
        if report.undated:
            metadata["undated_records_skipped"] = dg.MetadataValue.int(report.undated)
    if report.coercions.counts:
        metadata["values_not_of_declared_type"] = dg.MetadataValue.json(report.coercions.summary())
    return metadata


def report_parent(report: LandingReport) -> str:
    return RESOURCES[report.resource].table


# --- the two kinds of pull ------------------------------------------------------------------------


def _run_checks(context: dg.AssetExecutionContext, lake: LakeResource, resource: str) -> Iterator[Any]:
    """Evaluate this asset's selected checks over the lake (after the pull, or on their own)."""
    selected = context.selected_asset_check_keys
    checks = [
        check
        for check in CHECKS_BY_RESOURCE[resource]
        if dg.AssetCheckKey(dg.AssetKey(check.asset), check.name) in selected
    ]
    if not checks:
        return
    with check_connection() as db:
        results = [check.result(db, lake.root) for check in checks]
    yield from results


def _selected_tables(context: dg.AssetExecutionContext, spec: ResourceSpec) -> list[str]:
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    return [table for table in _table_names(spec) if _asset_key_of(table) in selected]


class _DayEvents:
    """Logs a partitioned pull's per-day materializations while the sweep goes on.

    Each day written gets one event per selected table with that day's row count. The newest day in the
    partitions is held back to the end, where its event also carries the run's figures (requests,
    rate-limit wait, schema, preview); so do the days the sweep emptied. A day rewritten later in the
    sweep (a late record) gets a second event with its new count: the latest event of a partition is
    the one that counts.

    A run over a partition range (a backfill from the UI, `sync --since`) also materializes, with 0 rows,
    every day of its range that holds no records: the sweep covered them, so they are up to date, and
    Dagster would otherwise count them as failed and end the backfill "Completed, failed". A full-history
    run (`sync` without --since) targets only today's partition and logs just the days it wrote.

    The events go through `context.log_event`; on the project's instance storage
    (`defs/event_log.py`) they are written in batches, not one SQLite transaction each.
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        tables: list[str],
        first: date,
        last: date,
        fill: tuple[date, date] | None = None,
    ) -> None:
        self.context = context
        self.tables = tables
        self.first = first
        self.last = last
        self.fill = fill
        self.events = 0
        self._logged: set[date] = set()
        self._held: tuple[date, dict[str, int]] | None = None

    def _log(self, day: date, stored: dict[str, int]) -> None:
        self._logged.add(day)
        for table in self.tables:
            self.context.log_event(
                dg.AssetMaterialization(
                    asset_key=table,
                    partition=day.isoformat(),
                    metadata={"dagster/row_count": dg.MetadataValue.int(stored.get(table, 0))},
                )
            )
            self.events += 1

    def day_written(self, day: date, stored: dict[str, int]) -> None:
        """Called by the landing after each day is written."""
        if not self.first <= day <= self.last:
            return  # outside the partitions (older than the start date, future-dated): landed, no partition
        held = self._held
        if held is None or day >= held[0]:
            if held is not None and day > held[0]:
                self._log(*held)
            self._held = (day, stored)
        else:
            self._log(day, stored)

    def _fill_days(self) -> list[date]:
        if self.fill is None:
            return []
        start, end = max(self.fill[0], self.first), min(self.fill[1], self.last)
        return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]

    def finish(self, report: LandingReport, fallback_day: date, final: dict[str, dict[str, Any]]) -> None:
        """Log the emptied days, the range's days without records and the held-back newest day, whose
        events carry `final[table]`."""
        removed = [day for day in report.days_removed if self.first <= day <= self.last]
        fill_days = self._fill_days()
        candidates = removed + ([self._held[0]] if self._held else []) + fill_days[-1:]
        newest = max(candidates) if candidates else fallback_day
        for day in removed:
            if day != newest:
                self._log(day, {})
        newest_rows: dict[str, int] = {}
        if self._held is not None:
            if self._held[0] == newest:
                newest_rows = self._held[1]
            else:
                self._log(*self._held)
        for day in fill_days:  # covered by the sweep, no records: materialized with 0 rows
            if day != newest and day not in self._logged:
                self._log(day, {})
        for table in self.tables:
            metadata = dict(final[table])
            metadata["rows_written_this_run"] = metadata.pop("dagster/row_count")
            metadata["dagster/row_count"] = dg.MetadataValue.int(newest_rows.get(table, 0))
            self.context.log_event(
                dg.AssetMaterialization(asset_key=table, partition=newest.isoformat(), metadata=metadata)
            )
            self.events += 1


@dataclass(frozen=True)
class _RunRange:
    """A partitioned run's days: the partitions it targets (`start`..`end`), the partitions that exist
    (`first`..`last`), and the listing's bounds (`lower`/`upper`, None where the range is open)."""

    start: date
    end: date
    first: date
    last: date
    full_history: bool

    @property
    def lower(self) -> date | None:
        return None if self.full_history or self.start <= self.first else self.start

    @property
    def upper(self) -> date | None:
        return None if self.full_history or self.end >= self.last else self.end

    def text(self) -> str:
        return f"{self.lower or 'the oldest record'}..{self.upper or 'the newest record'}"


def _run_range(context: dg.AssetExecutionContext) -> _RunRange:
    window = context.partition_time_window
    start, end = window_days(window.start, window.end)
    full_history = context.run.tags.get(FULL_HISTORY_TAG, "").lower() == "true"
    return _RunRange(start, end, first_partition_day(), last_partition_day(), full_history)


def pull_partitioned(
    context: dg.AssetExecutionContext, orderspace: OrderspaceResource, lake: LakeResource, resource: str
) -> Iterator[Any]:
    """One listing of the run's partition range, bounded by the API's filters, landed day by day.

    Logs one materialization per day and table with that day's row count: for a range run, every day of
    the range (0 rows where the sweep found none); for a full-history run, the days it wrote or emptied
    (see `_DayEvents`). For invoices, a range that reaches today also merges the invoices created since the
    last such pull into their days.
    """
    spec = RESOURCES[resource]
    tables = _selected_tables(context, spec)
    if not tables:  # only checks were selected
        yield from _run_checks(context, lake, resource)
        return
    days = _run_range(context)
    fill = None if days.full_history else (days.start, days.end)
    events = _DayEvents(context, tables, days.first, days.last, fill=fill)
    # What every day-writing landing of this run shares: the partitions, the log, the per-day events.
    days_kwargs: dict[str, Any] = {
        "loaded_at": datetime.now(UTC),
        "partitions_start": days.first,
        "partitions_end": days.last,
        "logger": context.log,
        "on_day_written": events.day_written,
        "database_url": lake.database_url,
    }
    filters = range_filters(spec, days.lower, days.upper)
    landing = PartitionedLanding(
        lake.root, spec, start=days.lower, end=days.upper, server_bounded=bool(filters), **days_kwargs
    )
    landing.report.filters = dict(filters)
    described = ", ".join(f"{name}={value}" for name, value in filters.items()) or "no filter"
    context.log.info("%s: listing %s with %s", resource, days.text(), described)
    # Invoices created since the last pull that reached today, whatever their invoice date (back-dated
    # ones fall before this range): only a range open above has a watermark to keep.
    watermark_key = f"{resource}.created_since"
    keeps_watermark = spec.range_filter == "invoice_date" and days.upper is None
    with orderspace.get_client() as client:
        clock = ServerClock(client)
        _sweep(client, resource, landing, filters)
        report = landing.finish()
        if keeps_watermark and (lower := days.lower) is not None:
            merge = DayMerge(lake.root, spec, report=report, covered=lambda day: day >= lower, **days_kwargs)
            _merge_created_since(context, client, merge, watermark_key, lower)
        requests = _request_metadata(client)
    if keeps_watermark:
        storage.update_state(lake.root, {watermark_key: watermark_from(clock)})
    catalog = refresh_catalog(lake.root, _table_names(spec), logger=context.log)
    summary = _range_summary(report, days, catalog_updated=not catalog.locked)
    final = {table: _metadata(table, report, requests, lake, summary) for table in tables}
    events.finish(report, min(max(days.end, days.first), days.last), final)
    yield from _run_checks(context, lake, resource)


def _merge_created_since(
    context: dg.AssetExecutionContext,
    client: OrderspaceClient,
    merge: DayMerge,
    watermark_key: str,
    lower: date,
) -> None:
    """Merge the records created since the watermark (else since `lower`) into their days, by id."""
    report = merge.report
    since = storage.read_moment(merge.data_dir, watermark_key)
    since_text = _utc_text(since or datetime(lower.year, lower.month, lower.day, tzinfo=UTC))
    report.filters["created_since"] = since_text
    resource = merge.spec.resource
    context.log.info("%s: merging those created since %s into their days", resource, since_text)
    _land_pages(client.iter_pages(resource, created_since=since_text), merge.add_page)
    report.days_written.sort()


def _range_summary(report: LandingReport, days: _RunRange, *, catalog_updated: bool) -> dict[str, Any]:
    """The run-wide figures of a partitioned pull (on the newest day's materialization)."""
    summary: dict[str, Any] = {
        "range": dg.MetadataValue.text(days.text()),
        "days_written": dg.MetadataValue.int(len(report.days_written)),
        "days_removed": dg.MetadataValue.int(len(report.days_removed)),
        "server_filters": dg.MetadataValue.json(report.filters),
        "records_outside_partitions": dg.MetadataValue.int(report.outside_partitions),
        "late_rewrites": dg.MetadataValue.int(report.late_rewrites),
        "catalog_views_updated": dg.MetadataValue.bool(catalog_updated),
    }
    if report.merged_records or report.already_covered:
        summary["merged_by_id"] = dg.MetadataValue.int(report.merged_records)
    return summary


class PageFetcher:
    """Fetch the pages of `iter_pages` on one worker thread, one page ahead, and only when asked.

    `want()` asks for the next page; `get()` returns it (None at the end of the listing) or raises what
    fetching it raised. The caller asks for page N+1 as soon as it knows it needs it, then lands page N
    while the request is on its way: the network and the API's own time overlap with local work, and
    no request is ever sent that the sweep would not have sent anyway.
    """

    def __init__(self, pages: Iterator[Page]) -> None:
        self._pages = pages
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orderspace-page-fetcher")
        self._pending: Future[Page | None] | None = None

    def _next(self) -> Page | None:
        return next(self._pages, None)

    def want(self) -> None:
        if self._pending is None:
            self._pending = self._executor.submit(self._next)

    def get(self) -> Page | None:
        if self._pending is None:
            raise RuntimeError("PageFetcher.get() without want()")
        pending, self._pending = self._pending, None
        return pending.result()  # re-raises what fetching the page raised

    def close(self) -> None:
        """Stop (after any request in flight) and close the page iterator."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._pages, "close", None)  # a generator: let it clean up (connection, cursor)
        if close is not None:
            close()

    def __enter__(self) -> "PageFetcher":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ServerClock:
    """The API server's time at the start of a pull: the `Date` header of the client's first response.

    Watermarks come from the server's clock, not ours (clocks differ). Without a `Date` header the local
    clock at the start of the pull stands in for it.
    """

    def __init__(self, client: OrderspaceClient) -> None:
        self.local_start = datetime.now(UTC)
        self.first: datetime | None = None
        # The client exposes no response hook of its own: httpx's event hooks on its (private) session.
        session: httpx.Client = client._http
        hooks = dict(session.event_hooks)
        hooks["response"] = [*hooks.get("response", []), self._seen]
        session.event_hooks = hooks

    def _seen(self, response: httpx.Response) -> None:
        if self.first is not None:
            return
        try:
            moment = parsedate_to_datetime(response.headers.get("date", ""))
        except (TypeError, ValueError, IndexError):
            return
        self.first = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def start(self) -> datetime:
        return self.first or self.local_start


def watermark_from(clock: ServerClock) -> str:
    """The watermark a successful pull leaves for the next one (ISO 8601, UTC)."""
    return (clock.start() - WATERMARK_SAFETY_MARGIN).replace(microsecond=0).isoformat()


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _land_pages(pages: Iterator[Page], land: Callable[[Sequence[Mapping[str, Any]]], bool]) -> None:
    """Land every page of a listing, fetching the next one while the current one is landed."""
    with PageFetcher(pages) as fetcher:
        fetcher.want()
        while (page := fetcher.get()) is not None:
            fetcher.want()
            land(page.records)


def _sweep(
    client: OrderspaceClient, resource: str, landing: PartitionedLanding, filters: dict[str, Any]
) -> None:
    with PageFetcher(client.iter_pages(resource, **filters)) as pages:
        pages.want()
        while (page := pages.get()) is not None:
            plan = landing.plan(page.records)
            if plan.wants_more:
                pages.want()  # fetched while this page is landed
            landing.land(plan)
            if not plan.wants_more:
                break


def pull_whole(
    context: dg.AssetExecutionContext, orderspace: OrderspaceResource, lake: LakeResource, resource: str
) -> Iterator[Any]:
    """Refresh a whole resource: streamed into fresh files that replace the old ones at the end.

    Resources with `updated_since` (products, inventory levels) fetch only the records changed since the
    previous successful pull once the lake holds a full load, and merge them in by key; the run tag
    `orderspace/full_refresh=true` reloads them whole.
    """
    spec = RESOURCES[resource]
    tables = _selected_tables(context, spec)
    if not tables:  # only checks were selected
        yield from _run_checks(context, lake, resource)
        return
    now = datetime.now(UTC)
    snapshot_at = now if spec.snapshot_table is not None else None
    watermark_key = f"{resource}.updated_since"
    params = _refresh_params(context, lake, spec, watermark_key)
    with orderspace.get_client() as client:
        clock = ServerClock(client)
        with WholeLanding(
            lake.root,
            spec,
            loaded_at=now,
            snapshot_at=snapshot_at,
            merge=bool(params),
            logger=context.log,
            database_url=lake.database_url,
        ) as landing:
            _land_pages(client.iter_pages(resource, **params), landing.add_page)
            report = landing.finish()
        requests = _request_metadata(client)
    if spec.updated_since:
        storage.update_state(lake.root, {watermark_key: watermark_from(clock)})
    catalog = refresh_catalog(lake.root, list(spec.tables), logger=context.log)
    extra = _whole_summary(spec, report, params, snapshot_at, catalog_updated=not catalog.locked)
    for table in tables:
        yield dg.MaterializeResult(
            asset_key=_asset_key_of(table), metadata=_metadata(table, report, requests, lake, extra)
        )
    yield from _run_checks(context, lake, resource)


def _refresh_params(
    context: dg.AssetExecutionContext, lake: LakeResource, spec: ResourceSpec, watermark_key: str
) -> dict[str, Any]:
    """`{"updated_since": ...}` when only the changed records are needed, else `{}` (a full load)."""
    if not spec.updated_since:
        return {}
    full_refresh = context.run.tags.get(FULL_REFRESH_TAG, "").lower() == "true"
    since = None
    if not full_refresh and storage.whole_file(lake.root, spec.table).is_file():
        since = storage.read_moment(lake.root, watermark_key)
    if since is not None:
        params = {"updated_since": _utc_text(since)}
        context.log.info(
            "%s: records updated since %s, merged by %s", spec.resource, params["updated_since"], spec.key
        )
        return params
    context.log.info("%s: full load%s", spec.resource, " (full_refresh tag)" if full_refresh else "")
    return {}


def _whole_summary(
    spec: ResourceSpec,
    report: LandingReport,
    params: dict[str, Any],
    snapshot_at: datetime | None,
    *,
    catalog_updated: bool,
) -> dict[str, Any]:
    """The run-wide figures of a whole refresh (on every table's materialization)."""
    extra: dict[str, Any] = {"catalog_views_updated": dg.MetadataValue.bool(catalog_updated)}
    if spec.updated_since:
        extra["refresh"] = dg.MetadataValue.text(
            f"updated_since {params['updated_since']}" if params else "full load"
        )
        extra["changed_records"] = dg.MetadataValue.int(report.changed_records)
    if snapshot_at is not None:
        extra["snapshot_at"] = dg.MetadataValue.timestamp(snapshot_at)
        extra["snapshot_rows"] = dg.MetadataValue.int(report.rows.get(INVENTORY_SNAPSHOTS, 0))
    return extra


# --- asset definitions ----------------------------------------------------------------------------


def _specs(spec: ResourceSpec, *, skippable: bool) -> list[dg.AssetSpec]:
    parent_key = _asset_key_of(spec.table)
    specs = [
        dg.AssetSpec(
            parent_key,
            group_name=GROUP,
            description=_DESCRIPTIONS.get(parent_key) or None,
            kinds={"parquet"},
            skippable=skippable,
        )
    ]
    for child in spec.children:
        specs.append(
            dg.AssetSpec(
                child.table,
                group_name=GROUP,
                description=_DESCRIPTIONS.get(child.table) or None,
                deps=[parent_key],
                kinds={"parquet"},
                skippable=skippable,
            )
        )
    return specs


def _check_specs(resource: str) -> list[dg.AssetCheckSpec]:
    return [check.spec for check in CHECKS_BY_RESOURCE[resource]]


def _partitioned_asset(resource: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"pull_{resource}",
        specs=_specs(RESOURCES[resource], skippable=True),
        check_specs=_check_specs(resource),
        can_subset=True,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=ORDERSPACE_API_POOL,
        description=f"Pull {resource} for the run's days in one paginated sweep.",
    )
    def _pull(
        context: dg.AssetExecutionContext, orderspace: OrderspaceResource, lake: LakeResource
    ) -> Iterator[Any]:
        # The per-day materializations are written in batches (on the project's instance storage).
        with batched_materializations(context.instance):
            yield from pull_partitioned(context, orderspace, lake, resource)

    return _pull


def _whole_asset(resource: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"pull_{resource}",
        specs=_specs(RESOURCES[resource], skippable=False),
        check_specs=_check_specs(resource),
        can_subset=True,
        pool=ORDERSPACE_API_POOL,
        description=f"Pull every {resource} record and replace the stored table.",
    )
    def _pull(
        context: dg.AssetExecutionContext, orderspace: OrderspaceResource, lake: LakeResource
    ) -> Iterator[Any]:
        yield from pull_whole(context, orderspace, lake, resource)

    return _pull


PARTITIONED_ASSETS: list[dg.AssetsDefinition] = [_partitioned_asset(name) for name in PARTITIONED_RESOURCES]
WHOLE_ASSETS: list[dg.AssetsDefinition] = [_whole_asset(name) for name in WHOLE_RESOURCES]
INVENTORY_ASSET: dg.AssetsDefinition = _whole_asset("inventory_levels")

PULL_ASSETS: list[dg.AssetsDefinition] = [*PARTITIONED_ASSETS, *WHOLE_ASSETS, INVENTORY_ASSET]

# Asset keys (= table names) the pull produces, and the resource whose asset produces each.
PULL_ASSET_KEYS: dict[str, str] = {
    _asset_key_of(table): resource for resource, spec in RESOURCES.items() for table in _table_names(spec)
}
PARTITIONED_KEYS: frozenset[str] = frozenset(
    key for key, resource in PULL_ASSET_KEYS.items() if resource in PARTITIONED_RESOURCES
)
