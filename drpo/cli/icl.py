"""``drpo icl``: optimize the answers of the in-context examples (Algorithm 1) and read the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from drpo.cli.common import console, fmt, run_guarded, start_run
from drpo.cli.options import (
    ConfigOption,
    ExamplesFileOption,
    IclBeamWidthOption,
    IclDepthOption,
    IclNumActionsOption,
    LocalModelOption,
    NewRunsDirOption,
    RewardOption,
    RunIdOption,
    RunsDirOption,
)
from drpo.errors import DrpoInputError
from drpo.settings import DEFAULT_RUNS_DIR
from drpo.store.run_dir import find_run

icl_app = typer.Typer(no_args_is_help=True, help="Optimize the answers of the in-context examples (Algorithm 1).")


def print_icl_result(result: dict[str, Any]) -> None:
    console.print(f"collection [bold]{result['collection']}[/bold] with {len(result['examples'])} examples")
    console.print(f"use it with: drpo optimize --icl-collection {result['run_id']}")


class IclProgressPrinter:
    """One line per example and round, from the graph's custom stream."""

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress" or event["event"] != "icl_round":
            return
        rewards = " ".join(fmt(reward) for reward in event["rewards"])
        state = f"done ({event['stop_reason']})" if event["done"] else ""
        console.print(
            f"{event['example']}  round {event['round']}  rewards [{rewards}]  calls {event['fresh_calls']}  {state}",
            markup=False,
            highlight=False,
        )


@icl_app.command("optimize")
def icl_optimize(
    examples: ExamplesFileOption = None,
    config: ConfigOption = None,
    run_id: RunIdOption = None,
    runs_dir: NewRunsDirOption = None,
    beam_width: IclBeamWidthOption = None,
    num_actions: IclNumActionsOption = None,
    depth: IclDepthOption = None,
    local_model: LocalModelOption = None,
    reward: RewardOption = None,
) -> None:
    """Optimize the ICL examples' answers into a new Chroma collection."""
    from drpo.run.driver import optimize_icl

    def flags() -> dict[str, Any]:
        return {
            "run_id": run_id,
            "runs_dir": str(runs_dir) if runs_dir else None,
            "icl_file": str(examples) if examples else None,
            "icl_search": {"beam_width": beam_width, "num_actions": num_actions, "depth": depth},
            "reward": {"icl_mode": reward},
        }

    outcome = start_run(
        flags, config, local_model, label="ICL run",
        run=lambda settings: optimize_icl(settings, on_progress=IclProgressPrinter()),
    )  # fmt: skip
    print_icl_result(outcome.result)


def icl_runs(runs_dir: Path) -> list[Any]:
    from drpo.store.run_dir import list_runs

    return [run for run in list_runs(runs_dir) if run.kind() == "icl"]


@icl_app.command("list")
def icl_list(runs_dir: RunsDirOption = DEFAULT_RUNS_DIR) -> None:
    """List ICL runs and their collections."""
    table = Table("run id", "status", "collection", "examples", "mean reward before -> after")
    for run in icl_runs(runs_dir):
        result = run.read_result()
        before = after = "-"
        if result:
            sources = [e["source_reward"] for e in result["examples"] if e["source_reward"] is not None]
            finals = [e["final_reward"] for e in result["examples"] if e["final_reward"] is not None]
            before = fmt(sum(sources) / len(sources) if sources else None)
            after = fmt(sum(finals) / len(finals) if finals else None)
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
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Show an ICL run: each example's score history and final answer."""

    def action() -> None:
        run_id = name.removeprefix("drpo-icl-")
        run = find_run(run_id, runs_dir)
        result = run.read_result()
        if run.kind() != "icl":
            raise DrpoInputError(f"run {run_id} is not an ICL run")
        if result is None:
            raise DrpoInputError(f"ICL run {run_id} has not finished; continue it with: drpo resume {run_id}")
        table = Table("example", "query", "rewards by version", "final", "stop")
        for example in result["examples"]:
            history = " ".join(fmt(answer["reward"]) for answer in example["history"])
            table.add_row(
                example["id"], example["query"][:60], history, fmt(example["final_reward"]), example["stop_reason"]
            )
        console.print(table)
        if full:
            for example in result["examples"]:
                console.rule(example["query"][:80], style="dim")
                console.print(example["answer"], markup=False, highlight=False)

    run_guarded(action, None)
