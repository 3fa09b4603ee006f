"""Start a depth: collect the new candidates, grant a depth increase after skips, pick the queries."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.state import ROOT_ID, CandidateRecord, PromptOptState, StrategyRecord
from drpo.nodes.stalls import check_proposals, stalled_depths_after


def _next_frontier(state: PromptOptState) -> list[CandidateRecord]:
    """Children proposed at the last depth, ordered by parent rank then sample (ids encode both);
    reviewers' prompts (``dN-h-K``) come last, in the order they were written."""

    def key(record: CandidateRecord) -> tuple[int, int, int]:
        _depth, rank, sample = record["id"].split("-")
        return (1, 0, int(sample)) if rank == "h" else (0, int(rank), int(sample))

    unique = {record["id"]: record for record in state.get("proposals", [])}
    return sorted(unique.values(), key=key)


def _carried_by_skip(record: CandidateRecord) -> bool:
    """Whether the skip rule carried this candidate (checkpoints written before ``carried_because``
    existed only say so in their note)."""
    if "carried_because" in record:
        return record["carried_because"] == "skip"
    return record["origin"] == "carried" and record["note"].startswith("skip")


def sample_queries(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    search = services.settings.search
    depth = state.get("depth", 0) + 1
    update: dict[str, Any] = {"depth": depth, "proposals": Overwrite([]), "review_enabled": search.review}
    if depth == 1:
        reach = (search.depth + search.max_depth_increase) * search.queries_per_depth
        order = list(services.seed_order)[:reach]  # the most the search can use: state stays small for any seed file
        root = CandidateRecord(
            id=ROOT_ID,
            prompt=state.get("initial_prompt") or search.initial_prompt,
            parent=None,
            depth=1,
            origin="initial",
            note="",
        )
        new = [root]
        update.update(query_order=order, max_depth=search.depth, depth_increases=0)
        update["strategy"] = StrategyRecord(
            name=search.strategy, beam_width=search.beam_width, num_actions=search.num_actions
        )
        update["scoring"] = services.settings.reward.scoring
        update["validation_queries"] = list(services.validation_order)
    else:
        # A depth with no usable proposal only carries the old prompts: tolerated stall_patience times in a row.
        stalled = stalled_depths_after(state)
        if stalled >= search.stall_patience:
            check_proposals(state, services)
        update["stalled_depths"] = stalled
        order = state["query_order"]
        new = _next_frontier(state)
        skipped = any(_carried_by_skip(record) for record in new)
        if skipped and state.get("depth_increases", 0) < search.max_depth_increase:
            update["max_depth"] = state["max_depth"] + 1
            update["depth_increases"] = state.get("depth_increases", 0) + 1
    width = search.queries_per_depth
    chosen = order[(depth - 1) * width : depth * width]
    update["queries"] = {str(depth): chosen}
    update["candidates"] = {record["id"]: record for record in new}
    update["frontier"] = [record["id"] for record in new]
    return update
