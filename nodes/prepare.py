"""What select_aspects and retrieve_icl work on: a payload naming the queries and where to go next,
or (a checkpoint written before the nodes took payloads) the whole state at the depth's start."""

from __future__ import annotations

from typing import Any, cast

from drpo.graph.state import PreparePayload


def prepare_input(data: Any, done_key: str) -> PreparePayload:
    """The payload; from a whole state, the depth's queries without ``done_key`` ("aspects", "icl")."""
    if "then" in data:
        return cast(PreparePayload, data)
    depth = int(data["depth"])
    done = data.get(done_key, {})
    queries = [query_id for query_id in data["queries"][str(depth)] if query_id not in done]
    return PreparePayload(depth=depth, queries=queries, then="dispatch_generation")
