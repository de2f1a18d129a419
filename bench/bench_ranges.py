"""Request cost of ranges and refreshes at the client's page size, against the sandbox (unlimited budget).

For orders, dispatches and invoices: one old day and a 30-day backfill, into an empty lake and into a full
one, with the records in the range (the minimum is ceil(records / page size), +1 where the last page is
full or the list sends no `has_more`). For inventory levels and products: the full load, an unchanged
refresh (`updated_since`) and a refresh after a few changes.

    .venv/bin/python bench/bench_ranges.py [--scale small] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from _common import connection_for

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.client.client import MAX_PAGE_SIZE
from orderspace_pipelines.defs.partitions import range_tags
from orderspace_pipelines.defs.pull_assets import PULL_ASSETS
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.endpoints import PULLED
from orderspace_pipelines.lake.flatten import record_date
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_sandbox import SandboxConfig, SandboxServer

# The partitioned resources and the field that dates their records (declared in `endpoints.py`).
DATE_FIELD = {e.resource: e.date_field for e in PULLED if e.date_field is not None}


def _resources(server: SandboxServer, data_dir: Path) -> dict[str, Any]:
    return {
        "orderspace": OrderspaceResource(**connection_for(server)),
        "lake": LakeResource(data_dir=str(data_dir)),
    }


def _requests(server: SandboxServer, resource: str) -> int:
    return server.stats()["by_path"].get(f"GET /v1/{resource}", 0)


def _day(record: dict[str, Any], field: str) -> date:
    day = record_date(record[field])
    assert day is not None
    return day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orderspace-bench-ranges-"))
    os.environ["ORDERSPACE_THROTTLE_DB"] = str(work / "throttle.sqlite")
    os.environ["ORDERSPACE_TOKEN_CACHE"] = str(work / "token.json")
    os.environ.pop("DAGSTER_HOME", None)
    config = SandboxConfig(port=0, scale=args.scale, rate_limit=100_000, rate_window=60.0)
    rows: list[dict[str, Any]] = []
    with SandboxServer(config).start() as server:
        data_dir = work / "data"
        resources = _resources(server, data_dir)
        for resource, field in DATE_FIELD.items():
            records = server.store.all(resource)
            # Relative to the resource's own last day in the account (the generated account's newest orders
            # are still open, so its dispatches end weeks earlier; some invoices are forward-dated).
            end_day = max(d for d in (_day(r, field) for r in records) if d <= config.end_date)
            old_day = end_day - timedelta(days=100)
            start, end = end_day - timedelta(days=60), end_day - timedelta(days=31)
            for lake in ("empty", "full"):
                shutil.rmtree(data_dir, ignore_errors=True)
                if lake == "full":
                    assert run_sync(select=[resource], resources=resources).success
                for label, (first, last) in {
                    "one old day": (old_day, old_day),
                    "30 days": (start, end),
                }.items():
                    in_range = sum(1 for record in records if first <= _day(record, field) <= last)
                    server.reset_stats()
                    result = dg.materialize(
                        PULL_ASSETS, selection=[resource], resources=resources, tags=range_tags(first, last)
                    )
                    assert result.success
                    rows.append(
                        {
                            "resource": resource,
                            "range": f"{label} ({first}..{last})",
                            "lake": lake,
                            "records": in_range,
                            "requests": _requests(server, resource),
                            "minimum": max(1, math.ceil(in_range / MAX_PAGE_SIZE)),
                        }
                    )
        shutil.rmtree(data_dir, ignore_errors=True)
        settings = OrderspaceSettings(**connection_for(server))
        for step in ("full load", "unchanged refresh", "after 5 level changes"):
            if step == "after 5 level changes":
                with OrderspaceClient.from_settings(settings) as client:
                    levels = server.store.all("inventory_levels")[:5]
                    client.update_inventory_levels(
                        [{"sku": lv["sku"], "on_hand": lv["on_hand"] + 1} for lv in levels]
                    )
            server.reset_stats()
            assert run_sync(select=["products", "inventory_levels"], resources=resources).success
            for resource in ("products", "inventory_levels"):
                rows.append(
                    {
                        "resource": resource,
                        "range": step,
                        "lake": "-",
                        "records": len(server.store.all(resource)),
                        "requests": _requests(server, resource),
                        "minimum": "-",
                    }
                )
    shutil.rmtree(work, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Range and refresh costs, scale `{args.scale}`, page size {MAX_PAGE_SIZE} ({stamp})",
        "",
        "Command: `.venv/bin/python bench/bench_ranges.py --scale " + args.scale + "`",
        "",
        "| resource | range / step | lake | records | requests | ceil(records / page) |",
        "|---|---|---|---|---|---|",
        *(
            "| "
            + " | ".join(str(r[k]) for k in ("resource", "range", "lake", "records", "requests", "minimum"))
            + " |"
            for r in rows
        ),
    ]
    (out / f"ranges-{stamp}.md").write_text("\n".join(lines) + "\n")
    (out / f"ranges-{stamp}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
