"""Start an ICL-optimization round: set up the examples on the first round, count rounds."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.state import IclExampleRecord, IclOptState


def icl_plan(state: IclOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    round_number = state.get("round", -1) + 1
    update: dict[str, Any] = {"round": round_number}
    if round_number == 0:
        update["examples"] = {
            example.id: IclExampleRecord(
                id=example.id,
                query=example.query,
                aspects=None,
                answers=[],
                beam=[],
                round=-1,
                done=False,
                stop_reason="",
            )
            for example in services.icl_examples
        }
    return update
