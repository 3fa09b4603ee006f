"""Rank the depth's candidates by path value and keep the best W; decide whether the search ends."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import BeamValue, DepthDoneEvent, emit
from drpo.graph.state import BeamEntry, PromptOptState, unusable_output
from drpo.llm.usage import total_tokens
from drpo.nodes.stalls import check_evaluations
from drpo.scoring import candidate_reward, path_ids, path_value, rank_frontier, verdict_key
from drpo.strategy import strategy_for


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


def aspect_score(state: PromptOptState, candidate_id: str, aspect: str) -> float | None:
    """A candidate's mean score on one aspect over its depth's queries (None where it was not scored)."""
    record = state["candidates"][candidate_id]
    scores = [
        verdict["scores"][aspect]
        for query_id in state["queries"][str(record["depth"])]
        if (verdict := state["evaluations"].get(verdict_key(candidate_id, query_id))) is not None
        and aspect in verdict["scores"]
    ]
    return sum(scores) / len(scores) if scores else None


def regressed(state: PromptOptState, aspect: str | None) -> list[str]:
    """Proposals scoring lower than their parent on the guarded aspect (where both were scored on it)."""
    if aspect is None:
        return []
    found = []
    for candidate_id in state["frontier"]:
        record = state["candidates"][candidate_id]
        if record["origin"] != "optimizer" or record["parent"] is None:
            continue
        mine, parents = aspect_score(state, candidate_id, aspect), aspect_score(state, record["parent"], aspect)
        if mine is not None and parents is not None and mine < parents:
            found.append(candidate_id)
    return found


def prune_beam(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    check_evaluations(state, services)  # a depth judged by nobody is a failed run, not a "done" one
    search = services.settings.search
    width = strategy_for(search.strategy).width(search.beam_width)
    frontier = state["frontier"]
    rewards = {candidate_id: reward_of(state, candidate_id) for candidate_id in frontier}
    values = {candidate_id: value_of(state, candidate_id, search.path_aggregator) for candidate_id in frontier}
    ranked = rank_frontier(frontier, rewards, values)
    rejected = set(regressed(state, search.no_regress))
    allowed = [entry["id"] for entry in ranked if entry["id"] not in rejected]
    beam = (allowed or [entry["id"] for entry in ranked])[:width]  # never an empty beam
    ranked = [BeamEntry(**{**entry, "kept": entry["id"] in beam}) for entry in ranked]
    update: dict[str, Any] = {"beam": beam, "beams": {str(state["depth"]): ranked}}
    if rejected:
        update["failures"] = [
            unusable_output(
                state["depth"],
                "optimizer",
                "regressed",
                candidate_id,
                1,
                [f"lower {search.no_regress} than its parent"],
            )
            for candidate_id in sorted(rejected)
        ]
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
            beam=[BeamValue(id=entry["id"], path_value=entry["path_value"]) for entry in ranked[:width]],
            tokens=total_tokens(state.get("usage", {})),
            stop_reason=reason,
        )
    )
    return update
