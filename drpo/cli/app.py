"""The ``drpo`` command line: optimize, resume, runs, show, export (and review, status, history, edit, fork).

Exit codes: 0 done, 1 failed (resumable), 2 bad input, 130 interrupted (resumable).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from drpo.cli import supervise as cli_supervise
from drpo.cli.common import (
    EXIT_FAILED,
    ProgressPrinter,
    RunsDirOption,
    _fmt,
    _print_result,
    _run_guarded,
    console,
    err_console,
)
from drpo.errors import DrpoInputError
from drpo.settings import (
    _deep_merge,
    apply_local_model,
    read_settings_file,
    settings_from_dict,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Align any LLM by optimizing its system prompt.")


def _search_overrides(**flags: Any) -> dict[str, Any]:
    return {key: value for key, value in flags.items() if value is not None}


@app.command()
def optimize(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the new run")] = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Directory holding runs")] = None,
    beam_width: Annotated[int | None, typer.Option("--beam-width", help="W")] = None,
    num_actions: Annotated[int | None, typer.Option("--num-actions", help="M")] = None,
    depth: Annotated[int | None, typer.Option("--depth", help="D")] = None,
    max_depth_increase: Annotated[int | None, typer.Option("--max-depth-increase", help="I")] = None,
    icl_k: Annotated[int | None, typer.Option("--icl-k", help="K")] = None,
    queries_per_depth: Annotated[int | None, typer.Option("--queries-per-depth", help="B")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Model calls in flight")] = None,
    path_aggregator: Annotated[str | None, typer.Option("--path-aggregator", help="mean or last")] = None,
    seed_file: Annotated[Path | None, typer.Option("--seed-file", help="Seed queries file")] = None,
    seed_format: Annotated[str | None, typer.Option("--seed-format", help="auto/alpaca/lima/text/jsonl")] = None,
    local_model: Annotated[
        str | None, typer.Option("--local-model", help="Packaged model name or GGUF path for local roles")
    ] = None,
    checkpointer: Annotated[
        str | None, typer.Option("--checkpointer", help="sqlite, memory or a postgresql:// DSN (no password)")
    ] = None,
    chroma_url: Annotated[str | None, typer.Option("--chroma-url", help="Chroma server, http://host:port")] = None,
    review: Annotated[
        bool | None, typer.Option("--review/--no-review", help="Pause for a human review after each depth")
    ] = None,
    icl_collection: Annotated[
        str | None, typer.Option("--icl-collection", help="Optimized ICL collection (or ICL run id) to retrieve from")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Token budget (all roles)")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Dollar budget (needs prices)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned calls and cost; call nothing")] = False,
    cache: Annotated[
        bool | None, typer.Option("--cache/--no-cache", help="Reuse responses cached by earlier identical requests")
    ] = None,
) -> None:
    """Start a new optimization run."""
    from drpo.run.driver import optimize as run_optimize

    def action() -> Any:
        data = read_settings_file(config) if config is not None else {}
        top = _search_overrides(
            run_id=run_id,
            runs_dir=str(runs_dir) if runs_dir else None,
            seed_file=str(seed_file) if seed_file else None,
            seed_format=seed_format,
            checkpointer=checkpointer,
            chroma_url=chroma_url,
            icl_collection=icl_collection,
        )
        search = _search_overrides(
            beam_width=beam_width,
            num_actions=num_actions,
            depth=depth,
            max_depth_increase=max_depth_increase,
            icl_k=icl_k,
            queries_per_depth=queries_per_depth,
            seed=seed,
            concurrency=concurrency,
            path_aggregator=path_aggregator,
            review=review,
        )
        data = _deep_merge(data, {**top, "search": search} if search else top)
        budget = _search_overrides(max_tokens=max_tokens, max_cost=max_cost)
        if budget:
            data = _deep_merge(data, {"budget": budget})
        if cache is not None:
            data = _deep_merge(data, {"cache": {"enabled": cache}})
        if local_model:
            data = apply_local_model(data, local_model)
        settings = settings_from_dict(data)
        if dry_run:
            _print_plan(settings)
            return None
        from drpo.store.run_dir import new_run_id

        settings = settings.model_copy(update={"run_id": settings.run_id or new_run_id()})
        console.print(f"run [bold]{settings.run_id}[/bold] in {settings.runs_dir}")
        holder["run_id"] = settings.run_id
        from drpo.cli.supervise import interactive_review, is_interactive

        on_review = interactive_review if is_interactive() else None
        return run_optimize(settings, on_progress=ProgressPrinter(), on_review=on_review)

    holder: dict[str, Any] = {"run_id": None}
    outcome = _run_guarded(action, holder)
    if outcome is None:
        return
    cli_supervise.report_outcome(outcome)


def _print_plan(settings: Any) -> None:
    from drpo.run.plan import plan_run

    plan = plan_run(settings)
    low, high = plan["depths"]
    console.print(f"dry run: {low} depths expected, at most {high}; nothing is called")
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


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run to continue")],
    runs_dir: RunsDirOption = Path("drpo_runs"),
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="New token budget")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="New dollar budget")] = None,
    checkpointer: Annotated[
        str | None, typer.Option("--checkpointer", help="Postgres DSN: resume a run started on another machine")
    ] = None,
) -> None:
    """Continue an interrupted, failed or budget-exhausted run from its last checkpoint."""
    budget = _search_overrides(max_tokens=max_tokens, max_cost=max_cost)
    overrides: dict[str, Any] = {"budget": budget} if budget else {}
    if checkpointer:
        overrides["checkpointer"] = checkpointer
    from drpo.cli.supervise import interactive_review, is_interactive
    from drpo.run.driver import load_run_settings
    from drpo.run.driver import resume as run_resume

    kind = _run_guarded(lambda: load_run_settings(runs_dir, run_id, overrides)[1].kind(), run_id)
    console.print(f"resuming run [bold]{run_id}[/bold]")
    printer = IclProgressPrinter() if kind == "icl" else ProgressPrinter()
    on_review = interactive_review if is_interactive() else None
    outcome = _run_guarded(
        lambda: run_resume(run_id, runs_dir, on_progress=printer, overrides=overrides or None, on_review=on_review),
        run_id,
    )
    if kind == "icl":
        _print_icl_result(outcome.result)
        console.print(f"saved to {outcome.run_dir / 'result.json'}")
    else:
        cli_supervise.report_outcome(outcome)


def _print_icl_result(result: dict[str, Any]) -> None:
    console.print(f"collection [bold]{result['collection']}[/bold] with {len(result['examples'])} examples")
    console.print(f"use it with: drpo optimize --icl-collection {result['run_id']}")


@app.command("runs")
def list_runs_command(runs_dir: RunsDirOption = Path("drpo_runs")) -> None:
    """List runs and their status."""
    from drpo.store.run_dir import list_runs

    table = Table("run id", "kind", "status", "best path value", "depths")
    for run in list_runs(runs_dir):
        status = run.read_status()
        result = run.read_result()
        prompt_result = result if result and "best" in result else None
        table.add_row(
            run.run_id,
            run.kind(),
            status.get("status", "unknown"),
            _fmt(prompt_result["best"]["path_value"]) if prompt_result else "-",
            str(prompt_result["depths_run"]) if prompt_result else "-",
        )
    console.print(table)


def _open_run(run_id: str, runs_dir: Path) -> Any:
    from drpo.run.driver import run_dir_for

    run = run_dir_for(runs_dir, run_id)
    if not run.exists():
        raise DrpoInputError(f"unknown run {run_id!r} in {runs_dir}")
    return run


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run to show")],
    runs_dir: RunsDirOption = Path("drpo_runs"),
) -> None:
    """Show a run's best prompt and its per-depth table."""
    from drpo.run.opening import checkpoint_values, depth_rows

    def action() -> None:
        run = _open_run(run_id, runs_dir)
        if run.kind() == "icl":
            raise DrpoInputError(f"run {run_id} is an ICL run; use: drpo icl show {run_id}")
        status = run.read_status().get("status", "unknown")
        result = run.read_result()
        console.print(f"run [bold]{run_id}[/bold]: {status}")
        table = Table("depth", "queries", "candidates", "best reward", "best path value", "beam")
        if result is not None:
            for depth_record in result["depths"]:
                kept = [c for c in depth_record["candidates"] if c["kept"]]
                table.add_row(
                    str(depth_record["depth"]),
                    str(len(depth_record["queries"])),
                    str(len(depth_record["candidates"])),
                    _fmt(max((c["reward"] for c in kept if c["reward"] is not None), default=None)),
                    _fmt(kept[0]["path_value"] if kept else None),
                    " ".join(depth_record["beam"]),
                )
            console.print(table)
            _print_result(result)
            return
        for row in depth_rows(checkpoint_values(run)):
            ranked = row["ranked"]
            rewards = [entry["reward"] for entry in ranked if entry["reward"] is not None]
            table.add_row(
                str(row["depth"]),
                str(len(row["queries"])),
                str(row["candidates"]),
                _fmt(max(rewards, default=None)),
                _fmt(ranked[0]["path_value"] if ranked else None),
                "",
            )
        console.print(table)
        console.print("no result yet; continue with: drpo resume " + run_id)

    _run_guarded(action, None)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="Run to export")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or txt")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")] = None,
    runs_dir: RunsDirOption = Path("drpo_runs"),
) -> None:
    """Export a finished run's result (json) or its best prompt (txt)."""

    def action() -> None:
        if fmt not in {"json", "txt"}:
            raise DrpoInputError(f"unknown export format {fmt!r}: use json or txt")
        run = _open_run(run_id, runs_dir)
        result = run.read_result()
        if result is None:
            raise DrpoInputError(f"run {run_id} has not finished; continue it with: drpo resume {run_id}")
        if fmt == "txt" and "best_prompt" not in result:
            raise DrpoInputError(f"run {run_id} is an ICL run; export it as json")
        text = (
            json.dumps(result, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else result["best_prompt"] + "\n"
        )
        if output is None:
            sys.stdout.write(text)
        else:
            try:
                output.write_text(text, encoding="utf-8")
            except OSError as error:
                raise DrpoInputError(f"cannot write {output}: {error.strerror}") from None

    _run_guarded(action, None)


icl_app = typer.Typer(no_args_is_help=True, help="Optimize the answers of the in-context examples (Algorithm 1).")
app.add_typer(icl_app, name="icl")


class IclProgressPrinter:
    """One line per example and round, from the graph's custom stream."""

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress" or event["event"] != "icl_round":
            return
        rewards = " ".join(_fmt(reward) for reward in event["rewards"])
        state = f"done ({event['stop_reason']})" if event["done"] else ""
        console.print(
            f"{event['example']}  round {event['round']}  rewards [{rewards}]  calls {event['fresh_calls']}  {state}",
            markup=False,
            highlight=False,
        )


@icl_app.command("optimize")
def icl_optimize(
    examples: Annotated[Path | None, typer.Option("--examples", help="ICL examples JSON (default: ours)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the new run")] = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Directory holding runs")] = None,
    beam_width: Annotated[int | None, typer.Option("--beam-width", help="W per example")] = None,
    num_actions: Annotated[int | None, typer.Option("--num-actions", help="M per kept answer")] = None,
    depth: Annotated[int | None, typer.Option("--depth", help="D rounds per example")] = None,
    local_model: Annotated[
        str | None, typer.Option("--local-model", help="Packaged model name or GGUF path for local roles")
    ] = None,
) -> None:
    """Optimize the ICL examples' answers into a new Chroma collection."""
    from drpo.run.driver import optimize_icl
    from drpo.store.run_dir import new_run_id

    holder: dict[str, Any] = {"run_id": None}

    def action() -> Any:
        data = read_settings_file(config) if config is not None else {}
        top = _search_overrides(
            run_id=run_id, runs_dir=str(runs_dir) if runs_dir else None, icl_file=str(examples) if examples else None
        )
        search = _search_overrides(beam_width=beam_width, num_actions=num_actions, depth=depth)
        data = _deep_merge(data, {**top, "icl_search": search} if search else top)
        if local_model:
            data = apply_local_model(data, local_model)
        settings = settings_from_dict(data)
        settings = settings.model_copy(update={"run_id": settings.run_id or new_run_id()})
        holder["run_id"] = settings.run_id
        console.print(f"ICL run [bold]{settings.run_id}[/bold] in {settings.runs_dir}")
        return optimize_icl(settings, on_progress=IclProgressPrinter())

    outcome = _run_guarded(action, holder)
    _print_icl_result(outcome.result)


def _icl_runs(runs_dir: Path) -> list[Any]:
    from drpo.store.run_dir import list_runs

    return [run for run in list_runs(runs_dir) if run.kind() == "icl"]


@icl_app.command("list")
def icl_list(runs_dir: RunsDirOption = Path("drpo_runs")) -> None:
    """List ICL runs and their collections."""
    table = Table("run id", "status", "collection", "examples", "mean reward before -> after")
    for run in _icl_runs(runs_dir):
        result = run.read_result()
        before = after = "-"
        if result:
            sources = [e["source_reward"] for e in result["examples"] if e["source_reward"] is not None]
            finals = [e["final_reward"] for e in result["examples"] if e["final_reward"] is not None]
            before = _fmt(sum(sources) / len(sources) if sources else None)
            after = _fmt(sum(finals) / len(finals) if finals else None)
        table.add_row(
            run.run_id,
            run.read_status().get("status", "unknown"),
            result["collection"] if result else "-",
            str(len(result["examples"])) if result else "-",
            f"{before} -> {after}",
        )
    console.print(table)


@icl_app.command("show")
def icl_show(
    name: Annotated[str, typer.Argument(help="ICL run id or collection name")],
    full: Annotated[bool, typer.Option("--full", help="Print every final answer")] = False,
    runs_dir: RunsDirOption = Path("drpo_runs"),
) -> None:
    """Show an ICL run: each example's score history and final answer."""

    def action() -> None:
        run_id = name.removeprefix("drpo-icl-")
        run = _open_run(run_id, runs_dir)
        result = run.read_result()
        if run.kind() != "icl":
            raise DrpoInputError(f"run {run_id} is not an ICL run")
        if result is None:
            raise DrpoInputError(f"ICL run {run_id} has not finished; continue it with: drpo resume {run_id}")
        table = Table("example", "query", "rewards by version", "final", "stop")
        for example in result["examples"]:
            history = " ".join(_fmt(answer["reward"]) for answer in example["history"])
            table.add_row(
                example["id"], example["query"][:60], history, _fmt(example["final_reward"]), example["stop_reason"]
            )
        console.print(table)
        if full:
            for example in result["examples"]:
                console.rule(example["query"][:80], style="dim")
                console.print(example["answer"], markup=False, highlight=False)

    _run_guarded(action, None)


@app.command("import-reference")
def import_reference_command(
    directory: Annotated[Path, typer.Argument(help="Reference model directory (output.json / output.txt)")],
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the imported run")] = None,
    runs_dir: RunsDirOption = Path("drpo_runs"),
    icl_file: Annotated[Path | None, typer.Option("--icl-file", help="The reference's ICL_examples.json")] = None,
) -> None:
    """Import the DRPO paper's optimized prompt and ICL examples as a servable run."""
    from drpo.serve.import_reference import import_reference

    def action() -> Any:
        return import_reference(directory, run_id or f"ref-{directory.name}", runs_dir, icl_file=icl_file)

    run = _run_guarded(action, None)
    console.print(f"imported run [bold]{run.run_id}[/bold]; try it with: drpo chat {run.run_id}")


@app.command()
def chat(
    run_id: Annotated[str, typer.Argument(help="Finished run to chat with")],
    runs_dir: RunsDirOption = Path("drpo_runs"),
    local_model: Annotated[
        str | None, typer.Option("--local-model", help="Chat with this packaged model or GGUF instead of the run's")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="Examples retrieved per message")] = None,
) -> None:
    """Chat in the terminal with the aligned model (streams tokens; /exit or EOF ends)."""
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

    from drpo.serve.aligned import AlignedChatModel
    from drpo.serve.runs import find_run, run_base_model

    def setup() -> AlignedChatModel:
        run = find_run(Path(run_id), runs_dir)
        llm, holder["pool"] = run_base_model(run.root, runs_dir, local_model)
        return AlignedChatModel.from_run(run.root, llm, runs_dir=runs_dir, k=k)

    holder: dict[str, Any] = {}
    model = _run_guarded(setup, None)
    console.print(f"chatting with run [bold]{model.run_id}[/bold]; /exit to leave", highlight=False)
    history: list[BaseMessage] = []
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if line.strip() in {"/exit", "/quit"}:
            break
        if not line.strip():
            continue
        history.append(HumanMessage(content=line))
        sys.stdout.write("assistant> ")
        reply = ""
        try:
            for chunk in model.stream(history):
                text = chunk.content if isinstance(chunk.content, str) else str(chunk.content)
                reply += text
                sys.stdout.write(text)
                sys.stdout.flush()
        except Exception as error:  # a failed reply ends the chat with one clear line
            err_console.print(f"\nerror: {type(error).__name__}: {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED) from None
        sys.stdout.write("\n")
        history.append(AIMessage(content=reply))


cli_supervise.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
