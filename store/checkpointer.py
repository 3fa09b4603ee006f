"""Checkpointer factory: SQLite in the run directory by default, in-memory for library users."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from drpo.store.files import is_writable_dir
from drpo.store.postgres import is_postgres_dsn
from drpo.store.sqlite_files import connect_sqlite


def open_checkpointer(kind: str, path: Path | None = None) -> BaseCheckpointSaver:
    """A ready checkpointer: ``sqlite``, ``memory`` or a Postgres DSN (tables set up once).
    The connection is shared across LangGraph's worker threads (the savers lock around it)."""
    if kind == "memory":
        return InMemorySaver()
    if is_postgres_dsn(kind):
        from drpo.store.postgres import connect

        connection = connect(kind, dict_rows=True)  # a clear error first when drivers or server are missing
        from langgraph.checkpoint.postgres import PostgresSaver

        saver = PostgresSaver(connection)
        saver.setup()
        return saver
    if path is None:
        raise ValueError("the sqlite checkpointer needs a file path")
    from drpo.store.normalized_sqlite import NormalizedSqliteSaver

    if not path.is_file() and not is_writable_dir(path.parent):
        return InMemorySaver()  # a run that never checkpointed, in a directory nobody may write: nothing to read
    conn, read_only = connect_sqlite(path)
    saver = NormalizedSqliteSaver(conn)
    if read_only:
        saver.is_setup = True  # its tables exist; creating them would need a write
    else:
        saver.setup()
    return saver


def close_checkpointer(saver: BaseCheckpointSaver) -> None:
    conn = getattr(saver, "conn", None)
    if conn is not None and hasattr(conn, "close"):
        conn.close()
