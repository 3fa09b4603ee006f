"""The demo's budget: calls, prompt tokens (processed and reused from the server's cache), output tokens and
seconds per role and phase, read from the run logs of a finished ``make demo`` (the search run and its
held-out evaluation), so the budget is kept as the code changes.

Run after a demo:  .venv/bin/python tests/benchmarks/demo_budget.py [--runs-dir drpo_runs] [RUN_ID]
Without RUN_ID it takes the newest demo run. Measure on an otherwise idle machine: seconds are wall time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

CALL = re.compile(
    r"^(?P<when>\S+ \S+) INFO drpo\.[\w.]+: call role=(?P<role>\S+) model=(?P<model>\S+) .*? "
    r"in=(?P<input>\d+) (?:cached=(?P<cached>\d+) )?out=(?P<output>\d+) (?P<seconds>[\d.]+)s$"
)
STAMP = "%Y-%m-%d %H:%M:%S,%f"


def calls_in(log: Path) -> list[dict[str, object]]:
    """Every model call a run's log records (journal hits are not calls and are not logged)."""
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = CALL.match(line)
        if match:
            found.append(
                {
                    "when": datetime.strptime(match["when"], STAMP),
                    "role": match["role"],
                    "model": match["model"],
                    "input": int(match["input"]),
                    "cached": int(match["cached"] or 0),
                    "output": int(match["output"]),
                    "seconds": float(match["seconds"]),
                }
            )
    return found


def wall_seconds(log: Path) -> float | None:
    """First to last log line: the phase's wall time (model loading included)."""
    stamps = [line[:23] for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line[:2] == "20"]
    if len(stamps) < 2:
        return None
    return (datetime.strptime(stamps[-1], STAMP) - datetime.strptime(stamps[0], STAMP)).total_seconds()


def table(phases: dict[str, Path]) -> list[str]:
    lines = [
        "| phase | role | model | calls | prompt tokens | cached | processed | output tokens | seconds in calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, log in phases.items():
        by_role: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for call in calls_in(log):
            row = by_role[(str(call["role"]), str(call["model"]))]
            row["calls"] += 1
            for key in ("input", "cached", "output", "seconds"):
                row[key] += float(call[key])  # type: ignore[arg-type]
        for (role, model), row in sorted(by_role.items()):
            processed = row["input"] - row["cached"]
            lines.append(
                f"| {phase} | {role} | {model} | {row['calls']:.0f} | {row['input']:.0f} | {row['cached']:.0f} | "
                f"{processed:.0f} | {row['output']:.0f} | {row['seconds']:.1f} |"
            )
        wall = wall_seconds(log)
        lines.append(f"| {phase} | (wall time, first to last log line) | | | | | | | {wall or 0:.1f} |")
    return lines


def newest_demo(runs_dir: Path) -> str:
    demos = sorted(
        (p for p in runs_dir.glob("demo-*") if not p.name.endswith("-held-out")), key=lambda p: p.stat().st_mtime
    )
    if not demos:
        raise SystemExit(f"no demo run in {runs_dir}; run make demo first")
    return demos[-1].name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id", nargs="?")
    parser.add_argument("--runs-dir", type=Path, default=Path("drpo_runs"))
    args = parser.parse_args()
    run_id = args.run_id or newest_demo(args.runs_dir)
    phases = {
        "search": args.runs_dir / run_id / "run.log",
        "held-out": args.runs_dir / f"{run_id}-held-out" / "run.log",
    }
    phases = {phase: log for phase, log in phases.items() if log.is_file()}
    if not phases:
        raise SystemExit(f"no run log for {run_id} in {args.runs_dir}")
    print(f"demo {run_id}")
    print("\n".join(table(phases)))
    result = args.runs_dir / run_id / "result.json"
    if result.is_file():
        data = json.loads(result.read_text())
        validation = data.get("validation") or {}
        print(f"\nbest prompt ({data['best']['candidate_id']}): {data['best_prompt'][:300]!r}")
        if validation:
            print(f"validation: {validation['note']}; initial {validation['initial']}, best {validation['best']}")
        print(f"answers cut at max_tokens in the search: {data.get('truncated_answers', 0)}")
    held_out = args.runs_dir / f"{run_id}-held-out" / "eval.json"
    if held_out.is_file():
        summary = json.loads(held_out.read_text())
        for name, row in summary["differences"].items():
            average = row["Average"]
            print(f"held-out {name} - {summary['baseline']}: {average['mean']} [{average['low']}, {average['high']}]")
        print(f"answers cut at max_tokens in the held-out evaluation: {summary.get('truncated_answers')}")


if __name__ == "__main__":
    sys.exit(main())
