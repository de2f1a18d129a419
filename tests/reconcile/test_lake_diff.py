"""`orderspace_devtools.lake_diff`: a full pull equals the sandbox; a changed field, a missing row, an extra
row, a duplicate, a record in the wrong day and a change on the account's side are each reported."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from orderspace_devtools.lake_diff import (
    compared_tables,
    diff_lake,
    diff_rows,
    truth_from_sandbox,
    truth_from_store,
)
from orderspace_pipelines.lake import storage
from orderspace_sandbox import SandboxServer


@pytest.fixture
def pulled(pristine_lake: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny account's pulled lake (`sandbox` is an identical fresh account)."""
    return Path(shutil.copytree(pristine_lake, tmp_path / "data"))


def _first_day(data_dir: Path, table: str) -> date:
    return storage.stored_days(data_dir, table)[0]


def test_every_lake_table_but_the_snapshots_is_compared() -> None:
    tables = compared_tables()
    assert {"orders", "order_lines", "invoice_lines", "invoice_payments", "dispatch_lines"} <= set(tables)
    assert {"product_variants", "inventory_levels", "customers", "tax_rates"} <= set(tables)
    assert "inventory_level_snapshots" not in tables


def test_a_fresh_full_pull_equals_the_sandbox(pulled: Path, sandbox: SandboxServer) -> None:
    diff = diff_lake(pulled, truth_from_store(sandbox.store))
    assert diff.equal, diff.summary()
    assert diff.tables["order_lines"].lake_rows > 0
    assert diff.tables["invoice_payments"].lake_rows > 0
    # The same over HTTP (a sandbox in another process).
    assert diff_lake(pulled, truth_from_sandbox(sandbox.base_url)).equal


def test_a_changed_field_is_reported_with_both_values(pulled: Path, sandbox: SandboxServer) -> None:
    day = _first_day(pulled, "orders")
    orders = storage.read_partition(pulled, "orders", day)
    assert orders is not None
    target = orders.column("id")[0].as_py()
    status = orders.column("status").to_pylist()
    truth_status = status[0]
    status[0] = "cancelled" if truth_status != "cancelled" else "new"
    changed = orders.set_column(orders.schema.get_field_index("status"), "status", pa.array(status))
    storage.write_partition(pulled, day, {"orders": changed})
    diff = diff_lake(pulled, truth_from_store(sandbox.store))
    assert diff.unequal() == ["orders"]
    assert diff.tables["orders"].differing == {(target,): {"status": (status[0], truth_status)}}
    assert f"{target}: status lake={status[0]!r} account={truth_status!r}" in diff.summary()


def test_a_missing_row_and_an_extra_row_are_reported(pulled: Path, sandbox: SandboxServer) -> None:
    day = _first_day(pulled, "order_lines")
    lines = storage.read_partition(pulled, "order_lines", day)
    assert lines is not None
    gone = (lines.column("id")[0].as_py(), lines.column("order_id")[0].as_py())
    extra_row = lines.slice(0, 1).to_pylist()[0] | {"id": "ol_not_in_account"}
    kept = lines.filter(pc.not_equal(lines.column("id"), gone[0]))
    with_extra = pa.concat_tables([kept, pa.Table.from_pylist([extra_row], schema=lines.schema)])
    storage.write_partition(pulled, day, {"order_lines": with_extra})
    diff = diff_lake(pulled, truth_from_store(sandbox.store)).tables["order_lines"]
    assert diff.missing == [gone]
    assert diff.extra == [("ol_not_in_account", gone[1])]
    assert not diff.differing


def test_a_whole_table_row_gone_from_the_account_is_extra(pulled: Path, sandbox: SandboxServer) -> None:
    truth = truth_from_store(sandbox.store)
    customer = truth["customers"][0]["id"]
    truth["customers"] = truth["customers"][1:]  # as if deleted in the account (the sandbox is shared)
    diff = diff_lake(pulled, truth)
    assert diff.unequal() == ["customers"]
    assert diff.tables["customers"].extra == [(customer,)]


def test_a_record_in_the_wrong_day_differs_by_its_date(pulled: Path, sandbox: SandboxServer) -> None:
    day = _first_day(pulled, "dispatches")
    tables = {t: storage.read_partition(pulled, t, day) for t in ("dispatches", "dispatch_lines")}
    storage.write_partition(pulled, date(2001, 1, 1), tables)
    storage.write_partition(pulled, day, dict.fromkeys(tables))
    diff = diff_lake(pulled, truth_from_store(sandbox.store))
    assert set(diff.unequal()) == {"dispatches", "dispatch_lines"}
    changes = diff.tables["dispatches"].differing
    assert changes and all(set(columns) == {"date"} for columns in changes.values())
    assert all(columns["date"] == (date(2001, 1, 1), day) for columns in changes.values())


def test_a_row_stored_twice_is_a_duplicate(pulled: Path, sandbox: SandboxServer) -> None:
    data = storage.read_partition(pulled, "invoices", _first_day(pulled, "invoices"))
    assert data is not None
    storage.write_partition(pulled, date(2001, 1, 1), {"invoices": data.slice(0, 1)})
    diff = diff_lake(pulled, truth_from_store(sandbox.store)).tables["invoices"]
    assert diff.duplicates == [(data.column("id")[0].as_py(),)]


def test_diff_rows_normalises_only_column_order_and_absent_columns() -> None:
    same = diff_rows("tax_rates", [{"rate": 20.0, "id": "t1", "name": None}], [{"id": "t1", "rate": 20.0}])
    assert same.equal
    typed = diff_rows("tax_rates", [{"id": "t1", "rate": 20}], [{"id": "t1", "rate": 20.0}])
    assert typed.differing == {("t1",): {"rate": (20, 20.0)}}  # an int is not the declared float
    loaded = diff_rows("tax_rates", [{"id": "t1", "_loaded_at": 1}], [{"id": "t1", "_loaded_at": 2}])
    assert loaded.equal  # when a row was written is not account data
    unknown = [{"id": "t1", "new_field": "x"}]
    assert diff_rows("tax_rates", unknown, [{"id": "t1"}]).differing == {("t1",): {"new_field": ("x", None)}}


def test_unknown_tables_are_refused(pulled: Path, sandbox: SandboxServer) -> None:
    with pytest.raises(KeyError, match="inventory_level_snapshots"):
        diff_lake(pulled, truth_from_store(sandbox.store), tables=["inventory_level_snapshots"])
