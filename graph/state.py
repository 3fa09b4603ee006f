"""State of the prompt-optimization graph: ids, prompts, scores and short previews only.

Full answers live in the run journal; every field here is plain JSON-like data so any
checkpointer serializes it without custom types.
"""

from __future__ import annotations

import operator
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,  # pydantic builds Studio's schemas from these on 3.11
)

from pydantic import Field
from typing_extensions import TypedDict

from drpo.llm.usage import add_usage
from drpo.store.redaction import redact

Origin = Literal["initial", "optimizer", "carried", "human"]
CarryReason = Literal["skip", "transition-failed"]
ROOT_ID = "d1-0-0"  # the initial prompt's candidate id
PREVIEW_CHARS = 240  # characters of an answer kept in state; the full text is in the run journal


class CandidateRecord(TypedDict):
    """A system prompt in the search tree."""

    id: str
    prompt: str
    parent: str | None
    depth: int
    origin: Origin
    note: str  # why it was carried forward, or the optimizer's short thought
    carried_because: NotRequired[CarryReason]  # set on carried candidates: what the depth-increase rule keys on


class AspectRecord(TypedDict):
    """The dynamic reward chosen for one query."""

    aspects: list[str]
    definitions: dict[str, str]
    reasoning: str
    new_aspects: list[str]
    fallback: bool  # True when selection failed after retries and the default aspects were used


class VerdictRecord(TypedDict):
    """One candidate's answer to one query, and the judge's verdict."""

    candidate: str
    query: str
    depth: int
    answer_id: str
    answer_preview: str
    scores: dict[str, float]  # whole numbers unless reward.scoring is expected
    rationales: dict[str, str]
    reward: float | None  # None when the judge's output could not be parsed after retries
    attempts: int
    written: NotRequired[dict[str, int]]  # reward.scoring=expected: the digits written (scores are expected values)
    expected_fallbacks: NotRequired[int]  # ...and how many aspects had no log-probabilities to weigh
    truncated: NotRequired[bool]  # the answer was cut at the base role's max_tokens before it was judged


class FailureRecord(TypedDict):
    depth: int
    role: str
    kind: str
    target: str
    attempts: int
    error: str  # every re-ask's error, joined with "; " (a message may itself hold "; ")
    last_error: str  # the last re-ask's error alone


def unusable_output(depth: int, role: str, kind: str, target: str, attempts: int, errors: list[str]) -> FailureRecord:
    """The trace record of model output that stayed unusable after every re-ask."""
    return FailureRecord(
        depth=depth,
        role=role,
        kind=kind,
        target=target,
        attempts=attempts,
        error=redact("; ".join(errors))[-500:],
        last_error=redact(errors[-1])[-300:] if errors else "",
    )


class BeamEntry(TypedDict):
    id: str
    reward: float | None
    path_value: float | None
    kept: bool  # kept in the beam after pruning (False until prune_beam decides)


class ValidationEntry(TypedDict):
    """A candidate's mean reward on the validation queries, as ranked after a depth's pruning."""

    id: str
    validation: float | None
    reward: float | None  # its training reward (the depth's own queries)
    kept: bool


def merge_dicts(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {**left, **right}


def merge_usage(left: dict[str, dict[str, int]], right: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    merged = dict(left)
    for role, usage in right.items():
        merged[role] = add_usage(merged.get(role, {}), usage)
    return merged


def merge_usage_by_depth(
    left: dict[str, dict[str, dict[str, int]]], right: dict[str, dict[str, dict[str, int]]]
) -> dict[str, dict[str, dict[str, int]]]:
    merged = dict(left)
    for depth, roles in right.items():
        merged[depth] = merge_usage(merged.get(depth, {}), roles)
    return merged


def usage_update(depth: int, usage: dict[str, dict[str, int]]) -> dict[str, Any]:
    """A state update booking token usage per role, in total and for one depth."""
    return {"usage": usage, "usage_by_depth": {str(depth): usage}}


def described(text: str) -> Any:
    """A field description LangGraph Studio shows in its forms (reducers stay last in ``Annotated``)."""
    return Field(description=text)


class StrategyRecord(TypedDict):
    """The search strategy and the shape its expansions need (routing reads only the state)."""

    name: str
    beam_width: int
    num_actions: int


class PromptOptInput(TypedDict):
    """What starts a run: optionally the system prompt to start the search from."""

    initial_prompt: NotRequired[
        Annotated[str, described("System prompt the search starts from (default: the settings' initial_prompt)")]
    ]


class PromptOptState(TypedDict):
    """Graph state for system-prompt optimization (Algorithm 2): ids, prompts, scores, short previews."""

    initial_prompt: NotRequired[Annotated[str, described("System prompt the search started from")]]
    depth: NotRequired[Annotated[int, described("Current depth (1 = scoring the initial prompt)")]]
    max_depth: NotRequired[Annotated[int, described("Last depth, raised by skipped levels up to the limit")]]
    depth_increases: NotRequired[Annotated[int, described("Extra depths granted so far")]]
    stalled_depths: NotRequired[Annotated[int, described("Depths in a row whose proposals all failed")]]
    query_order: NotRequired[Annotated[list[str], described("Seed query ids in the run's seeded order")]]
    strategy: NotRequired[Annotated[StrategyRecord, described("Search strategy: beam, greedy or mc")]]
    scoring: NotRequired[Annotated[str, described("reward.scoring at the start: absolute, expected or relative")]]
    references: Annotated[
        dict[str, str], described("Query id -> the initial prompt's answer id (relative scoring)"), merge_dicts
    ]
    queries: Annotated[dict[str, list[str]], described("Depth -> seed query ids scored there"), merge_dicts]
    icl: Annotated[dict[str, list[str]], described("Query id -> retrieved ICL example ids"), merge_dicts]
    aspects: Annotated[dict[str, AspectRecord], described("Query id -> selected reward aspects"), merge_dicts]
    candidates: Annotated[dict[str, CandidateRecord], described("Every prompt in the search tree"), merge_dicts]
    frontier: NotRequired[Annotated[list[str], described("Candidates scored at the current depth")]]
    evaluations: Annotated[
        dict[str, VerdictRecord], described("'candidate|query' -> the judge's scores and rationales"), merge_dicts
    ]
    beam: NotRequired[Annotated[list[str], described("Candidates kept for the next transition, best first")]]
    beams: Annotated[dict[str, list[BeamEntry]], described("Depth -> ranked frontier with path values"), merge_dicts]
    proposals: Annotated[list[CandidateRecord], described("Prompts proposed for the next depth"), operator.add]
    failures: Annotated[list[FailureRecord], described("Model output that stayed unusable"), operator.add]
    usage: Annotated[dict[str, dict[str, int]], described("Token usage per role"), merge_usage]
    usage_by_depth: Annotated[
        dict[str, dict[str, dict[str, int]]], described("Token usage per depth and role"), merge_usage_by_depth
    ]
    reviews: Annotated[
        dict[str, dict[str, Any]], described("Depth -> reviewer decisions and the beam after review"), merge_dicts
    ]
    review_enabled: NotRequired[Annotated[bool, described("Pause for a human review after this depth")]]
    validation_queries: NotRequired[
        Annotated[list[str], described("search.validation's query ids (fixed for the run; empty = off)")]
    ]
    validated: Annotated[
        dict[str, list[ValidationEntry]],
        described("Depth -> the candidates ranked on the validation queries, and which stayed in the beam"),
        merge_dicts,
    ]
    stop_reason: NotRequired[Annotated[str, described("Why the search ended")]]
    best: NotRequired[Annotated[dict[str, Any], described("The best candidate id and prompt, once finished")]]


class PreparePayload(TypedDict):
    """Input of select_aspects and retrieve_icl: a depth's queries still lacking aspects or examples, and
    where to go after (``dispatch_generation`` when the depth waits for them, ``sample_queries`` when they
    are prepared ahead, beside the previous depth's transitions)."""

    depth: int
    queries: list[str]
    then: Literal["dispatch_generation", "sample_queries"]


class GeneratePayload(TypedDict):
    """Input of one generate branch."""

    depth: int
    candidate: str
    prompt: str
    query: str
    icl: list[str]


class EvaluatePayload(GeneratePayload):
    """Input of one evaluate branch: the answer to judge and the query's selected aspects."""

    aspects: AspectRecord
    answer_id: str
    reference_answer_id: NotRequired[str]  # relative scoring: the answer this one is graded against
    round: NotRequired[int]  # > 0 when an earlier verdict on this answer stayed unusable (asked again on resume)


class TransitionPayload(TypedDict):
    """Input of one transition branch: a beam node and what the optimizer needs to see."""

    depth: int
    rank: int
    candidate: CandidateRecord
    history: list[str]  # path prompts, oldest first, current last
    evaluations: list[VerdictRecord]
    aspects: dict[str, AspectRecord]
    sample_offset: NotRequired[int]  # first sample index of this expansion (Monte Carlo search)
    retry_round: NotRequired[int]  # > 0 when this node's whole transition failed before (asked again on resume)


class IclAnswerRecord(TypedDict):
    """One version of an ICL example's answer and its score."""

    answer_id: str
    round: int
    origin: Literal["source", "rewrite"]
    parent: str | None
    reward: float | None
    scores: dict[str, int]
    rationales: dict[str, str]


class IclExampleRecord(TypedDict):
    """The optimization history of one ICL example (Algorithm 1)."""

    id: str
    query: str
    aspects: AspectRecord | None
    answers: list[IclAnswerRecord]
    beam: list[str]  # answer ids kept, best first
    round: int
    done: bool
    stop_reason: str


class IclOptState(TypedDict):
    """Graph state for ICL-answer optimization."""

    round: NotRequired[int]
    examples: Annotated[dict[str, IclExampleRecord], merge_dicts]
    failures: Annotated[list[FailureRecord], operator.add]
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    collection: NotRequired[str]


class IclRefinePayload(TypedDict):
    round: int
    example: IclExampleRecord


class EvalAnswerRecord(TypedDict):
    """One system's answer to one evaluation query (the text is in the journal and answers.jsonl)."""

    system: str
    query: str
    answer_id: str
    output_tokens: int
    alignment_tokens: int  # tokens of the system prompt plus the examples this request carried
    truncated: NotRequired[bool]  # cut at the base model's max_tokens before it was graded


class EvalGradeRecord(TypedDict):
    """The judge's grades of one answer: a score per aspect, None for N/A; ``ok`` False when unusable."""

    system: str
    query: str
    scores: dict[str, float | None]  # whole numbers, or probability-weighted ones with evaluation.scoring expected
    rationales: dict[str, str]
    ok: bool
    attempts: int
    written: NotRequired[dict[str, int | None]]  # evaluation.scoring expected: the digits the judge wrote
    expected_fallbacks: NotRequired[int]  # ... and how many of them had no log-probabilities (kept as written)
    round: NotRequired[int]  # the regrade round that asked it (0: the first grading)


class EvalPairRecord(TypedDict):
    """A system against the pairwise reference on one query, judged in both orders."""

    system: str
    query: str
    system_first: str | None  # the judge's winner with the system's answer shown first (A)
    system_second: str | None  # ... with the system's answer shown second (B)
    outcome: str | None  # win, tie or loss for the system; None when a verdict stayed unusable
    flipped: bool


class EvalState(TypedDict):
    """Graph state of an evaluation: ids, scores and short records; answers live in the journal."""

    items: NotRequired[list[str]]
    systems: NotRequired[list[str]]
    pairwise: NotRequired[str | None]
    excluded: NotRequired[dict[str, list[str]]]
    answers: Annotated[dict[str, EvalAnswerRecord], merge_dicts]
    grades: Annotated[dict[str, EvalGradeRecord], merge_dicts]
    pairs: Annotated[dict[str, EvalPairRecord], merge_dicts]
    failures: Annotated[list[FailureRecord], operator.add]
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    finished: NotRequired[bool]
    regrade_round: NotRequired[int]  # raised by a resume after every grade of a system stayed unusable


class EvalItemPayload(TypedDict):
    """Input of one answer, grade or pair branch."""

    system: str
    query: str
    round: NotRequired[int]  # grade branches: the regrade round (new requests, not journal replays)


def item_key(system: str, query_id: str) -> str:
    """Where an evaluation keeps a system's answer to a query, and its grade."""
    return f"{system}|{query_id}"
