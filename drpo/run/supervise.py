"""Supervising runs between drives: status, the pending review, history by depth, edits and forks.

Edits land through ``update_state`` and forks start a new thread from an earlier depth's checkpoint,
so the original run's history is never rewritten.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from drpo.errors import DrpoInputError
from drpo.graph.review import ReviewSummary, apply_decisions, beam_summary, parse_decisions
from drpo.run.driver import DriveRequest, ProgressCallback, ReviewCallback, RunOutcome, drive
from drpo.run.opening import at_review_point, graph_config, open_graph, open_run, record_run
from drpo.run.services import load_seeds, open_journal
from drpo.settings import Settings
from drpo.store.files import is_writable_dir
from drpo.store.postgres import forget_run, is_postgres_dsn, load_status
from drpo.store.records import RunStatus
from drpo.store.run_dir import RunDir, run_dir_for
from drpo.store.run_lock import hold, is_driven, run_lock_for


def run_status(
    run_id: str, runs_dir: Path, checkpointer: str | None = None, saver: BaseCheckpointSaver | None = None
) -> RunStatus:
    """running, waiting-for-review, interrupted, failed, budget-exhausted or done, with the depth reached.
    A run whose status says running but whose lock nobody holds was killed: it reads as interrupted."""
    with open_run(run_id, runs_dir, checkpointer=checkpointer, saver=saver) as run:
        settings, run_dir = run.settings, run.run_dir
        status = run_dir.read_status()
        if status.get("status") == "done":
            run_dir.read_result()  # a damaged result.json is named here, not found later by show or serving
        if settings.uses_postgres():  # the database holds the latest status of whichever machine drove it
            shared = load_status(settings.checkpointer, run_id)
            if shared is not None and shared.get("updated_at", 0) >= status.get("updated_at", 0):
                status = RunStatus(**shared)  # type: ignore[typeddict-item]
        driven = is_driven(run_lock_for(settings.checkpointer, run_dir.lock, run_id))
        if status.get("status") == "running" and not driven:
            status = RunStatus(**status)
            status["status"] = "interrupted"
            status["note"] = "the process driving it is gone; drpo resume continues it"
        if not driven and settings.checkpointer != "memory":
            snapshot = run.snapshot()
            status["depth"] = snapshot.values.get("depth") if snapshot.values else None
            status["next"] = list(snapshot.next)
            if at_review_point(settings, snapshot) or run.pending_review() is not None:
                status["status"] = "waiting-for-review"
    return status


def pending_review(
    run_id: str, runs_dir: Path, checkpointer: str | None = None, saver: BaseCheckpointSaver | None = None
) -> ReviewSummary:
    """The beam summary a run waits on; a clear error when it is not waiting for a review."""
    with open_run(run_id, runs_dir, checkpointer=checkpointer, saver=saver, kind="prompt") as run:
        review = run.pending_review()
        snapshot = run.snapshot()
        settings = run.settings
    if review is None and at_review_point(settings, snapshot):
        seeds = {seed.id: seed.text for seed in load_seeds(settings)}  # edited, the review node has not re-run yet
        review = beam_summary(snapshot.values, run_id, seeds.__getitem__)
    if review is None:
        raise DrpoInputError(f"run {run_id} is not waiting for a review")
    return review


def _after_prune_snapshots(graph: Any, config: dict[str, Any]) -> dict[int, Any]:
    """Per depth, the checkpoint written right after pruning (before review and transition)."""
    found: dict[int, Any] = {}
    for snapshot in graph.get_state_history(config):  # newest first, so the oldest match wins
        values = snapshot.values or {}
        depth = values.get("depth")
        if depth is not None and str(depth) in values.get("beams", {}):
            found[int(depth)] = snapshot
    return found


def history(
    run_id: str, runs_dir: Path, checkpointer: str | None = None, saver: BaseCheckpointSaver | None = None
) -> list[dict[str, Any]]:
    """One row per finished depth: its checkpoint id, the beam kept and the best reward."""
    rows = []
    with open_run(run_id, runs_dir, checkpointer=checkpointer, saver=saver, kind="prompt") as run:
        settings, graph, config = run.settings, run.graph, run.config
        reviews = (graph.get_state(config).values or {}).get("reviews", {})  # decided after each snapshot
        for depth, snapshot in sorted(_after_prune_snapshots(graph, config).items()):
            values = snapshot.values
            ranked = values["beams"][str(depth)]
            kept = ranked[: settings.search.beam_width]
            rewards = [entry["reward"] for entry in ranked if entry["reward"] is not None]
            rows.append(
                {
                    "depth": depth,
                    "checkpoint_id": snapshot.config["configurable"]["checkpoint_id"],
                    "candidates": len(ranked),
                    "beam": [
                        {"id": entry["id"], "path_value": entry["path_value"], "reward": entry["reward"]}
                        for entry in kept
                    ],
                    "best_reward": max(rewards, default=None),
                    "review": reviews.get(str(depth)),
                }
            )
    return rows


def edit_run(
    run_id: str,
    runs_dir: Path,
    decisions: Any,
    checkpointer: str | None = None,
    saver: BaseCheckpointSaver | None = None,
) -> dict[str, Any]:
    """Apply edits (edit/add/drop decisions) to a run paused at a review point, through ``update_state``.
    The review then shows the edited beam; the original checkpoints stay in the history."""
    with open_run(run_id, runs_dir, checkpointer=checkpointer, saver=saver, kind="prompt") as run:
        settings, run_dir, graph, config = run.settings, run.run_dir, run.graph, run.config
        lock = hold(run_lock_for(settings.checkpointer, run_dir.lock, run_id), run_id)
        try:
            snapshot = graph.get_state(config)
            if tuple(snapshot.next) != ("review",):
                raise DrpoInputError(f"run {run_id} is not paused at a review point (next: {list(snapshot.next)})")
            values = snapshot.values
            parsed = parse_decisions(decisions, len(values["beam"]))
            if any(decision.action == "stop" for decision in parsed):
                raise DrpoInputError("stop is a review decision: use drpo review RUN --stop")
            update = apply_decisions(values, parsed)
            update.pop("reviews", None)
            graph.update_state(config, update, as_node="prune_beam")
            return {"beam": update["beam"], "added": [record["id"] for record in update.get("proposals", [])]}
        finally:
            lock.release()


def fork_run(
    run_id: str,
    runs_dir: Path,
    depth: int,
    *,
    decisions: Any = None,
    new_run_id: str | None = None,
    checkpointer: str | None = None,
    models: dict[str, Any] | None = None,
    embedder: Any = None,
    on_progress: ProgressCallback | None = None,
    on_review: ReviewCallback | None = None,
    review: bool | None = None,
) -> RunOutcome:
    """Start a new run from ``depth``'s post-pruning checkpoint, optionally edited, and drive it.
    The source run is read, never written."""
    with open_run(run_id, runs_dir, checkpointer=checkpointer, kind="prompt") as run:
        settings, source_dir = run.settings, run.run_dir
        snapshots = _after_prune_snapshots(run.graph, run.config)
        if depth not in snapshots:
            finished = sorted(snapshots)
            raise DrpoInputError(f"run {run_id} has no finished depth {depth} (finished depths: {finished})")
        values = dict(snapshots[depth].values)
    fork_id = new_run_id or f"{run_id}-fork{depth}-{secrets.token_hex(2)}"
    fork_dir = run_dir_for(runs_dir, fork_id)
    if fork_dir.exists():
        raise DrpoInputError(f"run {fork_id} already exists in {runs_dir}")
    if not is_writable_dir(runs_dir):  # the fork is a new run beside its source: nothing can be written
        raise DrpoInputError(f"runs directory {runs_dir} is read-only; a fork is a new run there (use --runs-dir)")
    parsed = parse_decisions(decisions, len(values["beam"])) if decisions is not None else None
    search = settings.search if review is None else settings.search.model_copy(update={"review": review})
    fork_settings = settings.model_copy(update={"run_id": fork_id, "search": search})
    record_run(fork_settings, fork_dir, "prompt", forked_from={"run_id": run_id, "depth": depth})
    _copy_journal(settings, source_dir, fork_settings, fork_dir)
    values["review_enabled"] = search.review and not decisions
    with open_graph("prompt", fork_settings, fork_dir) as (fork_graph, _config):
        fork_config = graph_config(fork_settings, fork_id)
        fork_graph.update_state(fork_config, values, as_node="prune_beam")
        if parsed is not None:
            update = apply_decisions(values, parsed)
            fork_graph.update_state(fork_config, update, as_node="review")
    return drive(
        DriveRequest("prompt", fork_settings, fork_dir, models, on_progress, embedder=embedder, on_review=on_review)
    )


def _copy_journal(source_settings: Settings, source: RunDir, fork_settings: Settings, fork: RunDir) -> None:
    """A fork starts with its source's answers and finished calls (the states it copies refer to them)."""
    source_journal = open_journal(source_settings, source)
    fork_journal = open_journal(fork_settings, fork)
    try:
        source_journal.copy_into(fork_journal)
    finally:
        source_journal.close()
        fork_journal.close()


def remove_run(run_id: str, runs_dir: Path, checkpointer: str | None = None) -> str:
    """Delete a run: its directory and, for a Postgres run, its checkpoints, journal and registry rows.

    A database that cannot be reached does not keep the run id blocked: the local directory goes, and the
    returned note says which rows stay (``drpo remove RUN --checkpointer DSN`` deletes them later)."""
    run_dir = run_dir_for(runs_dir, run_id)
    dsn = checkpointer
    if run_dir.root.is_symlink():  # deleting through a link would delete whatever it points at
        raise DrpoInputError(
            f"run directory {run_dir.root} is a symbolic link (to {os.readlink(run_dir.root)}); drpo remove "
            "deletes only real run directories: remove the link or its target yourself"
        )
    if run_dir.exists():
        if not is_writable_dir(runs_dir) or not is_writable_dir(run_dir.root):
            raise DrpoInputError(f"runs directory {runs_dir} is read-only; nothing was removed")
        dsn = dsn or str(run_dir.read_config().get("checkpointer", "sqlite"))
        if is_driven_locally(run_dir):
            raise DrpoInputError(f"run {run_id} is being driven by another process; stop it first")
    elif not is_postgres_dsn(dsn):
        raise DrpoInputError(f"unknown run {run_id!r} in {runs_dir}")
    note = ""
    if is_postgres_dsn(dsn):
        try:
            _forget_in_database(str(dsn), run_id)
        except DrpoInputError as error:
            if not run_dir.exists():
                raise
            note = f"; {error}: its rows there stay (remove them later: drpo remove {run_id} --checkpointer DSN)"
    if run_dir.exists():
        shutil.rmtree(run_dir.root)
    return note


def is_driven_locally(run_dir: RunDir) -> bool:
    return run_dir.lock.is_file() and is_driven(run_lock_for("sqlite", run_dir.lock, run_dir.run_id))


def _forget_in_database(dsn: str, run_id: str) -> None:
    from drpo.store.checkpointer import close_checkpointer, open_checkpointer

    saver = open_checkpointer(dsn)
    try:
        saver.delete_thread(run_id)
    finally:
        close_checkpointer(saver)
    forget_run(dsn, run_id)
