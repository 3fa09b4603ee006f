"""Retrieve the K most similar ICL examples from Chroma for each of the depth's queries."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.state import PromptOptState


def retrieve_icl(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    k = services.settings.search.icl_k
    found = {}
    for query_id in state["queries"][str(state["depth"])]:
        if query_id not in state.get("icl", {}):
            text = services.query_text(query_id)
            found[query_id] = services.icl_store.nearest_ids(text, k, services.query_embedding(query_id))
    return {"icl": found}
