"""One round for one ICL example: score the source answer (round 0), or rewrite the kept answers
from their evaluations, score the rewrites, and keep the best W (ties go to the newer answer)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.progress import IclRoundEvent, emit
from drpo.graph.state import FailureRecord, IclAnswerRecord, IclExampleRecord, IclRefinePayload, unusable_output
from drpo.judge.aspects import select_aspects_for, static_record
from drpo.judge.verdict import Verdict, evaluation_failure, judge_answer, judging
from drpo.llm.caller import call_structured_samples
from drpo.llm.structured import ResponseRewriteReply, parse_response_rewrite, reply_schema
from drpo.llm.usage import add_usage
from drpo.prompts import ICL_TRANSITION, render
from drpo.prompts.texts import evaluation_text

MAX_REWARD = 5.0


def answer_text(services: Services, example_id: str, answer_id: str) -> str:
    if answer_id.endswith("|source"):
        return next(example.answer for example in services.icl_examples if example.id == example_id)
    return str(services.journal.get_answer(answer_id)["answer"])


def rank_answers(answers: list[IclAnswerRecord]) -> list[IclAnswerRecord]:
    """Best reward first; unscored last; among equals the newer answer (later round, later sample) first."""
    indexed = list(enumerate(answers))
    indexed.sort(key=lambda item: (item[1]["reward"] is None, -(item[1]["reward"] or 0.0), -item[0]))
    return [answer for _index, answer in indexed]


def _record(answer_id: str, round_number: int, origin: str, parent: str | None, verdict: Verdict) -> IclAnswerRecord:
    return IclAnswerRecord(
        answer_id=answer_id,
        round=round_number,
        origin=origin,  # type: ignore[typeddict-item]
        parent=parent,
        reward=verdict.reward,
        scores=verdict.scores,
        rationales=verdict.rationales,
    )


def icl_refine(payload: IclRefinePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    search = services.settings.icl_search
    example = IclExampleRecord(**payload["example"])  # type: ignore[typeddict-item]
    round_number = payload["round"]
    usage: dict[str, dict[str, int]] = {}
    failures: list[FailureRecord] = []
    judge = services.callers["evaluator"]
    retries = services.settings.search.structured_retries

    def spend(role: str, amount: dict[str, int]) -> None:
        usage[role] = add_usage(usage.get(role, {}), amount)

    if round_number == 0:
        if services.settings.reward.for_icl() == "static":
            aspects, spent, failed = static_record(), {}, []
        else:
            aspects, spent, failed = select_aspects_for(
                services.callers["aspect_selector"],
                services.aspect_cache,
                query=example["query"],
                query_id=example["id"],
                depth=round_number,
                retries=retries,
                run_id=services.run_dir.run_id,
                known_only=not services.settings.reward.new_aspects,
            )
        if spent:
            spend("aspect_selector", spent)
        failures.extend(failed)
        answer_id = f"icl|{example['id']}|source"
        text = answer_text(services, example["id"], answer_id)
        verdict = judge_answer(judge, example["query"], text, aspects, retries=retries, **judging(services))
        spend("evaluator", verdict.usage)
        if verdict.reward is None:
            failures.append(evaluation_failure(round_number, answer_id, verdict))
        source = _record(answer_id, 0, "source", None, verdict)
        example.update(aspects=aspects, answers=[source], beam=[answer_id])
    else:
        assert example["aspects"] is not None
        by_id = {answer["answer_id"]: answer for answer in example["answers"]}
        new_answers: list[IclAnswerRecord] = []
        for parent_rank, parent_id in enumerate(example["beam"]):
            parent = by_id[parent_id]
            prompt = render(
                ICL_TRANSITION,
                query=example["query"],
                output=answer_text(services, example["id"], parent_id),
                evaluation=evaluation_text(parent["scores"], parent["rationales"]),
            )
            outcomes = call_structured_samples(
                services.callers["optimizer"],
                prompt,
                parse_response_rewrite,
                search.num_actions,
                retries=retries,
                json_schema=reply_schema(ResponseRewriteReply),
            )
            for sample, outcome in enumerate(outcomes):
                spend("optimizer", outcome.usage)
                target = f"icl|{example['id']}|r{round_number}|{parent_rank}|{sample}"
                if outcome.value is None:
                    failures.append(
                        unusable_output(
                            round_number, "optimizer", "unparseable_rewrite", target, outcome.attempts, outcome.errors
                        )
                    )
                    continue
                text = outcome.value["new_response"]
                services.journal.put_answer(target, {"answer_id": target, "example": example["id"], "answer": text})
                verdict = judge_answer(
                    judge, example["query"], text, example["aspects"], retries=retries, **judging(services)
                )
                spend("evaluator", verdict.usage)
                if verdict.reward is None:
                    failures.append(evaluation_failure(round_number, target, verdict))
                new_answers.append(_record(target, round_number, "rewrite", parent_id, verdict))
        pool = [by_id[answer_id] for answer_id in example["beam"]] + new_answers
        example["answers"] = [*example["answers"], *new_answers]
        example["beam"] = [answer["answer_id"] for answer in rank_answers(pool)[: search.beam_width]]
    best = next(answer for answer in example["answers"] if answer["answer_id"] == example["beam"][0])
    example["round"] = round_number
    if best["reward"] is None:
        example.update(done=True, stop_reason="evaluation failed")
    elif best["reward"] >= MAX_REWARD:
        example.update(done=True, stop_reason="maximum score")
    elif round_number >= search.depth:
        example.update(done=True, stop_reason="reached max rounds")
    update: dict[str, Any] = {"examples": {example["id"]: example}, "failures": failures}
    emit(
        IclRoundEvent(
            event="icl_round",
            example=example["id"],
            round=round_number,
            rewards=[answer["reward"] for answer in example["answers"]],
            done=example["done"],
            stop_reason=example["stop_reason"],
        )
    )
    if usage:
        update["usage"] = usage
    return update
