"""Read a run's progress from its checkpoint, for runs that have not finished yet."""

from __future__ import annotations

from typing import Any

from drpo.graph.prompt_graph import compile_prompt_graph
from drpo.store.checkpointer import close_checkpointer, open_checkpointer
from drpo.store.run_dir import RunDir


def checkpoint_values(run_dir: RunDir) -> dict[str, Any]:
    """The latest checkpointed state values of a run, from SQLite or Postgres ({} if none)."""
    checkpointer = str(run_dir.read_config().get("checkpointer", "sqlite"))
    if checkpointer == "memory" or (checkpointer == "sqlite" and not run_dir.checkpoints.is_file()):
        return {}
    saver = open_checkpointer(checkpointer, run_dir.checkpoints)
    try:
        snapshot = compile_prompt_graph(saver).get_state({"configurable": {"thread_id": run_dir.run_id}})
        return dict(snapshot.values)
    finally:
        close_checkpointer(saver)


def depth_rows(values: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished depth: the ranked candidates' ids, rewards and path values."""
    rows = []
    for depth_key in sorted(values.get("beams", {}), key=int):
        ranked = values["beams"][depth_key]
        rows.append(
            {
                "depth": int(depth_key),
                "queries": values.get("queries", {}).get(depth_key, []),
                "candidates": len(ranked),
                "ranked": ranked,
            }
        )
    return rows
