"""Retrieve the K most similar ICL examples from Chroma for each of a depth's queries."""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import PreparePayload


def retrieved_examples(services: Services, queries: list[str]) -> dict[str, list[str]]:
    """Query id -> ids of its K nearest examples, found in one Chroma query. The examples' texts are read
    into the store's memory here too: this node runs ahead of the generation that shows them, so the
    answers' requests never wait for a Chroma read."""
    store = services.icl_store
    embeddings = [services.query_embedding(query_id) for query_id in queries]
    nearest = store.nearest_ids_many(embeddings, services.settings.search.icl_k)
    store.get([example_id for ids in nearest for example_id in ids])
    return dict(zip(queries, nearest, strict=True))


def retrieve_icl(data: Any, runtime: Runtime[DrpoContext]) -> Command[Any]:
    payload = cast(PreparePayload, data)  # the payload of a Send (see missing_preparation)
    return Command(update={"icl": retrieved_examples(services_of(runtime), payload["queries"])}, goto=payload["then"])
