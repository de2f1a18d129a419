"""`orderspace-pipelines reconcile` over real HTTP: with every webhook dropped (no subscription is live, so
the sandbox's change events reach nobody), reconcile alone makes the lake equal the account, at the request
cost it prints, which is its floor when nothing changed; what it removes stays removed."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from orderspace_devtools.lake_diff import diff_lake, truth_from_sandbox
from orderspace_pipelines import cli
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.endpoints import ENDPOINTS
from orderspace_pipelines.lake import storage
from orderspace_pipelines.lake.changes import apply_events
from orderspace_pipelines.lake.reconcile import ReconcileEvent, stored_keys
from orderspace_pipelines.lake.sweep import PartitionedLanding, range_filters
from orderspace_pipelines.lake.tombstones import open_tombstones
from orderspace_pipelines.reconcile import OPEN_ORDER_STATUSES, STATE_SINCE
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxServer
from tests.pull.conftest import resources_for
from tests.reconcile.conftest import SandboxHttp

PAGE = 200


def reconcile_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, int]:
    """Run the real CLI entry; (exit code, its output, the request cost it printed)."""
    capsys.readouterr()
    code = cli.main(["reconcile", *args])
    out = capsys.readouterr().out
    printed = re.findall(r"^API requests: (\d+)$", out, flags=re.MULTILINE)
    assert printed, out
    return code, out, int(printed[-1])


def _pick(records: list[dict[str, Any]], test: Any) -> dict[str, Any]:
    return next(record for record in records if test(record))


def make_changes(api: SandboxHttp) -> Counter[str]:
    """Random activity (updates, status changes, payments, dispatches, new records, deletions) plus one
    deletion of each kind through the API's DELETE endpoints, including a closed order and a paid invoice
    (which only the rolling sweep can notice)."""
    kinds = Counter(change["kind"] for change in api.activity(80))
    fulfilled = _pick(api.records("orders"), lambda o: o["status"] == "fulfilled")
    paid = _pick(api.records("invoices"), lambda i: i["paid"])
    api.delete("orders", fulfilled["id"])
    api.delete("invoices", paid["id"])
    api.delete("customers", api.records("customers")[-1]["id"])
    api.delete("products", api.records("products")[-1]["id"])
    return kinds


def test_reconcile_alone_makes_the_lake_equal_the_account(
    lake: Path, api: SandboxHttp, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = make_changes(api)
    assert {"order.status", "payment.create", "dispatch.create", "invoice.create"} <= set(kinds)
    before = diff_lake(lake, truth_from_sandbox(api.server.base_url))
    assert {"orders", "order_lines", "invoices", "customers", "products", "inventory_levels"} <= set(
        before.unequal()
    ), before.summary()
    assert before.tables["orders"].extra and before.tables["invoices"].extra  # deletions to find
    api.reset_stats()
    code, out, printed = reconcile_cli(capsys, "--full-cycle")
    assert code == 0, out
    assert printed == api.requests()  # the cost it prints is what the account served
    after = diff_lake(lake, truth_from_sandbox(api.server.base_url))
    assert after.equal, after.summary()


def _listing(count: int) -> int:
    """Requests for a paginated list with `has_more`: at least one, one per 200 records."""
    return max(1, -(-count // PAGE))


def _invoice_listing(count: int) -> int:
    """Invoices send no `has_more`: a short page is not the end, an empty one is (one more request)."""
    return -(-count // PAGE) + 1


def full_cycle_floor(server: SandboxServer, since: datetime) -> int:
    """What a full-cycle reconcile must cost when nothing changed, from the account's own counts."""
    store = server.store
    orders, invoices = store.all("orders"), store.all("invoices")
    w = int(since.timestamp())

    def created_since(resource: str) -> int:
        return sum(1 for at in store.created_times(resource).values() if at >= w)

    statuses = Counter(order["status"] for order in orders)
    return (
        sum(_listing(statuses[status]) for status in OPEN_ORDER_STATUSES)  # open orders, by status
        + _invoice_listing(sum(1 for invoice in invoices if not invoice["paid"]))  # paid=false
        + _invoice_listing(created_since("invoices"))
        + _listing(created_since("orders"))
        + _listing(created_since("dispatches"))
        + _listing(store.count("customers"))
        + _listing(store.count("products"))  # whole at a cycle's start
        + _listing(store.count("inventory_levels"))
        + _listing(store.count("categories"))
        + 5  # customer groups, price lists, payment terms, tax rates, preorder windows: unpaginated
        + _listing(len(orders))  # the sweep: every day (a full cycle)
        + _invoice_listing(len(invoices))
        + _listing(store.count("dispatches"))
    )


def test_a_second_reconcile_with_no_changes_costs_only_its_floor(
    lake: Path, api: SandboxHttp, capsys: pytest.CaptureFixture[str]
) -> None:
    make_changes(api)
    code, out, _ = reconcile_cli(capsys, "--full-cycle")
    assert code == 0, out
    since = datetime.fromisoformat(storage.read_state(lake)[STATE_SINCE])
    files = {p: p.stat().st_mtime_ns for p in storage.parquet_root(lake).rglob("*.parquet")}
    api.reset_stats()
    code, out, printed = reconcile_cli(capsys, "--full-cycle")
    assert code == 0, out
    assert printed == api.requests() == full_cycle_floor(api.server, since)
    assert "by id" not in out  # nothing fetched one by one
    assert not re.search(r"\d+ changed", out)  # nothing written
    assert {p: p.stat().st_mtime_ns for p in storage.parquet_root(lake).rglob("*.parquet")} == files


def test_a_deleted_record_is_not_resurrected(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ENDPOINTS["orders"]
    victim = _pick(api.records("orders"), lambda o: o["status"] == "fulfilled")
    day = date.fromisoformat(victim["created"][:10])
    settings = OrderspaceSettings.read(orderspace_env)
    with OrderspaceClient.from_settings(settings) as client:  # a pull's listing of that day, read now...
        stale_pages = [page.records for page in client.iter_pages("orders", **range_filters(spec, day, day))]
    assert victim["id"] in {record["id"] for page in stale_pages for record in page}
    api.delete("orders", victim["id"])
    code, out, _ = reconcile_cli(capsys, "--full-cycle")
    assert code == 0, out
    assert victim["id"] not in stored_keys(lake, spec)
    tombstones = open_tombstones(lake)
    assert tombstones.deleted("order", [victim["id"]]) == {victim["id"]}
    tombstones.close()
    # ...landed after reconcile removed the record: the pull's landing drops it.
    landing = PartitionedLanding(lake, spec, start=day, end=day, loaded_at=datetime.now(UTC))
    for page in stale_pages:
        landing.add_page(page)
    report = landing.finish()
    assert report.tombstoned == 1
    assert victim["id"] not in stored_keys(lake, spec)
    # A late webhook event carrying the record's old state changes nothing either.
    event = ReconcileEvent("order.updated", "order", victim["id"], victim, datetime.now(UTC), seq=10**6)
    assert apply_events(lake, [event]).tombstoned_skipped == 1
    # And a real pull of its day (through Dagster) leaves the lake equal to the account.
    result = run_sync(since=day, select=["orders"], resources=resources_for(orderspace_env))
    assert result.success, result.error
    assert victim["id"] not in stored_keys(lake, spec)
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url), tables=["orders", "order_lines"])
    assert diff.equal, diff.summary()


def test_a_bad_sweep_size_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["reconcile", "--sweep-days", "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number of days, at least 1, got '0'" in capsys.readouterr().err
