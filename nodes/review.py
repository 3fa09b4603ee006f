"""Human review between depths: one interrupt after pruning, never inside a Send branch.

Everything before ``interrupt()`` is cheap and idempotent (it re-runs on resume). An edited
or added prompt becomes a human-written candidate of the next depth, so it is scored like any
other candidate before it competes.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from drpo.errors import DrpoInputError
from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import ReviewWaitingEvent, emit
from drpo.graph.review import MAX_INVALID_DECISIONS, apply_decisions, beam_summary, parse_decisions
from drpo.graph.state import PromptOptState


def review(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    if state.get("stop_reason"):
        return {}
    summary = beam_summary(state, services.run_dir.run_id, services.query_text)
    emit(
        ReviewWaitingEvent(
            event="review_waiting", depth=state["depth"], beam=[entry["id"] for entry in summary["beam"]]
        )
    )
    error: str | None = None
    for _ in range(MAX_INVALID_DECISIONS):
        value = interrupt({**summary, "error": error} if error else summary)
        try:
            return apply_decisions(state, parse_decisions(value, len(state["beam"])))
        except DrpoInputError as invalid:
            error = str(invalid)  # ask again, telling the reviewer why
    raise DrpoInputError(f"review at depth {state['depth']} got {MAX_INVALID_DECISIONS} invalid decisions")
