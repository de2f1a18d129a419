"""Fast unit tests of the push's pure rules on plain values (no server, no Dagster).

The end-to-end tests over real HTTP (the other modules here) stay the proof that the pieces work together;
these pin each rule on its own: number parsing, row validation, the inventory triage, dispatch planning,
the result counts, and that the state enums keep the stored text (old ledgers still read).
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orderspace_pipelines.warehouse import SqliteLedger
from orderspace_pipelines.warehouse.dispatches import (
    DispatchRow,
    OrderGroup,
    build_body,
    check_row,
    lines_of,
    merge_by_order,
    nothing_dispatched_yet,
    order_totals,
    plan_dispatch,
    take_outstanding,
)
from orderspace_pipelines.warehouse.dispatches import validate_rows as validate_dispatch_rows
from orderspace_pipelines.warehouse.inventory import Level, SkuKnowledge, triage
from orderspace_pipelines.warehouse.inventory import validate_rows as validate_inventory_rows
from orderspace_pipelines.warehouse.parsing import CsvRow, parse_bytes
from orderspace_pipelines.warehouse.quantities import canonical, from_api, parse_quantity, to_json
from orderspace_pipelines.warehouse.report import PushResult, RowResult
from orderspace_pipelines.warehouse.states import EntryState, FileKind, FileOutcome, FileState, RowStatus

# -- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", "12"),
        (" 2.500 ", "2.5"),
        ("+3", "3"),
        ("1e3", "1000"),
        (".25", "0.25"),
        ("1000000000", "1000000000"),
    ],
)
def test_valid_stock_levels_parse_to_their_canonical_value(raw: str, expected: str) -> None:
    value, error = parse_quantity(raw, "on_hand", positive=False)
    assert error is None
    assert value is not None and canonical(value) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", "on_hand 'abc' is not a number"),
        ("NaN", "on_hand 'NaN' is not a number"),
        ("Infinity", "on_hand 'Infinity' is not a number"),
        ("1,000", "on_hand '1,000' is not a number"),
        ("\u0663", "on_hand '\u0663' is not a number"),  # an Arabic-Indic 3: Decimal would take it
        ("-1", "on_hand -1 is negative; a stock level cannot be below zero"),
        ("1000000001", "on_hand 1000000001 is larger than 1,000,000,000, the most the push accepts"),
        ("1.2345", "on_hand 1.2345 has more than 3 decimal places"),
        ("", "on_hand is empty"),
    ],
)
def test_bad_stock_levels_are_refused_with_a_message_naming_the_problem(raw: str, message: str) -> None:
    assert parse_quantity(raw, "on_hand", positive=False) == (None, message)


def test_dispatch_quantities_must_be_above_zero_and_name_their_kind_when_negative() -> None:
    assert parse_quantity("0.5", "quantity", positive=True) == (Decimal("0.5"), None)
    assert parse_quantity("-2", "quantity", positive=True) == (
        None,
        "quantity -2 is negative; a dispatch quantity cannot be below zero",
    )
    assert parse_quantity("1.2000", "quantity", positive=True) == (Decimal("1.2000"), None)  # zeros dropped


def test_values_go_to_the_api_as_integers_when_whole_and_come_back_from_any_numeric_form() -> None:
    assert to_json(Decimal("5.000")) == 5 and isinstance(to_json(Decimal("5.000")), int)
    assert to_json(Decimal("2.5")) == 2.5
    assert from_api(3) == Decimal(3)
    assert from_api("4.50") == Decimal("4.50")
    assert from_api(1.25) == Decimal("1.25")
    for not_a_number in (None, True, "", "abc", "NaN", "Infinity"):
        assert from_api(not_a_number) is None, not_a_number


# -- inventory rows -----------------------------------------------------------------------------------------


def _rows(*cells: tuple[str, str], column: str = "on_hand") -> list[CsvRow]:
    return [CsvRow(line, {"sku": sku, column: value}) for line, (sku, value) in enumerate(cells, start=2)]


def test_the_last_row_of_a_sku_wins_and_earlier_ones_are_superseded() -> None:
    levels, results = validate_inventory_rows(_rows(("A", "1"), ("B", "2"), ("A", "3")), "on_hand")
    assert levels == [Level(3, "B", Decimal(2)), Level(4, "A", Decimal(3))]
    assert [(r.line, r.status, r.reason) for r in results] == [
        (2, RowStatus.SUPERSEDED, "superseded by line 4 (the last row for a SKU wins)")
    ]


def test_an_invalid_last_row_rejects_every_row_of_its_sku_and_no_older_value_is_sent() -> None:
    levels, results = validate_inventory_rows(_rows(("A", "1"), ("A", "x"), ("", "4")), "on_hand")
    assert levels == []
    assert [(r.line, r.status) for r in results] == [
        (2, RowStatus.REJECTED),
        (3, RowStatus.REJECTED),
        (4, RowStatus.REJECTED),
    ]
    assert (
        results[0].reason
        == "not sent: line 3, the last row for this SKU, is invalid (on_hand 'x' is not a number)"
    )
    assert results[1].reason == "on_hand 'x' is not a number"
    assert results[2].reason == "sku is empty"


def _knowledge(known: set[str], unchecked: set[str] | None = None, **reference: int) -> SkuKnowledge:
    levels = {sku: {"on_hand": value} for sku, value in reference.items()}
    return SkuKnowledge(known=set(known), unchecked=set(unchecked or ()), reference=levels)


def test_triage_sends_only_what_is_not_settled() -> None:
    levels = [
        Level(2, "GONE", Decimal(1)),  # unknown SKU
        Level(3, "A", Decimal(5)),  # confirmed by an earlier attempt
        Level(4, "B", Decimal(6)),  # refused by an earlier attempt
        Level(5, "C", Decimal(7)),  # already 7: unchanged
        Level(6, "D", Decimal(8)),  # pending earlier, already 8: resent anyway (its fate is unknown)
        Level(7, "E", Decimal(9)),  # different from the reference: sent
        Level(8, "NEW", Decimal(1)),  # unchecked (too many unknown SKUs to look up): sent
    ]
    knowledge = _knowledge({"A", "B", "C", "D", "E"}, {"NEW"}, C=7, D=8, E=1)
    already = {
        3: (EntryState.CONFIRMED, None),
        4: (EntryState.REFUSED, "no such thing"),
        6: (EntryState.PENDING, None),
    }
    to_send, results = triage(levels, knowledge, already, "on_hand")
    assert [level.line for level in to_send] == [6, 7, 8]
    assert [(r.line, r.status, r.reason) for r in results] == [
        (2, RowStatus.REJECTED, "unknown SKU 'GONE': Orderspace has no product variant with it"),
        (3, RowStatus.UPDATED, "sent by an earlier attempt"),
        (4, RowStatus.REFUSED, "no such thing"),
        (5, RowStatus.UNCHANGED, "on_hand is already 7"),
    ]


# -- dispatch rows and planning ------------------------------------------------------------------------------


def _dispatch_row(line: int, sku: str, quantity: str, key: str = "no:1204", stated: str = "") -> DispatchRow:
    return DispatchRow(line, key[3:], key, sku, Decimal(quantity), "", stated)


def _order(status: str, lines: list[tuple[str, Any, Any]], number: str = "1204") -> dict[str, Any]:
    return {
        "id": "or_1",
        "number": number,
        "status": status,
        "order_lines": [{"sku": s, "quantity": q, "dispatched": d} for s, q, d in lines],
    }


def test_a_dispatch_row_names_every_problem_it_has() -> None:
    bad = check_row(CsvRow(5, {"order_number": "12A", "sku": "", "quantity": "0"}))
    assert isinstance(bad, RowResult)
    assert bad.status == RowStatus.REJECTED
    assert bad.reason == "order_number '12A' is not a number; sku is empty; quantity 0 must be more than zero"
    good = check_row(CsvRow(6, {"order_number": "#1204", "order_id": "or_9", "sku": "A", "quantity": "2"}))
    assert good == DispatchRow(6, "or_9", "id:or_9", "A", Decimal(2), "", "1204")
    rows, results = validate_dispatch_rows(
        [CsvRow(2, {"order_number": " 1204.0 ", "sku": "A", "quantity": "1"})]
    )
    assert results == [] and rows[0].group_key == "no:1204"


def test_order_totals_skip_shipping_lines_and_sum_each_sku() -> None:
    lines = [
        {"sku": "A", "quantity": 2, "dispatched": 1},
        {"sku": "A", "quantity": "1.5", "dispatched": 0},
        {"sku": "SHIP", "quantity": 1, "dispatched": 0, "shipping": True},
        "not a line",
    ]
    assert order_totals(lines) == ({"A": Decimal("3.5")}, {"A": Decimal(1)})


def test_rows_take_what_is_outstanding_in_file_order() -> None:
    rows = [_dispatch_row(2, "A", "2"), _dispatch_row(3, "A", "1"), _dispatch_row(4, "Z", "1")]
    sendable, rejected = take_outstanding(rows, {"A": Decimal(3)}, {"A": Decimal(1)}, label="order 1204")
    assert [row.line for row in sendable] == [2]
    assert [(r.line, r.reason) for r in rejected] == [
        (
            3,
            "quantity 1 exceeds the 0 still outstanding for A on order 1204 after earlier rows of this "
            "file (2) (ordered 3, dispatched 1)",
        ),
        (4, "SKU Z is not on order 1204"),
    ]


def test_the_planner_rejects_rows_naming_two_orders_and_orders_that_cannot_ship() -> None:
    group = OrderGroup("id:or_1", "or_1", [_dispatch_row(2, "A", "1", "id:or_1", stated="99")])
    sendable, rejected = plan_dispatch(group, _order("new", [("A", 2, 0)]))
    assert sendable == [] and "names two different orders" in rejected[0].reason
    group = OrderGroup("no:1204", "1204", [_dispatch_row(2, "A", "1")])
    sendable, rejected = plan_dispatch(group, _order("fulfilled", [("A", 2, 0)]))
    assert sendable == []
    assert rejected[0].reason == (
        "order 1204 is fulfilled: everything on it has already been dispatched; nothing can be dispatched"
    )
    sendable, rejected = plan_dispatch(group, {"number": "1204", "status": "new"})
    assert rejected[0].reason == "order 1204 came back without order lines; cannot check it"


def test_the_body_sums_skus_and_carries_only_the_warehouse_comments() -> None:
    rows = [
        DispatchRow(2, "1204", "no:1204", "A", Decimal(1), "box 1", ""),
        DispatchRow(3, "1204", "no:1204", "A", Decimal("0.5"), "box 1", ""),
        DispatchRow(4, "1204", "no:1204", "B", Decimal(2), "", ""),
    ]
    assert build_body("or_1", rows) == {
        "order_id": "or_1",
        "dispatch_lines": [{"sku": "A", "quantity": 1.5}, {"sku": "B", "quantity": 2}],
        "comments": "box 1",
    }
    assert lines_of(build_body("or_1", rows)["dispatch_lines"]) == {"A": Decimal("1.5"), "B": Decimal(2)}
    # Reconciling compares totals: order, splitting and zero lines do not matter.
    assert lines_of(
        [{"sku": "B", "quantity": 2}, {"sku": "A", "quantity": 1}, {"sku": "A", "quantity": "0.5"}]
    ) == (lines_of([{"sku": "A", "quantity": 1.5}, {"sku": "B", "quantity": 2}, {"sku": "C", "quantity": 0}]))


def test_nothing_dispatched_yet_only_when_every_line_says_zero() -> None:
    assert nothing_dispatched_yet(_order("new", [("A", 2, 0), ("B", 1, "0")]))
    assert not nothing_dispatched_yet(_order("new", [("A", 2, 0), ("B", 1, 1)]))
    assert not nothing_dispatched_yet({"order_lines": [{"sku": "A", "quantity": 1}]})  # no field: unknown
    assert not nothing_dispatched_yet({})


def test_rows_naming_one_order_by_id_and_by_number_merge_under_the_id() -> None:
    by_number = OrderGroup("no:1204", "1204", [_dispatch_row(3, "A", "1")], order_id="or_1")
    by_id = OrderGroup("id:or_1", "or_1", [_dispatch_row(2, "B", "1", "id:or_1")], order_id="or_1")
    unknown = OrderGroup("no:9", "9", [_dispatch_row(4, "A", "1", "no:9")])
    merged = merge_by_order([by_number, by_id, unknown])
    assert [(g.group_key, [r.line for r in g.rows]) for g in merged] == [("id:or_1", [2, 3]), ("no:9", [4])]


# -- results and states --------------------------------------------------------------------------------------


def test_result_counts_and_exit_codes_follow_the_row_statuses() -> None:
    result = PushResult(
        file="f.csv", sha256="0" * 64, kind=FileKind.DISPATCHES, outcome=FileOutcome.PROCESSED
    )
    result.set_rows(
        [
            RowResult(4, RowStatus.REJECTED, "bad"),
            RowResult(2, RowStatus.DISPATCHED, dispatch_id="d1"),
            RowResult(3, RowStatus.DISPATCHED, dispatch_id="d1"),
            RowResult(5, RowStatus.DISPATCHED, dispatch_id="d2"),
        ]
    )
    assert [row.line for row in result.rows] == [2, 3, 4, 5]
    assert (result.dispatches_created, result.rows_rejected, result.levels_updated) == (2, 1, 0)
    assert result.exit_code == 3
    payload = json.loads(result.to_json())
    assert payload["kind"] == "dispatches" and payload["outcome"] == "processed"
    assert payload["status_counts"] == {"dispatched": 3, "rejected": 1}
    assert result.to_csv().splitlines()[1] == "2,dispatched,,,,d1,"


def test_states_keep_their_stored_text() -> None:
    assert [str(s) for s in RowStatus] == [
        "updated", "unchanged", "superseded", "dispatched", "duplicate", "rejected", "refused", "pending"
    ]  # fmt: skip
    assert [s.value for s in FileState] == ["in_progress", "done"]
    assert [s.value for s in EntryState] == ["pending", "confirmed", "refused"]
    # `elsewhere` (another process or host has the file) is a push's outcome only, never stored in the ledger.
    assert [s.value for s in FileOutcome] == ["processed", "rejected", "elsewhere"]
    assert {s for s in RowStatus if s.is_bad} == {RowStatus.REJECTED, RowStatus.REFUSED}
    assert {s for s in RowStatus if s.was_sent} == {RowStatus.UPDATED, RowStatus.DISPATCHED}
    assert parse_bytes(b"sku,on_hand\nA,1\n").kind == "inventory"


def test_a_ledger_written_with_plain_strings_reads_as_enums(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    SqliteLedger(path).close()  # the schema
    with sqlite3.connect(path) as db:  # rows as an older version wrote them: plain text, no enums
        db.execute(
            "INSERT INTO files (sha256, first_name, kind, state, outcome, final_path, started_at) "
            "VALUES ('abc', 'f.csv', 'inventory', 'done', 'processed', '/x', 't')"
        )
        db.execute(
            "INSERT INTO inventory_rows (file_sha256, line, sku, value, state, updated_at) "
            "VALUES ('abc', 2, 'A', '1', 'confirmed', 't')"
        )
        db.execute(
            "INSERT INTO dispatches (file_sha256, group_key, order_id, marker, body, state, pending_at, "
            "updated_at) VALUES ('abc', 'no:1', 'or_1', '[wh:x]', '{}', 'pending', 't', 't')"
        )
    with SqliteLedger(path) as ledger:
        record = ledger.file("abc")
        assert record is not None
        assert (record.state, record.outcome, record.kind) == (
            FileState.DONE,
            FileOutcome.PROCESSED,
            FileKind.INVENTORY,
        )
        assert ledger.inventory_states("abc") == {2: (EntryState.CONFIRMED, None)}
        entry = ledger.dispatch("abc", "no:1")
        assert entry is not None and entry.state is EntryState.PENDING and entry.existing_ids is None
        ledger.dispatch_confirmed("abc", "no:1", "d1")
        ledger.begin_file("new", "g.csv", FileKind.DISPATCHES)
    with sqlite3.connect(path) as db:  # and what it writes is the same plain text
        assert db.execute("SELECT state, dispatch_id FROM dispatches").fetchall() == [("confirmed", "d1")]
        assert db.execute("SELECT kind, state FROM files WHERE sha256 = 'new'").fetchall() == [
            ("dispatches", "in_progress")
        ]
