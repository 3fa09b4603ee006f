"""LangGraph's checkpoint conformance suite against the savers drpo uses: its normalized SQLite saver
(the default) and the Postgres saver set up the way drpo sets it up, on a real server."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import CapabilityReport

from drpo.store.checkpointer import close_checkpointer, open_checkpointer
from drpo.store.normalized_sqlite import NormalizedSqliteSaver


def _failures(report: CapabilityReport) -> dict[str, object]:
    return {name: result.failures for name, result in report.results.items() if result.passed is False}


def _base_capabilities_ran(report: CapabilityReport) -> None:
    for name in ("put", "put_writes", "get_tuple", "list", "delete_thread"):
        result = report.results[name]
        assert result.detected and result.passed, (name, result)
        assert result.tests_passed > 0


def test_normalized_sqlite_saver_passes_the_conformance_suite(tmp_path: Path) -> None:
    @checkpointer_test(name="drpo NormalizedSqliteSaver")
    async def saver() -> AsyncGenerator[NormalizedSqliteSaver, None]:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        checkpointer = open_checkpointer("sqlite", folder / "checkpoints.sqlite")
        assert isinstance(checkpointer, NormalizedSqliteSaver)
        yield checkpointer
        close_checkpointer(checkpointer)

    report = asyncio.run(validate(saver))
    assert not _failures(report), _failures(report)
    _base_capabilities_ran(report)


def test_postgres_saver_as_drpo_sets_it_up_passes_the_conformance_suite(postgres_dsn: str) -> None:
    """drpo drives runs with the sync PostgresSaver; the suite calls async methods, so it runs through
    LangGraph's async Postgres saver on the very tables drpo's setup created."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    close_checkpointer(open_checkpointer(postgres_dsn))  # drpo's setup: connection checks and migrations

    @checkpointer_test(name="drpo PostgresSaver (async)")
    async def saver() -> AsyncGenerator[object, None]:
        async with AsyncPostgresSaver.from_conn_string(postgres_dsn) as checkpointer:
            yield checkpointer

    report = asyncio.run(validate(saver))
    assert not _failures(report), _failures(report)
    _base_capabilities_ran(report)


def test_delta_channel_history_is_refused_not_answered_empty(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "c.sqlite"), check_same_thread=False)
    saver = NormalizedSqliteSaver(conn)
    with pytest.raises(NotImplementedError, match="get_delta_channel_history"):
        saver.get_delta_channel_history(config={"configurable": {"thread_id": "t"}}, channels=["x"])
    with pytest.raises(NotImplementedError, match="DeltaChannel"):
        asyncio.run(saver.aget_delta_channel_history(config={"configurable": {"thread_id": "t"}}, channels=["x"]))
    conn.close()
