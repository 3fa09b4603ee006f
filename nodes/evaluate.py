"""The judge scores one answer on the query's selected aspects (1-5 each, with a rationale)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import EvaluationEvent, emit
from drpo.graph.state import PREVIEW_CHARS, EvaluatePayload, VerdictRecord, usage_update
from drpo.judge.verdict import evaluation_failure, judge_answer, judging


def evaluate(payload: EvaluatePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    written = services.journal.get_answer(payload["answer_id"])
    answer = written["answer"]
    reference_id = payload.get("reference_answer_id")
    reference = services.journal.get_answer(reference_id)["answer"] if reference_id else None
    verdict = judge_answer(
        services.callers["evaluator"],
        services.query_text(payload["query"]),
        answer,
        payload["aspects"],
        retries=services.settings.search.structured_retries,
        sample=payload.get("round", 0),
        reference=reference,
        **judging(services),
    )
    record = VerdictRecord(
        candidate=payload["candidate"],
        query=payload["query"],
        depth=payload["depth"],
        answer_id=payload["answer_id"],
        answer_preview=answer[:PREVIEW_CHARS],
        scores=verdict.scores,
        rationales=verdict.rationales,
        reward=verdict.reward,
        attempts=verdict.attempts,
    )
    if written.get("truncated"):
        record["truncated"] = True
    if verdict.written:  # expected scores: keep the digits the judge wrote, and how many fell back to them
        record["written"] = verdict.written
        record["expected_fallbacks"] = verdict.fallbacks
    update: dict[str, Any] = {
        "evaluations": {payload["answer_id"]: record},
        **usage_update(payload["depth"], {"evaluator": verdict.usage}),
    }
    if verdict.reward is None:
        update["failures"] = [evaluation_failure(payload["depth"], payload["answer_id"], verdict)]
    emit(
        EvaluationEvent(
            event="evaluation", depth=payload["depth"], candidate=payload["candidate"], reward=verdict.reward
        )
    )
    return update
