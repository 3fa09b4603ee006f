"""Opening an existing run: its saved settings, and its graph on its own checkpointer.

Every reader of a run goes through here (the driver, status, review, history, edit, fork, ``show``),
so a run is opened one way whether it lives in a local directory or in Postgres.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drpo.errors import DrpoInputError
from drpo.graph.review import ReviewSummary
from drpo.settings import Settings, is_postgres_dsn, settings_from_dict
from drpo.store.files import DamagedRunFile
from drpo.store.postgres import describe_dsn, load_run, save_run
from drpo.store.run_dir import RunDir, require_kind, run_dir_for
from drpo.store.sqlite_files import check_sqlite_file

if TYPE_CHECKING:  # LangGraph is imported when a graph is opened: a new run's first requests do not wait for it
    from langgraph.checkpoint.base import BaseCheckpointSaver

RUN_KINDS = ("prompt", "icl", "eval")


def recursion_limit(settings: Settings) -> int:
    depths = settings.search.depth + settings.search.max_depth_increase + 2
    return depths * 9 + 50


def graph_config(settings: Settings, run_id: str) -> dict[str, Any]:
    """The run's LangGraph config: thread id = run id."""
    return {
        "configurable": {"thread_id": run_id},
        "recursion_limit": recursion_limit(settings),
        # Our own semaphore caps model calls in flight. LangGraph's pool needs one more worker: with the
        # custom stream mode it parks a stream waiter on that pool, and a pool of one then deadlocks.
        "max_concurrency": settings.search.concurrency + 1,
    }


def input_files(settings: Settings) -> dict[str, Path]:
    """The user's files a run reads again when it resumes (the packaged defaults cannot change)."""
    files = {"seed file": settings.seed_file, "ICL file": settings.icl_file}
    if settings.evaluation is not None and settings.evaluation.queries_file is not None:
        files["query file"] = settings.evaluation.queries_file
    return {what: path for what, path in files.items() if path is not None}


def file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check_inputs_unchanged(settings: Settings, run_dir: RunDir) -> None:
    """A run resumed after its seed, ICL or query file was edited would mix two data sets: refuse it,
    naming the file; restoring the file makes the run resumable again."""
    saved = run_dir.read_meta().get("input_hashes", {})
    for what, path in input_files(settings).items():
        expected = saved.get(what)
        if expected is None:
            continue
        current = file_hash(path)
        if current is None:
            raise DrpoInputError(f"{what} {path} of run {run_dir.run_id} is missing; restore it to resume")
        if current != expected:
            raise DrpoInputError(
                f"{what} {path} changed since run {run_dir.run_id} started (its content hash differs); "
                "restore it to resume, or start a new run"
            )


def record_run(settings: Settings, run_dir: RunDir, kind: str, **meta: Any) -> None:
    """Write the run's settings locally and, for Postgres runs, in the database (for other machines)."""
    if not run_dir.meta.is_file():
        meta["input_hashes"] = {what: file_hash(path) for what, path in input_files(settings).items()}
    run_dir.create(settings.snapshot(), kind=kind, **meta)
    if settings.uses_postgres():
        save_run(settings.checkpointer, run_dir.run_id, kind, settings.snapshot())


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
        if not is_postgres_dsn(dsn):
            raise DrpoInputError(f"unknown run {run_id!r} in {runs_dir}")
        _fetch_remote_run(run_dir, dsn)
    data = run_dir.read_config()
    data["runs_dir"] = str(runs_dir)
    settings = settings_from_dict(data, overrides)
    if overrides:
        record_run(settings, run_dir, run_dir.kind())
    return settings, run_dir


def compile_graph(kind: str, saver: BaseCheckpointSaver | None) -> Any:
    if kind not in RUN_KINDS:
        raise DrpoInputError(f"unknown run kind {kind!r}")
    if kind == "eval":
        from drpo.graph.eval_graph import compile_eval_graph

        return compile_eval_graph(saver)
    if kind == "prompt":
        from drpo.graph.prompt_graph import compile_prompt_graph

        return compile_prompt_graph(saver)
    from drpo.graph.icl_graph import compile_icl_graph

    return compile_icl_graph(saver)


@contextmanager
def open_graph(
    kind: str, settings: Settings, run_dir: RunDir, checkpointer: BaseCheckpointSaver | None = None
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The compiled graph on the run's checkpointer (or the one given), and the run's config."""
    from drpo.store.checkpointer import close_checkpointer, open_checkpointer

    saver = checkpointer or open_checkpointer(settings.checkpointer, run_dir.checkpoints)
    try:
        yield compile_graph(kind, saver), graph_config(settings, run_dir.run_id)
    finally:
        if checkpointer is None:
            close_checkpointer(saver)


@dataclass
class OpenRun:
    """An existing run opened for reading or supervision."""

    settings: Settings
    run_dir: RunDir
    graph: Any
    config: dict[str, Any]

    def snapshot(self) -> Any:
        return self.graph.get_state(self.config)

    def pending_review(self) -> ReviewSummary | None:
        """The review the run waits for (the interrupt's value), or None."""
        return pending_review_of(self.graph, self.config)


@contextmanager
def open_run(
    run_id: str,
    runs_dir: Path,
    *,
    checkpointer: str | None = None,
    saver: BaseCheckpointSaver | None = None,
    kind: str | None = None,
) -> Iterator[OpenRun]:
    """Open an existing run's settings and graph; ``kind`` requires a prompt or ICL run."""
    settings, run_dir = load_run_settings(runs_dir, run_id, {"checkpointer": checkpointer} if checkpointer else None)
    if kind is not None:
        require_kind(run_dir, kind, "reviews, history, edits and forks")
    with open_graph(run_dir.kind(), settings, run_dir, saver) as (graph, config):
        yield OpenRun(settings, run_dir, graph, config)


def pending_review_of(graph: Any, config: dict[str, Any]) -> ReviewSummary | None:
    """The review a run waits for (the interrupt's value), or None."""
    for item in graph.get_state(config).interrupts:
        return ReviewSummary(**item.value)
    return None


def at_review_point(settings: Settings, snapshot: Any) -> bool:
    """Paused right before the review node without an interrupt yet: the beam was edited since."""
    return bool(settings.search.review) and tuple(snapshot.next) == ("review",)


def set_damaged_checkpoints_aside(run_dir: RunDir) -> bool:
    """Move a damaged checkpoints.sqlite (and its WAL files) aside so the run replays from its call journal.
    Returns False when the checkpoints are sound; a damaged journal is one clear error (nothing to replay)."""
    try:
        check_sqlite_file(run_dir.checkpoints)
        return False
    except DamagedRunFile:
        check_sqlite_file(run_dir.journal)
    for suffix in ("", "-wal", "-shm"):
        part = run_dir.checkpoints.with_name(run_dir.checkpoints.name + suffix)
        if part.exists():
            part.replace(part.with_name(part.name + ".damaged"))
    run_dir.write_status("interrupted", note="checkpoints damaged; replaying from the call journal")
    return True


def checkpoint_values(run_dir: RunDir) -> dict[str, Any]:
    """The latest checkpointed state values of a run, from SQLite or Postgres ({} if none)."""
    config = run_dir.read_config()
    checkpointer = str(config.get("checkpointer", "sqlite"))
    if checkpointer == "memory" or (checkpointer == "sqlite" and not run_dir.checkpoints.is_file()):
        return {}
    settings = settings_from_dict({**config, "runs_dir": str(run_dir.root.parent)})
    with open_graph(run_dir.kind(), settings, run_dir) as (graph, graph_config_):
        return dict(graph.get_state(graph_config_).values)


def depth_rows(values: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished depth: the ranked candidates' ids, rewards and path values."""
    rows = []
    for depth_key in sorted(values.get("beams", {}), key=int):
        ranked = values["beams"][depth_key]
        rows.append(
            {
                "depth": int(depth_key),
                "queries": values.get("queries", {}).get(depth_key, []),
                "candidates": len(ranked),
                "ranked": ranked,
            }
        )
    return rows
