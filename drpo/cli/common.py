"""Pieces every CLI command shares: consoles, exit codes, the one error guard, progress and result printing.

Exit codes: 0 done, 1 failed (resumable), 2 bad input, 3 budget exhausted (resumable with a larger
budget), 130 interrupted (resumable).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console

from drpo.errors import BudgetExhausted, DrpoInputError, ModelCallError
from drpo.store.redaction import redact

console = Console()
err_console = Console(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


class ProgressPrinter:
    """Prints one line per finished depth (beam, rewards, calls, tokens) from the graph's custom stream."""

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if event["event"] == "depth_done":
            beam = ", ".join(f"{entry['id']}={fmt(entry['path_value'])}" for entry in event["beam"])
            rewards = " ".join(fmt(reward) for reward in event["rewards"])
            console.print(
                f"depth {event['depth']:>3}  rewards [{rewards}]  beam [{beam}]  "
                f"calls {event['fresh_calls']}  tokens {event['tokens']}",
                markup=False,
                highlight=False,
            )
        elif event["event"] == "finished":
            console.print("[green]search finished[/green]")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run_guarded(action: Any, run_id: str | None | dict[str, Any]) -> Any:
    """Run an action, mapping failures to one clear line and the documented exit codes.

    ``run_id`` may be a dict filled in by the action once the id is known."""
    try:
        return action()
    except DrpoInputError as error:
        err_console.print(f"error: {redact(str(error))}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ModelCallError as error:
        err_console.print(f"error: {redact(str(error))}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BudgetExhausted as error:
        run_id = run_id.get("run_id") if isinstance(run_id, dict) else run_id
        hint = f"; continue with a larger budget: drpo resume {run_id} --max-tokens N" if run_id else ""
        err_console.print(f"stopped: {redact(str(error))}{hint}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BUDGET) from None
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
        err_console.print(
            f"error: {type(error).__name__}: {redact(str(error))}{hint}", highlight=False, markup=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED) from None


def print_result(result: dict[str, Any]) -> None:
    console.rule("best prompt")
    console.print(result["best_prompt"], highlight=False, markup=False)
    console.rule()
    best = result["best"]
    console.print(
        f"candidate {best['candidate_id']}  path value {fmt(best['path_value'])}  "
        f"reward {fmt(best['reward'])}  ({result['stop_reason']})"
    )
