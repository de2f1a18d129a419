"""Fixtures for the warehouse push tests: a real client on the sandbox, a data dir, pulled-data writers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.lake import storage
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_pipelines.warehouse import PushResult, WarehouseFolders, push_file
from orderspace_pipelines.warehouse.push import PushOptions
from orderspace_sandbox import SandboxServer
from tests.conftest import BOTH_BACKENDS


class Quiet:
    """A logger that keeps what it was told (for assertions on progress messages)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def info(self, msg: str, *args: object, **kwargs: object) -> None:
        self.messages.append(msg)

    def warning(self, msg: str, *args: object, **kwargs: object) -> None:
        self.messages.append(msg)


# Runs a test on both ledgers: `@BOTH_LEDGERS` above a test that pushes through `state_url` / `push_env`.
BOTH_LEDGERS = BOTH_BACKENDS


@pytest.fixture
def push_env(
    orderspace_env: dict[str, str], state_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """`orderspace_env` plus `ORDERSPACE_DATABASE_URL` when the test runs on the Postgres ledger."""
    if state_url is None:
        return orderspace_env
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", state_url)
    return orderspace_env | {"ORDERSPACE_DATABASE_URL": state_url}


@pytest.fixture
def data_dir(push_env: dict[str, str]) -> Path:
    path = Path(push_env["ORDERSPACE_DATA_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def folders(data_dir: Path) -> WarehouseFolders:
    return WarehouseFolders.under(data_dir).ensure()


@pytest.fixture
def client(settings: OrderspaceSettings, throttle_db: Path) -> Iterator[OrderspaceClient]:
    with OrderspaceClient(settings, throttle_db=str(throttle_db), backoff_base=0.01) as api:
        yield api


@pytest.fixture
def drop(folders: WarehouseFolders):
    """Write a file into the inbox (bytes or text) and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = folders.inbox / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture
def push(client: OrderspaceClient, data_dir: Path, drop, state_url: str | None):
    """Drop a file and push it with the real client (on the test's ledger); returns the PushResult."""

    def run(name: str, content: str | bytes, **options: float) -> PushResult:
        path = drop(name, content)
        return push_file(
            path,
            client=client,
            data_dir=data_dir,
            options=PushOptions(**options),
            log=Quiet(),
            database_url=state_url,
        )

    return run


def write_pulled_variants(data_dir: Path, skus: list[str]) -> None:
    """What the pull lands for product variants, through the lake's writer (only `sku` matters here)."""
    table = pa.table({"id": [f"pv_{i}" for i in range(len(skus))], "sku": skus})
    storage.write_whole(data_dir, {"product_variants": table})


def write_pulled_snapshot(data_dir: Path, levels: list[dict], taken_at: datetime | None = None) -> None:
    """One inventory snapshot, through the lake's writer (its file name and folder are the lake's)."""
    taken_at = taken_at or datetime.now(UTC)
    table = pa.table(
        {
            "sku": [level["sku"] for level in levels],
            "on_hand": pa.array([level["on_hand"] for level in levels], pa.float64()),
            "available": pa.array([level["available"] for level in levels], pa.float64()),
            "snapshot_at": pa.array([taken_at] * len(levels), pa.timestamp("us", tz="UTC")),
        }
    )
    storage.write_snapshot(data_dir, taken_at, table)


def write_pulled_orders(data_dir: Path, orders: list[dict], day: date = date(2026, 11, 1)) -> None:
    """One day of pulled orders, through the lake's writer (only `id` and `number` matter here)."""
    table = pa.table({"id": [o["id"] for o in orders], "number": [o["number"] for o in orders]})
    storage.write_partition(data_dir, day, {"orders": table})


def add_products(server: SandboxServer, count: int, variants: int = 10) -> list[str]:
    """Grow the sandbox's catalogue through its store (as an admin would in Orderspace); returns new SKUs."""
    skus: list[str] = []
    for p in range(count):
        code = f"ZZ{p:03d}"
        variant_skus = [f"{code}-{v:02d}" for v in range(variants)]
        server.store.create_product(
            {
                "product": {
                    "code": code,
                    "name": f"Test product {p}",
                    "variant_options": ["Size"],
                    "product_variants": [
                        {"sku": sku, "options": {"Size": str(v)}} for v, sku in enumerate(variant_skus)
                    ],
                }
            }
        )
        skus.extend(variant_skus)
    return skus


def posts(server: SandboxServer, resource: str) -> int:
    return server.stats()["by_path"].get(f"POST /v1/{resource}", 0)
