"""Typed records of the files in a run directory: ``result.json`` (prompt and ICL runs) and ``status.json``.

They are written in one place each (finalize, the ICL writer, import-reference; the run directory for
status) and read through these types by show, export, serving, supervision and the CLI.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

RunStatusName = Literal["running", "waiting-for-review", "interrupted", "failed", "budget-exhausted", "done", "unknown"]


class ServingInfo(TypedDict):
    """What serving needs to reproduce the optimized input: collection, embedder, K, base mode."""

    icl_collection: str
    embedding_model: str
    icl_k: int
    base_mode: Literal["chat", "completion"]


class BestCandidate(TypedDict):
    candidate_id: str
    depth: int
    reward: float | None
    path_value: float | None


class CandidateVerdict(TypedDict, total=False):
    query_id: str
    aspects: list[str]
    scores: dict[str, float]
    rationales: dict[str, str]
    reward: float | None
    answer_id: str
    answer_preview: str
    judge_attempts: int
    written: dict[str, int]  # reward.scoring=expected: the digits the judge wrote
    expected_fallbacks: int


class CandidateRow(TypedDict):
    id: str
    parent: str | None
    origin: str
    note: str
    prompt: str
    reward: float | None
    path_value: float | None
    kept: bool
    evaluations: list[CandidateVerdict]


class DepthRow(TypedDict):
    depth: int
    queries: list[dict[str, str]]
    beam: list[str]
    candidates: list[CandidateRow]


class ValidationResult(TypedDict):
    """search.validation's outcome: the queries, each validated candidate's mean reward on them, and
    whether any proposal beat the initial prompt."""

    queries: list[dict[str, str]]  # id and text
    rewards: dict[str, float | None]
    initial: float | None
    best: float | None
    beat_initial: bool
    note: str


class RunResult(TypedDict):
    """``result.json`` of a prompt-optimization run (also of an imported reference run)."""

    run_id: str
    status: Literal["done"]
    best_prompt: str
    best: BestCandidate
    stop_reason: str
    serving: ServingInfo
    depths_run: int
    depths: list[DepthRow]
    failures: list[dict[str, Any]]
    usage: dict[str, dict[str, int]]
    search: NotRequired[dict[str, Any]]
    reward: NotRequired[dict[str, Any]]
    max_depth: NotRequired[int]
    depth_increases: NotRequired[int]
    aspects: NotRequired[dict[str, Any]]
    reviews: NotRequired[dict[str, Any]]
    usage_by_depth: NotRequired[dict[str, dict[str, dict[str, int]]]]
    cost: NotRequired[float | None]
    imported_from: NotRequired[str]
    validation: NotRequired[ValidationResult]
    truncated_answers: NotRequired[int]  # answers cut at the base role's max_tokens (graded cut)
    judge_note: NotRequired[str]  # set when the judge gave every answer the same reward (no signal)


class IclExampleResult(TypedDict):
    id: str
    query: str
    answer: str
    source_reward: float | None
    final_reward: float | None
    rounds: int
    stop_reason: str
    aspects: list[str]
    history: list[dict[str, Any]]


class IclRunResult(TypedDict):
    """``result.json`` of an ICL-optimization run."""

    run_id: str
    kind: Literal["icl"]
    status: Literal["done"]
    collection: str
    icl_search: dict[str, Any]
    examples: list[IclExampleResult]
    failures: list[dict[str, Any]]
    usage: dict[str, dict[str, int]]


AnyRunResult = RunResult | IclRunResult


class RunStatus(TypedDict, total=False):
    """``status.json``: the latest state of a run, written at every transition."""

    run_id: str
    status: RunStatusName
    updated_at: float
    error: str
    depth: int | None
    next: list[str]
    note: str
    kind: str
    best_reward: float | None
    collection: str
    transport_retries: dict[str, int]


def is_icl_result(result: AnyRunResult) -> bool:
    return result.get("kind") == "icl"


def result_summary(result: AnyRunResult) -> dict[str, Any]:
    """The few fields of a result that the status file repeats."""
    if result.get("kind") == "icl":
        return {"kind": "icl", "collection": result["collection"]}  # type: ignore[typeddict-item]
    if result.get("kind") == "eval":
        return {"kind": "eval"}
    return {"kind": "prompt", "best_reward": result["best"]["path_value"]}  # type: ignore[typeddict-item]
