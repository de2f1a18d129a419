"""Build `data/samples/stock_levels.csv` and `data/samples/dispatches.csv` from the demo's sandbox account.

The demo runs the sandbox at scale "small", seed 42; the account is deterministic, so these files are too.
Regenerate with `.venv/bin/python -m tests.push.make_samples` (`test_samples.py` checks they are current).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orderspace_sandbox import SandboxConfig, SandboxServer

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"
DEMO_CONFIG = {"scale": "small", "seed": 42}
STOCK_ROWS = 300


def stock_levels_csv(levels: list[dict[str, Any]]) -> str:
    """300 SKUs in SKU order; every fifth keeps its level (shows `unchanged`), the others go up by 3-12."""
    rows = ["sku,on_hand"]
    for index, level in enumerate(sorted(levels, key=lambda item: item["sku"])[:STOCK_ROWS]):
        change = (index % 5) * 3  # 0 for every fifth SKU
        rows.append(f"{level['sku']},{level['on_hand'] + change}")
    return "\n".join(rows) + "\n"


def dispatches_csv(orders: list[dict[str, Any]]) -> str:
    """Three untouched open orders shipped in full, one partly dispatched order's first open line, and one row
    asking for more than is outstanding (to show a rejected row in the report)."""
    rows = ["order_number,sku,quantity,comments"]

    def goods(order: dict[str, Any]) -> list[dict[str, Any]]:
        return [line for line in order["order_lines"] if not line.get("shipping")]

    open_orders = [
        o
        for o in sorted(orders, key=lambda item: item["number"])
        if o["status"] in ("new", "invoiced", "released") and not any(line["dispatched"] for line in goods(o))
    ]
    for order in open_orders[:3]:
        for line in goods(order):
            rows.append(f"{order['number']},{line['sku']},{line['quantity']},Royal Mail tracked 48")
    partial = next(
        o for o in sorted(orders, key=lambda item: item["number"]) if o["status"] == "part_fulfilled"
    )
    line = next(line for line in goods(partial) if line["quantity"] > line["dispatched"])
    rows.append(
        f"{partial['number']},{line['sku']},{line['quantity'] - line['dispatched']},Courier (balance)"
    )
    over = goods(open_orders[3])[0]
    rows.append(f"{open_orders[3]['number']},{over['sku']},{over['quantity'] + 5},Courier")
    return "\n".join(rows) + "\n"


def build_samples() -> dict[str, str]:
    """File name -> content, from a fresh demo-configured sandbox."""
    with SandboxServer(SandboxConfig(port=0, **DEMO_CONFIG)) as server:
        return {
            "stock_levels.csv": stock_levels_csv(server.store.all("inventory_levels")),
            "dispatches.csv": dispatches_csv(server.store.all("orders")),
        }


def main() -> int:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for name, content in build_samples().items():
        (SAMPLES_DIR / name).write_text(content, encoding="utf-8")
        print(f"wrote {SAMPLES_DIR / name} ({content.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
