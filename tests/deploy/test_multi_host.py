"""Issue 10's proof that the deployment holds across hosts, without Docker.

The services of `docker-compose.yaml` run as separate processes: Postgres (the `postgres_url` fixture's
server), the gRPC code server, `dagster-webserver` and `dagster-daemon` on "host 1", all on one
`$DAGSTER_HOME` whose `dagster.yaml` keeps Dagster's storage in Postgres; the sandbox Orderspace API answers
over real HTTP with a small rate limit and a short window, so the shared request budget is what keeps it
from answering 429. "Host 2" is a second process tree with its own temp dir and `$DAGSTER_HOME`: it shares
only Postgres (`ORDERSPACE_DATABASE_URL`) and the lake folder (`ORDERSPACE_DATA_DIR`) with host 1.

Through the webserver's GraphQL API the test launches a multi-day backfill while host 2 runs a full
`orderspace-pipelines sync`; then it drops a dispatch file into the inbox for the daemon's sensor, kills the
push run's process with SIGKILL right after Orderspace accepted the first dispatch (the code location's test
hook holds it there: `paused_location.py`), and pushes the file again from host 2.

Judged: no 429 and never more requests in any window than the budget (the sandbox's own count); the lake
equals the sandbox account; one dispatch per order of the file, across the kill and the two hosts; every run
(the backfill's, host 2's sync and push, the killed one) in the webserver's run list.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from orderspace_devtools.lake_diff import diff_lake, truth_from_store
from orderspace_pipelines.lake.flatten import record_date
from orderspace_pipelines.warehouse import WarehouseFolders
from orderspace_sandbox import SandboxServer
from tests.deploy.deployment import Host, shared_env, start_dagster
from tests.deploy.paused_location import PAUSE_DIR_ENV, pause_file
from tests.deploy.services import BIN, Service, ServiceStack, graphql, wait_for
from tests.postgres_server import PASSWORD
from tests.push.test_dispatch_push import OPEN, dispatches_for, find_order, goods

pytestmark = pytest.mark.deploy

RATE_LIMIT = 3  # requests the sandbox allows per window
RATE_WINDOW = 2.0  # seconds
OVERLAP_ROUNDS = 3  # see `_concurrent_pulls`
BACKFILL_DAYS = 60  # the tiny account's ~60 days of orders: a listing of several pages
# One multi-asset, so the backfill is one step holding one `orderspace_api` pool slot while host 2's sync
# holds the other (the pool's limit is 2, counted in Postgres): both hosts call the API at the same moments.
BACKFILL_ASSETS = ("orders", "order_lines")
# Pages of 15 (the API allows 200): ~60 requests in all, sent page after page, so the budget binds and the
# two hosts contend for it.
PAGE_SIZE = 15
WAIT_SECONDS = 300.0  # ceilings for each phase on a loaded machine, not speed assertions
COMMENT = "DPD 22 deploytest"

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query Runs {
  runsOrError(limit: 500) {
    __typename
    ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def runs(url: str) -> list[dict[str, Any]]:
    """Every run in the webserver's run list (read from Postgres run storage), tags as a dict."""
    found = graphql(url, RUNS)["runsOrError"]
    assert found["__typename"] == "Runs", found
    return [run | {"tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in found["results"]]


def launch_backfill(url: str, first: date, days: int) -> str:
    partitions = [(first + timedelta(days=offset)).isoformat() for offset in range(days)]
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": [key]} for key in BACKFILL_ASSETS],
    }
    launched = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


def backfill_done(url: str, backfill_id: str) -> dict[str, Any] | None:
    backfill = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    return None if backfill["status"] in ("REQUESTED", "CANCELING", "FAILING") else dict(backfill)


def run_ids_printed(service: Service) -> list[str]:
    """The run ids a `sync` printed (`sync succeeded: runs a, b, ...`)."""
    match = re.search(r"^sync succeeded: runs (.+)$", service.log.read_text(), re.MULTILINE)
    assert match, service.tail()
    return [run_id.strip() for run_id in match.group(1).split(",")]


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        bool(a["startTime"] and b["startTime"])
        and a["startTime"] < (b["endTime"] or 1e12)
        and b["startTime"] < (a["endTime"] or 1e12)
    )


def dispatch_file(sandbox: SandboxServer) -> tuple[list[dict[str, Any]], str]:
    """Two open, untouched orders of two SKUs each, and a warehouse file dispatching them in full."""
    orders = [find_order(sandbox, OPEN, untouched=True, skip=n) for n in range(2)]
    body = "order_number,sku,quantity,comments\n" + "".join(
        f"{order['number']},{line['sku']},{line['quantity']},{COMMENT}\n"
        for order in orders
        for line in goods(order)
    )
    return orders, body


def assert_budget_held(sandbox: SandboxServer) -> None:
    """No 429, and no window of the sandbox's sliding count held more requests than the budget; the budget
    was reached in some window (else the knobs are too loose for the test to prove anything)."""
    stats = sandbox.stats()
    assert stats["rate_limited"] == 0, stats
    assert stats["max_in_window"] == RATE_LIMIT, stats


def assert_no_secret_logged(stack: ServiceStack, secrets: list[str]) -> None:
    """No service's output (code server and its runs, webserver, daemon, host 2's commands) shows a secret."""
    for service in stack.services:
        text = service.log.read_text(errors="replace")
        assert not [secret for secret in secrets if secret in text], f"a secret is in {service.name}'s log"


@pytest.mark.timeout(1200)
def test_two_hosts_share_the_budget_the_ledger_and_the_run_storage(
    sandbox_factory, postgres_url: str, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(
        scale="tiny", rate_limit=RATE_LIMIT, rate_window=RATE_WINDOW, max_page_size=PAGE_SIZE
    )
    lake = tmp_path / "lake"
    lake.mkdir()
    shared = shared_env(sandbox, postgres_url, lake, RATE_LIMIT)
    host1 = Host.create("host1", tmp_path / "host1", shared)
    host2 = Host.create("host2", tmp_path / "host2", shared)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    stack = ServiceStack(tmp_path)
    try:
        started = time.monotonic()
        url = start_dagster(stack, host1, {PAUSE_DIR_ENV: str(pause_dir)})
        print(f"services up after {time.monotonic() - started:.0f} s")
        _concurrent_pulls(stack, url, sandbox, host2, lake)
        print(f"pulls judged after {time.monotonic() - started:.0f} s")
        _push_killed_and_resumed_elsewhere(stack, url, sandbox, host2, lake, pause_dir)
        print(f"push judged after {time.monotonic() - started:.0f} s")
        assert_budget_held(sandbox)  # over the whole test: the stats were never reset
        assert_no_secret_logged(stack, [PASSWORD, sandbox.config.client_secret])
        print("sandbox stats:", {k: v for k, v in sandbox.stats().items() if k != "by_path"})
    finally:
        stack.stop_all()


def _concurrent_pulls(stack: ServiceStack, url: str, sandbox: SandboxServer, host2: Host, lake: Path) -> None:
    """A backfill through the UI's API on host 1 and a full sync on host 2, at once; then judge the lake.

    The two hosts must have pulled at the same time, else the budget was never contended and nothing was
    proved. Host 2's sync starts as soon as the backfill's run exists, so both start up and pull together;
    whether their runs overlap still rests on timing (the daemon's launch against a process start, which a
    quiet machine shortens), so a round whose runs did not overlap is run again, up to `OVERLAP_ROUNDS`.
    """
    days = {record_date(order["created"]) for order in sandbox.store.all("orders")}
    last = max(day for day in days if day is not None)
    for attempt in range(1, OVERLAP_ROUNDS + 1):
        if _pull_round(stack, url, host2, last, attempt):
            break
        print(f"round {attempt}: the hosts' runs did not overlap; again")
    else:
        raise AssertionError(f"the two hosts' runs never overlapped in {OVERLAP_ROUNDS} rounds")
    assert_budget_held(sandbox)

    diff = diff_lake(lake, truth_from_store(sandbox.store))
    assert diff.equal, diff.summary()


def _backfill_run(url: str, backfill_id: str) -> dict[str, Any] | None:
    return next((run for run in runs(url) if run["tags"].get("dagster/backfill") == backfill_id), None)


def _pull_round(stack: ServiceStack, url: str, host2: Host, last: date, attempt: int) -> bool:
    """One backfill on host 1 and one sync on host 2; True when their runs overlapped in time."""
    backfill_id = launch_backfill(url, last - timedelta(days=BACKFILL_DAYS - 1), BACKFILL_DAYS)
    wait_for("the backfill's run", lambda: _backfill_run(url, backfill_id), timeout=WAIT_SECONDS,
             diagnose=stack.logs)  # fmt: skip
    sync = stack.start(
        f"host2-sync-{attempt}", [str(BIN / "orderspace-pipelines"), "sync"], host2.env, cwd=host2.root
    )

    assert sync.wait(WAIT_SECONDS) == 0, stack.logs()
    backfill = wait_for("the backfill", lambda: backfill_done(url, backfill_id), timeout=WAIT_SECONDS,
                        diagnose=stack.logs)  # fmt: skip
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, stack.logs())
    assert backfill["numPartitions"] == BACKFILL_DAYS

    listed = {run["runId"]: run for run in runs(url)}
    backfill_runs = [run for run in listed.values() if run["tags"].get("dagster/backfill") == backfill_id]
    assert backfill_runs and all(run["status"] == "SUCCESS" for run in backfill_runs), backfill_runs
    sync_ids = run_ids_printed(sync)
    assert set(sync_ids) <= set(listed), (sync_ids, sorted(listed))  # host 2's runs, in host 1's UI
    assert all(listed[run_id]["status"] == "SUCCESS" for run_id in sync_ids)
    return any(overlap(b, listed[s]) for b in backfill_runs for s in sync_ids)


def _push_killed_and_resumed_elsewhere(
    stack: ServiceStack, url: str, sandbox: SandboxServer, host2: Host, lake: Path, pause_dir: Path
) -> None:
    """The sensor's push run is killed after its first dispatch POST; host 2 pushes the file again."""
    orders, body = dispatch_file(sandbox)
    before = {order["id"]: len(dispatches_for(sandbox, order["id"])) for order in orders}
    assert before == {order["id"]: 0 for order in orders}
    folders = WarehouseFolders.under(lake).ensure()
    dropped = folders.inbox / "dispatches-deploytest.csv"
    temporary = folders.inbox / "dispatches-deploytest.csv.tmp"  # ignored by the sensor until renamed
    temporary.write_text(body)
    temporary.replace(dropped)

    marker = pause_file(pause_dir)
    wait_for("the push run to reach dispatch.posted", lambda: marker.read_text() if marker.exists() else None,
             timeout=WAIT_SECONDS, diagnose=stack.logs)  # fmt: skip
    pid = int(marker.read_text())
    assert pid != stack.named("code-server").pid  # a run worker, not the code server itself
    posted = [order["id"] for order in orders if dispatches_for(sandbox, order["id"])]
    assert len(posted) == 1, posted  # the first order's dispatch landed; the ledger has not heard of it
    os.kill(pid, signal.SIGKILL)

    # The dead run left the file claimed in work/; the same push from the other host resumes it.
    claimed = [path for path in folders.work.iterdir() if path.name.endswith(dropped.name)]
    assert len(claimed) == 1 and not dropped.exists(), (claimed, sorted(folders.inbox.iterdir()))
    push = stack.start("host2-push", [str(BIN / "orderspace-pipelines"), "push", str(dropped)], host2.env,
                       cwd=host2.root)  # fmt: skip
    assert push.wait(WAIT_SECONDS) == 0, stack.logs()
    assert stack.named("code-server").process.poll() is None  # only the run died

    for order in orders:
        created = dispatches_for(sandbox, order["id"])
        assert len(created) == 1, (order["number"], created)
        assert created[0]["comments"] == COMMENT
        assert {line["sku"]: line["quantity"] for line in created[0]["dispatch_lines"]} == {
            line["sku"]: line["quantity"] for line in goods(order)
        }
    assert sandbox.stats()["by_path"].get("POST /v1/dispatches") == len(orders)  # never sent twice
    assert (folders.processed / dropped.name).is_file()
    assert not list(folders.work.iterdir())

    listed = runs(url)
    pushes = [run for run in listed if run["jobName"] == "warehouse_push_job"]
    by_source = {run["tags"].get("warehouse/source", "sensor"): run for run in pushes}
    assert len(pushes) == 2 and set(by_source) == {"sensor", "cli"}, pushes  # both in host 1's UI
    print("push runs:", {source: run["status"] for source, run in by_source.items()})
    assert by_source["sensor"]["tags"]["warehouse/file"] == dropped.name
    assert by_source["sensor"]["status"] != "SUCCESS", by_source["sensor"]  # the killed one
    assert by_source["cli"]["status"] == "SUCCESS", by_source["cli"]
