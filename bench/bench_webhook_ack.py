"""Acknowledgement latency of the webhook receiver: time from sending a signed delivery to its 200.

Runs `orderspace-pipelines webhooks serve` as a real process on 127.0.0.1 with a fresh data dir (its
SQLite store in WAL mode with synchronous=FULL: every 200 waits for the fsync), then sends N deliveries
of 1 event and N of 50 events (mixed types, order records with 6 lines, each body distinct so none is a
replay) one after another over one keep-alive connection, as a sender would. Reports p50/p95/p99/max per
size; the target is p99 < 50 ms. Finally checks that the store holds exactly what was acknowledged.

    .venv/bin/python bench/bench_webhook_ack.py              # N=300 per size
    .venv/bin/python bench/bench_webhook_ack.py -n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import start_receiver

from orderspace_pipelines.webhooks.signing import (
    SIGNATURE_HEADER,
    Subscription,
    key_file_path,
    save_subscription,
    sign,
)
from orderspace_pipelines.webhooks.store import SqliteEventStore, store_path

KEY = "bench-signing-key-0123456789abcdefghijklmnopqrst"
TYPES = [
    "order.updated",
    "payment.created",
    "dispatch.created",
    "inventory_level.updated",
    "customer.updated",
]


def _order(n: int) -> dict[str, Any]:
    lines = [
        {"id": f"ol_{n}_{i}", "sku": f"AM-D-{i}", "name": "Amelia Dress", "options": f"Size: {i}",
         "quantity": i + 1, "unit_price": 30.0, "sub_total": 30.0 * (i + 1), "tax_rate": 20.0,
         "invoiced": 0, "paid": 0, "dispatched": 0}
        for i in range(6)
    ]  # fmt: skip
    return {"id": f"or_{n:08d}", "number": n, "created": "2026-11-30T04:00:00Z", "status": "new",
            "customer_id": "cu_gpbOljAn", "company_name": "Sample Customer", "order_lines": lines,
            "currency": "GBP", "net_total": 630.0, "gross_total": 756.0}  # fmt: skip


def _event(kind: str, n: int) -> dict[str, Any]:
    resource = kind.split(".")[0]
    if resource == "payment":
        record: dict[str, Any] = {"invoice_id": f"iv_{n:08d}", "amount": 26.7, "payment_date": "2026-11-30"}
    elif resource == "inventory_level":
        record = {"sku": f"SKU-{n}", "on_hand": 20.0, "available": 20.0}
    elif resource == "order":
        record = _order(n)
    else:
        record = {"id": f"{resource[:2]}_{n:08d}", "company_name": "Blue Sky", "status": "active"}
    return {"event": kind, "data": {resource: record}}


def _bodies(count: int, size: int, start: int) -> list[bytes]:
    return [
        json.dumps([_event(TYPES[(k + i) % len(TYPES)], start + k * size + i) for i in range(size)]).encode()
        for k in range(count)
    ]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = os.environ | {"ORDERSPACE_DATA_DIR": str(data_dir)}
    return start_receiver([sys.executable, "-m", "orderspace_pipelines.cli"], env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=300, help="deliveries per size (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured deliveries first (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        data_dir = Path(tmp) / "data"
        save_subscription(
            key_file_path(data_dir),
            Subscription("wh_bench", "https://bench.invalid/", KEY, datetime.now(UTC)),
        )
        process, url = _start(data_dir)
        results: dict[int, list[float]] = {}
        sent_events = 0
        try:
            with httpx.Client(timeout=30) as client:
                counter = 0
                for size in (1, 50):
                    bodies = _bodies(args.warmup + args.n, size, counter)
                    counter += len(bodies) * size
                    timings = []
                    for k, body in enumerate(bodies):
                        headers = {SIGNATURE_HEADER: sign(KEY, body), "Content-Type": "application/json"}
                        started = time.perf_counter()
                        response = client.post(url, content=body, headers=headers)
                        elapsed = (time.perf_counter() - started) * 1000
                        if response.status_code != 200:
                            raise SystemExit(f"delivery answered {response.status_code}: {response.text}")
                        sent_events += size
                        if k >= args.warmup:
                            timings.append(elapsed)
                    results[size] = timings
                    mean_bytes = statistics.mean(len(b) for b in bodies)
                    print(
                        f"{size:>2} event(s)/delivery ({mean_bytes / 1024:.1f} KiB): n={len(timings)} "
                        f"p50={_percentile(timings, 0.50):.2f} ms p95={_percentile(timings, 0.95):.2f} ms "
                        f"p99={_percentile(timings, 0.99):.2f} ms max={max(timings):.2f} ms"
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        with SqliteEventStore(store_path(data_dir)) as store:
            stored = store.stats().events
        print(
            f"stored events: {stored} (acknowledged {sent_events}); receiver exit code {process.returncode}"
        )
        worst = max(_percentile(timings, 0.99) for timings in results.values())
        print(f"target p99 < 50 ms: {'met' if worst < 50 and stored == sent_events else 'NOT met'}")


if __name__ == "__main__":
    main()
