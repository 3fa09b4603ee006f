"""Runtime services handed to graph nodes through LangGraph's run context (never checkpointed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langgraph.config import get_config
from langgraph.runtime import Runtime

from drpo.errors import DrpoInputError
from drpo.local_server import LocalServerPool
from drpo.model_calls import CallStats, RoleCaller
from drpo.pricing import BudgetGuard
from drpo.retry import RateLimiter
from drpo.roles import build_role_model, model_identity
from drpo.settings import ROLE_NAMES, RoleSpec, Settings
from drpo.store.aspect_cache import AspectCache
from drpo.store.call_journal import CallJournal
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import (
    IclExample,
    IclStore,
    chroma_client_for,
    collection_name_for,
    icl_collection_name,
)
from drpo.store.response_cache import ResponseCache
from drpo.store.run_dir import RunDir
from drpo.store.seeds import (
    SeedQuery,
    default_icl_examples,
    default_seed_queries,
    load_icl_file,
    load_seed_file,
    query_order,
)


@dataclass
class Services:
    """Models, stores and data one run uses."""

    settings: Settings
    run_dir: RunDir
    callers: dict[str, RoleCaller]
    icl_store: IclStore
    aspect_cache: AspectCache
    journal: CallJournal
    seeds: dict[str, SeedQuery]
    seed_order: list[str]
    stats: CallStats
    icl_examples: list[IclExample]
    embedder: Embedder
    chroma_client: Any
    pool: LocalServerPool | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _query_embeddings: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _embedding_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def query_text(self, query_id: str) -> str:
        return self.seeds[query_id].text

    def query_embedding(self, query_id: str) -> list[float]:
        """The query's embedding. The first request embeds every query the search can reach in one
        batch, which keeps per-depth retrieval off the model-free critical path."""
        with self._embedding_lock:
            if query_id not in self._query_embeddings:
                search = self.settings.search
                reach = (search.depth + search.max_depth_increase) * search.queries_per_depth
                planned = [qid for qid in self.seed_order[:reach] if qid not in self._query_embeddings]
                batch = planned if query_id in planned else [query_id]
                vectors = self.embedder.embed([self.query_text(qid) for qid in batch])
                self._query_embeddings.update(zip(batch, vectors, strict=True))
            return self._query_embeddings[query_id]

    def close(self) -> None:
        self.journal.close()
        self.aspect_cache.close()
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
    thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
    return _fallback_factory(thread_id)


def load_seeds(settings: Settings) -> list[SeedQuery]:
    if settings.seed_file is None:
        return default_seed_queries()
    return load_seed_file(settings.seed_file, settings.seed_format)


def open_named_collection(client: Any, name: str, embedder: Embedder) -> IclStore:
    """An optimized ICL collection by its name or by the id of the ICL run that wrote it."""
    for candidate in (name, icl_collection_name(name)):
        try:
            store = IclStore.open_existing(client, candidate, embedder)
        except Exception:
            continue
        if store.count() == 0:
            raise DrpoInputError(f"ICL collection {candidate!r} is empty")
        return store
    raise DrpoInputError(f"ICL collection {name!r} not found (give a collection name or an ICL run id)")


def server_key(spec: RoleSpec) -> tuple[str, str]:
    return spec.provider, spec.base_url or spec.provider


def shared_rate_limiters(settings: Settings) -> dict[tuple[str, str], RateLimiter]:
    """One limiter per server, at the strictest requests-per-minute any role on it asks for."""
    limits: dict[tuple[str, str], float] = {}
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        if spec.requests_per_minute is not None:
            key = server_key(spec)
            limits[key] = min(limits.get(key, spec.requests_per_minute), spec.requests_per_minute)
    return {key: RateLimiter(per_minute) for key, per_minute in limits.items()}


def load_icl(settings: Settings) -> list[IclExample]:
    return default_icl_examples() if settings.icl_file is None else load_icl_file(settings.icl_file)


def preflight(settings: Settings, models: dict[str, BaseLanguageModel] | None = None) -> None:
    """Check user inputs that would otherwise fail mid-start (seed and ICL files, local model names),
    so bad input never leaves a half-created run behind."""
    from drpo.local_models import resolve_local_model

    seeds = load_seeds(settings)
    needed = settings.search.queries_per_depth
    if len(seeds) < needed:
        raise DrpoInputError(f"the seed set has {len(seeds)} queries; queries_per_depth needs at least {needed}")
    load_icl(settings)
    if settings.icl_collection:
        client = chroma_client_for(settings.chroma_url, settings.resolved_store_dir())
        open_named_collection(client, settings.icl_collection, Embedder(settings.embedding_model))
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        if spec.provider == "local" and role not in (models or {}):
            resolve_local_model(spec.model)


def open_journal(settings: Settings, run_dir: RunDir) -> CallJournal:
    """The run's call journal: beside the checkpoints (Postgres) or in the run directory (SQLite)."""
    if settings.uses_postgres():
        return CallJournal.postgres(settings.checkpointer, run_dir.run_id)
    return CallJournal.sqlite(run_dir.journal)


def build_services(
    settings: Settings,
    run_dir: RunDir,
    models: dict[str, BaseLanguageModel] | None = None,
    embedder: Embedder | None = None,
) -> Services:
    """Open stores and models for a run. ``models`` overrides roles with ready LangChain models."""
    models = models or {}
    unknown = set(models) - set(ROLE_NAMES)
    if unknown:
        raise DrpoInputError(f"unknown roles given models: {sorted(unknown)}")
    seeds = load_seeds(settings)
    examples = load_icl(settings)
    store_dir = settings.resolved_store_dir()
    embedder = embedder or Embedder(settings.embedding_model)
    client = chroma_client_for(settings.chroma_url, store_dir)
    if settings.icl_collection:
        icl_store = open_named_collection(client, settings.icl_collection, embedder)
    else:
        icl_store = IclStore(client, collection_name_for(examples, settings.embedding_model), embedder)
        icl_store.ensure(examples)
    journal = open_journal(settings, run_dir)
    limiter = threading.BoundedSemaphore(settings.search.concurrency)
    stats = CallStats()
    needs_local = any(settings.roles.get(role).provider == "local" and role not in models for role in ROLE_NAMES)
    pool = LocalServerPool(settings.local) if needs_local else None
    rate_limiters = shared_rate_limiters(settings)
    budget = BudgetGuard(settings, journal.spent_by_role())
    response_cache = ResponseCache(store_dir / "response_cache.sqlite") if settings.cache.enabled else None
    callers: dict[str, RoleCaller] = {}
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        if role in models:
            model, identity, openai_style = models[role], f"custom:{type(models[role]).__name__}", False
        else:
            assert pool is not None or spec.provider != "local"
            model = build_role_model(role, spec, pool)  # type: ignore[arg-type]
            identity, openai_style = model_identity(spec), True
        callers[role] = RoleCaller(
            role,
            spec,
            model,
            identity,
            journal,
            limiter,
            stats,
            settings.search.seed,
            openai_style,
            rate_limiter=rate_limiters.get(server_key(spec)),
            budget=budget,
            response_cache=response_cache if settings.caches_role(spec) else None,
        )
    return Services(
        settings=settings,
        run_dir=run_dir,
        callers=callers,
        icl_store=icl_store,
        aspect_cache=AspectCache(store_dir / "aspect_cache.sqlite"),
        journal=journal,
        seeds={seed.id: seed for seed in seeds},
        seed_order=query_order(seeds, settings.search.seed),
        stats=stats,
        icl_examples=examples,
        embedder=embedder,
        chroma_client=client,
        pool=pool,
    )
