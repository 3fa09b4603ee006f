"""``drpo summary``: what a finished optimization did, and what its held-out evaluation measured, in a
few lines a newcomer can read (the end of ``make demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from drpo.cli.common import console, fmt, run_guarded
from drpo.cli.options import RunsDirOption
from drpo.errors import DrpoInputError
from drpo.graph.state import ROOT_ID
from drpo.settings import DEFAULT_RUNS_DIR

PREVIEW = 300  # characters of the best prompt shown


def _best_proposal(validation: dict[str, Any]) -> str:
    """When the initial prompt is kept, the best proposal's validation reward shows by how much it lost."""
    if validation["beat_initial"]:
        return ""
    proposals = [value for key, value in validation.get("rewards", {}).items() if key != ROOT_ID and value is not None]
    return f", best proposal {fmt(max(proposals))}" if proposals else ""


def summary_lines(
    result: dict[str, Any], run_dir: Path, evaluation: dict[str, Any] | None, eval_dir: Path | None
) -> list[str]:
    """The summary, line by line (pure: results in, text out)."""
    from drpo.eval.plain import difference_sentence

    serving = result.get("serving", {})
    search = result.get("search", {})
    config_roles = result.get("roles") or {}
    lines = [
        f"Optimized: the system prompt of the base model{_base_name(config_roles)}, used with "
        f"{serving.get('icl_k', 0)} retrieved example(s) per query; {result['depths_run']} depths of beam search "
        f"(W={search.get('beam_width')}, M={search.get('num_actions')}).",
    ]
    validation = result.get("validation")
    if validation:
        lines.append(
            f"Selection: {validation['note']} (mean reward there: initial {fmt(validation['initial'])}, "
            f"returned prompt {fmt(validation['best'])}{_best_proposal(validation)})."
        )
    prompt = result["best_prompt"]
    shown = prompt if len(prompt) <= PREVIEW else prompt[:PREVIEW].rstrip() + "..."
    lines.append(f"Returned prompt ({result['best']['candidate_id']}): {shown}")
    if result.get("judge_note"):
        lines.append(f"Note: {result['judge_note']}.")
    if evaluation is not None:
        queries = evaluation["queries"]["evaluated"]
        lines.append(f"Held-out check on {queries} queries the search never saw (judge {evaluation['judge']}):")
        if validation and not validation["beat_initial"]:
            lines.append("  The returned prompt is the initial one, so both sides send the same requests.")
        for name, row in evaluation["differences"].items():
            lines.append("  " + difference_sentence(name, evaluation["baseline"], row["Average"]))
        cut = {name: count for name, count in evaluation.get("truncated_answers", {}).items() if count}
        if cut:
            lines.append(f"  Answers cut at max_tokens (graded cut): {cut}.")
    lines.append(f"Search report: {run_dir / 'report.html'}")
    if eval_dir is not None:
        lines.append(f"Held-out report: {eval_dir / 'report.html'}")
    return lines


def _base_name(roles: dict[str, Any]) -> str:
    base = roles.get("base") or {}
    return f" ({base.get('provider')}:{base.get('model')})" if base.get("model") else ""


def summary(
    run_id: Annotated[str, typer.Argument(help="Finished optimization run")],
    evaluation: Annotated[
        str | None, typer.Option("--evaluation", "-e", help="Its held-out evaluation run (drpo eval run)")
    ] = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """A few plain lines: what was optimized, what selection found, and what the held-out check measured."""
    from drpo.store.run_dir import find_run, require_kind

    def action() -> list[str]:
        run = find_run(run_id, runs_dir)
        result = run.read_result()
        require_kind(run, "prompt", "drpo summary")
        if result is None:
            raise DrpoInputError(f"run {run_id} has not finished; continue it with: drpo resume {run_id}")
        data = dict(result)
        data.setdefault("roles", run.read_config().get("roles", {}))
        checked, eval_dir = None, None
        if evaluation is not None:
            found = find_run(evaluation, runs_dir)
            checked = found.read_result()
            if found.kind() != "eval" or checked is None:
                raise DrpoInputError(f"run {evaluation} is not a finished evaluation")
            eval_dir = found.root
        return summary_lines(data, run.root, dict(checked) if checked else None, eval_dir)

    lines = run_guarded(action, None)
    console.rule("summary")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(summary)
