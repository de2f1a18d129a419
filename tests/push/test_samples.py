"""The sample files shipped for the demo: current with the demo's sandbox, and they push cleanly."""

from __future__ import annotations

from pathlib import Path

from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.warehouse import push_file
from tests.conftest import settings_for

from .conftest import Quiet
from .make_samples import DEMO_CONFIG, SAMPLES_DIR, build_samples


def test_the_samples_are_current_with_the_demo_sandbox():
    for name, content in build_samples().items():
        assert (SAMPLES_DIR / name).read_text(encoding="utf-8") == content, (
            f"data/samples/{name} is stale: run `.venv/bin/python -m tests.push.make_samples`"
        )


def test_the_samples_push_against_the_demo_account(sandbox_factory, tmp_path: Path, throttle_db: Path):
    server = sandbox_factory(**DEMO_CONFIG)
    settings = settings_for(server)
    inbox = tmp_path / "data" / "warehouse" / "inbox"
    inbox.mkdir(parents=True)
    results = {}
    with OrderspaceClient(settings, throttle_db=str(throttle_db)) as client:
        for name in ("stock_levels.csv", "dispatches.csv"):
            dropped = inbox / name
            dropped.write_bytes((SAMPLES_DIR / name).read_bytes())
            results[name] = push_file(dropped, client=client, data_dir=tmp_path / "data", log=Quiet())
    stock, dispatches = results["stock_levels.csv"], results["dispatches.csv"]
    # Nothing was pulled into this data dir: no snapshot to skip unchanged levels and no variants to check
    # SKUs against, so every level is sent (levels are absolute) and Orderspace itself vets the SKUs.
    assert (stock.rows_read, stock.levels_updated, stock.levels_unchanged, stock.rows_rejected) == (
        300,
        300,
        0,
        0,
    )
    assert stock.success and dispatches.success
    assert dispatches.dispatches_created == 4 and dispatches.rows_rejected == 1
    assert "exceeds" in dispatches.describe()
