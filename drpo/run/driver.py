"""Start, resume and drive optimization runs: run directory, checkpointer, services, streaming."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drpo.errors import BudgetExhausted, DrpoInputError
from drpo.graph.context import DrpoContext, Services
from drpo.graph.review import ReviewSummary, parse_decisions
from drpo.nodes.stalls import redispatch_node
from drpo.run.first_answers import ask_first_answers
from drpo.run.opening import (
    at_review_point,
    check_inputs_unchanged,
    load_run_settings,
    open_graph,
    pending_review_of,
    record_run,
)
from drpo.run.services import build_services, held_out_seeds, import_lazily_used_modules, preflight
from drpo.settings import ROLE_NAMES, Settings
from drpo.store.embeddings import Embedder
from drpo.store.files import is_writable_dir
from drpo.store.postgres import save_status
from drpo.store.records import RunResult, result_summary
from drpo.store.redaction import RedactingFilter
from drpo.store.run_dir import RunDir, atomic_write_text, ensure_runs_dir, new_run_id, run_dir_for
from drpo.store.run_lock import hold, run_lock_for
from drpo.store.seeds import held_out_records

if TYPE_CHECKING:  # LangGraph is imported when the graph opens, after a new run's first requests are out
    from langchain_core.language_models import BaseLanguageModel
    from langgraph.checkpoint.base import BaseCheckpointSaver

ProgressCallback = Callable[[dict[str, Any]], None]
ReviewCallback = Callable[[ReviewSummary], Any]


OPTIMIZATION_KINDS = ("prompt", "icl")  # evaluations are runs too, started by evaluate()


@dataclass
class RunOutcome:
    """How a drive ended: ``done`` with a result, or ``waiting-for-review`` with the pending review."""

    run_id: str
    run_dir: Path
    result: RunResult | None
    status: str = "done"
    review: ReviewSummary | None = None


@dataclass(frozen=True)
class DriveRequest:
    """One drive of a run: what to run, with which collaborators, and how to answer reviews."""

    kind: str
    settings: Settings
    run_dir: RunDir
    models: dict[str, BaseLanguageModel] | None = None
    on_progress: ProgressCallback | None = None
    checkpointer: BaseCheckpointSaver | None = None
    embedder: Embedder | None = None
    decision: Any = None
    on_review: ReviewCallback | None = None
    new_run: bool = False  # just recorded, nothing checkpointed: its first answers can go out before the graph opens


class _BestEffortFileHandler(logging.FileHandler):
    """The run log must never turn a full disk into a traceback on stderr: a record it cannot write is dropped."""

    def handleError(self, record: logging.LogRecord) -> None:
        return None


def _record_stop(run_dir: RunDir, status: str, **extra: Any) -> None:
    """Write how the run stopped, unless the disk is what failed (the status file then keeps its last state)."""
    try:
        run_dir.write_status(status, **extra)
    except OSError as error:
        logging.getLogger("drpo.run").error("run %s: could not record status %s: %s", run_dir.run_id, status, error)


@contextmanager
def _run_logging(run_dir: RunDir) -> Iterator[None]:
    """Append this process's drpo log records to the run's log file."""
    handler = _BestEffortFileHandler(run_dir.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
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
    stats = services.stats
    return {
        "type": "progress",
        **event,
        "fresh_calls": stats.fresh_calls,
        "journal_hits": stats.journal_hits,
        "planned_calls": services.planned_calls,
        "elapsed": round(time.monotonic() - services.started_at, 1),
    }


def planned_calls(settings: Settings) -> int:
    """The calls the dry-run plan expects (for progress); 0 when it cannot tell."""
    from drpo.run.plan import plan_run

    try:
        return sum(int(role["calls"]) for role in plan_run(settings)["roles"].values())
    except Exception:  # progress must never stop a run
        return 0


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


def rebuild_result(kind: str, values: dict[str, Any], services: Services) -> Any:
    """The result files of a finished run, written again from its final state by the nodes' own writers."""
    if kind == "prompt":
        from drpo.nodes.finalize import write_prompt_result

        return write_prompt_result(values, services)  # type: ignore[arg-type]
    if kind == "eval":
        from drpo.nodes.eval_finalize import write_eval_result

        return write_eval_result(values, services)  # type: ignore[arg-type]
    from drpo.nodes.icl_write import build_icl_result

    result = build_icl_result(values, services, values["collection"])  # type: ignore[arg-type]
    services.run_dir.write_result(result)
    return result


def _initial_input(kind: str, settings: Settings) -> dict[str, Any]:
    return {"initial_prompt": settings.search.initial_prompt} if kind == "prompt" else {}


def _checked_decision(review: dict[str, Any], decision: Any) -> Any:
    parse_decisions(decision, len(review["beam"]))
    return decision


def _ask(on_review: ReviewCallback, review: ReviewSummary) -> Any:
    """Ask the reviewer until the decision is valid (an invalid one is shown back with its error)."""
    while True:
        decision = on_review(review)
        try:
            return _checked_decision(review, decision)
        except DrpoInputError as error:
            review = ReviewSummary(**{**review, "error": str(error)})


def drive(request: DriveRequest) -> RunOutcome:
    """Drive a recorded run under its lock until it finishes or waits for a review."""
    run_dir = request.run_dir
    if not is_writable_dir(run_dir.root):
        raise DrpoInputError(
            f"run directory {run_dir.root} is read-only; it cannot be driven here "
            "(status, history, show and review without a decision still work)"
        )
    lock = hold(run_lock_for(request.settings.checkpointer, run_dir.lock, run_dir.run_id), run_dir.run_id)
    if request.settings.uses_postgres():
        dsn = request.settings.checkpointer
        mirrored = RunDir(run_dir.root, status_mirror=lambda record: save_status(dsn, run_dir.run_id, record))
        request = replace(request, run_dir=mirrored)
    try:
        return _drive_locked(request)
    finally:
        lock.release()


def _drive_locked(request: DriveRequest) -> RunOutcome:
    settings, run_dir, decision, on_review = request.settings, request.run_dir, request.decision, request.on_review
    services: Services | None = None
    started = False
    log = logging.getLogger("drpo.run")
    early = request.new_run and request.kind == "prompt"
    with _run_logging(run_dir), ExitStack() as graph_scope:
        if not early:  # a damaged checkpoint file of an existing run is reported before the run is touched
            graph, config = graph_scope.enter_context(open_graph(request.kind, settings, run_dir, request.checkpointer))
        try:
            if early:
                services = build_services(settings, run_dir, request.models, request.embedder, eager_models=False)
                run_dir.write_status("running")
                started = True
                ask_first_answers(services)  # LangGraph's import and the graph's compilation overlap them
                graph, config = graph_scope.enter_context(
                    open_graph(request.kind, settings, run_dir, request.checkpointer)
                )
            review = pending_review_of(graph, config)
            snapshot = graph.get_state(config)
            edited = review is None and at_review_point(settings, snapshot)
            if decision is not None:
                if review is None and not edited:
                    raise DrpoInputError(f"run {run_dir.run_id} is not waiting for a review")
                _checked_decision(review or {"beam": snapshot.values["beam"]}, decision)
            elif review is not None and on_review is None:
                return _waiting(run_dir, review)
            if services is None:
                # services first: a damaged journal stops the run here, before its status says running
                eager = request.kind == "eval"  # only an evaluation hands role models on (aligned systems)
                services = build_services(settings, run_dir, request.models, request.embedder, eager_models=eager)
                run_dir.write_status("running")
                started = True
            if request.kind == "eval":
                from drpo.run.eval_systems import build_eval_resources

                services.evaluation = build_eval_resources(settings, services, request.models or {})
            elif request.kind == "prompt" and request.on_progress is not None:
                services.planned_calls = planned_calls(settings)
            import_lazily_used_modules()  # on this thread, before the warm-up imports beside the graph's threads
            services.start_warm_up()  # Chroma and the embeddings load while the first requests go out
            from langgraph.types import Command

            graph_input: Any = None
            if decision is not None and review is None:  # edited since: the review node shows the new beam
                _stream(graph, None, config, services, request.on_progress)
                review = pending_review_of(graph, config)
            if review is not None:
                graph_input = Command(resume=decision if decision is not None else _ask(on_review, review))
            elif not snapshot.values:
                graph_input = _initial_input(request.kind, settings)
            elif request.kind == "prompt":
                _send_stalled_work_again(graph, config, snapshot, settings)
            elif request.kind == "eval":
                _grade_stalled_systems_again(graph, config, snapshot)
            while True:
                _stream(graph, graph_input, config, services, request.on_progress)
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
            if result is None:  # finished, but result.json was deleted: rebuild it from the final checkpoint
                result = rebuild_result(request.kind, snapshot.values, services)
                log.warning("run %s: result.json rebuilt from the final checkpoint", run_dir.run_id)
            run_dir.write_status("done", **result_summary(result), transport_retries=services.stats.retries)
            log.info("run %s done", run_dir.run_id)
            return RunOutcome(run_id=run_dir.run_id, run_dir=run_dir.root, result=result)
        except KeyboardInterrupt:
            _record_stop(run_dir, "interrupted", transport_retries=services.stats.retries if services else {})
            log.warning("run %s interrupted; resume with: drpo resume %s", run_dir.run_id, run_dir.run_id)
            raise
        except DrpoInputError as error:
            if started:
                _record_stop(run_dir, "failed", error=str(error))
            raise
        except BudgetExhausted as error:
            _record_stop(run_dir, "budget-exhausted", error=str(error))
            log.warning("run %s stopped: %s; resume with a larger budget", run_dir.run_id, error)
            raise
        except Exception as error:
            _record_stop(run_dir, "failed", error=f"{type(error).__name__}: {error}"[:500])
            log.error("run %s failed:\n%s", run_dir.run_id, traceback.format_exc())  # redacted by the filter
            raise
        finally:
            if services is not None:
                services.close()


def _send_stalled_work_again(graph: Any, config: dict[str, Any], snapshot: Any, settings: Settings) -> None:
    """A run that stopped because a role gave no usable output resumes by asking those calls again."""
    search = settings.search
    node = redispatch_node(snapshot.values, tuple(snapshot.next), search.max_unusable_share, search.stall_patience)
    if node is not None:
        graph.update_state(config, None, as_node=node)
        logging.getLogger("drpo.run").info("asking the stalled %s calls again", node)


def _grade_stalled_systems_again(graph: Any, config: dict[str, Any], snapshot: Any) -> None:
    """An evaluation that stopped because a system had no usable grade resumes by asking its unusable
    grades again, as new requests (a regrade round), once the judge is fixed."""
    from drpo.nodes.eval_finalize import ungraded_systems

    if tuple(snapshot.next) == ("eval_finalize",) and ungraded_systems(snapshot.values):
        graph.update_state(
            config, {"regrade_round": snapshot.values.get("regrade_round", 0) + 1}, as_node="eval_dispatch"
        )
        logging.getLogger("drpo.run").info("asking the unusable grades again")


def _waiting(run_dir: RunDir, review: ReviewSummary) -> RunOutcome:
    run_dir.write_status("waiting-for-review", depth=review["depth"])
    logging.getLogger("drpo.run").info("run %s waits for review at depth %s", run_dir.run_id, review["depth"])
    return RunOutcome(
        run_id=run_dir.run_id, run_dir=run_dir.root, result=None, status="waiting-for-review", review=review
    )


def _record_new_run(
    settings: Settings, kind: str, models: dict[str, BaseLanguageModel] | None
) -> tuple[Settings, RunDir]:
    """A new run's id (from the settings or generated), its checked settings and its recorded directory."""
    run_id = settings.run_id or new_run_id()
    ensure_runs_dir(settings.runs_dir)
    run_dir = run_dir_for(settings.runs_dir, run_id)
    if run_dir.exists():
        raise DrpoInputError(f"run {run_id} already exists in {settings.runs_dir}; use: drpo resume {run_id}")
    settings = settings.model_copy(update={"run_id": run_id}).with_absolute_input_paths()
    preflight(settings, models, roles=("base", "evaluator") if kind == "eval" else ROLE_NAMES)
    record_run(settings, run_dir, kind)
    return settings, run_dir


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

    ``kind`` is ``prompt`` (system-prompt optimization) or ``icl`` (ICL-answer optimization); evaluations
    start through ``evaluate``."""
    if kind not in OPTIMIZATION_KINDS:
        raise DrpoInputError(f"unknown optimization kind {kind!r} (prompt or icl; evaluations: drpo.evaluate)")
    settings, run_dir = _record_new_run(settings, kind, models)
    if kind == "prompt" and settings.search.held_out:
        records = held_out_records(held_out_seeds(settings))
        atomic_write_text(
            run_dir.held_out, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        )
    return drive(
        DriveRequest(
            kind, settings, run_dir, models, on_progress, checkpointer, embedder, on_review=on_review, new_run=True
        )
    )


def evaluate(
    settings: Settings,
    *,
    models: dict[str, BaseLanguageModel] | None = None,
    on_progress: ProgressCallback | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    embedder: Embedder | None = None,
) -> RunOutcome:
    """Evaluate ``settings.evaluation.systems`` side by side (the paper's protocol); resumable like any run."""
    from drpo.run.eval_systems import preflight_eval

    preflight_eval(settings, models, embedder)
    settings, run_dir = _record_new_run(settings, "eval", models)
    return drive(DriveRequest("eval", settings, run_dir, models, on_progress, checkpointer, embedder))


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

    ``decision`` answers the review the run waits for (see ``drpo.graph.review.ReviewDecision``);
    ``overrides`` change saved settings first, e.g. ``{"budget": {"max_tokens": 200000}}``."""
    settings, run_dir = load_run_settings(runs_dir, run_id, overrides)
    if settings.checkpointer == "memory" and checkpointer is None:
        raise DrpoInputError(f"run {run_id} used an in-memory checkpointer and cannot be resumed")
    check_inputs_unchanged(settings, run_dir)
    request = DriveRequest(
        run_dir.kind(), settings, run_dir, models, on_progress, checkpointer, embedder, decision, on_review
    )
    return drive(request)


def optimize_icl(settings: Settings, **kwargs: Any) -> RunOutcome:
    """Optimize the answers of the ICL examples (Algorithm 1) into a new Chroma collection."""
    return optimize(settings, kind="icl", **kwargs)
