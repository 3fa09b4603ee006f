"""Retrieve the K most similar ICL examples from Chroma for each of a depth's queries."""

from __future__ import annotations

from typing import Any, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import PreparePayload


def retrieved_examples(services: Services, queries: list[str], depth: int) -> dict[str, list[str]]:
    """Query id -> ids of its K nearest examples."""
    return {query_id: services.nearest_example_ids(query_id, depth) for query_id in queries}


def retrieve_icl(data: Any, runtime: Runtime[DrpoContext]) -> Command[Any]:
    payload = cast(PreparePayload, data)  # the payload of a Send (see missing_preparation)
    return Command(
        update={"icl": retrieved_examples(services_of(runtime), payload["queries"], payload["depth"])},
        goto=payload["then"],
    )
