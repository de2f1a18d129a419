"""What the pull's guard against the change feed costs: re-pulls with tombstones and with newer event rows.

    .venv/bin/python bench/bench_pull_guard.py                      # SQLite tombstones
    .venv/bin/python bench/bench_pull_guard.py --postgres           # tombstones in a throwaway Postgres
    .venv/bin/python bench/bench_pull_guard.py --resources orders --label before

One sandbox (`--scale`, seed 42, an unlimited budget) and one lake; each resource is pulled whole by
`run_sync` in a fresh worker process (`bench_pull.py --worker`), four times in a row:

1. `first`: into an empty lake (no tombstone store: the guard and the page filter cost nothing);
2. `repull`: the same again over the full lake (every day's write reads the stored day's key columns);
3. `tombstones`: after `--tombstones` real ids per resource are recorded as deleted (`open_tombstones`),
   so every page and every day's write looks them up (and those records are dropped);
4. `events`: after `--events` real records per resource are applied through the change feed's applier
   (`apply_events`) as updates received a day in the future: their rows are newer than the pull, as rows
   applied while a pull fetches are, so the guard reads those days whole and keeps the stored copies.

Per run: requests (sandbox count), worker CPU seconds, wall seconds, rows written. With `--postgres` a
PostgreSQL server is started from the test helper (`tests/postgres_server.py`) and the workers get
`ORDERSPACE_DATABASE_URL`: tombstones (and the guard's look-ups) go to Postgres, as in a deployment.
Results go to bench/results/pull-guard-<timestamp>[-label].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bench_pull
import httpx

from orderspace_pipelines.lake.changes import SPEC_OF, apply_events
from orderspace_pipelines.lake.tombstones import open_tombstones

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVENT_RESOURCE = {spec: resource for resource, spec in SPEC_OF.items()}  # "orders" -> "order"


@dataclass
class Event:
    """A stored webhook event as the applier reads it (`lake.changes.EventLike`)."""

    seq: int
    event_type: str
    resource: str
    record_id: str | None
    record: Any
    known: bool
    received_at: datetime


@contextmanager
def _database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.postgres_server import PostgresServer

    server = PostgresServer.start()
    try:
        yield server.create_database("bench")
    finally:
        server.stop()


def _records(base_url: str, name: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{base_url}/_sandbox/records/{name}", timeout=120).json()[name])


def _spread(records: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` records spread evenly over the list (so over many days)."""
    step = max(1, len(records) // max(count, 1))
    return records[::step][:count]


def _add_tombstones(
    data_dir: Path, url: str | None, records: list[dict[str, Any]], name: str, count: int
) -> None:
    store = open_tombstones(data_dir, url)
    try:
        resource = EVENT_RESOURCE[name]
        store.add((resource, str(r["id"]), 10**9 + i) for i, r in enumerate(_spread(records, count)))
    finally:
        store.close()


def _apply_newer(
    data_dir: Path, url: str | None, records: list[dict[str, Any]], name: str, count: int
) -> int:
    """Apply `count` records (from the middle of the list, none tombstoned above) as updates received a day
    in the future; returns how many rows the applier wrote."""
    resource = EVENT_RESOURCE[name]
    future = datetime.now(UTC) + timedelta(days=1)
    chosen = _spread(records[1:], count)
    events = [
        Event(i + 1, f"{resource}.updated", resource, str(r["id"]), r, True, future)
        for i, r in enumerate(chosen)
    ]
    report = apply_events(data_dir, events, database_url=url)
    return sum(report.rows.values())


def _env(sandbox: Any, tmp: Path, url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "ORDERSPACE_CLIENT_ID": "sandbox-client",
        "ORDERSPACE_CLIENT_SECRET": "sandbox-secret",
        "ORDERSPACE_API_URL": sandbox.api_url,
        "ORDERSPACE_TOKEN_URL": sandbox.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": "1000000",
        "ORDERSPACE_RATE_WINDOW_SECONDS": "60",
        "ORDERSPACE_DATA_DIR": str(tmp / "data"),
        "ORDERSPACE_THROTTLE_DB": str(tmp / "throttle.sqlite"),
    }
    env.pop("DAGSTER_HOME", None)
    env.pop("ORDERSPACE_DATABASE_URL", None)
    if url:
        env["ORDERSPACE_DATABASE_URL"] = url
    return env


def run(
    scale: str, resources: list[str], tombstones: int, events: int, postgres: bool
) -> list[dict[str, Any]]:
    from orderspace_devtools.local_stack import sandbox_process

    rows: list[dict[str, Any]] = []
    args = ["--port", "0", "--scale", scale, "--seed", "42", "--rate-limit", "1000000", "--rate-window", "60"]
    with (
        _database(postgres) as url,
        sandbox_process(*args, timeout=600) as sandbox,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = _env(sandbox, Path(tmp), url)
        data_dir = Path(tmp) / "data"
        for name in resources:
            listed = _records(sandbox.base_url, name)
            for step in ("first", "repull", "tombstones", "events"):
                setup = ""
                if step == "tombstones":
                    _add_tombstones(data_dir, url, listed, name, tombstones)
                    setup = f"{tombstones} ids tombstoned"
                elif step == "events":
                    written = _apply_newer(data_dir, url, listed, name, events)
                    setup = f"{events} records applied as newer events ({written} rows)"
                figures, counters = bench_pull._run_worker(env, sandbox, name, [])
                rows.append(
                    {
                        "resource": name,
                        "step": step,
                        "setup": setup,
                        "tombstones": "postgres" if postgres else "sqlite",
                        "requests": counters["requests"],
                        "worker_cpu_s": round(figures["cpu_s"], 2),
                        "wall_s": round(figures["wall_s"], 2),
                        "rows_written": sum(figures["rows"].values()),
                        "success": figures["success"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def to_markdown(rows: list[dict[str, Any]], scale: str, command: str) -> str:
    lines = [
        f"# Pull guard benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `{command}`; scale {scale}; load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "| resource | step | tombstone store | setup | requests | worker CPU s | wall s | rows written |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['resource']} | {r['step']} | {r['tombstones']} | {r['setup']} | {r['requests']} | "
            f"{r['worker_cpu_s']} | {r['wall_s']} | {r['rows_written']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="large")
    parser.add_argument("--resources", default="orders,invoices,dispatches,customers")
    parser.add_argument("--tombstones", type=int, default=200, help="ids tombstoned per resource")
    parser.add_argument(
        "--events", type=int, default=200, help="records applied as newer events per resource"
    )
    parser.add_argument("--postgres", action="store_true", help="tombstones in a throwaway PostgreSQL server")
    parser.add_argument("--label", default="", help="appended to the result file names")
    args = parser.parse_args()
    resources = [name.strip() for name in args.resources.split(",") if name.strip()]
    unknown = sorted(set(resources) - set(EVENT_RESOURCE))
    if unknown:
        parser.error(f"not a change-feed resource: {unknown}; choose from {sorted(EVENT_RESOURCE)}")
    rows = run(args.scale, resources, args.tombstones, args.events, args.postgres)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pull-guard-{stamp}.json").write_text(json.dumps(rows, indent=1))
    report = to_markdown(rows, args.scale, " ".join([Path(sys.executable).name, *sys.argv]))
    (RESULTS / f"pull-guard-{stamp}.md").write_text(report)
    print(report)
    return 0 if all(r["success"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
