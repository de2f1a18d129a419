"""`orderspace-pipelines dev` as a real process: the sandbox (activity mode) sends signed webhooks to the
receiver, the change-feed sensor in `dagster dev` applies them to the lake, and Ctrl-C stops every child;
SIGTERM and SIGHUP during the first pull stop it the same way.

Observed through Dagster's GraphQL (the webserver the stack started) and the lake's files. The waits below
are give-up limits for a loaded machine, not timed assertions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.ports import free_port

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]
GIVE_UP_SECONDS = 900.0
STOPPED = "Stopped: Dagster, the webhook receiver and the sandbox."
# A step of the first pull logging (its run's console lines name the ephemeral job and the pull_* step).
FIRST_PULL_STEP = "__ephemeral_asset_job__ - "

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


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc (pid -> child pids)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        parent = _parent(int(entry.name)) if entry.name.isdigit() else None
        if parent is not None:
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _parent(pid: int) -> int | None:
    """The process's parent pid, None when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


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


def _start_dev(tmp_path: Path, ui_port: int, activity: str) -> tuple[subprocess.Popen[bytes], IO[str]]:
    """`orderspace-pipelines dev` with its own data dir, DAGSTER_HOME and throttle; output in dev.log."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORDERSPACE_")}
    env |= {
        "ORDERSPACE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ORDERSPACE_THROTTLE_DB": str(tmp_path / "throttle.sqlite"),
    }
    log = (tmp_path / "dev.log").open("w")
    command = [*CLI, "dev", "--scale", "tiny", "--port", str(ui_port), "--webhook-port", "0"]
    dev = subprocess.Popen(
        [*command, "--activity", activity], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    return dev, log


def _stop_dev(dev: subprocess.Popen[bytes], signum: int, seen: set[tuple[int, str]]) -> int:
    """Send `signum` to the stack's process (if it still runs); its exit code. Its tree is watched until it
    exits (a step starting meanwhile may start a process), into `seen`."""
    if dev.poll() is None:
        dev.send_signal(signum)
    deadline = time.monotonic() + 180  # a give-up limit: each child's stop is bounded in local_stack
    while dev.poll() is None and time.monotonic() < deadline:
        seen |= _descendants(dev.pid)
        time.sleep(0.2)
    assert dev.poll() is not None, f"still running 180 s after signal {signum}:\n{_thread_states(dev.pid)}"
    return dev.wait(timeout=1)


def _thread_states(pid: int) -> str:
    """Each thread of `pid`: its name, state, kernel wait channel and signal masks (pending, blocked,
    caught), to tell a signal that went to another thread from one that was blocked or never caught."""
    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda path: int(path.name)):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line
            )
            wanted = ("Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigCgt")
            wchan = (task / "wchan").read_text()
            states = " ".join(f"{key}={fields.get(key, '').strip()}" for key in wanted)
            lines.append(f"{task.name}: {states} wchan={wchan}")
    return "\n".join(lines)


def _left_running(seen: set[tuple[int, str]]) -> list[bytes]:
    """Command lines of the processes in `seen` still running, after a grace for init to reap orphans."""
    left = {(pid, start) for pid, start in seen if _start_time(pid) == start}
    grace = time.monotonic() + 30
    while left and time.monotonic() < grace:  # an orphan reparented to init may take a moment to be reaped
        time.sleep(0.5)
        left = {(pid, start) for pid, start in left if _start_time(pid) == start}
    return [Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in left]


def _kill_leftovers(dev: subprocess.Popen[bytes], seen: set[tuple[int, str]]) -> None:
    """SIGKILL whatever of the stack still runs (a failed test must not leak processes)."""
    if dev.poll() is None:
        seen |= _descendants(dev.pid)
        dev.kill()
        dev.wait()
    for pid, start in seen:
        if _start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_dev_stack_flows_webhooks_into_the_lake_and_stops_every_child(tmp_path: Path) -> None:
    ui_port = free_port()
    data_dir = tmp_path / "data"
    dev, log = _start_dev(tmp_path, ui_port, activity="120")
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
        code = _stop_dev(dev, signal.SIGINT, seen)  # what Ctrl-C sends the stack's own process
        assert code == 0, (tmp_path / "dev.log").read_text()[-4000:]
        assert not _left_running(seen)
        assert STOPPED in (tmp_path / "dev.log").read_text()
    finally:
        _kill_leftovers(dev, seen)
        log.close()


def _first_pull_underway(tmp_path: Path, dev: subprocess.Popen[bytes], seen: set[tuple[int, str]]) -> bool:
    """A step of the first pull has logged, and dagster dev has started its own children (grandchildren of
    the stack's process); the tree so far goes into `seen`."""
    seen |= _descendants(dev.pid)
    output = (tmp_path / "dev.log").read_text()
    if "a first full pull runs now" not in output or FIRST_PULL_STEP not in output:
        return False
    return any(_parent(pid) not in (dev.pid, None) for pid, _ in seen)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_the_first_pull_stops_the_whole_tree(tmp_path: Path, signum: signal.Signals) -> None:
    """`kill` (SIGTERM) or a closed terminal (SIGHUP) while the first pull runs: every child and grandchild
    stops, the "Stopped" line is printed and the exit code is 0, as after Ctrl-C (dev_command's docstring)."""
    dev, log = _start_dev(tmp_path, free_port(), activity="6")
    seen: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while not _first_pull_underway(tmp_path, dev, seen):
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "gave up waiting for the first pull"
            time.sleep(0.2)
        code = _stop_dev(dev, signum, seen)
        output = (tmp_path / "dev.log").read_text()
        assert code == 0, output[-4000:]
        assert STOPPED in output, output[-4000:]
        assert not _left_running(seen)
    finally:
        _kill_leftovers(dev, seen)
        log.close()
