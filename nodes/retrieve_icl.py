"""Retrieve the K most similar ICL examples from Chroma for each of a depth's queries."""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import PreparePayload


def retrieved_examples(services: Services, queries: list[str], depth: int) -> dict[str, list[str]]:
    """Query id -> ids of its K nearest examples. The first depth compares cached vectors exactly, so the
    run's first requests do not wait for Chroma to open (it returns what Chroma returns, tested); later
    depths ask Chroma, all queries in one query, and read the examples' texts into memory here: this node
    runs ahead of the generation that shows them, so answer requests never wait for a Chroma read."""
    if depth == 1 and (found := services.nearest_from_cached_vectors(queries)) is not None:
        return found
    store = services.icl_store
    embeddings = [services.query_embedding(query_id) for query_id in queries]
    nearest = store.nearest_ids_many(embeddings, services.settings.search.icl_k)
    services.examples([example_id for ids in nearest for example_id in ids])
    return dict(zip(queries, nearest, strict=True))


def retrieve_icl(data: Any, runtime: Runtime[DrpoContext]) -> Command[Any]:
    payload = cast(PreparePayload, data)  # the payload of a Send (see missing_preparation)
    found = retrieved_examples(services_of(runtime), payload["queries"], payload["depth"])
    return Command(update={"icl": found}, goto=payload["then"])
