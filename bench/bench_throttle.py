"""Sustained request rate through the shared throttle vs the configured budget.

Starts a sandbox with the budget as its rate limit, then runs N API requests split across P processes, each
with its own OrderspaceClient sharing one throttle file. Reports the achieved rate against the budget, the
sandbox's max_in_window (must stay <= budget) and 429s (must be 0).

    .venv/bin/python bench/bench_throttle.py                    # 150 requests at 120/min, 2 processes (~75 s)
    .venv/bin/python bench/bench_throttle.py --window 10        # the same shape in 10 s windows (~13 s)
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.client.throttle import budget_rates
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxConfig, SandboxServer


def _worker(settings: OrderspaceSettings, throttle_db: str, count: int) -> dict[str, Any]:
    with OrderspaceClient(settings, throttle_db=throttle_db) as client:
        client.auth.token()  # fetch the token first so only API requests are timed
        started = time.time()
        for _ in range(count):
            client.request("GET", "tax_rates")
        return {"started": started, "finished": time.time(), "stats": client.stats.as_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=120, help="requests allowed per window (default 120)")
    parser.add_argument("--window", type=float, default=60.0, help="rate window in seconds (default 60)")
    parser.add_argument("--requests", type=int, default=150, help="total requests (default 150)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()

    with SandboxServer(SandboxConfig(port=0, rate_limit=args.budget, rate_window=args.window)) as server:
        settings = OrderspaceSettings(
            client_id=server.config.client_id,
            client_secret=server.config.client_secret,
            api_url=server.api_url,
            token_url=server.token_url,
            requests_per_minute=args.budget,
            rate_window_seconds=args.window,
        )
        share, extra = divmod(args.requests, args.processes)
        counts = [share + (1 if i < extra else 0) for i in range(args.processes)]
        with tempfile.TemporaryDirectory() as folder:
            throttle_db = str(Path(folder) / "throttle.sqlite")
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
                futures = [pool.submit(_worker, settings, throttle_db, n) for n in counts]
                results = [future.result() for future in futures]
        sandbox_stats = server.stats()

    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    achieved_per_window = args.requests / elapsed * args.window
    ceiling = args.budget * args.window / (budget_rates(args.budget, args.window)[-1].interval / 1000)
    waits = sum(r["stats"]["throttle_wait_seconds"] for r in results)
    acquires = sum(r["stats"]["throttle_acquires"] for r in results)
    print(f"budget:            {args.budget} requests per {args.window:g} s, {args.processes} processes")
    print(f"requests:          {args.requests} in {elapsed:.1f} s")
    print(
        f"achieved rate:     {achieved_per_window:.1f} per {args.window:g} s "
        f"({achieved_per_window / args.budget:.1%} of budget; steady-state ceiling with the safety margin "
        f"{ceiling:.1f}, {ceiling / args.budget:.1%})"
    )
    print(f"max_in_window:     {sandbox_stats['max_in_window']} (limit {args.budget})")
    print(f"429 responses:     {sandbox_stats['rate_limited']}")
    print(f"throttle wait:     mean {waits / max(acquires, 1):.3f} s per request, total {waits:.1f} s")
    ok = sandbox_stats["max_in_window"] <= args.budget and sandbox_stats["rate_limited"] == 0
    print("result:            " + ("OK" if ok else "BUDGET EXCEEDED"))


if __name__ == "__main__":
    main()
