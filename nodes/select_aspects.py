"""The dynamic reward: pick 2-5 aspects per query, cached by (query, selector model, template)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.state import AspectRecord, FailureRecord, PromptOptState, unusable_output, usage_update
from drpo.model_calls import add_usage, call_structured
from drpo.prompts import ASPECT_SELECTION, aspect_definitions, render, template_hash
from drpo.services import DrpoContext, Services, services_of
from drpo.structured import aspect_selection_schema, parse_aspect_selection

FALLBACK_ASPECTS = ("Helpfulness", "Clarity", "Factuality", "Depth", "Engagement")


def aspect_list_text(definitions: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {text}" for name, text in definitions.items())


def fallback_record() -> AspectRecord:
    known = aspect_definitions()
    return AspectRecord(
        aspects=list(FALLBACK_ASPECTS),
        definitions={name: known[name] for name in FALLBACK_ASPECTS},
        reasoning="Aspect selection failed; the general-purpose aspects were used instead.",
        new_aspects=[],
        fallback=True,
    )


def select_for_query(
    services: Services, query_id: str, depth: int, query: str | None = None
) -> tuple[AspectRecord, dict[str, int], list[FailureRecord]]:
    """One query's selection: cache, else the selector model, else the counted fallback."""
    caller = services.callers["aspect_selector"]
    query = services.query_text(query_id) if query is None else query
    fingerprint = template_hash(ASPECT_SELECTION)
    cached = services.aspect_cache.get(query, caller.model_id, fingerprint)
    if cached is not None and not isinstance(cached.get("record"), dict):
        cached = None  # an entry in an older format: select again (and overwrite it)
    if cached is not None:
        # A selection made earlier by this same run (before a crash) still counts toward its usage,
        # so a resumed run reports what an unbroken run would.
        own = cached.get("run_id") == services.run_dir.run_id
        return AspectRecord(**cached["record"]), (cached.get("usage", {}) if own else {}), []
    prompt = render(ASPECT_SELECTION, aspect_list=aspect_list_text(aspect_definitions()), query=query)
    outcome = call_structured(
        caller,
        prompt,
        parse_aspect_selection,
        retries=services.settings.search.structured_retries,
        json_schema=aspect_selection_schema(),
    )
    if outcome.value is None:
        failure = unusable_output(
            depth, "aspect_selector", "unparseable_selection", query_id, outcome.attempts, outcome.errors
        )
        return fallback_record(), outcome.usage, [failure]
    parsed = outcome.value
    record = AspectRecord(
        aspects=parsed["aspects"],
        definitions=parsed["definitions"],
        reasoning=parsed["reasoning"],
        new_aspects=parsed["new_aspects"],
        fallback=False,
    )
    services.aspect_cache.put(
        query,
        caller.model_id,
        fingerprint,
        {"record": dict(record), "usage": outcome.usage, "run_id": services.run_dir.run_id},
    )
    return record, outcome.usage, []


def select_aspects(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    depth = state["depth"]
    selections: dict[str, AspectRecord] = {}
    failures: list[FailureRecord] = []
    usage: dict[str, int] = {}
    for query_id in state["queries"][str(depth)]:
        if query_id in state.get("aspects", {}):
            continue
        record, spent, failed = select_for_query(services, query_id, depth)
        selections[query_id] = record
        failures.extend(failed)
        usage = add_usage(usage, spent)
    update: dict[str, Any] = {"aspects": selections, "failures": failures}
    if usage:
        update.update(usage_update(depth, {"aspect_selector": usage}))
    return update
