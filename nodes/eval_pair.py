"""Pairwise judging: a system's answer against the reference system's, in both orders."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import EvalStepEvent, emit
from drpo.graph.state import EvalItemPayload, EvalPairRecord, item_key, unusable_output
from drpo.judge.grading import judge_pair, pair_outcome
from drpo.llm.usage import add_usage


def eval_pair(payload: EvalItemPayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    resources = services.evaluation
    assert resources is not None and resources.settings.pairwise is not None
    reference = resources.settings.pairwise
    query = resources.queries[payload["query"]].text
    mine = services.journal.get_answer(f"eval|{item_key(payload['system'], payload['query'])}")["answer"]
    theirs = services.journal.get_answer(f"eval|{item_key(reference, payload['query'])}")["answer"]
    retries = services.settings.search.structured_retries
    first = judge_pair(resources.judge, query, mine, theirs, retries=retries)
    second = judge_pair(resources.judge, query, theirs, mine, retries=retries)
    outcome, flipped = pair_outcome(first.winner, second.winner)
    key = item_key(payload["system"], payload["query"])
    record = EvalPairRecord(
        system=payload["system"],
        query=payload["query"],
        system_first=first.winner,
        system_second=second.winner,
        outcome=outcome,
        flipped=flipped,
    )
    update: dict[str, Any] = {"pairs": {key: record}, "usage": {"evaluator": add_usage(first.usage, second.usage)}}
    failures = [
        unusable_output(0, "evaluator", "unparseable_pairwise", f"{key}#{order}", verdict.attempts, verdict.errors)
        for order, verdict in (("first", first), ("second", second))
        if verdict.winner is None
    ]
    if failures:
        update["failures"] = failures
    emit(EvalStepEvent(event="eval_step", phase="pair", system=payload["system"], query=payload["query"]))
    return update
