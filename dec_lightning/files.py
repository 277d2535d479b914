"""Atomic, durable file writes: a reader sees the old file or the whole new one, never a partial write.

Each file is written to a temporary file in its destination folder, flushed and fsynced,
given the permissions a plain ``open(path, "w")`` would give it, and renamed over the
destination with `os.replace` (atomic within one file system); then the folder is fsynced
so the rename itself survives a crash. The process umask is read without changing it:
``os.umask`` can only read it by setting it, which races with other threads creating files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

Writer = Callable[[IO[bytes]], None]

_DEFAULT_UMASK = 0o022


def current_umask() -> int:
    """The process umask, read from ``/proc/self/status`` (Linux >= 4.7) without setting it; else 022."""
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return _DEFAULT_UMASK


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, write: Writer) -> str:
    """Write a fsynced temporary file next to ``path`` and return its name; nothing is left behind on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_all(files: Sequence[tuple[str | Path, Writer]]) -> None:
    """Write several files atomically: all are fully written before any is renamed into place.

    ``files`` holds ``(path, write)`` pairs; ``write(f)`` writes the content to the binary
    file object ``f``. If any ``write`` fails, every temporary file is removed and every
    destination keeps its previous content.
    """
    written: list[tuple[str, Path]] = []
    try:
        for path, write in files:
            path = Path(path)
            written.append((_write_temp(path, write), path))
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for tmp, path in written:
        os.replace(tmp, path)
    for folder in dict.fromkeys(path.parent for _, path in written):
        _fsync_dir(folder)


def atomic_write(path: str | Path, write: Writer) -> None:
    """Write one file atomically and durably (see `atomic_write_all`)."""
    atomic_write_all([(path, write)])
