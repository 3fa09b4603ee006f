"""Progress events on LangGraph's ``custom`` stream: the CLI's live view and SDK clients read the same events."""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer


def emit(event: str, **fields: Any) -> None:
    """Write one event; a no-op when nobody streams the custom mode."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (a node unit-tested on its own)
        return
    writer({"event": event, **fields})
