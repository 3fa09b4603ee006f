"""The optimizer rewrites a beam node's prompt from its answer and evaluation (M proposals),
or carries the prompt forward unchanged under the skip rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.progress import ProposalsEvent, emit
from drpo.graph.state import (
    ROOT_ID,
    CandidateRecord,
    CarryReason,
    FailureRecord,
    TransitionPayload,
    unusable_output,
    usage_update,
)
from drpo.llm.caller import call_structured_samples
from drpo.llm.structured import RejectedContent, TooLong, TransitionReply, parse_transition, reply_schema
from drpo.llm.usage import add_usage, estimate_tokens
from drpo.nodes.prompt_sanity import prompt_problem
from drpo.prompts import PROMPT_TRANSITION, TRANSITION_FEEDBACK, render
from drpo.prompts.texts import evaluation_text, former_prompts_text
from drpo.scoring import should_skip


def child_id(depth: int, rank: int, sample: int) -> str:
    """Ids encode (depth, parent rank, sample) so the next frontier's order is deterministic."""
    return f"d{depth}-{rank}-{sample}"


RELATIVE_NOTE = (
    "(These scores compare the output, B, with a reference answer to the same query, A, written with the "
    "initial system prompt: 3 = as good as A, 5 = much better, 1 = much worse.)\n"
)


def feedback_shown(services: Services, payload: TransitionPayload) -> list[tuple[str, str, str]]:
    """(query, answer, verdict) of every scored evaluation the optimizer is shown; a relative verdict
    says what its scale and its "A" and "B" mean."""
    relative = services.settings.reward.scoring == "relative"
    return [
        (
            services.query_text(record["query"]),
            services.journal.get_answer(record["answer_id"])["answer"],
            (RELATIVE_NOTE if relative and record["candidate"] != ROOT_ID else "")
            + evaluation_text(record["scores"], record["rationales"]),
        )
        for record in payload["evaluations"]
        if record["reward"] is not None
    ]


def feedback_text(shown: list[tuple[str, str, str]]) -> str:
    return "\n".join(
        render(TRANSITION_FEEDBACK, query=query, output=answer, evaluation=verdict) for query, answer, verdict in shown
    )


def carried(payload: TransitionPayload, because: CarryReason, note: str) -> CandidateRecord:
    """The parent's prompt, carried unchanged to the next depth."""
    parent = payload["candidate"]
    return CandidateRecord(
        id=child_id(payload["depth"] + 1, payload["rank"], 0),
        prompt=parent["prompt"],
        parent=parent["id"],
        depth=payload["depth"] + 1,
        origin="carried",
        note=note,
        carried_because=because,
    )


# A proposal whose every re-ask failed the same way is recorded as that kind; mixed failures as unparseable.
PROPOSAL_FAILURES = {frozenset({TooLong.kind}): "prompt_too_long", frozenset({RejectedContent.kind}): "unusable_prompt"}
RETRY_SAMPLES = 1000  # a retried transition asks samples 1000*round + i: new journal keys and seeds


def length_guarded(
    limit: int | None, shown: Sequence[str] = (), current: str = ""
) -> Callable[[dict[str, Any]], dict[str, str]]:
    """The transition parser, refusing (so re-asking) degenerate proposals (see ``prompt_sanity``; ``shown``
    are the feedback's queries and answers, ``current`` the prompt being rewritten) and ones longer than
    ``limit`` tokens: judges with a length bias would otherwise reward ever longer prompts."""

    def parse(data: dict[str, Any]) -> dict[str, str]:
        parsed = parse_transition(data)
        problem = prompt_problem(parsed["new_system_prompt"], shown, current)
        if problem is not None:
            raise RejectedContent(f"new_system_prompt is not a usable system prompt: {problem}")
        size = estimate_tokens(parsed["new_system_prompt"])
        if limit is not None and size > limit:
            raise TooLong(f"new_system_prompt is about {size} tokens; keep the system prompt under {limit} tokens")
        return parsed

    return parse


def transition(payload: TransitionPayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    search = services.settings.search
    skip = should_skip(payload["evaluations"], search.skip_threshold)
    if skip is not None:
        return {"proposals": [carried(payload, "skip", f"skip: {skip}")]}
    shown = feedback_shown(services, payload)
    prompt = render(
        PROMPT_TRANSITION,
        current_prompt=payload["candidate"]["prompt"],
        feedback=feedback_text(shown),
        former_prompts=former_prompts_text(payload["history"][-search.prompt_history :]),
    )
    proposals: list[CandidateRecord] = []
    failures: list[FailureRecord] = []
    usage: dict[str, int] = {}
    outcomes = call_structured_samples(
        services.callers["optimizer"],
        prompt,
        length_guarded(
            search.max_prompt_tokens,
            [text for query, answer, _ in shown for text in (query, answer)],
            payload["candidate"]["prompt"],
        ),  # fmt: skip
        search.num_actions,
        retries=search.structured_retries,
        json_schema=reply_schema(TransitionReply),
        first_sample=payload.get("sample_offset", 0) + RETRY_SAMPLES * payload.get("retry_round", 0),
        whole=True,  # the prompt is the reply's last field: a reply cut at the length limit cuts the prompt
    )
    for sample, outcome in enumerate(outcomes):
        usage = add_usage(usage, outcome.usage)
        if outcome.value is None:
            kind = PROPOSAL_FAILURES.get(frozenset(outcome.error_kinds), "unparseable_transition")
            failures.append(
                unusable_output(
                    payload["depth"],
                    "optimizer",
                    kind,
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
        proposals.append(carried(payload, "transition-failed", "transition failed: every proposal was unusable"))
    emit(
        ProposalsEvent(
            event="proposals", depth=payload["depth"], candidate=payload["candidate"]["id"], count=len(proposals)
        )
    )
    return {"proposals": proposals, "failures": failures, **usage_update(payload["depth"], {"optimizer": usage})}
