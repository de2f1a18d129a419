"""Events for the change-feed tests (shapes from the reference's webhook examples), stored in a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from orderspace_pipelines.lake import storage
from orderspace_pipelines.webhooks.events import parse_delivery
from orderspace_pipelines.webhooks.store import SqliteEventStore

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def order(
    oid: str,
    created: str = "2026-11-02T10:00:00Z",
    *,
    status: str = "new",
    dispatched: float = 0.0,
    lines: int = 2,
) -> dict[str, Any]:
    return {
        "id": oid,
        "number": 1000,
        "created": created,
        "status": status,
        "customer_id": "cu_1",
        "company_name": "Blue Sky",
        "currency": "GBP",
        "net_total": 20.0 * lines,
        "gross_total": 24.0 * lines,
        "order_lines": [
            {
                "id": f"{oid}_l{n}",
                "sku": f"SKU-{n}",
                "name": f"Item {n}",
                "quantity": 5.0,
                "unit_price": 4.0,
                "sub_total": 20.0,
                "invoiced": 0.0,
                "paid": 0.0,
                "dispatched": dispatched,
            }
            for n in range(lines)
        ],
    }


def invoice(
    iid: str, invoice_date: str = "2026-11-03", *, paid: bool = False, payments: list | None = None
) -> dict[str, Any]:
    return {
        "id": iid,
        "number": "INV-1",
        "invoice_date": invoice_date,
        "customer_id": "cu_1",
        "paid": paid,
        "currency": "GBP",
        "net_total": 40.0,
        "gross_total": 48.0,
        "invoice_lines": [
            {"sku": "SKU-0", "name": "Item 0", "quantity": 2.0, "unit_price": 20.0, "sub_total": 40.0}
        ],
        "payments": payments or [],
    }


def dispatch(did: str, created: str = "2026-11-05T08:00:00Z") -> dict[str, Any]:
    return {
        "id": did,
        "order_id": "or_1",
        "order_number": 1000,
        "created": created,
        "dispatch_lines": [{"order_line_id": "or_1_l0", "sku": "SKU-0", "name": "Item 0", "quantity": 1.0}],
    }


def customer(cid: str, name: str = "Blue Sky") -> dict[str, Any]:
    return {"id": cid, "company_name": name, "created_at": "2021-03-09T13:08:51Z", "status": "active"}


def product(pid: str, name: str = "Tee", variants: int = 2) -> dict[str, Any]:
    return {
        "id": pid,
        "code": "T1",
        "name": name,
        "active": True,
        "product_variants": [
            {"id": f"{pid}_v{n}", "sku": f"{pid}-{n}", "unit_price": 9.5} for n in range(variants)
        ],
    }


def ev(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "data": {kind.split(".", 1)[0]: record}}


class Feed:
    """A real event store in a data dir; `deliver` stores one delivery with a later receipt time each call."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.store = SqliteEventStore(data_dir / "webhooks" / "events.sqlite")
        self.clock = T0

    def deliver(self, *events: dict[str, Any]) -> None:
        body = json.dumps(list(events)).encode()
        self.clock += timedelta(seconds=1)
        self.store.add_delivery(body, parse_delivery(body), received_at=self.clock)


def table_rows(data_dir: Path, table: str) -> list[dict[str, Any]]:
    """Every stored row of a table with its partition day (`_day`), sorted for comparison."""
    root = storage.table_dir(data_dir, table)
    rows: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.parquet")) if root.is_dir() else []:
        day = path.parent.name.split("=", 1)[1] if path.parent.name.startswith("date=") else None
        for row in pq.read_table(path).to_pylist():
            rows.append({**row, "_day": day})
    return sorted(rows, key=lambda row: json.dumps(row, default=str, sort_keys=True))


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every Parquet file's bytes under the lake (for 'same lake' assertions)."""
    root = storage.parquet_root(data_dir)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}
