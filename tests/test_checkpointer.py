"""The normalized SQLite checkpointer: same states as LangGraph's saver, less written, old files still load."""

from __future__ import annotations

import operator
import sqlite3
from pathlib import Path
from typing import Annotated

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from drpo.store.checkpointer import open_checkpointer
from drpo.store.normalized_sqlite import NormalizedSqliteSaver


class Growing(TypedDict):
    log: Annotated[list[str], operator.add]
    step: int
    untouched: str


def add_entry(state: Growing) -> dict:
    return {"log": [f"entry {state['step']}"], "step": state["step"] + 1}


def route(state: Growing) -> str:
    return END if state["step"] >= 30 else "add"


def build(saver):
    builder = StateGraph(Growing)
    builder.add_node("add", add_entry)
    builder.add_edge(START, "add")
    builder.add_conditional_edges("add", route, ["add", END])
    return builder.compile(checkpointer=saver)


def run_to_end(saver, thread: str) -> list:
    graph = build(saver)
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 100}
    graph.invoke({"log": [], "step": 0, "untouched": "kept " + "x" * 20000}, config)
    return [(snap.values, snap.next) for snap in graph.get_state_history(config)]


def test_states_and_history_equal_the_plain_saver_and_less_is_written(tmp_path: Path) -> None:
    plain = SqliteSaver(sqlite3.connect(tmp_path / "plain.sqlite", check_same_thread=False))
    normalized = open_checkpointer("sqlite", tmp_path / "normalized.sqlite")
    assert isinstance(normalized, NormalizedSqliteSaver)
    expected = run_to_end(plain, "t")
    assert run_to_end(normalized, "t") == expected
    assert expected[0][0]["step"] == 30 and len(expected[0][0]["log"]) == 30
    plain_bytes = sum(len(row[0]) for row in plain.conn.execute("SELECT checkpoint FROM checkpoints"))
    stored = normalized.conn  # type: ignore[attr-defined]
    normalized_bytes = sum(len(row[0]) for row in stored.execute("SELECT checkpoint FROM checkpoints")) + sum(
        len(row[0] or b"") for row in stored.execute("SELECT blob FROM checkpoint_blobs")
    )
    assert normalized_bytes * 10 < plain_bytes  # the large unchanged channel is stored once, not once per step


def test_checkpoints_written_by_the_plain_saver_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    expected = run_to_end(SqliteSaver(sqlite3.connect(path, check_same_thread=False)), "old")
    reopened = open_checkpointer("sqlite", path)
    graph = build(reopened)
    config = {"configurable": {"thread_id": "old"}}
    assert graph.get_state(config).values == expected[0][0]
    reopened.delete_thread("old")
    assert graph.get_state(config).values == {}
