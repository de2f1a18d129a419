"""Benchmark the full pull against the sandbox: requests, wall time, 429s, local throughput and memory.

    .venv/bin/python bench/bench_pull.py                      # small then large, 1200 requests / 60 s
    .venv/bin/python bench/bench_pull.py --scales large --rate-limit 600

For each scale it starts the sandbox (`python -m orderspace_sandbox`) in its own subprocess,
then pulls each resource through `run_sync` (the same Dagster assets as the UI) in a fresh worker
subprocess, so the figures are the pulling process's alone (the sandbox's in-memory account, ~400 MB at
the large scale, is in neither) and each resource's peak RSS is its own. Client and sandbox use the same
budget (`--rate-limit` requests per `--rate-window` seconds), stated in the report.

Per resource: records; requests used vs the minimum (issue 7: ceil(records / page size), +1 for a list
without `has_more`, 1 for an unpaginated list; the whole pull adds one token) and their ratio; tokens
issued; the cost of re-pulling one old day (`run_sync` over one day a quarter into the history) against
ceil(records that day / page size) + 1; the page size is the client's `MAX_PAGE_SIZE`; wall time of the whole
`run_sync` (Dagster run start, the sweep, the catalog update, the checks) vs requests / rate, and their
ratio; 429s; local rows per second (rows written / seconds spent landing pages: sorting, flattening,
Arrow, Parquet writes; reported by the assets as `local_processing_seconds`); the worker's peak RSS
(VmHWM) and its growth above the worker's baseline after imports. Memory should stay flat as the data
grows: compare the peak-RSS growth between scales. Worker CPU seconds (both of its threads) measure the
local work. By default the runs use an ephemeral Dagster instance (events in memory); `--dagster-home`
uses a persistent one in a temporary folder with the project's dagster.yaml (SQLite on disk with batched
materialization writes, like `make dev`), `--dagster-home stock` one with Dagster's stock SQLite storage.
`--profile DIR` writes a cProfile of each worker to DIR/<scale>/<resource>.pstats. Results go to
bench/results/pull-<timestamp>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from orderspace_pipelines.client.client import MAX_PAGE_SIZE as PAGE_SIZE  # what the client asks for
from orderspace_pipelines.endpoints import PULL_ORDER, PULLED
from orderspace_pipelines.lake.schemas import RESOURCES as LAKE_RESOURCES

# Partitioned resources first, then the whole ones, in `endpoints.py`'s order.
RESOURCES = list(PULL_ORDER)
UNPAGINATED = {endpoint.resource for endpoint in PULLED if not endpoint.paginated}
# Lists whose responses carry no `has_more`: issue 7 allows each one more request than its pages.
NO_HAS_MORE = {"invoices"}
PARTITIONED = {endpoint.resource for endpoint in PULLED if endpoint.partitioned}
# Every run needs one token at least; the minimum of a whole pull counts it once (issue 7, item 1).
TOKENS_MINIMUM = 1
RESULTS = Path(__file__).resolve().parent / "results"


def _high_water_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited from the parent across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(
    resource_name: str, profile: str | None = None, since: str | None = None, until: str | None = None
) -> None:
    """Pull one resource (env points at the sandbox) and print figures as JSON on the last line."""
    from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
    from orderspace_pipelines.defs.sync import run_sync

    baseline_mb = _high_water_mb()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    result = run_sync(
        since=date.fromisoformat(since) if since else None,
        until=date.fromisoformat(until) if until else None,
        select=[resource_name],
        resources={"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()},
    )
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    if profiler is not None and profile:
        profiler.disable()
        Path(profile).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(profile) / f"{resource_name}.pstats"))
    peak_mb = _high_water_mb()
    print(
        json.dumps(
            {
                "success": result.success,
                "rows": result.rows,
                "client_requests": result.requests,
                "throttle_wait_s": result.rate_limit_wait_seconds,
                "processing_s": result.processing_seconds,
                "rate_limited": result.rate_limited,
                "wall_s": wall,
                "cpu_s": cpu,
                "baseline_rss_mb": baseline_mb,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def minimum_requests(resource_name: str, records: int) -> int:
    """The fewest list requests that can return `records` records (issue 7, item 1)."""
    if resource_name in UNPAGINATED:
        return 1
    return max(1, math.ceil(records / PAGE_SIZE)) + (1 if resource_name in NO_HAS_MORE else 0)


def _records(base_url: str, name: str) -> list[dict]:
    return httpx.get(f"{base_url}/_sandbox/records/{name}", timeout=120).json()[name]


def _old_day(records: list[dict], date_field: str) -> tuple[date, int]:
    """An old day with records (a quarter into the history) and how many records it holds."""
    days = Counter(str(record[date_field])[:10] for record in records if record.get(date_field))
    ordered = sorted(days)
    day = ordered[len(ordered) // 4]
    return date.fromisoformat(day), days[day]


def _run_worker(
    env: dict[str, str], sandbox: Any, name: str, extra: list[str]
) -> tuple[dict[str, Any], dict[str, int]]:
    """One worker run; returns its figures and the sandbox's counters it caused."""
    before = sandbox.stats()
    done = subprocess.run(
        [sys.executable, __file__, "--worker", name, *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    after = sandbox.stats()
    try:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"worker for {name} failed (exit {done.returncode})") from None
    counters = {
        key: after.get(key, 0) - before.get(key, 0)
        for key in ("requests", "rate_limited", "tokens_issued", "token_requests")
    }
    return figures, counters


def run_scale(
    scale: str,
    rate_limit: int,
    rate_window: float,
    dagster_home: str | None,
    resources: list[str],
    profile: str | None = None,
    old_day: bool = True,
) -> list[dict]:
    from orderspace_devtools.local_stack import sandbox_process
    from orderspace_pipelines.commands import DEFAULT_DAGSTER_YAML

    rows: list[dict] = []
    args = ["--port", "0", "--scale", scale, "--seed", "42", "--rate-limit", str(rate_limit)]
    args += ["--rate-window", str(rate_window)]
    with sandbox_process(*args, timeout=600) as sandbox, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ORDERSPACE_CLIENT_ID": "sandbox-client",
            "ORDERSPACE_CLIENT_SECRET": "sandbox-secret",
            "ORDERSPACE_API_URL": sandbox.api_url,
            "ORDERSPACE_TOKEN_URL": sandbox.token_url,
            "ORDERSPACE_REQUESTS_PER_MINUTE": str(rate_limit),
            "ORDERSPACE_RATE_WINDOW_SECONDS": str(rate_window),
            "ORDERSPACE_DATA_DIR": str(Path(tmp) / "data"),
            "ORDERSPACE_THROTTLE_DB": str(Path(tmp) / "throttle.sqlite"),
        }
        env.pop("DAGSTER_HOME", None)
        if dagster_home:
            home = Path(tmp) / "dagster_home"
            home.mkdir()
            env["DAGSTER_HOME"] = str(home)
            if dagster_home == "project":  # what `make dev` / `demo` use
                shutil.copyfile(DEFAULT_DAGSTER_YAML, home / "dagster.yaml")
        for name in resources:
            listed = _records(sandbox.base_url, name)
            records = len(listed)
            extra = ["--profile", str(Path(profile) / scale)] if profile else []
            figures, counters = _run_worker(env, sandbox, name, extra)
            requests = counters["requests"]
            minimum = minimum_requests(name, records)
            local_s = max(figures["processing_s"], 1e-6)
            written = sum(figures["rows"].values())
            ideal_s = requests * rate_window / rate_limit
            row = {
                "scale": scale,
                "resource": name,
                "records": records,
                "rows_written_all_tables": written,
                "requests": requests,
                "min_requests": minimum,
                "requests_over_min": round(requests / minimum, 3),
                "tokens_issued": counters["tokens_issued"],
                "token_requests": counters["token_requests"],
                "wall_s": round(figures["wall_s"], 2),
                "worker_cpu_s": round(figures["cpu_s"], 2),
                "requests_over_rate_s": round(ideal_s, 2),
                "wall_over_ideal": round(figures["wall_s"] / ideal_s, 2),
                "throttle_wait_s": round(figures["throttle_wait_s"], 2),
                "http_429": counters["rate_limited"],
                "local_processing_s": round(figures["processing_s"], 2),
                "local_rows_per_s": round(written / local_s),
                "peak_rss_mb": round(figures["peak_rss_mb"], 1),
                "rss_growth_mb": round(figures["peak_rss_mb"] - figures["baseline_rss_mb"], 1),
                "success": figures["success"],
                "dagster_instance": dagster_home or "ephemeral",
            }
            if old_day and name in PARTITIONED:
                date_field = LAKE_RESOURCES[name].date_field or "created"
                day, day_records = _old_day(listed, date_field)
                day_figures, day_counters = _run_worker(
                    env, sandbox, name, ["--since", day.isoformat(), "--until", day.isoformat()]
                )
                row |= {
                    "old_day": day.isoformat(),
                    "old_day_records": day_records,
                    "old_day_requests": day_counters["requests"],
                    "old_day_bound": math.ceil(day_records / PAGE_SIZE) + 1,
                    "old_day_tokens_issued": day_counters["tokens_issued"],
                    "old_day_wall_s": round(day_figures["wall_s"], 2),
                    "old_day_success": day_figures["success"],
                }
                row["success"] = row["success"] and day_figures["success"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def to_markdown(rows: list[dict], rate_limit: int, rate_window: float, dagster_home: str | None) -> str:
    instance = {
        None: "ephemeral (in memory)",
        "project": "persistent, the project's dagster.yaml (batched SQLite event writes), temp DAGSTER_HOME",
        "stock": "persistent, Dagster's stock SQLite storage (no dagster.yaml) in a temp DAGSTER_HOME",
    }[dagster_home]
    lines = [
        f"# Pull benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Rate budget (sandbox and client): {rate_limit} requests per {rate_window:g} s; page size "
        f"{PAGE_SIZE} (the client's `MAX_PAGE_SIZE`); Dagster instance: {instance}. Each resource is "
        "pulled by `run_sync` in a fresh worker process (the sandbox runs in its own process).",
        "",
        "Requests are list/API requests counted by the sandbox (token requests apart). The minimum per "
        f"resource is ceil(records / {PAGE_SIZE}) for a paginated list, plus one for a list without "
        f"`has_more` ({', '.join(sorted(NO_HAS_MORE))}), and 1 for an "
        "unpaginated list; the whole pull's minimum adds one token. Target: requests <= 1.02 x minimum.",
        "",
        "| scale | resource | records | requests | min | requests/min | tokens issued |",
        "|---|---|---|---|---|---|---|",
    ]
    by_scale: dict[str, list[dict]] = {}
    for r in rows:
        by_scale.setdefault(r["scale"], []).append(r)
        lines.append(
            f"| {r['scale']} | {r['resource']} | {r['records']} | {r['requests']} | {r['min_requests']} "
            f"| {r['requests_over_min']:.3f} | {r['tokens_issued']} |"
        )
    for scale, scale_rows in by_scale.items():
        requests = sum(r["requests"] for r in scale_rows)
        tokens = sum(r["tokens_issued"] for r in scale_rows)
        minimum = sum(r["min_requests"] for r in scale_rows) + TOKENS_MINIMUM
        lines.append(
            f"| {scale} | **all, with tokens** | {sum(r['records'] for r in scale_rows)} "
            f"| {requests + tokens} | {minimum} | {(requests + tokens) / minimum:.3f} | {tokens} |"
        )
    lines += [
        "",
        "Tokens issued: by the sandbox, per resource's worker process (each worker is its own run, so a "
        "token shared across processes and runs shows as 0 after the first).",
        "",
    ]
    old = [r for r in rows if "old_day" in r]
    if old:
        lines += [
            "Re-pulling one old day (`sync --since D` with until D; D a quarter into the history), after the "
            f"full pull: requests vs the bound ceil(records that day / {PAGE_SIZE}) + 1.",
            "",
            "| scale | resource | day | records that day | requests | bound | tokens issued | wall s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in old:
            lines.append(
                f"| {r['scale']} | {r['resource']} | {r['old_day']} | {r['old_day_records']} "
                f"| {r['old_day_requests']} | {r['old_day_bound']} | {r['old_day_tokens_issued']} "
                f"| {r['old_day_wall_s']} |"
            )
        lines.append("")
    lines += [
        "Local work: wall time of the whole `run_sync` (Dagster start, the sweep, catalog, checks) at an "
        "unlimited budget is almost all local; worker CPU s = the pulling process's CPU time (both threads); "
        "local s = seconds spent landing pages (sorting, flattening, Arrow, Parquet), as the assets report "
        "it; RSS growth = the worker's peak RSS (VmHWM) minus its RSS after imports.",
        "",
        "| scale | resource | rows written | wall s | worker CPU s | requests/rate s | wall/ideal "
        "| throttle wait s | 429s | local s | local rows/s | peak RSS MB | RSS growth MB |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        lines.append(
            f"| {r['scale']} | {r['resource']} | {r['rows_written_all_tables']} | {r['wall_s']} "
            f"| {r['worker_cpu_s']} | {r['requests_over_rate_s']} | {r['wall_over_ideal']} "
            f"| {r['throttle_wait_s']} | {r['http_429']} | {r['local_processing_s']} "
            f"| {r['local_rows_per_s']} | {r['peak_rss_mb']} | {r['rss_growth_mb']} |"
        )
    for scale, scale_rows in by_scale.items():
        wall, cpu = sum(r["wall_s"] for r in scale_rows), sum(r["worker_cpu_s"] for r in scale_rows)
        lines.append(
            f"| {scale} | **all** | {sum(r['rows_written_all_tables'] for r in scale_rows)} "
            f"| {wall:.2f} | {cpu:.2f} "
            f"| | | | {sum(r['http_429'] for r in scale_rows)} "
            f"| {sum(r['local_processing_s'] for r in scale_rows):.2f} | "
            f"| {max(r['peak_rss_mb'] for r in scale_rows)} | {max(r['rss_growth_mb'] for r in scale_rows)} |"
        )
    scales = {r["scale"]: {x["resource"]: x for x in by_scale[r["scale"]]} for r in rows}
    if {"small", "large"} <= set(scales) and scales["small"].keys() == scales["large"].keys():
        lines += [
            "",
            "Memory as the data grows (peak RSS growth above the worker's baseline, small -> large):",
            "",
        ]
        for name in ("orders", "invoices", "dispatches", "customers", "products", "tax_rates"):
            if name not in scales["small"]:
                continue
            small, large = scales["small"][name], scales["large"][name]
            lines.append(
                f"- {name}: {small['records']} -> {large['records']} records "
                f"({large['records'] / max(small['records'], 1):.0f}x): "
                f"{small['rss_growth_mb']} MB -> {large['rss_growth_mb']} MB"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scales", default="small,large", help="comma-separated sandbox scales")
    parser.add_argument(
        "--rate-limit", type=int, default=1200, help="requests per window (sandbox and client)"
    )
    parser.add_argument("--rate-window", type=float, default=60.0, help="rate window in seconds")
    parser.add_argument(
        "--resources", default=",".join(RESOURCES), help="comma-separated resources to pull (default: all)"
    )
    parser.add_argument(
        "--dagster-home",
        nargs="?",
        const="project",
        choices=["project", "stock"],
        help="record the runs in a persistent Dagster instance in a temporary DAGSTER_HOME instead of in "
        "memory: `project` (the default) with the project's dagster.yaml, as `make dev` uses; `stock` with "
        "Dagster's stock SQLite storage (no dagster.yaml)",
    )
    parser.add_argument(
        "--no-old-day", action="store_true", help="skip re-pulling one old day of the partitioned resources"
    )
    parser.add_argument("--since", help=argparse.SUPPRESS)
    parser.add_argument("--until", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", metavar="DIR", help="profile each worker with cProfile into DIR/<resource>.pstats"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.profile, args.since, args.until)
        return 0
    rows: list[dict] = []
    for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
        resources = [name.strip() for name in args.resources.split(",") if name.strip()]
        unknown = sorted(set(resources) - set(RESOURCES))
        if unknown:
            parser.error(f"unknown resources {unknown}; choose from {RESOURCES}")
        rows += run_scale(
            scale,
            args.rate_limit,
            args.rate_window,
            args.dagster_home,
            resources,
            args.profile,
            old_day=not args.no_old_day,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"pull-{stamp}.json").write_text(json.dumps(rows, indent=1))
    report = to_markdown(rows, args.rate_limit, args.rate_window, args.dagster_home)
    (RESULTS / f"pull-{stamp}.md").write_text(report)
    print(report)
    return 0 if all(r["success"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
