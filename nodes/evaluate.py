"""The judge scores one answer on the query's selected aspects (1-5 each, with a rationale)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.state import AspectRecord, EvalRecord, EvaluatePayload, FailureRecord, unusable_output, usage_update
from drpo.model_calls import call_structured
from drpo.nodes.generate import PREVIEW_CHARS
from drpo.nodes.progress import emit
from drpo.nodes.scoring import reward_from_scores
from drpo.nodes.select_aspects import aspect_list_text
from drpo.prompts import EVALUATION, render
from drpo.services import DrpoContext, Services, services_of
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


@dataclass
class Verdict:
    """The judge's scores for one answer; ``reward`` is None when its output could not be used."""

    scores: dict[str, int]
    rationales: dict[str, str]
    reward: float | None
    attempts: int
    usage: dict[str, int]
    errors: list[str]


def judge_answer(services: Services, query: str, answer: str, aspects: AspectRecord) -> Verdict:
    """Score ``answer`` on the query's selected aspects, retrying unusable judge output."""
    prompt = render(
        EVALUATION,
        query=query,
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
    return Verdict(
        scores=scores,
        rationales={aspect: entry["rationale"] for aspect, entry in verdict.items()},
        reward=reward_from_scores(scores) if outcome.value is not None else None,
        attempts=outcome.attempts,
        usage=outcome.usage,
        errors=outcome.errors,
    )


def evaluation_failure(depth: int, target: str, verdict: Verdict) -> FailureRecord:
    return unusable_output(depth, "evaluator", "unparseable_evaluation", target, verdict.attempts, verdict.errors)


def evaluate(payload: EvaluatePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    answer = services.journal.get_answer(payload["answer_id"])["answer"]
    verdict = judge_answer(services, services.query_text(payload["query"]), answer, payload["aspects"])
    record = EvalRecord(
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
    update: dict[str, Any] = {
        "evaluations": {payload["answer_id"]: record},
        **usage_update(payload["depth"], {"evaluator": verdict.usage}),
    }
    if verdict.reward is None:
        update["failures"] = [evaluation_failure(payload["depth"], payload["answer_id"], verdict)]
    emit("evaluation", depth=payload["depth"], candidate=payload["candidate"], reward=verdict.reward)
    return update
