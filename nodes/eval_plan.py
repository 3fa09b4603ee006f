"""Start an evaluation: the sampled queries, and per system the queries it was optimized on (left out)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.eval.queries import normalized
from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import EvalPlannedEvent, emit
from drpo.graph.state import EvalState


def eval_plan(state: EvalState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    resources = services_of(runtime).evaluation
    assert resources is not None, "an evaluation run needs evaluation resources"
    excluded: dict[str, list[str]] = {}
    for name, system in resources.systems.items():
        if resources.settings.exclude_seen and system.seen_queries:
            excluded[name] = [
                query_id
                for query_id in resources.order
                if normalized(resources.queries[query_id].text) in system.seen_queries
            ]
    counts = {name: len(resources.order) - len(excluded.get(name, [])) for name in resources.systems}
    reference = resources.settings.pairwise
    pairs = sum(count for name, count in counts.items() if name != reference) if reference else 0
    emit(EvalPlannedEvent(event="eval_planned", answers=sum(counts.values()), pairs=pairs))
    return {
        "items": list(resources.order),
        "systems": list(resources.systems),
        "pairwise": reference,
        "excluded": excluded,
    }
