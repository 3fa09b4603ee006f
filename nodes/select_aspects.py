"""The dynamic reward: pick 2-5 aspects for each of a depth's queries."""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import AspectRecord, FailureRecord, PreparePayload, usage_update
from drpo.judge.aspects import select_aspects_for, static_record
from drpo.llm.usage import add_usage


def selected_aspects(services: Services, depth: int, queries: list[str]) -> dict[str, Any]:
    """The state update selecting aspects for ``queries`` (cache, selector model, or counted fallback)."""
    selections: dict[str, AspectRecord] = {}
    failures: list[FailureRecord] = []
    usage: dict[str, int] = {}
    static = services.settings.reward.mode == "static"
    for query_id in queries:
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
            known_only=not services.settings.reward.new_aspects,
        )
        selections[query_id] = record
        failures.extend(failed)
        usage = add_usage(usage, spent)
    update: dict[str, Any] = {"aspects": selections, "failures": failures}
    if usage:
        update.update(usage_update(depth, {"aspect_selector": usage}))
    return update


def select_aspects(data: Any, runtime: Runtime[DrpoContext]) -> Command[Any]:
    payload = cast(PreparePayload, data)  # the payload of a Send (see missing_preparation)
    update = selected_aspects(services_of(runtime), payload["depth"], payload["queries"])
    return Command(update=update, goto=payload["then"])
