"""Reconciliation: bring every lake table back in line with the account without any webhook.

For when webhooks miss: the receiver was down, Orderspace disabled the subscription, an event was lost. One
run asks the API, with its cheapest filters, for every record that may have changed, compares each with the
lake (`lake.reconcile.changed`) and writes only what differs, through the change feed's applier (same locks,
atomic partition writes, tombstones for what vanished). No Dagster here: `defs/reconcile.py` runs it as a job.

Every run (W = the previous reconcile's start on the server's clock minus 10 minutes; the first run uses the
newest stored day, and the pull's own `updated_since` watermarks; records are paged 200 at a time, every
listing costs at least one request):

- orders: the open ones, one listing per open status (`status=`; open = every status but `fulfilled` and
  `cancelled`, the two the reference's lifecycle never leaves: our reading, the reference does not say),
  plus those created since W;
- invoices: the unpaid ones (`paid=false`) and those created since W;
- dispatches: those created since W;
- re-reads: orders the lake holds as open that no open listing returned (closed or deleted since), invoices
  it holds as unpaid that `paid=false` lacks (paid or deleted), and orders touched by a changed invoice (lines
  invoiced or paid) or a new dispatch (lines dispatched, status). Each is fetched by id (404 = deleted) or,
  where cheaper, with every record of the days it is stored in (`cheapest_cover`: one listing of a range of
  days against one GET per record);
- customers: the whole list (the API has no `updated_since` for customers): edits and deletions;
- products and inventory levels: `updated_since=W`;
- the rolling sweep: one slice of `sweep_days` days of the history (orders and dispatches by creation day,
  invoices by invoice date, with the pull's `range_filters`), listed whole. A record the lake holds in the
  slice that the listing lacks is removed (orders, dispatches: their creation day never changes) or fetched
  by id first (invoices: the invoice date can change). The first slice is open below, the last open above,
  so each cycle covers every record. The first slice of a cycle also lists products, inventory levels and
  the reference tables whole (deleted products and their levels, reference changes).

Requests per run = the listings (each max(1, ceil(records / 200)); the invoices list sends no `has_more`, so
its listings cost ceil(records / 200) + 1) + the re-reads (at most one per record re-read). The floor, when
nothing changed, is the listings alone: 6 open-status listings, `paid=false`, 3 `created_since`, customers,
`updated_since` for products and inventory levels, and the slice's 3 listings. With an interval T between
runs, a history of H days and slices of S days, a cycle is C = ceil((H + 1) / S) runs, and with every
webhook lost the lake is stale by at most:
- T + one run, for new records, status and payment changes, dispatches, customer edits and deletions, product
  and inventory updates, and deletions of open orders and unpaid invoices;
- C * T + one run, for everything else (deleted closed orders, paid invoices, products; any change to a closed
  record the filters above cannot see).

How it orders against webhook events and pulls: its writes are change events applied by the same applier,
so the applier's rules hold (a tombstoned id never comes back; a record whose only-growing fields show it
older than the stored state is skipped). Each event carries the moment its record was READ, taken on the
lake's clock just before the request that returned it (a page of a listing, a GET; for an id a listing
lacked, this run's first request for the resource, earlier still), not the moment of writing. The applier
(rule 6 in `lake.changes`) leaves alone a stored record with a row loaded after that read (a webhook event
received, or a pull started, after it) and never removes or tombstones such a record, so an event applied
between reconcile's read and its write survives it. Such records are counted as skipped; the next run reads
them again. Reconcile-written rows carry the read time as `_loaded_at`. Stored ids are also read before the
listings that decide what vanished, so a record created after a listing is never in its vanished set.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.client.errors import NotFoundError
from orderspace_pipelines.endpoints import ENDPOINTS, ORDER_STATUSES, PULLED, Endpoint
from orderspace_pipelines.lake import reconcile as lake
from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.sweep import range_filters

CLOSED_ORDER_STATUSES = ("fulfilled", "cancelled")
OPEN_ORDER_STATUSES = tuple(sorted(ORDER_STATUSES - set(CLOSED_ORDER_STATUSES)))
DEFAULT_SWEEP_DAYS = 30
PAGE = 200  # records per list request (the client's page size, the API's maximum)
RECONCILE_LOCK = "_reconcile"  # one reconcile at a time (a lake lock of its own)
STATE_SINCE = "reconcile.since"
STATE_SWEEP_NEXT = "reconcile.sweep_next"
REFERENCE_RESOURCES = tuple(
    endpoint.resource
    for endpoint in PULLED
    if not endpoint.partitioned and not endpoint.updated_since and endpoint.singular is None
)


@dataclass
class ReconcileReport:
    """What one run did: requests per listing, what it wrote, the sweep's slice."""

    requests: dict[str, int] = field(default_factory=dict)  # per listing / fetch kind
    written: lake.WriteReport = field(default_factory=lake.WriteReport)
    fetched_by_id: dict[str, int] = field(default_factory=dict)
    slice: tuple[date | None, date | None] = (None, None)
    cycle_start: bool = False
    cycle_runs: int = 1
    sweep_days: int = DEFAULT_SWEEP_DAYS
    since: str | None = None

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def describe(self) -> str:
        low, high = self.slice
        lines = [
            f"reconcile: {self.total_requests} API requests",
            f"  sweep slice {low or 'the oldest record'}..{high or 'the newest record'} "
            f"({self.sweep_days}-day slices, a cycle of {self.cycle_runs} runs"
            f"{'; cycle start: whole tables listed' if self.cycle_start else ''})",
            f"  changes since {self.since or 'the newest stored day'}",
        ]
        for table in sorted({*self.written.changed, *self.written.removed}):
            lines.append(
                f"  {table:<20} {self.written.changed.get(table, 0):>6} changed "
                f"{self.written.removed.get(table, 0):>6} removed"
            )
        lines.append("  requests: " + ", ".join(f"{k} {v}" for k, v in self.requests.items() if v))
        return "\n".join(lines)


class _Fetcher:
    """Lists and single fetches through one client, counting requests per purpose and noting when each
    record was read: `read_at[(resource, id)]` (the later read wins, as in `_merge`), taken just before the
    request that returned it, and `first_read[resource]`, just before this run's first request for it."""

    def __init__(
        self, client: OrderspaceClient, report: ReconcileReport, now: Callable[[], datetime]
    ) -> None:
        self.client = client
        self.report = report
        self.now = now
        self.read_at: dict[tuple[str, str], datetime] = {}
        self.first_read: dict[str, datetime] = {}

    def _stamp(self, resource: str) -> datetime:
        at = self.now()
        self.first_read.setdefault(resource, at)
        return at

    def _count(self, what: str, before: int) -> None:
        spent = self.client.stats.requests - before
        self.report.requests[what] = self.report.requests.get(what, 0) + spent

    def listing(self, what: str, resource: str, **filters: Any) -> list[dict[str, Any]]:
        before = self.client.stats.requests
        records: list[dict[str, Any]] = []
        pages = self.client.iter_pages(resource, **filters)
        while True:
            at = self._stamp(resource)  # the next page's request is sent in `next`
            page = next(pages, None)
            if page is None:
                break
            for record in page.records:
                if isinstance(record, dict) and record.get("id") is not None:
                    self.read_at[(resource, str(record["id"]))] = at
            records += page.records
        self._count(what, before)
        return records

    def by_id(self, resource: str, ids: Iterable[str]) -> tuple[list[dict[str, Any]], set[str]]:
        """Fetch each record; (found records, ids the API answered 404 for)."""
        found: list[dict[str, Any]] = []
        gone: set[str] = set()
        before = self.client.stats.requests
        singular = ENDPOINTS[resource].singular
        for rid in sorted(set(ids)):
            self.read_at[(resource, rid)] = self._stamp(resource)
            try:
                body = self.client.request("GET", f"{resource}/{rid}")
            except NotFoundError:
                gone.add(rid)
                continue
            found.append(body[singular] if isinstance(body, dict) and singular in body else body)
        self._count(f"{resource} by id", before)
        self.report.fetched_by_id[resource] = (
            self.report.fetched_by_id.get(resource, 0) + len(found) + len(gone)
        )
        return found, gone


def _ids(records: Iterable[Mapping[str, Any]], key: str = "id") -> set[str]:
    return {str(record[key]) for record in records if record.get(key) is not None}


def _merge(*lists: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records by id; a later list's copy wins (pass them in the order they were fetched)."""
    out: dict[str, dict[str, Any]] = {}
    for records in lists:
        for record in records:
            if record.get("id") is not None:
                out[str(record["id"])] = record
    return out


def cheapest_cover(
    wanted: Mapping[date, int], counts: Mapping[date, int], *, page: int = PAGE, extra: int = 0
) -> tuple[list[tuple[date, date]], list[date]]:
    """How to re-read scattered records for the fewest requests: day ranges to list, days to fetch by id.

    `wanted`: records to re-read per stored day; `counts`: records stored per day. Listing the days
    `[a, b]` costs max(1, ceil(records in them / page)) + `extra` (1 for a list without `has_more`);
    fetching a day's records one by one costs one request each. Dynamic programming over the wanted days
    in order: each is either fetched alone or ends a range that starts at an earlier wanted day.
    """
    days = sorted(day for day, n in wanted.items() if n > 0)
    if not days:
        return [], []
    all_days = sorted(counts)
    prefix = [0]
    for day in all_days:
        prefix.append(prefix[-1] + counts[day])
    upto = [prefix[bisect_right(all_days, day)] for day in days]  # records on or before each wanted day
    before = [prefix[bisect_left(all_days, day)] for day in days]  # records before it
    best = [0] * (len(days) + 1)
    choice: list[tuple[int, bool]] = [(0, False)] * (len(days) + 1)
    for j in range(1, len(days) + 1):
        best[j] = best[j - 1] + wanted[days[j - 1]]
        choice[j] = (j - 1, False)
        for i in range(j):
            records = upto[j - 1] - before[i]
            cost = best[i] + max(1, -(-records // page)) + extra
            if cost < best[j]:
                best[j], choice[j] = cost, (i, True)
    ranges: list[tuple[date, date]] = []
    singles: list[date] = []
    j = len(days)
    while j > 0:
        i, listed = choice[j]
        if listed:
            ranges.append((days[i], days[j - 1]))
        else:
            singles.append(days[j - 1])
        j = i
    return ranges[::-1], singles[::-1]


@dataclass(frozen=True)
class SweepSlice:
    """The days one run sweeps (None: open on that side) and where the next run starts."""

    start: date | None
    end: date | None
    next_start: date
    cycle_start: bool
    cycle_runs: int


def plan_slice(
    data_dir: Path, first_day: date, today: date, sweep_days: int, *, whole: bool = False
) -> SweepSlice:
    """This run's slice of the history `[lo, today]` (lo: the oldest stored day, else `first_day`); `whole`:
    the whole history at once (a full cycle in one run)."""
    if sweep_days < 1:
        raise ValueError(f"sweep_days must be at least 1, got {sweep_days}")
    oldest = [
        days[0]
        for table in ("orders", "invoices", "dispatches")
        if (days := storage.stored_days(data_dir, table))
    ]
    # The history starts at the oldest stored record (the first slice is open below, so anything older that
    # the lake lacks is found too); an empty lake starts at the first partition.
    lo = min(oldest) if oldest else first_day
    cycle_runs = -(-((today - lo).days + 1) // sweep_days)
    if whole:
        return SweepSlice(None, None, next_start=lo, cycle_start=True, cycle_runs=cycle_runs)
    saved = storage.read_state(data_dir).get(STATE_SWEEP_NEXT)
    start = date.fromisoformat(saved) if isinstance(saved, str) else lo
    if start <= lo or start > today:
        start = lo
    end = start + timedelta(days=sweep_days - 1)
    last = end >= today
    return SweepSlice(
        start=None if start <= lo else start,
        end=None if last else end,
        next_start=lo if last else end + timedelta(days=1),
        cycle_start=start <= lo,
        cycle_runs=cycle_runs,
    )


class Reconciler:
    """One reconcile run over a lake through one client (see the module docstring)."""

    def __init__(
        self,
        client: OrderspaceClient,
        data_dir: Path,
        *,
        since: datetime | None,
        sweep: SweepSlice,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        database_url: SecretStr | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url  # where the tombstones are (Postgres when set)
        self.since = since
        self.sweep = sweep
        self.now = now
        self.report = ReconcileReport(
            slice=(sweep.start, sweep.end), cycle_start=sweep.cycle_start, cycle_runs=sweep.cycle_runs
        )
        self.report.since = None if since is None else _utc(since)
        self.fetch = _Fetcher(client, self.report, now)

    def _since_filter(self, endpoint: Endpoint) -> str:
        """`created_since` for new records: W; on a first run the pull's own watermark for the list if it
        keeps one (invoices), else the first instant of the newest stored day, no later than today (an
        invoice can be dated weeks ahead: its date says nothing about when it was created)."""
        if self.since is not None:
            return _utc(self.since)
        pulled = storage.read_moment(self.data_dir, f"{endpoint.resource}.created_since")
        if pulled is not None:
            return _utc(pulled)
        days = storage.stored_days(self.data_dir, endpoint.table)
        newest = min(days[-1], self.now().date()) if days else date(1970, 1, 1)
        return _utc(datetime(newest.year, newest.month, newest.day, tzinfo=UTC) - timedelta(seconds=1))

    def _write(self, endpoint: Endpoint, fresh: Mapping[str, Mapping[str, Any]], gone: set[str]) -> list[str]:
        """Write what differs, each record with the time it was read (an id a listing lacked: this run's
        first read of the resource); returns the ids of the records that changed."""
        upserts = lake.changed(self.data_dir, endpoint, fresh.values())
        resource = endpoint.resource
        read_at = {
            rid: at for rid in (*fresh, *gone) if (at := self.fetch.read_at.get((resource, rid))) is not None
        }
        first = self.fetch.first_read.get(resource) or self.now()
        written = lake.write(
            self.data_dir, endpoint, upserts, gone, at=first, read_at=read_at, database_url=self.database_url
        )
        self.report.written.add(written)
        return [str(record["id"]) for record in upserts]

    def _slice_listing(self, endpoint: Endpoint) -> tuple[list[dict[str, Any]], set[str]]:
        """The sweep's listing of `endpoint` and the ids the lake held in the slice's days just before it.

        Stored ids are read first: a record stored before the listing and missing from it is gone from the
        account, whereas one landed (by an event) while the listing ran may simply be newer than it.
        """
        stored = lake.stored_keys(self.data_dir, endpoint, days=(self.sweep.start, self.sweep.end))
        filters = range_filters(endpoint, self.sweep.start, self.sweep.end)
        records = self.fetch.listing(f"{endpoint.resource} sweep", endpoint.resource, **filters)
        return records, stored

    def _recheck(self, endpoint: Endpoint, suspects: set[str]) -> tuple[list[dict[str, Any]], set[str]]:
        """Re-read records that may have changed or vanished, for the fewest requests: the days they are
        stored in are listed where that is cheaper than one `GET` each (`cheapest_cover`). Returns the
        records read (whole listed days included) and the ids the account no longer has."""
        if not suspects:
            return [], set()
        where = lake.stored_days_of(self.data_dir, endpoint, suspects)
        wanted: dict[date, int] = {}
        for day in where.values():
            wanted[day] = wanted.get(day, 0) + 1
        extra = 1 if endpoint.resource == "invoices" else 0  # the invoices list has no `has_more`
        ranges, single_days = cheapest_cover(wanted, lake.day_counts(self.data_dir, endpoint), extra=extra)
        records: list[dict[str, Any]] = []
        stored_in_ranges: set[str] = set()
        for start, end in ranges:
            stored_in_ranges |= lake.stored_keys(self.data_dir, endpoint, days=(start, end))  # before listing
            filters = range_filters(endpoint, start, end)
            records += self.fetch.listing(f"{endpoint.resource} re-read by day", endpoint.resource, **filters)
        listed = _ids(records)
        singles = {rid for rid in suspects if rid not in where or where[rid] in set(single_days)}
        unlisted = {rid for rid in suspects - singles if rid not in listed}
        gone: set[str] = set()
        if endpoint.range_filter == "created":
            # A creation day never changes: whatever the lake held in the listed days and the listing lacks
            # is deleted (suspects or not, as the sweep would find).
            gone, unlisted = (unlisted | stored_in_ranges) - listed, set()
        found, gone_by_id = self.fetch.by_id(endpoint.resource, singles | unlisted)
        return records + found, gone | gone_by_id

    def invoices(self) -> set[str]:
        """Unpaid, new and swept invoices; returns the ids of orders whose invoices changed."""
        endpoint = ENDPOINTS["invoices"]
        stored_unpaid = lake.stored_keys(self.data_dir, endpoint, where="paid IS NOT true")
        unpaid = self.fetch.listing("invoices paid=false", "invoices", paid=False)
        new = self.fetch.listing(
            "invoices created_since", "invoices", created_since=self._since_filter(endpoint)
        )
        swept, in_slice = self._slice_listing(endpoint)
        fresh = _merge(unpaid, new, swept)  # in the order they were read: the later copy wins
        suspects = (stored_unpaid - _ids(unpaid)) | (in_slice - _ids(swept))
        found, gone = self._recheck(endpoint, suspects - set(fresh))
        fresh.update(_merge(found))
        changed = self._write(endpoint, fresh, gone)
        return {str(ref["id"]) for rid in changed for ref in fresh[rid].get("orders") or [] if ref.get("id")}

    def dispatches(self) -> set[str]:
        """New and swept dispatches; returns the ids of their orders (lines dispatched, status changed)."""
        endpoint = ENDPOINTS["dispatches"]
        new = self.fetch.listing(
            "dispatches created_since", "dispatches", created_since=self._since_filter(endpoint)
        )
        swept, in_slice = self._slice_listing(endpoint)
        fresh = _merge(new, swept)  # in the order they were read: the later copy wins
        changed = self._write(endpoint, fresh, in_slice - _ids(swept))
        return {str(fresh[rid]["order_id"]) for rid in changed if fresh[rid].get("order_id")}

    def orders(self, touched: set[str]) -> None:
        """Open, new and swept orders, those the lake holds as open, and those touched by invoices and
        dispatches."""
        endpoint = ENDPOINTS["orders"]
        quoted = ", ".join(f"'{status}'" for status in OPEN_ORDER_STATUSES)
        stored_open = lake.stored_keys(self.data_dir, endpoint, where=f"status IN ({quoted})")
        open_orders: list[dict[str, Any]] = []
        for status in OPEN_ORDER_STATUSES:
            open_orders += self.fetch.listing("orders by open status", "orders", status=status)
        new = self.fetch.listing("orders created_since", "orders", created_since=self._since_filter(endpoint))
        swept, in_slice = self._slice_listing(endpoint)
        fresh = _merge(open_orders, new, swept)  # in the order they were read: the later copy wins
        gone = in_slice - _ids(swept)
        found, gone_too = self._recheck(endpoint, (stored_open | touched) - set(fresh) - gone)
        fresh.update(_merge(found))
        self._write(endpoint, fresh, gone | gone_too)

    def customers(self) -> None:
        endpoint = ENDPOINTS["customers"]
        stored = lake.stored_keys(self.data_dir, endpoint)  # before the listing (see `_slice_listing`)
        listed = self.fetch.listing("customers (whole)", "customers")
        self._write(endpoint, _merge(listed), stored - _ids(listed))

    def products(self) -> None:
        """Changed products (`updated_since`); the whole list at a cycle's start (deleted products)."""
        endpoint = ENDPOINTS["products"]
        since = self._updated_since(endpoint)
        gone: set[str] = set()
        if self.sweep.cycle_start or since is None:
            stored = lake.stored_keys(self.data_dir, endpoint)
            listed = self.fetch.listing("products (whole)", "products")
            gone = stored - _ids(listed)
        else:
            listed = self.fetch.listing("products updated_since", "products", updated_since=since)
        self._write(endpoint, _merge(listed), gone)

    def inventory_levels(self) -> None:
        """Changed levels (`updated_since`); all of them at a cycle's start (levels of deleted products)."""
        endpoint = ENDPOINTS["inventory_levels"]
        since = self._updated_since(endpoint)
        merge = not self.sweep.cycle_start and since is not None
        if merge:
            what, filters = "inventory_levels updated_since", {"updated_since": since}
        else:
            what, filters = "inventory_levels (whole)", {}
        read_at = self.now()  # just before the listing's first request (see `lake.reconcile.land_whole`)
        listed = self.fetch.listing(what, "inventory_levels", **filters)
        self.report.written.add(
            lake.land_whole(
                self.data_dir, endpoint, listed, at=read_at, merge=merge, database_url=self.database_url
            )
        )

    def reference_tables(self) -> None:
        for resource in REFERENCE_RESOURCES:
            read_at = self.now()  # just before the listing's first request
            listed = self.fetch.listing(f"{resource} (whole)", resource)
            written = lake.land_whole(
                self.data_dir,
                ENDPOINTS[resource],
                listed,
                at=read_at,
                merge=False,
                database_url=self.database_url,
            )
            self.report.written.add(written)

    def _updated_since(self, endpoint: Endpoint) -> str | None:
        """W, else (a first reconcile) the pull's own `updated_since` watermark, else None (list whole)."""
        if self.since is not None:
            return _utc(self.since)
        pulled = storage.read_moment(self.data_dir, f"{endpoint.resource}.updated_since")
        return None if pulled is None else _utc(pulled)

    def run(self) -> ReconcileReport:
        """Reconcile every table; the lake's `_reconcile` lock keeps two runs apart."""
        with storage.table_locks(self.data_dir, [RECONCILE_LOCK]):
            touched = self.invoices() | self.dispatches()
            self.orders(touched)
            self.customers()
            self.products()
            self.inventory_levels()
            if self.sweep.cycle_start:
                self.reference_tables()
        return self.report


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def saved_since(data_dir: Path) -> datetime | None:
    """W: the previous successful run's start on the server's clock, minus the safety margin."""
    return storage.read_moment(data_dir, STATE_SINCE)


def save_progress(data_dir: Path, *, since: datetime, sweep: SweepSlice) -> None:
    """After a successful run: the next run's W and the next slice."""
    storage.update_state(
        data_dir,
        {STATE_SINCE: since.astimezone(UTC).isoformat(), STATE_SWEEP_NEXT: sweep.next_start.isoformat()},
    )
