"""A partition backfill launched the way the UI launches it: a GraphQL mutation to a real `dagster dev`
(webserver + daemon + code server) over HTTP, on a temporary $DAGSTER_HOME with the project's dagster.yaml,
pulling from the sandbox on 127.0.0.1. The range (120 days) is wider than the tiny sandbox's history
(~60 days), so many of its days hold no orders: the backfill must still end COMPLETED_SUCCESS with every
partition of the range materialized, and the lake must hold every order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.commands import DEFAULT_DAGSTER_YAML
from orderspace_pipelines.defs.partitions import last_partition_day
from orderspace_pipelines.lake import lake_connection
from orderspace_pipelines.lake.flatten import record_date
from tests.ports import free_port

RANGE_DAYS = 120
WAIT_SECONDS = 600  # a generous ceiling on a loaded machine, not a speed assertion

LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on PythonError { message }
  }
}
"""

PARTITION_STATUS = """
query PartitionStatus($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numFailed numMaterializing numPartitions }
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}
"""


def _graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def dagster_dev(orderspace_env: dict[str, str], tmp_path: Path):
    """`dagster dev` on 127.0.0.1 with a fresh $DAGSTER_HOME (the project's dagster.yaml); yields its URL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEFAULT_DAGSTER_YAML, home / "dagster.yaml")
    port = free_port()
    env = {**orderspace_env, "DAGSTER_HOME": str(home)}
    log = (tmp_path / "dagster-dev.log").open("w")
    dagster = str(Path(sys.executable).with_name("dagster"))
    process = subprocess.Popen(
        [dagster, "dev", "-m", "orderspace_pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-4000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not start"
            time.sleep(1)
        yield url, tmp_path / "dagster-dev.log"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.timeout(WAIT_SECONDS * 2 + 120)  # dagster dev's start and the backfill each get WAIT_SECONDS
def test_ui_backfill_over_days_without_orders_ends_green(sandbox, orderspace_env, dagster_dev) -> None:
    url, log = dagster_dev
    graphql = f"{url}/graphql"
    end = last_partition_day()
    start = end - timedelta(days=RANGE_DAYS - 1)
    partitions = [(start + timedelta(days=offset)).isoformat() for offset in range(RANGE_DAYS)]
    orders = sandbox.store.all("orders")
    order_days = {record_date(order["created"]) for order in orders}
    assert min(order_days) > start, "the range must reach past the sandbox's history"  # type: ignore[operator]
    assert len(order_days) < RANGE_DAYS, "some days of the range must hold no orders"

    launched = _graphql(
        graphql,
        LAUNCH_PARTITION_BACKFILL,
        {
            "backfillParams": {
                "partitionNames": partitions,
                "assetSelection": [{"path": ["orders"]}, {"path": ["order_lines"]}],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        backfill = _graphql(graphql, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            break
        assert time.monotonic() < deadline, (
            f"backfill still {backfill['status']}; log: {log.read_text()[-4000:]}"
        )
        time.sleep(2)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, log.read_text()[-4000:])
    assert backfill["numPartitions"] == RANGE_DAYS

    for asset in ("orders", "order_lines"):
        node = _graphql(graphql, PARTITION_STATUS, {"assetKey": {"path": [asset]}})["assetNodeOrError"]
        stats = node["partitionStats"]
        assert stats["numMaterialized"] == RANGE_DAYS, (asset, stats)
        assert stats["numFailed"] == 0, (asset, stats)
        assert stats["numMaterializing"] == 0, (asset, stats)
        ranges = node["assetPartitionStatuses"]["ranges"]
        assert ranges == [{"status": "MATERIALIZED", "startKey": partitions[0], "endKey": partitions[-1]}], (
            asset,
            ranges,
        )

    with lake_connection(Path(orderspace_env["ORDERSPACE_DATA_DIR"])) as db:
        stored = sorted(row[0] for row in db.execute("SELECT id FROM orders").fetchall())
        lines = db.execute("SELECT count(*) FROM order_lines").fetchone()[0]
    assert stored == sorted(order["id"] for order in orders)
    assert lines == sum(len(order["order_lines"]) for order in orders)
