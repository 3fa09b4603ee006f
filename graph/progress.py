"""Progress events on LangGraph's ``custom`` stream, typed: the CLI's live view and SDK clients read the same events."""

from __future__ import annotations

from typing import Literal, TypedDict

from langgraph.config import get_stream_writer


class AnswerEvent(TypedDict):
    event: Literal["answer"]
    depth: int
    candidate: str
    query: str


class EvaluationEvent(TypedDict):
    event: Literal["evaluation"]
    depth: int
    candidate: str
    reward: float | None


class BeamValue(TypedDict):
    id: str
    path_value: float | None


class DepthDoneEvent(TypedDict):
    event: Literal["depth_done"]
    depth: int
    max_depth: int
    candidates: int
    rewards: list[float | None]
    beam: list[BeamValue]
    tokens: int
    stop_reason: str | None


class ValidatedEvent(TypedDict):
    event: Literal["validated"]
    depth: int
    beam: list[BeamValue]  # path_value holds the validation reward


class ProposalsEvent(TypedDict):
    event: Literal["proposals"]
    depth: int
    candidate: str
    count: int


class ReviewWaitingEvent(TypedDict):
    event: Literal["review_waiting"]
    depth: int
    beam: list[str]


class FinishedEvent(TypedDict):
    event: Literal["finished"]
    best_candidate: str
    path_value: float | None


class IclRoundEvent(TypedDict):
    event: Literal["icl_round"]
    example: str
    round: int
    rewards: list[float | None]
    done: bool
    stop_reason: str


class EvalPlannedEvent(TypedDict):
    event: Literal["eval_planned"]
    answers: int  # answer (and grade) branches the evaluation needs in all
    pairs: int


class EvalStepEvent(TypedDict):
    event: Literal["eval_step"]
    phase: Literal["answer", "grade", "pair"]
    system: str
    query: str


ProgressEvent = (
    AnswerEvent
    | EvaluationEvent
    | DepthDoneEvent
    | ValidatedEvent
    | ProposalsEvent
    | ReviewWaitingEvent
    | FinishedEvent
    | IclRoundEvent
)


def emit(event: ProgressEvent) -> None:
    """Write one event; a no-op when nobody streams the custom mode."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (a node unit-tested on its own)
        return
    writer(event)
