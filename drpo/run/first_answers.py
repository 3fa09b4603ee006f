"""A new run's first answers, asked before LangGraph is imported.

Importing LangGraph and compiling the graph takes a few hundred milliseconds, and the first depth's
requests are known before the graph exists: the initial prompt on the first depth's queries, with examples
retrieved from cached vectors. Asking them at once lets the import overlap the first round trip. They are
the very requests the generate node makes (``ask_base_model``), so the node finds each reply in the run's
journal, or waits for the one in flight under its key: the run's calls and results are the same as without
this. Only on a store that already holds every vector; otherwise the first depth waits for the embedding
model anyway and nothing is gained.
"""

from __future__ import annotations

import logging
import threading

from drpo.graph.context import Services
from drpo.nodes.answering import ask_base_model

log = logging.getLogger("drpo.run")


def ask_first_answers(services: Services) -> int:
    """Start the first depth's answers on daemon threads; returns how many were started. A failure is
    left to the generate node, which asks again and handles it like any call."""
    search = services.settings.search
    queries = services.seed_order[: search.queries_per_depth]
    nearest = services.nearest_from_cached_vectors(queries) if queries else None
    if nearest is None:
        return 0

    def ask(query_id: str) -> None:
        try:
            ask_base_model(services, search.initial_prompt, query_id, nearest[query_id])
        except Exception as error:  # the node repeats the call and reports it properly
            log.debug("early answer for %s failed: %s", query_id, type(error).__name__)

    for query_id in queries:
        threading.Thread(target=ask, args=(query_id,), name="drpo-first-answer", daemon=True).start()
    return len(queries)
