"""Checkpointer factory: SQLite in the run directory by default, in-memory for library users."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from drpo.store.postgres import is_postgres_dsn


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

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "PRAGMA synchronous=NORMAL"
    )  # WAL + NORMAL survives a killed process; only power loss can drop the tail
    saver = NormalizedSqliteSaver(conn)
    saver.setup()
    return saver


def close_checkpointer(saver: BaseCheckpointSaver) -> None:
    conn = getattr(saver, "conn", None)
    if conn is not None and hasattr(conn, "close"):
        conn.close()
