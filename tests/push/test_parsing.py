"""Reading warehouse files: header matching, kinds, malformed CSV (no network)."""

from __future__ import annotations

from orderspace_pipelines.warehouse import FileKind, parse_bytes
from orderspace_pipelines.warehouse.parsing import canonical_column


def test_headers_match_whatever_their_case_and_spacing():
    assert canonical_column(" On Hand ") == "on_hand"
    assert canonical_column("Order-Number") == "order_number"
    parsed = parse_bytes(b"\xef\xbb\xbfSKU,AVAILABLE\r\nA-1,3\r\n")
    assert (parsed.kind, parsed.value_column) == (FileKind.INVENTORY, "available")
    assert [(row.line, row.values) for row in parsed.rows] == [(2, {"sku": "A-1", "available": "3"})]


def test_dispatch_files_are_told_by_their_header():
    parsed = parse_bytes(b'order_id,sku,quantity,comments,extra\nor_1,A,2,"Sent, tracked",x\n')
    assert parsed.kind is FileKind.DISPATCHES and parsed.file_error is None
    assert parsed.rows[0].values["comments"] == "Sent, tracked"
    assert parse_bytes(b"order_number,sku\n1,A\n").file_error.startswith("the header [order_number, sku]")
    assert "repeats column(s) sku" in parse_bytes(b"sku,sku,on_hand\nA,B,1\n").file_error


def test_malformed_rows_are_bad_rows_and_the_rest_is_kept():
    parsed = parse_bytes(b'sku,on_hand\nA,1,\nB,2,3\n\nC,3\n,\n"D,4\n')
    assert [row.values["sku"] for row in parsed.rows] == ["A", "C"]  # a trailing empty cell is tolerated
    reasons = {bad.line: bad.reason for bad in parsed.bad_rows}
    assert "has 3 fields but the header has 2" in reasons[3]
    assert "blank" in reasons[6]
    assert "cannot be read as CSV" in reasons[7]


def test_line_endings_and_multi_line_fields_keep_line_numbers_right():
    parsed = parse_bytes(b"sku,on_hand\rA,1\rB,2\r")  # classic Mac line endings
    assert [(row.line, row.values["sku"]) for row in parsed.rows] == [(2, "A"), (3, "B")]
    parsed = parse_bytes(b'order_id,sku,quantity,comments\nor_1,A,1,"two\nlines"\nor_1,B,1,x\n')
    assert [(row.line, row.values["sku"]) for row in parsed.rows] == [(2, "A"), (4, "B")]
    assert parsed.rows[0].values["comments"] == "two\nlines"


def test_a_broken_line_does_not_end_the_file():
    parsed = parse_bytes(b'sku,on_hand\nA,1\n"B,2\nC,3\nD,"4"x\nE,5\n')
    assert [row.values["sku"] for row in parsed.rows] == ["A", "C", "E"]
    assert {bad.line for bad in parsed.bad_rows} == {3, 5}


def test_an_oversized_field_is_a_bad_row_not_the_end_of_the_file():
    parsed = parse_bytes(b"sku,on_hand\nA,1\n" + b"B" * 300_000 + b",2\nC,3\n")
    assert [row.values["sku"] for row in parsed.rows] == ["A", "C"]
    [bad] = parsed.bad_rows
    assert bad.line == 3 and "sku is 300,000 characters long" in bad.reason and len(bad.raw) < 300
