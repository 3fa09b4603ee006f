"""The review interrupt's contract: the decisions a reviewer may send, the beam summary they see,
and how a decision changes the search state (used by the review node, supervision and forks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drpo.errors import DrpoInputError
from drpo.graph.state import ROOT_ID, CandidateRecord, PromptOptState
from drpo.scoring import verdict_key


class ReviewQuery(TypedDict):
    id: str
    text: str
    aspects: list[str]


class ReviewVerdict(TypedDict):
    query_id: str
    scores: dict[str, int]
    rationales: dict[str, str]
    reward: float | None
    answer_preview: str


class ReviewBeamEntry(TypedDict):
    index: int
    id: str
    origin: str
    prompt: str
    reward: float | None
    path_value: float | None
    evaluations: list[ReviewVerdict]


class PendingPrompt(TypedDict):
    id: str
    prompt: str


class ReviewSummary(TypedDict):
    """What a reviewer sees at a review interrupt (the interrupt's value)."""

    run_id: str
    depth: int
    max_depth: int
    queries: list[ReviewQuery]
    beam: list[ReviewBeamEntry]
    pending_human_prompts: list[PendingPrompt]
    actions: list[str]
    error: NotRequired[str]


ReviewAction = Literal["accept", "edit", "add", "drop", "stop"]
MAX_INVALID_DECISIONS = 20


class ReviewDecision(BaseModel):
    """One reviewer action. ``index`` is the position in the beam (0 = best)."""

    model_config = ConfigDict(extra="forbid")

    action: ReviewAction
    index: int | None = Field(None, ge=0, description="Beam position for edit and drop")
    prompt: str | None = Field(None, description="New prompt text for edit and add")

    @model_validator(mode="after")
    def _fields_for_action(self) -> ReviewDecision:
        if self.action in ("edit", "drop") and self.index is None:
            raise ValueError(f"{self.action} needs a beam index")
        if self.action in ("edit", "add") and (self.prompt is None or not self.prompt.strip()):
            raise ValueError(f"{self.action} needs a non-empty prompt")
        return self


def parse_decisions(value: Any, beam_size: int) -> list[ReviewDecision]:
    """Validate a resume value: one decision or a list of them, applied in order."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DrpoInputError("a review needs at least one decision")
    try:
        decisions = [ReviewDecision.model_validate(item) for item in items]
    except ValidationError as error:
        first = error.errors()[0]
        raise DrpoInputError(f"invalid review decision: {first['msg']}") from None
    remaining = beam_size
    for decision in decisions:
        if decision.index is not None and decision.index >= beam_size:
            raise DrpoInputError(f"beam index {decision.index} is out of range (the beam has {beam_size} candidates)")
        if decision.action == "drop":
            remaining -= 1
    additions = sum(decision.action in ("edit", "add") for decision in decisions)
    stopping = any(decision.action == "stop" for decision in decisions)
    if remaining + additions <= 0 and not stopping:
        raise DrpoInputError("a review cannot drop every candidate; add a prompt or stop the search")
    return decisions


def beam_summary(state: PromptOptState, run_id: str, query_text: Callable[[str], str]) -> ReviewSummary:
    """What the reviewer sees: the beam with scores, rationales, the queries and answer previews."""
    depth = state["depth"]
    ranked = {entry["id"]: entry for entry in state["beams"][str(depth)]}
    query_ids = state["queries"][str(depth)]
    beam = []
    for index, candidate_id in enumerate(state["beam"]):
        record = state["candidates"][candidate_id]
        evaluations = []
        for query_id in query_ids:
            verdict = state["evaluations"].get(verdict_key(candidate_id, query_id))
            if verdict is not None:
                evaluations.append(
                    ReviewVerdict(
                        query_id=query_id,
                        scores=verdict["scores"],
                        rationales=verdict["rationales"],
                        reward=verdict["reward"],
                        answer_preview=verdict["answer_preview"],
                    )
                )
        beam.append(
            ReviewBeamEntry(
                index=index,
                id=candidate_id,
                origin=record["origin"],
                prompt=record["prompt"],
                reward=ranked[candidate_id]["reward"],
                path_value=ranked[candidate_id]["path_value"],
                evaluations=evaluations,
            )
        )
    pending = [record for record in state.get("proposals", []) if record["origin"] == "human"]
    return ReviewSummary(
        run_id=run_id,
        depth=depth,
        max_depth=state["max_depth"],
        queries=[
            ReviewQuery(id=query_id, text=query_text(query_id), aspects=state["aspects"][query_id]["aspects"])
            for query_id in query_ids
        ],
        beam=beam,
        pending_human_prompts=[PendingPrompt(id=record["id"], prompt=record["prompt"]) for record in pending],
        actions=["accept", "edit", "add", "drop", "stop"],
    )


def human_candidate(depth: int, number: int, prompt: str, parent: str, note: str) -> CandidateRecord:
    """A reviewer's prompt, entering the search at ``depth`` (ids ``dN-h-K`` sort after the optimizer's)."""
    return CandidateRecord(
        id=f"d{depth}-h-{number}", prompt=prompt.strip(), parent=parent, depth=depth, origin="human", note=note
    )


def apply_decisions(state: PromptOptState, decisions: list[ReviewDecision]) -> dict[str, Any]:
    """The state update for a review: the new beam, human candidates for the next depth, a stop reason."""
    depth = state["depth"]
    beam = list(state["beam"])
    removed: set[str] = set()
    existing = sum(1 for record in state.get("proposals", []) if record["origin"] == "human")
    added: list[CandidateRecord] = []
    update: dict[str, Any] = {}
    for decision in decisions:
        if decision.action == "stop":
            update["stop_reason"] = "stopped by reviewer"
        elif decision.action in ("edit", "drop"):
            assert decision.index is not None
            candidate_id = beam[decision.index]
            removed.add(candidate_id)
            if decision.action == "edit":
                note = f"edited by reviewer from {candidate_id}"
                added.append(
                    human_candidate(depth + 1, existing + len(added), decision.prompt or "", candidate_id, note)
                )
        elif decision.action == "add":
            note = "added by reviewer"
            added.append(human_candidate(depth + 1, existing + len(added), decision.prompt or "", ROOT_ID, note))
    kept = [candidate_id for candidate_id in beam if candidate_id not in removed]
    if "stop_reason" in update and not kept:
        kept = beam[:1]  # stopping finalizes with the current best
    update["beam"] = kept
    if added and "stop_reason" not in update:
        update["proposals"] = added
    update["reviews"] = {
        str(depth): {
            "decisions": [decision.model_dump(exclude_none=True) for decision in decisions],
            "beam": kept,
            "added": [record["id"] for record in update.get("proposals", [])],
        }
    }
    return update
