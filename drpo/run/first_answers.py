"""A new run's first answers and their verdicts, asked before LangGraph is imported.

Importing LangGraph and compiling the graph takes a few hundred milliseconds, and the first depth's
requests are known before the graph exists: the initial prompt on the first depth's queries, with examples
retrieved from cached vectors, then the judge on each answer with the query's cached aspects. Asking them at
once lets the import overlap the first two round trips. They are the very requests the generate and evaluate
nodes make (``ask_base_model``, ``judge_answer`` with the same arguments), so each node finds its reply in
the run's journal, or waits for the one in flight under its key: the run's calls and results are the same as
without this. Only on a store that already holds every vector (else the first depth waits for the embedding
model anyway); the verdicts only where the aspects are known without asking the selector. The threads run
beside the main thread's imports, so they must import nothing: only roles on drpo's own chat client
(``RoleCaller.route``) ask early; a model called through LangChain may import as it runs.
"""

from __future__ import annotations

import logging
import threading

from drpo.graph.context import Services
from drpo.graph.state import AspectRecord
from drpo.judge.aspects import cached_selection, static_record
from drpo.judge.verdict import judge_answer, judging
from drpo.nodes.answering import ask_base_model

log = logging.getLogger("drpo.run")


def known_aspects(services: Services, query_id: str) -> AspectRecord | None:
    """The aspects select_aspects would give the query without asking the selector, or None."""
    reward = services.settings.reward
    if reward.mode == "static":
        return static_record()
    cached = cached_selection(
        services.aspect_cache,
        services.callers["aspect_selector"].model_id,
        services.query_text(query_id),
        known_only=not reward.new_aspects,
    )
    return AspectRecord(**cached["record"]) if cached is not None else None


def ask_first_answers(services: Services) -> int:
    """Start the first depth's answers (and verdicts) on daemon threads; returns how many were started. A
    failure is left to the node, which asks again and handles it like any call."""
    search = services.settings.search
    queries = services.seed_order[: search.queries_per_depth]
    if services.callers["base"].route is None:  # a model through LangChain may import as it runs: no early answers
        return 0
    nearest = services.nearest_from_cached_vectors(queries) if queries else None
    if nearest is None:
        return 0
    judged = services.callers["evaluator"].route is not None
    aspects = {query_id: known_aspects(services, query_id) if judged else None for query_id in queries}

    def ask(query_id: str) -> None:
        try:
            answer, _ = ask_base_model(services, search.initial_prompt, query_id, nearest[query_id])
            if (known := aspects[query_id]) is not None:
                judge_answer(
                    services.callers["evaluator"],
                    services.query_text(query_id),
                    answer,
                    known,
                    retries=search.structured_retries,
                    **judging(services),
                )
        except Exception as error:  # the node repeats the call and reports it properly
            log.debug("early answer or verdict for %s failed: %s", query_id, type(error).__name__)

    for query_id in queries:
        threading.Thread(target=ask, args=(query_id,), name="drpo-first-answer", daemon=True).start()
    return len(queries)
