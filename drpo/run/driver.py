"""Start, resume and drive optimization runs: run directory, checkpointer, services, streaming."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from drpo.errors import BudgetExhausted, DrpoInputError
from drpo.graph.context import DrpoContext, Services
from drpo.graph.icl_graph import compile_icl_graph
from drpo.graph.prompt_graph import compile_prompt_graph
from drpo.graph.review import parse_decisions
from drpo.run.services import build_services, preflight
from drpo.settings import POSTGRES_SCHEMES, Settings, settings_from_dict
from drpo.store.checkpointer import close_checkpointer, open_checkpointer
from drpo.store.embeddings import Embedder
from drpo.store.postgres import describe_dsn, load_run, save_run, save_status
from drpo.store.run_dir import RUN_ID_PATTERN, RunDir, new_run_id
from drpo.store.run_lock import hold, run_lock_for

ProgressCallback = Callable[[dict[str, Any]], None]
ReviewCallback = Callable[[dict[str, Any]], Any]
RUN_KINDS = ("prompt", "icl")


def _compile(kind: str, saver: BaseCheckpointSaver) -> Any:
    return compile_prompt_graph(saver) if kind == "prompt" else compile_icl_graph(saver)


def _initial_input(kind: str, settings: Settings) -> dict[str, Any]:
    return {"initial_prompt": settings.search.initial_prompt} if kind == "prompt" else {}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("kind") == "icl":
        return {"kind": "icl", "collection": result["collection"]}
    return {"kind": "prompt", "best_reward": result["best"]["path_value"]}


@dataclass
class RunOutcome:
    """How a drive ended: ``done`` with a result, or ``waiting-for-review`` with the pending review."""

    run_id: str
    run_dir: Path
    result: dict[str, Any] | None
    status: str = "done"
    review: dict[str, Any] | None = None


def run_dir_for(runs_dir: Path, run_id: str) -> RunDir:
    if not RUN_ID_PATTERN.match(run_id):
        raise DrpoInputError(f"invalid run id {run_id!r}")
    return RunDir(runs_dir / run_id)


@contextmanager
def _run_logging(run_dir: RunDir) -> Iterator[None]:
    """Append this process's drpo log records to the run's log file."""
    handler = logging.FileHandler(run_dir.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("drpo")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def _recursion_limit(settings: Settings) -> int:
    depths = settings.search.depth + settings.search.max_depth_increase + 2
    return depths * 9 + 50


def graph_config(settings: Settings, run_id: str) -> dict[str, Any]:
    return {
        "configurable": {"thread_id": run_id},
        "recursion_limit": _recursion_limit(settings),
        # Our own semaphore caps model calls in flight. LangGraph's pool needs one more worker: with the
        # custom stream mode it parks a stream waiter on that pool, and a pool of one then deadlocks.
        "max_concurrency": settings.search.concurrency + 1,
    }


@contextmanager
def open_graph(
    kind: str, settings: Settings, run_dir: RunDir, checkpointer: BaseCheckpointSaver | None = None
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The compiled graph on the run's checkpointer, and the run's config (thread id = run id)."""
    saver = checkpointer or open_checkpointer(settings.checkpointer, run_dir.checkpoints)
    try:
        yield _compile(kind, saver), graph_config(settings, run_dir.run_id)
    finally:
        if checkpointer is None:
            close_checkpointer(saver)


def pending_review_of(graph: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The review a run waits for (the interrupt's value), or None."""
    for item in graph.get_state(config).interrupts:
        return dict(item.value)
    return None


def _update_progress(services: Services, node: str, update: dict[str, Any]) -> dict[str, Any]:
    stats = services.stats
    depth = int(update["depth"]) if "depth" in update else None
    return {
        "type": "update",
        "node": node,
        "depth": depth,
        "update": update,
        "fresh_calls": stats.fresh_calls,
        "journal_hits": stats.journal_hits,
    }


def _custom_progress(services: Services, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "progress", **event, "fresh_calls": services.stats.fresh_calls}


def _stream(
    graph: Any,
    graph_input: Any,
    config: dict[str, Any],
    services: Services,
    on_progress: ProgressCallback | None,
) -> None:
    for mode, data in graph.stream(
        graph_input,
        config,
        context=DrpoContext(services=services),
        stream_mode=["updates", "custom"],
        durability="sync",
    ):
        if on_progress is None:
            continue
        if mode == "custom":
            on_progress(_custom_progress(services, data))
            continue
        for node, update in data.items():
            if node != "__interrupt__" and isinstance(update, dict):
                on_progress(_update_progress(services, node, update))


def _checked_decision(review: dict[str, Any], decision: Any) -> Any:
    parse_decisions(decision, len(review["beam"]))
    return decision


def _ask(on_review: ReviewCallback, review: dict[str, Any]) -> Any:
    """Ask the reviewer until the decision is valid (an invalid one is shown back with its error)."""
    while True:
        decision = on_review(review)
        try:
            return _checked_decision(review, decision)
        except DrpoInputError as error:
            review = {**review, "error": str(error)}


def _drive(
    kind: str,
    settings: Settings,
    run_dir: RunDir,
    models: dict[str, BaseLanguageModel] | None,
    on_progress: ProgressCallback | None,
    checkpointer: BaseCheckpointSaver | None,
    embedder: Embedder | None,
    *,
    decision: Any = None,
    on_review: ReviewCallback | None = None,
) -> RunOutcome:
    lock = hold(run_lock_for(settings.checkpointer, run_dir.lock, run_dir.run_id), run_dir.run_id)
    if settings.uses_postgres():
        dsn = settings.checkpointer
        run_dir = RunDir(run_dir.root, status_mirror=lambda record: save_status(dsn, run_dir.run_id, record))
    try:
        return _drive_locked(kind, settings, run_dir, models, on_progress, checkpointer, embedder, decision, on_review)
    finally:
        lock.release()


def _drive_locked(
    kind: str,
    settings: Settings,
    run_dir: RunDir,
    models: dict[str, BaseLanguageModel] | None,
    on_progress: ProgressCallback | None,
    checkpointer: BaseCheckpointSaver | None,
    embedder: Embedder | None,
    decision: Any,
    on_review: ReviewCallback | None,
) -> RunOutcome:
    services: Services | None = None
    started = False
    log = logging.getLogger("drpo.run")
    with _run_logging(run_dir), open_graph(kind, settings, run_dir, checkpointer) as (graph, config):
        try:
            review = pending_review_of(graph, config)
            snapshot = graph.get_state(config)
            edited = review is None and settings.search.review and tuple(snapshot.next) == ("review",)
            if decision is not None:
                if review is None and not edited:
                    raise DrpoInputError(f"run {run_dir.run_id} is not waiting for a review")
                _checked_decision(review or {"beam": snapshot.values["beam"]}, decision)
            elif review is not None and on_review is None:
                return _waiting(run_dir, review)
            run_dir.write_status("running")
            started = True
            services = build_services(settings, run_dir, models, embedder)
            graph_input: Any = None
            if decision is not None and review is None:  # edited since: the review node shows the new beam
                _stream(graph, None, config, services, on_progress)
                review = pending_review_of(graph, config)
            if review is not None:
                graph_input = Command(resume=decision if decision is not None else _ask(on_review, review))
            elif not snapshot.values:
                graph_input = _initial_input(kind, settings)
            while True:
                _stream(graph, graph_input, config, services, on_progress)
                review = pending_review_of(graph, config)
                if review is None:
                    break
                if on_review is None:
                    return _waiting(run_dir, review)
                graph_input = Command(resume=_ask(on_review, review))
            snapshot = graph.get_state(config)
            if snapshot.next:
                raise RuntimeError(f"run stopped before finishing (next: {snapshot.next})")
            result = run_dir.read_result()
            if result is None:
                raise RuntimeError("run finished without writing result.json")
            run_dir.write_status("done", **_summary(result), transport_retries=services.stats.retries)
            log.info("run %s done", run_dir.run_id)
            return RunOutcome(run_id=run_dir.run_id, run_dir=run_dir.root, result=result)
        except KeyboardInterrupt:
            run_dir.write_status("interrupted", transport_retries=services.stats.retries if services else {})
            log.warning("run %s interrupted; resume with: drpo resume %s", run_dir.run_id, run_dir.run_id)
            raise
        except DrpoInputError as error:
            if started:
                run_dir.write_status("failed", error=str(error))
            raise
        except BudgetExhausted as error:
            run_dir.write_status("budget-exhausted", error=str(error))
            log.warning("run %s stopped: %s; resume with a larger budget", run_dir.run_id, error)
            raise
        except Exception as error:
            run_dir.write_status("failed", error=f"{type(error).__name__}: {error}"[:500])
            log.exception("run %s failed", run_dir.run_id)
            raise
        finally:
            if services is not None:
                services.close()


def _waiting(run_dir: RunDir, review: dict[str, Any]) -> RunOutcome:
    run_dir.write_status("waiting-for-review", depth=review["depth"])
    logging.getLogger("drpo.run").info("run %s waits for review at depth %s", run_dir.run_id, review["depth"])
    return RunOutcome(
        run_id=run_dir.run_id, run_dir=run_dir.root, result=None, status="waiting-for-review", review=review
    )


def _record_run(settings: Settings, run_dir: RunDir, kind: str, **meta: Any) -> None:
    """Write the run's settings locally and, for Postgres runs, in the database (for other machines)."""
    run_dir.create(settings.snapshot(), kind=kind, **meta)
    if settings.uses_postgres():
        save_run(settings.checkpointer, run_dir.run_id, kind, settings.snapshot())


def optimize(
    settings: Settings,
    *,
    models: dict[str, BaseLanguageModel] | None = None,
    on_progress: ProgressCallback | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    embedder: Embedder | None = None,
    kind: str = "prompt",
    on_review: ReviewCallback | None = None,
) -> RunOutcome:
    """Start a new run (its id from settings or generated) and drive it to the end, or until it waits
    for a review (``settings.search.review``) when no ``on_review`` callback answers reviews inline.

    ``kind`` is ``prompt`` (system-prompt optimization) or ``icl`` (ICL-answer optimization)."""
    if kind not in RUN_KINDS:
        raise DrpoInputError(f"unknown run kind {kind!r}")
    run_id = settings.run_id or new_run_id()
    run_dir = run_dir_for(settings.runs_dir, run_id)
    if run_dir.exists():
        raise DrpoInputError(f"run {run_id} already exists in {settings.runs_dir}; use: drpo resume {run_id}")
    settings = settings.model_copy(update={"run_id": run_id})
    preflight(settings, models)
    _record_run(settings, run_dir, kind)
    return _drive(kind, settings, run_dir, models, on_progress, checkpointer, embedder, on_review=on_review)


def _fetch_remote_run(run_dir: RunDir, dsn: str) -> None:
    """Recreate a Postgres run's local directory from the settings saved in the database
    (a run started on another machine). Local paths of that machine are not reused."""
    found = load_run(dsn, run_dir.run_id)
    if found is None:
        raise DrpoInputError(f"unknown run {run_dir.run_id!r} in {describe_dsn(dsn)}")
    kind, config = found
    config.update(runs_dir=str(run_dir.root.parent), store_dir=None, checkpointer=dsn)
    run_dir.create(config, kind=kind, fetched_from=describe_dsn(dsn))


def load_run_settings(runs_dir: Path, run_id: str, overrides: dict[str, Any] | None = None) -> tuple[Settings, RunDir]:
    """A run's saved settings; ``overrides`` (a larger budget, say) are validated and saved with them.
    With a Postgres ``checkpointer`` override, a run unknown here is fetched from the database."""
    run_dir = run_dir_for(runs_dir, run_id)
    dsn = str((overrides or {}).get("checkpointer", ""))
    if not run_dir.exists():
        if not dsn.startswith(POSTGRES_SCHEMES):
            raise DrpoInputError(f"unknown run {run_id!r} in {runs_dir}")
        _fetch_remote_run(run_dir, dsn)
    data = run_dir.read_config()
    data["runs_dir"] = str(runs_dir)
    settings = settings_from_dict(data, overrides)
    if overrides:
        _record_run(settings, run_dir, run_dir.kind())
    return settings, run_dir


def resume(
    run_id: str,
    runs_dir: Path,
    *,
    models: dict[str, BaseLanguageModel] | None = None,
    on_progress: ProgressCallback | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    embedder: Embedder | None = None,
    overrides: dict[str, Any] | None = None,
    decision: Any = None,
    on_review: ReviewCallback | None = None,
) -> RunOutcome:
    """Continue a run from its last checkpoint; finished branches and calls are not repeated.

    ``decision`` answers the review the run waits for (see ``drpo.nodes.review.ReviewDecision``);
    ``overrides`` change saved settings first, e.g. ``{"budget": {"max_tokens": 200000}}``."""
    settings, run_dir = load_run_settings(runs_dir, run_id, overrides)
    if settings.checkpointer == "memory" and checkpointer is None:
        raise DrpoInputError(f"run {run_id} used an in-memory checkpointer and cannot be resumed")
    return _drive(
        run_dir.kind(),
        settings,
        run_dir,
        models,
        on_progress,
        checkpointer,
        embedder,
        decision=decision,
        on_review=on_review,
    )


def optimize_icl(settings: Settings, **kwargs: Any) -> RunOutcome:
    """Optimize the answers of the ICL examples (Algorithm 1) into a new Chroma collection."""
    return optimize(settings, kind="icl", **kwargs)
