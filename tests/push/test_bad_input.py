"""Bad input never costs good rows: every class of malformed warehouse input, pushed over real HTTP.

Each test mixes good rows with one class of bad input and asserts that the bad rows are reported with a
reason naming the problem while the good rows land in the sandbox.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from orderspace_pipelines import cli
from orderspace_pipelines.warehouse import SqliteLedger, WarehouseFolders, hooks, push_file
from orderspace_pipelines.warehouse.dispatches import OrderGroup, group_rows, plan_dispatch, validate_rows
from orderspace_pipelines.warehouse.parsing import CsvRow, parse_bytes
from orderspace_pipelines.warehouse.push import PushOptions
from orderspace_pipelines.warehouse.quantities import parse_quantity
from orderspace_sandbox import SandboxServer

from .conftest import BOTH_LEDGERS, Quiet, posts, write_pulled_variants
from .test_dispatch_push import OPEN, dispatches_for, find_order, goods


def levels(server: SandboxServer) -> dict[str, dict]:
    return {level["sku"]: level for level in server.store.all("inventory_levels")}


def by_line(result) -> dict[int, object]:
    return {row.line: row for row in result.rows}


@pytest.fixture
def skus(sandbox, data_dir) -> list[str]:
    """The sandbox's SKUs, also written as pulled variants (so no row needs a look-up)."""
    known = sorted(levels(sandbox))
    write_pulled_variants(data_dir, known)
    return known


# --- numbers ------------------------------------------------------------------------------------------


def test_out_of_range_and_non_numbers_are_rejected_and_the_rest_lands(sandbox, push, skus, folders):
    bad = [
        "99999999999999999999999",  # used to overflow the ledger's integer column and strand the file
        "1000000001",
        "1e400",
        "NaN",
        "inf",
        "-Infinity",
        "-1",
        "2.0001",
        "1,000",
        "0x10",
        "\u0663",  # an Arabic-Indic 3: Python's Decimal would take it
    ]
    good = ["7", "1e2", "+4", "1000000000", "3.250"]
    body = "sku,on_hand\n" + "".join(f'{skus[i]},"{value}"\n' for i, value in enumerate(good + bad))

    result = push("numbers.csv", body)

    rows = by_line(result)
    assert result.outcome == "processed" and result.exit_code == 3
    assert [rows[2 + i].status for i in range(len(good))] == ["updated"] * len(good)
    live = levels(sandbox)
    assert [live[skus[i]]["on_hand"] for i in range(len(good))] == [7, 100, 4, 1_000_000_000, 3.25]
    reasons = [rows[2 + len(good) + i].reason for i in range(len(bad))]
    assert all(rows[2 + len(good) + i].status == "rejected" for i in range(len(bad)))
    assert "larger than 1,000,000,000" in reasons[0] and "larger than" in reasons[1]
    assert "larger than" in reasons[2]
    assert all("is not a number" in r for r in (reasons[3], reasons[4], reasons[5], reasons[8], reasons[9]))
    assert "negative" in reasons[6] and "more than 3 decimal places" in reasons[7]
    assert "is not a number" in reasons[10]
    assert (folders.processed / "numbers.csv").exists()


def test_quantity_rules_as_a_unit():
    assert parse_quantity("12.50", "q", positive=True) == (Decimal("12.50"), None)
    assert parse_quantity("0", "on_hand", positive=False) == (Decimal(0), None)
    assert parse_quantity("-0", "on_hand", positive=False) == (Decimal(0), None)
    assert "more than zero" in (parse_quantity("0", "quantity", positive=True)[1] or "")
    assert "more than zero" in (parse_quantity("0.000", "quantity", positive=True)[1] or "")
    assert parse_quantity(" ", "quantity", positive=True) == (None, "quantity is empty")
    assert "not a number" in (parse_quantity("1e99999", "q", positive=False)[1] or "")


def test_the_ledger_stores_levels_so_that_no_valid_value_overflows(sandbox, push, skus, folders):
    result = push("big.csv", f"sku,on_hand\n{skus[0]},1000000000\n{skus[1]},0.125\n")
    assert result.levels_updated == 2
    with SqliteLedger(folders.ledger_path) as ledger:
        stored = ledger._db.execute("SELECT line, value FROM inventory_rows ORDER BY line").fetchall()
    assert [tuple(row) for row in stored] == [(2, "1000000000"), (3, "0.125")]


# --- an unexpected failure mid-file ---------------------------------------------------------------


@BOTH_LEDGERS
def test_an_unexpected_error_mid_file_reports_files_away_and_resumes(
    sandbox, client, data_dir, drop, skus, folders, state_url
):
    path = drop("boom.csv", "sku,on_hand\n" + "".join(f"{sku},{70 + i}\n" for i, sku in enumerate(skus[:5])))
    seen = 0

    def bug(point: str) -> None:  # a bug that strikes after the second batch was accepted
        nonlocal seen
        if point == "inventory.posted":
            seen += 1
            if seen == 2:
                raise RuntimeError("something nobody foresaw")

    hooks.install(bug)
    try:
        result = push_file(
            path,
            client=client,
            data_dir=data_dir,
            options=PushOptions(batch_size=2),
            log=Quiet(),
            database_url=state_url,
        )
    finally:
        hooks.install(None)

    assert result.stopped_by and "RuntimeError: something nobody foresaw" in result.stopped_by
    assert result.exit_code == 5 and result.outcome == "rejected"
    assert Path(result.final_path) == folders.rejected / "boom.csv" and Path(result.final_path).exists()
    assert not any(folders.work.iterdir())  # nothing stranded in work/
    report = json.loads((folders.rejected / "boom.csv.report.json").read_text())
    statuses = {row["line"]: (row["status"], row["reason"]) for row in report["rows"]}
    assert statuses[2][0] == statuses[3][0] == "updated" and "sent before the push stopped" in statuses[2][1]
    assert statuses[4][0] == "rejected" and "being sent when the push stopped" in statuses[4][1]
    assert statuses[6][0] == "rejected" and "something nobody foresaw" in statuses[6][1]
    sandbox.reset_stats()

    # The same file dropped again resumes: the confirmed rows are not sent again.
    again = push_file(
        drop("boom.csv", (folders.rejected / "boom.csv").read_bytes()),
        client=client,
        data_dir=data_dir,
        options=PushOptions(batch_size=2),
        log=Quiet(),
        database_url=state_url,
    )

    rows = by_line(again)
    assert again.exit_code == 0 and again.outcome == "processed"
    assert rows[2].reason == rows[3].reason == "sent by an earlier attempt"
    assert posts(sandbox, "inventory_levels") == 2  # lines 4-5, then line 6
    assert [levels(sandbox)[sku]["on_hand"] for sku in skus[:5]] == [70, 71, 72, 73, 74]


# --- reading the file ---------------------------------------------------------------------------------


def test_an_oversized_field_costs_only_its_row(sandbox, push, skus):
    huge = "X" * 200_000  # larger than the csv module's default field limit (131,072)
    long = "Y" * 20_000  # within the csv module's limit, beyond the push's
    body = (
        f'sku,on_hand,note\n{skus[0]},11,ok\n{skus[1]},12,{huge}\n{skus[2]},13,"{long}"\n'
        f"{skus[3]},14,ok\n{skus[4]},15,ok\n"
    )

    result = push("huge.csv", body)

    rows = by_line(result)
    assert rows[3].status == rows[4].status == "rejected"
    assert "note is 200,000 characters long" in rows[3].reason and "20,000" in rows[4].reason
    assert rows[2].status == rows[5].status == rows[6].status == "updated"
    assert levels(sandbox)[skus[4]]["on_hand"] == 15


def test_broken_csv_lines_cost_only_themselves(sandbox, push, skus):
    body = (
        f"sku,on_hand\n{skus[0]},21\n"
        f'{skus[1]},"22"x\n'  # text after a closing quote
        f"{skus[2]},2\x003\n"  # a NUL byte
        f'"{skus[3]},24\n'  # a quote never closed: swallows the rest of the file as one field
        f"{skus[4]},25\n{skus[5]},26\n"
    )

    result = push("broken.csv", body)

    rows = by_line(result)
    assert rows[3].status == "rejected" and "cannot be read as CSV" in rows[3].reason
    assert rows[4].status == "rejected" and "NUL byte" in rows[4].reason
    assert rows[5].status == "rejected"
    assert [rows[n].status for n in (2, 6, 7)] == ["updated"] * 3
    assert levels(sandbox)[skus[5]]["on_hand"] == 26


def test_a_line_that_is_not_utf8_costs_only_itself(sandbox, push, skus):
    body = (
        f"sku,on_hand,note\n{skus[0]},31,ok\n".encode()
        + f"{skus[1]},32,caf\u00e9\n".encode("cp1252")  # a Windows-1252 byte in a UTF-8 file
        + f"{skus[2]},33,ok\n".encode()
    )

    result = push("mixed-encoding.csv", body)

    rows = by_line(result)
    assert rows[3].status == "rejected" and "not UTF-8" in rows[3].reason and "0xe9" in rows[3].reason
    assert rows[2].status == rows[4].status == "updated"


def test_a_utf16_file_with_its_bom_is_read(sandbox, push, skus):
    body = f"sku,on_hand\r\n{skus[0]},41\r\n{skus[1]},42\r\n".encode("utf-16")  # Excel's "Unicode text"

    result = push("utf16.csv", body)

    assert result.levels_updated == 2 and levels(sandbox)[skus[1]]["on_hand"] == 42


def test_repeated_columns_reject_only_when_ambiguous(sandbox, push, skus):
    fine = push("notes.csv", f"sku,on_hand,note,note\n{skus[0]},51,a,b\n")
    assert fine.levels_updated == 1  # a repeated column the push ignores is harmless
    ambiguous = push("twice.csv", f"sku,on_hand,On Hand\n{skus[0]},52,53\n")
    assert ambiguous.outcome == "rejected" and "repeats column(s) on_hand" in (ambiguous.file_error or "")
    assert ambiguous.exit_code == 4


def test_empty_blank_and_header_only_files_are_rejected_whole():
    for data, expected in (
        ("sku,on_hand\nA,1\n".encode("utf-16-le"), "UTF-16 without a BOM"),
        (b"", "empty"),
        (b"\xef\xbb\xbf \r\n\n", "empty"),
        (b"sku,on_hand\r\n", "header but no data rows"),
        (b"sku,on_hand\n,\n", None),  # a blank row: a bad row, not a file error
    ):
        parsed = parse_bytes(data)
        if expected is None:
            assert parsed.file_error is None and parsed.bad_rows and "blank" in parsed.bad_rows[0].reason
        else:
            assert expected in (parsed.file_error or ""), data


# --- reports ------------------------------------------------------------------------------------------


def test_the_csv_report_never_holds_a_formula_and_the_json_is_exact(sandbox, push, skus, folders):
    formulas = ['=HYPERLINK("http://x.example","click")', "+SUM(1)", "@SUM(1)", "-3+cmd"]
    body = "sku,on_hand\n" + "".join(f'"{text.replace(chr(34), chr(34) * 2)}",1\n' for text in formulas)
    body += f"{skus[0]},-5\n{skus[1]},1\n"  # a value echoed back as '-5', and a good row

    result = push("formulas.csv", body)

    assert result.exit_code == 3
    with (folders.processed / "formulas.csv.report.csv").open(newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    for text in formulas:
        assert "'" + text in cells
    assert "'-5" in cells
    report = json.loads((folders.processed / "formulas.csv.report.json").read_text())
    assert [row["sku"] for row in report["rows"][:4]] == formulas
    assert report["rows"][4]["value"] == "-5"


# --- dispatch rows ------------------------------------------------------------------------------------


def test_order_id_and_order_number_naming_different_orders_is_rejected(sandbox, push):
    first = find_order(sandbox, OPEN, untouched=True)
    second = find_order(sandbox, OPEN, untouched=True, skip=1)
    line = goods(first)[0]
    body = (
        "order_id,order_number,sku,quantity\n"
        f"{first['id']},{second['number']},{line['sku']},1\n"  # two different orders
        f"{first['id']},{first['number']},{goods(first)[1]['sku']},1\n"  # consistent
    )

    result = push("mismatch.csv", body)

    rows = by_line(result)
    assert rows[2].status == "rejected"
    assert first["id"] in rows[2].reason and str(first["number"]) in rows[2].reason
    assert str(second["number"]) in rows[2].reason and "two different orders" in rows[2].reason
    assert rows[3].status == "dispatched"
    assert dispatches_for(sandbox, second["id"]) == []
    [made] = dispatches_for(sandbox, first["id"])
    assert [dl["sku"] for dl in made["dispatch_lines"]] == [goods(first)[1]["sku"]]
    assert result.exit_code == 3


def test_rows_naming_one_order_by_id_and_by_number_make_one_dispatch(sandbox, push):
    order = find_order(sandbox, OPEN, untouched=True)
    lines = goods(order)
    body = (
        "order_id,order_number,sku,quantity\n"
        f"{order['id']},,{lines[0]['sku']},1\n"
        f",{order['number']},{lines[1]['sku']},1\n"
    )

    result = push("both.csv", body)

    assert result.dispatches_created == 1 and len(dispatches_for(sandbox, order["id"])) == 1
    assert result.exit_code == 0


def test_a_cancelled_order_is_not_dispatched(sandbox, push):
    cancelled = next(o for o in sandbox.store.all("orders") if o["status"] == "cancelled" and goods(o))
    result = push(
        "cancelled.csv", f"order_id,sku,quantity\n{cancelled['id']},{goods(cancelled)[0]['sku']},1\n"
    )
    assert result.rows[0].status == "rejected" and "is cancelled" in result.rows[0].reason
    assert dispatches_for(sandbox, cancelled["id"]) == []
    assert result.exit_code == 4


def _order(status: str, lines: list[tuple[str, object, object]]) -> dict:
    return {
        "id": "or_x",
        "number": 7,
        "status": status,
        "order_lines": [{"sku": s, "quantity": q, "dispatched": d} for s, q, d in lines],
    }


def _group(rows: list[tuple[str, str]]) -> OrderGroup:
    csv_rows = [CsvRow(i + 2, {"order_id": "or_x", "sku": s, "quantity": q}) for i, (s, q) in enumerate(rows)]
    good, bad = validate_rows(csv_rows)
    assert not bad
    [group] = group_rows(good)
    return group


def test_which_statuses_the_planner_dispatches():
    group = _group([("A", "1")])
    for status in ("new", "invoiced", "released", "part_fulfilled"):
        sendable, rejected = plan_dispatch(group, _order(status, [("A", 2, 0)]))
        assert len(sendable) == 1 and not rejected, status
    for status in ("fulfilled", "cancelled", "standing_order", "preorder"):
        sendable, rejected = plan_dispatch(group, _order(status, [("A", 2, 0)]))
        assert not sendable and f"is {status}" in rejected[0].reason, status


def test_decimal_dispatch_quantities_are_planned_against_decimal_lines():
    sendable, rejected = plan_dispatch(
        _group([("A", "1.5"), ("A", "0.25"), ("B", "0.5")]), _order("new", [("A", 2.5, 1), ("B", "0.25", 0)])
    )
    assert [row.line for row in sendable] == [2]
    assert "exceeds the 0 still outstanding" in rejected[0].reason
    assert "exceeds the 0.25 still outstanding" in rejected[1].reason


# --- exit codes ---------------------------------------------------------------------------------------


def test_the_push_command_exit_codes(sandbox, orderspace_env, skus, tmp_path: Path, capsys):
    def run(name: str, content: str) -> int:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        return cli.main(["push", str(path)])

    assert run("clean.csv", f"sku,on_hand\n{skus[0]},61\n") == 0
    assert run("some-bad.csv", f"sku,on_hand\n{skus[0]},62\n{skus[1]},-1\n") == 3
    assert run("all-bad.csv", "item,qty\nA,1\n") == 4
    assert run("clean.csv", f"sku,on_hand\n{skus[0]},61\n") == 0  # a duplicate: nothing to do, all done

    def bug(point: str) -> None:
        if point == "inventory.posted":
            raise RuntimeError("bug")

    hooks.install(bug)
    try:
        assert run("stopped.csv", f"sku,on_hand\n{skus[2]},63\n") == 5
    finally:
        hooks.install(None)
    assert cli.main(["push", str(tmp_path / "nowhere.csv")]) == 2
    sandbox.faults.inject("503_empty", count=50, path_prefix="/v1/inventory_levels")  # Orderspace down
    assert run("down.csv", f"sku,on_hand\n{skus[3]},64\n") == 1
    folders = WarehouseFolders.under(Path(orderspace_env["ORDERSPACE_DATA_DIR"]))
    assert [p.name for p in folders.work.iterdir() if p.name.endswith("down.csv")]  # kept for a re-run
    captured = capsys.readouterr()
    assert "the push did not finish" in captured.err and "rows rejected" in captured.out
