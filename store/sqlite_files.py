"""Opening a run's SQLite files (checkpoints, call journal, caches) the one safe way.

A damaged file is found on open (SQLite's quick check: milliseconds for a run's files) and named in one
line with what can be done, instead of a traceback deep inside LangGraph. A file in a directory nobody
may write (a read-only mount, an archive) is opened read-only, so reading commands still work there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from drpo.store.files import DamagedRunFile, is_writable_dir

REMEDIES = {
    "checkpoints.sqlite": "`drpo repair {run}` sets it aside and replays the run from its call journal "
    "(no model call is repeated)",
    "journal.sqlite": "its recorded calls are lost; start over with a new run "
    "(`drpo optimize --config {dir}/config.yaml --run-id NEW`)",
}


def remedy_for(path: Path) -> str:
    template = REMEDIES.get(path.name, "move it aside to start it afresh (it only caches work)")
    return template.format(run=path.parent.name, dir=path.parent)


def _damage(path: Path) -> str | None:
    """What is wrong with an existing SQLite file, or None when it passes SQLite's quick check."""
    wal = path.with_name(path.name + "-wal")
    if path.stat().st_size == 0 and not (wal.is_file() and wal.stat().st_size > 0):
        return "empty (its data is gone)"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError:
        return None  # locked or not openable read-only here: the real open below says what is wrong
    except sqlite3.DatabaseError as error:
        return f"not a usable SQLite database ({error})"
    if verdict is None or verdict[0] != "ok":
        return f"SQLite's integrity check failed ({verdict[0] if verdict else 'no answer'})"
    return None


def check_sqlite_file(path: Path) -> None:
    """Raise DamagedRunFile (one line: the file, the damage, what can be done) for a damaged file."""
    if not path.is_file():
        return
    problem = _damage(path)
    if problem is not None:
        raise DamagedRunFile(path, f"{problem}; {remedy_for(path)}")


def connect_sqlite(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A checked connection shared across threads, and whether it is read-only.

    Writable directories get WAL (a killed process loses nothing committed); read-only ones an immutable
    read-only connection, which needs no -wal or -shm file next to the database."""
    check_sqlite_file(path)
    if not is_writable_dir(path.parent) and path.is_file():
        uri = f"file:{path}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, check_same_thread=False), True
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # survives a killed process; a power cut may drop the tail
    return connection, False
