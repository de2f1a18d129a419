"""Dispatch files pushed over real HTTP to the sandbox, including the kill-and-restart exactly-once case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orderspace_pipelines.defs.push_jobs import run_push
from orderspace_pipelines.warehouse import SqliteLedger, WarehouseFolders
from orderspace_sandbox import SandboxServer

from .conftest import BOTH_LEDGERS, posts, write_pulled_orders

REPO = Path(__file__).resolve().parents[2]


def goods(order: dict) -> list[dict]:
    return [line for line in order["order_lines"] if not line.get("shipping")]


# The sandbox's statuses before and after it took the real set (issue 7): either spelling is accepted.
OPEN = ("new", "processing", "invoiced", "released")
PART = ("part_fulfilled", "part_dispatched")


def find_order(
    server: SandboxServer, status: str | tuple[str, ...], *, untouched: bool = False, skip: int = 0
) -> dict:
    statuses = (status,) if isinstance(status, str) else status
    for order in server.store.all("orders"):
        lines = goods(order)
        if order["status"] not in statuses or len({line["sku"] for line in lines}) < 2:
            continue
        if untouched and any(line["dispatched"] for line in lines):
            continue
        if skip:
            skip -= 1
            continue
        return order
    raise AssertionError(f"the tiny sandbox has no {status} order with two SKUs")


def dispatches_for(server: SandboxServer, order_id: str) -> list[dict]:
    return [d for d in server.store.all("dispatches") if d["order_id"] == order_id]


def order_now(server: SandboxServer, order_id: str) -> dict:
    return next(o for o in server.store.all("orders") if o["id"] == order_id)


def test_a_fully_dispatchable_order_becomes_one_dispatch(sandbox, push, data_dir):
    order = find_order(sandbox, "new", untouched=True)
    write_pulled_orders(data_dir, sandbox.store.all("orders"))
    body = "order_number,sku,quantity,comments\n" + "".join(
        f"{order['number']},{line['sku']},{line['quantity']},Sent by courier\n" for line in goods(order)
    )
    sandbox.reset_stats()

    result = push("dispatch.csv", body)

    assert result.outcome == "processed" and result.dispatches_created == 1
    created = dispatches_for(sandbox, order["id"])
    assert len(created) == 1
    assert created[0]["comments"] == "Sent by courier"  # only the warehouse's words reach the customer
    assert {row.dispatch_id for row in result.rows} == {created[0]["id"]}
    assert order_now(sandbox, order["id"])["status"] == "fulfilled"
    by_path = sandbox.stats()["by_path"]
    # Number resolved from the pulled orders: one GET of the live order, one POST, no order listing; nothing
    # was dispatched on it yet, so no dispatch of it can exist and none is listed.
    assert by_path.get("GET /v1/orders", 0) == 0 and by_path.get("GET /v1/dispatches", 0) == 0
    assert by_path.get("GET /v1/orders/{id}") == 1 and posts(sandbox, "dispatches") == 1


def test_a_partly_dispatched_order_takes_only_what_is_outstanding(sandbox, push):
    order = find_order(sandbox, PART)
    lines = goods(order)
    open_lines = [line for line in lines if line["quantity"] > line["dispatched"]]
    first = open_lines[0]
    outstanding = first["quantity"] - first["dispatched"]
    other = next(line for line in lines if line["sku"] != first["sku"])
    too_many = other["quantity"] - other["dispatched"] + 1
    body = (
        "order_id,sku,quantity\n"
        f"{order['id']},{first['sku']},{outstanding}\n"
        f"{order['id']},{other['sku']},{too_many}\n"
        f"{order['id']},NOT-ON-ORDER,1\n"
        f"{order['id']},{first['sku']},0\n"
    )
    before = len(dispatches_for(sandbox, order["id"]))

    result = push("partial.csv", body)

    rows = {row.line: row for row in result.rows}
    assert rows[2].status == "dispatched"
    assert (
        rows[3].status == "rejected" and "exceeds" in rows[3].reason and "still outstanding" in rows[3].reason
    )
    assert rows[4].status == "rejected" and "is not on order" in rows[4].reason
    assert rows[5].status == "rejected" and "must be more than zero" in rows[5].reason
    created = dispatches_for(sandbox, order["id"])
    assert len(created) == before + 1
    new = next(d for d in created if d["id"] == rows[2].dispatch_id)
    assert [(dl["sku"], dl["quantity"]) for dl in new["dispatch_lines"]] == [(first["sku"], outstanding)]
    assert result.dispatches_created == 1 and result.rows_rejected == 3


def test_an_already_fulfilled_order_and_an_unknown_number_create_nothing(sandbox, push, folders):
    fulfilled = find_order(sandbox, "fulfilled")
    line = goods(fulfilled)[0]
    count = len(sandbox.store.all("dispatches"))
    body = f"order_number,sku,quantity\n{fulfilled['number']},{line['sku']},1\n999999,{line['sku']},1\n"

    result = push("closed.csv", body)

    rows = {row.line: row for row in result.rows}
    assert rows[2].status == "rejected" and "is fulfilled" in rows[2].reason
    assert rows[3].status == "rejected" and "999999 was not found" in rows[3].reason
    assert len(sandbox.store.all("dispatches")) == count
    assert result.outcome == "rejected"  # not one row was usable
    assert (folders.rejected / "closed.csv.report.csv").exists()


@BOTH_LEDGERS
def test_dropping_the_same_dispatch_file_twice_creates_nothing_new(sandbox, push):
    order = find_order(sandbox, OPEN, untouched=True)
    line = goods(order)[0]
    body = f"order_number,sku,quantity\n{order['number']},{line['sku']},1\n"
    assert push("once.csv", body).dispatches_created == 1
    count = len(sandbox.store.all("dispatches"))
    sandbox.reset_stats()

    again = push("once.csv", body)

    assert again.duplicate_of == "once.csv" and again.dispatches_created == 0
    assert len(sandbox.store.all("dispatches")) == count
    assert sandbox.stats()["requests"] == 0


@BOTH_LEDGERS
def test_a_dropped_connection_on_the_post_is_reconciled_not_duplicated(sandbox, push):
    order = find_order(sandbox, "new", untouched=True)
    line = goods(order)[0]
    sandbox.faults.inject("drop", count=1, path_prefix="/v1/dispatches")

    result = push("flaky.csv", f"order_id,sku,quantity\n{order['id']},{line['sku']},1\n")

    assert result.dispatches_created == 1
    assert len(dispatches_for(sandbox, order["id"])) == 1
    assert sandbox.stats()["by_path"].get("GET /v1/dispatches", 0) >= 1  # it looked before resending


def test_killed_between_the_api_call_and_the_ledger_write_creates_no_duplicate(
    sandbox, orderspace_env, data_dir, drop
):
    order = find_order(sandbox, "new", untouched=True)
    lines = goods(order)
    body = "order_number,sku,quantity,comments\n" + "".join(
        f"{order['number']},{line['sku']},{line['quantity']},Parcelforce 24\n" for line in lines
    )
    path = drop("kill.csv", body)
    env = {key: value for key, value in orderspace_env.items() if key != "DAGSTER_HOME"}

    crashed = subprocess.run(  # the Dagster job in a child process, killed right after the POST
        [sys.executable, "-m", "tests.push.crash_child", str(path), "dispatch.posted", "1", "job"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert crashed.returncode == 70, crashed.stderr[-2000:]
    assert len(dispatches_for(sandbox, order["id"])) == 1  # the POST landed...
    folders = WarehouseFolders.under(data_dir)
    claimed = [p for p in folders.work.iterdir() if p.name.endswith("__kill.csv")]
    assert len(claimed) == 1  # ...the file is still claimed...
    with SqliteLedger(folders.ledger_path) as ledger:
        states = ledger._db.execute("SELECT state FROM dispatches").fetchall()
    assert [row[0] for row in states] == ["pending"]  # ...and the ledger never heard back.
    sandbox.reset_stats()

    result = run_push(path)  # the restart: same file, same job

    created = dispatches_for(sandbox, order["id"])
    assert len(created) == 1
    assert created[0]["comments"] == "Parcelforce 24"
    assert posts(sandbox, "dispatches") == 0
    assert sandbox.stats()["by_path"].get("GET /v1/dispatches") == 1  # one order_id-filtered list
    assert result.dispatches_created == 1
    assert {row.dispatch_id for row in result.rows} == {created[0]["id"]}
    assert all("earlier attempt" in row.reason for row in result.rows)
    assert order_now(sandbox, order["id"])["status"] == "fulfilled"
    assert Path(result.final_path) == folders.processed / "kill.csv"
    # Dropping it again later: a duplicate, still one dispatch.
    drop("kill.csv", body)
    assert run_push(path).duplicate_of == "kill.csv"
    assert len(dispatches_for(sandbox, order["id"])) == 1


def test_decimal_quantities_are_dispatched_and_checked_against_what_is_outstanding(sandbox, push):
    order = find_order(sandbox, OPEN, untouched=True)
    line = goods(order)[0]
    rest = line["quantity"] - 0.5

    half = push("half.csv", f"order_id,sku,quantity\n{order['id']},{line['sku']},0.5\n")
    balance = push(
        "balance.csv",
        f"order_id,sku,quantity\n{order['id']},{line['sku']},{rest}\n{order['id']},{line['sku']},0.001\n",
    )

    assert half.rows[0].status == "dispatched" and half.rows[0].value == "0.5"
    made = dispatches_for(sandbox, order["id"])
    assert sorted(dl["quantity"] for d in made for dl in d["dispatch_lines"]) == sorted([0.5, rest])
    rows = {row.line: row for row in balance.rows}
    assert rows[2].status == "dispatched"
    assert rows[3].status == "rejected" and "exceeds the 0 still outstanding" in rows[3].reason
    dispatched = sum(
        ol["dispatched"] for ol in goods(order_now(sandbox, order["id"])) if ol["sku"] == line["sku"]
    )
    assert dispatched == line["quantity"]
