"""Exactly-once dispatches without a marker in the customer's text: killed anywhere, restarted, one each.

Every trial pushes one file of three orders in a child process that dies (`os._exit`, what `kill -9`
leaves) at a named checkpoint, optionally kills the restart too, then restarts once more in this process.
Each order must end with exactly one new dispatch whose comments are the warehouse's own words, the sandbox
must have seen exactly three dispatch POSTs in all, and the file must end in processed/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.testing_hooks import Hook, at_nth
from orderspace_pipelines.warehouse import WarehouseFolders, hooks, push_file
from tests.conftest import settings_for

from .conftest import Quiet, posts
from .test_dispatch_push import OPEN, PART, dispatches_for, find_order, goods

REPO = Path(__file__).resolve().parents[2]
COMMENT = "DPD 15501234 - call before delivery"

TRIALS = [
    pytest.param([("dispatch.planned", 1)], id="01-before-the-pending-entry"),
    pytest.param([("dispatch.pending", 1)], id="02-before-the-post"),
    pytest.param([("dispatch.posted", 1)], id="03-after-the-post-before-the-ledger"),
    pytest.param([("dispatch.confirmed", 1)], id="04-after-the-ledger-write"),
    pytest.param([("dispatch.pending", 2)], id="05-mid-file-between-orders"),
    pytest.param([("dispatch.posted", 2)], id="06-mid-file-second-order-posted"),
    pytest.param([("dispatch.posted", 3)], id="07-last-order-posted"),
    pytest.param([("file.reported", 1)], id="08-report-written-outcome-not"),
    pytest.param([("file.finished", 1)], id="09-outcome-recorded-file-not-moved"),
    pytest.param([("dispatch.posted", 2), ("dispatch.reconciled", 1)], id="10-killed-again-reconciling"),
]
# On the Postgres ledger, the trials that leave each kind of state behind: a pending entry before its POST, a
# POST the ledger never heard back from, the outcome recorded but the file not moved, and a kill of the
# reconciling restart. (All ten on SQLite; the same code paths, so four keep the suite's time down.)
POSTGRES_TRIALS = {
    "02-before-the-post",
    "03-after-the-post-before-the-ledger",
    "09-outcome-recorded-file-not-moved",
    "10-killed-again-reconciling",
}
TRIALS_ON_BOTH = [pytest.param("sqlite", *trial.values, id=f"sqlite-{trial.id}") for trial in TRIALS] + [
    pytest.param("postgres", *trial.values, id=f"postgres-{trial.id}")
    for trial in TRIALS
    if trial.id in POSTGRES_TRIALS
]


def three_orders(sandbox) -> list[dict]:
    return [find_order(sandbox, OPEN, untouched=True, skip=n) for n in range(3)]


def file_for(orders: list[dict]) -> str:
    return "order_number,sku,quantity,comments\n" + "".join(
        f"{order['number']},{line['sku']},{line['quantity']},{COMMENT}\n"
        for order in orders
        for line in goods(order)
    )


def kill_at(path: Path, env: dict[str, str], point: str, nth: int) -> None:
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.push.crash_child", str(path), point, str(nth)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 70, (point, nth, crashed.stderr[-2000:])


@pytest.mark.parametrize(("state_backend", "kills"), TRIALS_ON_BOTH, indirect=["state_backend"])
def test_killed_anywhere_each_order_gets_exactly_one_dispatch(
    sandbox, push_env, state_url, data_dir, drop, client, kills
):
    orders = three_orders(sandbox)
    path = drop("trial.csv", file_for(orders))
    env = {key: value for key, value in push_env.items() if key != "DAGSTER_HOME"}
    sandbox.reset_stats()

    for point, nth in kills:
        kill_at(path, env, point, nth)
    # the final restart
    result = push_file(path, client=client, data_dir=data_dir, log=Quiet(), database_url=state_url)

    for order in orders:
        created = dispatches_for(sandbox, order["id"])
        assert len(created) == 1, order["number"]
        assert created[0]["comments"] == COMMENT  # the warehouse's words, nothing added
        wanted = {line["sku"]: line["quantity"] for line in goods(order)}
        assert {dl["sku"]: dl["quantity"] for dl in created[0]["dispatch_lines"]} == wanted
    assert not any("[wh:" in str(d.get("comments")) for d in sandbox.store.all("dispatches"))
    assert posts(sandbox, "dispatches") == 3  # never sent twice, across every process
    folders = WarehouseFolders.under(data_dir)
    assert folders.ledger_path.exists() == (state_url is None)  # the Postgres ledger leaves no file here
    assert Path(result.final_path) == folders.processed / "trial.csv" and Path(result.final_path).exists()
    assert not [p for p in folders.work.iterdir() if p.name.endswith("trial.csv")]
    report = json.loads((folders.processed / "trial.csv.report.json").read_text())
    assert report["dispatches_created"] == 3 and report["rows_rejected"] == 0
    assert {row["dispatch_id"] for row in report["rows"]} == {
        d["id"] for o in orders for d in dispatches_for(sandbox, o["id"])
    }


class Killed(BaseException):
    """Stands for a kill in this process: not an `Exception`, so nothing in the push handles it."""


def raise_at(point: str, nth: int) -> Hook:
    """A hook that raises `Killed` the `nth` time `point` is reached."""

    def kill(reached: str) -> None:
        raise Killed(reached)

    return at_nth(point, nth, kill)


@pytest.fixture
def small(sandbox_factory, throttle_db):
    """A small-scale sandbox (1,500 orders, more dispatches than a page holds) and a client on it."""
    server = sandbox_factory(scale="small")
    settings = settings_for(server)
    with OrderspaceClient(settings, throttle_db=str(throttle_db), backoff_base=0.01) as api:
        yield server, api


def test_order_numbers_resolve_with_one_request_each_never_a_scan(small, data_dir, drop):
    server, client = small
    oldest = sorted(server.store.all("orders"), key=lambda o: o["number"])[:3]  # the last pages of a scan
    body = (
        "order_number,sku,quantity\n"
        + "".join(f"{order['number']},{goods(order)[0]['sku']},1\n" for order in oldest)
        + f"{10**9},SKU,1\n"
    )  # a number no order has
    server.reset_stats()

    result = push_file(drop("numbers.csv", body), client=client, data_dir=data_dir, log=Quiet())

    by_path = server.stats()["by_path"]
    assert by_path.get("GET /v1/orders") == 4  # 4 numbers, 1 request each (a scan needs 8 pages of 200)
    assert by_path.get("GET /v1/orders/{id}", 0) == 0  # the filtered list returned the order itself
    rows = {row.line: row for row in result.rows}
    assert "was not found" in rows[5].reason
    for line, order in enumerate(oldest, start=2):
        assert rows[line].order == str(order["number"])
        assert "not found" not in rows[line].reason  # resolved (old orders are mostly fulfilled: rejected)


def test_the_reconcile_costs_one_filtered_list_per_pending_order(small, data_dir, drop):
    server, client = small
    untouched = find_order(server, OPEN, untouched=True)
    partly = find_order(server, PART)
    other = find_order(server, OPEN, untouched=True, skip=1)
    assert len(server.store.all("dispatches")) > 200  # a scan of the dispatches would take pages
    body = "order_id,sku,quantity\n"
    for order in (untouched, partly, other):
        line = next(line for line in goods(order) if line["quantity"] > line["dispatched"])
        body += f"{order['id']},{line['sku']},{line['quantity'] - line['dispatched']}\n"
    path = drop("pending.csv", body)
    partly_before = len(dispatches_for(server, partly["id"]))
    server.reset_stats()
    hooks.install(raise_at("dispatch.posted", 2))  # killed after the partly dispatched order's POST
    try:
        with pytest.raises(Killed):
            push_file(path, client=client, data_dir=data_dir, log=Quiet())
    finally:
        hooks.install(None)
    first = server.stats()["by_path"]
    # Before its POST, only the order with earlier dispatches had them listed (1 filtered request).
    assert first.get("GET /v1/dispatches") == 1 and first.get("POST /v1/dispatches") == 2
    server.reset_stats()

    result = push_file(path, client=client, data_dir=data_dir, log=Quiet())

    again = server.stats()["by_path"]
    assert again.get("GET /v1/dispatches") == 1  # one pending order: one order_id-filtered list
    assert again.get("POST /v1/dispatches") == 1  # only the order never sent
    assert result.dispatches_created == 3
    assert len(dispatches_for(server, partly["id"])) == partly_before + 1
    assert len(dispatches_for(server, untouched["id"])) == len(dispatches_for(server, other["id"])) == 1


OLD_DISPATCHES_TABLE = """
CREATE TABLE dispatches (
    file_sha256 TEXT NOT NULL, group_key TEXT NOT NULL, order_id TEXT NOT NULL, marker TEXT NOT NULL,
    body TEXT NOT NULL, state TEXT NOT NULL, dispatch_id TEXT, message TEXT, pending_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (file_sha256, group_key)
);
"""


def test_pending_entries_of_the_marker_era_are_settled_and_resent_without_the_marker(
    sandbox, client, data_dir, drop, folders
):
    import sqlite3

    from orderspace_pipelines.warehouse import sha256_of

    landed, lost = three_orders(sandbox)[:2]
    body = "order_id,sku,quantity,comments\n" + "".join(
        f"{order['id']},{goods(order)[0]['sku']},1,Sent\n" for order in (landed, lost)
    )
    path = drop("legacy.csv", body)
    digest = sha256_of(path)
    # What the earlier version left after a kill: both pending, the first one landed with its marker.
    bodies = {}
    for order in (landed, lost):
        marker = f"[wh:{digest[:12]}:id{order['id']}]"
        bodies[order["id"]] = (
            marker,
            {
                "order_id": order["id"],
                "comments": f"Sent {marker}",
                "dispatch_lines": [{"sku": goods(order)[0]["sku"], "quantity": 1}],
            },
        )
    client.create_dispatch(bodies[landed["id"]][1])
    with sqlite3.connect(folders.ledger_path) as db:
        db.executescript(OLD_DISPATCHES_TABLE)
        for order in (landed, lost):
            marker, sent = bodies[order["id"]]
            db.execute(
                "INSERT INTO dispatches VALUES (?, ?, ?, ?, ?, 'pending', NULL, NULL, ?, ?)",
                (
                    digest,
                    f"id:{order['id']}",
                    order["id"],
                    marker,
                    json.dumps(sent),
                    "2026-11-30T00:00:00+00:00",
                    "2026-11-30T00:00:00+00:00",
                ),
            )
    sandbox.reset_stats()

    result = push_file(path, client=client, data_dir=data_dir, log=Quiet())

    assert result.dispatches_created == 2 and posts(sandbox, "dispatches") == 1  # only the lost one resent
    assert len(dispatches_for(sandbox, landed["id"])) == 1
    [resent] = dispatches_for(sandbox, lost["id"])
    assert resent["comments"] == "Sent"  # the marker is never sent again
