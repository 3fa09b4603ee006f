"""State of the prompt-optimization graph: ids, prompts, scores and short previews only.

Full answers live in the run journal; every field here is plain JSON-like data so any
checkpointer serializes it without custom types.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from drpo.model_calls import add_usage

Origin = Literal["initial", "optimizer", "carried", "human"]


class CandidateRecord(TypedDict):
    """A system prompt in the search tree."""

    id: str
    prompt: str
    parent: str | None
    depth: int
    origin: Origin
    note: str  # why it was carried forward, or the optimizer's short thought


class AspectRecord(TypedDict):
    """The dynamic reward chosen for one query."""

    aspects: list[str]
    definitions: dict[str, str]
    reasoning: str
    new_aspects: list[str]
    fallback: bool  # True when selection failed after retries and the default aspects were used


class EvalRecord(TypedDict):
    """One candidate's answer to one query, and the judge's verdict."""

    candidate: str
    query: str
    depth: int
    answer_id: str
    answer_preview: str
    scores: dict[str, int]
    rationales: dict[str, str]
    reward: float | None  # None when the judge's output could not be parsed after retries
    attempts: int


class FailureRecord(TypedDict):
    depth: int
    role: str
    kind: str
    target: str
    attempts: int
    error: str


def unusable_output(depth: int, role: str, kind: str, target: str, attempts: int, errors: list[str]) -> FailureRecord:
    """The trace record of model output that stayed unusable after every re-ask."""
    return FailureRecord(
        depth=depth, role=role, kind=kind, target=target, attempts=attempts, error="; ".join(errors)[-500:]
    )


class BeamEntry(TypedDict):
    id: str
    reward: float | None
    path_value: float | None


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


class PromptOptInput(TypedDict):
    """What starts a run."""

    initial_prompt: NotRequired[str]


class PromptOptState(TypedDict):
    """Graph state for system-prompt optimization (Algorithm 2)."""

    initial_prompt: NotRequired[str]
    depth: NotRequired[int]
    max_depth: NotRequired[int]
    depth_increases: NotRequired[int]
    query_order: NotRequired[list[str]]
    queries: Annotated[dict[str, list[str]], merge_dicts]  # depth -> query ids
    icl: Annotated[dict[str, list[str]], merge_dicts]  # query id -> ICL example ids
    aspects: Annotated[dict[str, AspectRecord], merge_dicts]  # query id -> selection
    candidates: Annotated[dict[str, CandidateRecord], merge_dicts]
    frontier: NotRequired[list[str]]  # candidates scored at the current depth, in order
    evaluations: Annotated[dict[str, EvalRecord], merge_dicts]  # "cand|query" -> verdict
    beam: NotRequired[list[str]]
    beams: Annotated[dict[str, list[BeamEntry]], merge_dicts]  # depth -> ranked frontier
    proposals: Annotated[list[CandidateRecord], operator.add]
    failures: Annotated[list[FailureRecord], operator.add]
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    usage_by_depth: Annotated[dict[str, dict[str, dict[str, int]]], merge_usage_by_depth]
    stop_reason: NotRequired[str]
    best: NotRequired[dict[str, Any]]


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


class TransitionPayload(TypedDict):
    """Input of one transition branch: a beam node and what the optimizer needs to see."""

    depth: int
    rank: int
    candidate: CandidateRecord
    history: list[str]  # path prompts, oldest first, current last
    evaluations: list[EvalRecord]
    aspects: dict[str, AspectRecord]


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
