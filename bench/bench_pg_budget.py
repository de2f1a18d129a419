"""The PostgreSQL-backed request budget (ORDERSPACE_DATABASE_URL): sustained rate, overruns, lock overhead.

Three sections, each with 4 worker processes on 2 "hosts" (two process trees, each with its own TMPDIR and
data dir, sharing nothing but the database and the sandbox):

- sustained: a sandbox whose rate limit equals the budget (so any overrun shows as a 429), every worker
  sending `GET /tax_rates` as fast as the budget allows for `--duration` seconds. Reports requests per minute
  against the budget, requests in each fixed window and the most in any sliding window (client clock), the
  sandbox's `max_in_window` and 429 count.
- overhead: the same on an unlimited sandbox with a budget far above what 4 processes can send, so the
  budget never limits: the time spent in `acquire()` per request is the cost of the shared lock (database
  round trip), next to the same run on a SQLite throttle (one machine, all 4 sharing one file); then one
  process calling `acquire()` alone (no HTTP, no contention) on each.
- contention: 4 processes taking 25 slots each at 30 per 2 s straight from the bucket (no HTTP), for this
  project's bucket and pyrate-limiter's `PostgresBucket`: the most admissions in any sliding 2 s window, when
  each process was first admitted, and its longest gap (starvation shows here).

    .venv/bin/python bench/bench_pg_budget.py                      # ~2.5 min: 60 per 10 s for 60 s, ...
    .venv/bin/python bench/bench_pg_budget.py --database-url postgresql://u:p@host/db

Without `--database-url` a throwaway PostgreSQL server is started (tests/postgres_server.py). Results go to
bench/results/pg-budget-<time>.md and .json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import connection_for

ROOT = Path(__file__).resolve().parent.parent
HOSTS, PER_HOST = 2, 2
CONTENTION = {"limit": 30, "window": 2.0, "per_worker": 25}


# -- worker processes (this file run with --role) -------------------------------------------------------


def _api_worker(duration: float, start_at: float) -> dict[str, Any]:
    """One client: token first, then `GET /tax_rates` until `duration` has passed; times of each answer."""
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    with OrderspaceClient.from_settings(OrderspaceSettings.from_env(), max_retries=0) as client:
        client.auth.token()
        acquires: list[float] = []
        acquire = client.throttle.acquire

        def timed_acquire() -> float:  # the transport calls this instance's acquire(): time each one
            started = time.perf_counter()
            waited = acquire()
            acquires.append(time.perf_counter() - started)
            return waited

        client.throttle.acquire = timed_acquire  # type: ignore[method-assign]
        time.sleep(max(0.0, start_at - time.time()))
        times, statuses = [], {"ok": 0, "error": 0}
        while time.time() < start_at + duration:
            try:
                client.request("GET", "tax_rates")
                statuses["ok"] += 1
            except Exception:  # a 429 (max_retries=0) or anything else: counted, not retried
                statuses["error"] += 1
            times.append(time.time())
        stats = client.stats.as_dict()
    return {"times": times, "statuses": statuses, "stats": stats, "acquires": acquires}


def _host(args: argparse.Namespace) -> None:
    """One "host": its own process tree starting PER_HOST workers, printing their results as JSON lines."""
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "worker",
                "--duration",
                str(args.duration),
                "--start-at",
                str(args.start_at),
            ],
            stdout=subprocess.PIPE,
        )
        for _ in range(PER_HOST)
    ]
    for worker in workers:
        out, _ = worker.communicate()
        sys.stdout.write(out.decode())


def _bucket_worker(kind: str, url: str, key: str, name: str) -> None:
    """Take CONTENTION slots straight from the bucket, recording each admission with the database clock."""
    import psycopg

    acquire = _bucket(kind, url, key)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO bench_ready VALUES (%s)", (name,))
        while _count(conn, "bench_ready") < HOSTS * PER_HOST:
            time.sleep(0.01)
        for _ in range(int(CONTENTION["per_worker"])):
            acquire()
            conn.execute("INSERT INTO bench_admissions VALUES (%s, clock_timestamp())", (name,))


def _count(conn: Any, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _bucket(kind: str, url: str, key: str) -> Any:
    """`acquire()` of this project's Postgres throttle, or of pyrate-limiter's PostgresBucket + Limiter."""
    from orderspace_pipelines.client import RequestThrottle
    from orderspace_pipelines.client.throttle import budget_rates

    limit, window = int(CONTENTION["limit"]), float(CONTENTION["window"])
    if kind == "ours":
        return RequestThrottle.on_postgres(url, key, limit=limit, window_seconds=window).acquire
    from psycopg_pool import ConnectionPool
    from pyrate_limiter import Limiter, PostgresBucket

    pool = ConnectionPool(url, open=True, min_size=1, max_size=2)
    limiter = Limiter(PostgresBucket(pool, key, budget_rates(limit, window)), buffer_ms=0)

    def acquire() -> None:
        while not limiter.try_acquire(key):
            time.sleep(0.002)

    return acquire


# -- the driver ------------------------------------------------------------------------------------------


def _host_env(
    base: dict[str, str],
    home: Path,
    server: Any,
    database_url: str | None,
    budget: int,
    window: float,
    throttle_db: Path | None,
) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    conn = connection_for(server)
    env = {k: v for k, v in base.items() if not k.startswith("ORDERSPACE_")} | {
        "TMPDIR": str(home),
        "PYTHONPATH": str(ROOT),
        "ORDERSPACE_DATA_DIR": str(home / "data"),
        "ORDERSPACE_CLIENT_ID": conn["client_id"],
        "ORDERSPACE_CLIENT_SECRET": conn["client_secret"],
        "ORDERSPACE_API_URL": conn["api_url"],
        "ORDERSPACE_TOKEN_URL": conn["token_url"],
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(budget),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(window),
    }
    if database_url:
        env["ORDERSPACE_DATABASE_URL"] = database_url
    if throttle_db:
        env["ORDERSPACE_THROTTLE_DB"] = str(throttle_db)
    return env


def _run_hosts(envs: list[dict[str, str]], duration: float) -> list[dict[str, Any]]:
    start_at = time.time() + 15.0  # every worker imports, connects and fetches its token first
    hosts = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "host",
                "--duration",
                str(duration),
                "--start-at",
                str(start_at),
            ],
            env=env,
            stdout=subprocess.PIPE,
        )
        for env in envs
    ]
    results = []
    for host in hosts:
        out, _ = host.communicate()
        results += [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    if len(results) != HOSTS * PER_HOST:
        raise SystemExit(f"expected {HOSTS * PER_HOST} worker results, got {len(results)}")
    return results


def _max_in_sliding_window(times: list[float], window: float) -> int:
    times, best, end = sorted(times), 0, 0
    for start, first in enumerate(times):
        while end < len(times) and times[end] < first + window:
            end += 1
        best = max(best, end - start)
    return best


def _sustained(args: argparse.Namespace, database_url: str, work: Path) -> dict[str, Any]:
    from orderspace_sandbox import SandboxConfig, SandboxServer

    config = SandboxConfig(port=0, rate_limit=args.budget, rate_window=args.window)
    with SandboxServer(config) as server:
        envs = [
            _host_env(
                dict(os.environ),
                work / f"sustained-host{n}",
                server,
                database_url,
                args.budget,
                args.window,
                None,
            )
            for n in range(HOSTS)
        ]
        results = _run_hosts(envs, args.duration)
        sandbox = server.stats()
    times = sorted(t for r in results for t in r["times"])
    start = min(times)
    windows = [0] * (int((max(times) - start) // args.window) + 1)
    for t in times:
        windows[int((t - start) // args.window)] += 1
    elapsed = max(times) - start
    return {
        "budget": args.budget,
        "window_seconds": args.window,
        "budget_per_minute": args.budget * 60 / args.window,
        "requests": len(times),
        "elapsed_seconds": round(elapsed, 2),
        "requests_per_minute": round(len(times) / elapsed * 60, 1),
        "per_fixed_window": windows,
        "max_in_sliding_window_client": _max_in_sliding_window(times, args.window),
        "sandbox_max_in_window": sandbox["max_in_window"],
        "sandbox_429": sandbox["rate_limited"],
        "errors": sum(r["statuses"]["error"] for r in results),
        "tokens_issued": sandbox["tokens_issued"],
        "mean_acquire_seconds": _mean_acquire(results),
    }


def _mean_acquire(results: list[dict[str, Any]]) -> float:
    waits = sum(r["stats"]["throttle_wait_seconds"] for r in results)
    acquires = sum(r["stats"]["throttle_acquires"] for r in results)
    return round(waits / max(acquires, 1), 6)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 of the acquire times, in ms."""
    cuts = statistics.quantiles(seconds, n=20)
    return {"p50_acquire_ms": round(cuts[9] * 1000, 3), "p95_acquire_ms": round(cuts[18] * 1000, 3)}


def _overhead(args: argparse.Namespace, database_url: str, work: Path) -> dict[str, Any]:
    from orderspace_sandbox import SandboxConfig, SandboxServer

    budget, window = 1_000_000, 60.0  # ~16,700 a second: never the limiter for 4 processes
    rows: dict[str, Any] = {}
    with SandboxServer(SandboxConfig(port=0, rate_limit=10_000_000, rate_window=60.0)) as server:
        for label, url, shared_file in (
            ("postgres", database_url, None),
            ("sqlite", None, work / "overhead-sqlite" / "throttle.sqlite"),
        ):
            envs = [
                _host_env(
                    dict(os.environ),
                    work / f"overhead-{label}-host{n}",
                    server,
                    url,
                    budget,
                    window,
                    shared_file,
                )
                for n in range(HOSTS)
            ]
            results = _run_hosts(envs, args.overhead_duration)
            requests = sum(len(r["times"]) for r in results)
            rows[label] = {
                "requests": requests,
                "requests_per_second": round(requests / args.overhead_duration, 1),
                "mean_acquire_ms": round(_mean_acquire(results) * 1000, 3),
                **_percentiles([a for r in results for a in r["acquires"]]),
                "max_acquire_ms": round(
                    max(r["stats"]["max_throttle_wait_seconds"] for r in results) * 1000, 1
                ),
            }
    return rows


def _acquire_only(database_url: str, work: Path, count: int = 400) -> dict[str, Any]:
    """One process, no HTTP, no contention: the bare cost of `acquire()` on each throttle."""
    from orderspace_pipelines.client import RequestThrottle

    rows: dict[str, Any] = {}
    for label in ("postgres", "sqlite"):
        if label == "postgres":
            throttle = RequestThrottle.on_postgres(database_url, "bare", limit=1_000_000, window_seconds=60.0)
        else:
            throttle = RequestThrottle(work / "bare.sqlite", limit=1_000_000, window_seconds=60.0)
        times = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                throttle.acquire()
                times.append(time.perf_counter() - started)
        finally:
            throttle.close()
        rows[f"{label}, 1 process, acquire only"] = {
            "requests": count,
            "requests_per_second": round(count / sum(times), 1),
            "mean_acquire_ms": round(statistics.fmean(times) * 1000, 3),
            **_percentiles(times),
            "max_acquire_ms": round(max(times) * 1000, 1),
        }
    return rows


def _contention(database_url: str) -> dict[str, Any]:
    import psycopg

    rows: dict[str, Any] = {}
    for kind in ("ours", "pyrate_postgres_bucket"):
        key = f"bench_{kind}_{int(time.time())}"  # a fresh budget (and pyrate table) for every run
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_ready, bench_admissions")
            conn.execute("CREATE TABLE bench_ready (worker TEXT)")
            conn.execute("CREATE TABLE bench_admissions (worker TEXT, at TIMESTAMPTZ)")
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--role",
                    "bucket",
                    "--kind",
                    kind,
                    "--key",
                    key,
                    "--name",
                    f"w{n}",
                    "--database-url",
                    database_url,
                ],
                env=dict(os.environ) | {"PYTHONPATH": str(ROOT)},
            )
            for n in range(HOSTS * PER_HOST)
        ]
        for worker in workers:
            worker.wait()
        with psycopg.connect(database_url) as conn:
            admitted = conn.execute(
                "SELECT worker, EXTRACT(EPOCH FROM at)::float8 FROM bench_admissions ORDER BY at"
            ).fetchall()
        rows[kind] = _contention_row(admitted)
    return rows


def _contention_row(admitted: list[tuple[str, float]]) -> dict[str, Any]:
    times = [at for _, at in admitted]
    first = times[0]
    per_worker = {}
    for name in sorted({who for who, _ in admitted}):
        mine = [at for who, at in admitted if who == name]
        gaps = [b - a for a, b in itertools.pairwise(mine)]
        per_worker[name] = {
            "admitted": len(mine),
            "first_admission_after_s": round(mine[0] - first, 2),
            "longest_gap_s": round(max(gaps, default=0.0), 2),
        }
    return {
        "admissions": len(times),
        "limit": CONTENTION["limit"],
        "window_seconds": CONTENTION["window"],
        "max_in_sliding_window": _max_in_sliding_window(times, float(CONTENTION["window"])),
        "span_seconds": round(times[-1] - first, 2),
        "workers": per_worker,
    }


def _report(result: dict[str, Any]) -> list[str]:
    s, o, c = result["sustained"], result["overhead"], result["contention"]
    lines = [
        f"# PostgreSQL request budget ({result['when']})",
        "",
        f"4 processes on 2 hosts; `{result['command']}`",
        "",
        "## Sustained (sandbox rate limit = budget)",
        "",
        f"- budget: {s['budget']} per {s['window_seconds']:g} s = {s['budget_per_minute']:.0f} per minute",
        f"- sent: {s['requests']} requests in {s['elapsed_seconds']} s = "
        f"**{s['requests_per_minute']} per minute** "
        f"({s['requests_per_minute'] / s['budget_per_minute']:.1%} of the budget)",
        f"- per fixed window: {s['per_fixed_window']} (budget {s['budget']}; the last window is partial)",
        f"- most in any sliding window: {s['max_in_sliding_window_client']} (client clock), sandbox "
        f"max_in_window {s['sandbox_max_in_window']} (limit {s['budget']})",
        f"- 429s: **{s['sandbox_429']}**; other errors {s['errors']}; tokens issued {s['tokens_issued']}",
        f"- mean time in acquire: {s['mean_acquire_seconds'] * 1000:.1f} ms (waiting for the budget)",
        "",
        "## Lock overhead (budget never the limiter)",
        "",
        "| throttle | requests | requests/s | acquire p50 (ms) | p95 (ms) | mean (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in o.items():
        lines.append(
            f"| {label} | {row['requests']} | {row['requests_per_second']} | {row['p50_acquire_ms']} "
            f"| {row['p95_acquire_ms']} | {row['mean_acquire_ms']} | {row['max_acquire_ms']} |"
        )
    lines += ["", "## Contention (bucket only, 4 x 25 slots at 30 per 2 s)", ""]
    for kind, row in c.items():
        workers = ", ".join(
            f"{n}: first {w['first_admission_after_s']} s, longest gap {w['longest_gap_s']} s"
            for n, w in row["workers"].items()
        )
        lines.append(
            f"- {kind}: {row['admissions']} admissions in {row['span_seconds']} s, most in any 2 s window "
            f"**{row['max_in_sliding_window']}** (limit {row['limit']}); {workers}"
        )
    return lines


def _database(args: argparse.Namespace) -> tuple[str, Any]:
    if args.database_url:
        return args.database_url, None
    sys.path.insert(0, str(ROOT))
    from tests.postgres_server import PostgresServer

    server = PostgresServer.start()
    return server.create_database("bench"), server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=60, help="requests per window (default 60)")
    parser.add_argument("--window", type=float, default=10.0, help="rate window, seconds (default 10)")
    parser.add_argument("--duration", type=float, default=60.0, help="sustained run, seconds (default 60)")
    parser.add_argument("--overhead-duration", type=float, default=15.0, help="overhead run, s (default 15)")
    parser.add_argument("--database-url", help="an existing database (default: start a throwaway server)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="w", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "worker":
        print(json.dumps(_api_worker(args.duration, args.start_at)))
        return
    if args.role == "host":
        return _host(args)
    if args.role == "bucket":
        return _bucket_worker(args.kind, args.database_url, args.key, args.name)
    database_url, server = _database(args)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-budget-") as folder:
            work = Path(folder)
            result = {
                "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": (  # never the database URL: it carries a password
                    f"bench/bench_pg_budget.py --budget {args.budget} --window {args.window:g} "
                    f"--duration {args.duration:g} --overhead-duration {args.overhead_duration:g}"
                    + (" --database-url ..." if args.database_url else "")
                ),
                "sustained": _sustained(args, database_url, work),
                "overhead": _overhead(args, database_url, work) | _acquire_only(database_url, work),
                "contention": _contention(database_url),
            }
    finally:
        if server is not None:
            server.stop()
    lines = _report(result)
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"pg-budget-{stamp}.md").write_text("\n".join(lines) + "\n")
    (out / f"pg-budget-{stamp}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
