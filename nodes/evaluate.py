"""The judge scores one answer on the query's selected aspects (1-5 each, with a rationale)."""

from __future__ import annotations

import json
from typing import Any

from drpo.graph.state import EvalRecord, EvaluatePayload, FailureRecord
from drpo.nodes.generate import PREVIEW_CHARS
from drpo.nodes.scoring import reward_from_scores
from drpo.nodes.select_aspects import aspect_list_text
from drpo.prompts import EVALUATION, render
from langgraph.runtime import Runtime

from drpo.model_calls import call_structured
from drpo.services import DrpoContext
from drpo.structured import evaluation_schema, parse_evaluation


def eval_skeleton(aspects: list[str]) -> str:
    skeleton = {
        aspect: {
            "rationale": f"<your thoughts on the {aspect.lower()} of the output>",
            "score": f"<your {aspect.lower()} score, 1-5>",
        }
        for aspect in aspects
    }
    return json.dumps(skeleton, indent=2)


def evaluate(payload: EvaluatePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = runtime.context.services
    aspects = payload["aspects"]
    answer = services.journal.get_answer(payload["answer_id"])["answer"]
    prompt = render(
        EVALUATION,
        query=services.query_text(payload["query"]),
        output=answer,
        aspect_list=aspect_list_text(aspects["definitions"]),
        aspect_reasoning=aspects["reasoning"] or "(no reasoning given)",
        eval_skeleton=eval_skeleton(aspects["aspects"]),
    )
    outcome = call_structured(
        services.callers["evaluator"],
        prompt,
        lambda data: parse_evaluation(data, aspects["aspects"]),
        retries=services.settings.search.structured_retries,
        json_schema=evaluation_schema(aspects["aspects"]),
    )
    verdict = outcome.value or {}
    scores = {aspect: entry["score"] for aspect, entry in verdict.items()}
    record = EvalRecord(
        candidate=payload["candidate"],
        query=payload["query"],
        depth=payload["depth"],
        answer_id=payload["answer_id"],
        answer_preview=answer[:PREVIEW_CHARS],
        scores=scores,
        rationales={aspect: entry["rationale"] for aspect, entry in verdict.items()},
        reward=reward_from_scores(scores) if outcome.value is not None else None,
        attempts=outcome.attempts,
    )
    update: dict[str, Any] = {
        "evaluations": {payload["answer_id"]: record},
        "usage": {"evaluator": outcome.usage},
    }
    if outcome.value is None:
        update["failures"] = [
            FailureRecord(
                depth=payload["depth"],
                role="evaluator",
                kind="unparseable_evaluation",
                target=payload["answer_id"],
                attempts=outcome.attempts,
                error="; ".join(outcome.errors)[-500:],
            )
        ]
    return update
