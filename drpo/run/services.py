"""Build one run's services (models, stores, data) and check user inputs before a run is created."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from drpo.background import Background
from drpo.errors import DrpoInputError
from drpo.graph.context import IclStores, Services
from drpo.llm.caller import CallerDeps, CallStats, RoleCaller
from drpo.llm.local_server import LocalServerPool
from drpo.llm.n_support import decide_n
from drpo.llm.pricing import BudgetGuard
from drpo.llm.providers import (
    build_lean_route,
    build_role_model,
    check_api_key,
    model_identity,
    server_key,
    shared_rate_limiters,
)
from drpo.settings import ROLE_NAMES, Settings
from drpo.store.aspect_cache import AspectCache
from drpo.store.call_journal import CallJournal
from drpo.store.embedding_cache import EmbeddingCache
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import (
    IclExample,
    IclStore,
    chroma_client_for,
    collection_name_for,
    icl_collection_name,
)
from drpo.store.postgres import connect
from drpo.store.response_cache import ResponseCache
from drpo.store.run_dir import RunDir
from drpo.store.seeds import (
    SeedQuery,
    default_icl_examples,
    default_seed_queries,
    load_icl_file,
    load_seed_file,
    query_order,
    split_held_out,
)
from drpo.store.server_features import ServerFeatures

if TYPE_CHECKING:  # typing only: importing LangChain's model classes costs a third of a second
    from langchain_core.language_models import BaseLanguageModel


def all_seeds(settings: Settings) -> list[SeedQuery]:
    """The whole seed set, held-out part included."""
    if settings.seed_file is None:
        return default_seed_queries()
    return load_seed_file(settings.seed_file, settings.seed_format)


def searched_seeds(settings: Settings) -> list[SeedQuery]:
    """Every seed query except the held-out ones (``search.held_out``): training plus validation."""
    return split_held_out(all_seeds(settings), settings.search.held_out, settings.search.seed)[0]


def load_seeds(settings: Settings) -> list[SeedQuery]:
    """The seed queries the search trains on: neither held out nor set aside for validation."""
    return split_seeds_for_validation(settings)[0]


def validation_seeds(settings: Settings) -> list[SeedQuery]:
    """The validation queries (``search.validation``): disjoint from the training and held-out queries."""
    return split_seeds_for_validation(settings)[1]


def split_seeds_for_validation(settings: Settings) -> tuple[list[SeedQuery], list[SeedQuery]]:
    search = settings.search
    return split_held_out(searched_seeds(settings), search.validation, search.seed, purpose="validation")


def held_out_seeds(settings: Settings) -> list[SeedQuery]:
    return split_held_out(all_seeds(settings), settings.search.held_out, settings.search.seed)[1]


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


def load_icl(settings: Settings) -> list[IclExample]:
    return default_icl_examples() if settings.icl_file is None else load_icl_file(settings.icl_file)


def preflight(
    settings: Settings, models: dict[str, BaseLanguageModel] | None = None, roles: tuple[str, ...] = ROLE_NAMES
) -> None:
    """Check user inputs that would otherwise fail mid-start (seed and ICL files, local model names),
    so bad input never leaves a half-created run behind."""
    from drpo.llm.local_models import resolve_local_model

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
        if role in (models or {}):
            continue
        if spec.provider == "local":
            resolve_local_model(spec.model)
        if role in roles:  # the roles this run calls need their keys now, not at their first request
            check_api_key(role, spec)
    if settings.chroma_url and not settings.icl_collection:  # an unreachable server must not leave a run behind
        chroma_client_for(settings.chroma_url, settings.resolved_store_dir())
    if settings.uses_postgres():  # an unreachable database must not leave a local run that blocks the id
        connect(settings.checkpointer).close()


# Modules that a model request through LangChain (its callback set-up and message conversion) and the driver's
# progress plan import on first use. Two threads importing at once can each see the other's module
# half-initialized, so they are imported on the calling thread before any thread that may need them starts:
# in build_services when a role goes through LangChain (the n probe's thread), and by the driver before the
# warm-up thread imports Chroma (and on a cold store torch) beside the graph's threads. Requests through drpo's
# own chat client import nothing, which lets a new run's first answers go out while LangGraph is imported.
# A test records every import of a search and fails on an import beside the warm-up's or by a request thread.
MODULES_USED_LAZILY = (
    "langchain_core.tracers.context",
    "langchain_core.tracers.run_collector",
    "langchain_core.tracers.stdout",
    "langchain_core.messages.block_translators.langchain_v0",
    "drpo.run.plan",
)


def import_lazily_used_modules() -> None:
    """Import MODULES_USED_LAZILY now (one missing in another LangChain version is skipped: the test names it)."""
    import importlib

    for name in MODULES_USED_LAZILY:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(name)


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
    *,
    eager_models: bool = True,
) -> Services:
    """Open stores and models for a run. ``models`` overrides roles with ready LangChain models.

    With ``eager_models`` off, a role whose requests go through drpo's own chat client gets its LangChain
    model only when something asks for it, which a prompt optimization never does: it then starts without
    importing langchain-openai and the openai SDK (half a second). Runs that hand role models on (an
    evaluation's aligned systems) keep them eager, so no model is built, and nothing imported, on a graph
    thread beside the warm-up's imports."""
    models = models or {}
    unknown = {name for name in models if name not in ROLE_NAMES and not name.startswith("system:")}
    if unknown:
        raise DrpoInputError(f"unknown roles given models: {sorted(unknown)}")
    seeds, validation = split_seeds_for_validation(settings)
    examples = load_icl(settings)
    store_dir = settings.resolved_store_dir()
    embedding_cache = EmbeddingCache(store_dir / "embeddings.sqlite")
    embedder = (embedder or Embedder(settings.embedding_model)).with_cache(embedding_cache)
    # a Chroma server is reached now, so an unreachable one is a clear error before the search starts
    server_client = chroma_client_for(settings.chroma_url, store_dir) if settings.chroma_url else None

    def warm_up() -> IclStores:
        opened = open_icl_stores(settings, examples, embedder, server_client)
        services.embed_reachable_queries()
        return opened

    journal = open_journal(settings, run_dir)
    stats = CallStats()
    needs_local = any(settings.roles.get(role).provider == "local" and role not in models for role in ROLE_NAMES)
    pool = LocalServerPool(settings.local) if needs_local else None
    limiters = shared_rate_limiters(settings)
    deps = CallerDeps(
        journal=journal,
        limiter=threading.BoundedSemaphore(settings.search.concurrency),
        stats=stats,
        seed=settings.search.seed,
        budget=BudgetGuard(settings, journal.spent_by_role()),
        response_cache=ResponseCache(store_dir / "response_cache.sqlite") if settings.cache.enabled else None,
    )
    callers: dict[str, RoleCaller] = {}
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        role_deps = replace(deps, rate_limiter=limiters.get(server_key(spec)))
        route = None
        if role in models:
            model, identity, openai_style = models[role], f"custom:{type(models[role]).__name__}", False
        else:
            assert pool is not None or spec.provider != "local"
            route = build_lean_route(role, spec, pool)  # type: ignore[arg-type]
            build = partial(build_role_model, role, spec, pool)
            model = build() if route is None or eager_models else build
            identity, openai_style = model_identity(spec), True
        callers[role] = RoleCaller(
            role,
            spec,
            model,
            identity,
            role_deps,
            openai_style=openai_style,
            cache_responses=settings.caches_role(spec),
            route=route,
        )
    if any(caller.route is None for caller in callers.values()):
        import_lazily_used_modules()  # LangChain's invoke imports them: before the n probe's thread starts
    optimizer = callers["optimizer"]
    server_features: ServerFeatures | None = None
    if "optimizer" not in models and settings.roles.optimizer.probes_n():
        features = server_features = ServerFeatures(store_dir / "server_features.sqlite")
        optimizer.n_decision = Background(lambda: decide_n(optimizer, journal, features), name="drpo-n-probe")
        optimizer.n_decision.start()  # one tiny request, answered long before the first transition
    services = Services(
        settings=settings,
        run_dir=run_dir,
        callers=callers,
        stores=Background(warm_up, name="drpo-warm-up"),
        aspect_cache=AspectCache(store_dir / "aspect_cache.sqlite"),
        journal=journal,
        seeds={seed.id: seed for seed in [*seeds, *validation]},
        seed_order=query_order(seeds, settings.search.seed),
        validation_order=[seed.id for seed in validation],
        stats=stats,
        icl_examples=examples,
        embedder=embedder,
        pool=pool,
        embedding_cache=embedding_cache,
        server_features=server_features,
        n_decision=optimizer.n_decision,
    )
    return services


def open_icl_stores(settings: Settings, examples: list[IclExample], embedder: Embedder, client: Any) -> IclStores:
    """The run's ICL collection (built on first use); ``client``: an open Chroma server client, if any."""
    client = client if client is not None else chroma_client_for(None, settings.resolved_store_dir())
    if settings.icl_collection:
        return IclStores(client, open_named_collection(client, settings.icl_collection, embedder))
    store = IclStore(client, collection_name_for(examples, settings.embedding_model), embedder)
    store.ensure(examples)
    return IclStores(client, store)
