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

from drpo.errors import BudgetExhausted, DrpoInputError
from drpo.graph.icl_graph import compile_icl_graph
from drpo.graph.prompt_graph import compile_prompt_graph
from drpo.services import DrpoContext, Services, build_services, preflight
from drpo.settings import Settings, settings_from_dict
from drpo.store.checkpointer import close_checkpointer, open_checkpointer
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import RUN_ID_PATTERN, RunDir, new_run_id

ProgressCallback = Callable[[dict[str, Any]], None]
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
    run_id: str
    run_dir: Path
    result: dict[str, Any]


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
    return depths * 8 + 50


def progress_event(services: Services, node: str, update: dict[str, Any], state_depth: int) -> dict[str, Any]:
    stats = services.stats
    return {
        "node": node,
        "depth": state_depth,
        "update": update,
        "fresh_calls": stats.fresh_calls,
        "journal_hits": stats.journal_hits,
    }


def _drive(
    kind: str,
    settings: Settings,
    run_dir: RunDir,
    graph_input: dict[str, Any] | None,
    models: dict[str, BaseLanguageModel] | None,
    on_progress: ProgressCallback | None,
    checkpointer: BaseCheckpointSaver | None,
    embedder: Embedder | None,
) -> RunOutcome:
    own_saver = checkpointer is None
    saver = checkpointer or open_checkpointer(settings.checkpointer, run_dir.checkpoints)
    services: Services | None = None
    log = logging.getLogger("drpo.run")
    with _run_logging(run_dir):
        try:
            run_dir.write_status("running")
            services = build_services(settings, run_dir, models, embedder)
            graph = _compile(kind, saver)
            config: dict[str, Any] = {
                "configurable": {"thread_id": run_dir.run_id},
                "recursion_limit": _recursion_limit(settings),
                "max_concurrency": settings.search.concurrency,
            }
            if graph_input is None and not graph.get_state(config).values:
                graph_input = _initial_input(kind, settings)
            depth = 0
            for chunk in graph.stream(
                graph_input,
                config,
                context=DrpoContext(services=services),
                stream_mode="updates",
                durability="sync",
            ):
                for node, update in chunk.items():
                    if isinstance(update, dict) and "depth" in update:
                        depth = int(update["depth"])
                    if on_progress is not None:
                        on_progress(progress_event(services, node, update or {}, depth))
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
            if own_saver:
                close_checkpointer(saver)


def optimize(
    settings: Settings,
    *,
    models: dict[str, BaseLanguageModel] | None = None,
    on_progress: ProgressCallback | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    embedder: Embedder | None = None,
    kind: str = "prompt",
) -> RunOutcome:
    """Start a new run (its id from settings or generated) and drive it to the end.

    ``kind`` is ``prompt`` (system-prompt optimization) or ``icl`` (ICL-answer optimization)."""
    if kind not in RUN_KINDS:
        raise DrpoInputError(f"unknown run kind {kind!r}")
    run_id = settings.run_id or new_run_id()
    run_dir = run_dir_for(settings.runs_dir, run_id)
    if run_dir.exists():
        raise DrpoInputError(f"run {run_id} already exists in {settings.runs_dir}; use: drpo resume {run_id}")
    settings = settings.model_copy(update={"run_id": run_id})
    preflight(settings, models)
    run_dir.create(settings.snapshot(), kind=kind)
    return _drive(kind, settings, run_dir, None, models, on_progress, checkpointer, embedder)


def load_run_settings(runs_dir: Path, run_id: str, overrides: dict[str, Any] | None = None) -> tuple[Settings, RunDir]:
    """A run's saved settings; ``overrides`` (a larger budget, say) are validated and saved with them."""
    run_dir = run_dir_for(runs_dir, run_id)
    if not run_dir.exists():
        raise DrpoInputError(f"unknown run {run_id!r} in {runs_dir}")
    data = run_dir.read_config()
    data["runs_dir"] = str(runs_dir)
    settings = settings_from_dict(data, overrides)
    if overrides:
        run_dir.create(settings.snapshot(), kind=run_dir.kind())
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
) -> RunOutcome:
    """Continue a run from its last checkpoint; finished branches and calls are not repeated.

    ``overrides`` change saved settings first, e.g. ``{"budget": {"max_tokens": 200000}}``."""
    settings, run_dir = load_run_settings(runs_dir, run_id, overrides)
    if settings.checkpointer == "memory" and checkpointer is None:
        raise DrpoInputError(f"run {run_id} used an in-memory checkpointer and cannot be resumed")
    return _drive(run_dir.kind(), settings, run_dir, None, models, on_progress, checkpointer, embedder)


def optimize_icl(settings: Settings, **kwargs: Any) -> RunOutcome:
    """Optimize the answers of the ICL examples (Algorithm 1) into a new Chroma collection."""
    return optimize(settings, kind="icl", **kwargs)
