"""Retrieve the K most similar ICL examples from Chroma for each of a depth's queries."""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import PreparePayload


def retrieved_examples(services: Services, queries: list[str]) -> dict[str, list[str]]:
    """Query id -> ids of its K nearest examples."""
    k = services.settings.search.icl_k
    return {
        query_id: services.icl_store.nearest_ids(services.query_text(query_id), k, services.query_embedding(query_id))
        for query_id in queries
    }


def retrieve_icl(data: Any, runtime: Runtime[DrpoContext]) -> Command[Any]:
    payload = cast(PreparePayload, data)  # the payload of a Send (see missing_preparation)
    return Command(update={"icl": retrieved_examples(services_of(runtime), payload["queries"])}, goto=payload["then"])
