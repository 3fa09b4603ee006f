"""Recognising faults of the filesystem under a run (full disk, read-only mount, no permission) however deep
they were raised (a status write, SQLite, Chroma), so the CLI names them instead of printing a traceback."""

from __future__ import annotations

import errno
import sqlite3

DISK_FULL = "disk full"
READ_ONLY = "read-only"

_ERRNO_KINDS = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EROFS: READ_ONLY, errno.EACCES: READ_ONLY}
# SQLite's primary result codes (the low byte of an extended code): SQLITE_FULL, SQLITE_READONLY.
_SQLITE_KINDS = {13: DISK_FULL, 8: READ_ONLY}


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def filesystem_fault(error: BaseException) -> tuple[str, str] | None:
    """(kind, one-line description) when ``error`` or one of its causes is a filesystem fault, else None."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in _ERRNO_KINDS:
            kind = _ERRNO_KINDS[cause.errno]
            where = f" writing {cause.filename}" if cause.filename else ""
            return kind, f"{kind}{where}: {cause.strerror}"
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)  # set by the sqlite3 module on errors it raises
            kind = _SQLITE_KINDS.get(code & 0xFF) if isinstance(code, int) else None
            if kind is not None:
                return kind, f"{kind} writing a run database: {cause}"
    return None
