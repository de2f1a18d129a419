"""Benchmark the full pull against the sandbox: requests, wall time, 429s, local throughput and memory.

    .venv/bin/python bench/bench_pull.py                      # small then large, 1200 requests / 60 s
    .venv/bin/python bench/bench_pull.py --scales large --rate-limit 600

For each scale it starts the sandbox (`python -m orderspace_sandbox`) in its own subprocess,
then pulls each resource through `run_sync` (the same Dagster assets as the UI) in a fresh worker
subprocess, so the figures are the pulling process's alone (the sandbox's in-memory account, ~400 MB at
the large scale, is in neither) and each resource's peak RSS is its own. Client and sandbox use the same
budget (`--rate-limit` requests per `--rate-window` seconds), stated in the report.

Per resource: records; requests used vs the minimum ceil(records / page size); wall time of the whole
`run_sync` (Dagster run start, the sweep, the catalog update, the checks) vs requests / rate, and their
ratio; 429s; local rows per second (rows written / seconds spent landing pages: sorting, flattening,
Arrow, Parquet writes; reported by the assets as `local_processing_seconds`); the worker's peak RSS
(VmHWM) and its growth above the worker's baseline after imports. Memory should stay flat as the data
grows: compare the peak-RSS growth between scales. By default the runs use an ephemeral Dagster instance
(events in memory); `--dagster-home` uses a persistent one in a temporary folder (SQLite on disk, like
`make dev`), which costs a few ms per materialization event. Results go to
bench/results/pull-<timestamp>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

RESOURCES = [
    "orders",
    "invoices",
    "dispatches",
    "customers",
    "products",
    "inventory_levels",
    "categories",
    "customer_groups",
    "price_lists",
    "payment_terms",
    "tax_rates",
    "preorder_windows",
]
UNPAGINATED = {"customer_groups", "price_lists", "payment_terms", "tax_rates", "preorder_windows"}
PAGE_SIZE = 100
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


def worker(resource_name: str) -> None:
    """Pull one resource (env points at the sandbox) and print figures as JSON on the last line."""
    from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
    from orderspace_pipelines.defs.sync import run_sync

    baseline_mb = _high_water_mb()
    started = time.perf_counter()
    result = run_sync(
        since=None,
        select=[resource_name],
        resources={"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()},
    )
    wall = time.perf_counter() - started
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
                "baseline_rss_mb": baseline_mb,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def run_scale(
    scale: str, rate_limit: int, rate_window: float, dagster_home: bool, resources: list[str]
) -> list[dict]:
    from orderspace_devtools.local_stack import sandbox_process

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
            env["DAGSTER_HOME"] = str(Path(tmp) / "dagster_home")
            Path(env["DAGSTER_HOME"]).mkdir()
        for name in resources:
            records = len(httpx.get(f"{sandbox.base_url}/_sandbox/records/{name}", timeout=120).json()[name])
            before = sandbox.stats()
            done = subprocess.run(
                [sys.executable, __file__, "--worker", name],
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
            requests = after["requests"] - before["requests"]
            minimum = 1 if name in UNPAGINATED else max(1, math.ceil(records / PAGE_SIZE))
            local_s = max(figures["processing_s"], 1e-6)
            written = sum(figures["rows"].values())
            ideal_s = requests * rate_window / rate_limit
            rows.append(
                {
                    "scale": scale,
                    "resource": name,
                    "records": records,
                    "rows_written_all_tables": written,
                    "requests": requests,
                    "min_requests": minimum,
                    "wall_s": round(figures["wall_s"], 2),
                    "requests_over_rate_s": round(ideal_s, 2),
                    "wall_over_ideal": round(figures["wall_s"] / ideal_s, 2),
                    "throttle_wait_s": round(figures["throttle_wait_s"], 2),
                    "http_429": after["rate_limited"] - before["rate_limited"],
                    "local_processing_s": round(figures["processing_s"], 2),
                    "local_rows_per_s": round(written / local_s),
                    "peak_rss_mb": round(figures["peak_rss_mb"], 1),
                    "rss_growth_mb": round(figures["peak_rss_mb"] - figures["baseline_rss_mb"], 1),
                    "success": figures["success"],
                    "dagster_instance": "persistent (SQLite)" if dagster_home else "ephemeral",
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def to_markdown(rows: list[dict], rate_limit: int, rate_window: float, dagster_home: bool) -> str:
    header = (
        "| scale | resource | records | rows written | requests | min | wall s | requests/rate s "
        "| wall/ideal | throttle wait s | 429s | local s | local rows/s | peak RSS MB | RSS growth MB |"
    )
    instance = "persistent (SQLite in a temp DAGSTER_HOME)" if dagster_home else "ephemeral (in memory)"
    lines = [
        f"# Pull benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Rate budget (sandbox and client): {rate_limit} requests per {rate_window:g} s; page size "
        f"{PAGE_SIZE}; Dagster instance: {instance}. Each resource is pulled by `run_sync` in a fresh "
        "worker process (the sandbox runs in its own process); wall time covers the whole run (Dagster "
        "start, sweep, catalog, checks); local rows/s = rows written / seconds spent landing pages; RSS "
        "growth = the worker's peak RSS (VmHWM) minus its RSS after imports.",
        "",
        header,
        "|" + "---|" * 15,
    ]
    for r in rows:
        lines.append(
            f"| {r['scale']} | {r['resource']} | {r['records']} | {r['rows_written_all_tables']} "
            f"| {r['requests']} | {r['min_requests']} | {r['wall_s']} | {r['requests_over_rate_s']} "
            f"| {r['wall_over_ideal']} | {r['throttle_wait_s']} | {r['http_429']} "
            f"| {r['local_processing_s']} | {r['local_rows_per_s']} "
            f"| {r['peak_rss_mb']} | {r['rss_growth_mb']} |"
        )
    by_scale: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_scale.setdefault(r["scale"], {})[r["resource"]] = r
    if {"small", "large"} <= set(by_scale) and by_scale["small"].keys() == by_scale["large"].keys():
        lines += [
            "",
            "Memory as the data grows (peak RSS growth above the worker's baseline, small -> large):",
            "",
        ]
        for name in ("orders", "invoices", "dispatches", "customers", "products", "tax_rates"):
            if name not in by_scale["small"]:
                continue
            small, large = by_scale["small"][name], by_scale["large"][name]
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
        action="store_true",
        help="record the runs in a persistent Dagster instance (temporary DAGSTER_HOME) instead of in memory",
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    rows: list[dict] = []
    for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
        resources = [name.strip() for name in args.resources.split(",") if name.strip()]
        unknown = sorted(set(resources) - set(RESOURCES))
        if unknown:
            parser.error(f"unknown resources {unknown}; choose from {RESOURCES}")
        rows += run_scale(scale, args.rate_limit, args.rate_window, args.dagster_home, resources)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"pull-{stamp}.json").write_text(json.dumps(rows, indent=1))
    report = to_markdown(rows, args.rate_limit, args.rate_window, args.dagster_home)
    (RESULTS / f"pull-{stamp}.md").write_text(report)
    print(report)
    return 0 if all(r["success"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
