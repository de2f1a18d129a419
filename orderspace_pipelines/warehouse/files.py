"""The warehouse folders and the file moves between them.

Layout under `$ORDERSPACE_DATA_DIR/warehouse/`::

    inbox/        the warehouse drops CSV files here (write to a dotfile / *.tmp / *.part, then rename)
    work/         a file being pushed: claimed out of the inbox as `<sha256[:16]>__<name>`
    processed/    files whose rows were pushed (bad rows reported), each with `<name>.report.json|csv`
    rejected/     files nothing could be pushed from (unreadable, unknown header, ...), with a report
    ledger.sqlite the outbox/ledger that makes the push exactly-once (see `ledger.py`)
    .locks/       one lock file per content hash being pushed (two runs never push the same bytes at once)

Every move is an `os.replace` inside one file system, so a file is always in exactly one folder.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from orderspace_pipelines import atomic

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload")
WORK_SEPARATOR = "__"


@dataclass(frozen=True)
class WarehouseFolders:
    """The warehouse folders under one data directory."""

    root: Path

    @classmethod
    def under(cls, data_dir: Path) -> WarehouseFolders:
        return cls(Path(data_dir).resolve() / "warehouse")

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def locks(self) -> Path:
        return self.root / ".locks"

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite"

    def ensure(self) -> WarehouseFolders:
        for folder in (self.inbox, self.work, self.processed, self.rejected, self.locks):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def is_candidate(path: Path) -> bool:
    """A file the sensor may pick up: a regular file, not hidden, not a partial download."""
    name = path.name
    if name.startswith(".") or name.startswith("~") or name.lower().endswith(IGNORED_SUFFIXES):
        return False
    return path.is_file()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes (its identity in the ledger)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def work_name(sha256: str, original_name: str) -> str:
    return f"{sha256[:16]}{WORK_SEPARATOR}{original_name}"


def original_name(work_file: Path) -> str:
    """The name the warehouse gave a file, from its claimed name in `work/`."""
    prefix, sep, rest = work_file.name.partition(WORK_SEPARATOR)
    if sep and len(prefix) == 16 and all(c in "0123456789abcdef" for c in prefix):
        return rest
    return work_file.name


class FileMissingError(FileNotFoundError):
    """The file to push is neither where it was named nor claimed in `work/`."""


class FileTakenError(FileMissingError):
    """The file to push was taken by another process or host (sharing the warehouse folder): it is being
    pushed there right now, or was pushed there already. Nothing is left to do here (the message says which).
    """


def finished_copy(folders: WarehouseFolders, name: str, sha256: str) -> Path | None:
    """The copy of `name` with exactly these bytes in `processed/` or `rejected/`, if a push filed it away."""
    stem, suffix = os.path.splitext(name)
    for folder in (folders.processed, folders.rejected):
        # `free_destination` names: the name itself, else with the hash prefix (and a counter).
        candidates = [folder / name, *sorted(folder.glob(f"{glob.escape(stem)}.{sha256[:12]}*{suffix}"))]
        for candidate in candidates:
            if candidate.is_file() and sha256_of(candidate) == sha256:
                return candidate
    return None


def free_destination(folder: Path, name: str, sha256: str) -> Path:
    """A path in `folder` for `name` that overwrites nothing (adds the sha prefix, then a counter)."""
    candidate = folder / name
    if not candidate.exists():
        return candidate
    stem, suffix = os.path.splitext(name)
    candidate = folder / f"{stem}.{sha256[:12]}{suffix}"
    counter = 2
    while candidate.exists():
        candidate = folder / f"{stem}.{sha256[:12]}.{counter}{suffix}"
        counter += 1
    return candidate


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing (`orderspace_pipelines.atomic`); 0644: reports are for the operations
    people who read the folders."""
    atomic.write_text(path, text, file_mode=0o644)
