"""The dynamic reward: pick 2-5 aspects for each of the depth's queries."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.state import AspectRecord, FailureRecord, PromptOptState, usage_update
from drpo.judge.aspects import select_aspects_for, static_record
from drpo.llm.usage import add_usage


def select_aspects(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    depth = state["depth"]
    selections: dict[str, AspectRecord] = {}
    failures: list[FailureRecord] = []
    usage: dict[str, int] = {}
    static = services.settings.reward.mode == "static"
    for query_id in state["queries"][str(depth)]:
        if query_id in state.get("aspects", {}):
            continue
        if static:
            selections[query_id] = static_record()
            continue
        record, spent, failed = select_aspects_for(
            services.callers["aspect_selector"],
            services.aspect_cache,
            query=services.query_text(query_id),
            query_id=query_id,
            depth=depth,
            retries=services.settings.search.structured_retries,
            run_id=services.run_dir.run_id,
        )
        selections[query_id] = record
        failures.extend(failed)
        usage = add_usage(usage, spent)
    update: dict[str, Any] = {"aspects": selections, "failures": failures}
    if usage:
        update.update(usage_update(depth, {"aspect_selector": usage}))
    return update
