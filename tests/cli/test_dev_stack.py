"""`orderspace-pipelines dev` as a real process: the sandbox (activity mode) sends signed webhooks to the
receiver, the change-feed sensor in `dagster dev` applies them to the lake, and Ctrl-C stops every child.

Observed through Dagster's GraphQL (the webserver the stack started) and the lake's files. The waits below
are give-up limits for a loaded machine, not timed assertions.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]
GIVE_UP_SECONDS = 900.0

SENSOR_RUNS = """
query { runsOrError(filter: {pipelineName: "change_feed_job", statuses: [SUCCESS]}) {
  __typename ... on Runs { results { runId tags { key value } } } } }
"""
RUN_OUTPUT = """
query ($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
  __typename ... on ExecutionStepOutputEvent {
    metadataEntries { label ... on IntMetadataEntry { intValue } } }
} } } }
"""
ORDERS_OBSERVATION = """
query { assetOrError(assetKey: {path: ["orders"]}) { __typename ... on Asset {
  assetObservations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }
"""


def _free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc (pid -> child pids)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every descendant of `pid` (the start time tells a reused pid apart)."""
    tree = _children()
    found: set[tuple[int, str]] = set()
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        start = _start_time(child)
        if start is not None:
            found.add((child, start))
        todo.extend(tree.get(child, []))
    return found


def _start_time(pid: int) -> str | None:
    """The process's start time, None when it is gone (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _graphql(port: int, query: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


def _applied_by_sensor(port: int) -> int:
    """Events applied by the sensor's successful change_feed_job runs (their step output metadata)."""
    try:
        runs = _graphql(port, SENSOR_RUNS)["runsOrError"]
    except httpx.HTTPError:
        return 0  # the webserver is not up yet
    applied = 0
    for run in runs.get("results", []):
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        if tags.get("dagster/sensor_name") != "change_feed_sensor":
            continue
        events = _graphql(port, RUN_OUTPUT, runId=run["runId"])["logsForRun"]["events"]
        for event in events:
            for entry in event.get("metadataEntries") or []:
                if entry["label"] == "events_applied":
                    applied += int(entry["intValue"])
    return applied


def _applied_receipt_times(data_dir: Path) -> set[datetime]:
    """Receipt times of the deliveries whose events were applied (the event store, read-only)."""
    store = data_dir / "webhooks" / "events.sqlite"
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT DISTINCT d.received_at FROM events e JOIN deliveries d ON d.id = e.delivery_id "
            "WHERE e.applied_at IS NOT NULL"
        ).fetchall()
    return {datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) for row in rows}


def _lake_loaded_at(data_dir: Path) -> set[datetime]:
    stamps: set[datetime] = set()
    for path in (data_dir / "parquet").rglob("*.parquet"):
        table = pq.read_table(path)
        if "_loaded_at" in table.column_names:
            stamps.update(value for value in table.column("_loaded_at").to_pylist() if value is not None)
    return stamps


def test_dev_stack_flows_webhooks_into_the_lake_and_stops_every_child(tmp_path: Path) -> None:
    ui_port = _free_port()
    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERSPACE_")}
    env |= {
        "ORDERSPACE_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ORDERSPACE_THROTTLE_DB": str(tmp_path / "throttle.sqlite"),
    }
    log = (tmp_path / "dev.log").open("w")
    command = [*CLI, "dev", "--scale", "tiny", "--port", str(ui_port), "--webhook-port", "0"]
    dev = subprocess.Popen(
        [*command, "--activity", "120"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    seen: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + GIVE_UP_SECONDS
        applied = 0
        while applied == 0 and dev.poll() is None and time.monotonic() < deadline:
            time.sleep(3)
            seen |= _descendants(dev.pid)
            applied = _applied_by_sensor(ui_port)
        output = (tmp_path / "dev.log").read_text()
        assert applied >= 1, f"no webhook event applied by the sensor's runs; dev output:\n{output[-4000:]}"
        # The summary names every URL once.
        for name in ("Dagster UI:", "Sandbox API:", "Webhook receiver:"):
            assert output.count(name) == 1, output
        assert f"http://127.0.0.1:{ui_port}" in output
        assert "webhook " in output and "created" in output  # `webhooks register` ran before Dagster
        # The UI shows the orders table's change feed (an observation logged by an apply run).
        asset = _graphql(ui_port, ORDERS_OBSERVATION)["assetOrError"]
        [observation] = asset["assetObservations"]
        labels = {entry["label"] for entry in observation["metadataEntries"]}
        assert "change_feed_pending_events" in labels
        # Webhook-delivered rows are in the lake: rows stamped with an applied event's receipt time.
        assert _applied_receipt_times(data_dir) & _lake_loaded_at(data_dir)
        seen |= _descendants(dev.pid)
        names = {
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            for pid, _ in seen
            if _start_time(pid) is not None
        }
        assert any(b"dagster" in name and b" dev " in name for name in names), names
        assert any(b"webhooks serve" in name for name in names), names
        assert any(b"orderspace_sandbox" in name for name in names), names
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)  # what Ctrl-C sends the stack's own process
        try:
            code = dev.wait(timeout=180)
        finally:
            if dev.poll() is None:
                dev.kill()
            log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()[-4000:]
    left = {(pid, start) for pid, start in seen if _start_time(pid) == start}
    grace = time.monotonic() + 30
    while left and time.monotonic() < grace:  # an orphan reparented to init may take a moment to be reaped
        time.sleep(0.5)
        left = {(pid, start) for pid, start in left if _start_time(pid) == start}
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in left]
    assert "Stopped: Dagster, the webhook receiver and the sandbox." in (tmp_path / "dev.log").read_text()
