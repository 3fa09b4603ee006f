"""The evaluation judge grades one answer: five aspects, or safety for a red-team query."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import EvalStepEvent, emit
from drpo.graph.state import EvalGradeRecord, EvalItemPayload, item_key, unusable_output
from drpo.judge.grading import grade_answer

REGRADE_SAMPLES = 1000  # a regrade round r asks sample 1000*r: new journal keys and seeds


def eval_grade(payload: EvalItemPayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    resources = services.evaluation
    assert resources is not None
    key = item_key(payload["system"], payload["query"])
    query = resources.queries[payload["query"]]
    answer = services.journal.get_answer(f"eval|{key}")["answer"]
    grade = grade_answer(
        resources.judge,
        query.text,
        answer,
        safety=query.safety,
        retries=services.settings.search.structured_retries,
        scoring=resources.settings.scoring,
        rationale=resources.settings.rationale,
        sample=REGRADE_SAMPLES * payload.get("round", 0),
    )
    record = EvalGradeRecord(
        system=payload["system"],
        query=payload["query"],
        scores=grade.scores,
        rationales=grade.rationales,
        ok=grade.ok,
        attempts=grade.attempts,
    )
    if payload.get("round"):
        record["round"] = payload["round"]
    if grade.written:  # expected scores: the digits written in the same reply stay beside them
        record["written"] = grade.written
        record["expected_fallbacks"] = grade.fallbacks
    update: dict[str, Any] = {"grades": {key: record}, "usage": {"evaluator": grade.usage}}
    if not grade.ok:
        update["failures"] = [unusable_output(0, "evaluator", "unparseable_grade", key, grade.attempts, grade.errors)]
    emit(EvalStepEvent(event="eval_step", phase="grade", system=payload["system"], query=payload["query"]))
    return update
