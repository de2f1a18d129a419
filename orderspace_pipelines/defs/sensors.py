"""The warehouse inbox sensor: one `warehouse_push_job` run per new, complete file in warehouse/inbox/.

The daemon comes round every 5 s and a tick (`MINIMUM_INTERVAL_SECONDS` 1, so every round ticks) only lists
the inbox and `stat()`s the files; it never parses one, so ticking often costs nothing. A file is ready once
two ticks have seen the same (size, mtime) and it has not been modified for `stable_seconds` (env
`ORDERSPACE_WAREHOUSE_STABLE_SECONDS`, default 5): a file still being written keeps changing, so it waits.
A dropped file is launched on the second tick that sees it, about 5-10 s after it lands.
Hidden files, `~` files and `*.tmp` / `*.part` / `*.partial` / `*.swp` / `*.crdownload` are ignored: write
there, then rename into place. Only a ready file is hashed (read, not parsed) for its run key.

Run key `"<name>:<sha256[:16]>:<mtime_ns>"`: one drop of a file is launched once (Dagster skips a key it
has seen, and the cursor remembers what was launched), while the same content dropped again later is a new
drop, runs, and ends in processed/ as a reported duplicate that sends nothing (the ledger knows the hash).
The cursor is JSON: `{"seen": {name: [size, mtime_ns, first_seen_epoch, run_key_or_null]}}`, pruned to the
files still in the inbox.
"""

import json
import time
from typing import Any

import dagster as dg

from orderspace_pipelines.defs.pools import ensure_api_pool
from orderspace_pipelines.defs.push_jobs import PUSH_PRIORITY_TAGS, push_run_config, warehouse_push_job
from orderspace_pipelines.defs.resources import LakeResource
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_pipelines.warehouse import WarehouseFolders, is_candidate, sha256_of

# Dagster measures the interval from the end of the previous tick: a minimum of 5 s would skip every other
# round of the daemon's 5 s loop. 1 s lets every round tick (a tick is a few stat() calls).
MINIMUM_INTERVAL_SECONDS = 1


def stable_seconds_from_env() -> float:
    """`ORDERSPACE_WAREHOUSE_STABLE_SECONDS` through the configuration model (default 5)."""
    return OrderspaceSettings.read().warehouse_stable_seconds


def _load_cursor(cursor: str | None) -> dict[str, list[Any]]:
    if not cursor:
        return {}
    try:
        seen = json.loads(cursor).get("seen", {})
    except (ValueError, AttributeError):
        return {}  # an unreadable cursor only costs one extra tick of waiting
    return {name: entry for name, entry in seen.items() if isinstance(entry, list) and len(entry) == 4}


def evaluate_inbox(
    folders: WarehouseFolders, cursor: str | None, *, stable_seconds: float, now: float | None = None
) -> tuple[list[dg.RunRequest], str, list[str]]:
    """(run requests, new cursor, names still settling) for one look at the inbox."""
    now = time.time() if now is None else now
    seen = _load_cursor(cursor)
    next_seen: dict[str, list[Any]] = {}
    requests: list[dg.RunRequest] = []
    waiting: list[str] = []
    inbox = folders.inbox
    entries = sorted(inbox.iterdir()) if inbox.is_dir() else []
    for path in entries:
        if not is_candidate(path):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # claimed or removed between listing and stat
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
        previous = seen.get(path.name)
        if previous is None or previous[0] != size or previous[1] != mtime_ns:
            next_seen[path.name] = [size, mtime_ns, now, None]
            waiting.append(path.name)
            continue
        entry = list(previous)
        next_seen[path.name] = entry
        if entry[3] is not None:
            continue  # already launched for this drop
        # Seen unchanged by two ticks (a growing file changes size) and untouched for stable_seconds.
        settled = now - mtime_ns / 1e9 >= stable_seconds
        if not settled:
            waiting.append(path.name)
            continue
        try:
            digest = sha256_of(path)
        except FileNotFoundError:
            next_seen.pop(path.name, None)
            continue
        run_key = f"{path.name}:{digest[:16]}:{mtime_ns}"
        entry[3] = run_key
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                run_config=push_run_config(path, digest),
                tags={**PUSH_PRIORITY_TAGS, "warehouse/file": path.name, "warehouse/sha256": digest[:16]},
            )
        )
    return requests, json.dumps({"seen": next_seen}, sort_keys=True), waiting


def build_warehouse_inbox_sensor(
    *,
    name: str = "warehouse_inbox_sensor",
    stable_seconds: float | None = None,
    minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The inbox sensor; `stable_seconds` None reads `ORDERSPACE_WAREHOUSE_STABLE_SECONDS` at each tick."""

    @dg.sensor(
        name=name,
        job=warehouse_push_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Launches warehouse_push_job once per complete file dropped in warehouse/inbox/.",
    )
    def warehouse_inbox_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        folders = WarehouseFolders.under(lake.root).ensure()
        wait = stable_seconds_from_env() if stable_seconds is None else stable_seconds
        requests, cursor, waiting = evaluate_inbox(folders, context.cursor, stable_seconds=wait)
        if requests:
            ensure_api_pool(context.instance)  # before the runs' steps claim it (defs/pools.py)
        for request in requests:
            context.log.info(f"launching a push for {request.tags['warehouse/file']} ({request.run_key})")
        skip = None
        if not requests:
            detail = f"; waiting for {', '.join(waiting)} to settle" if waiting else ""
            skip = dg.SkipReason(f"no new complete file in {folders.inbox}{detail}")
        return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=skip)

    return warehouse_inbox_sensor


warehouse_inbox_sensor = build_warehouse_inbox_sensor()

PUSH_SENSORS = [warehouse_inbox_sensor]
