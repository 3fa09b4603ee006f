"""CLI commands for supervised runs: review, status, history, edit, fork (registered on the main app)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from drpo.cli.common import ProgressPrinter, console, err_console, fmt, print_result, run_guarded
from drpo.cli.options import (
    AcceptOption,
    AddOption,
    CheckpointerOption,
    DropOption,
    EditOption,
    ForkFromOption,
    FullOption,
    PromptFileOption,
    ReviewOption,
    RunIdOption,
    RunsDirOption,
    StopOption,
)
from drpo.errors import DrpoInputError
from drpo.graph.review import ReviewSummary
from drpo.settings import DEFAULT_RUNS_DIR
from drpo.store.files import read_user_text


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def read_prompt_file(path: Path) -> str:
    text = read_user_text(path, "prompt file").strip()
    if not text:
        raise DrpoInputError(f"prompt file {path} is empty")
    return text


def show_review(review: ReviewSummary, full: bool = False) -> None:
    console.rule(f"run {review['run_id']}: review after depth {review['depth']} of {review['max_depth']}")
    for query in review["queries"]:
        console.print(f"query {query['id']}: {query['text'][:200]}", markup=False, highlight=False)
        console.print(f"  aspects: {', '.join(query['aspects'])}", markup=False, highlight=False)
    table = Table("#", "id", "origin", "reward", "path value", "scores", "prompt")
    for entry in review["beam"]:
        scores = "; ".join(
            " ".join(f"{aspect}={score}" for aspect, score in verdict["scores"].items())
            for verdict in entry["evaluations"]
        )
        prompt = entry["prompt"] if full else entry["prompt"][:120] + ("…" if len(entry["prompt"]) > 120 else "")
        table.add_row(
            str(entry["index"]),
            entry["id"],
            entry["origin"],
            fmt(entry["reward"]),
            fmt(entry["path_value"]),
            scores,
            prompt,
        )
    console.print(table)
    if full:
        for entry in review["beam"]:
            for verdict in entry["evaluations"]:
                console.rule(f"#{entry['index']} {entry['id']} on {verdict['query_id']}", style="dim")
                console.print(verdict["answer_preview"], markup=False, highlight=False)
                for aspect, rationale in verdict["rationales"].items():
                    console.print(f"  {aspect}: {rationale}", markup=False, highlight=False)
    for pending in review.get("pending_human_prompts", []):
        console.print(f"pending human prompt {pending['id']}: {pending['prompt'][:120]}", markup=False)
    if review.get("error"):
        err_console.print(f"error: {review['error']}", highlight=False)


def _read_prompt_lines() -> str:
    console.print("new prompt (end with an empty line):")
    lines = []
    while (line := input()) != "":
        lines.append(line)
    return "\n".join(lines)


def interactive_review(review: ReviewSummary) -> dict[str, Any]:
    """Ask the reviewer at the terminal; the runner re-asks when the decision is invalid."""
    show_review(review)
    while True:
        answer = input("accept | edit I | add | drop I | stop | show [I] > ").strip().split()
        if not answer:
            return {"action": "accept"}
        action, rest = answer[0], answer[1:]
        index = int(rest[0]) if rest and rest[0].isdigit() else None
        if action == "show":
            show_review(review, full=True)
            continue
        if action in ("edit", "add"):
            return {"action": action, "index": index, "prompt": _read_prompt_lines()}
        if action in ("accept", "drop", "stop"):
            return {"action": action, "index": index}
        err_console.print(f"unknown action {action!r}")


def report_outcome(outcome: Any) -> None:
    """The end of a drive: the result, or where the run waits and the command that continues it."""
    if outcome.status == "waiting-for-review":
        show_review(outcome.review)
        console.print(
            f"run {outcome.run_id} waits for review at depth {outcome.review['depth']}; "
            f"continue with: drpo review {outcome.run_id} --accept (or --edit/--add/--drop/--stop)",
            highlight=False,
        )
        return
    print_result(outcome.result)
    console.print(f"saved to {outcome.run_dir / 'result.json'}")


def decision_from_flags(
    accept: bool, edit: int | None, add: bool, drop: int | None, stop: bool, prompt_file: Path | None
) -> list[dict[str, Any]]:
    decisions: list[dict[str, Any]] = []
    if (edit is not None or add) and prompt_file is None:
        raise DrpoInputError("--edit and --add need --prompt-file")
    if edit is not None:
        decisions.append({"action": "edit", "index": edit, "prompt": read_prompt_file(prompt_file)})  # type: ignore[arg-type]
    if add:
        decisions.append({"action": "add", "prompt": read_prompt_file(prompt_file)})  # type: ignore[arg-type]
    if drop is not None:
        decisions.append({"action": "drop", "index": drop})
    if stop:
        decisions.append({"action": "stop"})
    if accept:
        if decisions:
            raise DrpoInputError("--accept cannot be combined with other decisions")
        decisions.append({"action": "accept"})
    return decisions


def review(
    run_id: Annotated[str, typer.Argument(help="Run waiting for review")],
    accept: AcceptOption = False,
    edit: EditOption = None,
    add: AddOption = False,
    drop: DropOption = None,
    stop: StopOption = False,
    prompt_file: PromptFileOption = None,
    full: FullOption = False,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Show the pending review, or answer it and continue the run."""
    from drpo.run.driver import resume
    from drpo.run.supervise import pending_review

    overrides = {"checkpointer": checkpointer} if checkpointer else None
    decisions = run_guarded(lambda: decision_from_flags(accept, edit, add, drop, stop, prompt_file), run_id)
    pending = run_guarded(lambda: pending_review(run_id, runs_dir, checkpointer), run_id)
    if not decisions:
        show_review(pending, full=full)
        if not is_interactive():
            console.print(f"answer with: drpo review {run_id} --accept | --edit I --prompt-file F | --add ... | --stop")
            return
        decisions = [interactive_review(pending)]
    on_review = interactive_review if is_interactive() else None
    outcome = run_guarded(
        lambda: resume(
            run_id,
            runs_dir,
            decision=decisions,
            on_review=on_review,
            on_progress=ProgressPrinter(),
            overrides=overrides,
        ),
        run_id,
    )
    report_outcome(outcome)


def status(
    run_id: Annotated[str, typer.Argument(help="Run to check")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Say whether a run is running, waiting for review, interrupted, failed or done."""
    from drpo.run.supervise import run_status

    record = run_guarded(lambda: run_status(run_id, runs_dir, checkpointer), None)  # reading: no resume hint
    depth = record.get("depth")
    extra = f"  depth {depth}" if depth is not None else ""
    error = f"  ({record['error']})" if record.get("error") else ""
    console.print(f"run {run_id}: {record['status']}{extra}{error}", highlight=False, markup=False)


def history_command(
    run_id: Annotated[str, typer.Argument(help="Run whose checkpoints to list")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """List a run's checkpoints by depth: the beam and best reward at each (fork from any of them)."""
    from drpo.run.supervise import history

    rows = run_guarded(lambda: history(run_id, runs_dir, checkpointer), None)
    table = Table("depth", "candidates", "best reward", "beam (path value)", "review", "checkpoint")
    for row in rows:
        beam = " ".join(f"{entry['id']}={fmt(entry['path_value'])}" for entry in row["beam"])
        decisions = row["review"]["decisions"] if row["review"] else []
        table.add_row(
            str(row["depth"]),
            str(row["candidates"]),
            fmt(row["best_reward"]),
            beam,
            ",".join(decision["action"] for decision in decisions) or "-",
            row["checkpoint_id"],
        )
    console.print(table)


def edit_command(
    run_id: Annotated[str, typer.Argument(help="Run paused at a review point")],
    edit: EditOption = None,
    add: AddOption = False,
    drop: DropOption = None,
    prompt_file: PromptFileOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Edit a paused run's beam through update_state; the pending review then shows the change."""
    from drpo.run.supervise import edit_run

    def action() -> dict[str, Any]:
        decisions = decision_from_flags(False, edit, add, drop, False, prompt_file)
        if not decisions:
            raise DrpoInputError("give --edit I, --add or --drop I (with --prompt-file for --edit and --add)")
        return edit_run(run_id, runs_dir, decisions, checkpointer)

    changed = run_guarded(action, run_id)
    console.print(f"beam now {' '.join(changed['beam'])}; added {' '.join(changed['added']) or 'nothing'}")


def fork(
    run_id: Annotated[str, typer.Argument(help="Run to branch from (left untouched)")],
    from_depth: ForkFromOption,
    new_run_id: RunIdOption = None,
    edit: EditOption = None,
    add: AddOption = False,
    drop: DropOption = None,
    prompt_file: PromptFileOption = None,
    review_flag: ReviewOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Start a new run from an earlier depth of RUN, optionally with an edit, and drive it."""
    from drpo.run.supervise import fork_run

    def action() -> Any:
        decisions = decision_from_flags(False, edit, add, drop, False, prompt_file) or None
        return fork_run(
            run_id,
            runs_dir,
            from_depth,
            decisions=decisions,
            new_run_id=new_run_id,
            checkpointer=checkpointer,
            on_progress=ProgressPrinter(),
            on_review=interactive_review if is_interactive() else None,
            review=review_flag,
        )

    outcome = run_guarded(action, run_id)
    console.print(f"forked run [bold]{outcome.run_id}[/bold] from {run_id} at depth {from_depth}")
    report_outcome(outcome)


def register(app: typer.Typer) -> None:
    """Add the supervision commands to the main CLI."""
    app.command()(review)
    app.command()(status)
    app.command("history")(history_command)
    app.command("edit")(edit_command)
    app.command()(fork)
