"""The dynamic reward: 2-5 aspects per query, cached by (query, selector model, template)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from drpo.graph.state import AspectRecord, FailureRecord, unusable_output
from drpo.llm.caller import RoleCaller, call_structured
from drpo.llm.structured import AspectSelectionReply, OutputParseError, parse_aspect_selection, reply_schema
from drpo.prompts import ASPECT_SELECTION, aspect_definitions, render, template_hash
from drpo.prompts.texts import aspect_list_text
from drpo.store.aspect_cache import AspectCache

FALLBACK_ASPECTS = ("Helpfulness", "Clarity", "Factuality", "Depth", "Engagement")
# The paper's static reward (Appendix A): the evaluation aspects, every time, for every query.
STATIC_ASPECTS = ("Helpfulness", "Clarity", "Factuality", "Depth", "Engagement", "Safety")


def static_record() -> AspectRecord:
    """The static reward's fixed aspects: no selection call is made."""
    known = aspect_definitions()
    return AspectRecord(
        aspects=list(STATIC_ASPECTS),
        definitions={name: known[name] for name in STATIC_ASPECTS},
        reasoning="Static reward: the fixed evaluation aspects are scored for every query.",
        new_aspects=[],
        fallback=False,
    )


def fallback_record() -> AspectRecord:
    """The general-purpose aspects, used (and reported) when selection stays unusable."""
    known = aspect_definitions()
    return AspectRecord(
        aspects=list(FALLBACK_ASPECTS),
        definitions={name: known[name] for name in FALLBACK_ASPECTS},
        reasoning="Aspect selection failed; the general-purpose aspects were used instead.",
        new_aspects=[],
        fallback=True,
    )


SELECTION_RULES = "topic-rule-1"  # part of the cache key: selections made under older rules are not reused
WORD = re.compile(r"[a-z]{3,}")


def without_topics(query: str, known_only: bool = False) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The selection parser, refusing (so re-asking) new aspects that name the query's topic ("Sheep",
    "Flight delay") instead of a quality of an answer: small selectors do this, and the judge then scores
    how much an answer is about sheep. ``known_only`` refuses every aspect not on the list."""
    query_words = set(WORD.findall(query.lower()))

    def parse(data: dict[str, Any]) -> dict[str, Any]:
        parsed = parse_aspect_selection(data)
        if known_only and parsed["new_aspects"]:
            raise OutputParseError(
                f"{', '.join(parsed['new_aspects'])} is not on the list; choose only aspects from the list"
            )
        topical = [name for name in parsed["new_aspects"] if set(WORD.findall(name.lower())) & query_words]
        if topical:
            raise OutputParseError(
                f"{', '.join(topical)} names what the query is about, not a quality of an answer; "
                "select qualities such as Helpfulness, Clarity, Factuality, Harmlessness"
            )
        return parsed

    return parse


def selection_fingerprint(known_only: bool = False) -> str:
    """The aspect cache's key part for how selections are made: the template and the rules that check them."""
    return f"{template_hash(ASPECT_SELECTION)}:{SELECTION_RULES}" + (":known-only" if known_only else "")


def selection_schema(known_only: bool) -> dict[str, Any]:
    """The selector's reply schema; with ``known_only`` each selected aspect must be one of the list's
    names, so a constrained decoder (the embedded server) cannot write a topic or a new aspect at all."""
    schema = reply_schema(AspectSelectionReply)
    if known_only:
        selected = schema["properties"]["aspects_selection"]["properties"]["selected_aspects"]
        selected["items"] = {"type": "string", "enum": list(aspect_definitions())}
        schema["properties"].pop("new_aspect_definitions", None)
    return schema


def cached_selection(cache: AspectCache, model_id: str, query: str, known_only: bool) -> dict[str, Any] | None:
    """The cache's entry for the query's selection by this model under these rules, or None (also for an entry
    in an older format, which is selected again and overwritten)."""
    cached = cache.get(query, model_id, selection_fingerprint(known_only))
    return cached if cached is not None and isinstance(cached.get("record"), dict) else None


def select_aspects_for(
    caller: RoleCaller,
    cache: AspectCache,
    *,
    query: str,
    query_id: str,
    depth: int,
    retries: int,
    run_id: str,
    known_only: bool = False,
) -> tuple[AspectRecord, dict[str, int], list[FailureRecord]]:
    """One query's selection: cache, else the selector model, else the counted fallback. ``known_only``
    (``reward.new_aspects: false``) keeps the selection to the listed aspects."""
    fingerprint = selection_fingerprint(known_only)
    cached = cached_selection(cache, caller.model_id, query, known_only)
    if cached is not None:
        # A selection made earlier by this same run (before a crash) still counts toward its usage,
        # so a resumed run reports what an unbroken run would.
        own = cached.get("run_id") == run_id
        return AspectRecord(**cached["record"]), (cached.get("usage", {}) if own else {}), []
    prompt = render(ASPECT_SELECTION, aspect_list=aspect_list_text(aspect_definitions()), query=query)
    outcome = call_structured(
        caller, prompt, without_topics(query, known_only), retries=retries, json_schema=selection_schema(known_only)
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
    cache.put(query, caller.model_id, fingerprint, {"record": dict(record), "usage": outcome.usage, "run_id": run_id})
    return record, outcome.usage, []
