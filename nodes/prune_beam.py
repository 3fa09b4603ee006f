"""Rank the depth's candidates by path value and keep the best W; decide whether the search ends."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import BeamValue, DepthDoneEvent, emit
from drpo.graph.state import PromptOptState
from drpo.llm.usage import total_tokens
from drpo.scoring import candidate_reward, path_ids, path_value, rank_frontier


def reward_of(state: PromptOptState, candidate_id: str) -> float | None:
    record = state["candidates"][candidate_id]
    return candidate_reward(candidate_id, state["queries"][str(record["depth"])], state["evaluations"])


def value_of(state: PromptOptState, candidate_id: str, aggregator: str) -> float | None:
    """Path value over the path's rewards, the root's excluded (as in the reference)."""
    path = path_ids(candidate_id, state["candidates"])[1:]
    return path_value([reward_of(state, node) for node in path], aggregator)


def stop_reason(state: PromptOptState, queries_per_depth: int) -> str | None:
    depth = state["depth"]
    if depth >= state["max_depth"]:
        return "reached max depth"
    if (depth + 1) * queries_per_depth > len(state["query_order"]):
        return "seed queries exhausted"
    return None


def prune_beam(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    search = services_of(runtime).settings.search
    frontier = state["frontier"]
    rewards = {candidate_id: reward_of(state, candidate_id) for candidate_id in frontier}
    values = {candidate_id: value_of(state, candidate_id, search.path_aggregator) for candidate_id in frontier}
    ranked = rank_frontier(frontier, rewards, values)
    update: dict[str, Any] = {
        "beam": [entry["id"] for entry in ranked[: search.beam_width]],
        "beams": {str(state["depth"]): ranked},
    }
    reason = stop_reason(state, search.queries_per_depth)
    if reason is not None:
        update["stop_reason"] = reason
    emit(
        DepthDoneEvent(
            event="depth_done",
            depth=state["depth"],
            max_depth=state["max_depth"],
            candidates=len(frontier),
            rewards=[entry["reward"] for entry in ranked],
            beam=[BeamValue(id=entry["id"], path_value=entry["path_value"]) for entry in ranked[: search.beam_width]],
            tokens=total_tokens(state.get("usage", {})),
            stop_reason=reason,
        )
    )
    return update
