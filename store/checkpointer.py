"""Checkpointer factory: SQLite in the run directory by default, in-memory for library users."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver


def open_checkpointer(kind: Literal["sqlite", "memory"], path: Path | None = None) -> BaseCheckpointSaver:
    """A ready checkpointer. The SQLite connection is shared across LangGraph's worker threads."""
    if kind == "memory":
        return InMemorySaver()
    if path is None:
        raise ValueError("the sqlite checkpointer needs a file path")
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def close_checkpointer(saver: BaseCheckpointSaver) -> None:
    conn = getattr(saver, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        conn.close()
