"""Pieces every CLI command shares: consoles, exit codes, the one error guard, progress and result printing.

Exit codes: 0 done, 1 failed (resumable), 2 bad input, 3 budget exhausted (resumable with a larger
budget), 130 interrupted (resumable).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from drpo.errors import BudgetExhausted, DrpoInputError, ModelCallError, ProviderUnavailable, SearchStalled
from drpo.store.disk_faults import DISK_FULL, filesystem_fault
from drpo.store.redaction import redact

if TYPE_CHECKING:
    from drpo.settings import Settings

# Control characters other than newline and tab (C0, DEL, C1): an escape sequence in a seed query, a prompt
# or a model reply would otherwise retitle, clear or hide the terminal it is printed to.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with every control character but newline and tab written out (``\x1b``), so it shows."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


# JSON escapes C0 controls itself; DEL and C1 it writes raw, which a terminal may act on.
C1_AS_JSON = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}


class VisibleConsole(Console):
    """A Rich console that shows control characters in every string it renders (plain prints, table cells,
    rules), so text from files and models never reaches the terminal raw; Rich's own styling is unaffected."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str(visible(text), **kwargs)


console = VisibleConsole()
err_console = VisibleConsole(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


class ProgressPrinter:
    """Prints one line per finished depth (beam, rewards, calls, tokens) and per validation step from the
    graph's custom stream, with the calls done out of those planned and an estimate of the time left."""

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if event["event"] == "depth_done":
            beam = ", ".join(f"{entry['id']}={fmt(entry['path_value'])}" for entry in event["beam"])
            rewards = " ".join(fmt(reward) for reward in event["rewards"])
            console.print(
                f"depth {event['depth']:>3}  rewards [{rewards}]  beam [{beam}]  "
                f"{calls_done(event)}  tokens {event['tokens']}",
                markup=False,
                highlight=False,
            )
        elif event["event"] == "validated":
            beam = ", ".join(f"{entry['id']}={fmt(entry['path_value'])}" for entry in event["beam"])
            console.print(
                f"depth {event['depth']:>3}  validation [{beam}]  {calls_done(event)}", markup=False, highlight=False
            )
        elif event["event"] == "finished":
            console.print("[green]search finished[/green]")


def calls_done(event: dict[str, Any]) -> str:
    """``calls 14/38, ~2 min left``: calls made (fresh and from the journal) out of the plan's, and the time
    left at this run's pace so far (plain ``calls N`` when no plan is known)."""
    fresh, done, planned = event["fresh_calls"], event["fresh_calls"] + event.get("journal_hits", 0), 0
    planned = int(event.get("planned_calls") or 0)
    if not planned:
        return f"calls {fresh}"
    elapsed = float(event.get("elapsed") or 0.0)
    left = max(planned - done, 0)
    if not fresh or not left:
        return f"calls {done}/{planned}"
    seconds = elapsed / fresh * left
    estimate = f"~{seconds / 60:.0f} min left" if seconds >= 90 else f"~{seconds:.0f} s left"
    return f"calls {done}/{planned}, {estimate}"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _resume_hint(run_id: str | None | dict[str, Any], text: str = "resume with: drpo resume {run}") -> str:
    """A hint only for a run that exists: ``run_id`` may be a dict the action fills in (``run_id``, and
    ``run_dir`` once known, whose meta.json proves the run was created)."""
    run_dir = None
    if isinstance(run_id, dict):
        run_dir, run_id = run_id.get("run_dir"), run_id.get("run_id")
    if not run_id or (run_dir is not None and not (Path(run_dir) / "meta.json").is_file()):
        return ""
    return "; " + text.format(run=run_id)


def _say(line: str) -> None:
    err_console.print(redact(line), highlight=False, markup=False, soft_wrap=True)


def run_guarded(action: Any, run_id: str | None | dict[str, Any]) -> Any:
    """Run an action, mapping failures to one clear line and the documented exit codes."""
    try:
        return action()
    except (DrpoInputError, ModelCallError) as error:
        _say(f"error: {error}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (SearchStalled, ProviderUnavailable) as error:
        _say(f"failed: {error}{_resume_hint(run_id, 'once it is fixed, resume with: drpo resume {run}')}")
        raise typer.Exit(EXIT_FAILED) from None
    except BudgetExhausted as error:
        larger = "continue with a larger budget: drpo resume {run} --max-tokens N"
        _say(f"stopped: {error}{_resume_hint(run_id, larger)}")
        raise typer.Exit(EXIT_BUDGET) from None
    except KeyboardInterrupt:
        _say(f"interrupted{_resume_hint(run_id)}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # in-flight model calls are abandoned; finished ones are saved
    except Exception as error:
        fault = filesystem_fault(error)
        if fault is not None:  # the disk, not the run, is at fault: an input error; what was written is kept
            kind, line = fault
            then = "resume with: drpo resume {run}"
            then = f"free space, then {then}" if kind == DISK_FULL else then
            _say(f"error: {line}{_resume_hint(run_id, then)}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        _say(f"error: {type(error).__name__}: {error}{_resume_hint(run_id)}")
        raise typer.Exit(EXIT_FAILED) from None


def start_run(
    flags: Callable[[], dict[str, Any]],
    config: Path | None,
    local_model: str | None,
    *,
    label: str,
    run: Callable[[Settings], Any],
    dry_run: Callable[[Settings], None] | None = None,
    check: Callable[[Settings], None] | None = None,
    id_prefix: str = "",
) -> Any:
    """The one way a command starts a run: settings from the config and flags, a dry run if asked, else a
    run id, one header line and ``run`` under ``run_guarded`` (whose resume hint needs the id once it exists).
    ``flags`` is called inside the guard, so a bad flag is one line like any other bad input; ``check``
    refuses settings before anything is planned or named."""
    from drpo.settings import settings_from_flags
    from drpo.store.run_dir import new_run_id

    started: dict[str, Any] = {"run_id": None}

    def action() -> Any:
        settings = settings_from_flags(config, flags(), local_model)
        if check is not None:
            check(settings)
        if dry_run is not None:
            dry_run(settings)
            return None
        settings = settings.model_copy(update={"run_id": settings.run_id or f"{id_prefix}{new_run_id()}"})
        console.print(f"{label} [bold]{settings.run_id}[/bold] in {settings.runs_dir}")
        started["run_id"] = settings.run_id if settings.checkpointer != "memory" else None  # nothing to resume
        started["run_dir"] = settings.runs_dir / str(settings.run_id)  # a hint only once it exists
        return run(settings)

    return run_guarded(action, started)


def print_result(result: dict[str, Any]) -> None:
    console.rule("best prompt")
    console.print(result["best_prompt"], highlight=False, markup=False)
    console.rule()
    best = result["best"]
    console.print(
        f"candidate {best['candidate_id']}  path value {fmt(best['path_value'])}  "
        f"reward {fmt(best['reward'])}  ({result['stop_reason']})"
    )
    validation = result.get("validation")
    if validation:
        console.print(
            f"validation: {validation['note']} (initial {fmt(validation['initial'])}, best {fmt(validation['best'])})",
            highlight=False,
            markup=False,
        )
    if result.get("judge_note"):
        console.print(f"note: {result['judge_note']}", highlight=False, markup=False)
    if result.get("truncated_answers"):
        console.print(
            f"{result['truncated_answers']} answers were cut at the base model's max_tokens and graded cut",
            highlight=False,
        )
    failures = failure_summary(result.get("failures", []))
    if failures:
        console.print(f"failures by role: {failures} (listed in result.json)", highlight=False, markup=False)


def failure_summary(failures: list[dict[str, Any]]) -> str:
    """``evaluator 3 (unparseable_evaluation 3), optimizer 1 (...)``, or "" when nothing failed."""
    by_role: dict[str, dict[str, int]] = {}
    for record in failures:
        kinds = by_role.setdefault(str(record.get("role", "?")), {})
        kinds[str(record.get("kind", "?"))] = kinds.get(str(record.get("kind", "?")), 0) + 1
    return ", ".join(
        f"{role} {sum(kinds.values())} ({', '.join(f'{kind} {count}' for kind, count in sorted(kinds.items()))})"
        for role, kinds in sorted(by_role.items())
    )
