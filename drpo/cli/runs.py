"""Commands that start, continue and read optimization runs: optimize, resume, runs, show, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from drpo.cli.common import (
    C1_AS_JSON,
    ProgressPrinter,
    console,
    fmt,
    print_result,
    run_guarded,
    start_run,
    visible,
)
from drpo.cli.icl import IclProgressPrinter, print_icl_result
from drpo.cli.options import (
    BeamWidthOption,
    CacheOption,
    CheckpointerOption,
    ChromaUrlOption,
    ConcurrencyOption,
    ConfigOption,
    DepthOption,
    DryRunOption,
    IclCollectionOption,
    IclKOption,
    LocalModelOption,
    MaxCostOption,
    MaxDepthIncreaseOption,
    MaxPromptTokensOption,
    MaxTokensOption,
    NewRunsDirOption,
    NoRegressOption,
    NumActionsOption,
    PathAggregatorOption,
    QueriesPerDepthOption,
    ReviewOption,
    RewardOption,
    RunIdOption,
    RunsDirOption,
    SeedFileOption,
    SeedFormatOption,
    SeedOption,
    StrategyOption,
)
from drpo.cli.supervise import interactive_review, is_interactive, report_outcome
from drpo.errors import DrpoInputError
from drpo.settings import DEFAULT_RUNS_DIR, Settings
from drpo.store.records import RunResult
from drpo.store.run_dir import atomic_write_text, require_kind


def optimize(
    config: ConfigOption = None,
    run_id: RunIdOption = None,
    runs_dir: NewRunsDirOption = None,
    beam_width: BeamWidthOption = None,
    num_actions: NumActionsOption = None,
    depth: DepthOption = None,
    max_depth_increase: MaxDepthIncreaseOption = None,
    icl_k: IclKOption = None,
    queries_per_depth: QueriesPerDepthOption = None,
    seed: SeedOption = None,
    concurrency: ConcurrencyOption = None,
    path_aggregator: PathAggregatorOption = None,
    seed_file: SeedFileOption = None,
    seed_format: SeedFormatOption = None,
    local_model: LocalModelOption = None,
    checkpointer: CheckpointerOption = None,
    chroma_url: ChromaUrlOption = None,
    review: ReviewOption = None,
    strategy: StrategyOption = None,
    reward: RewardOption = None,
    max_prompt_tokens: MaxPromptTokensOption = None,
    no_regress: NoRegressOption = None,
    icl_collection: IclCollectionOption = None,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    dry_run: DryRunOption = False,
    cache: CacheOption = None,
) -> None:
    """Start a new optimization run."""
    from drpo.run.driver import optimize as run_optimize

    def flags() -> dict[str, Any]:
        return {
            "run_id": run_id,
            "runs_dir": str(runs_dir) if runs_dir else None,
            "seed_file": str(seed_file) if seed_file else None,
            "seed_format": seed_format,
            "checkpointer": checkpointer,
            "chroma_url": chroma_url,
            "icl_collection": icl_collection,
            "search": {
                "beam_width": beam_width,
                "num_actions": num_actions,
                "depth": depth,
                "max_depth_increase": max_depth_increase,
                "icl_k": icl_k,
                "queries_per_depth": queries_per_depth,
                "seed": seed,
                "concurrency": concurrency,
                "path_aggregator": path_aggregator,
                "review": review,
                "strategy": strategy,
                "max_prompt_tokens": max_prompt_tokens,
                "no_regress": no_regress,
            },
            "reward": {"mode": reward},
            "budget": {"max_tokens": max_tokens, "max_cost": max_cost},
            "cache": {"enabled": cache},
        }

    def run(settings: Settings) -> Any:
        console.print(describe_roles(settings, config, local_model), highlight=False, markup=False, soft_wrap=True)
        on_review = interactive_review if is_interactive() else None
        return run_optimize(settings, on_progress=ProgressPrinter(), on_review=on_review)

    outcome = start_run(flags, config, local_model, label="run", run=run, dry_run=print_plan if dry_run else None)
    if outcome is not None:
        report_outcome(outcome)


def describe_roles(settings: Settings, config: Path | None, local_model: str | None = None) -> str:
    """Which model each role uses; roles the config left out are marked, the embedded default named."""
    from drpo.settings import ROLE_NAMES, read_settings_file

    given = set((read_settings_file(config).get("roles") or {}) if config is not None else {})
    parts = []
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        note = ""
        if role not in given:
            note = " (not configured)"
            if spec.provider == "local":
                note = " (not configured: --local-model)" if local_model else " (not configured: the embedded default)"
        parts.append(f"{role}={spec.provider}:{spec.model}{note}")
    return "roles: " + ", ".join(parts)


def print_plan(settings: Settings) -> None:
    """The dry run's table: calls per role, tokens and cost."""
    from drpo.run.plan import plan_run

    plan = plan_run(settings)
    low, high = plan["depths"]
    sampled, most = plan["sampled_prompts"]
    console.print(
        f"dry run ({plan['strategy']} search): {low} depths expected, at most {high}; "
        f"{sampled} prompts sampled (at most {most}); nothing is called",
        highlight=False,
    )
    table = Table("role", "calls", "upper bound", "input tokens", "output tokens", "cost")
    for role, entry in plan["roles"].items():
        cost = "-" if entry["cost"] is None else f"${entry['cost']:.4f}"
        table.add_row(
            role,
            str(entry["calls"]),
            str(entry["calls_upper_bound"]),
            f"{entry['input_tokens']:,}",
            f"{entry['output_tokens']:,}",
            cost,
        )
    console.print(table)
    cost = "unknown (no prices configured)" if plan["cost"] is None else f"${plan['cost']:.4f}"
    console.print(
        f"estimated tokens {plan['tokens']:,}, estimated cost {cost}; "
        f"{plan['cached_aspect_selections']} aspect selections already cached"
    )
    console.print(request_limits(settings), highlight=False, markup=False, soft_wrap=True)


def request_limits(settings: Settings) -> str:
    """How long one request may hang before it is retried, per role (one line when the roles agree)."""
    from drpo.settings import ROLE_NAMES

    limits = {
        role: f"no byte for {spec.timeout:g} s or no complete reply in {spec.deadline:g} s: retried, "
        f"up to {spec.max_retries} times"
        for role in ROLE_NAMES
        if (spec := getattr(settings.roles, role))
    }
    settings_named = "(roles.*.timeout, deadline, max_retries)"
    if len(set(limits.values())) == 1:
        return f"a request with {next(iter(limits.values()))} {settings_named}"
    return "a request with " + "; ".join(f"{role}: {text}" for role, text in limits.items()) + f" {settings_named}"


def resume(
    run_id: Annotated[str, typer.Argument(help="Run to continue")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Continue an interrupted, failed or budget-exhausted run from its last checkpoint."""
    from drpo.run.driver import resume as run_resume
    from drpo.run.opening import load_run_settings

    budget = {key: value for key, value in {"max_tokens": max_tokens, "max_cost": max_cost}.items() if value}
    overrides: dict[str, Any] = {"budget": budget} if budget else {}
    if checkpointer:
        overrides["checkpointer"] = checkpointer
    kind = run_guarded(lambda: load_run_settings(runs_dir, run_id, overrides)[1].kind(), run_id)
    console.print(f"resuming run [bold]{run_id}[/bold]")
    if kind == "agreement":  # a judge measurement: no graph, its finished calls come back from the journal
        from drpo.cli.evaluate import print_agreement, print_pairs
        from drpo.run.agreement import resume_measurement

        measured = run_guarded(lambda: resume_measurement(run_id, runs_dir), None)
        (print_pairs if "ranking" in measured else print_agreement)(measured)
        return
    printer = IclProgressPrinter() if kind == "icl" else ProgressPrinter()  # eval runs: no per-depth lines
    on_review = interactive_review if is_interactive() else None
    outcome = run_guarded(
        lambda: run_resume(run_id, runs_dir, on_progress=printer, overrides=overrides or None, on_review=on_review),
        run_id,
    )
    if kind == "icl":
        print_icl_result(outcome.result)
        console.print(f"saved to {outcome.run_dir / 'result.json'}")
    elif kind == "eval":
        from drpo.cli.evaluate import print_table

        print_table(dict(outcome.result))
        console.print(f"report: {outcome.run_dir / 'report.html'}")
    else:
        report_outcome(outcome)


def list_runs(runs_dir: RunsDirOption = DEFAULT_RUNS_DIR) -> None:
    """List runs and their status (a run with a damaged file is listed as unreadable, naming the file)."""
    from drpo.store.files import DamagedRunFile
    from drpo.store.run_dir import list_runs as runs_in

    table = Table("run id", "kind", "status", "best path value", "depths")
    for run in run_guarded(lambda: runs_in(runs_dir), None):
        try:
            kind, status, result = run.kind(), run.read_status(), run.read_result()
        except DamagedRunFile as damaged:
            table.add_row(run.run_id, "-", f"unreadable: {damaged.path.name}", "-", "-")
            continue
        prompt_result: RunResult | None = result if result and "best" in result else None  # type: ignore[assignment]
        table.add_row(
            run.run_id,
            kind,
            status.get("status", "unknown"),
            fmt(prompt_result["best"]["path_value"]) if prompt_result else "-",
            str(prompt_result["depths_run"]) if prompt_result else "-",
        )
    console.print(table)


def show(
    run_id: Annotated[str, typer.Argument(help="Run to show")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Show a run's best prompt and its per-depth table."""
    from drpo.run.opening import checkpoint_values, depth_rows
    from drpo.store.run_dir import find_run

    def action() -> None:
        run = find_run(run_id, runs_dir)
        require_kind(run, "prompt", "drpo show")
        status = run.read_status().get("status", "unknown")
        result: RunResult | None = run.read_result()  # type: ignore[assignment]
        console.print(f"run [bold]{run_id}[/bold]: {status}")
        validated = result is not None and "validation" in result
        columns = ["depth", "queries", "cands", "best reward", "best path"]
        table = Table(*columns, *(["best valid."] if validated else []), "beam")
        if result is not None:
            for depth_record in result["depths"]:
                kept = [c for c in depth_record["candidates"] if c["kept"]]
                values = [c["validation"] for c in depth_record["candidates"] if c.get("validation") is not None]
                table.add_row(
                    str(depth_record["depth"]),
                    str(len(depth_record["queries"])),
                    str(len(depth_record["candidates"])),
                    fmt(max((c["reward"] for c in kept if c["reward"] is not None), default=None)),
                    fmt(kept[0]["path_value"] if kept else None),
                    *([fmt(max(values, default=None))] if validated else []),
                    " ".join(depth_record["beam"]),
                )
            console.print(table)
            print_result(result)
            return
        for row in depth_rows(checkpoint_values(run)):
            ranked = row["ranked"]
            rewards = [entry["reward"] for entry in ranked if entry["reward"] is not None]
            table.add_row(
                str(row["depth"]),
                str(len(row["queries"])),
                str(row["candidates"]),
                fmt(max(rewards, default=None)),
                fmt(ranked[0]["path_value"] if ranked else None),
                "",
            )
        console.print(table)
        console.print("no result yet; continue with: drpo resume " + run_id)

    run_guarded(action, None)


def export(
    run_id: Annotated[str, typer.Argument(help="Run to export")],
    fmt_name: Annotated[str, typer.Option("--format", "-f", help="json, txt or langchain")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout); a directory for langchain")
    ] = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Export a finished run's result (json), its best prompt (txt), or its prompt and examples as LangChain
    objects (langchain: a directory with prompt.json, examples.jsonl, manifest.json)."""
    from drpo.store.run_dir import find_run

    def action() -> None:
        if fmt_name not in {"json", "txt", "langchain"}:
            raise DrpoInputError(f"unknown export format {fmt_name!r}: use json, txt or langchain")
        if fmt_name == "langchain":
            export_langchain_directory(run_id, runs_dir, output)
            return
        run = find_run(run_id, runs_dir)
        result = run.read_result()
        if result is None:
            raise DrpoInputError(f"run {run_id} has not finished; continue it with: drpo resume {run_id}")
        if fmt_name == "txt":
            require_kind(run, "prompt", "export --format txt")
        text = (
            json.dumps(result, indent=2, ensure_ascii=False).translate(C1_AS_JSON) + "\n"
            if fmt_name == "json"
            else result["best_prompt"] + "\n"  # type: ignore[typeddict-item]
        )
        if output is None:
            sys.stdout.write(text if fmt_name == "json" else visible(text))
        else:
            try:
                atomic_write_text(output, text)
            except OSError as error:
                raise DrpoInputError(f"cannot write {output}: {error.strerror}") from None

    run_guarded(action, None)


def export_langchain_directory(run_id: str, runs_dir: Path, output: Path | None) -> None:
    from drpo.serve.langchain_export import export_langchain

    if output is None:
        raise DrpoInputError("--format langchain writes a directory: give it with -o DIR")
    if output.exists() and not output.is_dir():
        raise DrpoInputError(f"{output} is a file; --format langchain writes a directory")
    done = export_langchain(run_id, runs_dir, output)
    console.print(
        f"wrote {done.directory}/prompt.json, examples.jsonl ({done.examples} examples, K={done.k}) and manifest.json;"
        " docs/deployment.md shows how to load them",
        highlight=False,
    )


def repair(
    run_id: Annotated[str, typer.Argument(help="Run whose result.json or checkpoints.sqlite is missing or damaged")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Rebuild a finished run's result files from its final checkpoint, or replay a run whose checkpoints are
    damaged from its call journal (damaged files are kept aside with a .damaged suffix)."""
    from drpo.run.driver import resume as run_resume
    from drpo.run.opening import open_run, set_damaged_checkpoints_aside
    from drpo.store.files import DamagedRunFile
    from drpo.store.run_dir import find_run

    def action() -> Any:
        run_dir = find_run(run_id, runs_dir)
        pending = run_dir.repair_marker.is_file()  # an earlier repair was stopped: this one completes it
        if not pending and run_dir.result.is_file():
            run_dir.repair_marker.touch()  # until the replay ends, the finished run stays done
        if set_damaged_checkpoints_aside(run_dir) or pending:
            outcome = run_resume(run_id, runs_dir)
            run_dir.repair_marker.unlink(missing_ok=True)
            return "replayed", outcome
        run_dir.repair_marker.unlink(missing_ok=True)
        with open_run(run_id, runs_dir) as run:
            snapshot = run.snapshot()
            run_dir = run.run_dir
        if snapshot.next or not snapshot.values:
            raise DrpoInputError(f"run {run_id} has not finished; continue it with: drpo resume {run_id}")
        try:
            if run_dir.read_result() is not None:
                return None
        except DamagedRunFile:
            run_dir.result.replace(run_dir.result.with_name("result.json.damaged"))
        return "rebuilt", run_resume(run_id, runs_dir)

    done = run_guarded(action, None)
    if done is None:
        console.print(f"run {run_id}: result.json is intact; nothing to repair")
        return
    how, outcome = done
    if how == "replayed":
        console.print(f"run {run_id}: checkpoints replayed from the call journal ({outcome.status})")
    else:
        console.print(f"run {run_id}: rebuilt {outcome.run_dir / 'result.json'} from the final checkpoint")


def report(
    run_id: Annotated[str, typer.Argument(help="Optimization run to report")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default: RUN_DIR/report.html)")
    ] = None,
) -> None:
    """Write the search report: rewards by depth, the search tree, prompt diffs, aspects and failures (HTML)."""
    from drpo.store.run_dir import find_run

    def action() -> Path:
        run = find_run(run_id, runs_dir)
        require_kind(run, "prompt", "drpo report")
        result = run.read_result()
        if result is None:
            raise DrpoInputError(f"run {run_id} has not finished; continue it with: drpo resume {run_id}")
        return write_search_report(result, output or run.root / "report.html")  # type: ignore[arg-type]

    path = run_guarded(action, None)
    console.print(f"search report: {path}", highlight=False, markup=False, soft_wrap=True)


def write_search_report(result: RunResult, path: Path) -> Path:
    from drpo.eval.search_report import figures, search_report_html

    try:
        atomic_write_text(path, search_report_html(result, figures(result)))
    except OSError as error:
        raise DrpoInputError(f"cannot write the report to {path}: {error.strerror}") from None
    return path


def remove(
    run_id: Annotated[str, typer.Argument(help="Run to delete")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    checkpointer: CheckpointerOption = None,
) -> None:
    """Delete a run: its directory and, for a Postgres run, its rows in the database."""
    from drpo.run.supervise import remove_run

    note = run_guarded(lambda: remove_run(run_id, runs_dir, checkpointer), None)
    console.print(f"run {run_id} removed{note}", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(optimize)
    app.command()(resume)
    app.command("runs")(list_runs)
    app.command()(show)
    app.command()(export)
    app.command()(repair)
    app.command()(remove)
    app.command()(report)
