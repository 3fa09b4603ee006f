"""The ``drpo`` command line: optimize, resume, runs, show, export.

Exit codes: 0 done, 1 failed (resumable), 2 bad input, 130 interrupted (resumable).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from drpo.errors import DrpoInputError, ModelCallError
from drpo.settings import (
    _deep_merge,
    apply_local_model,
    read_settings_file,
    settings_from_dict,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Align any LLM by optimizing its system prompt.")
console = Console()
err_console = Console(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Directory holding run directories")]


def _search_overrides(**flags: Any) -> dict[str, Any]:
    return {key: value for key, value in flags.items() if value is not None}


class ProgressPrinter:
    """Prints one line per finished depth: beam, rewards, calls, tokens."""

    def __init__(self) -> None:
        self.tokens = 0

    def __call__(self, event: dict[str, Any]) -> None:
        update = event["update"]
        for usage in (update.get("usage") or {}).values():
            self.tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        if event["node"] == "prune_beam" and "beams" in update:
            for depth_key, ranked in update["beams"].items():
                beam = ", ".join(
                    f"{entry['id']}={_fmt(entry['path_value'])}" for entry in ranked[: len(update.get("beam", []))]
                )
                rewards = " ".join(_fmt(entry["reward"]) for entry in ranked)
                console.print(
                    f"depth {depth_key:>3}  rewards [{rewards}]  beam [{beam}]  "
                    f"calls {event['fresh_calls']}  tokens {self.tokens}",
                    markup=False,
                    highlight=False,
                )
        elif event["node"] == "finalize":
            console.print("[green]search finished[/green]")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _run_guarded(action: Any, run_id: str | None | dict[str, Any]) -> Any:
    """Run an action, mapping failures to one clear line and the documented exit codes.

    ``run_id`` may be a dict filled in by the action once the id is known."""
    try:
        return action()
    except DrpoInputError as error:
        err_console.print(f"error: {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ModelCallError as error:
        err_console.print(f"error: {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        run_id = run_id.get("run_id") if isinstance(run_id, dict) else run_id
        hint = f"; resume with: drpo resume {run_id}" if run_id else ""
        err_console.print(f"interrupted{hint}", highlight=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # in-flight model calls are abandoned; finished ones are saved
    except Exception as error:
        run_id = run_id.get("run_id") if isinstance(run_id, dict) else run_id
        hint = f"; resume with: drpo resume {run_id}" if run_id else ""
        err_console.print(f"error: {type(error).__name__}: {error}{hint}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


def _print_result(result: dict[str, Any]) -> None:
    console.rule("best prompt")
    console.print(result["best_prompt"], highlight=False, markup=False)
    console.rule()
    best = result["best"]
    console.print(
        f"candidate {best['candidate_id']}  path value {_fmt(best['path_value'])}  "
        f"reward {_fmt(best['reward'])}  ({result['stop_reason']})"
    )


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
    checkpointer: Annotated[str | None, typer.Option("--checkpointer", help="sqlite or memory")] = None,
) -> None:
    """Start a new optimization run."""
    from drpo.runner import optimize as run_optimize

    def action() -> Any:
        data = read_settings_file(config) if config is not None else {}
        top = _search_overrides(
            run_id=run_id,
            runs_dir=str(runs_dir) if runs_dir else None,
            seed_file=str(seed_file) if seed_file else None,
            seed_format=seed_format,
            checkpointer=checkpointer,
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
        )
        data = _deep_merge(data, {**top, "search": search} if search else top)
        if local_model:
            data = apply_local_model(data, local_model)
        settings = settings_from_dict(data)
        from drpo.store.run_dir import new_run_id

        settings = settings.model_copy(update={"run_id": settings.run_id or new_run_id()})
        console.print(f"run [bold]{settings.run_id}[/bold] in {settings.runs_dir}")
        holder["run_id"] = settings.run_id
        return run_optimize(settings, on_progress=ProgressPrinter())

    holder: dict[str, Any] = {"run_id": None}
    outcome = _run_guarded(action, holder)
    _print_result(outcome.result)
    console.print(f"saved to {outcome.run_dir / 'result.json'}")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run to continue")],
    runs_dir: RunsDirOption = Path("drpo_runs"),
) -> None:
    """Continue an interrupted or failed run from its last checkpoint."""
    from drpo.runner import resume as run_resume

    console.print(f"resuming run [bold]{run_id}[/bold]")
    outcome = _run_guarded(lambda: run_resume(run_id, runs_dir, on_progress=ProgressPrinter()), run_id)
    _print_result(outcome.result)
    console.print(f"saved to {outcome.run_dir / 'result.json'}")


@app.command("runs")
def list_runs_command(runs_dir: RunsDirOption = Path("drpo_runs")) -> None:
    """List runs and their status."""
    from drpo.store.run_dir import list_runs

    table = Table("run id", "status", "best path value", "depths")
    for run in list_runs(runs_dir):
        status = run.read_status()
        result = run.read_result()
        table.add_row(
            run.run_id,
            status.get("status", "unknown"),
            _fmt(result["best"]["path_value"]) if result else "-",
            str(result["depths_run"]) if result else "-",
        )
    console.print(table)


def _open_run(run_id: str, runs_dir: Path) -> Any:
    from drpo.runner import run_dir_for

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
    from drpo.inspect_run import checkpoint_values, depth_rows

    def action() -> None:
        run = _open_run(run_id, runs_dir)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
