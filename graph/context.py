"""The run context handed to every node (LangGraph's ``context_schema``): models, stores and data of one run.

Nothing here is checkpointed: checkpoints keep ids and scores, nodes reach everything else through
``services_of(runtime)``. Building the services is the run layer's job (``drpo.run.services``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from drpo.background import Background
from drpo.eval.queries import EvalQuery
from drpo.llm.caller import CallStats, RoleCaller
from drpo.llm.local_server import LocalServerPool
from drpo.settings import EvaluationSettings, Settings
from drpo.store.aspect_cache import AspectCache
from drpo.store.call_journal import CallJournal
from drpo.store.embedding_cache import EmbeddingCache
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import IclExample, IclStore, exact_nearest_ids
from drpo.store.run_dir import RunDir
from drpo.store.seeds import SeedQuery
from drpo.store.server_features import ServerFeatures

if TYPE_CHECKING:  # LangGraph is imported by the graph, not here: a new run's first answers do not wait for it
    from langgraph.runtime import Runtime


@dataclass
class EvalResources:
    """What the evaluation graph's nodes use besides the common services."""

    settings: EvaluationSettings
    queries: dict[str, EvalQuery]
    order: list[str]  # the sampled query ids, in file order
    systems: dict[str, Any]  # name -> drpo.run.eval_systems.ResolvedSystem (Any: LangGraph Server builds a schema)
    answerers: dict[str, RoleCaller]  # system name -> the caller of its base model
    judge: RoleCaller


@dataclass
class IclStores:
    """The Chroma client and the collection the run retrieves its examples from."""

    client: Any
    store: IclStore


@dataclass
class Services:
    """Models, stores and data one run uses. The ICL store opens, and the reachable seed queries are
    embedded, on a background thread (``start_warm_up``): the first depth's aspect selection needs
    neither, and on a warm store its examples come from cached vectors, so the first requests wait for
    neither Chroma nor the embedding model."""

    settings: Settings
    run_dir: RunDir
    callers: dict[str, RoleCaller]
    stores: Background[IclStores]
    aspect_cache: AspectCache
    journal: CallJournal
    seeds: dict[str, SeedQuery]
    seed_order: list[str]
    stats: CallStats
    icl_examples: list[IclExample]
    embedder: Embedder
    pool: LocalServerPool | None = None
    evaluation: EvalResources | None = None  # evaluation runs only
    embedding_cache: EmbeddingCache | None = None
    server_features: ServerFeatures | None = None
    n_decision: Background[bool] | None = None
    validation_order: list[str] = field(default_factory=list)  # search.validation's query ids
    planned_calls: int = 0  # the dry-run plan's calls, for progress (0 = unknown)
    started_at: float = field(default_factory=time.monotonic)
    _query_embeddings: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _embedding_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def icl_store(self) -> IclStore:
        return self.stores.get().store

    @property
    def chroma_client(self) -> Any:
        return self.stores.get().client

    def start_warm_up(self) -> None:
        self.stores.start()

    def embed_reachable_queries(self) -> None:
        """Embed every seed query the search can reach (the warm-up's last step)."""
        if self.seed_order:
            self.query_embedding(self.seed_order[0])

    def query_text(self, query_id: str) -> str:
        return self.seeds[query_id].text

    def _collection_is_own_examples(self) -> bool:
        """The run retrieves from the collection built from its own examples (not a named one, such as an
        ICL run's), so the examples in memory are exactly the collection's content."""
        return self.settings.icl_collection is None

    @cached_property
    def _examples_by_id(self) -> dict[str, IclExample]:
        return {example.id: example for example in self.icl_examples}

    def examples(self, ids: list[str]) -> list[IclExample]:
        """Examples by id: from memory when the collection holds exactly the run's examples (no wait for
        Chroma to open, no read on the path between model calls), else from the collection."""
        if self._collection_is_own_examples():
            by_id = self._examples_by_id
            if all(item_id in by_id for item_id in ids):
                return [by_id[item_id] for item_id in ids]
        return self.icl_store.get(ids)

    def nearest_from_cached_vectors(self, query_ids: list[str]) -> dict[str, list[str]] | None:
        """The queries' K nearest examples compared exactly against vectors the embedding cache already
        holds, or None when any vector is missing (nothing here loads the embedding model or opens Chroma).
        The first depth uses it, so the first requests do not wait for Chroma, which opens beside them."""
        if not self._collection_is_own_examples() or self.embedding_cache is None or not self.icl_examples:
            return None
        texts = [example.query for example in self.icl_examples] + [self.query_text(qid) for qid in query_ids]
        cached = self.embedding_cache.get_many(self.embedder.name, texts)
        if any(text not in cached for text in texts):
            return None
        vectors = {example.id: cached[example.query] for example in self.icl_examples}
        k = self.settings.search.icl_k
        return {qid: exact_nearest_ids(cached[self.query_text(qid)], vectors, k) for qid in query_ids}

    def query_embedding(self, query_id: str) -> list[float]:
        """The query's embedding. The first request embeds every query the search can reach in one
        batch, which keeps per-depth retrieval off the model-free critical path."""
        with self._embedding_lock:
            if query_id not in self._query_embeddings:
                search = self.settings.search
                reach = (search.depth + search.max_depth_increase) * search.queries_per_depth
                reachable = [*self.seed_order[:reach], *self.validation_order]
                planned = [qid for qid in reachable if qid not in self._query_embeddings]
                batch = planned if query_id in planned else [query_id]
                vectors = self.embedder.embed([self.query_text(qid) for qid in batch])
                self._query_embeddings.update(zip(batch, vectors, strict=True))
            return self._query_embeddings[query_id]

    def close(self) -> None:
        self.stores.wait()
        if self.n_decision is not None:
            self.n_decision.wait()
        if self.server_features is not None:
            self.server_features.close()
        self.journal.close()
        self.aspect_cache.close()
        if self.embedding_cache is not None:
            self.embedding_cache.close()
        if self.pool is not None:
            self.pool.close()


@dataclass
class DrpoContext:
    """LangGraph run context: nodes reach services here, so checkpoints stay small and serializable."""

    services: Services | None = None


ServicesFactory = Callable[[str], Services]
_fallback_factory: ServicesFactory | None = None


def set_services_factory(factory: ServicesFactory | None) -> None:
    """Where nodes get services when no context carries them (LangGraph Server, which passes JSON context)."""
    global _fallback_factory
    _fallback_factory = factory


def services_of(runtime: Runtime[DrpoContext]) -> Services:
    """The run's services: from the context when the runner passed them, else from the server factory by thread."""
    context = runtime.context
    services = getattr(context, "services", None)
    if isinstance(services, Services):
        return services
    if _fallback_factory is None:
        raise RuntimeError("no drpo services: invoke the graph with context=DrpoContext(services=...)")
    from langgraph.config import get_config  # imported with the graph that is calling

    thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
    return _fallback_factory(thread_id)
