"""Atomic file writes: a file is either its old self or its whole new self, even across a crash.

The one recipe every writer uses (Parquet in `lake/storage.py`, the lake and catalog state files, the
warehouse's files): write a temporary file in the destination folder (`.<name>.<random>.tmp`, which no
`*.parquet` or `*.csv` glob matches), flush and fsync it, `os.replace` it over the destination, then fsync
the folder so the rename itself survives a power cut. No Dagster and no HTTP here.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside `path` (hidden, `.tmp`, unique per call)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_temp(
    path: Path, write: Callable[[IO[Any]], object], *, binary: bool = True, file_mode: int | None = None
) -> Path:
    """Write a fsynced temporary file beside `path` with `write(handle)` and return its name.

    The caller moves it into place with `commit` (several temporaries can be committed together); the
    temporary is removed if `write` fails. `file_mode` sets its permissions (default: the umask's).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    # Created with `file_mode` from the start (a 0600 file is never readable by others, even empty).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    descriptor = os.open(temp, flags, 0o666 if file_mode is None else file_mode)
    try:
        if file_mode is not None:
            os.fchmod(descriptor, file_mode)  # exactly this mode, whatever the umask
        with (
            os.fdopen(descriptor, "wb")
            if binary
            else os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle
        ):
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return temp


def commit(moves: Iterable[tuple[Path, Path]]) -> None:
    """Move each `(temporary, destination)` into place with `os.replace`, then fsync their folders."""
    folders: dict[Path, None] = {}
    for temp, path in moves:
        os.replace(temp, path)
        folders[path.parent] = None
    for folder in folders:
        fsync_folder(folder)


def discard(temps: Iterable[Path]) -> None:
    """Remove temporary files (those that exist)."""
    for temp in temps:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_bytes(path: Path, write: Callable[[IO[Any]], object], *, file_mode: int | None = None) -> None:
    """Replace `path` atomically with what `write(handle)` writes to a binary handle."""
    commit([(write_temp(path, write, file_mode=file_mode), path)])


def write_text(path: Path, text: str, *, file_mode: int | None = None) -> None:
    """Replace `path` atomically with `text` (UTF-8, newlines as given)."""
    commit([(write_temp(path, lambda handle: handle.write(text), binary=False, file_mode=file_mode), path)])
