"""File kinds and the states of a row, a file and a ledger entry (string enums: the stored text is unchanged).

`StrEnum` members are `str`s equal to their values, so reports, the CLI's output and ledgers written before
these enums existed read and compare exactly as before (`FileState("in_progress")`, `RowStatus("updated")`).
"""

from __future__ import annotations

from enum import StrEnum


class FileKind(StrEnum):
    """What a warehouse file holds, told by its header (see `parsing.py`)."""

    INVENTORY = "inventory"
    DISPATCHES = "dispatches"


class RowStatus(StrEnum):
    """What happened to one row of a warehouse file (see `report.py` for the meaning of each)."""

    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SUPERSEDED = "superseded"
    DISPATCHED = "dispatched"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    REFUSED = "refused"
    PENDING = "pending"  # a dispatch whose outcome could not be confirmed (the file stays claimed)

    @property
    def is_bad(self) -> bool:
        """Not pushed because of the row itself (it counts as rejected in reports and exit codes)."""
        return self in (RowStatus.REJECTED, RowStatus.REFUSED)

    @property
    def was_sent(self) -> bool:
        """Sent to Orderspace and accepted."""
        return self in (RowStatus.UPDATED, RowStatus.DISPATCHED)


class FileOutcome(StrEnum):
    """Where a file ends up: `processed/` (its rows pushed, bad ones reported) or `rejected/`."""

    PROCESSED = "processed"
    REJECTED = "rejected"
    # Not this push's to file away: another process or host has the file (never stored in the ledger).
    ELSEWHERE = "elsewhere"


class FileState(StrEnum):
    """A file's entry in the ledger: being pushed (or crashed mid-push) or finished."""

    IN_PROGRESS = "in_progress"
    DONE = "done"


class EntryState(StrEnum):
    """A ledger entry for an inventory row or a dispatch: announced, confirmed by the API, or refused."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    REFUSED = "refused"
