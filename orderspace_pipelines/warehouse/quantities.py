"""Quantities in warehouse files: decimal numbers, range- and precision-checked when the file is read.

The API types `on_hand`, `available` and dispatch line `quantity` as *number* (not integer; see the API
reference's inventory levels and dispatches models), so decimal quantities are accepted. Which precision and
which largest value Orderspace stores is not documented; the bounds below are **guesses**, chosen so that any
value a warehouse could mean passes and a typo (a barcode pasted into the quantity column, `1e400`) does not:

* at most `MAX_DECIMALS` (3) digits after the point (after trailing zeros are dropped: `2.500` is `2.5`);
* at most `MAX_QUANTITY` (one billion), so every valid value fits a 64-bit integer and a double exactly;
* plain ASCII decimal notation (`12`, `12.0`, `0.25`, `+3`, `1e3`): no thousands separators, no `NaN`,
  no `Infinity`, no non-ASCII digits (Python's `Decimal` would take `'٣'` as 3).

Values travel as `Decimal` inside the push, are stored in the ledger as their canonical text (so no valid
value can overflow a column) and go to the API as a JSON integer when whole, else as a JSON number.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MAX_QUANTITY = Decimal(1_000_000_000)  # guess: the API documents no bound
MAX_DECIMALS = 3  # guess: the API documents no precision
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)


def parse_quantity(raw: str, column: str, *, positive: bool) -> tuple[Decimal | None, str | None]:
    """(value, error) for one cell: zero or more (stock levels) or more than zero (`positive`, dispatches)."""
    text = raw.strip()
    if not text:
        return None, f"{column} is empty"
    if not _NUMBER.fullmatch(text):
        return None, f"{column} {text!r} is not a number"
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern only lets valid literals through
        return None, f"{column} {text!r} is not a number"
    if value == 0:
        value = Decimal(0)  # "-0", "0.000"
    if value < 0:
        kind = "a dispatch quantity" if positive else "a stock level"
        return None, f"{column} {text} is negative; {kind} cannot be below zero"
    if positive and value == 0:
        return None, f"{column} {text} must be more than zero"
    if value > MAX_QUANTITY:
        return None, f"{column} {text} is larger than {MAX_QUANTITY:,}, the most the push accepts"
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > MAX_DECIMALS:
        return None, f"{column} {text} has more than {MAX_DECIMALS} decimal places"
    return value, None


def canonical(value: Decimal) -> str:
    """`Decimal('2.50')` -> `'2.5'`, `Decimal('1E+3')` -> `'1000'` (what reports and the ledger hold)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def to_json(value: Decimal) -> int | float:
    """A JSON number for the API: an integer when whole, else the (exactly representable) float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def from_api(value: object) -> Decimal | None:
    """A quantity as the API sent it (int, float or numeric string), or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
