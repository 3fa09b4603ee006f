"""The optimizer rewrites a beam node's prompt from its answer and evaluation (M proposals),
or carries the prompt forward unchanged under the skip rule."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.state import CandidateRecord, FailureRecord, TransitionPayload, unusable_output, usage_update
from drpo.model_calls import add_usage, call_structured_samples
from drpo.nodes.progress import emit
from drpo.nodes.scoring import should_skip
from drpo.prompts import PROMPT_TRANSITION, TRANSITION_FEEDBACK, render
from drpo.services import DrpoContext, Services, services_of
from drpo.structured import parse_transition, transition_schema


def child_id(depth: int, rank: int, sample: int) -> str:
    """Ids encode (depth, parent rank, sample) so the next frontier's order is deterministic."""
    return f"d{depth}-{rank}-{sample}"


def former_prompts_text(history: list[str]) -> str:
    """Path prompts, consecutive duplicates (from skipped levels) collapsed."""
    unique: list[str] = []
    for prompt in history:
        if not unique or unique[-1] != prompt:
            unique.append(prompt)
    blocks = [f"---Version {index}---\n{prompt}" for index, prompt in enumerate(unique[:-1], start=1)]
    blocks.append(f"---Current Version---\n{unique[-1]}")
    return "\n\n".join(blocks)


def evaluation_text(scores: dict[str, int], rationales: dict[str, str]) -> str:
    return json.dumps(
        {aspect: {"rationale": rationales.get(aspect, ""), "score": score} for aspect, score in scores.items()},
        indent=2,
    )


def feedback_text(services: Services, payload: TransitionPayload) -> str:
    parts = []
    for record in payload["evaluations"]:
        if record["reward"] is None:
            continue
        parts.append(
            render(
                TRANSITION_FEEDBACK,
                query=services.query_text(record["query"]),
                output=services.journal.get_answer(record["answer_id"])["answer"],
                evaluation=evaluation_text(record["scores"], record["rationales"]),
            )
        )
    return "\n".join(parts)


def carried(payload: TransitionPayload, note: str) -> CandidateRecord:
    parent = payload["candidate"]
    return CandidateRecord(
        id=child_id(payload["depth"] + 1, payload["rank"], 0),
        prompt=parent["prompt"],
        parent=parent["id"],
        depth=payload["depth"] + 1,
        origin="carried",
        note=note,
    )


def transition(payload: TransitionPayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    search = services.settings.search
    skip = should_skip(payload["evaluations"], search.skip_threshold)
    if skip is not None:
        return {"proposals": [carried(payload, f"skip: {skip}")]}
    prompt = render(
        PROMPT_TRANSITION,
        current_prompt=payload["candidate"]["prompt"],
        feedback=feedback_text(services, payload),
        former_prompts=former_prompts_text(payload["history"][-search.prompt_history :]),
    )
    proposals: list[CandidateRecord] = []
    failures: list[FailureRecord] = []
    usage: dict[str, int] = {}
    outcomes = call_structured_samples(
        services.callers["optimizer"],
        prompt,
        parse_transition,
        search.num_actions,
        retries=search.structured_retries,
        json_schema=transition_schema(),
    )
    for sample, outcome in enumerate(outcomes):
        usage = add_usage(usage, outcome.usage)
        if outcome.value is None:
            failures.append(
                unusable_output(
                    payload["depth"],
                    "optimizer",
                    "unparseable_transition",
                    f"{payload['candidate']['id']}#{sample}",
                    outcome.attempts,
                    outcome.errors,
                )
            )
            continue
        proposals.append(
            CandidateRecord(
                id=child_id(payload["depth"] + 1, payload["rank"], sample),
                prompt=outcome.value["new_system_prompt"],
                parent=payload["candidate"]["id"],
                depth=payload["depth"] + 1,
                origin="optimizer",
                note=outcome.value["thought"][:300],
            )
        )
    if not proposals:
        proposals.append(carried(payload, "transition failed: every proposal was unusable"))
    emit("proposals", depth=payload["depth"], candidate=payload["candidate"]["id"], count=len(proposals))
    return {"proposals": proposals, "failures": failures, **usage_update(payload["depth"], {"optimizer": usage})}
