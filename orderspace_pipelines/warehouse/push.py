"""Push one warehouse file end to end: claim, read, validate, send, report, file away.

`push_file` is what the Dagster op runs (and nothing else does the work): it takes an API client and the data
directory, so it can also be driven without Dagster. Steps:

1. Hash the file and claim its content in the ledger (`Ledger.claim`: a per-content lock file on one machine,
   a Postgres advisory lock across hosts), so two runs never push the same bytes at once; move the file from
   the inbox into `work/` (a path that is gone is looked up there: re-executing a crashed run resumes it).
   The ledger is SQLite under the data dir, or Postgres when `database_url` (`ORDERSPACE_DATABASE_URL`) is
   given (`ledger.open_ledger`).
2. The ledger knows the hash: `done` -> duplicate (nothing sent, the report says of which file);
   `in_progress` -> a crashed attempt, resumed (confirmed rows are not resent, pending ones reconciled).
3. Parse by header; push inventory or dispatches (see `inventory.py`, `dispatches.py`).
4. Write the report beside the file's destination, record the outcome in the ledger, move the file.
   Outcome `rejected` when the file could not be read as a warehouse file or no row of it was usable
   (every row rejected/refused); `processed` otherwise, bad rows reported.

An Orderspace failure (API down, token refused, outcome of a dispatch unknown), a file system error or the
shared ledger's database going away (`LedgerError`) leaves the file claimed in `work/` and the ledger as it
was, and propagates: the run fails and a re-run picks up where it stopped. Any other exception during a
file (a bug, input nothing above foresaw) never strands it: the report is written from what the ledger
knows was sent (those rows say so; every other row is reported not pushed, with the error), the file moves
to `rejected/`, and its ledger entry stays `in_progress`, so dropping the same file again resumes it without
resending what was sent. `PushResult.stopped_by` names the error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from orderspace_pipelines.client.errors import OrderspaceError
from orderspace_pipelines.warehouse import dispatches, inventory
from orderspace_pipelines.warehouse.files import (
    FileMissingError,
    FileTakenError,
    WarehouseFolders,
    finished_copy,
    free_destination,
    original_name,
    sha256_of,
    work_name,
)
from orderspace_pipelines.warehouse.hooks import checkpoint
from orderspace_pipelines.warehouse.ledger import ClaimHeld, FileRecord, Ledger, LedgerError, open_ledger
from orderspace_pipelines.warehouse.parsing import ParsedFile, parse_bytes
from orderspace_pipelines.warehouse.protocols import PushClient, PushLog
from orderspace_pipelines.warehouse.report import PushResult, RowResult, write_report
from orderspace_pipelines.warehouse.states import EntryState, FileKind, FileOutcome, FileState, RowStatus

DEFAULT_SNAPSHOT_MAX_AGE_SECONDS = 900.0


@dataclass(frozen=True)
class PushOptions:
    """Knobs of the push (defaults suit production)."""

    snapshot_max_age_seconds: float = DEFAULT_SNAPSHOT_MAX_AGE_SECONDS
    batch_size: int = inventory.API_BATCH_LIMIT


def locate(path: Path, folders: WarehouseFolders, sha256: str | None = None) -> Path:
    """The file to push: `path` itself, or (when it is gone) its claimed copy in `work/`."""
    path = Path(path).resolve()
    if path.is_file():
        return path
    pattern = f"{sha256[:16] if sha256 else '*'}__{path.name}"
    matches = sorted(p for p in folders.work.glob(pattern) if p.is_file())
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise FileMissingError(
            f"{path} is gone and {len(matches)} claimed copies of {path.name!r} are in {folders.work}; "
            "push one of them by its path"
        )
    finished = finished_copy(folders, original_name(path), sha256) if sha256 else None
    if finished is not None:
        raise FileTakenError(
            f"{original_name(path)} was pushed by another process or host sharing this warehouse folder: it "
            f"is in {finished.parent.name}/{finished.name}; nothing was done here"
        )
    raise FileMissingError(f"{path} does not exist (and no claimed copy of it is in {folders.work})")


def _locate_and_hash(path: Path, folders: WarehouseFolders, sha256: str | None) -> tuple[Path, str]:
    """The file to push and its hash. A file another process claimed (moved into `work/`) between the two
    steps is looked up again where it went."""
    source = locate(path, folders, sha256)
    try:
        return source, sha256_of(source)
    except FileNotFoundError:
        source = locate(path, folders, sha256)
        return source, sha256_of(source)


@contextmanager
def _turn(
    ledger: Ledger, digest: str, source: Path, path: Path, folders: WarehouseFolders, log: PushLog
) -> Iterator[None]:
    """Hold the ledger's claim on the content. A file found only as a claimed copy in `work/` whose claim is
    held is being pushed by another process or host right now: say so (`FileTakenError`) rather than wait.
    (A claimed copy nobody holds is a crashed attempt, resumed here.)"""
    with ExitStack() as stack:
        try:
            stack.enter_context(ledger.claim(digest, wait=False))
        except ClaimHeld:
            if source.parent == folders.work and Path(path).resolve() != source:
                raise FileTakenError(
                    f"{original_name(source)} is being pushed by another process or host sharing this "
                    f"warehouse folder (claimed as work/{source.name}); nothing was done here"
                ) from None
            # The same bytes are in flight (this file, or a copy under another name): wait, then see.
            log.info(f"{original_name(source)}: waiting for another push of the same content to finish")
            stack.enter_context(ledger.claim(digest))
        yield


def push_file(
    path: Path,
    *,
    client: PushClient,
    data_dir: Path,
    sha256: str | None = None,
    options: PushOptions | None = None,
    log: PushLog | None = None,
    database_url: SecretStr | str | None = None,
) -> PushResult:
    """Push one warehouse file (see the module docstring); returns what happened to each row, or (outcome
    `elsewhere`) that another process or host sharing the warehouse folder has the file.

    `database_url` (the settings' `database_url`): the ledger lives in that Postgres database, shared by
    every host; None: the SQLite ledger under `data_dir`."""
    log = log or logging.getLogger(__name__)
    try:
        result = _push_file(
            path,
            client=client,
            data_dir=data_dir,
            sha256=sha256,
            options=options,
            log=log,
            database_url=database_url,
        )
    except FileTakenError as taken:
        result = PushResult(
            file=original_name(Path(path)),
            sha256=sha256 or "",
            kind=None,
            outcome=FileOutcome.ELSEWHERE,
            taken_elsewhere=str(taken),
        )
    log.info(result.summary())
    return result


def _push_file(
    path: Path,
    *,
    client: PushClient,
    data_dir: Path,
    sha256: str | None,
    options: PushOptions | None,
    log: PushLog,
    database_url: SecretStr | str | None,
) -> PushResult:
    options = options or PushOptions()
    folders = WarehouseFolders.under(data_dir).ensure()
    source, digest = _locate_and_hash(path, folders, sha256)
    baseline = (client.stats.requests, client.stats.throttle_wait_seconds)
    ledger_path = folders.ledger_path
    with open_ledger(ledger_path, database_url) as ledger, _turn(ledger, digest, source, path, folders, log):
        checkpoint("file.locked")
        if not source.exists():  # another run took this very file while we waited for the lock
            source = locate(path, folders, digest)
            digest = sha256_of(source)
        claimed = folders.work / work_name(digest, original_name(source))
        if source != claimed:
            if claimed.exists():
                source.unlink()  # the same bytes are already claimed (resumed below)
            else:
                os.replace(source, claimed)
        mover = _FileAway(folders, client, baseline)
        try:
            result = _push_claimed(
                claimed,
                digest,
                mover=mover,
                client=client,
                ledger=ledger,
                data_dir=data_dir,
                options=options,
                log=log,
            )
        except (OrderspaceError, dispatches.DispatchOutcomeUnknownError, OSError, LedgerError):
            raise  # resumable: the file stays claimed in work/, a re-run picks up where this one stopped
        except Exception as exc:  # anything else must not strand the file
            result = _stopped(claimed, digest, exc, mover=mover, ledger=ledger, log=log)
    return result


def _stopped(
    claimed: Path, digest: str, exc: Exception, *, mover: _FileAway, ledger: Ledger, log: PushLog
) -> PushResult:
    """Report and file away a file whose push stopped on an unexpected error (see the module docstring)."""
    error = f"{type(exc).__name__}: {exc}"[:500]
    log.warning(f"{original_name(claimed)}: the push stopped on an unexpected error ({error})")
    logging.getLogger(__name__).exception("push of %s stopped", claimed.name)
    record = ledger.file(digest)
    sent = {**_inventory_sent_before(ledger, digest), **_dispatches_sent_before(ledger, digest)}
    lines = _lines_of(claimed, also=sent)
    reason = (
        f"not pushed: the push stopped on an unexpected error ({error}); drop the file again to push the "
        "rest (rows already sent are not sent again)"
    )
    result = PushResult(
        file=original_name(claimed),
        sha256=digest,
        kind=record.kind if record else None,
        outcome=FileOutcome.REJECTED,
        stopped_by=error,
    )
    result.rows_read = len(lines)
    result.set_rows([sent.get(line) or RowResult(line, RowStatus.REJECTED, reason) for line in lines])
    # No ledger outcome: the hash stays in_progress, so the same file dropped again resumes.
    return mover(result, claimed, ledger=None, outcome=FileOutcome.REJECTED)


def _inventory_sent_before(ledger: Ledger, digest: str) -> dict[int, RowResult]:
    """Results for the inventory rows the ledger says were sent (or being sent) before the push stopped."""
    sent: dict[int, RowResult] = {}
    for line, (state, _) in ledger.inventory_states(digest).items():
        if state == EntryState.CONFIRMED:
            sent[line] = RowResult(line, RowStatus.UPDATED, "sent before the push stopped")
        elif state == EntryState.PENDING:
            reason = "was being sent when the push stopped; dropping the file again resends it (harmless)"
            sent[line] = RowResult(line, RowStatus.REJECTED, reason)
    return sent


def _dispatches_sent_before(ledger: Ledger, digest: str) -> dict[int, RowResult]:
    """Results for the dispatch rows the ledger says were sent (or being sent) before the push stopped."""
    sent: dict[int, RowResult] = {}
    for entry in ledger.dispatches_of(digest):
        if entry.state == EntryState.CONFIRMED:
            status, reason = RowStatus.DISPATCHED, "sent before the push stopped"
        elif entry.state == EntryState.PENDING:
            status = RowStatus.REJECTED
            reason = (
                "the dispatch was being sent when the push stopped; dropping the file again looks "
                "for it in Orderspace before sending it again"
            )
        else:
            continue
        for line in entry.row_lines or []:
            sent[line] = RowResult(line, status, reason, dispatch_id=entry.dispatch_id or "")
    return sent


def _lines_of(claimed: Path, *, also: Iterable[int]) -> list[int]:
    """The lines of the file's rows (good or bad) and `also`; only `also` when the file cannot be read."""
    try:
        parsed = parse_bytes(claimed.read_bytes())
    except Exception:  # the report is still written from the ledger alone
        return sorted(set(also))
    return sorted(set(parsed.all_lines()) | set(also))


def _push_claimed(
    claimed: Path,
    digest: str,
    *,
    mover: _FileAway,
    client: PushClient,
    ledger: Ledger,
    data_dir: Path,
    options: PushOptions,
    log: PushLog,
) -> PushResult:
    """Push a claimed file: finish an interrupted move, report a duplicate or a bad file, or push its rows."""
    name = original_name(claimed)
    parsed = parse_bytes(claimed.read_bytes())
    record = ledger.begin_file(digest, name, parsed.kind)
    if record.state == FileState.DONE and record.final_path and not Path(record.final_path).exists():
        return _finish_move(claimed, name, record, parsed.kind)
    result = PushResult(file=name, sha256=digest, kind=parsed.kind, outcome=FileOutcome.PROCESSED)
    result.rows_read = len(parsed.rows) + len(parsed.bad_rows)
    if record.state == FileState.DONE:
        _duplicate(result, parsed, record, log)
        return mover(result, claimed, ledger=None, outcome=record.outcome)
    if record.state == FileState.IN_PROGRESS and ledger.inventory_states(digest):
        log.info(f"{name}: resuming an earlier attempt")
    if parsed.file_error:
        _file_rejected(result, parsed, parsed.file_error, log)
        return mover(result, claimed, ledger=ledger, outcome=FileOutcome.REJECTED)
    log.info(
        f"{name}: {parsed.kind} file, {len(parsed.rows)} rows to check, {len(parsed.bad_rows)} unreadable"
    )
    rows = [RowResult(bad.line, RowStatus.REJECTED, bad.reason) for bad in parsed.bad_rows]
    rows += _push_rows(
        parsed, digest, client=client, ledger=ledger, data_dir=data_dir, options=options, log=log
    )
    result.set_rows(rows)
    usable = any(not row.status.is_bad for row in result.rows)
    return mover(
        result, claimed, ledger=ledger, outcome=FileOutcome.PROCESSED if usable else FileOutcome.REJECTED
    )


def _finish_move(claimed: Path, name: str, record: FileRecord, kind: FileKind | None) -> PushResult:
    """The run crashed between recording the outcome and moving the file: finish the move."""
    assert record.final_path is not None
    final = Path(record.final_path)
    os.replace(claimed, final)
    outcome = record.outcome or FileOutcome.PROCESSED
    result = PushResult(file=name, sha256=record.sha256, kind=kind, outcome=outcome)
    result.final_path = str(final)
    result.report_path = str(final.with_name(final.name + ".report.json"))
    return result


def _duplicate(result: PushResult, parsed: ParsedFile, record: FileRecord, log: PushLog) -> None:
    """A file whose content was pushed before: every row reported a duplicate, nothing sent."""
    result.duplicate_of = record.first_name
    reason = f"duplicate of {record.first_name} (same content, already {record.outcome}); nothing sent"
    result.rows = [RowResult(line, RowStatus.DUPLICATE, reason) for line in parsed.all_lines()]
    log.info(f"{result.file}: {reason}")


def _file_rejected(result: PushResult, parsed: ParsedFile, error: str, log: PushLog) -> None:
    """A file that cannot be read as a warehouse file: every row reported rejected with the file's error."""
    result.file_error = error
    reason = f"file rejected: {error}"
    result.rows = [RowResult(line, RowStatus.REJECTED, reason) for line in parsed.all_lines()]
    log.warning(f"{result.file}: rejected: {error}")


def _push_rows(
    parsed: ParsedFile,
    digest: str,
    *,
    client: PushClient,
    ledger: Ledger,
    data_dir: Path,
    options: PushOptions,
    log: PushLog,
) -> list[RowResult]:
    """Send the good rows of a readable file (inventory or dispatches); a result for each."""
    if parsed.kind == FileKind.INVENTORY:
        return inventory.push_inventory(
            parsed,
            sha256=digest,
            client=client,
            ledger=ledger,
            data_dir=data_dir,
            log=log,
            snapshot_max_age_seconds=options.snapshot_max_age_seconds,
            batch_size=options.batch_size,
        )
    return dispatches.push_dispatches(
        parsed, sha256=digest, client=client, ledger=ledger, data_dir=data_dir, log=log
    )


class _FileAway:
    """Finishes a file: counts, report beside the destination, outcome in the ledger, then the move.

    In that order, so a crash at any point resumes cleanly: before the ledger write the file is redone (its
    rows already confirmed are not resent); after it, only the move is left to do.
    """

    def __init__(self, folders: WarehouseFolders, client: PushClient, baseline: tuple[int, float]) -> None:
        self.folders = folders
        self.client = client
        self.baseline = baseline

    def __call__(
        self, result: PushResult, claimed: Path, *, ledger: Ledger | None, outcome: FileOutcome | None
    ) -> PushResult:
        """Report, record and move `result`'s file; `outcome` None (an old ledger entry) means processed."""
        outcome = outcome or FileOutcome.PROCESSED
        result.outcome = outcome
        result.requests = self.client.stats.requests - self.baseline[0]
        result.throttle_wait_seconds = round(self.client.stats.throttle_wait_seconds - self.baseline[1], 3)
        if result.file_error:
            result.rows_rejected = result.rows_read
        folder = self.folders.processed if outcome == FileOutcome.PROCESSED else self.folders.rejected
        destination = free_destination(folder, result.file, result.sha256)
        result.final_path = str(destination)
        write_report(result, destination)
        checkpoint("file.reported")
        if ledger is not None:
            ledger.finish_file(result.sha256, outcome, str(destination))
            checkpoint("file.finished")
        os.replace(claimed, destination)
        return result
