"""Change-to-lake latency of the change feed: from a change in the sandbox to the moment it is in the lake.

The real deployment path, every part a process of its own except the sandbox:

- the sandbox Orderspace API (in this process, its HTTP server and webhook sender in threads) at the
  `small` scale, with plain-http loopback webhooks allowed;
- `orderspace-pipelines webhooks serve` (a process) and `webhooks register` pointing the subscription at it;
- an initial `orderspace-pipelines sync` (a process) filling the lake;
- `dagster-daemon run -m orderspace_pipelines.definitions` (a process, with its code server and the run
  workers it launches) under a fresh DAGSTER_HOME holding the project's dagster.yaml: `change_feed_sensor`
  (default running) launches `change_feed_job` runs through the queued run coordinator;
- then the sandbox's activity mode (`Activity.start`, what `sandbox --activity N` runs) makes N changes a
  minute until `--changes` have been made.

Each change's time is the sandbox's (`GET /_sandbox/webhooks/changes`: wall clock when the change was made
and handed to the webhook sender, with its events). It is visible in the lake when the applier has written
its files and marked its events applied (`events.applied_at` in the event store, stamped after the Parquet
files are durable and renamed into place). The sandbox's events and the store's are matched one to one, in
order (the sender delivers in order and the receiver stores a retry once); any mismatch stops the bench. A
change is in the lake when its last event is. As an independent check, a poller reads today's `orders`
Parquet partition every 0.5 s and times each new order from its change to the first read that sees it.

    .venv/bin/python bench/bench_change_to_lake.py                          # 150 changes at 60 a minute
    .venv/bin/python bench/bench_change_to_lake.py --changes 300 --per-minute 120

Results: bench/results/change-to-lake-<timestamp>.md (and .json).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from _common import connection_for, start_receiver

from orderspace_sandbox import SandboxConfig, SandboxServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
TARGET_P95_SECONDS = 60.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the same rule as bench_webhook_ack.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _environment(server: SandboxServer, data_dir: Path, home: Path) -> dict[str, str]:
    """The contract's variables for the sandbox account, a fresh data dir and DAGSTER_HOME."""
    connection = connection_for(server)
    return os.environ | {
        "ORDERSPACE_CLIENT_ID": connection["client_id"],
        "ORDERSPACE_CLIENT_SECRET": connection["client_secret"],
        "ORDERSPACE_API_URL": connection["api_url"],
        "ORDERSPACE_TOKEN_URL": connection["token_url"],
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(connection["requests_per_minute"]),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(connection["rate_window_seconds"]),
        "ORDERSPACE_DATA_DIR": str(data_dir),
        "ORDERSPACE_THROTTLE_DB": str(home / "throttle.sqlite"),
        "DAGSTER_HOME": str(home),
    }


def _cli(env: dict[str, str], *args: str) -> str:
    """Run `orderspace-pipelines ARGS` to completion; its output, or exit naming the failure."""
    done = subprocess.run(
        [str(BIN / "orderspace-pipelines"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"orderspace-pipelines {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def _start_receiver(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("ab") as out:
        return start_receiver([str(BIN / "orderspace-pipelines")], env, output=out, cwd=ROOT)


def _start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "orderspace_pipelines.definitions"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGTERM (the whole process group for the daemon, whose code server is a child), then SIGKILL."""
    if process.poll() is not None:
        return
    send = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    send(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=30)


@dataclass
class OrderPoller:
    """Reads today's `orders` partition every `every` seconds; notes when each order id is first seen."""

    data_dir: Path
    every: float = 0.5
    seen: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="order-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            day = datetime.now(UTC).date().isoformat()
            path = self.data_dir / "parquet" / "orders" / f"date={day}" / "part.parquet"
            if not path.is_file():
                continue
            with contextlib.suppress(pa.ArrowException, OSError):
                ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
                now = time.time()  # after the read: an upper bound on when the file held them
                for order_id in ids:
                    self.seen.setdefault(str(order_id), now)


def _stored_events(data_dir: Path) -> list[tuple[int, str, str, str, str | None]]:
    """(seq, event type, record id, received_at, applied_at) of every stored event, in receipt order."""
    path = data_dir / "webhooks" / "events.sqlite"
    if not path.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(
            "SELECT e.seq, e.event_type, e.record_id, d.received_at, e.applied_at "
            "FROM events e JOIN deliveries d ON d.id = e.delivery_id ORDER BY e.seq"
        ).fetchall()


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _changes(base_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/_sandbox/webhooks/changes", timeout=30)
    response.raise_for_status()
    return list(response.json()["changes"])


def _wait_applied(base_url: str, data_dir: Path, timeout: float) -> None:
    """Until every event of every logged change is stored and applied (or exit after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        wanted = sum(len(change["events"]) for change in _changes(base_url))
        stored = _stored_events(data_dir)
        if len(stored) >= wanted and all(row[4] is not None for row in stored):
            return
        if time.monotonic() > deadline:
            pending = sum(1 for row in stored if row[4] is None)
            raise SystemExit(f"timed out: {wanted} events sent, {len(stored)} stored, {pending} not applied")
        time.sleep(1)


def match_latencies(changes: list[dict[str, Any]], stored: list[tuple]) -> list[dict[str, Any]]:
    """One row per change: its kind, to-receipt and to-lake seconds. Stops on any sandbox/store mismatch."""
    flat = [(change_no, kind, key) for change_no, c in enumerate(changes) for kind, key in c["events"]]
    if len(flat) != len(stored):
        raise SystemExit(f"the sandbox sent {len(flat)} events but the store holds {len(stored)}")
    rows: list[dict[str, Any]] = [
        {"kind": c["events"][0][0], "at": c["at"], "received": 0.0, "applied": 0.0} for c in changes
    ]
    for (change_no, kind, key), (seq, event_type, record_id, received, applied) in zip(
        flat, stored, strict=True
    ):
        if (kind, key) != (event_type, record_id):
            raise SystemExit(
                f"event {seq}: the store holds {event_type} {record_id}, the sandbox sent {kind} {key}"
            )
        row = rows[change_no]
        row["received"] = max(row["received"], _stamp(received))
        row["applied"] = max(row["applied"], _stamp(applied))
    for row in rows:
        row["to_receipt"] = row["received"] - row["at"]
        row["to_lake"] = row["applied"] - row["at"]
    return rows


def order_poll_latencies(changes: list[dict[str, Any]], seen: dict[str, float]) -> list[float]:
    """Seconds from each order.created change to the first poll of the lake that saw the order."""
    created = [(c["at"], c["events"][0][1]) for c in changes if c["events"][0][0] == "order.created"]
    return [seen[order_id] - at for at, order_id in created if order_id in seen]


def apply_runs(home: Path, since: float) -> list[dict[str, Any]]:
    """The `change_feed_job` runs created from `since` on (the daemon's; not the first `sync`'s): status,
    when each was created, started, ended, and a failed run's error."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(job_name="change_feed_job"))
        return [
            {
                "status": str(record.dagster_run.status.value),
                "created": record.create_timestamp.timestamp(),
                "started": record.start_time or float("nan"),
                "ended": record.end_time or float("nan"),
                "error": _failure(instance, record.dagster_run.run_id),
            }
            for record in records
            if record.create_timestamp.timestamp() >= since
        ]


def _failure(instance: Any, run_id: str) -> str | None:
    """The first failure message a run logged (None: it did not fail)."""
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE"):
            return f"{event.event_type_value}: {(entry.user_message or '')[:600]}"
    return None


def wait_runs_finished(home: Path, timeout: float = 300) -> None:
    """Until no `change_feed_job` run is queued or running (the last one has marked its events applied but
    may not have ended; stopping the daemon then would fail it)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
    active += [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.get() as instance:
        while instance.get_runs_count(dg.RunsFilter(job_name="change_feed_job", statuses=active)):
            if time.monotonic() > deadline:
                raise SystemExit("an apply run did not finish")
            time.sleep(0.5)


def run_stages(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per apply run: created to started (queue, launch, run worker start), started to ended (the step's
    process start and the apply), and the gap between consecutive runs' creation (the sensor's cycle)."""
    ordered = sorted(runs, key=lambda run: run["created"])
    return {
        "launch": [run["started"] - run["created"] for run in ordered],
        "run": [run["ended"] - run["started"] for run in ordered],
        "cycle": [b["created"] - a["created"] for a, b in itertools.pairwise(ordered)],
    }


def apply_setup() -> tuple[int, str]:
    """`change_feed_sensor`'s minimum_interval_seconds and `change_feed_job`'s executor, as the code
    location defines them."""
    from orderspace_pipelines.definitions import defs

    sensor = defs.get_sensor_def("change_feed_sensor")
    executor = defs.get_job_def("change_feed_job").executor_def.name
    return int(sensor.minimum_interval_seconds or 30), executor


@contextlib.contextmanager
def deployment(
    server: SandboxServer, work: Path, log: Path
) -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes]]]:
    """Receiver, subscription, first pull, Dagster daemon: set up against `server`; torn down on exit."""
    data_dir, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "orderspace_pipelines" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = _environment(server, data_dir, home)
    receiver, url = _start_receiver(env, log)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        _cli(env, "webhooks", "register", url)
        started = time.monotonic()
        _cli(env, "sync")
        print(f"first pull: {time.monotonic() - started:.0f} s", flush=True)
        daemon = _start_daemon(env, log)
        yield env, daemon
    finally:
        if daemon is not None:
            _stop(daemon, group=True)
        _stop(receiver)


def run_activity(server: SandboxServer, changes: int, per_minute: float) -> float:
    """Activity mode at `per_minute` until `changes` were made; the seconds it took."""
    started = time.monotonic()
    server.activity.start(per_minute)
    while server.activity.changes < changes:
        time.sleep(0.2)
    server.activity.stop()
    return time.monotonic() - started


def wait_for_first_tick(log: Path, daemon: subprocess.Popen[bytes], timeout: float = 300) -> float:
    """Until the daemon's log shows change_feed_sensor evaluated once; the seconds it took."""
    started = time.monotonic()
    while "change_feed_sensor" not in log.read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() - started > timeout:
            raise SystemExit(f"the Dagster daemon never evaluated change_feed_sensor (see {log})")
        time.sleep(0.5)
    return time.monotonic() - started


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "max": max(values),
    }


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Set everything up, run the activity, wait for the lake, and gather the figures."""
    config = SandboxConfig(
        scale=args.scale, rate_limit=100_000, webhook_allow_http=True, webhook_retry_base=1.0
    )
    log = work / "processes.log"
    with SandboxServer(config) as server, deployment(server, work, log) as (env, daemon):
        data_dir = Path(env["ORDERSPACE_DATA_DIR"])
        ready = wait_for_first_tick(log, daemon)
        print(f"daemon evaluated change_feed_sensor after {ready:.0f} s; activity starts", flush=True)
        poller = OrderPoller(data_dir)
        poller.start()
        server.reset_stats()
        active = run_activity(server, args.changes, args.per_minute)
        _wait_applied(server.base_url, data_dir, timeout=args.timeout)
        wait_runs_finished(Path(env["DAGSTER_HOME"]))
        api_requests = server.stats()["requests"]
        poller.stop()
        changes = _changes(server.base_url)
        rows = match_latencies(changes, _stored_events(data_dir))
        deliveries = server.webhooks.snapshot()["deliveries"]
    runs = apply_runs(Path(env["DAGSTER_HOME"]), since=changes[0]["at"])
    return {
        "changes": len(rows),
        "events": sum(len(c["events"]) for c in changes),
        "activity_seconds": active,
        "per_minute": args.per_minute,
        "scale": args.scale,
        "to_lake": summary([r["to_lake"] for r in rows]),
        "to_receipt": summary([r["to_receipt"] for r in rows]),
        "by_kind": {
            kind: summary([r["to_lake"] for r in rows if r["kind"] == kind])
            for kind in sorted({r["kind"] for r in rows})
        },
        "order_poll": summary(order_poll_latencies(changes, poller.seen) or [float("nan")]),
        "runs": runs,
        "stages": {name: summary(values or [float("nan")]) for name, values in run_stages(runs).items()},
        "failed_deliveries": sum(1 for d in deliveries if d["outcome"] != "delivered"),
        "api_requests_during_activity": api_requests,
    }


def _line(name: str, s: dict[str, float]) -> str:
    return f"| {name} | {s['n']} | {s['p50']:.1f} | {s['p95']:.1f} | {s['max']:.1f} |"


def to_markdown(result: dict[str, Any], interval: int, executor: str, command: str) -> str:
    """The report: the headline figures, the breakdown by event type, and the apply runs."""
    runs = result["runs"]
    p95 = result["to_lake"]["p95"]
    lines = [
        f"# Change to lake, {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"`{command}`",
        "",
        f"- `change_feed_sensor` minimum interval: **{interval} s** (dagster-daemon, queued run coordinator, "
        f"dequeue every 1 s); `change_feed_job` executor: `{executor}`",
        f"- sandbox scale `{result['scale']}`, activity mode at {result['per_minute']:g} changes/minute for "
        f"{result['activity_seconds']:.0f} s: **{result['changes']} changes** ({result['events']} events)",
        f"- change to lake: **p50 {result['to_lake']['p50']:.1f} s, p95 {p95:.1f} s**, max "
        f"{result['to_lake']['max']:.1f} s; target p95 < {TARGET_P95_SECONDS:.0f} s: "
        f"**{'met' if p95 < TARGET_P95_SECONDS else 'NOT met'}**",
        f"- failed webhook deliveries: {result['failed_deliveries']}; API requests made meanwhile: "
        f"{result['api_requests_during_activity']} (the subscription health sensor; applying costs none)",
        f"- apply runs: {len(runs)} ({', '.join(sorted({r['status'] for r in runs}))})",
        *[f"  - failed run: {r['error']}" for r in runs if r["error"]],
        "",
        "| seconds from the change | n | p50 | p95 | max |",
        "|---|---|---|---|---|",
        _line("to the receiver's 200 (event stored)", result["to_receipt"]),
        _line("**to the lake (events applied)**", result["to_lake"]),
        _line("to the lake, seen by polling `orders` (order.created only)", result["order_poll"]),
        "",
        "| seconds, per apply run | n | p50 | p95 | max |",
        "|---|---|---|---|---|",
        _line("run created to started (queue, launch, run worker start)", result["stages"]["launch"]),
        _line("run started to ended (apply; + step process if multiprocess)", result["stages"]["run"]),
        _line("between consecutive runs' creation (the sensor's cycle)", result["stages"]["cycle"]),
        "",
        "| to the lake, by the change's first event | n | p50 | p95 | max |",
        "|---|---|---|---|---|",
        *[_line(kind, s) for kind, s in result["by_kind"].items()],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=150, help="changes to make (default 150)")
    parser.add_argument("--per-minute", type=float, default=60, help="activity rate (default 60 a minute)")
    parser.add_argument("--scale", default="small", help="sandbox scale (default small)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the lake at the end")
    parser.add_argument("--label", default="", help="appended to the result file names")
    args = parser.parse_args()
    interval, executor = apply_setup()
    with tempfile.TemporaryDirectory(prefix="bench-change-to-lake-") as tmp:
        try:
            result = measure(args, Path(tmp))
        except BaseException:
            print((Path(tmp) / "processes.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
    command = "bench/bench_change_to_lake.py " + " ".join(sys.argv[1:])
    report = to_markdown(result, interval, executor, command.strip())
    print(report)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"change-to-lake-{stamp}.json").write_text(
        json.dumps(result | {"sensor_interval": interval, "executor": executor}, indent=1)
    )
    (RESULTS / f"change-to-lake-{stamp}.md").write_text(report)
    return 0 if result["to_lake"]["p95"] < TARGET_P95_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
