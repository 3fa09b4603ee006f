"""When a role stops producing usable output, the search must not go on scoring nothing and end "done".

A depth whose verdicts are mostly unusable, or whose proposals all failed (``search.stall_patience``
depths in a row; until then the beam is carried on), stops the run with status failed, naming the role,
its provider and the last error. Resuming asks the failed calls again
(as new samples, so the journal does not hand back the same unusable replies); see ``redispatch``.
"""

from __future__ import annotations

from collections.abc import Sequence

from drpo.errors import SearchStalled
from drpo.graph.context import Services
from drpo.graph.state import FailureRecord, PromptOptState
from drpo.scoring import verdict_key


def _last_error(failures: Sequence[FailureRecord], role: str, depth: int) -> str:
    for record in reversed(failures):
        if record["role"] == role and record["depth"] == depth:
            return record["last_error"] or record["kind"]
    return "no usable output"


def _stall(services: Services, role: str, what: str, failures: Sequence[FailureRecord], depth: int) -> SearchStalled:
    caller = services.callers[role]
    return SearchStalled(
        f"the {role} ({caller.model_id}) {what} at depth {depth}; "
        f"last error: {_last_error(failures, role, depth)[:300]}"
    )


def unusable_share(
    state: PromptOptState, candidates: list[str], queries: list[str], max_share: float
) -> tuple[int, int] | None:
    """(unusable, all) verdicts on these candidates' answers to these queries when more than ``max_share``
    (or all) are unusable, else None."""
    keys = [verdict_key(candidate, query) for candidate in candidates for query in queries]
    records = [state["evaluations"][key] for key in keys if key in state.get("evaluations", {})]
    failed = sum(1 for record in records if record["reward"] is None)
    if records and failed and (failed == len(records) or failed / len(records) > max_share):
        return failed, len(records)
    return None


def evaluation_stall(state: PromptOptState, max_share: float) -> tuple[int, int] | None:
    """The unusable verdicts of this depth's frontier on its queries, past ``max_share``."""
    return unusable_share(state, state["frontier"], state["queries"][str(state["depth"])], max_share)


def validation_stall(state: PromptOptState, max_share: float) -> tuple[int, int] | None:
    """The unusable validation verdicts of this depth's pool, under the same rule."""
    from drpo.nodes.validate import validation_pool  # validate imports this module

    return unusable_share(state, validation_pool(state), state.get("validation_queries", []), max_share)


def proposals_stall(state: PromptOptState) -> int | None:
    """The number of beam nodes when every transition of the last depth failed, else None."""
    proposals = state.get("proposals", [])
    if proposals and all(record.get("carried_because") == "transition-failed" for record in proposals):
        return len(proposals)
    return None


def stalled_depths_after(state: PromptOptState) -> int:
    """Depths in a row whose proposals all failed, counting the depth just finished (0 when it had one)."""
    return state.get("stalled_depths", 0) + 1 if proposals_stall(state) is not None else 0


def check_evaluations(state: PromptOptState, services: Services) -> None:
    stall = evaluation_stall(state, services.settings.search.max_unusable_share)
    if stall is not None:
        what = f"gave no usable verdict for {stall[0]} of {stall[1]} answers"
        raise _stall(services, "evaluator", what, state.get("failures", []), state["depth"])


def check_validation(state: PromptOptState, services: Services) -> None:
    stall = validation_stall(state, services.settings.search.max_unusable_share)
    if stall is not None:
        what = f"gave no usable verdict for {stall[0]} of {stall[1]} validation answers"
        raise _stall(services, "evaluator", what, state.get("failures", []), state["depth"])


def check_proposals(state: PromptOptState, services: Services) -> None:
    nodes = proposals_stall(state)
    if nodes is not None:
        what = f"gave no usable prompt for any of {nodes} beam nodes"
        raise _stall(services, "optimizer", what, state.get("failures", []), state["depth"])


def evaluation_round(state: PromptOptState, answer_id: str) -> int:
    """How often this answer's verdict already stayed unusable: later rounds ask as new samples."""
    failures = state.get("failures", [])
    return sum(1 for record in failures if record["role"] == "evaluator" and record["target"] == answer_id)


def transition_round(state: PromptOptState, candidate_id: str, depth: int, num_actions: int) -> int:
    """How often this beam node's whole transition already failed at this depth (M failures a round)."""
    failed = sum(
        1
        for record in state.get("failures", [])
        if record["role"] == "optimizer"
        and record["depth"] == depth
        and record["target"].startswith(f"{candidate_id}#")
    )
    return failed // max(num_actions, 1)


def redispatch_node(
    state: PromptOptState, next_nodes: tuple[str, ...], max_share: float, stall_patience: int = 1
) -> str | None:
    """On resume of a stalled run: the node whose outgoing edges send the failed work again
    (``dispatch_evaluation`` for verdicts, ``review`` for transitions), or None when nothing stalled."""
    if not state:
        return None
    if next_nodes == ("prune_beam",) and evaluation_stall(state, max_share) is not None:
        return "dispatch_evaluation"
    if next_nodes == ("select_on_validation",) and validation_stall(state, max_share) is not None:
        return "dispatch_validation_evaluation"
    if next_nodes == ("sample_queries",) and state.get("depth", 0) > 0 and proposals_stall(state) is not None:
        # a tolerated stall was carried on, not re-asked
        return "review" if stalled_depths_after(state) >= stall_patience else None
    return None
